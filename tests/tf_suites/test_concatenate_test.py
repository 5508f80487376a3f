"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/concatenate_test.py``: the
expected values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, verify

from pipeline.data import Dataset
from queueserver import errors


def _check(concatenated, first, second):
    it = concatenated.iterator()
    for i in range(9):
        result = it.get_next()
        source, j = (first, i) if i < 4 else (second, i - 4)
        for component, got in zip(source, result):
            np.testing.assert_array_equal(component[j], got)
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_concatenate_dataset():  # ConcatenateTest.testConcatenateDataset
    a = (np.tile(np.array([[1], [2], [3], [4]]), 20), np.tile(np.array([[12], [13], [14], [15]]), 15),
         np.array([37.0, 38.0, 39.0, 40.0]))
    b = (np.tile(np.array([[1], [2], [3], [4], [5]]), 20), np.tile(np.array([[12], [13], [14], [15], [16]]), 15),
         np.array([37.0, 38.0, 39.0, 40.0, 41.0]))
    concatenated = Dataset.from_tensor_slices(a).concatenate(Dataset.from_tensor_slices(b))
    assert [s.shape for s in concatenated.element_spec] == [(20,), (15,), ()]
    assert concatenated.cardinality() == 9
    _check(concatenated, a, b)


def test_concatenate_dataset_different_shape():  # ConcatenateTest.testConcatenateDatasetDifferentShape
    a = (np.tile(np.array([[1], [2], [3], [4]]), 20), np.tile(np.array([[12], [13], [14], [15]]), 4))
    b = (np.tile(np.array([[1], [2], [3], [4], [5]]), 20), np.tile(np.array([[12], [13], [14], [15], [16]]), 15))
    concatenated = Dataset.from_tensor_slices(a).concatenate(Dataset.from_tensor_slices(b))
    assert [s.shape for s in concatenated.element_spec] == [(20,), (None,)]
    _check(concatenated, a, b)


# The TensorFlow file's older revisions match "have different types"; the TensorFlow that wrote
# tests/fixtures/golden.json says "Incompatible dataset elements" (both specs follow), as we do.
@pytest.mark.parametrize("first, second", [
    (  # ConcatenateTest.testConcatenateDatasetDifferentStructure
        (np.tile(np.array([[1], [2], [3], [4]]), 5), np.tile(np.array([[12], [13], [14], [15]]), 4)),
        (np.tile(np.array([[1], [2], [3], [4], [5]]), 20), np.tile(np.array([[12], [13], [14], [15], [16]]), 15),
         np.array([37.0, 38.0, 39.0, 40.0, 41.0]))),
    (  # ConcatenateTest.testConcatenateDatasetDifferentKeys
        {"foo": np.array([[1], [2], [3], [4]]), "bar": np.array([[12], [13], [14], [15]])},
        {"foo": np.array([[1], [2], [3], [4]]), "baz": np.array([[5], [6], [7], [8]])}),
    (  # ConcatenateTest.testConcatenateDatasetDifferentType
        (np.tile(np.array([[1], [2], [3], [4]]), 5), np.tile(np.array([[12], [13], [14], [15]]), 4)),
        (np.tile(np.array([[1.0], [2.0], [3.0], [4.0]]), 5), np.tile(np.array([[12], [13], [14], [15]]), 15))),
], ids=["different_structure", "different_keys", "different_type"])
def test_concatenate_incompatible(first, second):
    with pytest.raises(TypeError, match="Incompatible dataset elements"):
        Dataset.from_tensor_slices(first).concatenate(Dataset.from_tensor_slices(second))


@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_concatenate_core(verify_fn):  # ConcatenateCheckpointTest.testConcatenateCore
    array = np.tile(np.array([[16], [17], [18], [19], [20]]), 15)

    def build():
        a = (np.tile(np.array([[1], [2], [3], [4]]), 20), np.tile(np.array([[12], [13], [14], [15]]), 4))
        b = (np.tile(np.array([[5], [6], [7], [8], [9]]), 20), array)
        return Dataset.from_tensor_slices(a).concatenate(Dataset.from_tensor_slices(b))

    verify(verify_fn, build, 9)
