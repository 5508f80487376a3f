"""Coordinator and QueueRunner: stopping together, errors never lost, queues closed at the end."""

from __future__ import annotations

import asyncio
import doctest
import threading
from collections import Counter

import numpy as np
import pytest

import queueserver as qs
from pipeline import coordination
from pipeline.coordination import AsyncQueueView, Coordinator, QueueRunner


def counting_op(queue, values):
    """An async enqueue op that enqueues one value per call, OutOfRange at the end."""
    it = iter(values)

    async def op():
        try:
            v = next(it)
        except StopIteration:
            raise qs.OutOfRangeError("exhausted") from None
        await queue.enqueue(v)

    return op


async def drain(queue, n=3):
    got = []
    with pytest.raises(qs.OutOfRangeError):
        while True:
            got.extend((await queue.dequeue_up_to(n)).tolist())
    return got


# --------------------------------------------------------------------------- Coordinator alone
def test_request_stop_keeps_the_first_error_and_ignores_clean_stops():
    coord = Coordinator()
    assert not coord.should_stop()
    coord.request_stop(qs.OutOfRangeError("end of input"))
    assert coord.should_stop() and coord.exception is None
    coord.clear_stop()
    first, second = ValueError("first"), KeyError("second")
    coord.request_stop(first)
    coord.request_stop(second)
    assert coord.exception is first
    with pytest.raises(ValueError, match="first"):
        coord.join_threads([])
    with pytest.raises(KeyError):  # after join, a new error is raised at once rather than lost
        coord.request_stop(second)


def test_stop_on_exception_reports_and_swallows_but_lets_interrupts_through():
    coord = Coordinator()
    with coord.stop_on_exception():
        raise RuntimeError("reader 2 failed")
    assert coord.should_stop() and str(coord.exception) == "reader 2 failed"

    coord = Coordinator()
    with pytest.raises(KeyboardInterrupt):
        with coord.stop_on_exception():
            raise KeyboardInterrupt
    assert coord.should_stop() and coord.exception is None


async def test_stop_on_exception_as_async_context_manager_passes_cancellation():
    coord = Coordinator()
    async with coord.stop_on_exception():
        raise qs.DataLossError("bad CRC")
    assert isinstance(coord.exception, qs.DataLossError)

    coord = Coordinator()

    async def body():
        async with coord.stop_on_exception():
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not coord.should_stop()  # a cancellation is not an error to report


async def test_wait_for_stop_wakes_on_a_request_from_another_thread():
    coord = Coordinator()
    assert await coord.wait_for_stop(0.01) is False
    waiter = asyncio.create_task(coord.wait_for_stop())
    await asyncio.sleep(0)
    threading.Thread(target=coord.request_stop).start()
    assert await asyncio.wait_for(waiter, 10) is True
    assert coord.wait_for_stop_blocking(0) is True


async def test_join_reraises_the_first_error_a_task_raised():
    coord = Coordinator()
    release = asyncio.Event()

    async def good():
        while not coord.should_stop():
            await asyncio.sleep(0)

    async def bad():
        await release.wait()
        raise ValueError("bad header in part-3.csv")

    tasks = [asyncio.create_task(good()), asyncio.create_task(bad())]
    release.set()
    with pytest.raises(ValueError, match="part-3.csv"):
        await coord.join(tasks, stop_grace_period_secs=5)
    assert coord.should_stop() and all(t.done() for t in tasks)


async def test_join_cancels_and_names_stragglers_after_the_grace_period():
    coord = Coordinator()

    async def deaf():
        await asyncio.Event().wait()  # never checks should_stop

    task = asyncio.create_task(deaf(), name="deaf-reader")
    coord.request_stop()
    with pytest.raises(RuntimeError, match="deaf-reader"):
        await coord.join([task], stop_grace_period_secs=0.05)
    assert task.cancelled()

    coord2 = Coordinator()
    task2 = asyncio.create_task(deaf(), name="other")
    coord2.request_stop()
    await coord2.join([task2], stop_grace_period_secs=0.0, ignore_live_threads=True)
    assert task2.cancelled()


async def test_async_with_requests_stop_on_error_and_joins_registered_tasks():
    stopped = asyncio.Event()

    with pytest.raises(ZeroDivisionError):
        async with Coordinator(stop_grace_period_secs=5) as coord:
            async def loop():
                while not coord.should_stop():
                    await asyncio.sleep(0)
                stopped.set()

            coord.register_task(asyncio.create_task(loop()))
            await asyncio.sleep(0)
            raise ZeroDivisionError("division by zero")
    assert coord.should_stop() and stopped.is_set()


