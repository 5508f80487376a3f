"""Conditional accumulators on the pure core."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from queueserver.core import ConditionalAccumulator, ResourceManager
from queueserver.errors import CancelledError, DeadlineExceededError, InvalidArgumentError


async def test_take_waits_for_enough_fresh_gradients_and_averages():
    acc = ConditionalAccumulator("w", [2])
    take = acc.take_grad(2)
    assert acc.apply_grad(np.array([1., 2.]), local_step=0)
    assert not take.done()
    assert acc.apply_grad(np.array([3., 4.]), local_step=0)
    assert (await take).tolist() == [2., 3.]
    assert acc.global_step == 1 and acc.num_accumulated() == 0


async def test_stale_gradients_are_dropped():
    acc = ConditionalAccumulator("w", [])
    acc.set_global_step(5)
    assert not acc.apply_grad(np.array(1.0), local_step=4)
    assert acc.apply_grad(np.array(3.0), local_step=5)
    assert (await acc.take_grad(1)) == 3.0
    assert not acc.apply_grad(np.array(1.0), local_step=5)  # the step advanced to 6
    assert acc.stats["dropped_stale"] == 2


async def test_take_timeout_and_reset_cancel():
    acc = ConditionalAccumulator("w", [1])
    with pytest.raises(DeadlineExceededError, match="have 0"):
        await acc.take_grad(1, timeout=0.01)
    rm = ResourceManager()
    acc = rm.accumulator("g", [3], container="c")
    waiting = acc.take_grad(1)
    rm.reset(["c"])
    with pytest.raises(CancelledError):
        await waiting


def test_shape_and_spec_checks():
    rm = ResourceManager()
    acc = rm.accumulator("g", [3])
    with pytest.raises(InvalidArgumentError, match=r"gradient shape \[2\], expected \[3\]"):
        acc.apply_grad(np.zeros(2), 0)
    with pytest.raises(InvalidArgumentError, match="float32\\[3\\] but float32\\[4\\]"):
        rm.accumulator("g", [4])
    with pytest.raises(InvalidArgumentError, match="must be floating"):
        ConditionalAccumulator("i", [1], np.int32)


async def test_a_timed_out_taker_lets_the_next_one_be_served():
    acc = ConditionalAccumulator("a", [1])
    greedy = acc.take_grad(5, timeout=0.05)
    modest = acc.take_grad(1)
    acc.apply_grad(np.ones(1), 0)
    with pytest.raises(DeadlineExceededError):
        await greedy
    assert (await asyncio.wait_for(modest, 1.0)).tolist() == [1.0]
