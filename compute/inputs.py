"""Where a trainer's minibatches come from: :class:`QueueSource` (a shared queue, each batch held on
the server until it is acknowledged), :class:`ArraySource` (arrays in memory), and the
:class:`Prefetcher` that fetches the next batch while a step computes and owns the batches'
acknowledgements.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

import queueserver as qs
from compute.backend import Backend

__all__ = ["QueueSource", "ArraySource", "Prefetcher"]


def _split_element(batch: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from a dequeued batch: a tuple of two components or a dict with x/y (image/label)."""
    if isinstance(batch, dict):
        for xk, yk in (("x", "y"), ("image", "label"), ("features", "label")):
            if xk in batch and yk in batch:
                return batch[xk], batch[yk]
        raise ValueError(f"cannot find features and labels among the queue's components {sorted(batch)}")
    if isinstance(batch, tuple) and len(batch) == 2:
        return batch
    raise ValueError("the input queue's elements must be (features, label) pairs")


class QueueSource:
    """Minibatches from a shared queue with ``dequeue_up_to`` (the last one may be short).

    Args:
        queue: an :class:`queueserver.AsyncQueue`.
        batch: examples per minibatch.
        timeout: seconds to wait for a minibatch (None: forever).
        classes: the model's number of classes: a batch with a label outside ``0..classes-1`` is
            given back and refused with an error that says so (None: not checked).
    """

    #: Seconds a dequeue may wait before ``on_wait`` is told (an empty queue, not a slow reply).
    WAIT_NOTICE_S = 0.5

    def __init__(self, queue: Any, batch: int, timeout: float | None = None, classes: int | None = None,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.queue, self.batch, self.timeout, self.classes = queue, batch, timeout, classes
        self.on_wait = on_wait  # called with the queue's name when a dequeue waits for data

    async def next(self) -> tuple[np.ndarray, np.ndarray, Any]:
        """The next minibatch as float32 features ``(n, d)`` and integer labels ``(n,)``, and its
        delivery: the batch stays held on the server until the trainer has trained on it and
        acknowledges it (``delivery.ack()``); one it never trains on goes back to the queue.

        Raises:
            queueserver.OutOfRangeError: the queue is closed and drained.
        """
        notice = None
        if self.on_wait is not None:
            notice = asyncio.get_running_loop().call_later(self.WAIT_NOTICE_S, self.on_wait, self.queue.name)
        try:
            delivery = await self.queue.take(self.batch, up_to=True, timeout=self.timeout)
        finally:
            if notice is not None:
                notice.cancel()
        try:
            x, y = _split_element(delivery.value)
            y = np.asarray(y).reshape(-1)
            if self.classes is not None and y.size and (y.min() < 0 or y.max() >= self.classes):
                bad = int(y.min()) if y.min() < 0 else int(y.max())
                raise qs.InvalidArgumentError(
                    f"queue '{self.queue.name}' holds label {bad}, but the model has {self.classes} classes"
                    f" (labels 0 to {self.classes - 1}): check --model or the data; the batch went back to the queue")
        except BaseException:
            await delivery.give_back()
            raise
        return np.asarray(x, np.float32).reshape(len(x), -1), y, delivery


class ArraySource:
    """Minibatches sliced from arrays already in memory (the baseline for queue feeding).

    Args:
        x: features, one row per example.
        y: labels.
        batch: examples per minibatch.
        epochs: passes over the data before OutOfRangeError (None: for ever).
    """

    def __init__(self, x: Any, y: Any, batch: int, epochs: int | None = 1) -> None:
        if len(x) != len(y) or len(x) == 0:
            raise ValueError("x and y need the same, non-zero, number of rows")
        self.x, self.y, self.batch, self.epochs = x, y, batch, epochs
        self._pos, self._epoch = 0, 0

    async def next(self) -> tuple[Any, Any]:
        """The next slice (views, no copy).

        Raises:
            queueserver.OutOfRangeError: after ``epochs`` passes.
        """
        if self._pos >= len(self.x):
            self._pos, self._epoch = 0, self._epoch + 1
        if self.epochs is not None and self._epoch >= self.epochs:
            raise qs.OutOfRangeError("ArraySource: all epochs consumed")
        sl = slice(self._pos, self._pos + self.batch)
        self._pos += self.batch
        return self.x[sl], self.y[sl]


class Prefetcher:
    """Fetches minibatch ``k + 1`` (and copies it to the device) while step ``k`` computes, and
    owns what the batches' deliveries become: the loop calls :meth:`trained` once a step's update
    is done, which acknowledges that batch; :meth:`cancel` gives back the batch being trained and
    the one fetched ahead, so a trainer stopped by anything (its step budget, Ctrl-C, SIGTERM, an
    error) leaves every batch it did not train on in the queue. (SIGKILL: the server does it.)

    The dequeue is I/O on the event loop; the host-to-device copy runs on ``copy_executor`` so it
    overlaps the compute thread too.

    Args:
        source: anything with ``async next() -> (x, y)`` or ``(x, y, delivery)``, where a
            delivery has ``async ack()`` and ``async give_back()`` (see :class:`QueueSource`).
        backend: where the batch should end up.
        copy_executor: the thread that runs host-to-device copies.
    """

    def __init__(self, source: Any, backend: Backend, copy_executor: ThreadPoolExecutor) -> None:
        self.source, self.backend, self.executor = source, backend, copy_executor
        self._task: asyncio.Task[tuple[Any, Any, int, Any]] | None = None  # the fetch ahead
        self._current: Any = None              # the delivery of the batch being trained on
        self._acks: set[asyncio.Task] = set()  # acknowledgements on their way

    async def _fetch(self) -> tuple[Any, Any, int, Any]:
        x, y, *rest = await self.source.next()
        delivery = rest[0] if rest else None
        try:
            if self.backend.is_gpu and type(x).__module__.startswith("numpy"):
                loop = asyncio.get_running_loop()
                x, y = await loop.run_in_executor(
                    self.executor, lambda: (self.backend.to_device(x, np.float32), self.backend.to_device(y)))
        except BaseException:
            if delivery is not None:
                await delivery.give_back()
            raise
        return x, y, len(y), delivery

    def start(self) -> None:
        """Begin fetching the next minibatch in the background."""
        self._fetching()

    def _fetching(self) -> asyncio.Task[tuple[Any, Any, int, Any]]:
        """The fetch ahead, started if there is none."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._fetch())
        return self._task

    async def next(self) -> tuple[Any, Any, int]:
        """The prefetched minibatch ``(x, y, n)``; starts fetching the one after.

        Raises:
            queueserver.OutOfRangeError: the source is exhausted.
        """
        if self._current is not None:
            raise RuntimeError("Prefetcher.next() before the last batch was marked trained()")
        task = self._fetching()
        try:
            x, y, n, delivery = await task
        except BaseException:
            if task.done() and (task.cancelled() or task.exception() is not None):
                self._task = None  # the fetch failed: nothing to give back, the next call fetches afresh
            # Else this call was cancelled after the fetch got its batch: the fetch stays in
            # self._task, and cancel() gives the batch back.
            raise
        self._task, self._current = None, delivery
        self.start()
        return x, y, n

    def trained(self) -> None:
        """The current batch's step is done: acknowledge it (in the background, in order)."""
        delivery, self._current = self._current, None
        if delivery is not None:
            ack = asyncio.ensure_future(delivery.ack())
            self._acks.add(ack)
            ack.add_done_callback(self._acks.discard)

    async def cancel(self) -> None:
        """Give back the batch being trained and withdraw (or give back) the one fetched ahead;
        wait for the acknowledgements on their way."""
        task, self._task = self._task, None
        current, self._current = self._current, None
        to_give_back = []
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                fetched = await task  # finished before the cancel: it holds a batch
                if fetched[3] is not None:
                    to_give_back.append(fetched[3])
        if current is not None:
            to_give_back.append(current)
        # Each goes back to the queue's front: the one fetched ahead first, so the batch being
        # trained on ends up before it, in the order they were taken.
        for delivery in to_give_back:
            with contextlib.suppress(qs.QueueServerError):
                await delivery.give_back()
        if self._acks:
            await asyncio.gather(*self._acks, return_exceptions=True)
