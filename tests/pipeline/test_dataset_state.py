"""Iterator states: for every pipeline and every cut point k, an iterator restored from the state
after k elements (passed through JSON, as across a process restart) yields exactly the tail of
a full run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.data import AUTOTUNE, Dataset, RaggedTensor
from pipeline.data import structure


def canon(element) -> str:
    """A comparable form of an element that keeps dtypes and shapes."""
    if isinstance(element, Dataset):
        return "ds:" + ",".join(canon(e) for e in element)
    if isinstance(element, RaggedTensor):
        return "r:" + json.dumps(structure.encode(element), sort_keys=True)
    if isinstance(element, tuple):
        return "(" + ",".join(canon(e) for e in element) + ")"
    return json.dumps(structure.encode(element), sort_keys=True)


def _gen():
    for i in range(12):
        yield (i, np.full(i % 3, i, np.int32))


def _square(x):
    return x * x


async def _async_double(x):
    return x * 2


PIPELINES = {
    "range": lambda: Dataset.range(7),
    "repeat_batch": lambda: Dataset.from_tensor_slices(np.arange(10)).repeat(3).batch(7),
    "seed_interleave": lambda: Dataset.from_tensor_slices(np.arange(10)).repeat(3).batch(7).interleave(
        lambda v: Dataset.from_tensor_slices(v), cycle_length=3, block_length=2),
    "interleave_parallel": lambda: Dataset.range(1, 7).interleave(
        lambda x: Dataset.range(x).map(lambda y: y * 10), cycle_length=3, block_length=2, num_parallel_calls=3),
    "flat_map": lambda: Dataset.range(1, 5).flat_map(lambda x: Dataset.range(x)),
    "shuffle_fast_batch": lambda: Dataset.range(40).shuffle(8, seed=1).batch(5),
    "shuffle_fast_elements": lambda: Dataset.from_tensor_slices(np.arange(30)).shuffle(7, seed=3),
    "shuffle_elementwise_repeat": lambda: Dataset.range(12).map(lambda x: x).shuffle(5, seed=2).repeat(2),
    "shuffle_unseeded": lambda: Dataset.range(15).shuffle(6),
    "shuffle_interleave": lambda: Dataset.range(4).shuffle(3, seed=5).interleave(
        lambda x: Dataset.range(x, x + 3).shuffle(2, seed=7), cycle_length=2),
    "map_parallel": lambda: Dataset.range(20).map(_square, num_parallel_calls=3),
    "map_autotune_unordered": lambda: Dataset.range(20).map(_square, num_parallel_calls=AUTOTUNE),
    "map_async": lambda: Dataset.range(10).map(_async_double, num_parallel_calls=4),
    "filter_take_skip": lambda: Dataset.range(40).filter(lambda x: x % 3 != 0).skip(3).take(15),
    "shard_enumerate": lambda: Dataset.range(25).shard(4, 1).enumerate(start=5),
    "shard_chunked_batch": lambda: Dataset.range(50).shard(3, 2).batch(4),
    "concatenate_zip": lambda: Dataset.zip((Dataset.range(5).concatenate(Dataset.range(10, 13)),
                                             Dataset.from_tensor_slices(np.arange(8.0)))),
    "dict_strings": lambda: Dataset.from_tensor_slices(
        {"a": np.arange(7, dtype=np.int32), "b": [b"p", b"q", b"r", b"s", b"t", b"u", b"v"]}).batch(3),
    "padded_unbatch": lambda: Dataset.range(1, 8).map(lambda x: np.arange(x)).padded_batch(3).unbatch(),
    "ragged_batch": lambda: Dataset.range(1, 8).map(lambda x: np.arange(x)).ragged_batch(3),
    "window": lambda: Dataset.range(12).window(3, shift=2, stride=2).flat_map(lambda w: w.batch(3)),
    "window_datasets": lambda: Dataset.range(7).window(3, shift=1),
    "scan": lambda: Dataset.range(1, 10).scan(np.int64(0), lambda s, x: (s + x, s * x)),
    "cache_memory": lambda: Dataset.range(6).map(lambda x: x + 1).cache().repeat(3),
    "prefetch": lambda: Dataset.range(15).map(_square).prefetch(3),
    "prefetch_batches": lambda: Dataset.from_tensor_slices((np.ones((30, 4), np.float32), np.arange(30))).batch(4).prefetch(2),
    "ignore_errors": lambda: Dataset.from_tensor_slices(["1", "x", "3", "y", "5"]).map(
        lambda s: np.int32(int(s))).ignore_errors(),
    "generator": lambda: Dataset.from_generator(_gen),
    "unique": lambda: Dataset.from_tensor_slices([3, 1, 3, 2, 1, 4]).unique(),
    "unbatch_chunks_rebatch": lambda: Dataset.range(23).batch(4).unbatch().shuffle(5, seed=0).batch(6),
}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_resume_at_every_cut_point(name: str) -> None:
    make = PIPELINES[name]
    ds = make()
    full = [canon(e) for e in ds]
    assert full, "the pipeline must produce elements"
    if name == "shuffle_unseeded":
        # Without a seed each pass differs, but a resumed pass continues its own order.
        it = ds.iterator()
        head = [canon(next(it)) for _ in range(5)]
        state = json.loads(json.dumps(it.get_state()))
        tail = [canon(e) for e in make().iterator(state=state)]
        rest = [canon(e) for e in it]
        assert tail == rest and sorted(head + tail) == sorted(full)
        return
    for k in range(len(full) + 1):
        # A new, equal pipeline for each cut: a seeded shuffle reshuffles on each new iteration of
        # the same dataset (as TensorFlow's), so only a first pass repeats ``full``.
        it = make().iterator()
        head = [canon(next(it)) for _ in range(k)]
        assert head == full[:k]
        state = json.loads(json.dumps(it.get_state()))  # plain data, survives a restart
        it.close()
        # A freshly built, equal pipeline (as after a process restart) resumes from the state.
        resumed = [canon(e) for e in make().iterator(state=state)]
        assert resumed == full[k:], f"cut at {k}"


def test_state_of_another_pipeline_is_refused() -> None:
    state = Dataset.range(3).iterator().get_state()
    with pytest.raises(ValueError, match="restore a state only"):
        Dataset.range(3).batch(2).iterator(state=state)


def test_set_state_rewinds_a_running_iterator() -> None:
    ds = Dataset.range(10).map(_square).prefetch(2)
    it = ds.iterator()
    next(it)
    state = it.get_state()
    rest = [int(x) for x in it]
    it.set_state(state)
    assert [int(x) for x in it] == rest
