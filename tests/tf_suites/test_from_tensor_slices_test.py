"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/from_tensor_slices_test.py`` and
``from_tensors_test.py``: the expected values are TensorFlow's, the code is ours."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, at, plain, verify

from pipeline.data import Dataset, DatasetSpec, RaggedTensor
from queueserver import errors


def test_from_tensor_slices_dataset():  # FromTensorSlicesTest.testFromTensorSlicesDataset
    dss = [Dataset.range(10) for _ in range(10)]
    ds = Dataset.from_tensor_slices(dss).flat_map(lambda x: x)
    assert [int(x) for x in ds] == list(range(10)) * 10


def test_from_tensor_slices_dataset_of_ordered_dict():  # testFromTensorSlicesDatasetOfOrderedDict
    dss = [Dataset.range(10).map(lambda x: collections.OrderedDict([("x", x)])) for _ in range(10)]
    ds = Dataset.from_tensor_slices(dss)
    assert isinstance(ds.element_spec, DatasetSpec) and ds.cardinality() == 10
    assert [int(e["x"]) for e in ds.flat_map(lambda x: x)] == list(range(10)) * 10


def test_from_tensors_dataset():  # FromTensorsTest.testFromTensorsDataset
    ds = Dataset.from_tensors(Dataset.range(10)).flat_map(lambda x: x)
    assert [int(x) for x in ds] == list(range(10))


def test_a_list_of_datasets_is_never_iterated_into_bytes():
    # Before: each dataset in the list was iterated and its elements packed into bytes.
    runs = []

    def gen():
        runs.append(1)
        yield from range(3)

    # As TensorFlow (unbatch_test.testUnbatchNestedDataset): one element, a vector of datasets.
    ds = Dataset.from_tensors([Dataset.from_generator(gen), Dataset.range(2)])
    assert runs == []
    assert [int(x) for x in ds.unbatch().flat_map(lambda d: d)] == [0, 1, 2, 0, 1]
    assert runs == [1]


# ----------------------------------------------------------------------------- the rest of from_tensor_slices_test.py
_COMPONENTS = (np.tile(np.array([[1], [2], [3], [4]]), 20), np.tile(np.array([[12], [13], [14], [15]]), 22),
               np.array([37.0, 38.0, 39.0, 40.0]))


def test_empty_component():  # FromTensorSlicesTest.testFromTensorSlicesEmptyComponent
    with pytest.raises(ValueError):
        Dataset.from_tensor_slices(())


def test_from_tensor_slices():  # FromTensorSlicesTest.testFromTensorSlices
    ds = Dataset.from_tensor_slices(_COMPONENTS)
    assert [s.shape for s in ds.element_spec] == [c.shape[1:] for c in _COMPONENTS]
    it = ds.iterator()
    for i in range(4):
        for component, got in zip(_COMPONENTS, it.get_next()):
            np.testing.assert_array_equal(component[i], got)
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_dataset_in_function():  # FromTensorSlicesTest.testFromTensorSlicesDatasetInFunction
    ds = Dataset.from_tensors([Dataset.range(10) for _ in range(10)])
    ds = ds.flat_map(Dataset.from_tensor_slices).flat_map(lambda x: x)
    assert [int(x) for x in ds] == list(range(10)) * 10


@pytest.mark.skip(reason="sparse tensors do not exist here (no SparseTensorValue)")
@pytest.mark.parametrize("case", ["testFromTensorSlicesSparse", "testFromTensorSlicesMixed",
                                  "testFromTensorSlicesMixedRagged"])
def test_sparse(case):
    pass


def test_with_dict():  # FromTensorSlicesTest.testFromTensorSlicesWithDict
    components = {"foo": [1, 2, 3], "bar": [[4.0], [5.0], [6.0]]}
    ds = Dataset.from_tensor_slices(components)
    spec = ds.element_spec
    assert (spec["foo"].dtype_name, spec["bar"].dtype_name) == ("int32", "float32")
    assert (spec["foo"].shape, spec["bar"].shape) == ((), (1,))
    it = ds.iterator()
    for i in range(3):
        r = it.get_next()
        assert int(r["foo"]) == components["foo"][i] and r["bar"].tolist() == components["bar"][i]
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_ragged():
    # FromTensorSlicesTest.testFromTensorSlicesRagged, with our one-ragged-dimension RaggedTensor:
    # the slices of ragged tensors are their rows.
    components = (RaggedTensor.from_rows([[0], [1, 1], [2]]), RaggedTensor.from_rows([[3], [4], [5, 5, 5]]))
    assert [plain(e) for e in Dataset.from_tensor_slices(components)] == [([0], [3]), ([1, 1], [4]), ([2], [5, 5, 5])]


