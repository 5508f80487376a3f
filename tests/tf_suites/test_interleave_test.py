"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/interleave_test.py``: the expected
values are TensorFlow's (its reference ``_interleave``), the code is ours.

With ``num_parallel_calls`` (and the default ``deterministic``) interleave must produce exactly
the sequential order -- errors included: an error of an input element, of the function, or of a
nested dataset comes out at the position the sequential algorithm gives it.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, verify

from pipeline.data import AUTOTUNE, Dataset
from queueserver import errors


def _interleave(lists, cycle_length, block_length):
    """TensorFlow's reference implementation of interleave (interleave_test._interleave)."""
    num_open = 0
    all_iterators = [iter(v) for v in lists]
    open_iterators = []
    for _ in range(cycle_length):
        if all_iterators:
            open_iterators.append(all_iterators.pop(0))
            num_open += 1
        else:
            open_iterators.append(None)
    while num_open or all_iterators:
        for i in range(cycle_length):
            if open_iterators[i] is None:
                if all_iterators:
                    open_iterators[i] = all_iterators.pop(0)
                    num_open += 1
                else:
                    continue
            for _ in range(block_length):
                try:
                    yield next(open_iterators[i])
                except StopIteration:
                    open_iterators[i] = None
                    num_open -= 1
                    break


def _repeat(values, count):
    return [[value] * value for value in np.tile(values, count)]


def _drain(it) -> list:
    """Every output, with "ERR" where the iterator raised (then it is asked again)."""
    out: list = []
    while True:
        try:
            out.append(int(next(it)))
        except StopIteration:
            return out
        except errors.QueueServerError:
            out.append("ERR")


@pytest.mark.parametrize(
    "input_values,cycle_length,block_length,expected",
    [
        ([4, 5, 6], 1, 1, [4] * 4 + [5] * 5 + [6] * 6 + [4] * 4 + [5] * 5 + [6] * 6),
        ([4, 5, 6], 2, 1, [4, 5, 4, 5, 4, 5, 4, 5, 5, 6, 6, 4, 6, 4, 6, 4, 6, 4, 6, 5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 6]),
        ([4, 5, 6], 2, 3, [4, 4, 4, 5, 5, 5, 4, 5, 5, 6, 6, 6, 4, 4, 4, 6, 6, 6, 4, 5, 5, 5, 6, 6, 6, 5, 5, 6, 6, 6]),
        ([4, 5, 6], 7, 2, [4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6, 5, 6, 6, 5, 6, 6]),
        ([4, 0, 6], 2, 1, [4, 4, 6, 4, 6, 4, 6, 6, 4, 6, 4, 6, 4, 4, 6, 6, 6, 6, 6, 6]),
    ],
)
def test_python_implementation(input_values, cycle_length, block_length, expected):
    # InterleaveTest.testPythonImplementation: the reference the other tests compare with.
    assert list(_interleave(_repeat(input_values, 2), cycle_length, block_length)) == expected


@pytest.mark.parametrize(
    "input_values,cycle_length,block_length,num_parallel_calls",
    [
        ([4, 5, 6], 1, 3, None), ([4, 5, 6], 1, 3, 1), ([4, 5, 6], 2, 1, None), ([4, 5, 6], 2, 1, 1),
        ([4, 5, 6], 2, 1, 2), ([4, 5, 6], 2, 3, None), ([4, 5, 6], 2, 3, 1), ([4, 5, 6], 2, 3, 2),
        ([4, 5, 6], 7, 2, None), ([4, 5, 6], 7, 2, 1), ([4, 5, 6], 7, 2, 3), ([4, 5, 6], 7, 2, 5),
        ([4, 5, 6], 7, 2, 7), ([], 2, 3, None), ([0, 0, 0], 2, 3, None), ([4, 0, 6], 2, 3, None),
        ([4, 0, 6], 2, 3, 1), ([4, 0, 6], 2, 3, 2),
    ],
)
def test_interleave_dataset(input_values, cycle_length, block_length, num_parallel_calls):
    # InterleaveTest.testInterleaveDataset
    dataset = Dataset.from_tensor_slices(np.array(input_values, np.int64)).repeat(2).interleave(
        lambda x: Dataset.from_tensors(x).repeat(x), cycle_length, block_length, num_parallel_calls)
    expected = list(_interleave(_repeat(input_values, 2), cycle_length, block_length))
    assert [int(x) for x in dataset] == expected


