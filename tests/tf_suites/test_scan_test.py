"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/scan_test.py`` (``Dataset.scan``,
also ``tf.data.experimental.scan``): the expected values and error classes are TensorFlow's, the
code is ours. TensorArray states are growing arrays here (a TensorArray is a graph construct)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, verify

from pipeline.data import Dataset
from queueserver import errors


@pytest.mark.parametrize("start, step, take", [(0, 1, 10), (0, 1, 0), (10, 1, 10), (10, 2, 10), (10, -1, 10),
                                               (10, -2, 10)])
def test_count(start, step, take):  # ScanTest.testCount
    ds = Dataset.from_tensors(0).repeat().scan(initial_state=start, scan_func=lambda state, _: (state + step, state))
    it = ds.take(take).iterator()
    for expected, _ in zip(itertools.count(start, step), range(take)):
        assert int(it.get_next()) == expected
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_fibonacci():  # ScanTest.testFibonacci
    data = Dataset.from_tensors(1).repeat(None).scan(initial_state=[0, 1],
                                                     scan_func=lambda a, _: ([a[1], a[0] + a[1]], a[1]))
    it = data.iterator()
    assert [int(it.get_next()) for _ in range(6)] == [1, 1, 2, 3, 5, 8]


@pytest.mark.skip(reason="sparse tensors do not exist here (no SparseTensorValue)")
def test_sparse_count():  # ScanTest.testSparseCount
    pass


@pytest.mark.parametrize("iteration", [0, 1])
def test_tensor_array_simple(iteration):  # ScanTest.testTensorArraySimple (num_test_iterations=2)
    ds = Dataset.range(5).scan(initial_state=np.array([-1], np.int64), scan_func=lambda ta, x: (np.append(ta, x), ta))
    assert [x.tolist() for x in ds] == [[-1], [-1, 0], [-1, 0, 1], [-1, 0, 1, 2], [-1, 0, 1, 2, 3]]


@pytest.mark.parametrize("iteration", [0, 1])
def test_tensor_array_with_cond_reset(iteration):  # ScanTest.testTensorArrayWithCondReset (num_test_iterations=2)
    def scan_fn(ta, x):
        updated = np.append(ta, x)
        return (np.array([], np.int64) if x % 3 == 0 else updated), updated

    ds = Dataset.range(6).scan(initial_state=np.array([-1], np.int64), scan_func=scan_fn)
    assert [x.tolist() for x in ds] == [[-1, 0], [1], [1, 2], [1, 2, 3], [4], [4, 5]]


@pytest.mark.skip(reason="TF1 control flow only: a TensorArray captured from outside the traced function")
def test_tensor_array_with_cond_reset_by_external_capture_breaks():
    # ScanTest.testTensorArrayWithCondResetByExternalCaptureBreaks
    pass


def test_changing_state_shape():  # ScanTest.testChangingStateShape
    def scan_fn(state, input_value):
        return (np.concatenate([state[0], state[0]]), np.expand_dims(state[1], 0)), (state, input_value)

    ds = Dataset.from_tensors(0).repeat(5).scan(initial_state=([0], 1), scan_func=scan_fn)
    (vector_spec, rank_spec), value_spec = ds.element_spec
    assert vector_spec.shape == (None,) and rank_spec.shape is None and value_spec.shape == ()
    it = ds.iterator()
    for i in range(5):
        (longer_vector, larger_rank), _ = it.get_next()
        assert longer_vector.tolist() == [0] * (2**i)
        np.testing.assert_array_equal(larger_rank, np.array(1, ndmin=i))
        assert np.ndim(larger_rank) == i
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


# Divergence: TensorFlow raises these TypeErrors when it traces scan_func at construction; a Python
# function cannot be traced without running it on an element, so they come at the first call.
def test_incorrect_state_type():  # ScanTest.testIncorrectStateType
    ds = Dataset.range(10).scan(initial_state=np.int32(1), scan_func=lambda state, _: (np.int64(1), state))
    with pytest.raises(TypeError, match="The element types for the new state must match the initial state."):
        list(ds)


def test_incorrect_return_type():  # ScanTest.testIncorrectReturnType
    ds = Dataset.range(10).scan(initial_state=np.int32(1), scan_func=lambda state, value: np.int64(1))
    with pytest.raises(TypeError, match="`scan_func` should return a pair consisting of new state and the output value."):
        list(ds)


def test_preserve_cardinality():  # ScanTest.testPreserveCardinality
    def py_fn(_):
        raise StopIteration()

    ds = Dataset.from_tensors(0).scan(initial_state=1, scan_func=lambda state, val: (state, py_fn(val)))
    with pytest.raises(errors.InvalidArgumentError):
        ds.iterator().get_next()


@pytest.mark.skip(reason="devices: there is no device placement in a pipeline here")
@pytest.mark.parametrize("use_default_device", [True, False])
def test_use_default_device(use_default_device):  # ScanTest.testUseDefaultDevice
    pass


def test_name():  # ScanTest.testName (op names do not exist here: the output only)
    assert [int(x) for x in Dataset.from_tensors(42).scan(0, lambda x, y: (y, y))] == [42]


# experimental_symbolic_checkpoint is an Option not present here: both values run the same.
@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, symbolic_checkpoint):  # ScanCheckpointTest.test
    def build():
        return Dataset.from_tensors(1).repeat(10).scan(initial_state=[0, 1],
                                                       scan_func=lambda a, _: ([a[1], a[0] + a[1]], a[1]))

    verify(verify_fn, build, 10)
