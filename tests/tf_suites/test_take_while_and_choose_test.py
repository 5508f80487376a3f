"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/take_while_test.py``,
``directed_interleave_dataset_test.py`` (choose_from_datasets) and ``get_single_element_test.py``:
the expected values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import Dataset
from queueserver import errors


@pytest.mark.parametrize("num_elements, upper_bound", [(14, 2), (15, 2), (100, 3)])
def test_take_while_dataset(num_elements, upper_bound):  # TakeWhileTest.testTakeWhileDataset
    ds = Dataset.range(num_elements).take_while(lambda x: x < upper_bound)
    assert [int(x) for x in ds] == list(range(min(num_elements, upper_bound)))


def test_take_while_stops_for_good_and_keeps_its_state():  # testTakeWhileDatasetShortCircuit
    ds = Dataset.from_tensor_slices(np.array([1, 2, 3, 10, 1, 2], np.int64)).take_while(lambda x: x < 5)
    it = ds.iterator()
    assert [int(next(it)) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(StopIteration):
        next(it)
    with pytest.raises(StopIteration):  # later small elements do not come through
        next(it)
    assert list(ds.iterator(state=it.get_state())) == []


def test_take_while_predicate_must_be_a_scalar_boolean():  # testTakeWhileDatasetNonBoolPredicate
    with pytest.raises(errors.InvalidArgumentError, match="scalar boolean"):
        list(Dataset.range(3).take_while(lambda x: x))


def test_choose_from_datasets():  # DirectedInterleaveDatasetTest.testChooseFromDatasets
    words = [b"foo", b"bar", b"baz"]
    datasets = [Dataset.from_tensors(w).repeat() for w in words]
    choices = np.random.default_rng(0).integers(3, size=15).astype(np.int64)
    ds = Dataset.choose_from_datasets(datasets, Dataset.from_tensor_slices(choices))
    assert list(ds) == [words[i] for i in choices]


def test_choose_from_datasets_stopping_on_empty_dataset():  # testChooseFromDatasetsStoppingOnEmptyDataset
    datasets = [Dataset.from_tensors(b"foo").repeat(2), Dataset.from_tensors(b"bar").repeat(),
                Dataset.from_tensors(b"baz").repeat()]
    choices = Dataset.from_tensor_slices(np.array([0, 0, 0, 1, 1, 1, 2, 2, 2], np.int64))
    assert list(Dataset.choose_from_datasets(datasets, choices, stop_on_empty_dataset=True)) == [b"foo"] * 2


def test_choose_from_datasets_skipping_empty_datasets():  # testChooseFromDatasetsSkippingEmptyDatasets
    datasets = [Dataset.from_tensors(b"foo").repeat(2), Dataset.from_tensors(b"bar").repeat(),
                Dataset.from_tensors(b"baz").repeat()]
    choices = Dataset.from_tensor_slices(np.array([0, 0, 0, 1, 1, 1, 2, 2, 2], np.int64))
    out = list(Dataset.choose_from_datasets(datasets, choices, stop_on_empty_dataset=False))
    assert out == [b"foo"] * 2 + [b"bar"] * 3 + [b"baz"] * 3


def test_choose_from_datasets_errors():  # DirectedInterleaveDatasetTest.testErrors
    with pytest.raises(TypeError, match="must be a dataset of scalar"):
        Dataset.choose_from_datasets([Dataset.range(10), Dataset.range(20)], Dataset.from_tensors(0.0))
    with pytest.raises(TypeError, match="must be a dataset of scalar"):
        Dataset.choose_from_datasets([Dataset.range(10), Dataset.range(20)],
                                     Dataset.from_tensors(np.array([1, 2], np.int64)))
    bad = Dataset.choose_from_datasets([Dataset.range(10)], Dataset.from_tensor_slices(np.array([0, 3], np.int64)))
    it = iter(bad)
    assert int(next(it)) == 0
    with pytest.raises(errors.InvalidArgumentError, match="Selector index out of range"):
        next(it)


def test_get_single_element():  # GetSingleElementTest.testGetSingleElement
    assert int(Dataset.range(10).skip(4).take(1).get_single_element()) == 4
    with pytest.raises(errors.InvalidArgumentError, match="Dataset was empty."):
        Dataset.range(10).skip(10).get_single_element()
    with pytest.raises(errors.InvalidArgumentError, match="Dataset had more than one element."):
        Dataset.range(10).skip(4).take(2).get_single_element()


@pytest.mark.parametrize("weights", [[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.0, 0.5], None])
def test_sample_from_datasets(weights):  # DirectedInterleaveDatasetTest.testSampleFromDatasets
    n = 4000
    datasets = [Dataset.from_tensors(np.int64(i)).repeat() for i in range(4)]
    ds = Dataset.sample_from_datasets(datasets, weights, seed=619)
    counts = np.bincount([int(x) for x in ds.take(n)], minlength=4) / n
    expected = np.full(4, 0.25) if weights is None else np.asarray(weights)
    assert np.allclose(counts, expected, atol=0.03), counts
    again = [int(x) for x in Dataset.sample_from_datasets(datasets, weights, seed=619).take(50)]
    assert again == [int(x) for x in ds.take(50)]  # the same seed draws the same sequence


def test_sample_from_datasets_drops_exhausted_inputs():  # testSampleFromDatasetsSkippingEmptyDatasets
    ds = Dataset.sample_from_datasets([Dataset.range(3), Dataset.range(10, 110)], [0.5, 0.5], seed=3)
    out = [int(x) for x in ds]
    assert sorted(out) == [0, 1, 2] + list(range(10, 110))
    stopping = Dataset.sample_from_datasets([Dataset.range(0), Dataset.range(10, 20)], [0.5, 0.5], seed=3,
                                            stop_on_empty_dataset=True)
    assert len([int(x) for x in stopping]) < 10  # ends at the first draw of the empty input


def test_sample_from_datasets_errors_and_checkpoint():  # DirectedInterleaveDatasetTest.testErrors
    with pytest.raises(ValueError, match="should have the same number of elements"):
        Dataset.sample_from_datasets([Dataset.range(10), Dataset.range(20)], weights=[0.25, 0.25, 0.25, 0.25])
    ds = Dataset.sample_from_datasets([Dataset.range(0, 50), Dataset.range(100, 150)], seed=7)
    it = ds.iterator()
    head = [int(next(it)) for _ in range(20)]
    rest = [int(x) for x in ds.iterator(state=it.get_state())]
    assert head + rest == [int(x) for x in ds]
