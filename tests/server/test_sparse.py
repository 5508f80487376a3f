"""Sparse updates through real servers: gather and scatter_* on variables, sparse accumulators,
partitioned variables over the ps tasks of a real cluster, and a scatter surviving a SIGKILLed
daemon restarted on its --data-dir."""

from __future__ import annotations

import asyncio
import signal
import threading

import numpy as np
import pytest

import queueserver as qs
from queueserver.errors import InvalidArgumentError
from queueserver.partitioned import min_max_variable_partitioner, shard_rows
from support import ServerProcess, free_ports


def test_gather_and_scatter_through_the_sync_client(local_server):
    with qs.connect(local_server.target, operation_timeout=10) as c:
        start = np.arange(40, dtype=np.float64).reshape(10, 4)
        v = c.variable("emb", start)
        v.initialize()
        np.testing.assert_array_equal(v.gather(np.array([[9, 0], [9, 9]], np.int32)), start[[[9, 0], [9, 9]]])
        assert v.scatter_add(np.array([2, 2, 5]), np.ones((3, 4))) is None  # no table comes back
        v.scatter_sub([5], np.full((1, 4), 0.5))
        v.scatter_update(np.array([7, 7]), np.array([[1.0] * 4, [2.0] * 4]))
        expected = start.copy()
        expected[2] += 2
        expected[5] += 0.5
        expected[7] = 2.0
        np.testing.assert_array_equal(v.read(), expected)
        # bfloat16 on the wire, as for assign: 1.5 is exact in bfloat16
        f = c.variable("f32", np.zeros((3, 2), np.float32))
        f.initialize()
        f.scatter_add([1], np.full((1, 2), 1.5, np.float32), wire_dtype="bfloat16")
        assert f.read().tolist() == [[0, 0], [1.5, 1.5], [0, 0]]


@pytest.mark.parametrize("call, message", [
    (lambda v: v.gather(np.array([0, 10])), r"Variable 'emb' gather: indices\[1\] = 10 is not in \[0, 10\)"),
    (lambda v: v.scatter_add(np.array([-1]), np.ones((1, 4))), r"indices\[0\] = -1 is not in \[0, 10\)"),
    (lambda v: v.scatter_sub(np.array([1.0]), np.ones((1, 4))), "indices must be int32 or int64, got float64"),
    (lambda v: v.scatter_update(np.array([1, 2]), np.ones((2, 3))), r"updates must have shape .*got \[2,3\]"),
    (lambda v: v.scatter_add(np.array([1]), np.ones((1, 4), np.complex128)), "Variable 'emb' scatter_add"),
])
def test_bad_indices_and_updates_are_refused_over_the_wire_and_change_nothing(local_server, call, message):
    with qs.connect(local_server.target, operation_timeout=10) as c:
        v = c.variable("emb", np.arange(40, dtype=np.float64).reshape(10, 4))
        v.initialize()
        before = v.read()
        with pytest.raises(InvalidArgumentError, match=message):
            call(v)
        np.testing.assert_array_equal(v.read(), before)
        assert c.status()["variables"][0]["scatters"] == 0


def test_sparse_accumulator_through_the_server(local_server):
    with qs.connect(local_server.target, operation_timeout=10) as c:
        acc = c.sparse_conditional_accumulator("g", [6, 2], np.float64)
        assert acc.apply_indexed_slices_grad(qs.IndexedSlices(np.ones((2, 2)), np.array([4, 1]), None), 0)
        assert acc.apply_indexed_slices_grad((np.full((1, 2), 3.0), np.array([4])), 0)
        got = acc.take_indexed_slices_grad(2)
        assert got.indices.tolist() == [1, 4] and got.dense_shape.tolist() == [6, 2]
        assert got.values.tolist() == [[1, 1], [2, 2]]  # row 4: (1 + 3) / 2
        assert not acc.apply_indexed_slices_grad((np.ones((1, 2)), np.array([0])), 0)  # stale now
        with pytest.raises(InvalidArgumentError, match=r"indices\[0\] = 6 is not in \[0, 6\)"):
            acc.apply_indexed_slices_grad((np.ones((1, 2)), np.array([6])), 1)
        assert acc.num_accumulated() == 0
        c.conditional_accumulator("dense", [2])
        with pytest.raises(InvalidArgumentError, match="is a ConditionalAccumulator, not a SparseConditionalAccumulator"):
            c.sparse_conditional_accumulator("dense", [2])


