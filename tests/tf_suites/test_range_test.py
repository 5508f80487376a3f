"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/range_test.py`` (``output_type`` is
our ``dtype``): the expected values are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import Dataset
from queueserver import errors

DTYPES = [np.int32, np.int64, np.float32, np.float64]


def _check(ds, expected, dtype):
    got = list(ds)
    assert all(np.asarray(g).dtype == np.dtype(dtype) for g in got)
    np.testing.assert_array_equal(np.array(got, dtype), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stop(dtype):  # RangeTest.testStop
    _check(Dataset.range(5, dtype=dtype), np.arange(5, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_start_stop(dtype):  # RangeTest.testStartStop
    _check(Dataset.range(2, 5, dtype=dtype), np.arange(2, 5, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_start_stop_step(dtype):  # RangeTest.testStartStopStep
    _check(Dataset.range(2, 10, 2, dtype=dtype), np.arange(2, 10, 2, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_step(dtype):  # RangeTest.testZeroStep
    with pytest.raises(errors.InvalidArgumentError):
        Dataset.range(2, 10, 0, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_step(dtype):  # RangeTest.testNegativeStep
    _check(Dataset.range(2, 10, -1, dtype=dtype), np.arange(2, 10, -1, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stop_less_than_start(dtype):  # RangeTest.testStopLessThanStart
    _check(Dataset.range(10, 2, dtype=dtype), np.arange(10, 2, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stop_less_than_start_with_positive_step(dtype):  # RangeTest.testStopLessThanStartWithPositiveStep
    _check(Dataset.range(10, 2, 2, dtype=dtype), np.arange(10, 2, 2, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stop_less_than_start_with_negative_step(dtype):  # RangeTest.testStopLessThanStartWithNegativeStep
    _check(Dataset.range(10, 2, -1, dtype=dtype), np.arange(10, 2, -1, dtype=dtype), dtype)


@pytest.mark.parametrize("start", [-1, 0, 5])
@pytest.mark.parametrize("stop", [-5, 0, 10])
@pytest.mark.parametrize("step", [-3, 1, 5])
def test_multiple_combinations(start, stop, step):
    # RangeRandomAccessTest.testMultipleCombinations (element by element and the cardinality)
    expected = np.arange(start, stop, step, dtype=np.int64)
    ds = Dataset.range(start, stop, step)
    assert int(ds.cardinality()) == len(expected)
    _check(ds, expected, np.int64)
