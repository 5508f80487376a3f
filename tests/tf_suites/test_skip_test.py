"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/skip_test.py``: the expected
values and error classes are TensorFlow's, the code is ours. ``random_access.at`` cases run by
iteration (:func:`tf_checkpoint.at`)."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, at, plain, verify

from pipeline.data import Dataset
from queueserver import errors


@pytest.mark.parametrize("count", [-1, 0, 4, 10, 25])
def test_basic(count):  # SkipTest.testBasic
    components = (np.arange(10),)
    ds = Dataset.from_tensor_slices(components).skip(count)
    assert [s.shape for s in ds.element_spec] == [c.shape[1:] for c in components]
    start = min(count, 10) if count != -1 else 10
    assert [plain(e) for e in ds] == [(i,) for i in range(start, 10)]
    assert ds.cardinality() == 10 - start


def test_name():  # SkipTest.testName (op names do not exist here: the output only)
    assert [int(x) for x in Dataset.from_tensors(42).skip(0)] == [42]


# experimental_symbolic_checkpoint is an Option not present here: both values run the same.
@pytest.mark.parametrize("count, num_outputs", [(50, 50), (200, 0), (100, 0), (-1, 0), (0, 100)])
@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, symbolic_checkpoint, count, num_outputs):  # SkipDatasetCheckpointTest.test
    verify(verify_fn, lambda: Dataset.range(100).skip(count), num_outputs)


@pytest.mark.parametrize("index", [-1, 2, 3])
def test_random_access_invalid_index(index):  # SkipRandomAccessTest.testInvalidIndex
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.range(10).skip(8), index)


@pytest.mark.parametrize("index", [-1, 0])
def test_random_access_empty_dataset(index):  # SkipRandomAccessTest.testEmptyDataset
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.from_tensor_slices([]).skip(8), index)


def test_random_access_basic():  # SkipRandomAccessTest.testBasic
    ds = Dataset.range(11).skip(3)
    assert [int(at(ds, i)) for i in range(8)] == [i + 3 for i in range(8)]


@pytest.mark.parametrize("skip", [-2, -1])
def test_random_access_negative_skip(skip):  # SkipRandomAccessTest.testNegativeSkip
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.range(11).skip(skip), 0)


@pytest.mark.parametrize("skip", [5, 8])
def test_random_access_skip_greater_than_num_elements(skip):  # SkipRandomAccessTest.testSkipGreaterThanNumElements
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.range(4).skip(skip), 0)


@pytest.mark.parametrize("skip", [-1, 0, 5, 15])
@pytest.mark.parametrize("elements", [0, 5, 10])
def test_random_access_multiple_combinations(elements, skip):  # SkipRandomAccessTest.testMultipleCombinations
    ds = Dataset.range(elements).skip(skip)
    assert [int(at(ds, i)) for i in range(ds.cardinality())] == [i + skip for i in range(ds.cardinality())]


@pytest.mark.skip(reason="global_shuffle (random access over the whole input) does not exist here")
@pytest.mark.parametrize("case", ["SkipGlobalShuffleTest.testSkip", "SkipGlobalShuffleTest.testNegativeSkip",
                                  "SkipGlobalShuffleCheckpointTest.testSkip"])
def test_global_shuffle(case):
    pass
