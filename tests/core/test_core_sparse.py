"""Sparse updates on the pure core: a variable's gather and scatter_* over its first dimension, the
sparse conditional accumulator, and both through the durable log's recording and replay."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from queueserver.core import ResourceManager, SparseConditionalAccumulator, Variable
from queueserver.core.stamps import Stamps
from queueserver.durability import Recorder, Replay, snapshot
from queueserver.errors import FailedPreconditionError, InvalidArgumentError


def _table(rows: int = 6, cols: int = 2, dtype=np.float32) -> Variable:
    v = Variable("t", np.arange(rows * cols, dtype=dtype).reshape(rows, cols))
    v.initialize()
    return v


# ----- gather and scatter
def test_gather_returns_rows_in_the_indices_shape():
    v = _table()
    np.testing.assert_array_equal(v.gather(np.array([[5, 0], [1, 1]])), v.read()[[[5, 0], [1, 1]]])
    np.testing.assert_array_equal(v.gather(np.int64(2)), [4, 5])  # a scalar index: one row, no batch
    assert v.gather(np.array([], np.int64)).shape == (0, 2)


def test_scatter_add_and_sub_sum_duplicate_indices():
    v = _table()
    before = v.read().copy()
    v.scatter_add(np.array([3, 1, 3]), np.array([[1, 1], [2, 2], [10, 10]], np.float32))
    expected = before.copy()
    expected[3] += 11
    expected[1] += 2
    np.testing.assert_array_equal(v.read(), expected)
    v.scatter_sub(np.array([3, 3]), np.float32(0.5))  # one scalar for every named row, applied per index
    expected[3] -= 1.0
    np.testing.assert_array_equal(v.read(), expected)


def test_scatter_update_with_duplicates_takes_the_last_update():
    v = _table()
    v.scatter_update(np.array([2, 4, 2]), np.array([[1, 1], [2, 2], [3, 3]], np.float32))
    np.testing.assert_array_equal(v.gather([2, 4]), [[3, 3], [2, 2]])


def test_scatter_never_changes_a_value_already_handed_out():
    """A read (a reply on its way, the durable log's writer) holds the array: a scatter copies it first."""
    v = _table()
    seen = v.read()
    kept = seen.copy()
    v.scatter_add([0], np.ones((1, 2), np.float32))
    np.testing.assert_array_equal(seen, kept)
    mine = v.value
    v.scatter_add([0], np.ones((1, 2), np.float32))  # nobody holds this one: changed in place
    assert v.value is mine


@pytest.mark.parametrize("op", ["gather", "scatter_add", "scatter_sub", "scatter_update"])
@pytest.mark.parametrize("indices, message", [
    (np.array([2, 0, 6]), r"Variable 't' {op}: indices\[2\] = 6 is not in \[0, 6\)"),
    (np.array([-1, 0, 5]), r"Variable 't' {op}: indices\[0\] = -1 is not in \[0, 6\)"),
    (np.array([[0, 1], [7, 2]]), r"indices\[1,0\] = 7 is not in \[0, 6\)"),
    (np.array([0.0, 1.0]), "indices must be int32 or int64, got float64"),
    (np.array([True]), "indices must be int32 or int64, got bool"),
])
def test_bad_indices_are_refused_and_change_nothing(op, indices, message):
    v = _table()
    before = v.read().copy()
    updates_before = v.stats["scatters"]
    args = (indices,) if op == "gather" else (indices, np.ones(indices.shape + (2,), np.float32))
    with pytest.raises(InvalidArgumentError, match=message.format(op=op)):
        getattr(v, op)(*args)
    np.testing.assert_array_equal(v.read(), before)
    assert v.stats["scatters"] == updates_before


@pytest.mark.parametrize("updates, message", [
    (np.ones((3, 2), np.float32), r"updates must have shape .*\[2,2\] or be a scalar, got \[3,2\]"),
    (np.ones((2, 3), np.float32), r"got \[2,3\]"),
    (np.ones((2, 2), np.complex64), "Variable 't' scatter_add"),
])
def test_bad_updates_are_refused_and_change_nothing(updates, message):
    v = _table()
    before = v.read().copy()
    with pytest.raises(InvalidArgumentError, match=message):
        v.scatter_add(np.array([0, 1]), updates)
    np.testing.assert_array_equal(v.read(), before)


def test_scalar_and_bool_variables_and_uninitialized_ones():
    s = Variable("s", np.float32(1))
    s.initialize()
    with pytest.raises(InvalidArgumentError, match="scalar variable has no rows"):
        s.gather([0])
    b = Variable("b", np.array([True, False]))
    b.initialize()
    b.scatter_update(1, True)  # TensorFlow's testBooleanScatterUpdate
    b.scatter_update(np.int64(0), False)
    assert b.read().tolist() == [False, True]
    with pytest.raises(InvalidArgumentError, match="not defined for a bool variable"):
        b.scatter_add([0], True)
    u = Variable("u", np.zeros((3, 2)))
    with pytest.raises(FailedPreconditionError, match="uninitialized"):
        u.gather([0])
    with pytest.raises(FailedPreconditionError, match="uninitialized"):
        u.scatter_add([0], 1.0)


def test_integer_variables_refuse_float_updates():
    v = _table(dtype=np.int32)
    with pytest.raises(InvalidArgumentError):
        v.scatter_add([0], np.ones((1, 2), np.float32))
    v.scatter_add(np.array([0], np.int64), np.array([[5, 5]], np.int32))
    assert v.gather([0]).tolist() == [[5, 6]]


# ----- the sparse accumulator
async def test_sparse_accumulator_averages_each_row_over_the_gradients_that_touched_it():
    acc = SparseConditionalAccumulator("g", [5, 2], np.float64)
    take = acc.take_grad(2)
    assert acc.apply_indexed_slices_grad(np.array([3, 1]), np.array([[1., 1.], [2., 2.]]), 0)
    assert not take.done()
    # row 3 twice in one gradient: both values, one count for the row
    assert acc.apply_indexed_slices_grad(np.array([3, 4, 3]), np.array([[3., 3.], [4., 4.], [2., 2.]]), 0)
    indices, values, shape = await take
    assert indices.tolist() == [1, 3, 4] and shape.tolist() == [5, 2]
    np.testing.assert_array_equal(values, [[2., 2.], [3., 3.], [4., 4.]])  # row 3: (1 + 3 + 2) / 2
    assert acc.global_step == 1 and acc.num_accumulated() == 0


async def test_sparse_accumulator_sum_reduction_and_staleness():
    acc = SparseConditionalAccumulator("g", [4], np.float32, reduction_type="SUM")
    acc.set_global_step(3)
    assert not acc.apply_indexed_slices_grad(np.array([0]), np.array([9.]), 2)  # stale: dropped
    assert acc.apply_indexed_slices_grad(np.array([2, 0]), np.array([1., 2.]), 3)
    assert acc.apply_indexed_slices_grad(np.array([2]), np.array([5.]), 4)
    indices, values, _ = await acc.take_grad(2)
    assert indices.tolist() == [0, 2] and values.tolist() == [2., 6.] and values.dtype == np.float32
    assert not acc.apply_indexed_slices_grad(np.array([1]), np.array([1.]), 3)  # the step is 4 now
    assert acc.stats["dropped_stale"] == 2


@pytest.mark.parametrize("indices, values, message", [
    (np.array([0, 4]), np.ones((2, 2)), r"indices\[1\] = 4 is not in \[0, 4\)"),
    (np.array([-2]), np.ones((1, 2)), r"indices\[0\] = -2 is not in \[0, 4\)"),
    (np.array([0.5]), np.ones((1, 2)), "indices must be int32 or int64, got float64"),
    (np.array([[0]]), np.ones((1, 2)), "indices must be a vector"),
    (np.array([0, 1]), np.ones((2, 3)), r"values must have shape \[2,2\]"),
])
async def test_sparse_accumulator_refuses_bad_gradients_even_stale_ones(indices, values, message):
    acc = SparseConditionalAccumulator("g", [4, 2])
    acc.apply_indexed_slices_grad(np.array([1]), np.ones((1, 2)), 0)
    for step in (0, -1):  # fresh, and stale: both checked
        with pytest.raises(InvalidArgumentError, match=message):
            acc.apply_indexed_slices_grad(indices, values, step)
    assert acc.num_accumulated() == 1 and acc._rows.tolist() == [1]


def test_sparse_accumulator_spec_is_checked_by_the_manager():
    rm = ResourceManager()
    acc = rm.sparse_accumulator("g", [4, 2])
    assert rm.sparse_accumulator("g", [4, 2]) is acc
    with pytest.raises(InvalidArgumentError, match="reduction_type 'MEAN' but 'SUM' was requested"):
        rm.sparse_accumulator("g", [4, 2], reduction_type="SUM")
    with pytest.raises(InvalidArgumentError, match="is a SparseConditionalAccumulator, not a ConditionalAccumulator"):
        rm.accumulator("g", [4, 2])
    with pytest.raises(InvalidArgumentError, match="reduction_type must be one of"):
        rm.sparse_accumulator("h", [4, 2], reduction_type="MAX")
    with pytest.raises(InvalidArgumentError, match="use apply_indexed_slices_grad"):
        acc.apply_grad(np.zeros((4, 2)), 0)  # type: ignore[attr-defined]


# ----- the durable log: rows changed, replayed through the core
async def test_scatters_and_sparse_gradients_replay_to_the_same_state():
    rm = ResourceManager()
    records: list = []
    rm.attach(Recorder(lambda h, a: records.append((dict(h), [np.array(x, copy=True) for x in a]))))
    v = rm.variable("emb", np.zeros((1000, 4), np.float32))
    v.initialize()
    v.scatter_add(np.array([7, 7, 999]), np.ones((3, 4), np.float32))
    v.scatter_update(np.array([1, 1]), np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32))
    v.scatter_sub(np.array([7]), np.float32(0.5))
    acc = rm.sparse_accumulator("g", [1000, 4], reduction_type="SUM")
    acc.apply_indexed_slices_grad(np.array([3, 3]), np.ones((2, 4)), 0)
    acc.apply_indexed_slices_grad(np.array([5]), np.ones((1, 4)), 0)
    await acc.take_grad(2)
    acc.apply_indexed_slices_grad(np.array([9]), np.full((1, 4), 2.0), 1)
    rows = [(h, a) for h, a in records if h["k"] == "wr"]
    assert len(rows) == 3 and rows[0][1][0].tolist() == [7, 999]  # only the rows changed travel
    assert sum(x.nbytes for _, a in rows for x in a) < 200

    replay = Replay(ResourceManager(), Stamps())
    for h, a in records:
        replay.apply(dict(h), a)
    again = replay.resources.get("", "emb", Variable)
    np.testing.assert_array_equal(again.read(), v.read())
    acc2 = replay.resources.get("", "g", SparseConditionalAccumulator)
    assert acc2.global_step == 1 and acc2.reduction_type == "SUM"
    assert acc2._rows.tolist() == [9] and acc2._values.tolist() == [[2.0] * 4]

    # and a snapshot of that replayed state rebuilds it again
    snap = list(snapshot(replay.resources, Stamps(), [], replay.next_tid))
    third = Replay(ResourceManager(), Stamps())
    for h, a in snap:
        third.apply(dict(h), list(a))
    np.testing.assert_array_equal(third.resources.get("", "emb", Variable).read(), v.read())
    acc3 = third.resources.get("", "g", SparseConditionalAccumulator)
    assert acc3._rows.tolist() == [9] and acc3.count == 1 and acc3.global_step == 1
    assert asyncio.isfuture(acc3.take_grad(1))


