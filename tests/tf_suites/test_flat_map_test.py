"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/flat_map_test.py``: the expected
values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, verify

from pipeline.data import Dataset, RaggedTensor
from queueserver import errors


def test_flat_map_dataset():  # FlatMapTest.testFlatMapDataset
    repeats = [1, 2, 3, 4, 5, 0, 1]
    ds = Dataset.from_tensor_slices(np.array(repeats, np.int64)).flat_map(lambda x: Dataset.from_tensors([x]).repeat(x))
    expected = []
    for i in repeats:
        expected.extend([[i]] * i)
    assert [x.tolist() for x in ds] == expected


def test_nested_flat_map_dataset():  # FlatMapTest.testNestedFlatMapDataset
    repeats = [[1, 2], [3, 4], [5, 0], [1, 7]]
    ds = Dataset.from_tensor_slices(np.array(repeats, np.int64)).flat_map(
        lambda x: Dataset.from_tensor_slices(x).flat_map(lambda y: Dataset.from_tensors(y).repeat(y)))
    assert [int(x) for x in ds] == [i for row in repeats for i in row for _ in range(i)]


def test_shared_resource_nested_flat_map_dataset():
    # FlatMapTest.testSharedResourceNestedFlatMapDataset: TensorFlow shares one iterator between
    # two sessions (graph mode); here one iterator is used from two threads, calls interleaved at
    # random, and re-initialised three times: the elements come in order.
    import random
    import threading

    repeats = [[1, 2], [3, 4], [5, 0], [1, 7]]
    ds = Dataset.from_tensor_slices(np.array(repeats, np.int64)).flat_map(
        lambda x: Dataset.from_tensor_slices(x).flat_map(lambda y: Dataset.from_tensors(y).repeat(y)))
    lock = threading.Lock()
    rng = random.Random(0)
    for _ in range(3):
        it = ds.iterator()
        for row in repeats:
            for i in row:
                for _ in range(i):
                    got: list = []

                    def pull(got=got, it=it):
                        with lock:
                            got.append(int(it.get_next()))

                    t = threading.Thread(target=pull) if rng.random() < 0.5 else None
                    if t is None:
                        pull()
                    else:
                        t.start()
                        t.join()
                    assert got == [i]
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_map_dict():  # FlatMapTest.testMapDict
    ds = Dataset.range(10).map(lambda x: {"foo": x * 2, "bar": x**2}).flat_map(
        lambda d: Dataset.from_tensors(d["foo"]).repeat(d["bar"]))
    it = ds.iterator()
    for i in range(10):
        for _ in range(i**2):
            assert int(it.get_next()) == i * 2
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


@pytest.mark.skip(reason="sparse tensors do not exist here (no SparseTensorValue)")
def test_sparse():  # FlatMapTest.testSparse
    pass


def test_tensor_array():
    # FlatMapTest.testTensorArray (TensorArray is a graph construct; its stack() is an array here)
    ds = Dataset.range(10).map(lambda i: np.arange(int(i), dtype=np.int32)).flat_map(Dataset.from_tensor_slices)
    assert [int(x) for x in ds] == [j for i in range(10) for j in range(i)]


def test_ragged():  # FlatMapTest.testRagged
    ds = Dataset.range(10).map(lambda i: RaggedTensor.from_rows([[int(i)], [-int(i)]])).flat_map(
        lambda x: Dataset.from_tensor_slices(x.to_tensor()))
    expected = []
    for i in range(10):
        expected += [[i], [-i]]
    assert [x.tolist() for x in ds] == expected


@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_core(verify_fn):  # FlatMapCheckpointTest.testCore
    verify(verify_fn, lambda: Dataset.range(0, 25, 5).flat_map(lambda x: Dataset.range(x, x + 5)), 25)


@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_map_then_flat_map(verify_fn):  # FlatMapCheckpointTest.testMapThenFlatMap
    verify(verify_fn, lambda: Dataset.range(5).flat_map(lambda _: Dataset.range(100).map(lambda y: np.int32(10 * y))), 500)


@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_capture_defun_in_map_fn(verify_fn):
    # FlatMapCheckpointTest.testCaptureDefunInMapFn (a Defun is a plain function here)
    def defun_fn(x):
        return np.int32(1000) + np.int32(x)

    verify(verify_fn, lambda: Dataset.range(100).flat_map(lambda x: Dataset.from_tensor_slices([defun_fn(x)])), 100)


@pytest.mark.skip(reason="TensorFlow refuses to save a pipeline capturing a resource variable or a stateful op "
                         "(it inspects the graph); Python functions cannot be inspected, and there are no variables "
                         "in a dataset here")
@pytest.mark.parametrize("case", ["testDisallowVariableCapture", "testDisallowCapturingStatefulOps"])
def test_checkpoint_disallowed_captures(case):  # FlatMapCheckpointTest.testDisallow*
    pass


@pytest.mark.skip(reason="sparse tensors do not exist here (no SparseTensorValue)")
def test_checkpoint_sparse_core():  # FlatMapCheckpointTest.testSparseCore
    pass
