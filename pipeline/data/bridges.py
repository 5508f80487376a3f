"""Bridges between datasets and shared queues: ``Dataset.from_queue`` and ``Dataset.to_queue``.

* ``Dataset.from_queue(queue, batch_size)`` is a dataset whose elements are dequeued from a server
  queue: batches of up to ``batch_size`` elements (``dequeue_up_to``), or single elements without
  ``batch_size``, until the queue is closed and drained (``OutOfRangeError`` ends the dataset).
* ``dataset.to_queue(queue)`` enqueues every element of the dataset, one dataset element per queue
  element (``enqueue_many=True``: each dataset element is a batch of queue elements), waiting while
  the queue is full, and closes the queue at the end unless ``close=False``. Consecutive elements
  travel together in one ``enqueue_many`` call where the pipeline hands them over as a block, which
  places them contiguously and in order, exactly as one ``enqueue`` each would.

A queue cannot rewind: iterating ``from_queue`` twice continues where the first pass stopped, and
its iterators cannot save their state.

:meth:`Dataset.from_queue`, :meth:`Dataset.to_queue` and :meth:`Dataset.to_queue_async` are
ordinary methods of :class:`Dataset` that import this module when first called; the functions
below are their implementation (``to_queue(dataset, queue)`` is ``dataset.to_queue(queue)``).

Example:
    >>> import numpy as np, queueserver as qs
    >>> from pipeline.data import Dataset
    >>> server = qs.Server.create_local_server()
    >>> c = qs.connect(server.target)
    >>> q = c.fifo_queue("squares", capacity=4, dtypes=[np.int64], shapes=[[]])
    >>> import threading
    >>> t = threading.Thread(target=Dataset.range(10).map(lambda x: x * x).to_queue, args=(q,)); t.start()
    >>> [b.tolist() for b in Dataset.from_queue(q, batch_size=4)]
    [[0, 1, 4, 9], [16, 25, 36, 49], [64, 81]]
    >>> t.join(); c.close(); server.stop()
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from queueserver import errors
from queueserver.client import AsyncQueue, Queue
from queueserver.core.specs import STRING

from . import structure
from .base import DEFAULT_CHUNK, UNKNOWN_CARDINALITY, Dataset, DatasetIterator
from .structure import TensorSpec

__all__ = ["QueueDataset", "from_queue", "to_queue", "to_queue_async"]


# --------------------------------------------------------------------------- from_queue
class QueueDataset(Dataset):
    """``Dataset.from_queue``: elements dequeued from a server queue until it is closed and drained.

    Args:
        queue: a synchronous ``Queue``, or an ``AsyncQueue`` (then create the dataset inside a
            coroutine running on the loop of the queue's client, and iterate it with ``async for``
            or from another thread).
        batch_size: elements per dataset element (``dequeue_up_to``); ``None`` gives one queue
            element per dataset element (``dequeue``).
        timeout: seconds each dequeue may wait (default: the client's operation timeout).
    """

    _consumes_input = True  # iterating dequeues: nothing else may (see UnknownSpec)

    def __init__(self, queue: Any, batch_size: int | None = None, *, timeout: float | None = None) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        if not isinstance(queue, (Queue, AsyncQueue)):
            raise TypeError(f"from_queue expects a queueserver Queue or AsyncQueue, got {type(queue).__name__}")
        self._queue = queue
        self._batch_size = batch_size
        self._kwargs = {} if timeout is None else {"timeout": timeout}
        self._loop: asyncio.AbstractEventLoop | None = None
        if isinstance(queue, AsyncQueue):
            try:
                # An AsyncQueue works on its client's loop only: the one running now.
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                raise TypeError(
                    "Dataset.from_queue(AsyncQueue) must be called inside a coroutine running on the event loop "
                    "of the queue's client; in synchronous code pass the Queue of queueserver.connect()") from None

    def _compute_spec(self) -> Any:
        spec = self._queue.spec
        lead = () if self._batch_size is None else (None,)
        leaves = []
        for i, dtype in enumerate(spec.dtypes):
            shape = None if spec.shapes is None else lead + tuple(spec.shapes[i])
            leaves.append(TensorSpec(shape, "string" if dtype == STRING else dtype))
        if spec.names is not None:
            return dict(zip(spec.names, leaves))
        return leaves[0] if len(leaves) == 1 else tuple(leaves)

    def _cardinality(self) -> int:
        return UNKNOWN_CARDINALITY

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _QueueIterator(self)


class _QueueIterator(DatasetIterator):
    def __init__(self, ds: QueueDataset) -> None:
        self._ds = ds
        self._done = False

    def _dequeue(self) -> Any:
        ds = self._ds
        q = ds._queue
        call: Any
        args: tuple[int, ...]
        if ds._batch_size is None:
            call, args = q.dequeue, ()
        else:
            call, args = q.dequeue_up_to, (ds._batch_size,)
        if ds._loop is None:
            return call(*args, **ds._kwargs)
        if _running_loop() is ds._loop:
            raise RuntimeError(
                f"Dataset.from_queue({q.name!r}) over an AsyncQueue cannot be iterated with a plain `for` on the "
                "queue's own event loop (it would block it); use `async for`")
        return asyncio.run_coroutine_threadsafe(call(*args, **ds._kwargs), ds._loop).result()

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            value = self._dequeue()
        except errors.OutOfRangeError:
            self._done = True
            raise StopIteration from None
        return structure.normalize(value)

    def get_state(self) -> dict:
        raise NotImplementedError(
            f"Dataset.from_queue({self._ds._queue.name!r}) cannot save its position: a queue cannot rewind")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def from_queue(queue: Any, batch_size: int | None = None, *, timeout: float | None = None) -> Dataset:
    """The implementation of :meth:`Dataset.from_queue` (documented there)."""
    return QueueDataset(queue, batch_size, timeout=timeout)


# --------------------------------------------------------------------------- to_queue
def _queue_value(data: Any) -> Any:
    """An element (or a block of them) in the queue client's form: array, tuple or dict."""
    if isinstance(data, tuple) and not hasattr(data, "_fields"):
        return data
    if isinstance(data, tuple):  # a namedtuple: its fields in order
        return tuple(data)
    return data


def _count(data: Any) -> int:
    leaf = structure.flatten(data)[0]
    return 1 if isinstance(leaf, bytes) else len(leaf)


def _blocks(it: DatasetIterator, enqueue_many: bool, chunk_size: int):
    """(value, count, many) for each enqueue call: blocks of consecutive elements where possible."""
    if enqueue_many:
        for element in it:
            yield _queue_value(element), _count(element), True
        return
    while True:
        try:
            chunk = it.next_chunk(chunk_size)
        except TypeError:  # ragged or nested-dataset elements cannot be stacked: one at a time
            try:
                element = next(it)
            except StopIteration:
                return
            yield _queue_value(element), 1, False
            continue
        if chunk is None:
            return
        yield _queue_value(chunk.data), chunk.n, True


def _check_handle(queue: Any, method: str) -> None:
    if isinstance(queue, AsyncQueue):
        raise TypeError(f"Dataset.{method} blocks, but {queue!r} is an AsyncQueue: use `await dataset.to_queue_async(queue)`")
    if not isinstance(queue, Queue):
        raise TypeError(f"Dataset.{method} expects a queueserver Queue, got {type(queue).__name__}")


def to_queue(self: Dataset, queue: Queue, *, enqueue_many: bool = False, close: bool = True,
             chunk_size: int = DEFAULT_CHUNK) -> int:
    """The implementation of :meth:`Dataset.to_queue` (documented there)."""
    _check_handle(queue, "to_queue")
    total = 0
    it = self.iterator()
    try:
        for value, n, many in _blocks(it, enqueue_many, chunk_size):
            if many:
                queue.enqueue_many(value)
            else:
                queue.enqueue(value)
            total += n
    except BaseException:
        if close:
            _close_quietly(queue.close, True)
        raise
    finally:
        it.close()
    if close:
        queue.close()
    return total


def _close_quietly(close: Any, cancel: bool) -> Any:
    try:
        return close(cancel_pending_enqueues=cancel)
    except errors.QueueServerError:  # already closed, or the server is gone: nothing to tell
        return None


async def to_queue_async(self: Dataset, queue: Any, *, enqueue_many: bool = False, close: bool = True,
                         chunk_size: int = DEFAULT_CHUNK) -> int:
    """The implementation of :meth:`Dataset.to_queue_async` (documented there)."""
    from pipeline.coordination import as_async_queue  # pipeline.data must not need it at import

    aq = as_async_queue(queue)
    it = self.iterator()
    blocks = _blocks(it, enqueue_many, chunk_size)
    lock = threading.Lock()  # one worker thread at a time drives the iterator

    def step() -> Any:
        with lock:
            return next(blocks, None)

    total = 0
    try:
        while True:
            item = await asyncio.to_thread(step)
            if item is None:
                break
            value, n, many = item
            if many:
                await aq.enqueue_many(value)
            else:
                await aq.enqueue(value)
            total += n
    except BaseException:
        if close:
            try:
                await aq.close(cancel_pending_enqueues=True)
            except errors.QueueServerError:
                pass
        raise
    finally:
        await asyncio.to_thread(it.close)
    if close:
        await aq.close()
    return total

