"""Queue handles with coroutine methods: :class:`AsyncQueueView` and :func:`as_async_queue`.

An :class:`queueserver.AsyncQueue` is awaited directly (use it on the loop its client was opened
on); a synchronous :class:`queueserver.Queue` is wrapped in an :class:`AsyncQueueView`, whose
coroutines run the call on that client's own loop, so they work from any event loop without
blocking it.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from queueserver.client import AsyncQueue, Queue

from .loops import _run_on

__all__ = ["AsyncQueueView", "as_async_queue"]


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
