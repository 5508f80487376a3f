"""Shuffle: the vectorised block algorithm emits exactly the element-wise algorithm's sequence,
seeds are reproducible, and repeat reshuffles each epoch."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import Dataset
from pipeline.data.shuffle import ShuffleDataset, ShuffleIterator


def elementwise_reference(values: list, buffer_size: int, seed: int, key: tuple = ()) -> list:
    """The documented element-wise algorithm, written out independently of the implementation."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))
    source = iter(values)
    buf = []
    for x in source:
        buf.append(x)
        if len(buf) == buffer_size:
            break
    out = []
    while buf:
        u = rng.random()
        n = len(buf)
        j = min(int(u * n), n - 1)
        out.append(buf[j])
        x = next(source, None)
        if x is not None:
            buf[j] = x
        else:
            buf[j] = buf[-1]
            buf.pop()
    return out


@pytest.mark.parametrize("n,buffer_size,batch", [(100, 10, 7), (50, 50, 4), (40, 64, 3), (1000, 37, 256), (9, 1, 2), (300, 100, 1)])
def test_block_algorithm_equals_elementwise(n: int, buffer_size: int, batch: int) -> None:
    data = np.arange(n) * 3
    expected = elementwise_reference(data.tolist(), buffer_size, seed=42)
    # A fresh dataset for each pass: a seeded shuffle reshuffles on each new iteration (TensorFlow's
    # default), so only a first pass has the reference order.
    def fast():
        return Dataset.from_tensor_slices(data).shuffle(buffer_size, seed=42)

    def slow():
        return Dataset.from_tensor_slices(data).map(lambda x: x).shuffle(buffer_size, seed=42)  # map: no chunks

    assert fast().iterator().chunked and not slow().iterator().chunked
    assert [int(x) for x in fast()] == expected
    assert [int(x) for x in slow()] == expected
    batched = np.concatenate([b for b in fast().batch(batch)]).tolist()
    assert batched == expected


def test_forced_modes_agree_on_structured_elements() -> None:
    ds = Dataset.from_tensor_slices({"x": np.arange(60.0).reshape(30, 2), "s": [b"%d" % i for i in range(30)]})
    sh = ShuffleDataset(ds, 8, seed=5, reshuffle_each_iteration=True)
    a = list(ShuffleIterator(sh, (), fast=True))
    b = list(ShuffleIterator(sh, (), fast=False))
    assert [e["s"] for e in a] == [e["s"] for e in b]
    assert all(np.array_equal(p["x"], q["x"]) for p, q in zip(a, b))


def test_seeded_is_reproducible_and_a_permutation() -> None:
    ds = Dataset.range(1000).shuffle(100, seed=7)
    first = [int(x) for x in ds]
    assert first == [int(x) for x in Dataset.range(1000).shuffle(100, seed=7)]  # the same seed, rebuilt
    assert first != [int(x) for x in ds]  # the same dataset again: reshuffled, as TensorFlow does
    assert sorted(first) == list(range(1000)) and first != list(range(1000))
    assert first != [int(x) for x in Dataset.range(1000).shuffle(100, seed=8)]


def test_buffer_bounds_displacement() -> None:
    out = [int(x) for x in Dataset.range(200).shuffle(4, seed=0)]
    assert all(out.index(i) >= i - 3 for i in range(200))


def test_reshuffle_each_iteration() -> None:
    two = [int(x) for x in Dataset.range(20).shuffle(20, seed=1).repeat(2)]
    assert sorted(two[:20]) == sorted(two[20:]) and two[:20] != two[20:]
    same = [int(x) for x in Dataset.range(20).shuffle(20, seed=1, reshuffle_each_iteration=False).repeat(2)]
    assert same[:20] == same[20:]


def test_unseeded_passes_differ() -> None:
    ds = Dataset.range(100).shuffle(100)
    assert [int(x) for x in ds] != [int(x) for x in ds]


def test_bad_buffer_size() -> None:
    from queueserver.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="buffer_size"):
        Dataset.range(3).shuffle(0)
