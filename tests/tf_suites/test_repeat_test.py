"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/repeat_test.py``: the expected
values and error classes are TensorFlow's, the code is ours. ``random_access.at`` cases run by
iteration (:func:`tf_checkpoint.at`)."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, at, plain, verify

from pipeline.data import INFINITE_CARDINALITY, Dataset
from queueserver import errors

_COMPONENTS = (np.array(1), np.array([1, 2, 3]), np.array(37.0))


def _shapes(ds):
    return [s.shape for s in ds.element_spec]


@pytest.mark.parametrize("count", [0, 3, 7])
def test_finite_repeat(count):  # RepeatTest.testFiniteRepeat
    ds = Dataset.from_tensors(_COMPONENTS).repeat(count)
    assert _shapes(ds) == [c.shape for c in _COMPONENTS]
    assert [plain(e) for e in ds] == [plain(_COMPONENTS)] * count


def test_infinite_repeat():  # RepeatTest.testInfiniteRepeat
    ds = Dataset.from_tensors(_COMPONENTS).repeat(-1)
    assert _shapes(ds) == [c.shape for c in _COMPONENTS]
    it = ds.iterator()
    for _ in range(17):
        assert plain(it.get_next()) == plain(_COMPONENTS)


def test_repeat_repeat():  # RepeatTest.testRepeatRepeat
    ds = Dataset.from_tensors(_COMPONENTS).repeat(7).repeat(14)
    assert _shapes(ds) == [c.shape for c in _COMPONENTS]
    assert [plain(e) for e in ds] == [plain(_COMPONENTS)] * (7 * 14)


def test_name():  # RepeatTest.testName (op names do not exist here: the output only)
    assert [int(x) for x in Dataset.from_tensors(42).repeat(1)] == [42]


def _build(num_elements, num_epochs, num_outputs=None):
    ds = Dataset.range(num_elements).repeat(num_epochs)
    if num_outputs:
        ds = Dataset.zip((ds, Dataset.range(num_outputs)))
    return ds


# experimental_symbolic_checkpoint is an Option not present here: both values run the same.
@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_finite_repeat(verify_fn, symbolic_checkpoint):  # RepeatDatasetCheckpointTest.testFiniteRepeat
    verify(verify_fn, lambda: _build(10, 10), 100)


@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_empty_repeat(verify_fn, symbolic_checkpoint):  # RepeatDatasetCheckpointTest.testEmptyRepeat
    verify(verify_fn, lambda: _build(10, 0), 0)


@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_infinite_repeat(verify_fn, symbolic_checkpoint):  # RepeatDatasetCheckpointTest.testInfiniteRepeat
    verify(verify_fn, lambda: _build(10, -1, 100), 100)


@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_infinite_empty_repeat(verify_fn, symbolic_checkpoint):
    # RepeatDatasetCheckpointTest.testInfiniteEmptyRepeat
    verify(verify_fn, lambda: _build(0, -1), 0)


@pytest.mark.parametrize("index", [-1, 6, 7])
def test_random_access_invalid_index(index):  # RepeatRandomAccessTest.testInvalidIndex
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.from_tensor_slices([1, 2, 3]).repeat(2), index)


@pytest.mark.parametrize("index", [-1, 0])
def test_random_access_empty_dataset(index):  # RepeatRandomAccessTest.testEmptyDataset
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.from_tensor_slices([]).repeat(2), index)


@pytest.mark.parametrize("count", [0, 3, 8])
@pytest.mark.parametrize("elements", [0, 5, 10])
def test_random_access_finite_repeat(elements, count):  # RepeatRandomAccessTest.testFiniteRepeat
    ds = Dataset.range(elements).repeat(count)
    expected = np.tile(np.arange(elements, dtype=np.int64), count)
    assert [int(x) for x in ds] == expected.tolist()
    assert ds.cardinality() == elements * count


@pytest.mark.parametrize("count_2", [3, 4, 5])
@pytest.mark.parametrize("count_1", [0, 1, 2])
@pytest.mark.parametrize("elements", [0, 3, 5])
def test_random_access_repeat_repeat(elements, count_1, count_2):  # RepeatRandomAccessTest.testRepeatRepeat
    ds = Dataset.range(elements).repeat(count_1).repeat(count_2)
    assert [int(x) for x in ds] == np.tile(np.arange(elements), count_1 * count_2).tolist()


@pytest.mark.parametrize("count", [None, -1, -2])
@pytest.mark.parametrize("elements", [3, 5])
def test_random_access_infinite_repeat(elements, count):
    # RepeatRandomAccessTest.testInfiniteRepeat: TensorFlow refuses random access because the
    # cardinality is infinite; that cardinality, and the endless elements.
    ds = Dataset.range(elements).repeat(count=count)
    assert ds.cardinality() == INFINITE_CARDINALITY
    it = ds.iterator()
    assert [int(it.get_next()) for _ in range(3 * elements)] == list(range(elements)) * 3


@pytest.mark.skip(reason="global_shuffle (random access over the whole input) does not exist here")
@pytest.mark.parametrize("case", ["RepeatGlobalShuffleTest.testRepeat", "RepeatGlobalShuffleTest.testInvalidDataset",
                                  "RepeatGlobalShuffleCheckpointTest.testRepeat"])
def test_global_shuffle(case):
    pass
