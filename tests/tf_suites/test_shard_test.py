"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/shard_test.py``: the expected
values and error classes are TensorFlow's, the code is ours. ``random_access.at`` cases run by
iteration (:func:`tf_checkpoint.at`)."""

from __future__ import annotations

import pytest
from tf_checkpoint import VERIFY_FNS, at, plain, verify

from pipeline.data import Dataset
from queueserver import errors


@pytest.mark.parametrize("size, num_shards, index, expected", [
    (10, 5, 2, [2, 7]),  # ShardTest.testSimpleCase
    (10, 5, 0, [0, 5]),  # ShardTest.testOffsetZero
    (1, 5, 2, []),  # ShardTest.testIteratorEndsBeforeFirstElem
    (10, 7, 5, [5]),  # ShardTest.testLargerWorkerPool
    (10, 5, 4, [4, 9]),  # ShardTest.testIndexEqualsNumShards
    (10, 4, 3, [3, 7]),  # ShardTest.testIndexEqualsNumShards2
    (10, 20, 5, [5]),  # ShardTest.testNumShardsLargerThanDataset
])
def test_shard(size, num_shards, index, expected):
    ds = Dataset.range(size).shard(num_shards, index)
    assert [int(x) for x in ds] == expected
    assert ds.cardinality() == len(expected)


def test_nested_data():  # ShardTest.testNestedData
    ds = Dataset.zip((Dataset.range(10), Dataset.range(10, 0, -1))).shard(5, 2)
    assert [plain(e) for e in ds] == [(2, 8), (7, 3)]


@pytest.mark.parametrize("num_shards, index", [
    (5, 7),  # ShardTest.testOffsetGreaterNumShards
    (5, -3),  # ShardTest.testNegativeOffset
    (-3, 1),  # ShardTest.testNegativeNumShards
    (0, 1),  # ShardTest.testZeroNumShards
])
def test_invalid_arguments(num_shards, index):
    with pytest.raises(errors.InvalidArgumentError):
        Dataset.range(10).shard(num_shards, index)


def test_name():  # ShardTest.testName (op names do not exist here: the output only)
    assert [int(x) for x in Dataset.from_tensors(42).shard(1, 0)] == [42]


# experimental_symbolic_checkpoint is an Option not present here: both values run the same.
@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("num_shards", [2, 5])
@pytest.mark.parametrize("elems", [10, 100])
@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, symbolic_checkpoint, elems, num_shards, index):  # ShardCheckpointTest.test
    verify(verify_fn, lambda: Dataset.range(elems).shard(num_shards, index), elems // num_shards)


@pytest.mark.parametrize("index", [-1, 2, 3, 4])
def test_random_access_invalid_index(index):  # ShardRandomAccessTest.testInvalidIndex
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.range(4).shard(num_shards=2, index=0), index)


def test_random_access_empty_dataset():  # ShardRandomAccessTest.testEmptyDataset
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.from_tensor_slices([]).shard(num_shards=2, index=1), 0)


def test_random_access_num_shards_and_index_less_than_num_elements():
    # ShardRandomAccessTest.testNumShardsAndIndexLessThanNumElements
    ds = Dataset.range(10).shard(5, 0)
    assert (int(at(ds, 0)), int(at(ds, 1))) == (0, 5)
    with pytest.raises(errors.OutOfRangeError):
        at(ds, 2)


def test_random_access_num_shards_greater_than_num_elements_index_less():
    # ShardRandomAccessTest.testNumShardsGreaterThanNumElementsIndexLess
    ds = Dataset.range(7).shard(8, 3)
    assert int(at(ds, 0)) == 3
    with pytest.raises(errors.OutOfRangeError):
        at(ds, 1)


def test_random_access_num_shards_and_index_greater_than_num_elements():
    # ShardRandomAccessTest.testNumShardsAndIndexGreaterThanNumElements
    with pytest.raises(errors.OutOfRangeError):
        at(Dataset.range(13).shard(23, 21), 0)


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("num_shards", [5, 7, 10])
@pytest.mark.parametrize("elements", [0, 10, 50])
def test_random_access_multiple_combinations(elements, num_shards, index):
    # ShardRandomAccessTest.testMultipleCombinations
    ds = Dataset.range(elements).shard(num_shards=num_shards, index=index)
    n = ds.cardinality()
    assert [int(x) for x in ds] == [range(elements)[index + num_shards * i] for i in range(n)]
    with pytest.raises(errors.OutOfRangeError):
        at(ds, n)


@pytest.mark.skip(reason="global_shuffle (random access over the whole input) does not exist here")
@pytest.mark.parametrize("case", ["ShardGlobalShuffleTest.testShard", "ShardGlobalShuffleCheckpointTest.testShard"])
def test_global_shuffle(case):
    pass