def test_a_gradients_dense_shape_is_checked_against_the_accumulators_over_the_wire(local_server):
    # TensorFlow: InvalidArgumentError "Shape mismatch: expected shape dim 0 to be 5, got 6"; nothing added.
    with qs.connect(local_server.target, operation_timeout=10) as c:
        acc = c.sparse_conditional_accumulator("s", shape=[5, 2])
        values, rows = np.ones((1, 2), np.float32), np.array([1])
        with pytest.raises(InvalidArgumentError, match="'s': Shape mismatch: expected shape dim 0 to be 5, got 6"):
            acc.apply_indexed_slices_grad(qs.IndexedSlices(values, rows, np.array([6, 2])), 0)
        with pytest.raises(InvalidArgumentError, match="expected shape dim 1 to be 2, got 3"):
            acc.apply_indexed_slices_grad((values, rows, [5, 3]), 0)  # a list of ints: int64
        assert acc.num_accumulated() == 0
        assert acc.apply_indexed_slices_grad(qs.IndexedSlices(values, rows, np.array([5, 2])), 0)
        assert acc.apply_indexed_slices_grad(qs.IndexedSlices(values, rows, None), 0)
        assert acc.num_accumulated() == 2
        # set_global_step moves backwards too, as TensorFlow's: step 3 is fresh again after 5, then 1
        acc.set_global_step(5)
        acc.set_global_step(1)
        assert acc.take_indexed_slices_grad(2).indices.tolist() == [1]  # the step is 2 now
        assert acc.apply_indexed_slices_grad((values, rows), 3)


async def test_a_taker_waiting_on_a_sparse_accumulator_is_served_by_another_client(local_server):
    a = await qs.connect_async(local_server.target, operation_timeout=10)
    b = await qs.connect_async(local_server.target, operation_timeout=10)
    try:
        acc_a = await a.sparse_conditional_accumulator("g", [100, 3], reduction_type="SUM")
        acc_b = await b.sparse_conditional_accumulator("g", [100, 3], reduction_type="SUM")
        taking = asyncio.ensure_future(acc_a.take_indexed_slices_grad(2))
        await acc_b.apply_indexed_slices_grad((np.ones((2, 3), np.float32), np.array([99, 3])), 0)
        await acc_b.apply_indexed_slices_grad((np.ones((1, 3), np.float32), np.array([3])), 0)
        got = await taking
        assert got.indices.tolist() == [3, 99] and got.values.tolist() == [[2] * 3, [1] * 3]
    finally:
        await a.close()
        await b.close()


def test_tf_partitioners_split_rows_as_tensorflow():
    assert shard_rows(10, 3) == [4, 3, 3]  # the first rows % n shards take one more
    # min_max_variable_partitioner: 1000 rows of 16 float32 = 64,000 B; ceil(64000 / 4096) -> 16 shards
    assert min_max_variable_partitioner(None, min_slice_size=4096)([1000, 16], np.float32) == 16
    assert min_max_variable_partitioner(max_partitions=3, min_slice_size=4096)([1000, 16], np.float32) == 3
    assert min_max_variable_partitioner(max_partitions=3)([10, 2], np.float32) == 1  # 256 KiB default
    # TensorFlow's defaults (max_partitions=1, min_slice_size=256 KiB) and count, max(1, min(rows,
    # max_partitions, ceil(bytes / min_slice_size))), checked against TensorFlow 2.21:
    assert min_max_variable_partitioner()([1024, 1024], np.float32) == 1
    assert min_max_variable_partitioner(100)([1024, 1024], np.float32) == 16
    assert min_max_variable_partitioner(100, 6)([10, 1], np.float32) == 7
    assert min_max_variable_partitioner(100, 60)([5, 10], np.float32) == 4
    assert min_max_variable_partitioner(100, 40)([100, 3], np.float32) == 30
    assert min_max_variable_partitioner(100, 1)([3, 4], np.float32) == 3  # never more shards than rows
    assert shard_rows(10, 7) == [2, 2, 2, 1, 1, 1, 1]  # TensorFlow's get_variable([10, 1]) shards


