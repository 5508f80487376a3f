"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/cache_test.py`` (file and
in-memory caches, checkpoints included): the expected values and error classes are TensorFlow's,
the code is ours.

Deliberate divergence: TensorFlow writes a file cache as the pass goes and refuses a second writer
(and a new pass over a half-written cache from a checkpointed one) with AlreadyExistsError. Here the
cache is written to a temporary file and renamed when the first pass completes, so concurrent
writers cannot corrupt it; both succeed, and the first complete pass is the cache.
"""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import gen_outputs, plain

from pipeline.data import Dataset
from queueserver import errors

_COMPONENTS = (np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8]), np.array([9.0, 10.0, 11.0, 12.0]))


@pytest.fixture()
def prefix(tmp_path):
    return str(tmp_path / "cache")


def _drain(it, n):
    out = [plain(it.get_next()) for _ in range(n)]
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()
    return out


def test_file_cache_passthrough(prefix):  # FileCacheTest.testCacheDatasetPassthrough
    def dataset_fn(count=5, filename=None):
        ds = Dataset.from_tensor_slices(_COMPONENTS).repeat(count)
        return ds.cache(filename) if filename else ds

    assert tuple(s.shape for s in dataset_fn().element_spec) == tuple(c.shape[1:] for c in _COMPONENTS)
    elements = _drain(dataset_fn().iterator(), 20)
    cached = _drain(dataset_fn(filename=prefix).iterator(), 20)
    assert cached == elements
    # An empty upstream: the elements come from the cache.
    assert _drain(dataset_fn(count=0, filename=prefix).iterator(), 20) == cached
    # An empty upstream and no cache file: nothing.
    assert _drain(dataset_fn(count=0, filename=prefix + "nonsense").iterator(), 0) == []


def test_file_cache_concurrent_writers(prefix):
    # FileCacheTest.testConcurrentWriters, with our divergence (module docstring): the second
    # writer is not refused; both read their elements, and the cache is written once.
    it1 = Dataset.from_tensor_slices(_COMPONENTS).cache(prefix).iterator()
    it2 = Dataset.from_tensor_slices(_COMPONENTS).cache(prefix).iterator()
    first = plain(it1.get_next())
    assert plain(it2.get_next()) == first
    assert plain(it1.get_next()) == plain(tuple(c[1] for c in _COMPONENTS))
    rest1, rest2 = _drain(it1, 2), _drain(it2, 3)
    assert len(rest1) == 2 and len(rest2) == 3
    assert _drain(Dataset.from_tensor_slices(_COMPONENTS).repeat(0).cache(prefix).iterator(), 4)[0] == first


def test_file_cache_concurrent_readers(prefix):  # FileCacheTest.testConcurrentReaders
    ds1 = Dataset.from_tensor_slices(_COMPONENTS).cache(prefix)
    ds2 = Dataset.from_tensor_slices(_COMPONENTS).cache(prefix)
    elements = _drain(ds1.iterator(), 4)
    it1, it2 = ds1.iterator(), ds2.iterator()
    got1, got2 = [], []
    got2.append(plain(it2.get_next()))
    got1.append(plain(it1.get_next()))
    got2.append(plain(it2.get_next()))
    got1.append(plain(it1.get_next()))
    got1.append(plain(it1.get_next()))
    got2.append(plain(it2.get_next()))
    got1.append(plain(it1.get_next()))
    got2.append(plain(it2.get_next()))
    for it in (it2, it1):
        with pytest.raises(errors.OutOfRangeError):
            it.get_next()
    assert got1 == got2 == elements


def test_file_cache_reading_past_end_of_sequence(prefix):  # FileCacheTest.testReadingPastEndOfSequence
    ds = Dataset.range(10).cache(prefix).map(lambda a: a).batch(4).repeat(2)
    assert [b.tolist() for b in ds] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] * 2


def test_file_cache_cleaning_up_cache_files(prefix):  # FileCacheTest.testCleaningUpCacheFiles
    for i in [0, 3, 10, 12, 15]:
        it = Dataset.range(10).cache(prefix).iterator()
        for _ in range(i):
            try:
                it.get_next()
            except errors.OutOfRangeError:
                break
        it.close()
    assert [int(x) for x in Dataset.range(0).cache(prefix)] == list(range(10))


def test_memory_cache_passthrough():
    # MemoryCacheTest.testCacheDatasetPassthrough (a tf.Variable repeat count: a Python cell here)
    repeat_count = [10]
    ds = Dataset.range(3).flat_map(lambda x: Dataset.from_tensors(x).repeat(repeat_count[0]))
    cached_it, uncached_it = ds.cache().repeat(2).iterator(), ds.repeat(2).iterator()
    for i in range(3):
        for _ in range(10):
            assert int(cached_it.get_next()) == i
            assert int(uncached_it.get_next()) == i
    repeat_count[0] = 0
    with pytest.raises(errors.OutOfRangeError):
        uncached_it.get_next()
    for i in range(3):
        for _ in range(10):
            assert int(cached_it.get_next()) == i
    with pytest.raises(errors.OutOfRangeError):
        cached_it.get_next()


def test_memory_cache_empty_cache_reading():  # MemoryCacheTest.testEmptyCacheReading
    assert list(Dataset.from_tensor_slices(_COMPONENTS).repeat(0).cache()) == []


def test_memory_cache_concurrent_readers():  # MemoryCacheTest.testConcurrentReaders
    d1 = Dataset.range(5).cache().map(lambda x: x + 1)
    d2 = Dataset.range(5).cache().map(lambda x: x + 6)
    it1 = d1.iterator()
    assert [int(it1.get_next()) for _ in range(3)] == [1, 2, 3]
    it2 = d2.iterator()
    assert [int(it2.get_next()) for _ in range(2)] == [6, 7]
    assert int(it1.get_next()) == 4
    assert [int(it2.get_next()), int(it1.get_next())] == [8, 5]
    assert [int(it2.get_next()) for _ in range(2)] == [9, 10]
    for it in (it2, it1):
        with pytest.raises(errors.OutOfRangeError):
            it.get_next()


def test_memory_cache_take_repeat():  # MemoryCacheTest.testCacheTakeRepeat
    assert [int(x) for x in Dataset.range(10).cache().take(5).repeat(2)] == [0, 1, 2, 3, 4] * 2


def _counting():
    counter = [0]

    def increment_fn(x):
        counter[0] += 1
        return x

    return counter, increment_fn


def test_memory_cache_repeat_epochs():  # MemoryCacheTest.testCacheRepeatEpochs
    counter, increment_fn = _counting()
    it = Dataset.range(10).map(increment_fn).cache().repeat(2).iterator()
    for i in range(10):
        assert counter[0] == i
        assert int(it.get_next()) == i
    for i in range(10):
        assert counter[0] == 10
        assert int(it.get_next()) == i
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_memory_cache_iteration_epochs():  # MemoryCacheTest.testCacheIterationEpochs
    counter, increment_fn = _counting()
    ds = Dataset.range(10).map(increment_fn).cache()
    for i, elem in enumerate(ds):
        assert int(elem) == i and counter[0] == i + 1
    for i, elem in enumerate(ds):
        assert counter[0] == 10 and int(elem) == i


def test_memory_cache_v2_resource_capture():  # MemoryCacheTest.testCacheV2ResourceCapture
    ids = Dataset.range(10).cache()
    assert [int(x) for x in Dataset.range(1).interleave(lambda _: ids)] == list(range(10))


def test_memory_cache_v2_concurrent_iterators():  # MemoryCacheTest.testCacheV2ConcurrentIterators
    ds = Dataset.range(10).cache()
    it1, it2 = iter(ds), iter(ds)
    for i in range(10):
        assert int(next(it1)) == i and int(next(it2)) == i


def test_memory_cache_known_cardinality():  # MemoryCacheTest.testCacheKnownCardinality
    # Reading every element of an input of known size completes the cache, without the end.
    ds = Dataset.range(10).shuffle(10, reshuffle_each_iteration=True).cache()
    it = iter(ds)
    results = [int(next(it)) for _ in range(10)]
    it = iter(ds)
    assert [int(next(it)) for _ in range(10)] == results


def test_checkpoint_finished_cache():  # MemoryCacheTest.testCheckpointFinishedCache
    ds = Dataset.range(10).cache()
    it = ds.iterator()
    assert [int(next(it)) for _ in range(10)] == list(range(10))
    it = ds.iterator(state=it.get_state())
    with pytest.raises(StopIteration):
        next(it)


def test_checkpoint_large_cache():  # MemoryCacheTest.testCheckpointLargeCache (smaller: 4 MiB elements)
    ds = Dataset.from_tensors(np.ones((1, 1000, 1000), np.float32)).repeat(25).cache()
    it = ds.iterator()
    for _ in range(23):
        next(it)
    rest = list(ds.iterator(state=gen_state(it)))
    assert len(rest) == 2


def gen_state(it):
    import json

    return json.loads(json.dumps(it.get_state()))


def _ds_fn(is_memory, tmp_path):
    filename = "" if is_memory else str(tmp_path / "test")
    return lambda: Dataset.range(10).cache(filename).repeat(3)


EXPECTED = list(range(10)) * 3


@pytest.mark.parametrize("is_memory", [True, False])
def test_checkpoint_before_one_epoch(is_memory, tmp_path):  # CacheCheckpointTest.testCheckpointBeforeOneEpoch
    ds_fn = _ds_fn(is_memory, tmp_path)
    outputs, state = gen_outputs(ds_fn, [], 5, verify_exhausted=False)
    assert outputs == list(range(5))
    outputs += gen_outputs(ds_fn, [], 25, state=state, verify_exhausted=False)[0]
    assert outputs == EXPECTED


@pytest.mark.parametrize("is_memory", [True, False])
def test_checkpoint_before_one_epoch_then_run_few_steps(is_memory, tmp_path):
    # CacheCheckpointTest.testCheckpointBeforeOneEpochThenRunFewSteps
    ds_fn = _ds_fn(is_memory, tmp_path)
    outputs, state = gen_outputs(ds_fn, [5], 8, verify_exhausted=False, save_checkpoint_at_end=False)
    assert outputs == list(range(8))
    outputs = outputs[:5] + gen_outputs(ds_fn, [], 25, state=state, verify_exhausted=False)[0]
    assert outputs == EXPECTED


@pytest.mark.parametrize("is_memory", [True, False])
def test_checkpoint_after_one_epoch(is_memory, tmp_path):  # CacheCheckpointTest.testCheckpointAfterOneEpoch
    ds_fn = _ds_fn(is_memory, tmp_path)
    outputs, state = gen_outputs(ds_fn, [], 15, verify_exhausted=False)
    assert outputs == list(range(10)) + list(range(5))
    outputs += gen_outputs(ds_fn, [], 15, state=state, verify_exhausted=False)[0]
    assert outputs == EXPECTED


@pytest.mark.parametrize("is_memory", [True, False])
def test_checkpoint_after_one_epoch_then_run_few_steps(is_memory, tmp_path):
    # CacheCheckpointTest.testCheckpointAfterOneEpochThenRunFewSteps
    ds_fn = _ds_fn(is_memory, tmp_path)
    outputs, state = gen_outputs(ds_fn, [15], 18, verify_exhausted=False, save_checkpoint_at_end=False)
    assert outputs == list(range(10)) + list(range(8))
    outputs = list(range(10)) + list(range(5)) + gen_outputs(ds_fn, [], 15, state=state, verify_exhausted=False)[0]
    assert outputs == EXPECTED


@pytest.mark.parametrize("is_memory", [True, False])
def test_checkpoint_before_one_epoch_but_run_complete_epoch(is_memory, tmp_path):
    # CacheCheckpointTest.testCheckpointBeforeOneEpochButRunCompleteEpoch
    ds_fn = _ds_fn(is_memory, tmp_path)
    outputs, state = gen_outputs(ds_fn, [5], 13, verify_exhausted=False, save_checkpoint_at_end=False)
    assert outputs == list(range(10)) + list(range(3))
    outputs = list(range(5)) + gen_outputs(ds_fn, [], 25, state=state, verify_exhausted=False)[0]
    assert outputs == EXPECTED


@pytest.mark.parametrize("is_memory", [True, False])
def test_checkpoint_unused_writer_iterator(is_memory, tmp_path):
    # CacheCheckpointTest.testCheckpointUnusedWriterIterator
    ds_fn = _ds_fn(is_memory, tmp_path)
    outputs, state = gen_outputs(ds_fn, [], 0, verify_exhausted=False)
    assert outputs == []
    assert gen_outputs(ds_fn, [], 30, state=state, verify_exhausted=False)[0] == EXPECTED


@pytest.mark.parametrize("is_memory", [True, False])
def test_checkpoint_unused_midway_writer_iterator(is_memory, tmp_path):
    # CacheCheckpointTest.testCheckpointUnusedMidwayWriterIterator
    ds_fn = _ds_fn(is_memory, tmp_path)
    outputs, state = gen_outputs(ds_fn, [], 5, verify_exhausted=False)
    more, state = gen_outputs(ds_fn, [], 0, state=state, verify_exhausted=False)
    assert outputs + more == list(range(5))
    outputs += gen_outputs(ds_fn, [], 25, state=state, verify_exhausted=False)[0]
    assert outputs == EXPECTED


@pytest.mark.parametrize("is_memory", [True, False])
def test_unused_checkpoint_error(is_memory, tmp_path):
    # CacheCheckpointTest.testUnusedCheckpointError. For a file cache TensorFlow raises
    # AlreadyExistsError here (a half-written cache file exists); ours leaves no half-written file
    # (module docstring), so a new pass that does not restore simply runs, as the memory case does.
    ds_fn = _ds_fn(is_memory, tmp_path)
    outputs, _ = gen_outputs(ds_fn, [], 5, verify_exhausted=False)
    assert outputs == list(range(5))
    assert gen_outputs(ds_fn, [], 30, verify_exhausted=False)[0] == EXPECTED


@pytest.mark.parametrize("is_memory", [True, False])
def test_ignore_checkpoint_if_cache_written(is_memory, tmp_path):
    # CacheCheckpointTest.testIgnoreCheckpointIfCacheWritten
    ds_fn = _ds_fn(is_memory, tmp_path)
    outputs, _ = gen_outputs(ds_fn, [], 15, verify_exhausted=False)
    assert outputs == list(range(10)) + list(range(5))
    assert gen_outputs(ds_fn, [], 30, verify_exhausted=False)[0] == EXPECTED
