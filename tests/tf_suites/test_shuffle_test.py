"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/shuffle_test.py``: the expected
behaviour is TensorFlow's, the code is ours.

Seeding as in TensorFlow 2: the seed is fixed when the dataset is built (drawn from the OS when
``seed`` is None). Without ``reshuffle_each_iteration`` every epoch and every new pass of the
dataset has that one order; with it, each new iterator (pass, or epoch under ``repeat``) takes the
next order of a sequence that the seed determines.
"""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from pipeline.data import Dataset
from queueserver import errors


def _ints(ds) -> list[int]:
    return [int(x) for x in ds]


@pytest.mark.parametrize("count,buffer_size", [(5, 100), (5, 2)])
def test_basic(count, buffer_size):  # ShuffleTest.testBasic
    components = (np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8]), np.array([9.0, 10.0, 11.0, 12.0]))

    def dataset_fn(seed):
        return Dataset.from_tensor_slices(components).repeat(count).shuffle(buffer_size, seed)

    def canon(ds):
        return [tuple(float(v) for v in e) for e in ds]

    unshuffled = canon(Dataset.from_tensor_slices(components).repeat(count))
    shuffled = canon(dataset_fn(37))
    assert len(shuffled) == 20 and sorted(shuffled) == sorted(unshuffled)
    assert canon(dataset_fn(37)) == shuffled  # the same seed gives the same sequence
    if buffer_size > 2:
        assert canon(dataset_fn(137)) != shuffled
    empty = Dataset.from_tensor_slices(components).repeat(0).shuffle(buffer_size, 37)
    it = empty.iterator()
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_default_arguments():  # ShuffleTest.testDefaultArguments
    it = iter(Dataset.from_tensor_slices([0, 1, 2, 3, 4]).shuffle(5).repeat())
    counts: collections.Counter = collections.Counter(int(next(it)) for _ in range(50))
    assert counts == {i: 10 for i in range(5)}


@pytest.mark.parametrize("reshuffle", [True, False])
@pytest.mark.parametrize("op_seed", [42, 7])
def test_shuffle_seed(reshuffle, op_seed):  # ShuffleTest.testShuffleSeed
    # The same seed gives the same 3 epochs in two separately built pipelines.
    def run():
        return _ints(Dataset.range(10).shuffle(10, seed=op_seed, reshuffle_each_iteration=reshuffle).repeat(3))

    assert run() == run()


@pytest.mark.parametrize("reshuffle", [True, False])
@pytest.mark.parametrize("seed", [None, 42])
def test_reshuffle_repeat_epochs(reshuffle, seed):  # ShuffleTest.testReshuffleRepeatEpochs
    out = _ints(Dataset.range(10).shuffle(10, seed=seed, reshuffle_each_iteration=reshuffle).repeat(2))
    first, second = out[:10], out[10:]
    assert sorted(first) == sorted(second) == list(range(10))
    assert (first == second) == (not reshuffle)


@pytest.mark.parametrize("reshuffle", [True, False])
@pytest.mark.parametrize("seed", [None, 42])
def test_reshuffle_iteration_epochs(reshuffle, seed):  # ShuffleTest.testReshuffleIterationEpochs
    dataset = Dataset.range(10).shuffle(10, seed=seed, reshuffle_each_iteration=reshuffle)
    first, second, third = _ints(dataset), _ints(dataset), _ints(dataset)
    assert (first == second) == (not reshuffle)
    assert (second == third) == (not reshuffle)


@pytest.mark.parametrize("reshuffle", [True, False])
@pytest.mark.parametrize("seed", [None, 42])
def test_reshuffle_separate_transformations(reshuffle, seed):
    # ShuffleTest.testReshuffleSeparateTransformations: two shuffles built alike agree iff seeded.
    dataset = Dataset.range(10)
    first = _ints(dataset.shuffle(10, seed=seed, reshuffle_each_iteration=reshuffle))
    second = _ints(dataset.shuffle(10, seed=seed, reshuffle_each_iteration=reshuffle))
    assert (first != second) == (seed is None)


def test_reshuffled_passes_are_determined_by_the_seed():
    # testReshuffleIterationEpochs + testShuffleSeed: the sequence of orders comes from the seed.
    def passes():
        ds = Dataset.range(20).shuffle(20, seed=42, reshuffle_each_iteration=True)
        return [_ints(ds) for _ in range(3)]

    a = passes()
    assert a == passes() and len({tuple(p) for p in a}) == 3


def test_shuffle_v2_resource_capture():  # ShuffleTest.testShuffleV2ResourceCapture
    ids = Dataset.range(10).shuffle(1)
    ds = Dataset.range(1).interleave(lambda _: ids)
    assert _ints(ds) == list(range(10))


def test_empty_dataset():  # ShuffleTest.testEmptyDataset
    def map_fn(x):
        if int(x) != 0:
            raise errors.InvalidArgumentError("assertion failed")
        return x

    dataset = Dataset.from_tensor_slices(np.array([1])).map(map_fn).cache().shuffle(buffer_size=10).repeat()
    it = dataset.iterator()
    with pytest.raises(errors.InvalidArgumentError):
        it.get_next()
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def _build(seed, reshuffle, buffer_size, range_limit=5, num_repeats=2):
    return Dataset.range(range_limit).shuffle(
        buffer_size, seed=seed, reshuffle_each_iteration=reshuffle).repeat(num_repeats)


@pytest.mark.parametrize("reshuffle", [True, False])
@pytest.mark.parametrize("buffer_size", [1, 3, 5, 8, 10])
def test_checkpoint(reshuffle, buffer_size):
    # ShuffleCheckpointTest.test (checkpoint_test_base.verify_fn): a state saved after any number
    # of outputs, restored into a freshly built pipeline, continues the uninterrupted sequence --
    # including the later, reshuffled epochs.
    expected = _ints(_build(55, reshuffle, buffer_size))
    assert len(expected) == 10
    for k in range(len(expected) + 1):
        it = _build(55, reshuffle, buffer_size).iterator()
        head = [int(next(it)) for _ in range(k)]
        state = json.loads(json.dumps(it.get_state()))
        assert head + _ints(_build(55, reshuffle, buffer_size).iterator(state=state)) == expected
    # Several breaks in one run (verify_multiple_breaks).
    ds = _build(55, reshuffle, buffer_size)
    it, out = ds.iterator(), []
    for _ in range(3):
        out += [int(next(it)) for _ in range(3)]
        it = _build(55, reshuffle, buffer_size).iterator(state=it.get_state())
    assert out + _ints(it) == expected


@pytest.mark.parametrize("reshuffle", [True, False])
def test_checkpoint_unseeded_and_in_the_same_dataset(reshuffle):
    # ShuffleCheckpointTest with seed=None: the restored pass continues its own order, both in a
    # dataset built again and in the same dataset object after other passes have run.
    ds = _build(None, reshuffle, 3, range_limit=20, num_repeats=3)
    it = ds.iterator()
    head = [int(next(it)) for _ in range(25)]
    state = json.loads(json.dumps(it.get_state()))
    rest = _ints(it)
    assert sorted(head + rest) == sorted(list(range(20)) * 3)
    _ints(ds), _ints(ds)  # more passes of the same dataset in between
    assert _ints(ds.iterator(state=state)) == rest
    assert _ints(_build(None, reshuffle, 3, range_limit=20, num_repeats=3).iterator(state=state)) == rest


def test_spec_inference_does_not_change_the_order():
    # TensorFlow traces functions instead of running them: asking for the element spec of a map
    # after a shuffle must not move the shuffle to another order.
    expected = _ints(Dataset.range(10).shuffle(10, seed=3).map(lambda x: x + 1))
    ds = Dataset.range(10).shuffle(10, seed=3).map(lambda x: x + 1)
    assert ds.element_spec is not None
    assert _ints(ds) == expected
