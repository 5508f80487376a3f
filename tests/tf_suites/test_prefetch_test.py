"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/prefetch_test.py``: the expected
values and error classes are TensorFlow's, the code is ours. ``random_access.at`` cases run by
iteration (:func:`tf_checkpoint.at`)."""

from __future__ import annotations

import pytest
from tf_checkpoint import VERIFY_FNS, at, verify

from pipeline.data import Dataset
from queueserver import errors


@pytest.mark.parametrize("buffer_size", [-1, None, 0, 42])
def test_buffer_size(buffer_size):  # PrefetchTest.testBufferSize
    assert [int(x) for x in Dataset.range(10).prefetch(buffer_size=buffer_size)] == list(range(10))


@pytest.mark.parametrize("buffer_size", [-2, -42])
def test_invalid_buffer_size(buffer_size):  # PrefetchTest.testInvalidBufferSize
    with pytest.raises(errors.InvalidArgumentError):
        Dataset.range(10).prefetch(buffer_size=buffer_size)


@pytest.mark.skip(reason="slack_period is an argument of TensorFlow's internal PrefetchDataset class (a performance "
                         "knob), not of Dataset.prefetch; it does not exist here")
def test_prefetch_with_slack():  # PrefetchTest.testPrefetchWithSlack
    pass


@pytest.mark.skip(reason="graph mode only: closing a Session cancels a get_next blocked in a running op; there are no "
                         "sessions here, and a Python function in an endless loop cannot be interrupted")
def test_prefetch_cancellation():  # PrefetchTest.testPrefetchCancellation
    pass


def test_name():  # PrefetchTest.testName (op names do not exist here: the output only)
    assert [int(x) for x in Dataset.from_tensors(42).prefetch(1)] == [42]


# experimental_symbolic_checkpoint is an Option not present here: both values run the same.
@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, symbolic_checkpoint):  # PrefetchCheckpointTest.test
    verify(verify_fn, lambda: Dataset.range(100).prefetch(10), 100)


@pytest.mark.parametrize("index", [-1, 10, 11])
def test_random_access_invalid_index(index):  # PrefetchRandomAccessTest.testInvalidIndex
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.range(10).prefetch(buffer_size=5), index)


@pytest.mark.parametrize("index", [-2, 0, 1])
def test_random_access_empty_dataset(index):  # PrefetchRandomAccessTest.testEmptyDataset
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.from_tensor_slices([]).prefetch(buffer_size=5), index)


@pytest.mark.parametrize("buffer_size", [0, 5, 10])
@pytest.mark.parametrize("elements", [10, 50, 100])
def test_random_access_multiple_combinations(elements, buffer_size):
    # PrefetchRandomAccessTest.testMultipleCombinations
    ds = Dataset.range(elements).prefetch(buffer_size=buffer_size)
    n = ds.cardinality()
    assert [int(x) for x in ds] == list(range(n))
    with pytest.raises(errors.OutOfRangeError):
        at(ds, n)
