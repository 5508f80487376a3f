"""Enqueue stamps (queueserver.core.stamps): a retried enqueue is applied once, however many other
calls the client made meanwhile, and whichever clients came and went."""

from __future__ import annotations

import numpy as np
from queueserver.core import ResourceManager
from queueserver.core.clock import ManualClock
from queueserver.core.stamps import Stamps
from queueserver.errors import CancelledError


def test_a_stamp_at_or_above_the_low_water_mark_is_kept_however_many_calls_follow():
    # Before: past 2,048 stamps a client's oldest were dropped, even one whose call was still
    # waiting; its retry then placed everything again.
    stamps = Stamps(per_client=1024)
    stamps.get("a", 1, low=1).placed = 2  # waiting for room with 2 of 5 placed
    for seq in range(2, 5000):
        stamps.get("a", seq, low=1).placed = 1  # other calls, all answered, while 1 is still open
    assert stamps.get("a", 1, low=1).placed == 2
    for seq in range(5000, 5100):
        stamps.get("a", seq, low=seq)  # call 1 answered: the client's mark moves past it
    assert len(stamps) < 200  # what it will not retry is forgotten


def test_a_window_of_open_calls_keeps_its_stamps_and_the_table_stays_bounded():
    """A client with 300 calls open at all times (pipelined enqueues): every stamp at or above its
    mark survives, and what is below is swept, so the table holds a few windows at most."""
    stamps = Stamps()
    window = 300
    for seq in range(1, 20_000):
        low = max(1, seq - window + 1)
        stamps.get("piped", seq, low=low).placed = 1
        if seq % 997 == 0:
            assert all(stamps.get("piped", s, low=low).placed == 1 for s in range(low, seq + 1))
        assert len(stamps) <= 3 * window
    assert len(stamps) >= window


def test_a_client_seen_recently_is_not_the_one_forgotten():
    stamps = Stamps(max_clients=4)
    stamps.get("producer", 1).placed = 5
    for client in ("b", "c", "d"):
        stamps.get(client, 1).placed = 1
    stamps.get("producer", 2).placed = 5  # seen again: the most recent now
    stamps.get("e", 1)  # a fifth client: the least recently seen go
    assert stamps.get("producer", 1).placed == 5 and stamps.get("producer", 2).placed == 5


def test_a_retry_supersedes_the_try_still_waiting_instead_of_placing_twice():
    clock = ManualClock()
    resources = ResourceManager(clock)
    q = resources.queue("fifo", "q", capacity=2, dtypes=[np.int64], shapes=[[]])
    q.enqueue((np.array([100, 101]),), many=True)
    stamps = Stamps()
    first = q.enqueue((np.arange(3),), many=True, stamp=stamps.get("a", 1, low=1))  # waits: full
    retry = q.enqueue((np.arange(3),), many=True, stamp=stamps.get("a", 1, low=1))  # its connection went quiet
    assert first.done and isinstance(first.error, CancelledError) and "superseded" in str(first.error)
    got = []
    for n in (2, 2, 1):
        got += q.dequeue(n, mode="many").result[0].tolist()
    assert got == [100, 101, 0, 1, 2] and retry.done and retry.error is None
    assert q.size() == 0  # each element once: before, the try still waiting placed them all again
