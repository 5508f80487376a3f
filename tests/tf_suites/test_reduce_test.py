"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/reduce_test.py``: the expected
values are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import Dataset


def test_sum():  # ReduceTest.testSum
    for i in range(10):
        assert int(Dataset.range(1, i + 1).reduce(np.int64(0), lambda x, y: x + y)) == ((i + 1) * i) // 2


def test_sum_tuple():  # ReduceTest.testSumTuple
    for i in range(10):
        ds = Dataset.range(1, i + 1)
        assert int(Dataset.zip((ds, ds)).reduce(np.int64(0), lambda state, value: state + value[0] + value[1])) == (
            (i + 1) * i)


def test_sum_and_count():  # ReduceTest.testSumAndCount
    for i in range(10):
        s, c = Dataset.range(1, i + 1).reduce((np.int64(0), np.int64(0)),
                                              lambda state, v: (state[0] + v, state[1] + 1))
        assert (int(s), int(c)) == (((i + 1) * i) // 2, i)


def test_square_using_captured_value():
    # ReduceTest.testSkipEagerSquareUsingPlaceholder (a placeholder fed per run: a captured value here)
    for i in range(10):
        delta = np.int64(i)
        assert int(Dataset.range(1, i + 1).reduce(np.int64(0), lambda state, _, d=delta: state + d)) == i * i


@pytest.mark.skip(reason="sparse tensors do not exist here (no SparseTensorValue)")
def test_sparse():  # ReduceTest.testSparse
    pass


def test_nested():  # ReduceTest.testNested (its sparse component does not exist here: the dense one, a dict)
    def reduce_fn(state, value):
        state["dense"] += value["dense"]
        state["last"] = value["last"]
        return state

    def map_fn(v):
        return {"dense": np.int64(v), "last": np.int64(v)}

    for i in range(10):
        result = Dataset.range(1, i + 1).map(map_fn).reduce(map_fn(0), reduce_fn)
        assert (int(result["dense"]), int(result["last"])) == (((i + 1) * i) // 2, i)
