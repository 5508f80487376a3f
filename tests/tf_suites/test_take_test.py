"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/take_test.py``: the expected
values and error classes are TensorFlow's, the code is ours. ``random_access.at`` cases run by
iteration (:func:`tf_checkpoint.at`)."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, at, plain, verify

from pipeline.data import Dataset
from queueserver import errors


@pytest.mark.parametrize("count", [-1, 0, 4, 10, 25])
def test_basic(count):  # TakeTest.testBasic
    components = (np.arange(10),)
    ds = Dataset.from_tensor_slices(components).take(count)
    assert [s.shape for s in ds.element_spec] == [c.shape[1:] for c in components]
    n = min(count, 10) if count != -1 else 10
    assert [plain(e) for e in ds] == [(i,) for i in range(n)]
    assert ds.cardinality() == n


def test_name():  # TakeTest.testName (op names do not exist here: the output only)
    assert [int(x) for x in Dataset.from_tensors(42).take(1)] == [42]


# experimental_symbolic_checkpoint is an Option not present here: both values run the same.
@pytest.mark.parametrize("count, num_outputs", [(50, 50), (200, 100), (100, 100), (-1, 100), (0, 0)])
@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, symbolic_checkpoint, count, num_outputs):  # TakeDatasetCheckpointTest.test
    verify(verify_fn, lambda: Dataset.range(100).take(count), num_outputs)


@pytest.mark.parametrize("index", [-1, 3, 4])
def test_random_access_invalid_index(index):  # TakeRandomAccessTest.testInvalidIndex
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.range(10).take(3), index)


@pytest.mark.parametrize("index", [-2, 0, 1])
def test_random_access_empty_dataset(index):  # TakeRandomAccessTest.testEmptyDataset
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.from_tensor_slices([]).take(5), index)


@pytest.mark.parametrize("count", [-1, 0, 4, 10, 25])
def test_random_access_basic(count):  # TakeRandomAccessTest.testBasic
    ds = Dataset.range(10).take(count)
    n = min(count, 10) if count != -1 else 10
    for i in range(n):
        assert int(at(ds, i)) == i
    with pytest.raises(errors.OutOfRangeError):
        at(ds, n)


@pytest.mark.skip(reason="global_shuffle (random access over the whole input) does not exist here")
@pytest.mark.parametrize("case", ["TakeGlobalShuffleTest.test", "TakeGlobalShuffleCheckpointTest.test"])
def test_global_shuffle(case):
    pass
