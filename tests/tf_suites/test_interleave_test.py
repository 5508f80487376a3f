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