def test_join_and_wait_for_stop_block_in_a_script_as_tensorflows():
    # TF1 scripts write coord.join(threads) and coord.wait_for_stop(t) without an event loop: they
    # used to get an un-awaited coroutine (the error was lost, wait_for_stop was always truthy).
    coord = Coordinator()
    assert coord.wait_for_stop(0.01) is False
    t = threading.Thread(target=lambda: coord.request_stop(ValueError("corrupt record in shard 7")))
    t.start()
    with pytest.raises(ValueError, match="shard 7"):
        coord.join([t])
    assert coord.joined and coord.wait_for_stop(0) is True

    deaf = Coordinator(clean_stop_exception_types=None)  # None: TensorFlow's default, OutOfRange is clean
    deaf.request_stop(qs.OutOfRangeError("end of input"))
    assert deaf.exception is None
    stuck = threading.Event()
    straggler = threading.Thread(target=stuck.wait, args=(10,), name="reader-0")
    straggler.start()
    deaf.register_thread(straggler)
    with pytest.raises(RuntimeError, match="threads still running.*reader-0"):
        deaf.join(stop_grace_period_secs=0.01)
    stuck.set()
    straggler.join()


def test_with_block_surfaces_a_thread_error_at_the_end():
    with pytest.raises(OSError, match="disk"):
        with Coordinator(stop_grace_period_secs=5) as coord:
            def work():
                with coord.stop_on_exception():
                    raise OSError("disk gone")

            t = threading.Thread(target=work)
            t.start()
            coord.register_task(t)
            # The error stops the coordinator during the block (as TensorFlow's, an error that
            # came after the block's own stop request would be ignored: wait for it, do not race it).
            assert coord.wait_for_stop_blocking(10)


# --------------------------------------------------------------------------- QueueRunner
async def test_runner_closes_the_queue_when_every_op_ran_out(local_server):
    async with qs.connect_async(local_server.target, operation_timeout=10) as c:
        q = await c.fifo_queue("numbers", capacity=4, dtypes=[np.int64], shapes=[[]])
        ops = [counting_op(q, range(i * 100, i * 100 + 20)) for i in range(3)]
        coord = Coordinator()
        tasks = QueueRunner(q, ops).create_tasks(coord)
        got = await drain(q)
        await coord.join(tasks, stop_grace_period_secs=5)
        assert Counter(got) == Counter([v for i in range(3) for v in range(i * 100, i * 100 + 20)])
        assert await q.is_closed()


async def test_runner_error_stops_everything_and_cancels_blocked_enqueues(local_server):
    async with qs.connect_async(local_server.target, operation_timeout=10) as c:
        q = await c.fifo_queue("small", capacity=1, dtypes=[np.int64], shapes=[[]])
        filled = asyncio.Event()

        async def blocked_op():  # fills the queue, then waits in enqueue: nobody dequeues
            await q.enqueue(1)
            filled.set()
            await q.enqueue(2)

        async def failing_op():
            await filled.wait()
            raise qs.DataLossError("part-7.tfrecord: corrupted record at 12")

        runner = QueueRunner(q, [blocked_op, failing_op])
        coord = Coordinator()
        tasks = runner.create_tasks(coord)
        with pytest.raises(qs.DataLossError, match="part-7"):
            await coord.join(tasks, stop_grace_period_secs=5)
        assert await q.is_closed()  # closed with cancel_pending_enqueues: the blocked op ended
        assert all(t.done() and not t.cancelled() for t in tasks)
        assert runner.exceptions_raised == []  # as in TensorFlow: with a coordinator, errors go to it


async def test_stop_request_unblocks_runners_waiting_on_a_full_queue(local_server):
    async with qs.connect_async(local_server.target, operation_timeout=10) as c:
        q = await c.fifo_queue("full", capacity=2, dtypes=[np.int64], shapes=[[]])
        ops = [counting_op(q, iter(int, 1)) for _ in range(3)]  # endless sources
        coord = Coordinator()
        tasks = QueueRunner(q, ops).create_tasks(coord)
        assert (await q.dequeue_many(2)).tolist() == [0, 0]  # the consumer had enough
        coord.request_stop()
        await coord.join(tasks, stop_grace_period_secs=5)  # no straggler, no error
        assert await q.is_closed()


async def test_runner_without_coordinator_fails_its_task(local_server):
    async with qs.connect_async(local_server.target, operation_timeout=10) as c:
        q = await c.fifo_queue("nocoord", capacity=2, dtypes=[np.int64], shapes=[[]])

        async def bad():
            raise ValueError("no coordinator to tell")

        runner = QueueRunner(q, [bad])
        tasks = runner.create_tasks()
        done, _ = await asyncio.wait(tasks, timeout=10)
        assert len(done) == len(tasks)
        assert isinstance(tasks[0].exception(), ValueError)
        assert [str(e) for e in runner.exceptions_raised] == ["no coordinator to tell"]
        assert not await q.is_closed()  # TensorFlow's: only running out of input closes it


