"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/group_by_window_test.py``: the
expected values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tf_checkpoint import verify

from pipeline.data import INFINITE_CARDINALITY, Dataset
from queueserver import errors


def test_simple():  # GroupByWindowTest.testSimple
    components = np.random.default_rng(0).integers(100, size=200).astype(np.int64)
    ds = Dataset.from_tensor_slices(components).map(lambda x: x * x).group_by_window(
        key_func=lambda x: x % 2, reduce_func=lambda _, xs: xs.batch(4), window_size=4)
    batches = [b.tolist() for b in ds]
    assert sorted(v for b in batches for v in b) == sorted((components * components).tolist())
    for b in batches:
        assert 1 <= len(b) <= 4 and len({v % 2 for v in b}) == 1
    assert sum(len(b) < 4 for b in batches) <= 2  # only the two last, partial windows


def test_immediate_output():  # GroupByWindowTest.testImmediateOutput
    components = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2] * 3, np.int64)
    ds = Dataset.from_tensor_slices(components).repeat(-1).group_by_window(
        key_func=lambda x: x % 3, reduce_func=lambda _, xs: xs.batch(4), window_size=4)
    it = iter(ds)
    assert [next(it).tolist() for _ in range(4)] == [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [0, 0, 0, 0]]


def test_small_groups_are_flushed_in_key_order():  # GroupByWindowTest.testSmallGroups
    components = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0], np.int64)
    ds = Dataset.from_tensor_slices(components).group_by_window(
        key_func=lambda x: x % 2, reduce_func=lambda _, xs: xs.batch(4), window_size=4)
    assert [b.tolist() for b in ds] == [[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0], [1]]


def test_window_size_func():  # our case: window_size_func as tf.data documents it
    ds = Dataset.range(9).group_by_window(key_func=lambda x: x % 3, reduce_func=lambda _, xs: xs.batch(10),
                                          window_size_func=lambda key: key + 1)
    assert [b.tolist() for b in ds] == [[0], [3], [1, 4], [6], [2, 5, 8], [7]]


def test_errors():  # our cases: tf.data's argument and key_func errors
    with pytest.raises(ValueError, match="Either the `window_size` argument or the `window_size_func`"):
        Dataset.range(3).group_by_window(lambda x: x, lambda _, w: w)
    with pytest.raises(errors.InvalidArgumentError, match="single tf.int64 scalar"):
        list(Dataset.range(3).group_by_window(lambda x: np.int32(0), lambda _, w: w, window_size=2))


# ----------------------------------------------------------------------------- the rest of the file
def _dynamic_pad(bucket, window):
    return Dataset.zip((Dataset.from_tensors(bucket), window.padded_batch(32, ([], [None], [3]))))


def _fill_as_string(v):
    return np.array([str(int(v)).encode()] * 3, dtype=object)


def test_single_bucket():  # GroupByWindowTest.testSingleBucket
    ds = Dataset.from_tensor_slices(np.arange(32)).map(lambda v: (v, np.full([int(v)], v), _fill_as_string(v)))
    bucketed = ds.group_by_window(key_func=lambda x, y, z: np.int64(0),
                                  reduce_func=lambda k, bucket: _dynamic_pad(k, bucket), window_size=32)
    which_bucket, values = next(iter(bucketed))
    assert int(which_bucket) == 0
    expected_unk = np.zeros((32, 31), np.int64)
    for i in range(32):
        expected_unk[i, :i] = i
    assert values[0].tolist() == list(range(32))
    np.testing.assert_array_equal(values[1], expected_unk)
    assert values[2].tolist() == [[str(i).encode()] * 3 for i in range(32)]


def test_even_odd_buckets():  # GroupByWindowTest.testEvenOddBuckets
    ds = Dataset.from_tensor_slices(np.arange(64)).map(lambda v: (v, np.full([int(v)], v), _fill_as_string(v)))
    bucketed = ds.group_by_window(key_func=lambda x, y, z: np.int64(x % 2),
                                  reduce_func=lambda k, bucket: _dynamic_pad(k, bucket), window_size=32)
    it = bucketed.iterator()
    for parity in (0, 1):
        which, values = it.get_next()
        assert int(which) == parity and len(values) == 3
        expected = np.arange(parity, 64 + parity, 2)
        assert values[0].tolist() == expected.tolist()
        unk = np.zeros((32, 62 + parity), np.int64)
        for i in range(32):
            unk[i, : 2 * i + parity] = 2 * i + parity
        np.testing.assert_array_equal(values[1], unk)
        assert values[2].tolist() == [[str(v).encode()] * 3 for v in expected]


def test_even_odd_buckets_filter_out_all_odd():  # GroupByWindowTest.testEvenOddBucketsFilterOutAllOdd
    ds = Dataset.from_tensor_slices(np.arange(128)).map(
        lambda v: {"x": v, "y": np.full([int(v)], v), "z": _fill_as_string(v)}).filter(lambda d: d["x"] % 2 == 0)
    bucketed = ds.group_by_window(
        key_func=lambda d: np.int64(d["x"] % 2),
        reduce_func=lambda k, w: Dataset.zip((Dataset.from_tensors(k), w.padded_batch(32, {"x": [], "y": [None],
                                                                                           "z": [3]}))),
        window_size=32)
    it = bucketed.iterator()
    (b0, v0), (b1, v1) = it.get_next(), it.get_next()
    assert (int(b0), int(b1)) == (0, 0)
    assert v0["x"].tolist() == list(range(0, 64, 2)) and v1["x"].tolist() == list(range(64, 128, 2))


