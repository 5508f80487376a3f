"""Ported from TensorFlow's ``tensorflow/python/data/experimental/kernel_tests/unique_test.py``:
the expected values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, verify

from pipeline.data import Dataset, TensorSpec


def _unique(dtype, values):
    ds = Dataset.from_generator(lambda: iter([np.array(v, dtype) for v in values]),
                                output_signature=TensorSpec(None, dtype))
    return [np.asarray(e).tolist() for e in ds.unique()]


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("values, expected", [
    ([], []),
    ([1], [1]),
    ([1, 1, 1, 1, 1, 1, 1], [1]),
    ([1, 1, 1, 1, 0], [1, 0]),
    ([1, 2, 3, 4], [1, 2, 3, 4]),
    ([1, 2, 4, 3, 2, 1, 2, 3, 4], [1, 2, 4, 3]),
    ([[1], [1, 1], [1, 1, 1]], [[1], [1, 1], [1, 1, 1]]),
    ([[1, 1], [1, 1], [2, 2], [3, 3], [1, 1]], [[1, 1], [2, 2], [3, 3]]),
])
def test_simple_int(dtype, values, expected):  # UniqueTest.testSimpleInt
    assert _unique(dtype, values) == expected


@pytest.mark.parametrize("values, expected", [
    ([], []),
    (["hello"], [b"hello"]),
    (["hello", "hello", "hello"], [b"hello"]),
    (["hello", "world"], [b"hello", b"world"]),
    (["foo", "bar", "baz", "baz", "bar", "foo"], [b"foo", b"bar", b"baz"]),
])
def test_simple_string(values, expected):  # UniqueTest.testSimpleString
    ds = Dataset.from_tensor_slices(values) if values else Dataset.from_tensor_slices(np.array([], object))
    assert [bytes(e) for e in ds.unique()] == expected


@pytest.mark.parametrize("dtype", [np.bool_, np.float64, np.complex64, np.float32, np.float16])
def test_unsupported_types(dtype):  # UniqueTest.testUnsupportedTypes
    with pytest.raises(TypeError, match="does not support type"):
        Dataset.from_generator(lambda: [], output_signature=TensorSpec((), dtype)).unique()


def test_unique_checkpoint():  # UniqueCheckpointTest.testUnique
    ds = Dataset.range(20).map(lambda x: x % 7).unique()
    it = ds.iterator()
    head = [int(next(it)) for _ in range(3)]
    rest = [int(x) for x in ds.iterator(state=it.get_state())]
    assert head + rest == list(range(7))


@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_unique_checkpoint_verifications(verify_fn):
    # UniqueCheckpointTest.testUnique under checkpoint_test_base's verifications
    verify(verify_fn, lambda: Dataset.range(20).map(lambda x: x % 7).unique(), 7)
