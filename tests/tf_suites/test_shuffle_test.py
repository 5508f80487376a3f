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
from tf_checkpoint import VERIFY_FNS, verify

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


# ----------------------------------------------------------------------------- the rest of shuffle_test.py
@pytest.mark.skip(reason="graph mode only: a seed fed through a placeholder, and graph-level seeds")
@pytest.mark.parametrize("case", ["testSeedZero", "testRerandomizeOnReplicate (graphRoundTrip)"])
def test_graph_only(case):
    pass


def test_seed_zero_is_a_seed():  # ShuffleTest.testSeedZero, without the placeholder: seed=0 is a fixed seed
    first = [int(x) for x in Dataset.range(10).shuffle(10, seed=0)]
    assert sorted(first) == list(range(10))
    assert [int(x) for x in Dataset.range(10).shuffle(10, seed=0)] == first


@pytest.mark.parametrize("reshuffle", [True, False])
def test_multiple_iterators(reshuffle):
    # ShuffleTest.testMultipleIterators (graph mode there; the same here with two iterators of one
    # unseeded dataset): with reshuffling each new iterator takes a new order
    ds = Dataset.range(100).shuffle(10, reshuffle_each_iteration=reshuffle).repeat(3)
    first, second = [int(x) for x in ds], [int(x) for x in ds]
    assert sorted(first) == sorted(second) == sorted(list(range(100)) * 3)
    assert (first != second) == reshuffle


def test_shuffle_v2_in_function():  # ShuffleTest.testShuffleV2InFunction (a defun there: a plain function)
    counter = [0]

    def consume():
        for _ in Dataset.range(10).shuffle(1):
            counter[0] += 1

    consume()
    assert counter == [10]


def test_checkpoint_large_shuffle_buffer():  # ShuffleTest.testCheckpointLargeShuffleBuffer (4 MiB elements)
    ds = Dataset.from_tensors(np.ones((1, 1024, 1024), np.float32)).repeat().shuffle(5)
    it = ds.iterator()
    next(it)
    state = json.loads(json.dumps(it.get_state()))
    assert next(ds.iterator(state=state)).shape == (1, 1024, 1024)


@pytest.mark.parametrize("buffer_size", [1, 3, 5, 8, 10])
@pytest.mark.parametrize("reshuffle_each_iteration", [True, False])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_verifications(verify_fn, reshuffle_each_iteration, buffer_size):
    # ShuffleCheckpointTest.test under checkpoint_test_base's five verifications
    if verify_fn == "verify_reset_restored_iterator" and reshuffle_each_iteration and buffer_size > 1:
        pytest.skip("TensorFlow runs this verification in graph mode only (eager skips it): re-initialising a "
                    "restored graph iterator replays the checkpointed seeds. Here, as in TF2 eager, a new iterator "
                    "of a reshuffling dataset takes the next order of its sequence")
    verify(verify_fn, lambda: Dataset.range(5).shuffle(buffer_size, seed=55,
                                                       reshuffle_each_iteration=reshuffle_each_iteration).repeat(2), 10)


@pytest.mark.parametrize("buffer_size", [1, 3, 5, 8, 10])
@pytest.mark.parametrize("reshuffle_each_iteration", [True, False])
def test_checkpoint_multiple_iterators(reshuffle_each_iteration, buffer_size):
    # ShuffleCheckpointTest.testMultipleIterators (TF1 graph: two iterators saved and restored
    # together): two iterators of one dataset, each saved and restored on its own, go on as before.
    if reshuffle_each_iteration and buffer_size > 1:
        pytest.skip("TF1 graph mode only: both iterators restored with the dataset's shared seed generator. Here a "
                    "restored pass's later epochs take the next orders of the dataset's reshuffle sequence, which "
                    "the other, still running iterator has advanced: every element comes, in another order")
    ds = Dataset.range(5).shuffle(buffer_size, seed=55, reshuffle_each_iteration=reshuffle_each_iteration).repeat(2)
    its = [ds.iterator(), ds.iterator()]
    heads = [[int(next(it)) for _ in range(4)] for it in its]
    states = [json.loads(json.dumps(it.get_state())) for it in its]
    expected = [[int(x) for x in it] for it in its]
    restored = [[int(x) for x in ds.iterator(state=s)] for s in states]
    assert restored == expected
    assert all(sorted(h + e) == sorted(list(range(5)) * 2) for h, e in zip(heads, expected))