def test_partitioned_variable_equals_one_variable_across_the_ps_tasks(cluster):
    rng = np.random.default_rng(5)
    table = rng.standard_normal((103, 5))
    with qs.connect(cluster.target("/job:worker/task:0"), operation_timeout=20) as c:
        with c.container("sparse_partitioned"):
            single = c.variable("single", table)
            single.initialize()
            part = c.partitioned_variable("emb", [103, 5], np.float64, initializer=table, num_shards=4)
            part.initialize()
            assert [s.name for s in part.shards] == [f"emb/part_{i}" for i in range(4)]
            assert [s.shape[0] for s in part.shards] == [26, 26, 26, 25]
            assert part.devices == ["/job:ps/task:0", "/job:ps/task:1", "/job:ps/task:0", "/job:ps/task:1"]
            np.testing.assert_array_equal(part.read(), table)
            idx = rng.integers(0, 103, size=(7, 9))
            np.testing.assert_array_equal(part.gather(idx), single.gather(idx))
            flat = idx.reshape(-1)
            upd = rng.standard_normal((flat.size, 5))
            for op in ("scatter_add", "scatter_sub", "scatter_update"):
                getattr(part, op)(flat, upd)
                getattr(single, op)(flat, upd)
                np.testing.assert_allclose(part.read(), single.read(), rtol=0, atol=1e-12)
            part.scatter_add(np.int64(102), 1.0)  # a scalar index and a scalar update
            single.scatter_add(np.int64(102), 1.0)
            np.testing.assert_allclose(part.read(), single.read(), rtol=0, atol=1e-12)
            before = part.read()
            with pytest.raises(InvalidArgumentError, match=r"PartitionedVariable 'emb' scatter_add: indices\[2\] = 103"):
                part.scatter_add(np.array([0, 50, 103]), np.ones((3, 5)))  # checked before any shard moves
            with pytest.raises(InvalidArgumentError, match=r"updates must have shape \[2,5\]"):
                part.scatter_sub(np.array([0, 50]), np.ones((2, 4)))
            np.testing.assert_array_equal(part.read(), before)
            # by size: 103 rows of 40 bytes = 4120 B; ceil(4120 / 1024) = 5 shards, at most 2
            sized = c.partitioned_variable("sized", [103, 5], np.float64, min_shard_bytes=1024, max_shards=2)
            assert [s.shape[0] for s in sized.shards] == [52, 51]
            # max_shards unbounded (the default): TensorFlow's count and split, 7 shards of [10, 1] float32
            small = c.partitioned_variable("small", [10, 1], np.float32, min_shard_bytes=6)
            assert [s.shape[0] for s in small.shards] == [2, 2, 2, 1, 1, 1, 1]
        c.reset(["sparse_partitioned"])


def test_a_scatter_survives_a_killed_daemon_restarted_on_its_data_dir(tmp_path):
    data = str(tmp_path / "data")
    server = ServerProcess("--data-dir", data, "--fsync", "always")
    table = np.zeros((1000, 8), np.float32)
    try:
        with qs.connect(server.target, operation_timeout=10) as c:
            v = c.variable("emb", table)
            v.initialize()
            acc = c.sparse_conditional_accumulator("g", [1000, 8], reduction_type="SUM")
            for step in range(20):
                v.scatter_add(np.array([step, step, 999]), np.ones((3, 8), np.float32))
            v.scatter_update(np.array([500]), np.full((1, 8), 7.0, np.float32))
            acc.apply_indexed_slices_grad((np.ones((2, 8), np.float32), np.array([4, 4])), 0)
            expected = v.read()
    finally:
        server.stop(signal.SIGKILL)
    again = ServerProcess("--data-dir", data)
    try:
        with qs.connect(again.target, operation_timeout=10) as c:
            v = c.variable("emb", table)
            np.testing.assert_array_equal(v.read(), expected)
            assert v.gather([0, 999, 500]).tolist() == [[2.0] * 8, [20.0] * 8, [7.0] * 8]
            acc = c.sparse_conditional_accumulator("g", [1000, 8], reduction_type="SUM")
            assert acc.num_accumulated() == 1
            got = acc.take_indexed_slices_grad(1)
            assert got.indices.tolist() == [4] and got.values.tolist() == [[2.0] * 8]
    finally:
        again.stop()


