"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/as_numpy_iterator_test.py``: the
expected values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from tf_checkpoint import plain

from pipeline.data import Dataset


def test_basic():  # AsNumpyIteratorTest.testBasic
    assert [int(x) for x in Dataset.range(3).as_numpy_iterator()] == [0, 1, 2]


def test_nested_structure():  # AsNumpyIteratorTest.testNestedStructure
    point = collections.namedtuple("Point", ["x", "y"])
    ds = Dataset.from_tensor_slices({"a": ([1, 2], [3, 4]), "b": [5, 6], "c": point([7, 8], [9, 10])})
    got = list(ds.as_numpy_iterator())
    assert [plain(e) for e in got] == [{"a": (1, 3), "b": 5, "c": (7, 9)}, {"a": (2, 4), "b": 6, "c": (8, 10)}]
    assert all(type(e["c"]).__name__ == "Point" for e in got)


@pytest.mark.skip(reason="graph mode only: as_numpy_iterator outside eager execution")
def test_non_eager():  # AsNumpyIteratorTest.testNonEager
    pass


@pytest.mark.skip(reason="sparse tensors do not exist here (no SparseTensorValue)")
def test_sparse_element():  # AsNumpyIteratorTest.testSparseElement
    pass


@pytest.mark.skip(reason="a RaggedTensor here holds numpy arrays and is yielded as it is (later TensorFlow also "
                         "yields ragged values from as_numpy_iterator instead of refusing)")
def test_ragged_element():  # AsNumpyIteratorTest.testRaggedElement
    pass


@pytest.mark.parametrize("element", [lambda: Dataset.range(3), lambda: (np.array([1, 2, 3]), Dataset.range(3))],
                         ids=["testDatasetElement", "testNestedNonTensorElement"])
def test_invalid_element(element):  # AsNumpyIteratorTest.testDatasetElement / testNestedNonTensorElement
    with pytest.raises(TypeError, match=".*does not support datasets containing.*"):
        Dataset.from_tensors(element()).as_numpy_iterator()
