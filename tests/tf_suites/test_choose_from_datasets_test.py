"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/choose_from_datasets_test.py``
(the cases it shares with directed_interleave_dataset_test.py started in
``test_take_while_and_choose_test.py``): the expected values and error classes are TensorFlow's,
the code is ours."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, verify

from pipeline.data import Dataset
from queueserver import errors

WORDS = [b"foo", b"bar", b"baz"]


def test_choose_from_datasets():  # ChooseFromDatasetsTest.testChooseFromDatasets
    choice_array = np.random.default_rng(5).integers(3, size=(15,), dtype=np.int64)
    ds = Dataset.choose_from_datasets([Dataset.from_tensors(w).repeat() for w in WORDS],
                                      Dataset.from_tensor_slices(choice_array))
    it = ds.iterator()
    assert [it.get_next() for _ in choice_array] == [WORDS[i] for i in choice_array]
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def _three():
    return [Dataset.from_tensors(b"foo").repeat(2), Dataset.from_tensors(b"bar").repeat(),
            Dataset.from_tensors(b"baz").repeat()]


CHOICES = np.asarray([0, 0, 0, 1, 1, 1, 2, 2, 2], dtype=np.int64)


def test_stopping_on_empty_dataset():  # ChooseFromDatasetsTest.testChooseFromDatasetsStoppingOnEmptyDataset
    ds = Dataset.choose_from_datasets(_three(), Dataset.from_tensor_slices(CHOICES), stop_on_empty_dataset=True)
    assert list(ds) == [b"foo", b"foo"]


def test_skipping_empty_datasets():  # ChooseFromDatasetsTest.testChooseFromDatasetsSkippingEmptyDatasets
    ds = Dataset.choose_from_datasets(_three(), Dataset.from_tensor_slices(CHOICES), stop_on_empty_dataset=False)
    assert list(ds) == [b"foo", b"foo", b"bar", b"bar", b"bar", b"baz", b"baz", b"baz"]


def test_choice_dataset_is_empty():  # ChooseFromDatasetsTest.testChooseFromDatasetsChoiceDatasetIsEmpty
    ds = Dataset.choose_from_datasets([Dataset.from_tensors(w).repeat() for w in WORDS], Dataset.range(0),
                                      stop_on_empty_dataset=False)
    assert list(ds) == []


def test_nested():  # ChooseFromDatasetsTest.testChooseFromDatasetsNested
    ds = Dataset.choose_from_datasets([Dataset.range(10).window(2), Dataset.range(10, 20).window(2)],
                                      Dataset.range(2).repeat(5)).flat_map(lambda x: x)
    expected = [v for i in range(5) for j in range(2) for v in (10 * j + 2 * i, 10 * j + 2 * i + 1)]
    assert [int(x) for x in ds] == expected


def test_errors():  # ChooseFromDatasetsTest.testErrors
    two = [Dataset.from_tensors(0), Dataset.from_tensors(1)]
    with pytest.raises(TypeError, match="tf.int64"):
        Dataset.choose_from_datasets(two, choice_dataset=Dataset.from_tensors(1.0))
    with pytest.raises(TypeError, match="scalar"):
        Dataset.choose_from_datasets(two, choice_dataset=Dataset.from_tensors([1.0]))
    with pytest.raises(errors.InvalidArgumentError, match="out of range"):
        Dataset.choose_from_datasets([Dataset.from_tensors(0)],
                                     choice_dataset=Dataset.from_tensors(np.int64(1))).iterator().get_next()
    with pytest.raises(ValueError, match=r"Invalid `datasets`. `datasets` should not be empty."):
        Dataset.choose_from_datasets(datasets=[], choice_dataset=Dataset.from_tensors(1.0))
    with pytest.raises(TypeError, match=r"`choice_dataset` should be a `tf.data.Dataset`"):
        Dataset.choose_from_datasets([Dataset.range(42)], choice_dataset=None)


# experimental_symbolic_checkpoint is an Option not present here: both values run the same.
@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, symbolic_checkpoint):  # ChooseFromDatasetsCheckpointTest.test
    # TensorFlow shuffles the choices with stateless_shuffle(seed=[1, 2]); any fixed order serves.
    indices = np.random.default_rng(12).permutation(np.repeat(np.arange(5, dtype=np.int64), 20))
    verify(verify_fn, lambda: Dataset.choose_from_datasets([Dataset.range(20) for _ in range(5)],
                                                          Dataset.from_tensor_slices(indices)), 100)
