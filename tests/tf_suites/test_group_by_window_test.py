"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/group_by_window_test.py``: the
expected values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import Dataset
from queueserver import errors


def test_simple():  # GroupByWindowTest.testSimple
    components = np.random.default_rng(0).integers(100, size=200).astype(np.int64)
    ds = Dataset.from_tensor_slices(components).map(lambda x: x * x).group_by_window(
        key_func=lambda x: x % 2, reduce_func=lambda _, xs: xs.batch(4), window_size=4)
    batches = [b.tolist() for b in ds]
    assert sorted(v for b in batches for v in b) == sorted((components * components).tolist())
    for b in batches:
        assert 1 <= len(b) <= 4 and len({v % 2 for v in b}) == 1
    assert sum(len(b) < 4 for b in batches) <= 2  # only the two last, partial windows


def test_immediate_output():  # GroupByWindowTest.testImmediateOutput
    components = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2] * 3, np.int64)
    ds = Dataset.from_tensor_slices(components).repeat(-1).group_by_window(
        key_func=lambda x: x % 3, reduce_func=lambda _, xs: xs.batch(4), window_size=4)
    it = iter(ds)
    assert [next(it).tolist() for _ in range(4)] == [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [0, 0, 0, 0]]


def test_small_groups_are_flushed_in_key_order():  # GroupByWindowTest.testSmallGroups
    components = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0], np.int64)
    ds = Dataset.from_tensor_slices(components).group_by_window(
        key_func=lambda x: x % 2, reduce_func=lambda _, xs: xs.batch(4), window_size=4)
    assert [b.tolist() for b in ds] == [[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0], [1]]


def test_window_size_func():  # our case: window_size_func as tf.data documents it
    ds = Dataset.range(9).group_by_window(key_func=lambda x: x % 3, reduce_func=lambda _, xs: xs.batch(10),
                                          window_size_func=lambda key: key + 1)
    assert [b.tolist() for b in ds] == [[0], [3], [1, 4], [6], [2, 5, 8], [7]]


def test_errors():  # our cases: tf.data's argument and key_func errors
    with pytest.raises(ValueError, match="Either the `window_size` argument or the `window_size_func`"):
        Dataset.range(3).group_by_window(lambda x: x, lambda _, w: w)
    with pytest.raises(errors.InvalidArgumentError, match="single tf.int64 scalar"):
        list(Dataset.range(3).group_by_window(lambda x: np.int32(0), lambda _, w: w, window_size=2))