# ----- TensorFlow 2.21 audit
def test_sparse_set_global_step_moves_the_step_backwards_too():
    acc = SparseConditionalAccumulator("s", [4])
    acc.set_global_step(5)
    acc.set_global_step(1)
    assert acc.apply_indexed_slices_grad(np.array([0]), np.ones(1, np.float32), local_step=3)
    assert acc.num_accumulated() == 1


def test_a_dense_shape_other_than_the_accumulators_is_refused_and_adds_nothing():
    acc = SparseConditionalAccumulator("s", [5, 2])
    one = (np.array([1]), np.ones((1, 2), np.float32))
    with pytest.raises(InvalidArgumentError, match="'s': Shape mismatch: expected shape dim 0 to be 5, got 6"):
        acc.apply_indexed_slices_grad(*one, 0, dense_shape=np.array([6, 2]))
    with pytest.raises(InvalidArgumentError, match="expected shape dim 1 to be 2, got 3"):
        acc.apply_indexed_slices_grad(*one, 0, dense_shape=np.array([5, 3]))
    with pytest.raises(InvalidArgumentError, match="expected shape rank at least 2, got 1"):
        acc.apply_indexed_slices_grad(*one, 0, dense_shape=np.array([5]))
    with pytest.raises(InvalidArgumentError, match="dense_shape must be a vector of integers"):
        acc.apply_indexed_slices_grad(*one, 0, dense_shape=np.array([5.0, 2.0]))
    with pytest.raises(InvalidArgumentError, match="Shape mismatch"):  # checked even for a stale gradient
        acc.apply_indexed_slices_grad(*one, -1, dense_shape=np.array([6, 2]))
    assert acc.num_accumulated() == 0 and acc.stats["applied"] == 0
    assert acc.apply_indexed_slices_grad(*one, 0, dense_shape=np.array([5, 2]))
    assert acc.apply_indexed_slices_grad(*one, 0, dense_shape=None)
    assert acc.num_accumulated() == 2


def test_a_sparse_accumulator_needs_a_fully_defined_shape_and_says_so():
    for shape, shown in ((None, "None"), ([None, 2], r"\[\?,2\]")):
        with pytest.raises(InvalidArgumentError, match=f"needs a fully defined shape, got {shown}"):
            SparseConditionalAccumulator("m", shape)
    with pytest.raises(InvalidArgumentError, match="dtype must be floating.*got complex64"):
        SparseConditionalAccumulator("m", [3], np.complex64)
