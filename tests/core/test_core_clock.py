"""Timeouts against a clock moved by hand (queueserver.core.clock.ManualClock): races between a
timer and an arrival, decided exactly, with no sleeps."""

from __future__ import annotations

import numpy as np
import pytest

from queueserver.core import MANY, ResourceManager
from queueserver.core.clock import ManualClock
from queueserver.errors import DeadlineExceededError


def _queue(clock, capacity=10):
    return ResourceManager(clock).queue("fifo", "q", capacity=capacity, dtypes=["int64"], shapes=[[]])


def _put(q, *values):
    return q.enqueue([np.array(values, np.int64)], many=True, timeout=0)


async def test_a_dequeue_waits_until_its_deadline_and_gives_back_what_it_took():
    clock = ManualClock()
    q = _queue(clock)
    _put(q, 1, 2)
    waiting = q.dequeue(3, mode=MANY, timeout=5.0)  # holds 1, 2 while it waits for a third
    clock.advance(4.999)
    assert not waiting.done and q.size() == 0
    clock.advance(0.001)
    assert isinstance(waiting.error, DeadlineExceededError)
    assert q.size() == 2 and (await q.dequeue(2, mode=MANY).wait())[0].tolist() == [1, 2]  # back in order
    assert q.stats["dequeue_blocked_s"] == pytest.approx(5.0)


async def test_an_arrival_just_before_the_deadline_wins_and_the_timer_is_disarmed():
    clock = ManualClock()
    q = _queue(clock)
    waiting = q.dequeue(timeout=1.0)
    clock.advance(0.5)
    _put(q, 7)
    assert waiting.done and waiting.error is None and int(waiting.result[0]) == 7
    clock.advance(10.0)  # the cancelled timer fires nothing
    assert waiting.error is None and q.stats["dequeue_blocked_s"] == pytest.approx(0.5)


async def test_a_timed_out_enqueue_many_keeps_what_it_placed():
    clock = ManualClock()
    q = _queue(clock, capacity=2)
    attempt = q.enqueue([np.array([1, 2, 3, 4], np.int64)], many=True, timeout=3.0)  # places 1, 2; waits
    assert int((await q.dequeue(timeout=0).wait())[0]) == 1  # room for one: 3 is placed
    clock.advance(2.999)
    assert not attempt.done
    clock.advance(0.001)
    with pytest.raises(DeadlineExceededError) as raised:
        await attempt.wait()
    assert raised.value.details["placed"] == 3
    assert q.size() == 2


async def test_take_grad_times_out_on_the_clock():
    clock = ManualClock()
    acc = ResourceManager(clock).accumulator("g", [2])
    taking = acc.take_grad(2, timeout=2.0)
    acc.apply_grad(np.ones(2, np.float32), 0)
    clock.advance(2.0)
    with pytest.raises(DeadlineExceededError, match="2 gradient"):
        await taking
