"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/sample_from_datasets_test.py`` (its
first cases, from directed_interleave_dataset_test.py, started in ``test_take_while_and_choose_test.py``):
the expected values and error classes are TensorFlow's, the code is ours. The draws come from our own
seeded generator (TensorFlow's random sequence cannot be reproduced), so, as TensorFlow's tests do,
these check the distribution and the rules, not one sequence."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, verify

from pipeline.data import INFINITE_CARDINALITY, Dataset
from queueserver import errors

WEIGHTS_TYPES = ["list", "tensor", "dataset"]


def _weights(weights_list, weights_type):
    if weights_type == "list":
        return list(weights_list)
    if weights_type == "tensor":
        return np.asarray(weights_list, np.float32)
    return Dataset.from_tensors(np.asarray(weights_list, np.float64)).repeat()


def _chi2(expected, actual):
    expected, actual = np.asarray(expected), np.asarray(actual)
    return np.sum((actual - expected) ** 2 / expected, axis=0)


@pytest.mark.parametrize("weights_type", WEIGHTS_TYPES)
def test_sample_from_datasets(weights_type):  # SampleFromDatasetsTest.testSampleFromDatasets
    num_samples = 5000
    rand_probs = np.random.default_rng(1619).random(5)
    rand_probs /= rand_probs.sum()
    for probs in [[0.85, 0.05, 0.1], rand_probs, [1.0]]:
        classes = len(probs)
        ds = Dataset.sample_from_datasets([Dataset.from_tensors(i).repeat() for i in range(classes)],
                                          _weights(probs, weights_type), seed=1619).take(num_samples)
        it = ds.iterator()
        freqs = np.zeros([classes])
        for _ in range(num_samples):
            freqs[int(it.get_next())] += 1
        with pytest.raises(errors.OutOfRangeError):
            it.get_next()
        assert _chi2(probs, freqs / num_samples) < 1e-2


def _three():
    return [Dataset.from_tensors(np.int64(-1)), Dataset.from_tensors(np.int64(1)).repeat(), Dataset.range(10).repeat()]


@pytest.mark.parametrize("weights_type", WEIGHTS_TYPES)
def test_stopping_on_empty_dataset(weights_type):  # SampleFromDatasetsTest.testSampleFromDatasetsStoppingOnEmptyDataset
    ds = Dataset.sample_from_datasets(_three(), weights=_weights([0.5, 0.1, 0.4], weights_type),
                                      stop_on_empty_dataset=True)
    assert [int(x) for x in ds].count(-1) == 1


@pytest.mark.parametrize("weights_type", WEIGHTS_TYPES)
def test_skipping_empty_dataset(weights_type):  # SampleFromDatasetsTest.testSampleFromDatasetsSkippingEmptyDataset
    ds = Dataset.sample_from_datasets(_three(), weights=_weights([0.5, 0.1, 0.4], weights_type),
                                      stop_on_empty_dataset=False).take(100)
    samples = [int(x) for x in ds]
    assert len(samples) == 100 and samples.count(-1) == 1


@pytest.mark.parametrize("weights_type", WEIGHTS_TYPES)
def test_with_zero_weight(weights_type):  # SampleFromDatasetsTest.testSampleFromDatasetsWithZeroWeight
    ds = Dataset.sample_from_datasets([Dataset.from_tensors(-1).repeat(2), Dataset.from_tensors(1).repeat(2)],
                                      weights=_weights([0.0, 1.0], weights_type), stop_on_empty_dataset=True)
    assert [int(x) for x in ds] == [1, 1]


@pytest.mark.parametrize("weights_type", WEIGHTS_TYPES)
def test_from_empty_dataset(weights_type):  # SampleFromDatasetsTest.testSampleFromEmptyDataset
    ds = Dataset.sample_from_datasets([Dataset.range(0), Dataset.range(1).repeat()],
                                      weights=_weights([1.0, 0.0], weights_type), stop_on_empty_dataset=True)
    assert list(ds) == []


def test_skipping_datasets_with_zero_weight():  # SampleFromDatasetsTest.testSampleFromDatasetsSkippingDatasetsWithZeroWeight
    ds = Dataset.sample_from_datasets([Dataset.from_tensors(-1).repeat(), Dataset.from_tensors(1)],
                                      weights=np.asarray([0.0, 1.0]), stop_on_empty_dataset=False)
    assert [int(x) for x in ds] == [1]


def test_all_weights_are_zero():  # SampleFromDatasetsTest.testSampleFromDatasetsAllWeightsAreZero
    ds = Dataset.sample_from_datasets([Dataset.from_tensors(-1).repeat(), Dataset.from_tensors(1).repeat()],
                                      weights=np.asarray([0.0, 0.0]), stop_on_empty_dataset=False)
    assert list(ds) == []


def test_cardinality():  # SampleFromDatasetsTest.testSampleFromDatasetsCardinality
    ds = Dataset.sample_from_datasets([Dataset.from_tensors([1.0]).repeat(), Dataset.from_tensors([2.0]).repeat()])
    assert ds.cardinality() == INFINITE_CARDINALITY


def test_nested():  # SampleFromDatasetsTest.testSampleFromDatasetsNested
    ds = Dataset.sample_from_datasets([Dataset.range(10).window(2), Dataset.range(10, 20).window(2)],
                                      weights=[0.3, 0.7]).flat_map(lambda x: x)
    assert int(ds.iterator().get_next()) in (0, 10)


def _sampled(rerandomize):
    return Dataset.sample_from_datasets([Dataset.range(0, 10), Dataset.range(100, 110)], seed=42, weights=[0.5, 0.5],
                                        stop_on_empty_dataset=True, rerandomize_each_iteration=rerandomize)


@pytest.mark.parametrize("rerandomize", [None, True, False])
def test_rerandomize_each_iteration_epochs(rerandomize):
    # SampleFromDatasetsTest.testSampleFromDatasetsRerandomizeEachIterationEpochs
    ds = _sampled(rerandomize)
    first, second = [int(x) for x in ds], [int(x) for x in ds]
    assert (first != second) if rerandomize else (first == second)


@pytest.mark.parametrize("rerandomize", [None, True, False])
def test_rerandomize_repeat_epochs(rerandomize):  # SampleFromDatasetsTest.testSampleFromDatasetsRerandomizeRepeatEpochs
    epochs = [int(x) for x in _sampled(rerandomize).repeat(2)]
    first, second = epochs[: len(epochs) // 2], epochs[len(epochs) // 2:]
    assert (first != second) if rerandomize else (first == second)


@pytest.mark.parametrize("rerandomize", [None, True, False])
def test_rerandomize_inside_function(rerandomize):
    # SampleFromDatasetsTest.testSampleFromDatasetsRerandomizeInsideFunction (a tf.function there:
    # the dataset made by a plain function here)
    def make_dataset():
        return _sampled(rerandomize)

    ds = make_dataset()
    first, second = [int(x) for x in ds], [int(x) for x in ds]
    assert (first != second) if rerandomize else (first == second)


def test_errors():  # SampleFromDatasetsTest.testErrors
    with pytest.raises(ValueError, match=r"should have the same length"):
        Dataset.sample_from_datasets([Dataset.range(10), Dataset.range(20)], weights=[0.25, 0.25, 0.25, 0.25])
    with pytest.raises(TypeError, match="`tf.float32` or `tf.float64`"):
        Dataset.sample_from_datasets([Dataset.range(10), Dataset.range(20)], weights=[1, 1])
    with pytest.raises(TypeError, match="must have compatible"):
        Dataset.sample_from_datasets([Dataset.from_tensors(0), Dataset.from_tensors(0.0)])
    with pytest.raises(ValueError, match=r"Invalid `datasets`. `datasets` should not be empty."):
        Dataset.sample_from_datasets(datasets=[], weights=[])


# experimental_symbolic_checkpoint is an Option not present here: both values run the same.
@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, symbolic_checkpoint):  # SampleFromDatasetsCheckpointTest.test
    verify(verify_fn, lambda: Dataset.sample_from_datasets([Dataset.from_tensors(i).repeat(None) for i in range(2)],
                                                          [0.5, 0.5], seed=1813).take(100), 100)