def test_with_uint_dtypes():  # FromTensorSlicesTest.testFromTensorSlicesWithUintDtypes
    components = (np.tile(np.array([[0], [1]], dtype=np.uint8), 2), np.tile(np.array([[2], [256]], dtype=np.uint16), 2),
                  np.tile(np.array([[4], [65536]], dtype=np.uint32), 2),
                  np.tile(np.array([[8], [4294967296]], dtype=np.uint64), 2))
    ds = Dataset.from_tensor_slices(components)
    assert tuple(s.dtype_name for s in ds.element_spec) == ("uint8", "uint16", "uint32", "uint64")
    assert [plain(e) for e in ds] == [tuple(c[i].tolist() for c in components) for i in range(2)]


def test_random_access_invalid_index():  # FromTensorSlicesRandomAccessTest.testInvalidIndex
    ds = Dataset.from_tensor_slices([1, 2, 3])
    for index in (-1, 3):
        with pytest.raises(errors.OutOfRangeError):
            at(ds, index)


@pytest.mark.parametrize("tensor", [[1, 2, 3], [[1, 2], [3, 4]]], ids=["one_dimensional", "two_dimensional"])
def test_random_access_arrays(tensor):
    # FromTensorSlicesRandomAccessTest.testOneDimensionalArray / testTwoDimensionalArray
    ds = Dataset.from_tensor_slices(tensor)
    assert [plain(at(ds, i)) for i in range(len(tensor))] == tensor


def test_random_access_multiple_components():  # FromTensorSlicesRandomAccessTest.testMultipleComponents
    ds = Dataset.from_tensor_slices(([1, 2], [3, 4], [5, 6]))
    assert (plain(at(ds, 0)), plain(at(ds, 1))) == ((1, 3, 5), (2, 4, 6))


def test_random_access_dictionary():  # FromTensorSlicesRandomAccessTest.testDictionary
    ds = Dataset.from_tensor_slices({"a": [1, 2], "b": [3, 4]})
    assert (plain(at(ds, 0)), plain(at(ds, 1))) == ({"a": 1, "b": 3}, {"a": 2, "b": 4})


def test_random_access_numpy():  # FromTensorSlicesRandomAccessTest.testNumpy
    components = (np.tile(np.array([[0], [1]], dtype=np.uint8), 2), np.tile(np.array([[2], [256]], dtype=np.uint16), 2),
                  np.tile(np.array([[4], [65536]], dtype=np.uint32), 2),
                  np.tile(np.array([[8], [4294967296]], dtype=np.uint64), 2))
    ds = Dataset.from_tensor_slices(components)
    assert [plain(at(ds, i)) for i in range(2)] == [tuple(c[i].tolist() for c in components) for i in range(2)]


def test_name():  # FromTensorSlicesRandomAccessTest.testName (op names do not exist here: the output only)
    assert [int(x) for x in Dataset.from_tensor_slices([42])] == [42]


@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, symbolic_checkpoint):  # FromTensorSlicesCheckpointTest.test
    verify(verify_fn, lambda: Dataset.from_tensor_slices(_COMPONENTS), 4)


@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_dict(verify_fn):  # FromTensorSlicesCheckpointTest.testDict
    verify(verify_fn, lambda: Dataset.from_tensor_slices({"foo": [1, 2, 3], "bar": [[4.0], [5.0], [6.0]]}), 3)


@pytest.mark.skip(reason="global_shuffle (random access over the whole input) does not exist here")
@pytest.mark.parametrize("case", ["FromTensorSlicesGlobalShuffleTest", "FromTensorSlicesGlobalShuffleCheckpointTest"])
def test_global_shuffle(case):
    pass