def _check_numerics(x):
    if np.isnan(x):
        raise errors.InvalidArgumentError("message : Tensor had NaN values")
    return x


@pytest.mark.parametrize(
    "cycle_length,block_length,num_parallel_calls",
    [(1, 3, None), (1, 3, 1), (2, 1, None), (2, 1, 1), (2, 1, 2), (2, 3, None), (2, 3, 1), (2, 3, 2),
     (7, 2, None), (7, 2, 1), (7, 2, 3), (7, 2, 5), (7, 2, 7)],
)
def test_interleave_dataset_error(cycle_length, block_length, num_parallel_calls):
    # InterleaveTest.testInterleaveDatasetError: an input element's error comes out in its place.
    input_values = np.float32([1.0, np.nan, 2.0, np.nan, 3.0])
    dataset = Dataset.from_tensor_slices(input_values).map(_check_numerics).interleave(
        Dataset.from_tensors, cycle_length, block_length, num_parallel_calls)
    it = dataset.iterator()
    for value in input_values:
        if np.isnan(value):
            with pytest.raises(errors.InvalidArgumentError):
                it.get_next()
        else:
            assert float(it.get_next()) == value
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


_LENGTHS = {0: 4, 1: 1, 2: 4, 3: 2, 4: 2, 5: 3, 6: 1, 7: 2}


def _nested(x):
    x = int(x)
    return Dataset.range(x * 10, x * 10 + _LENGTHS[x])


def _fails_at(bad):
    def fn(x):
        if int(x) == bad:
            raise ValueError(f"input {bad}")
        return x
    return fn


def _fn_fails_at(bad):
    def fn(x):
        if int(x) == bad:
            raise ValueError(f"function on {bad}")
        return _nested(x)
    return fn


def _nested_fails_at(bad):
    def fn(x):
        return _nested(x).map(_fails_at(bad))
    return fn


@pytest.mark.parametrize("cycle_length", [2, 3, 4])
@pytest.mark.parametrize("block_length", [1, 2])
@pytest.mark.parametrize("num_parallel_calls", [2, 3, AUTOTUNE])
@pytest.mark.parametrize("where", ["input", "function", "nested"])
def test_parallel_errors_in_sequential_order(cycle_length, block_length, num_parallel_calls, where):
    # testInterleaveDatasetError with errors of each origin, where an input is opened ahead of the
    # cycle: the parallel output, errors included, is the sequential one.
    if num_parallel_calls != AUTOTUNE and num_parallel_calls > cycle_length:  # TensorFlow refuses these
        with pytest.raises(errors.InvalidArgumentError, match="less than or equal to `cycle_length`"):
            Dataset.range(8).interleave(_nested, cycle_length, block_length, num_parallel_calls)
        return
    for bad in (1, 3, 22, 31):  # 22, 31: elements of nested datasets, not inputs
        def build(par, bad=bad):
            src = Dataset.range(8)
            if where == "input":
                return src.map(_fails_at(bad) if bad < 8 else (lambda x: x)).interleave(
                    _nested, cycle_length, block_length, par)
            if where == "function":
                return src.interleave(_fn_fails_at(bad), cycle_length, block_length, par)
            return src.interleave(_nested_fails_at(bad), cycle_length, block_length, par)

        expected = _drain(build(None).iterator())
        assert ("ERR" in expected) == (where == "nested" or bad < 8)
        assert _drain(build(num_parallel_calls).iterator()) == expected, bad


def test_parallel_error_held_across_a_checkpoint():
    # testInterleaveDatasetError, resumed: an error opened ahead and saved in a state still comes
    # out in its place after a restore.
    def build():
        return Dataset.range(8).interleave(_fn_fails_at(3), cycle_length=3, num_parallel_calls=2)

    expected = _drain(build().iterator())
    for k in range(len(expected)):
        it = build().iterator()
        head = _drain_n(it, k)
        state = json.loads(json.dumps(it.get_state()))
        assert head + _drain(build().iterator(state=state)) == expected, k


