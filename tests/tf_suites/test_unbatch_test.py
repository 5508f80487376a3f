"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/unbatch_test.py``: the expected
values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, plain, verify

from pipeline.data import Dataset
from queueserver import errors


def _dtypes(ds):
    return tuple(s.dtype_name for s in ds.element_spec)


def test_unknown_rank_input():  # UnbatchTest.testUnbatchWithUnknownRankInput
    assert [int(x) for x in Dataset.from_tensors([0, 1, 2, 3]).unbatch()] == [0, 1, 2, 3]


def test_scalar_dataset():  # UnbatchTest.testUnbatchScalarDataset
    data = Dataset.from_tensor_slices(tuple(np.arange(10, dtype=np.int32) for _ in range(3))).batch(2)
    assert _dtypes(data) == ("int32",) * 3
    data = data.unbatch()
    assert _dtypes(data) == ("int32",) * 3
    assert [plain(e) for e in data] == [(i,) * 3 for i in range(10)]


def test_nested_dataset():  # UnbatchTest.testUnbatchNestedDataset
    data = Dataset.from_tensors([Dataset.range(10) for _ in range(10)]).unbatch().flat_map(lambda x: x)
    assert [int(x) for x in data] == list(range(10)) * 10


def test_dataset_with_strings():  # UnbatchTest.testUnbatchDatasetWithStrings
    data = Dataset.from_tensor_slices(tuple(np.arange(10, dtype=np.int32) for _ in range(3)))
    data = data.map(lambda x, y, z: (x, str(int(y)).encode(), z)).batch(2)
    assert _dtypes(data) == ("int32", "string", "int32")
    data = data.unbatch()
    assert _dtypes(data) == ("int32", "string", "int32")
    assert [plain(e) for e in data] == [(i, str(i).encode(), i) for i in range(10)]


@pytest.mark.skip(reason="sparse tensors do not exist here (no SparseTensorValue)")
@pytest.mark.parametrize("case", ["testUnbatchDatasetWithSparseTensor", "testUnbatchDatasetWithDenseSparseAndRaggedTensor"])
def test_sparse(case):  # UnbatchTest.testUnbatchDatasetWithSparseTensor / ...WithDenseSparseAndRaggedTensor
    pass


@pytest.mark.skip(reason="ragged tensors of rank 3 ([[[0]], [[1]], ...]) do not exist here: our RaggedTensor has "
                         "one ragged dimension, made by ragged_batch")
def test_ragged():  # UnbatchTest.testUnbatchDatasetWithRaggedTensor
    pass


def test_single_element_tuple_dataset():  # UnbatchTest.testUnbatchSingleElementTupleDataset
    data = Dataset.from_tensor_slices(tuple((np.arange(10, dtype=np.int32),) for _ in range(3))).batch(2)
    assert tuple(tuple(s.dtype_name for s in c) for c in data.element_spec) == (("int32",),) * 3
    data = data.unbatch()
    assert tuple(tuple(s.dtype_name for s in c) for c in data.element_spec) == (("int32",),) * 3
    assert [plain(e) for e in data] == [((i,),) * 3 for i in range(10)]


def test_multi_element_tuple_dataset():  # UnbatchTest.testUnbatchMultiElementTupleDataset
    data = Dataset.from_tensor_slices(tuple(
        (np.arange(10 * i, 10 * i + 10, dtype=np.int32), np.array([b"hi"] * 10, dtype=object)) for i in range(3)))
    data = data.batch(2).unbatch()
    assert tuple(tuple(s.dtype_name for s in c) for c in data.element_spec) == (("int32", "string"),) * 3
    assert [plain(e) for e in data] == [((i, b"hi"), (10 + i, b"hi"), (20 + i, b"hi")) for i in range(10)]


def test_empty():  # UnbatchTest.testUnbatchEmpty
    data = Dataset.from_tensors((np.zeros([0], np.float32), np.zeros([0, 4], np.float32),
                                 np.zeros([0, 4, 0], np.float32))).unbatch()
    assert list(data) == []


def test_static_shape_mismatch():  # UnbatchTest.testUnbatchStaticShapeMismatch
    data = Dataset.from_tensors((np.arange(7), np.arange(8), np.arange(9)))
    with pytest.raises(ValueError):
        data.unbatch()


def test_dynamic_shape_mismatch():
    # UnbatchTest.testUnbatchDynamicShapeMismatch (placeholders there: here, a generator whose
    # shapes are unknown until run): a mismatch, then a scalar component, fail when iterated.
    def gen(second):
        yield np.arange(7, dtype=np.int32), second

    for second in (np.arange(8, dtype=np.int32), np.int32(7)):
        data = Dataset.from_generator(gen, (np.int32, np.int32), ([None], None), args=(second,)).unbatch()
        with pytest.raises(errors.InvalidArgumentError):
            list(data)


def test_uint_dtypes():  # UnbatchTest.testUnbatchDatasetWithUintDtypes
    components = (
        np.tile(np.array([[0], [1], [2], [3]], dtype=np.uint8), 2),
        np.tile(np.array([[1], [2], [3], [256]], dtype=np.uint16), 2),
        np.tile(np.array([[2], [3], [4], [65536]], dtype=np.uint32), 2),
        np.tile(np.array([[3], [4], [5], [4294967296]], dtype=np.uint64), 2),
    )
    expected_types = ("uint8", "uint16", "uint32", "uint64")
    data = Dataset.from_tensor_slices(components).batch(2)
    assert _dtypes(data) == expected_types
    data = data.unbatch()
    assert _dtypes(data) == expected_types
    got = list(data)
    assert [plain(e) for e in got] == [tuple(c[i].tolist() for c in components) for i in range(4)]
    assert all(tuple(str(v.dtype) for v in e) == expected_types for e in got)


def test_none_component():  # UnbatchTest.testNoneComponent
    ds = Dataset.from_tensors((list(range(10)), None)).unbatch().map(lambda x, y: x)
    assert [int(x) for x in ds] == list(range(10))


def test_name():  # UnbatchTest.testName (op names do not exist here: the output only)
    assert [int(x) for x in Dataset.from_tensors([42]).unbatch()] == [42]


@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, symbolic_checkpoint):
    # UnbatchCheckpointTest.test (experimental_symbolic_checkpoint is an Option not present here:
    # our states are always the position, both values give the same run).
    def build():
        n = 8
        components = (np.arange(n), np.array([[1, 2, 3]]) * np.arange(n)[:, np.newaxis], np.array(15.0) * np.arange(n))
        return Dataset.from_tensor_slices(components).batch(2).unbatch()

    verify(verify_fn, build, 8)


def test_random_access():  # UnbatchRandomAccessTest.test, by iteration (random_access.at does not exist here)
    assert [int(x) for x in Dataset.range(10).batch(4, drop_remainder=True).unbatch()] == list(range(8))


@pytest.mark.skip(reason="random_access.at does not exist here (its FailedPrecondition for an unknown batch "
                         "layout has no counterpart in iteration)")
def test_random_access_not_drop_remainder():  # UnbatchRandomAccessTest.testNotDropRemainder
    pass


def test_random_access_invalid_index():
    # UnbatchRandomAccessTest.testInvalidIndex, by iteration: no element at -1 or 100 (8 exist).
    it = Dataset.range(10).batch(4, drop_remainder=True).unbatch().iterator()
    assert len([it.get_next() for _ in range(8)]) == 8
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()