def test_dynamic_window_size():  # GroupByWindowTest.testDynamicWindowSize
    ds = Dataset.from_tensor_slices(np.arange(100, dtype=np.int64)).group_by_window(
        key_func=lambda x: x % 2, reduce_func=lambda _, xs: xs.batch(20), window_size=None,
        window_size_func=lambda key: np.array([5, 10], np.int64)[key])
    batches = list(ds)
    for b in batches:
        assert all(x % 2 == 0 for x in b) or all(x % 2 == 1 for x in b)
        assert len(b) == (5 if b[0] % 2 == 0 else 10)
    assert len(batches) == 15


def test_empty():
    # GroupByWindowTest.testEmpty: TensorFlow's error; here when the dataset is built (a window
    # size fixed at construction is checked there), not at the first element.
    with pytest.raises(errors.InvalidArgumentError, match="Window size must be greater than zero, but got 0."):
        list(Dataset.range(4).group_by_window(key_func=lambda _: np.int64(0), reduce_func=lambda _, xs: xs,
                                              window_size=0))


def test_reduce_func_error():  # GroupByWindowTest.testReduceFuncError (a padded shape of -5)
    components = np.random.default_rng(3).integers(100, size=(200,)).astype(np.int64)
    ds = Dataset.from_tensor_slices(components).map(lambda x: (x, np.array([x * x])))
    ds = ds.group_by_window(key_func=lambda x, _: x % 2,
                            reduce_func=lambda _, xs: xs.padded_batch(4, padded_shapes=([], np.array([5]) * -1)),
                            window_size=32)
    with pytest.raises(errors.InvalidArgumentError):
        ds.iterator().get_next()


def test_consume_window_dataset_more_than_once():  # GroupByWindowTest.testConsumeWindowDatasetMoreThanOnce
    components = np.random.default_rng(4).integers(50, size=(200,)).astype(np.int64)

    def reduce_func(key, window):
        return Dataset.zip((window.padded_batch(4, padded_shapes=[None]),
                            window.padded_batch(4, padded_shapes=np.array([(key + 1) * 10]))))

    ds = Dataset.from_tensor_slices(components).map(lambda x: np.full([int(x)], x))
    ds = ds.group_by_window(key_func=lambda x: np.int64(len(x) // 10), reduce_func=reduce_func, window_size=4)
    counts = []
    for tight, multiple_of_10 in ds:
        assert multiple_of_10.shape[1] % 10 == 0
        np.testing.assert_array_equal(tight, multiple_of_10[:, : tight.shape[1]])
        counts.append(tight.shape[0])
    assert sum(counts) == len(components)


def test_short_circuit():  # GroupByWindowTest.testShortCircuit
    ds = Dataset.range(10).group_by_window(key_func=lambda x: x, reduce_func=lambda _, w: w.batch(1), window_size=1)
    assert [b.tolist() for b in ds] == [[i] for i in range(10)]


def test_with_autotune():  # GroupByWindowTest.testGroupByWindowWithAutotune
    ds = Dataset.range(1000).group_by_window(key_func=lambda x: x // 10,
                                             reduce_func=lambda key, w: Dataset.from_tensors(key), window_size=4)
    assert int(ds.map(lambda x: x + 1, num_parallel_calls=-1).iterator().get_next()) == 1


def test_cardinality():  # GroupByWindowTest.testGroupByWindowCardinality
    ds = Dataset.range(1).repeat().group_by_window(key_func=lambda x: x % 2,
                                                   reduce_func=lambda key, w: Dataset.from_tensors(key), window_size=4)
    assert ds.cardinality() == INFINITE_CARDINALITY


def test_name():  # GroupByWindowTest.testName (op names do not exist here: the output only)
    ds = Dataset.from_tensors(np.int64(42)).group_by_window(key_func=lambda x: x, reduce_func=lambda k, w: w.batch(4),
                                                             window_size=4)
    assert [b.tolist() for b in ds] == [[42]]


_COMPONENTS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 0, 0, 2, 2, 0, 0], dtype=np.int64)


def _build():
    return Dataset.from_tensor_slices(_COMPONENTS).repeat(-1).group_by_window(
        key_func=lambda x: x % 3, reduce_func=lambda _, xs: xs.batch(4), window_size=4)


@pytest.mark.parametrize("verify_fn", ["verify_unused_iterator", "verify_multiple_breaks",
                                       "verify_reset_restored_iterator"])
def test_checkpoint(verify_fn):  # GroupByWindowCheckpointTest.test (its state is savable now)
    verify(verify_fn, _build, 12, verify_exhausted=False)


def test_checkpoint_inside_a_window():
    # Our case: a state saved while a reduced window is half emitted, and with open windows.
    ds = Dataset.range(20).group_by_window(key_func=lambda x: x % 3, reduce_func=lambda _, xs: xs.batch(2),
                                           window_size=5)
    full = [b.tolist() for b in ds]
    for k in range(len(full) + 1):
        it = ds.iterator()
        head = [next(it).tolist() for _ in range(k)]
        state = json.loads(json.dumps(it.get_state()))
        assert head + [b.tolist() for b in ds.iterator(state=state)] == full
