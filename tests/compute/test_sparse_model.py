"""The sparse model (compute/sparse.py): its gradients, and training through a real local server
with only the touched rows moving equals training with the whole table moving (float64, 1e-6)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import compute.sparse
import queueserver as qs
from compute.sparse import SparseModel, hash_ids, synthetic_data, train_async, train_sync

MODEL = SparseModel(buckets=500, dim=6, hidden=[10], classes=3)


def _data(n: int = 256, seed: int = 1):
    return synthetic_data(n, features=5, id_space=20_000, classes=3, seed=seed)


def test_docstring_example():
    assert doctest.testmod(compute.sparse, optionflags=doctest.ELLIPSIS).failed == 0


def test_hashing_is_stable_and_padding_is_ignored():
    rows = hash_ids(np.array([[0, 1, -1], [1, 1, 2]]), 500)
    assert rows[0, 2] == -1 and rows[0, 1] == rows[1, 0] == rows[1, 1]
    assert ((rows[rows >= 0] >= 0) & (rows[rows >= 0] < 500)).all()
    assert hash_ids(np.array([123456789]), 1000).tolist() == hash_ids(np.array([123456789]), 1000).tolist()
    lk = MODEL.lookup(np.array([[5, -1, 5], [-1, -1, -1]]))
    table = np.arange(500 * 6, dtype=np.float64).reshape(500, 6)
    x = MODEL.embed(table[lk.rows], lk)
    np.testing.assert_array_equal(x[0], table[hash_ids(np.array([5]), 500)[0]])  # mean of the same row twice
    np.testing.assert_array_equal(x[1], 0.0)  # all padding: a zero embedding


def test_gradients_match_numerical_ones():
    ids, y = _data(16)
    table, mlp = MODEL.init_params(0, np.float64)
    lk = MODEL.lookup(ids)
    rows = table[lk.rows]
    _, grad_rows, grads = MODEL.loss_and_grads(rows, lk, mlp, y)
    eps = 1e-6
    rng = np.random.default_rng(0)
    for _ in range(5):
        i, j = rng.integers(len(lk.rows)), rng.integers(MODEL.dim)
        up, down = rows.copy(), rows.copy()
        up[i, j] += eps
        down[i, j] -= eps
        numeric = (MODEL.loss_and_grads(up, lk, mlp, y)[0] - MODEL.loss_and_grads(down, lk, mlp, y)[0]) / (2 * eps)
        assert grad_rows[i, j] == pytest.approx(numeric, abs=1e-7)
    w = "sparse/mlp/w0"
    up = {**mlp, w: mlp[w].copy()}
    down = {**mlp, w: mlp[w].copy()}
    up[w][2, 3] += eps
    down[w][2, 3] -= eps
    numeric = (MODEL.loss_and_grads(rows, lk, up, y)[0] - MODEL.loss_and_grads(rows, lk, down, y)[0]) / (2 * eps)
    assert grads[w][2, 3] == pytest.approx(numeric, abs=1e-7)


def _final(target: str):
    with qs.connect(target, operation_timeout=10) as c:
        params = compute.sparse.SparseParams(c, MODEL, dtype=np.float64, init=False)
        return params.read()


def _assert_same(a, b, atol=1e-6):
    np.testing.assert_allclose(a[0], b[0], rtol=0, atol=atol)
    for k in a[1]:
        np.testing.assert_allclose(a[1][k], b[1][k], rtol=0, atol=atol)


def test_async_sparse_training_equals_dense_training():
    ids, y = _data()
    finals, results = [], []
    for sparse in (True, False):
        server = qs.Server.create_local_server()
        try:
            with qs.connect(server.target, operation_timeout=10) as c:
                results.append(train_async(c, MODEL, ids, y, batch_size=32, lr=0.5, sparse=sparse, dtype=np.float64))
            finals.append(_final(server.target))
        finally:
            server.stop()
    sparse, dense = results
    _assert_same(finals[0], finals[1])
    np.testing.assert_allclose(sparse.losses, dense.losses, rtol=0, atol=1e-9)
    assert sparse.losses[-1] < sparse.losses[0]  # it learns
    assert not np.allclose(finals[0][0], MODEL.init_params(0, np.float64)[0])  # the table moved
    # a batch of 32 bags of <= 5 ids touches at most 160 of 500 rows: the pushes are that much smaller
    assert sparse.bytes_pushed * 2 < dense.bytes_pushed and sparse.bytes_pulled * 2 < dense.bytes_pulled


def test_sync_sparse_training_equals_dense_training_and_one_big_batch_process():
    ids, y = _data()
    finals = []
    for mode in ("sparse", "dense", "one process"):
        server = qs.Server.create_local_server()
        try:
            if mode == "one process":
                with qs.connect(server.target, operation_timeout=10) as c:
                    train_async(c, MODEL, ids, y, batch_size=64, lr=0.5, dtype=np.float64)
            else:
                result = train_sync(server.target, MODEL, ids, y, replicas=2, batch_size=32, lr=0.5,
                                    sparse=mode == "sparse", dtype=np.float64, timeout=30)
                assert len(result.losses) == 4
            finals.append(_final(server.target))
        finally:
            server.stop()
    _assert_same(finals[0], finals[1])
    _assert_same(finals[0], finals[2])


def test_a_partitioned_table_trains_as_one_variable(cluster):
    ids, y = _data(128, seed=3)
    with qs.connect(cluster.target("/job:worker/task:1"), operation_timeout=20) as c:
        finals = []
        for i, shards in enumerate((None, 3)):
            with c.container(f"sparse_model_{i}"):
                params = compute.sparse.SparseParams(c, MODEL, dtype=np.float64, num_shards=shards)
                train_async(c, MODEL, ids, y, batch_size=32, lr=0.5, params=params)
                finals.append(params.read())
        assert sorted(set(params.table.devices)) == ["/job:ps/task:0", "/job:ps/task:1"]
        c.reset(["sparse_model_0", "sparse_model_1"])
    _assert_same(finals[0], finals[1], atol=1e-12)
