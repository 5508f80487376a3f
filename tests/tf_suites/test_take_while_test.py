"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/take_while_test.py`` (its first
cases started in ``test_take_while_and_choose_test.py``): the expected values and error classes are
TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, verify

from pipeline.data import Dataset
from queueserver import errors


@pytest.mark.parametrize("num_elements, window_size", [(14, 2), (15, 2), (100, 3)])
def test_take_while_dataset(num_elements, window_size):  # TakeWhileTest.testTakeWhileDataset
    ds = Dataset.range(num_elements).batch(window_size).take_while(
        predicate=lambda elem: np.bool_(elem.shape[0] > window_size - 1)).flat_map(Dataset.from_tensor_slices)
    assert [int(x) for x in ds] == list(range(num_elements // window_size * window_size))


@pytest.mark.parametrize("num_elements, upper_bound", [(10, 2), (16, 7), (100, 99), (100, 101), (0, 1)])
def test_take_while_dataset_range(num_elements, upper_bound):  # TakeWhileTest.testTakeWhileDatasetRange
    ds = Dataset.range(num_elements).take_while(lambda x: x < upper_bound)
    assert [int(x) for x in ds] == list(range(min(num_elements, upper_bound)))


def test_take_while_dataset_string():  # TakeWhileTest.testTakeWhileDatasetString
    ds = Dataset.from_tensor_slices(["this", "is", "the", "test", "for", "strings"]).take_while(
        predicate=lambda x: np.bool_(x != b"test"))
    it = ds.iterator()
    assert [it.get_next() for _ in range(3)] == [b"this", b"is", b"the"]
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


@pytest.mark.parametrize("size, index", [(5, 3), (10, 0), (100, 5), (8, 7)])
def test_take_while_dataset_short_circuit(size, index):  # TakeWhileTest.testTakewhileDatasetShortCircuit
    boolean_array = [True] * size
    boolean_array[index] = False
    it = Dataset.from_tensor_slices(boolean_array).take_while(predicate=lambda e: e).iterator()
    for _ in range(index):
        assert bool(it.get_next())
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_take_while_dataset_with_repeat():  # TakeWhileTest.testTakeWhileDatasetWithRepeat
    assert [int(x) for x in Dataset.range(10).take_while(predicate=lambda x: x < 2).repeat(5)] == [0, 1] * 5


@pytest.mark.parametrize("upper_bound", [10, 23])
@pytest.mark.parametrize("num_elements", [10, 23])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, num_elements, upper_bound):  # TakeWhileCheckpointTest.test
    verify(verify_fn, lambda: Dataset.range(num_elements).take_while(predicate=lambda x: x < upper_bound),
           min(num_elements, upper_bound))