def _drain_n(it, k) -> list:
    out: list = []
    while len(out) < k:
        try:
            out.append(int(next(it)))
        except errors.QueueServerError:
            out.append("ERR")
    return out


def test_default_cycle_length_is_the_schedulable_cores():
    # interleave's documentation: "If cycle_length is not set, it defaults to the number of
    # schedulable CPU cores" (InterleaveDatasetOp: port::MaxParallelism()); AUTOTUNE likewise.
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - no affinity API
        cores = os.cpu_count() or 1
    n = cores + 2
    lists = [[i] * 3 for i in range(n)]
    expected = list(_interleave(lists, cores, 1))
    for cycle in (None, AUTOTUNE):
        for par in (None, 2):
            ds = Dataset.range(n).interleave(lambda x: Dataset.from_tensors(x).repeat(3), cycle, None, par)
            assert [int(v) for v in ds] == expected


def test_default_cycle_length_on_one_core(monkeypatch):
    # The same rule with a single schedulable core: cycle_length 1 (TensorFlow does not raise it).
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    ds = Dataset.range(3).interleave(lambda x: Dataset.from_tensors(x).repeat(2))
    assert [int(v) for v in ds] == [0, 0, 1, 1, 2, 2]


# ----------------------------------------------------------------------------- InterleaveCheckpointTest
# experimental_symbolic_checkpoint is an Option not present here: both values run the same.
@pytest.mark.parametrize("num_parallel_calls", [None, 1, 2])
@pytest.mark.parametrize("block_length", [1, 3])
@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, symbolic_checkpoint, block_length, num_parallel_calls):  # InterleaveCheckpointTest.test
    input_values = np.array([2, 3], dtype=np.int64)

    def build():
        return Dataset.from_tensor_slices(input_values).repeat(2).interleave(
            lambda x: Dataset.from_tensors(x).repeat(x), 2, block_length, num_parallel_calls)

    verify(verify_fn, build, int(np.sum(input_values)) * 2)


@pytest.mark.parametrize("skip", [0, 1, 2, 3])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_with_skip(verify_fn, skip):  # InterleaveCheckpointTest.testWithSkip
    verify(verify_fn, lambda: Dataset.range(4).interleave(lambda x: Dataset.from_tensors(x).repeat(3), cycle_length=2,
                                                          block_length=1).skip(skip), 4 * 3 - skip)


def test_delayed_purge_checkpoint_at_the_same_cycle_idx():
    # InterleaveCheckpointTest.testDelayedPurgeCheckpointAtTheSameCycleIdx
    ds = Dataset.range(4).interleave(lambda x: Dataset.from_tensor_slices(np.array([x])), cycle_length=2,
                                     block_length=1)
    it = ds.iterator()
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = next(it)
    assert int(next(ds.iterator(state=state))) == int(expected)


def test_with_input_that_purge_checkpoint():  # InterleaveCheckpointTest.testWithInputThatPurgeCheckpoint
    def carefully_designed_map(x):
        return Dataset.from_tensor_slices(np.array([min(int(x), 2)]))

    ds = Dataset.from_tensor_slices(["does not matter"]).repeat(3).enumerate().map(lambda idx, x: idx)
    ds = ds.interleave(carefully_designed_map, cycle_length=2, block_length=1)
    it = ds.iterator()
    assert [int(x) for x in it] == [0, 1, 2]
    json.dumps(it.get_state())  # saving after the end works


@pytest.mark.parametrize("num_parallel_calls", [None, 2])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_nested(verify_fn, num_parallel_calls):  # InterleaveCheckpointTest.testNested
    def build():
        inner = Dataset.from_tensor_slices(np.arange(10))
        return Dataset.from_tensors(inner).repeat(10).interleave(lambda x: x, cycle_length=5,
                                                                 num_parallel_calls=num_parallel_calls)

    verify(verify_fn, build, 100)


@pytest.mark.skip(reason="sparse tensors do not exist here (no SparseTensorValue)")
def test_checkpoint_sparse():  # InterleaveCheckpointTest.testSparse
    pass


@pytest.mark.skip(reason="symbolic checkpointing is an Option not present here (every state is the position); "
                         "TensorFlow's UnimplementedError for windows under it has no counterpart")
def test_symbolic_unimplemented():  # InterleaveCheckpointTest.testSymbolicUnimplemented
    pass
