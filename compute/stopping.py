"""The cluster-wide stop flag of the distributed modes.

Coordination uses only queues on the server, never sleeps: any replica signals "stop" by closing a
queue nobody enqueues to (a dequeue on a closed, empty queue fails at once, so closing is a
broadcast), when the data queue is closed and drained or the step budget is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Awaitable, Callable

import queueserver as qs

__all__ = ["Stopped", "Stopper"]


class Stopped(Exception):
    """Raised inside a trainer's loop when another replica asked everyone to stop."""


class Stopper:
    """A cluster-wide stop flag: a queue nobody enqueues to; closing it wakes every watcher.

    Args:
        open_queue: opens (gets or creates) the stop queue; called again if a restarted chief
            resets the coordination container under a watcher.
    """

    def __init__(self, open_queue: Callable[[], Awaitable[Any]]) -> None:
        self._open = open_queue
        self.queue: Any = None
        self.stopping = asyncio.Event()
        self._watch: asyncio.Task | None = None

    async def start(self) -> "Stopper":
        """Open the queue and start watching it."""
        self.queue = await self._open()
        self._watch = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        while True:
            try:
                await self.queue.dequeue(timeout=None)  # nobody enqueues: returns only by OutOfRange
            except qs.OutOfRangeError:
                break  # closed: the stop signal
            except (qs.CancelledError, qs.NotFoundError):
                self.queue = await self._open()  # the container was reset: watch the new queue
            except qs.UnavailableError:
                break  # the server is gone: nothing more to coordinate
        self.stopping.set()

    async def request_stop(self) -> None:
        """Ask every replica to stop (idempotent)."""
        with contextlib.suppress(qs.QueueServerError):
            await self.queue.close()
        self.stopping.set()

    async def race(self, aw: Awaitable) -> Any:
        """Await ``aw`` unless the stop flag comes first.

        Raises:
            Stopped: the flag came first (``aw`` is cancelled). If the race itself is cancelled,
                ``aw`` is cancelled too.
        """
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # Cancelled (Ctrl-C): so is ``aw``, and it has settled before the caller cleans up after
            # it. Left running, a Prefetcher.next() took a batch after the trainer had given back
            # what it held, and the clean close acknowledged it.
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise Stopped()

    async def close(self) -> None:
        """Stop watching."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(BaseException):
                await self._watch