def test_runner_without_coordinator_keeps_the_other_loops_filling_the_queue(local_server):
    # TensorFlow's QueueRunner without a coordinator: a failing op ends its own thread only. Ours
    # used to stop every loop and cancel the queue, losing what the others had still to enqueue.
    with qs.connect(local_server.target, operation_timeout=10) as c:
        q = c.fifo_queue("nocoord_others", capacity=100, dtypes=[np.int64], shapes=[[]])
        values = iter(range(50))
        gate = threading.Event()
        bad_opens_the_gate = True

        def good():
            gate.wait(10)  # the first run: the bad op has failed before this loop enqueues anything
            try:
                q.enqueue(next(values))
            except StopIteration:
                raise qs.OutOfRangeError("done") from None

        def bad():
            if bad_opens_the_gate:
                gate.set()
            raise ValueError("bad op")

        runner = QueueRunner(q, [good, bad])
        threads = runner.create_threads()
        for t in threads:
            t.join(30)
        assert [str(e) for e in runner.exceptions_raised] == ["bad op"]
        assert q.dequeue_up_to(100).tolist() == list(range(50))
        assert q.is_closed()  # the last loop ran out of input: closed, as in TensorFlow

        # A new run starts with no errors; a second call while one runs starts nothing.
        bad_opens_the_gate = False
        gate.clear()  # the good loop now waits until the test lets it go
        threads = runner.create_threads()
        assert runner.create_threads() == []
        gate.set()
        for t in threads:
            t.join(30)
        assert [str(e) for e in runner.exceptions_raised] == ["bad op"]  # this run's only


def test_create_threads_handles_take_tensorflows_start_call(local_server):
    # TensorFlow's idiom (its create_threads does not start by default): start each handle.
    with qs.connect(local_server.target, operation_timeout=10) as c:
        q = c.fifo_queue("idiom", capacity=10, dtypes=[np.int64], shapes=[[]])
        values = iter(range(4))

        def op():
            try:
                q.enqueue(next(values))
            except StopIteration:
                raise qs.OutOfRangeError("done") from None

        coord = Coordinator()
        threads = QueueRunner(q, [op]).create_threads(coord)
        for t in threads:
            t.start()  # a no-op for a handle create_threads started
        with pytest.raises(RuntimeError, match="started already"):
            threads[0].start()  # a second call is the caller's own: refused, as a thread's
        coord.join(threads, stop_grace_period_secs=5)
        assert q.dequeue_up_to(10).tolist() == [0, 1, 2, 3]


def test_sync_facade_with_blocking_ops_and_a_remote_server(server_process):
    with qs.connect(server_process.target, operation_timeout=10) as c:
        q = c.fifo_queue("remote_numbers", capacity=3, dtypes=[np.float32], shapes=[[2]])
        lock = threading.Lock()
        source = iter(range(30))

        def enqueue_pair():  # a plain function: runs in a worker thread and may block
            with lock:
                try:
                    i = next(source)
                except StopIteration:
                    raise qs.OutOfRangeError("done") from None
            q.enqueue([i, -i])

        coord = Coordinator()
        threads = QueueRunner(q, [enqueue_pair] * 4).create_threads(coord)
        assert len(threads) == 5 and threads[-1].name.endswith("close_on_stop")
        got = []
        with coord.stop_on_exception():
            while True:
                got.extend(q.dequeue_up_to(4)[:, 0].tolist())
        coord.join_threads(threads, stop_grace_period_secs=5)
        assert sorted(got) == list(range(30))
        assert not any(t.is_alive() for t in threads)
        c.reset([""])


def test_create_threads_refuses_an_async_queue(local_server):
    async def make():
        async with qs.connect_async(local_server.target) as c:
            q = await c.fifo_queue("aq", capacity=2, dtypes=[np.int64], shapes=[[]])
            runner = QueueRunner(q, [counting_op(q, [])])
            with pytest.raises(TypeError, match="synchronous Queue"):
                runner.create_threads()

    asyncio.run(make())


def test_runner_validates_its_arguments(local_server):
    with qs.connect(local_server.target) as c:
        q = c.fifo_queue("v", capacity=2, dtypes=[np.int64], shapes=[[]])
        with pytest.raises(ValueError, match="at least one enqueue op"):
            QueueRunner(q, [])
        with pytest.raises(ValueError, match="close_op and cancel_op"):
            QueueRunner(None, [lambda: None])
        assert isinstance(coordination.as_async_queue(q), AsyncQueueView)
        with pytest.raises(TypeError):
            coordination.as_async_queue(object())


async def test_async_queue_view_works_from_another_event_loop(local_server):
    c = qs.connect(local_server.target, operation_timeout=10)
    try:
        view = AsyncQueueView(c.fifo_queue("view", capacity=2, dtypes=[np.int64], shapes=[[]]))
        await view.enqueue_many(np.array([5, 6]))
        assert await view.size() == 2
        assert (await view.dequeue_many(2)).tolist() == [5, 6]
        waiting = asyncio.create_task(view.dequeue())  # blocks on the client's loop, not ours
        await asyncio.sleep(0.01)
        assert not waiting.done()
        waiting.cancel()
        await view.close()
        assert await view.is_closed()
    finally:
        c.close()


@pytest.mark.parametrize("module", [coordination, coordination.loops, coordination.views, coordination.coordinator,
                                    coordination.runner], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    # The package and each of its modules: testmod only finds examples defined in the module it is given.
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
