""":class:`QueueRunner`: runs enqueue ops in concurrent loops and closes their queue when all run out of input.

Loops run as asyncio tasks (:meth:`QueueRunner.create_tasks`), or on the background loop behind
thread-like :class:`RunnerThread` handles (:meth:`QueueRunner.create_threads`) for synchronous
scripts; see :mod:`pipeline.coordination` for the rules.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from typing import Any, Awaitable, Callable, Coroutine, Sequence

from queueserver import errors as qerrors
from queueserver.client import AsyncQueue

from .coordinator import Coordinator
from .loops import background_loop, call_in_thread, is_coroutine_callable
from .views import as_async_queue

__all__ = ["QueueRunner", "RunnerThread"]

log = logging.getLogger("pipeline.coordination")

EnqueueOp = Callable[[], Any]  # a coroutine function, or a plain function run in a worker thread


class RunnerThread:
    """A thread-like handle on one task that runs on :func:`background_loop`.

    Returned by :meth:`QueueRunner.create_threads`; has what :meth:`Coordinator.join_threads` and
    TensorFlow users expect of a thread: ``name``, ``start()``, ``is_alive()``, ``join(timeout)``,
    plus ``cancel()``.
    """

    def __init__(self, coro: Coroutine, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self._coro: Coroutine | None = coro
        self._loop = loop
        self._task: asyncio.Task | None = None
        self._done = threading.Event()
        self._started = False
        self._auto_started = False  # started by create_threads(start=True), not by the caller

    def __repr__(self) -> str:
        state = "done" if self._done.is_set() else ("running" if self._started else "created")
        return f"<RunnerThread {self.name} {state}>"

    def start(self) -> None:
        """Schedule the task on the background loop.

        A handle that :meth:`QueueRunner.create_threads` already started takes this call as a
        no-op, once: TensorFlow's idiom ``for t in runner.create_threads(coord): t.start()``
        (its ``start=False`` default) works with this project's ``start=True`` default.

        Raises:
            RuntimeError: it was started already by a call to ``start()``.
        """
        if self._auto_started:
            self._auto_started = False
            return
        if self._started:
            raise RuntimeError(f"{self.name} was started already")
        self._started = True
        coro, self._coro = self._coro, None
        assert coro is not None  # handed out once: _started guards it

        def create() -> None:
            self._task = self._loop.create_task(coro, name=self.name)
            self._task.add_done_callback(self._finished)

        self._loop.call_soon_threadsafe(create)

    def _finished(self, task: asyncio.Task) -> None:
        if not task.cancelled():
            task.exception()  # kept for exception(); marked as seen: the runner reported it already
        self._done.set()

    def is_alive(self) -> bool:
        """True from :meth:`start` until the task has finished."""
        return self._started and not self._done.is_set()

    def join(self, timeout: float | None = None) -> None:
        """Block until the task finished (or the timeout expired)."""
        if self._started:
            self._done.wait(timeout)

    def cancel(self) -> None:
        """Cancel the task (it finishes at its next await)."""
        if self._started:
            self._loop.call_soon_threadsafe(lambda: self._task is not None and self._task.cancel())

    def exception(self) -> BaseException | None:
        """The error the task ended with, if it ended with one."""
        t = self._task
        if t is None or not t.done() or t.cancelled():
            return None
        return t.exception()


class _Run:
    """Book-keeping of one ``create_tasks`` call: how many loops are still going."""

    def __init__(self, n: int, coord: Coordinator, own_coord: bool,
                 executor: concurrent.futures.Executor | None) -> None:
        self.loops = n
        self.remaining = n
        self.coord = coord
        self.own_coord = own_coord
        self.executor = executor
        self.finished = asyncio.Event()


class QueueRunner:
    """Runs enqueue ops in concurrent loops and closes their queue when all run out of input.

    Args:
        queue: the queue the ops fill (``Queue``, ``AsyncQueue`` or :class:`AsyncQueueView`); it
            is closed at the end. May be ``None`` if both ``close_op`` and ``cancel_op`` are given.
        enqueue_ops: one op per loop. An op is a coroutine function (awaited on the loop) or a
            plain function (run in a worker thread); each call does one unit of work and raises
            ``OutOfRangeError`` (or a closed-queue ``CancelledError``) when there is no more. The
            same op may appear several times (several loops run it); it must then be safe to call
            concurrently.
        close_op: async callable run when every loop ran out of input (default
            ``queue.close()``).
        cancel_op: async callable run when a stop is requested (default
            ``queue.close(cancel_pending_enqueues=True)``).
        queue_closed_exception_types: errors that end a loop quietly.
        name: used in task names and messages (default: the queue's name).

    Raises:
        ValueError: no ops, or no queue and no close/cancel ops.

    Example:
        >>> async def fill(queue, records):          # doctest: +SKIP
        ...     it = iter(records)
        ...     async def enqueue_one():
        ...         try:
        ...             await queue.enqueue(next(it))
        ...         except StopIteration:
        ...             raise qerrors.OutOfRangeError("done") from None
        ...     coord = Coordinator()
        ...     tasks = QueueRunner(queue, [enqueue_one] * 4).create_tasks(coord)
        ...     await coord.join(tasks)            # the queue is closed now
    """

    def __init__(
        self,
        queue: Any = None,
        enqueue_ops: Sequence[EnqueueOp] = (),
        close_op: Callable[[], Awaitable[Any]] | None = None,
        cancel_op: Callable[[], Awaitable[Any]] | None = None,
        queue_closed_exception_types: Sequence[type[BaseException]] = (
            qerrors.OutOfRangeError, qerrors.CancelledError),
        *,
        name: str | None = None,
    ) -> None:
        self.enqueue_ops = list(enqueue_ops)
        if not self.enqueue_ops:
            raise ValueError("a QueueRunner needs at least one enqueue op")
        if queue is None and (close_op is None or cancel_op is None):
            raise ValueError("give the queue to close, or both close_op and cancel_op")
        self.queue = queue
        # A duck-typed async queue (see as_async_queue); None only when both ops were given.
        self._aqueue: Any = as_async_queue(queue) if queue is not None else None
        self.close_op = close_op or (lambda: self._aqueue.close())
        self.cancel_op = cancel_op or (lambda: self._aqueue.close(cancel_pending_enqueues=True))
        self.queue_closed_exception_types = tuple(queue_closed_exception_types)
        self.name = name or (getattr(queue, "name", None) or "queue_runner")
        #: Errors raised by the ops of the latest run that had no coordinator, in order (as in
        #: TensorFlow: with a coordinator, errors go to it instead).
        self.exceptions_raised: list[BaseException] = []
        self._lock = threading.Lock()
        self._running: _Run | None = None  # the run whose loops are still going

    def __repr__(self) -> str:
        return f"<QueueRunner {self.name!r} ops={len(self.enqueue_ops)}>"

    # -- the loops ------------------------------------------------------------------------------
    async def _call(self, op: EnqueueOp, run: _Run) -> None:
        if is_coroutine_callable(op):
            await op()
            return
        out = await asyncio.get_running_loop().run_in_executor(run.executor, call_in_thread, op)
        if inspect.isawaitable(out):
            await out

    async def _loop(self, op: EnqueueOp, run: _Run) -> None:
        coord = run.coord
        exhausted = False
        try:
            while not coord.should_stop():
                try:
                    await self._call(op, run)
                except self.queue_closed_exception_types:
                    exhausted = True
                    break
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none is lost
            if not run.own_coord:
                coord.request_stop(exc)
            else:
                # No coordinator: as in TensorFlow, the error is kept in exceptions_raised and
                # fails this loop's task; the other loops go on filling the queue (stopping them
                # would cancel their pending enqueues and lose what they read).
                with self._lock:
                    self.exceptions_raised.append(exc)
                log.error("QueueRunner %s: an enqueue op failed (its loop stops, the others go on): %r",
                          self.name, exc)
                raise
        finally:
            run.remaining -= 1
            last = run.remaining == 0
            if last:
                run.finished.set()
                with self._lock:
                    if self._running is run:
                        self._running = None
                if run.executor is not None:
                    run.executor.shutdown(wait=False)
        if last and exhausted and not coord.should_stop():
            try:
                await self.close_op()
            except Exception as exc:  # noqa: BLE001 - e.g. already closed by someone else
                log.debug("QueueRunner %s: close ignored: %s", self.name, exc)

    async def _close_on_stop(self, run: _Run) -> None:
        stop = run.coord._stop_future()
        finished = asyncio.ensure_future(run.finished.wait())
        try:
            await asyncio.wait({stop, finished}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            run.coord._forget(stop)
            finished.cancel()
        if run.coord.should_stop():
            try:
                await self.cancel_op()
            except Exception as exc:  # noqa: BLE001 - already closed, server gone: nothing to cancel
                log.debug("QueueRunner %s: cancel ignored: %s", self.name, exc)

    def _coroutines(self, coord: Coordinator | None) -> tuple[list[Coroutine], list[str], Coordinator] | None:
        """The loops of a new run, or None while the previous run's loops are still going (then
        TensorFlow's ``create_threads`` returns no threads: one set of loops fills a queue)."""
        own = coord is None
        coord = coord or Coordinator()
        n_sync = sum(1 for op in self.enqueue_ops if not is_coroutine_callable(op))
        # Sync ops may block on a full queue; a private pool keeps them from starving the
        # loop's default executor, which readers (asyncio.to_thread) use.
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=n_sync, thread_name_prefix=f"{self.name}-op") if n_sync else None
        run = _Run(len(self.enqueue_ops), coord, own, executor)
        with self._lock:
            if self._running is not None:
                if executor is not None:
                    executor.shutdown(wait=False)
                return None
            self._running = run
            self.exceptions_raised = []
        coros = [self._loop(op, run) for op in self.enqueue_ops] + [self._close_on_stop(run)]
        names = [f"{self.name}:enqueue_{i}" for i in range(len(self.enqueue_ops))] + [f"{self.name}:close_on_stop"]
        return coros, names, coord

    def create_tasks(self, coord: Coordinator | None = None, start: bool = True) -> list[Any]:
        """Start one asyncio task per op, plus one that cancels the queue on a stop request.

        Must be called with a running event loop (inside a coroutine).

        Args:
            coord: the coordinator that stops the loops and receives their errors; the tasks are
                registered with it, so ``await coord.join()`` waits for them. Without one, the
                runner uses a private coordinator and a failing op fails its task.
            start: if False, return the coroutines unscheduled (schedule them yourself).

        Returns:
            The tasks (or coroutines); the last one watches for a stop request. An empty list
            while the loops of an earlier call are still running (as TensorFlow's
            ``create_threads``: a runner runs one set of loops at a time).

        Example:
            >>> tasks = runner.create_tasks(coord)   # doctest: +SKIP
            >>> await coord.join(tasks)              # doctest: +SKIP
        """
        made = self._coroutines(coord)
        if made is None:
            return []
        coros, names, coord = made
        if not start:
            return coros
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(c, name=n) for c, n in zip(coros, names)]
        for t in tasks:
            coord.register_task(t)
        return tasks

    def create_threads(self, coord: Coordinator | None = None, daemon: bool = True,
                       start: bool = True) -> list[RunnerThread]:
        """The synchronous facade of :meth:`create_tasks`: the loops run on :func:`background_loop`.

        For scripts without an event loop, like the seed's. The handles behave like threads.

        Args:
            coord: as for :meth:`create_tasks`; the handles are registered with it, so
                ``coord.join_threads()`` waits for them.
            daemon: accepted for TensorFlow compatibility (the loop thread is always a daemon).
            start: if False, call ``start()`` on each handle yourself.

        Returns:
            One :class:`RunnerThread` per op, plus the stop watcher; an empty list while the loops
            of an earlier call are still running (as in TensorFlow).

        Raises:
            TypeError: the runner's queue is an ``AsyncQueue`` (it belongs to another loop; pass
                the synchronous handle).

        Example:
            >>> threads = runner.create_threads(coord, start=True)   # doctest: +SKIP
            >>> coord.join_threads(threads)                          # doctest: +SKIP
        """
        if isinstance(self.queue, AsyncQueue):
            raise TypeError(
                f"QueueRunner {self.name!r}: create_threads runs on a background loop, but an AsyncQueue "
                "only works on its client's loop; give the runner the synchronous Queue handle, or call "
                "create_tasks() from your event loop")
        loop = background_loop()
        made = self._coroutines(coord)
        if made is None:
            return []
        coros, names, coord = made
        threads = [RunnerThread(c, n, loop) for c, n in zip(coros, names)]
        for t in threads:
            coord.register_task(t)
            if start:
                t.start()
                t._auto_started = True
        return threads