def test_sparse_calls_forwarded_by_another_task(cluster):
    """A client that does not route to the home task: the worker forwards every sparse call (the
    replies' several arrays included) to the ps task that holds the resource."""
    with qs.connect(cluster.target("/job:worker/task:2"), operation_timeout=20, route_direct=False) as c:
        with c.container("sparse_forwarded"), c.device("/job:ps/task:1"):
            v = c.variable("emb", np.zeros((50, 3)))
            acc = c.sparse_conditional_accumulator("g", [50, 3], np.float64)
        assert v.device == "/job:ps/task:1"
        v.initialize()
        v.scatter_add(np.array([49, 1, 49]), np.ones((3, 3)))
        assert v.gather([49, 1, 0]).tolist() == [[2.0] * 3, [1.0] * 3, [0.0] * 3]
        with pytest.raises(InvalidArgumentError, match=r"indices\[0\] = 50 is not in \[0, 50\)"):
            v.gather([50])
        acc.apply_indexed_slices_grad((np.ones((1, 3)), np.array([5])), 0)
        with pytest.raises(InvalidArgumentError, match="expected shape dim 0 to be 50, got 51"):  # 3 arrays forwarded
            acc.apply_indexed_slices_grad(qs.IndexedSlices(np.ones((1, 3)), np.array([5]), np.array([51, 3])), 0)
        got = acc.take_indexed_slices_grad(1)
        assert got.indices.tolist() == [5] and got.values.tolist() == [[1.0] * 3]
        c.reset(["sparse_forwarded"])


def test_gathers_and_scatter_updates_carry_on_across_a_restart(tmp_path):
    """A gather is repeated on a new connection (it only reads), so a client in the middle of
    gathers rides through a SIGKILLed daemon restarted on its --data-dir. A scatter_update is not
    repeated (after another client's acknowledged update, a repeat would undo it): the client is
    told (UnavailableError) and decides; here it sets the same rows again."""
    port = free_ports(1)[0]
    args = ("--port", str(port), "--data-dir", str(tmp_path / "data"))
    server = ServerProcess(*args)
    progress, errors, calls = threading.Event(), [], [0]

    def work(target: str) -> None:
        try:
            with qs.connect(target, operation_timeout=30) as c:
                v = c.variable("emb", np.zeros((100, 4)))
                v.initialize()
                while calls[0] < 400:
                    i = calls[0] % 100
                    try:
                        v.scatter_update([i], np.full((1, 4), float(calls[0])))
                    except qs.UnavailableError:
                        continue  # the next call reconnects; this one is made again, by the caller
                    assert v.gather([i]).tolist() == [[float(calls[0])] * 4]
                    calls[0] += 1
                    if calls[0] == 100:
                        progress.set()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=work, args=(server.target,))
    thread.start()
    assert progress.wait(60), "no progress before the kill"
    server.stop(signal.SIGKILL)
    again = ServerProcess(*args)
    try:
        thread.join(60)
        assert not thread.is_alive() and not errors, f"the client failed across the restart: {errors[:1]!r}"
        with qs.connect(again.target, operation_timeout=10) as c:
            assert c.variable("emb", np.zeros((100, 4))).gather([99]).tolist() == [[399.0] * 4]
    finally:
        again.stop()
