"""Ways one server lost data, each closed (issue "Nothing lost", part 1): invalid timeouts that left
ghost calls behind, replies that could not be built, and acknowledgements of batches a sibling
caller was still processing."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import numpy as np
import pytest

import queueserver as qs
from support import RawConnection, crash_connection

BAD_TIMEOUTS = [math.nan, math.inf, -math.inf, "1", True, [1]]


@pytest.mark.parametrize("bad", BAD_TIMEOUTS, ids=repr)
def test_an_invalid_timeout_is_refused_before_the_call_joins_the_line(local_server, bad):
    with qs.connect(local_server.target) as c:
        c.reset([""])
        q = c.fifo_queue("ghosts", capacity=2, dtypes=[np.int64], shapes=[[]])
        raw = RawConnection(local_server.target)
        try:
            reply, _ = raw.call({"i": 1, "o": "dequeue", "n": "ghosts", "md": "one", "t": bad})
            assert reply["e"][0] == qs.InvalidArgumentError.code and "timeout" in reply["e"][1]
            q.enqueue_many(np.array([0, 1]))  # now full
            element = np.array([9], np.int64).tobytes()
            reply, _ = raw.call({"i": 2, "o": "enqueue", "n": "ghosts", "a": [["<i8", []]], "t": bad}, element)
            assert reply["e"][0] == qs.InvalidArgumentError.code and "timeout" in reply["e"][1]
            # Nothing joined a waiting line: every element reaches the client that asks for it,
            # and the refused enqueue placed nothing.
            got = [int(q.dequeue(timeout=5)) for _ in range(2)]
            q.enqueue_many(np.array([2, 3]))
            got += [int(q.dequeue(timeout=5)) for _ in range(2)]
            q.enqueue(4)
            got.append(int(q.dequeue(timeout=5)))
            assert got == [0, 1, 2, 3, 4]
            assert q.size() == 0
        finally:
            raw.close()


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=repr)
def test_an_invalid_take_grad_timeout_leaves_no_taker_behind(local_server, bad):
    with qs.connect(local_server.target) as c:
        c.reset([""])
        acc = c.conditional_accumulator("grads", shape=[2])
        raw = RawConnection(local_server.target)
        try:
            reply, _ = raw.call({"i": 1, "o": "acc", "v": "take", "n": "grads", "nn": 1, "t": bad})
            assert reply["e"][0] == qs.InvalidArgumentError.code and "timeout" in reply["e"][1]
            assert acc.apply_grad(np.array([1.0, 3.0], np.float32), local_step=0)
            # The ghost taker would have swallowed this average and advanced the global step.
            assert acc.take_grad(1, timeout=5).tolist() == [1.0, 3.0]
        finally:
            raw.close()


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=repr)
def test_the_clients_refuse_an_invalid_timeout_too(local_server, bad):
    # The compact wire spells "no timeout" as NaN: a NaN from the caller must never reach it.
    with qs.connect(local_server.target) as c:
        c.reset([""])
        q = c.fifo_queue("nan", capacity=2, dtypes=[np.int64], shapes=[[]])
        with pytest.raises(qs.InvalidArgumentError, match="timeout"):
            q.dequeue(timeout=bad)
        with pytest.raises(qs.InvalidArgumentError, match="timeout"):
            q.enqueue(1, timeout=bad)
        q.enqueue(7)
        assert int(q.dequeue(timeout=5)) == 7


def test_a_batch_whose_reply_cannot_be_built_goes_back_in_order(local_server):
    wide, tall = np.ones((1, 2 ** 20), np.float32), np.full((2 ** 20, 1), 2.0, np.float32)
    with qs.connect(local_server.target) as c:
        c.reset([""])
        q = c.padding_fifo_queue("ragged", capacity=4, dtypes=[np.float32], shapes=[[None, None]])
        q.enqueue(wide)
        q.enqueue(tall)
        # Padded to (2, 2**20, 2**20) float32: 8 TiB, which no machine allocates.
        with pytest.raises(qs.ResourceExhaustedError, match="ragged.*cannot be allocated"):
            q.dequeue_many(2, timeout=5)
        assert q.size() == 2
    # A clean close acknowledges what the client received: the failed batch was never received.
    with qs.connect(local_server.target) as c:
        q = c.padding_fifo_queue("ragged", capacity=4, dtypes=[np.float32], shapes=[[None, None]])
        first, second = q.dequeue(timeout=5), q.dequeue(timeout=5)
        assert first.shape == wide.shape and second.shape == tall.shape and float(second[0, 0]) == 2.0


async def test_a_dequeue_acknowledges_only_what_its_own_task_received(local_server):
    async with await qs.connect_async(local_server.target) as setup:
        await setup.reset([""])
        q = await setup.fifo_queue("shared", capacity=100, dtypes=[np.int64], shapes=[[]])
        await q.enqueue_many(np.arange(12))
    c = await qs.connect_async(local_server.target)
    q = await c.fifo_queue("shared", capacity=100, dtypes=[np.int64], shapes=[[]])
    a_has_batch, b_done = asyncio.Event(), asyncio.Event()

    async def task_a():  # takes a batch and is still processing it when the process dies
        batch = await q.dequeue_many(3)
        a_has_batch.set()
        await b_done.wait()
        return batch

    async def task_b():  # takes a batch, then asks for more: done with its own batch only
        await a_has_batch.wait()
        first = await q.dequeue_many(3)
        second = await q.dequeue_many(3)
        b_done.set()
        return first, second

    a, (b1, b2) = await asyncio.gather(task_a(), task_b())
    assert (a.tolist(), b1.tolist(), b2.tolist()) == ([0, 1, 2], [3, 4, 5], [6, 7, 8])
    crash_connection(c)
    async with await qs.connect_async(local_server.target) as after:
        q = await after.fifo_queue("shared", capacity=100, dtypes=[np.int64], shapes=[[]])
        # A's batch was never acknowledged (B's second dequeue acknowledged only B's first batch);
        # B's second batch was held: both come back, in order, and B's first does not.
        assert (await q.dequeue_many(9, timeout=5)).tolist() == [0, 1, 2, 6, 7, 8, 9, 10, 11]


def test_sync_threads_sharing_a_client_acknowledge_only_their_own(local_server):
    with qs.connect(local_server.target) as setup:
        setup.reset([""])
        setup.fifo_queue("threads", capacity=100, dtypes=[np.int64], shapes=[[]]).enqueue_many(np.arange(6))
    c = qs.connect(local_server.target)
    q = c.fifo_queue("threads", capacity=100, dtypes=[np.int64], shapes=[[]])
    got = {}
    holder = threading.Thread(target=lambda: got.setdefault("held", q.dequeue_many(2).tolist()))
    holder.start()
    holder.join()
    assert q.dequeue_many(2).tolist() == [2, 3]
    assert q.dequeue_many(2).tolist() == [4, 5]  # acknowledges this thread's [2, 3], not [0, 1]
    crash_connection(c)
    c.close()
    with qs.connect(local_server.target) as after:
        q = after.fifo_queue("threads", capacity=100, dtypes=[np.int64], shapes=[[]])
        assert q.dequeue_many(4, timeout=5).tolist() == [0, 1, 4, 5]


def test_a_taken_batch_is_acknowledged_only_by_its_own_ack(local_server):
    with qs.connect(local_server.target) as c:
        c.reset([""])
        q = c.fifo_queue("taken", capacity=100, dtypes=[np.int64], shapes=[[]])
        q.enqueue_many(np.arange(10))
        first = q.take(2)
        assert first.value.tolist() == [0, 1]
        assert q.dequeue_many(2).tolist() == [2, 3]
        assert q.dequeue_many(2).tolist() == [4, 5]  # acknowledges [2, 3], not the taken batch
        with q.take(2) as batch:
            assert batch.tolist() == [6, 7]          # acknowledged when the block ends
        with pytest.raises(RuntimeError):
            with q.take(2, up_to=True):
                raise RuntimeError("training failed")  # given back: 8, 9 go to the front
        assert int(q.take().value) == 8               # one element; never acknowledged
        first.ack()
        with pytest.raises(qs.InvalidArgumentError, match="already acknowledged"):
            first.ack()
    # The clean close acknowledged the plain dequeues and gave the unacknowledged taken one back.
    with qs.connect(local_server.target) as c:
        q = c.fifo_queue("taken", capacity=100, dtypes=[np.int64], shapes=[[]])
        assert q.size() == 2 and q.dequeue_many(2, timeout=5).tolist() == [8, 9]


@pytest.mark.parametrize("attempt", range(8))
def test_closing_a_client_fails_every_thread_blocked_in_it_promptly(local_server, attempt):
    # Before: some threads hung for ever (the loop thread stopped under them) or got "connection lost".
    with qs.connect(local_server.target) as setup:
        setup.reset([""])
        setup.fifo_queue("blocked", capacity=10, dtypes=[np.int64], shapes=[[]])
    c = qs.connect(local_server.target)
    q = c.fifo_queue("blocked", capacity=10, dtypes=[np.int64], shapes=[[]])
    outcomes: list = []
    started = threading.Barrier(7)

    def blocked(kind):
        started.wait()
        try:
            q.dequeue() if kind % 2 else q.dequeue_many(2)
            outcomes.append("returned")
        except BaseException as exc:  # noqa: BLE001 - the test looks at what each thread got
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=blocked, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    started.wait()
    with qs.connect(local_server.target) as watcher:  # wait until all six wait on the server
        deadline = time.monotonic() + 10
        while watcher.status()["queues"][0]["waiting_dequeues"] < 6:
            assert time.monotonic() < deadline
            time.sleep(0.005)
    c.close()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "a thread is still blocked in the closed client"
    assert outcomes == ["CancelledError"] * 6
    with qs.connect(local_server.target) as after:  # nothing was taken by the withdrawn calls
        q2 = after.fifo_queue("blocked", capacity=10, dtypes=[np.int64], shapes=[[]])
        q2.enqueue_many(np.arange(3))
        assert q2.dequeue_many(3, timeout=5).tolist() == [0, 1, 2]


async def test_closing_an_asyncio_client_fails_its_waiting_tasks_with_cancelled(local_server):
    c = await qs.connect_async(local_server.target)
    await c.reset([""])
    q = await c.fifo_queue("blocked_async", capacity=10, dtypes=[np.int64], shapes=[[]])
    waiting = [asyncio.ensure_future(q.dequeue()) for _ in range(4)]
    while (await c.status())["queues"][0]["waiting_dequeues"] < 4:
        await asyncio.sleep(0.005)
    await c.close()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["CancelledError"] * 4
    assert all(isinstance(r, qs.CancelledError) for r in results)
