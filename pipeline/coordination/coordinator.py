""":class:`Coordinator`: stops a group of loops (asyncio tasks or threads) together, like ``tf.train.Coordinator``.

Each loop checks :meth:`~Coordinator.should_stop`, any loop may :meth:`~Coordinator.request_stop`
(with the error that made it stop), and :meth:`~Coordinator.join` (or
:meth:`~Coordinator.join_threads`) waits for all of them, cancels the ones that do not stop within a
grace period and re-raises the first reported error.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable, Iterable, Literal, Sequence

from queueserver import errors as qerrors

__all__ = ["Coordinator"]

log = logging.getLogger("pipeline.coordination")


def _as_exception(exc: Any) -> BaseException | None:
    if exc is None:
        return None
    if isinstance(exc, tuple):  # TensorFlow also accepts sys.exc_info() triples
        return exc[1]
    if isinstance(exc, BaseException):
        return exc
    raise TypeError(f"request_stop expects an exception or an exc_info tuple, got {type(exc).__name__}")


def _loop_running() -> bool:
    """Whether this thread is running an event loop (then a wait must be awaited, not blocked on)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


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
        clean_stop_exception_types: Sequence[type[BaseException]] | None = None,
        *,
        stop_grace_period_secs: float = 120.0,
    ) -> None:
        if clean_stop_exception_types is None:  # TensorFlow's default, also when given as None
            clean_stop_exception_types = (qerrors.OutOfRangeError,)
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

    def wait_for_stop(self, timeout: float | None = None) -> Any:
        """Wait until a stop is requested: TensorFlow's blocking call in a synchronous script, an
        awaitable in a coroutine.

        Called where no event loop runs (a TF1-style script, a worker thread), it blocks and
        returns the answer, as ``tf.train.Coordinator.wait_for_stop`` does. Called inside a
        coroutine it returns a coroutine to await, which waits without blocking the loop.

        Args:
            timeout: seconds to wait at most (``None``: no limit).

        Returns:
            True if a stop was requested, False if the timeout expired first (awaited, in a
            coroutine).

        Example:
            >>> Coordinator().wait_for_stop(0.01)              # in a script
            False
            >>> async def main():
            ...     return await Coordinator().wait_for_stop(0.01)  # in a coroutine
            >>> asyncio.run(main())
            False
        """
        if not _loop_running():
            return self.wait_for_stop_blocking(timeout)
        return self._wait_for_stop(timeout)

    async def _wait_for_stop(self, timeout: float | None) -> bool:
        fut = self._stop_future()
        try:
            await asyncio.wait({fut}, timeout=timeout)
        finally:
            self._forget(fut)
        return self.should_stop()

    def wait_for_stop_blocking(self, timeout: float | None = None) -> bool:
        """:meth:`wait_for_stop`, blocking the calling thread wherever it is called.

        Returns:
            True if a stop was requested, False if the timeout expired first.
        """
        return self._stop.wait(timeout)

    # -- registering and joining ----------------------------------------------------------------
    def register_task(self, task: Any) -> None:
        """Add a task (or a thread, or a :class:`RunnerThread`) for :meth:`join` to wait for."""
        with self._lock:
            self._registered.append(task)

    def register_thread(self, thread: Any) -> None:
        """TensorFlow's name for :meth:`register_task`: a thread for :meth:`join` to wait for."""
        self.register_task(thread)

    @property
    def joined(self) -> bool:
        """True once a join has returned (or raised), until :meth:`clear_stop`."""
        return self._joined

    def _take_registered(self, kind: Callable[[Any], bool]) -> list:
        with self._lock:
            mine = [t for t in self._registered if kind(t)]
            self._registered = [t for t in self._registered if not kind(t)]
        return mine

    def _report_done(self, task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.request_stop(task.exception())

    def join(
        self,
        tasks: Iterable[Any] | None = None,
        stop_grace_period_secs: float = 120.0,
        ignore_live_threads: bool = False,
    ) -> Any:
        """Wait for the tasks to finish; after a stop, give them a grace period, then cancel them.

        Called where no event loop runs (a TF1-style script: ``coord.join(threads)``), it blocks
        as :meth:`join_threads` and raises from the call, as ``tf.train.Coordinator.join`` does.
        Called inside a coroutine it returns a coroutine to await (``await coord.join(tasks)``).

        Waits until every task is done or a stop is requested (a task that ends with an exception
        counts as reporting it). After a stop, the tasks get ``stop_grace_period_secs`` to finish;
        those still running are cancelled and named.

        Args:
            tasks: asyncio tasks of the running loop (in a coroutine), or threads and
                :class:`RunnerThread` handles (in a script); the ones registered with
                :meth:`register_task` (e.g. by :meth:`QueueRunner.create_tasks`) are joined as well.
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
        if not _loop_running():
            self.join_threads(tasks, stop_grace_period_secs, ignore_live_threads)
            return None
        return self._join_tasks(tasks, stop_grace_period_secs, ignore_live_threads)

    async def _join_tasks(self, tasks: Iterable[Any] | None, stop_grace_period_secs: float,
                          ignore_live_threads: bool) -> None:
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
        """The blocking :meth:`join` wherever it is called, for threads and
        :meth:`QueueRunner.create_threads` handles.

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
            # TensorFlow's words ("threads still running"): its users' tests match them.
            message = (f"Coordinator stopped with threads still running after the {grace:g} s grace "
                       f"period (cancelled where possible): {', '.join(stragglers)}")
            if not ignore_live:
                raise RuntimeError(message)
            log.info(message)

    # -- context managers -----------------------------------------------------------------------
    def __enter__(self) -> "Coordinator":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
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
            await self._join_tasks(None, self._grace, False)
        else:
            try:
                await self._join_tasks(None, self._grace, False)
            except Exception:  # noqa: BLE001
                pass
        return False


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
