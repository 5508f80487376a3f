"""map / interleave with num_parallel_calls run concurrently and keep order; errors from user
functions are chained and name the transformation; async iteration and prefetch."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from pipeline.data import AUTOTUNE, Dataset
from queueserver import errors


def test_parallel_map_runs_calls_concurrently_and_keeps_order() -> None:
    barrier = threading.Barrier(2, timeout=10)  # breaks unless two calls overlap

    def slow(x):
        if x < 2:
            barrier.wait()
        return x * 10

    assert [int(v) for v in Dataset.range(6).map(slow, num_parallel_calls=2)] == [0, 10, 20, 30, 40, 50]


def test_autotune_map() -> None:
    out = [int(v) for v in Dataset.range(100).map(lambda x: x + 1, num_parallel_calls=AUTOTUNE)]
    assert out == list(range(1, 101))


def test_nondeterministic_map_yields_results_as_they_complete() -> None:
    first_delivered = threading.Event()

    def fn(x):
        if x == 0:
            assert first_delivered.wait(10)  # call 0 cannot finish before a result is out
        return x

    it = Dataset.range(4).map(fn, num_parallel_calls=4, deterministic=False).iterator()
    first = int(next(it))
    first_delivered.set()
    rest = [int(v) for v in it]
    assert first != 0 and sorted([first] + rest) == [0, 1, 2, 3]


def test_coroutine_map_runs_on_the_event_loop_concurrently() -> None:
    state = {}

    async def fn(x):
        if "event" not in state:
            state["event"] = asyncio.Event()
        if x == 0:
            await asyncio.wait_for(state["event"].wait(), 10)  # needs call 1 to run meanwhile
        else:
            state["event"].set()
        return x + 100

    assert [int(v) for v in Dataset.range(2).map(fn, num_parallel_calls=2)] == [100, 101]
    async def plain(x):
        return x * 3
    assert [int(v) for v in Dataset.range(3).map(plain)] == [0, 3, 6]


def test_user_error_is_chained_and_names_the_transformation() -> None:
    def parse(s):
        return int(s)

    for parallel in (None, 2):
        ds = Dataset.from_tensor_slices(["1", "x", "3"]).map(parse, num_parallel_calls=parallel)
        it = ds.iterator()
        assert int(next(it)) == 1
        with pytest.raises(errors.InvalidArgumentError, match=r"in Dataset\.map\(fn=.*parse\)") as info:
            next(it)
        assert isinstance(info.value.__cause__, ValueError)
        assert int(next(it)) == 3  # the iterator goes on after a failed element
        assert [int(v) for v in ds.ignore_errors()] == [1, 3]


def test_project_errors_keep_their_class() -> None:
    def bad(x):
        raise errors.DataLossError("corrupt")

    with pytest.raises(errors.DataLossError, match="in Dataset.filter"):
        list(Dataset.range(2).filter(bad))


def test_parallel_interleave_matches_sequential() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 7, 15).tolist()
    for cycle, block in [(1, 1), (2, 1), (3, 2), (4, 3), (16, 1)]:
        def make(parallel, cycle=cycle, block=block):
            return Dataset.from_tensor_slices(lengths).interleave(
                lambda n: Dataset.range(n * 100, n * 100 + n), cycle_length=cycle, block_length=block,
                num_parallel_calls=parallel)
        # num_parallel_calls may not exceed a fixed cycle_length (TensorFlow's rule)
        assert [int(x) for x in make(min(3, cycle))] == [int(x) for x in make(None)], (cycle, block)


def test_parallel_interleave_reads_inputs_concurrently() -> None:
    barrier = threading.Barrier(2, timeout=10)

    def child(x):
        return Dataset.range(1).map(lambda _: (barrier.wait(), x)[1])

    out = [int(v) for v in Dataset.range(2).interleave(child, cycle_length=2, num_parallel_calls=2)]
    assert out == [0, 1]


def test_interleave_fn_must_return_a_dataset() -> None:
    with pytest.raises(TypeError, match="must return a `Dataset`"):
        list(Dataset.range(2).interleave(lambda x: x, cycle_length=1))


async def test_async_for_and_state() -> None:
    ds = Dataset.range(5).map(lambda x: x * 2).prefetch(2)
    got = [int(x) async for x in ds]
    assert got == [0, 2, 4, 6, 8]
    ait = ds.__aiter__()
    assert int(await ait.__anext__()) == 0
    assert [int(x) for x in ds.iterator(state=ait.get_state())] == [2, 4, 6, 8]


def test_prefetch_propagates_errors_in_order_and_closes() -> None:
    ds = Dataset.from_tensor_slices(["1", "x", "3"]).map(int).prefetch(3)
    it = ds.iterator()
    assert int(next(it)) == 1
    with pytest.raises(errors.InvalidArgumentError):
        next(it)
    assert int(next(it)) == 3
    with pytest.raises(StopIteration):
        next(it)
    with pytest.raises(StopIteration):
        next(it)
    it.close()


def test_prefetch_produces_ahead_in_the_background() -> None:
    produced = {i: threading.Event() for i in range(4)}

    def mark(x):
        produced[int(x)].set()
        return x

    it = Dataset.range(4).map(mark).prefetch(2).iterator()
    assert int(next(it)) == 0
    assert produced[1].wait(10) and produced[2].wait(10)  # made while the consumer was idle
    assert [int(x) for x in it] == [1, 2, 3]
