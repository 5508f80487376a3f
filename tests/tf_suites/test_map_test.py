"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/map_test.py`` (the expected
behaviour is TensorFlow's, the code is ours), plus what only Python has: coroutine functions.

A coroutine user function runs on the pipeline's background event loop. Iterating such a
dataset synchronously *on that loop's thread* (inside a coroutine running there) would make the
loop wait for itself; it must raise a clear FailedPreconditionError naming the fix, never hang.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline.data import Dataset
from pipeline.data.base import background_loop
from queueserver import errors

pytestmark = pytest.mark.timeout(60)


def _check_numerics(x):
    if np.isnan(x):
        raise errors.InvalidArgumentError("message : Tensor had NaN values")
    return x


@pytest.mark.parametrize("num_parallel_calls", [None, 2])
def test_map_error(num_parallel_calls):  # MapTest.testParallelMapError / testMapError (error, then on)
    components = np.array([1.0, 2.0, 3.0, np.nan, 5.0], np.float32)
    it = Dataset.from_tensor_slices(components).map(_check_numerics, num_parallel_calls=num_parallel_calls).iterator()
    assert [float(it.get_next()) for _ in range(3)] == [1.0, 2.0, 3.0]
    with pytest.raises(errors.InvalidArgumentError, match="NaN"):
        it.get_next()
    assert float(it.get_next()) == 5.0
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


@pytest.mark.parametrize("num_parallel_calls", [None, 4])
def test_map_ignore_error(num_parallel_calls):  # MapTest.testMapIgnoreError
    components = np.array([1.0, 2.0, 3.0, np.nan, 5.0], np.float32)
    ds = Dataset.from_tensor_slices(components).map(_check_numerics, num_parallel_calls=num_parallel_calls)
    assert [float(x) for x in ds.ignore_errors()] == [1.0, 2.0, 3.0, 5.0]


async def _double(x):
    await asyncio.sleep(0)
    return x * 2


def _on_loop(coro_fn, timeout=20.0):
    """Runs ``coro_fn()`` on the pipeline's background loop and returns its result."""
    return asyncio.run_coroutine_threadsafe(coro_fn(), background_loop()).result(timeout)


@pytest.mark.parametrize("num_parallel_calls", [None, 1, 4])
def test_coroutine_map_works_off_the_loop(num_parallel_calls):
    # MapTest.testMapDataset with a coroutine function (runs on the background loop).
    ds = Dataset.range(6).map(_double, num_parallel_calls=num_parallel_calls)
    assert [int(x) for x in ds] == [0, 2, 4, 6, 8, 10]


@pytest.mark.parametrize("num_parallel_calls", [None, 4])
def test_coroutine_map_iterated_on_the_loop_raises_instead_of_hanging(num_parallel_calls):
    # MapTest.testMapDataset, iterated from a coroutine on the background loop: a blocking
    # iteration there would wait for the loop itself.
    ds = Dataset.range(4).map(_double, num_parallel_calls=num_parallel_calls)

    async def consume():
        return [int(x) for x in ds]

    with pytest.raises(errors.FailedPreconditionError, match="async for"):
        _on_loop(consume)


def test_function_returning_a_coroutine_iterated_on_the_loop_raises():
    # MapTest.testParallelMapDataset with a plain function whose result is awaitable.
    ds = Dataset.range(4).map(lambda x: _double(x), num_parallel_calls=3)

    async def consume():
        return [int(x) for x in ds]

    with pytest.raises(errors.FailedPreconditionError, match="background event loop"):
        _on_loop(consume)


def test_coroutine_map_inside_another_maps_coroutine():
    # MapTest.testNestedMap-like: an outer coroutine function iterates an inner dataset with a
    # coroutine function. Blocking iteration raises a clear error; `async for` works.
    inner = Dataset.range(3).map(_double, num_parallel_calls=2)

    async def blocking_sum(x):
        return x + sum(int(v) for v in inner)

    async def async_sum(x):
        total = x
        async for v in inner:
            total += int(v)
        return total

    with pytest.raises(errors.FailedPreconditionError, match="to_thread"):
        list(Dataset.range(2).map(blocking_sum, num_parallel_calls=2))
    assert [int(v) for v in Dataset.range(2).map(async_sum, num_parallel_calls=2)] == [6, 7]
    assert [int(v) for v in Dataset.range(2).map(async_sum)] == [6, 7]


def test_the_named_fixes_work_on_the_loop():
    # The error message's advice: `async for`, or the blocking iteration in a thread.
    ds = Dataset.range(4).map(_double, num_parallel_calls=4).prefetch(2)

    async def with_async_for():
        return [int(x) async for x in ds]

    async def with_to_thread():
        return [int(x) for x in await asyncio.to_thread(list, ds)]

    assert _on_loop(with_async_for) == [0, 2, 4, 6]
    assert _on_loop(with_to_thread) == [0, 2, 4, 6]


@pytest.mark.parametrize("stage", ["prefetch", "interleave"])
def test_threaded_stages_over_a_coroutine_map_on_the_loop(stage):
    # MapTest.testPrefetch / interleave over a coroutine map: their worker threads would wait for
    # the blocked loop; on its thread they read inline, so the map's refusal comes out instead.
    base = Dataset.range(4).map(_double)
    if stage == "prefetch":
        ds = base.prefetch(2)
    else:
        ds = Dataset.range(2).interleave(lambda _: base, cycle_length=2, num_parallel_calls=2)

    async def consume():
        return [int(x) for x in ds]

    with pytest.raises(errors.FailedPreconditionError):
        _on_loop(consume)


@pytest.mark.parametrize("stage", ["prefetch", "interleave", "map"])
def test_threaded_stages_with_plain_functions_still_work_on_the_loop(stage):
    # Plain functions need no loop: the same pipelines iterated on the loop's thread give the
    # sequential results (TensorFlow's order).
    base = Dataset.range(4).map(lambda x: x * 2)
    if stage == "prefetch":
        ds, expected = base.prefetch(2), [0, 2, 4, 6]
    elif stage == "interleave":
        ds = Dataset.range(2).interleave(lambda _: base, cycle_length=2, num_parallel_calls=2)
        expected = [0, 0, 2, 2, 4, 4, 6, 6]
    else:
        ds, expected = Dataset.range(4).map(lambda x: x * 2, num_parallel_calls=3), [0, 2, 4, 6]

    async def consume():
        return [int(x) for x in ds]

    assert _on_loop(consume) == expected
