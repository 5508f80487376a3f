"""``Coordinator`` and ``QueueRunner``: TensorFlow 1's ``tf.train`` threading helpers, on asyncio.

A :class:`Coordinator` stops a group of concurrent loops together: each loop checks
:meth:`~Coordinator.should_stop`, any loop may :meth:`~Coordinator.request_stop` (with the error
that made it stop), and :meth:`~Coordinator.join` waits for all of them, cancels the ones that do not
stop within a grace period and re-raises the first reported error.

A :class:`QueueRunner` runs one loop per enqueue op, as fast as the target queue accepts, the way
the seed's section 2.7.3 describes:

* each op does one unit of work (read a record or a chunk, enqueue it) and raises
  ``OutOfRangeError`` when its input is exhausted (or ``CancelledError`` when the queue it enqueues
  into was closed): its loop then ends quietly;
* when *every* loop of a run has ended that way, the runner closes the target queue, so consumers
  using ``dequeue_up_to`` get what is left and then ``OutOfRangeError``;
* any other error is reported to the coordinator (``request_stop(exc)``), and once a stop is
  requested the runner closes the queue with ``cancel_pending_enqueues=True`` so that no loop or
  remote producer stays blocked on a full queue.

Everything runs as asyncio tasks (:meth:`QueueRunner.create_tasks`). Synchronous scripts, like the
seed's, use :meth:`QueueRunner.create_threads`, which runs the same tasks on a background event
loop and hands back thread-like handles for :meth:`Coordinator.join_threads`.

Queue handles: an :class:`queueserver.AsyncQueue` is awaited directly (use it on the loop its
client was opened on); a synchronous :class:`queueserver.Queue` is wrapped in an
:class:`AsyncQueueView`, whose coroutines run the call on that client's own loop, so they work from
any event loop without blocking it.

Example:
    >>> import numpy as np, queueserver as qs
    >>> server = qs.Server.create_local_server()
    >>> c = qs.connect(server.target)
    >>> q = c.fifo_queue("numbers", capacity=4, dtypes=[np.int64], shapes=[[]])
    >>> source = iter(range(10))
    >>> def enqueue_next():                      # a sync op: runs in a worker thread
    ...     try:
    ...         q.enqueue(next(source))
    ...     except StopIteration:
    ...         raise qs.OutOfRangeError("no more numbers") from None
    >>> coord = Coordinator()
    >>> threads = QueueRunner(q, [enqueue_next]).create_threads(coord)
    >>> got = []
    >>> with coord.stop_on_exception():          # OutOfRangeError: a clean stop
    ...     while True:
    ...         got.extend(q.dequeue_up_to(3).tolist())
    >>> coord.join_threads(threads)
    >>> got
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    >>> c.close(); server.stop()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
import time
from typing import Any, Awaitable, Callable, Coroutine, Iterable, Sequence

from queueserver import errors as qerrors
from queueserver.client import AsyncQueue, Queue

__all__ = [
    "AsyncQueueView",
    "Coordinator",
    "QueueRunner",
    "RunnerThread",
    "as_async_queue",
    "background_loop",
]

log = logging.getLogger(__name__)

EnqueueOp = Callable[[], Any]  # a coroutine function, or a plain function run in a worker thread


# --------------------------------------------------------------------------- event loops
# One background loop for the whole package (the Data API runs its coroutine functions there too).
from pipeline.data.base import background_loop  # noqa: E402


def _loop_of_current_thread() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine) -> Any:
    """Await ``coro`` on ``loop``: directly when it is the running loop, else through a future.

    Cancelling the caller cancels the coroutine on the other loop too (run_coroutine_threadsafe
    chains the cancellation), so a cancelled dequeue is withdrawn on the server.
    """
    if loop is _loop_of_current_thread():
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def call_in_thread(fn: Callable[[], Any]) -> Any:
    """Call ``fn()`` for a worker thread, turning ``StopIteration`` into ``OutOfRangeError``.

    ``StopIteration`` cannot cross a future (asyncio refuses it and the waiter hangs), and for an
    input function it means the same as ``OutOfRangeError``: no more input.
    """
    try:
        return fn()
    except StopIteration as exc:
        raise qerrors.OutOfRangeError(f"{getattr(fn, '__qualname__', fn)!s} raised StopIteration: no more input") from exc


# --------------------------------------------------------------------------- queue handles
class AsyncQueueView:
    """Coroutine methods for a synchronous :class:`queueserver.Queue`, usable from any event loop.

    A sync ``Queue`` belongs to its client's event loop thread; calling its blocking methods from
    a coroutine would stall the caller's loop. This view runs each call on the client's own loop
    and awaits the result, so it blocks nothing and is cancellable.

    Args:
        queue: the synchronous handle.

    Example:
        >>> view = AsyncQueueView(sync_queue)                  # doctest: +SKIP
        >>> await view.enqueue_many(np.arange(3.0, dtype=np.float32))  # doctest: +SKIP
    """

    def __init__(self, queue: Queue) -> None:
        self.sync = queue
        # The sync handle wraps an AsyncQueue driven by a private loop thread; reaching it lets us
        # await on that loop instead of parking a worker thread per blocked call.
        self._handle = getattr(queue, "_async", None)
        runner = getattr(queue, "_runner", None)
        self._loop = getattr(runner, "loop", None)

    name = property(lambda self: self.sync.name, doc="The queue's name.")
    container = property(lambda self: self.sync.container, doc="The queue's container.")
    spec = property(lambda self: self.sync.spec, doc="The queue's component spec.")
    dtypes = property(lambda self: self.sync.spec.dtypes, doc="The components' dtypes.")
    shapes = property(lambda self: self.sync.spec.shapes, doc="The components' shapes.")

    def __repr__(self) -> str:
        return f"AsyncQueueView({self.sync!r})"

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._handle is None or self._loop is None:  # another Queue implementation: use a thread
            return await asyncio.to_thread(getattr(self.sync, method), *args, **kwargs)
        return await _run_on(self._loop, getattr(self._handle, method)(*args, **kwargs))

    async def enqueue(self, value: Any, **kwargs: Any) -> None:
        """See :meth:`queueserver.AsyncQueue.enqueue`."""
        await self._call("enqueue", value, **kwargs)

    async def enqueue_many(self, values: Any, **kwargs: Any) -> None:
        """See :meth:`queueserver.AsyncQueue.enqueue_many`."""
        await self._call("enqueue_many", values, **kwargs)

    async def dequeue(self, **kwargs: Any) -> Any:
        """See :meth:`queueserver.AsyncQueue.dequeue`."""
        return await self._call("dequeue", **kwargs)

    async def dequeue_many(self, n: int, **kwargs: Any) -> Any:
        """See :meth:`queueserver.AsyncQueue.dequeue_many`."""
        return await self._call("dequeue_many", n, **kwargs)

    async def dequeue_up_to(self, n: int, **kwargs: Any) -> Any:
        """See :meth:`queueserver.AsyncQueue.dequeue_up_to`."""
        return await self._call("dequeue_up_to", n, **kwargs)

    async def size(self) -> int:
        """See :meth:`queueserver.AsyncQueue.size`."""
        return await self._call("size")

    async def is_closed(self) -> bool:
        """See :meth:`queueserver.AsyncQueue.is_closed`."""
        return await self._call("is_closed")

    async def close(self, cancel_pending_enqueues: bool = False) -> None:
        """See :meth:`queueserver.AsyncQueue.close`."""
        await self._call("close", cancel_pending_enqueues)

    async def ack(self) -> None:
        """See :meth:`queueserver.AsyncQueue.ack`."""
        await self._call("ack")


def as_async_queue(queue: Any) -> Any:
    """A handle whose methods are coroutines: ``AsyncQueue`` as is, a sync ``Queue`` wrapped.

    Args:
        queue: an :class:`queueserver.AsyncQueue`, a :class:`queueserver.Queue`, an
            :class:`AsyncQueueView`, or any object with coroutine ``enqueue``/``dequeue``/``close``.

    Returns:
        An object with coroutine queue methods.

    Raises:
        TypeError: ``queue`` is none of these.

    Example:
        >>> as_async_queue(sync_queue).sync is sync_queue   # doctest: +SKIP
        True
    """
    if isinstance(queue, Queue):
        return AsyncQueueView(queue)
    if isinstance(queue, (AsyncQueue, AsyncQueueView)):
        return queue
    if inspect.iscoroutinefunction(getattr(queue, "close", None)):
        return queue  # duck-typed async queue (e.g. an in-process filename queue)
    raise TypeError(f"expected a queueserver Queue or AsyncQueue, got {type(queue).__name__}")


# --------------------------------------------------------------------------- coordinator
def _as_exception(exc: Any) -> BaseException | None:
    if exc is None:
        return None
    if isinstance(exc, tuple):  # TensorFlow also accepts sys.exc_info() triples
        return exc[1]
    if isinstance(exc, BaseException):
        return exc
    raise TypeError(f"request_stop expects an exception or an exc_info tuple, got {type(exc).__name__}")


def _task_name(task: Any) -> str:
    get_name = getattr(task, "get_name", None)
    return get_name() if get_name is not None else getattr(task, "name", repr(task))


class _StopOnException:
    """What :meth:`Coordinator.stop_on_exception` returns: a sync and async context manager."""

    def __init__(self, coord: "Coordinator") -> None:
        self._coord = coord

    def __enter__(self) -> "_StopOnException":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        if isinstance(exc, Exception):
            self._coord.request_stop(exc)
            return True  # reported: the coordinator re-raises it from join()
        if not isinstance(exc, asyncio.CancelledError):  # e.g. KeyboardInterrupt: stop, propagate
            self._coord.request_stop()
        return False

    async def __aenter__(self) -> "_StopOnException":
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        return self.__exit__(exc_type, exc, tb)


class Coordinator:
    """Stops a group of loops (asyncio tasks or threads) together, like ``tf.train.Coordinator``.

    Thread-safe: loops on any thread or event loop may call every method.

    Args:
        clean_stop_exception_types: errors that :meth:`request_stop` treats as a normal stop, not
            a failure (default: ``OutOfRangeError``, the end of input).
        stop_grace_period_secs: the grace period of the ``with``/``async with`` exit's join.

    Example:
        >>> async def main():
        ...     coord = Coordinator()
        ...     async def worker(i):
        ...         while not coord.should_stop():
        ...             await asyncio.sleep(0)
        ...             if i == 2:
        ...                 coord.request_stop()
        ...     tasks = [asyncio.create_task(worker(i)) for i in range(3)]
        ...     await coord.join(tasks)
        ...     return coord.should_stop()
        >>> asyncio.run(main())
        True

        ``async with Coordinator() as coord:`` requests a stop when the block ends (recording the
        block's error, if any) and joins every task registered with it.
    """

    def __init__(
        self,
        clean_stop_exception_types: Sequence[type[BaseException]] = (qerrors.OutOfRangeError,),
        *,
        stop_grace_period_secs: float = 120.0,
    ) -> None:
        self._clean = tuple(clean_stop_exception_types)
        self._grace = float(stop_grace_period_secs)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._exc: BaseException | None = None
        self._joined = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._registered: list[Any] = []

    def __repr__(self) -> str:
        state = "stopped" if self.should_stop() else "running"
        return f"<Coordinator {state}{f' by {self._exc!r}' if self._exc else ''}>"

    # -- stopping -------------------------------------------------------------------------------
    def should_stop(self) -> bool:
        """True once a stop was requested.

        Example:
            >>> Coordinator().should_stop()
            False
        """
        return self._stop.is_set()

    def request_stop(self, exc: BaseException | tuple | None = None) -> None:
        """Ask every coordinated loop to stop; remember ``exc`` if it is the first error.

        Args:
            exc: the error that made the caller stop (an exception or ``sys.exc_info()``), or
                ``None`` for a normal stop. Clean-stop types (``OutOfRangeError``) count as normal.
                Only the first error is kept; :meth:`join` re-raises it.

        Raises:
            The given ``exc`` itself, if :meth:`join` already returned (it would be lost
            otherwise, as in TensorFlow).

        Example:
            >>> coord = Coordinator()
            >>> coord.request_stop(ValueError("bad record"))
            >>> coord.should_stop(), coord.exception
            (True, ValueError('bad record'))
        """
        error = _as_exception(exc)
        if error is not None and isinstance(error, self._clean):
            error = None
        with self._lock:
            if self._joined and error is not None:
                raise error
            if self._stop.is_set():
                return
            if error is not None and self._exc is None:
                self._exc = error
            self._stop.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass

    def clear_stop(self) -> None:
        """Forget a requested stop and its error, so the coordinator can be used again."""
        with self._lock:
            self._stop.clear()
            self._exc = None
            self._joined = False

    @property
    def exception(self) -> BaseException | None:
        """The first error reported with :meth:`request_stop`, or ``None``."""
        return self._exc

    def raise_requested_exception(self) -> None:
        """Re-raise the first reported error now, if there is one."""
        if self._exc is not None:
            raise self._exc

    def stop_on_exception(self) -> _StopOnException:
        """A context manager (``with`` or ``async with``) that reports any error to the coordinator.

        An ``Exception`` raised inside is passed to :meth:`request_stop` and swallowed (the
        coordinator re-raises it from :meth:`join`); ``OutOfRangeError`` becomes a clean stop.
        Task cancellation passes through untouched.

        Example:
            >>> coord = Coordinator()
            >>> with coord.stop_on_exception():
            ...     raise qerrors.OutOfRangeError("queue closed")
            >>> coord.should_stop(), coord.exception
            (True, None)
        """
        return _StopOnException(self)

    # -- waiting --------------------------------------------------------------------------------
    def _stop_future(self) -> asyncio.Future:
        """A future of the running loop that completes when a stop is requested."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self._stop.is_set():
                fut.set_result(None)
            else:
                self._waiters.append((loop, fut))
        return fut

    def _forget(self, fut: asyncio.Future) -> None:
        with self._lock:
            self._waiters = [(l, f) for l, f in self._waiters if f is not fut]
        fut.cancel()

    async def wait_for_stop(self, timeout: float | None = None) -> bool:
        """Wait until a stop is requested, without blocking the event loop.

        Args:
            timeout: seconds to wait at most (``None``: no limit).

        Returns:
            True if a stop was requested, False if the timeout expired first.

        Example:
            >>> asyncio.run(Coordinator().wait_for_stop(0.01))
            False
        """
        fut = self._stop_future()
        try:
            await asyncio.wait({fut}, timeout=timeout)
        finally:
            self._forget(fut)
        return self.should_stop()

    def wait_for_stop_blocking(self, timeout: float | None = None) -> bool:
        """Like :meth:`wait_for_stop`, blocking the calling thread (for code running in threads).

        Returns:
            True if a stop was requested, False if the timeout expired first.
        """
        return self._stop.wait(timeout)

    # -- registering and joining ----------------------------------------------------------------
    def register_task(self, task: Any) -> None:
        """Add a task (or a thread, or a :class:`RunnerThread`) for :meth:`join` to wait for."""
        with self._lock:
            self._registered.append(task)

    def _take_registered(self, kind: Callable[[Any], bool]) -> list:
        with self._lock:
            mine = [t for t in self._registered if kind(t)]
            self._registered = [t for t in self._registered if not kind(t)]
        return mine

    def _report_done(self, task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.request_stop(task.exception())

    async def join(
        self,
        tasks: Iterable[asyncio.Future] | None = None,
        stop_grace_period_secs: float = 120.0,
        ignore_live_threads: bool = False,
    ) -> None:
        """Wait for the tasks to finish; after a stop, give them a grace period, then cancel them.

        Waits until every task is done or a stop is requested (a task that ends with an exception
        counts as reporting it). After a stop, the tasks get ``stop_grace_period_secs`` to finish;
        those still running are cancelled and named.

        Args:
            tasks: asyncio tasks of the running loop; tasks registered with :meth:`register_task`
                (e.g. by :meth:`QueueRunner.create_tasks`) are joined as well.
            stop_grace_period_secs: how long to wait after a stop request before cancelling.
            ignore_live_threads: if True, only log the tasks that had to be cancelled.

        Raises:
            Exception: the first error reported with :meth:`request_stop` (or raised by a task).
            RuntimeError: tasks were still running after the grace period (they were cancelled),
                naming them, unless ``ignore_live_threads``.

        Example:
            >>> async def main():
            ...     coord = Coordinator()
            ...     async def fail():
            ...         raise ValueError("reader 3: bad header")
            ...     await coord.join([asyncio.create_task(fail())])
            >>> asyncio.run(main())
            Traceback (most recent call last):
            ...
            ValueError: reader 3: bad header
        """
        mine = self._take_registered(lambda t: isinstance(t, asyncio.Future))
        pending = {t for t in [*mine, *(tasks or ())] if isinstance(t, asyncio.Future)}
        for t in {t for t in pending if t.done()}:
            self._report_done(t)
            pending.discard(t)
        stop = self._stop_future()
        try:
            while pending and not self.should_stop():
                done, pending = await asyncio.wait(pending | {stop}, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(stop)
                for t in done - {stop}:
                    self._report_done(t)
        finally:
            self._forget(stop)
        if pending:
            done, pending = await asyncio.wait(pending, timeout=max(0.0, stop_grace_period_secs))
            for t in done:
                self._report_done(t)
        stragglers = sorted(_task_name(t) for t in pending)
        for t in pending:
            t.cancel()
        if pending:  # let them unwind (finally blocks, server-side withdrawals) before reporting
            await asyncio.wait(pending, timeout=5.0)
        self._finish_join(stragglers, stop_grace_period_secs, ignore_live_threads)

    def join_threads(
        self,
        threads: Iterable[Any] | None = None,
        stop_grace_period_secs: float = 120.0,
        ignore_live_threads: bool = False,
    ) -> None:
        """The blocking :meth:`join`, for threads and :meth:`QueueRunner.create_threads` handles.

        Args:
            threads: objects with ``is_alive()`` and ``join(timeout)`` (``threading.Thread``,
                :class:`RunnerThread`); registered ones are joined as well.
            stop_grace_period_secs: how long to wait after a stop request; :class:`RunnerThread`
                stragglers are then cancelled (real threads cannot be).
            ignore_live_threads: if True, only log the stragglers.

        Raises:
            Exception: the first error reported with :meth:`request_stop`.
            RuntimeError: threads were still running after the grace period.

        Example:
            >>> coord = Coordinator()
            >>> t = threading.Thread(target=coord.request_stop); t.start()
            >>> coord.join_threads([t])
        """
        mine = self._take_registered(lambda t: hasattr(t, "is_alive"))
        alive = [t for t in [*mine, *(threads or ())] if t.is_alive()]
        while alive and not self._stop.is_set():
            alive[0].join(0.02)  # short slices: a stop request must end the first phase promptly
            alive = [t for t in alive if t.is_alive()]
        deadline = time.monotonic() + max(0.0, stop_grace_period_secs)
        while alive and time.monotonic() < deadline:
            alive[0].join(min(0.02, max(0.0, deadline - time.monotonic())))
            alive = [t for t in alive if t.is_alive()]
        for t in alive:
            if hasattr(t, "cancel"):
                t.cancel()
        for t in alive:
            if hasattr(t, "cancel"):
                t.join(5.0)
        self._finish_join(sorted(_task_name(t) for t in alive), stop_grace_period_secs, ignore_live_threads)

    def _finish_join(self, stragglers: list[str], grace: float, ignore_live: bool) -> None:
        with self._lock:
            self._joined = True
        if self._exc is not None:
            raise self._exc
        if stragglers:
            message = (f"Coordinator stopped with tasks still running after the {grace:g} s grace "
                       f"period (cancelled where possible): {', '.join(stragglers)}")
            if not ignore_live:
                raise RuntimeError(message)
            log.info(message)

    # -- context managers -----------------------------------------------------------------------
    def __enter__(self) -> "Coordinator":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self.request_stop(exc if isinstance(exc, Exception) else None)
        if exc is None:
            self.join_threads(stop_grace_period_secs=self._grace)
        else:
            try:  # the block's own error is what the caller must see
                self.join_threads(stop_grace_period_secs=self._grace)
            except Exception:  # noqa: BLE001
                pass
        return False

    async def __aenter__(self) -> "Coordinator":
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self.request_stop(exc if isinstance(exc, Exception) else None)
        if exc is None:
            await self.join(stop_grace_period_secs=self._grace)
        else:
            try:
                await self.join(stop_grace_period_secs=self._grace)
            except Exception:  # noqa: BLE001
                pass
        return False


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


# --------------------------------------------------------------------------- queue runner
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

    def __repr__(self) -> str:
        state = "done" if self._done.is_set() else ("running" if self._started else "created")
        return f"<RunnerThread {self.name} {state}>"

    def start(self) -> None:
        """Schedule the task on the background loop.

        Raises:
            RuntimeError: it was started already.
        """
        if self._started:
            raise RuntimeError(f"{self.name} was started already")
        self._started = True
        coro, self._coro = self._coro, None

        def create() -> None:
            self._task = self._loop.create_task(coro, name=self.name)
            self._task.add_done_callback(lambda _t: self._done.set())

        self._loop.call_soon_threadsafe(create)

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
        self._aqueue = as_async_queue(queue) if queue is not None else None
        self.close_op = close_op or (lambda: self._aqueue.close())
        self.cancel_op = cancel_op or (lambda: self._aqueue.close(cancel_pending_enqueues=True))
        self.queue_closed_exception_types = tuple(queue_closed_exception_types)
        self.name = name or (getattr(queue, "name", None) or "queue_runner")
        #: Errors raised by the ops (what was reported to the coordinator), in order.
        self.exceptions_raised: list[BaseException] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<QueueRunner {self.name!r} ops={len(self.enqueue_ops)}>"

    # -- the loops ------------------------------------------------------------------------------
    async def _call(self, op: EnqueueOp, run: _Run) -> None:
        if inspect.iscoroutinefunction(op) or inspect.iscoroutinefunction(getattr(op, "__call__", None)):
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
            with self._lock:
                self.exceptions_raised.append(exc)
            coord.request_stop(exc)
            if run.own_coord:  # nobody joins our private coordinator: fail the task itself
                raise
        finally:
            run.remaining -= 1
            last = run.remaining == 0
            if last:
                run.finished.set()
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

    def _coroutines(self, coord: Coordinator | None) -> tuple[list[Coroutine], list[str], Coordinator]:
        own = coord is None
        coord = coord or Coordinator()
        n_sync = sum(1 for op in self.enqueue_ops if not (
            inspect.iscoroutinefunction(op) or inspect.iscoroutinefunction(getattr(op, "__call__", None))))
        # Sync ops may block on a full queue; a private pool keeps them from starving the
        # loop's default executor, which readers (asyncio.to_thread) use.
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=n_sync, thread_name_prefix=f"{self.name}-op") if n_sync else None
        run = _Run(len(self.enqueue_ops), coord, own, executor)
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
            The tasks (or coroutines); the last one watches for a stop request.

        Example:
            >>> tasks = runner.create_tasks(coord)   # doctest: +SKIP
            >>> await coord.join(tasks)              # doctest: +SKIP
        """
        coros, names, coord = self._coroutines(coord)
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
            One :class:`RunnerThread` per op, plus the stop watcher.

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
        coros, names, coord = self._coroutines(coord)
        threads = [RunnerThread(c, n, loop) for c, n in zip(coros, names)]
        for t in threads:
            coord.register_task(t)
            if start:
                t.start()
        return threads
