"""The queue types and their semantics: TensorFlow 1's queues, minus the ways they lose data.

Every enqueue and dequeue is an :class:`Attempt`, kept in arrival order (enqueues and dequeues each
in their own line) and advanced under the event loop until it completes, fails or expires, as
TensorFlow's ``QueueBase`` does. The rules, all pinned by ``tests/core``:

* ``enqueue`` waits while the queue is full; ``enqueue_many`` places what fits and waits for room for
  the rest, so one call's elements stay contiguous and in order (later enqueues wait behind it).
* ``dequeue``/``dequeue_many(n)`` wait until ``n`` elements can be taken (RandomShuffleQueue: while
  fewer than ``n + min_after_dequeue`` remain, until closed). An attempt takes elements as they come,
  like TensorFlow's, so ``n`` may exceed the capacity; but if it fails or times out everything it
  took goes back to the front of the queue, in order. TensorFlow drops them. A PriorityQueue, as
  TensorFlow's, waits until the whole batch is there and takes it at once, so it comes out sorted.
* After ``close()``: new enqueues fail with Cancelled; pending enqueues still complete unless
  ``cancel_pending_enqueues``; ``dequeue_many`` fails with OutOfRange when too few elements remain
  (and leaves them), ``dequeue_up_to`` returns what is left and then fails with OutOfRange.
* A timed-out ``enqueue_many`` keeps the elements it placed and says how many.
* A wrong dtype, shape or component count fails with InvalidArgument and changes nothing.

This module does no I/O. Blocking is a future on the running event loop; timeouts are timers on it.
A queue with a ``recorder`` (the durable log's, see :mod:`queueserver.durability`) tells it every
change of its elements as it happens: placed, taken, returned, closed. The recorder only notes them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable, Sequence

import numpy as np

from queueserver.core.specs import (
    Batch,
    ComponentSpec,
    batch_count,
    concat_batches,
    empty_batch,
    pad_batches,
)
from queueserver.core.clock import LOOP_CLOCK, Clock, TimerHandle
from queueserver.core.stores import ChunkStore, PriorityStore, ShuffleStore
from queueserver.core.timeouts import check_timeout
from queueserver.errors import (
    CancelledError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    QueueServerError,
    ResourceExhaustedError,
)

ONE, MANY, UP_TO = "one", "many", "up_to"
_ASSEMBLE = object()  # a finished dequeue's result, assembled from ``taken`` when first read


class Attempt:
    """One enqueue or dequeue call waiting its turn.

    ``done`` turns true exactly once, with either ``result`` or ``error`` set (a dequeue's result is
    assembled from ``taken`` when first read: a caller that sends the elements' bytes never builds
    it); callbacks added with
    :meth:`add_done_callback` then run synchronously, in order. ``waiting_since`` is the monotonic
    time the attempt started to wait (0.0 while it has not had to): the queue adds the waited time to
    its blocked-seconds statistics when the attempt finishes, however it finishes.
    """

    __slots__ = ("queue", "is_enqueue", "batch", "count", "mode", "progress", "held", "taken",
                 "done", "_result", "error", "waiting_since", "_callbacks", "_timer", "_future", "stamp",
                 "max_bytes", "held_bytes")

    def __init__(self, queue: "QueueBase", is_enqueue: bool, count: int, *,
                 batch: Batch | None = None, mode: str = ONE) -> None:
        self.queue = queue
        self.is_enqueue = is_enqueue
        self.batch: Any = batch  # the elements still to place (an enqueue); None once done
        self.count = count
        self.mode = mode
        self.progress = 0            # elements placed (enqueue) or taken (dequeue) so far
        self.held: list[Batch] = []  # what a dequeue has taken while it waits for the rest
        self.taken: list[Batch] = []  # what a finished dequeue delivered, unpadded, for returning it
        self.done = False
        self._result: Any = None
        self.error: QueueServerError | None = None
        self.waiting_since = 0.0
        self._callbacks: list[Callable[["Attempt"], None]] = []
        self._timer: TimerHandle | None = None
        self._future: asyncio.Future | None = None
        # An enqueue's stamp (queueserver.core.stamps.Stamp): told how many elements are placed, so
        # a retry of the same call places only the rest.
        self.stamp: Any = None
        # A dequeue of elements whose size is not known in advance: the most bytes it may take
        # (its reply must fit in one message), and what it has taken so far.
        self.max_bytes: int | None = None
        self.held_bytes = 0

    @property
    def result(self) -> Any:
        """The outcome: None for an enqueue, the element(s) for a dequeue."""
        if self._result is _ASSEMBLE:
            self._result = self.queue._output(self.taken, self.mode)
        return self._result

    def add_done_callback(self, fn: Callable[["Attempt"], None]) -> None:
        """Run ``fn(attempt)`` when the attempt finishes (at once if it already has)."""
        if self.done:
            fn(self)
        else:
            self._callbacks.append(fn)

    def _finish(self, result: Any = None, error: QueueServerError | None = None) -> None:
        self.done = True
        self._result, self.error = result, error
        if self.stamp is not None and self.stamp.attempt is self:
            self.stamp.attempt = None
        self.batch = None
        self.held = []
        if self.waiting_since:
            # Only attempts that had to wait pay for a clock read: the fast path stays as it was.
            key = "enqueue_blocked_s" if self.is_enqueue else "dequeue_blocked_s"
            self.queue.stats[key] += self.queue.clock.monotonic() - self.waiting_since
            self.waiting_since = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)
        if self._future is not None and not self._future.done():
            if error is not None:
                self._future.set_exception(error)
            else:
                self._future.set_result(self.result)

    def cancel(self, error: QueueServerError | None = None) -> None:
        """Withdraw a waiting attempt (its caller went away): a dequeue returns what it took."""
        if not self.done:
            self.queue._withdraw(self, error or CancelledError("the call was cancelled by its caller"))

    async def wait(self) -> Any:
        """Await the outcome; raises the attempt's error."""
        if not self.done:
            self._future = asyncio.get_running_loop().create_future()
            try:
                return await self._future
            except asyncio.CancelledError:
                self.cancel()
                raise
        if self.error is not None:
            raise self.error
        return self.result


class QueueBase:
    """Shared machinery of all queue types; subclasses choose the store and the output assembly."""

    type_name = "Queue"
    recorder: Any = None  # the durable log's recorder (set by the ResourceManager), or None
    key: tuple[str, str] = ("", "")  # (container, name), set by the ResourceManager

    def __init__(self, name: str, capacity: int, spec: ComponentSpec, *, clock: Clock = LOOP_CLOCK) -> None:
        if not isinstance(capacity, (int, np.integer)) or capacity <= 0:
            # TensorFlow reads a negative capacity as unbounded; here the capacity bounds what a
            # queue can make the server hold, so there is no unbounded queue.
            unbounded = " (unbounded queues are not supported)" if isinstance(capacity, (int, np.integer)) and capacity < 0 else ""
            raise InvalidArgumentError(
                f"{self.type_name} '{name}': capacity must be a positive integer, got {capacity!r}{unbounded}")
        self.name = name
        self.clock = clock  # timeouts and blocked time (see queueserver.core.clock)
        self.capacity = int(capacity)
        self.spec = spec
        self.closed = False
        self.destroyed = False
        self._enqueues: deque[Attempt] = deque()
        self._dequeues: deque[Attempt] = deque()
        self._store = self._make_store()
        # Plain counters, bumped on the data path and read by status and /metrics at scrape time.
        # Blocked seconds count finished waits only; blocked_seconds() adds the waits in progress.
        self.stats = {"enqueued": 0, "dequeued": 0, "returned": 0, "enqueued_bytes": 0, "dequeued_bytes": 0,
                      "enqueue_blocked_s": 0.0, "dequeue_blocked_s": 0.0}

    # ----- what subclasses provide
    def _make_store(self):
        return ChunkStore()

    def _available(self) -> int:
        """Elements a dequeue may take now."""
        return self._store.size

    def _assemble(self, batches: list[Batch], mode: str) -> Batch:
        return concat_batches(batches)

    def _check_dequeue_many(self) -> None:
        if not self.spec.fully_defined:
            raise InvalidArgumentError(
                f"{self.type_name}'s DequeueMany and DequeueUpTo require the components to have specified shapes.")

    # ----- public state
    def size(self) -> int:
        """Elements in the queue now (not counting those held by waiting dequeues)."""
        self._check_alive()
        return self._store.size

    def is_closed(self) -> bool:
        """Whether ``close()`` was called."""
        self._check_alive()
        return self.closed

    def blocked_seconds(self) -> tuple[float, float]:
        """Seconds callers have spent waiting to enqueue and to dequeue, waits in progress included.

        Both only grow (a finished wait moves from "in progress" to the stored total unchanged), so
        they export as Prometheus counters.
        """
        now = self.clock.monotonic()
        enq = self.stats["enqueue_blocked_s"] + sum(now - a.waiting_since for a in self._enqueues if a.waiting_since)
        deq = self.stats["dequeue_blocked_s"] + sum(now - a.waiting_since for a in self._dequeues if a.waiting_since)
        return enq, deq

    def describe(self) -> dict:
        """A status summary: plain data for status pages and the CLI."""
        enq_blocked, deq_blocked = self.blocked_seconds()
        return {
            "type": self.type_name, "size": self._store.size, "capacity": self.capacity,
            "fraction_full": self._store.size / self.capacity,
            "closed": self.closed, "spec": self.spec.describe(),
            "waiting_enqueues": len(self._enqueues), "waiting_dequeues": len(self._dequeues),
            **self.stats,
            "enqueue_blocked_s": round(enq_blocked, 6), "dequeue_blocked_s": round(deq_blocked, 6),
        }

    def _check_alive(self) -> None:
        if self.destroyed:
            raise NotFoundError(f"{self.type_name} '{self.name}' no longer exists (its container was reset)")

    # ----- operations
    def enqueue(self, batch: Batch, *, many: bool = False, timeout: float | None = None,
                validated: bool = False, stamp: Any = None) -> Attempt:
        """Start an enqueue of one element (``many=False``) or of a batch's elements.

        Args:
            batch: one array per component; for ``many`` each has the element count first.
            many: True for ``enqueue_many``.
            timeout: seconds to wait for room; ``None`` waits for ever.
            validated: the batch already has a leading count dimension and passed validation.
            stamp: the call's :class:`~queueserver.core.stamps.Stamp` (client id and sequence), or
                None. A stamp seen before places only the elements its earlier tries did not.

        Returns:
            An :class:`Attempt`, possibly already done.

        Raises:
            InvalidArgumentError: the batch does not fit the spec (the queue is unchanged).
            CancelledError: the queue is closed (and the batch has elements to place).
        """
        self._check_alive()
        timeout = check_timeout(timeout, "enqueue into {} '{}'", self.type_name, self.name)
        if not validated:
            batch = self.spec.validate_batch(batch, many=many)
        self._validate_enqueue(batch)
        # Nothing to place is no error, closed or not: TensorFlow returns early for a batch of zero
        # elements (and a retry of a call that placed all of its elements has nothing left).
        if self.closed and batch_count(batch) > (stamp.placed if stamp is not None else 0):
            raise CancelledError(f"{self.type_name} '{self.name}' is closed.")
        if stamp is not None and stamp.attempt is not None and not stamp.attempt.done:
            # An earlier try still waits for room (its connection went quiet without closing):
            # the retry supersedes it, or both would place the rest of the elements.
            earlier = stamp.attempt
            earlier.queue._withdraw(earlier, CancelledError(
                f"enqueue into {self.type_name} '{self.name}' superseded by a retry of the same call",
                placed=earlier.progress))
        if stamp is not None and stamp.placed:
            # A retry of a call that placed some (or all) of its elements before its reply was lost.
            batch = tuple(c[stamp.placed:] for c in batch)
        attempt = Attempt(self, True, batch_count(batch), batch=batch)
        attempt.stamp = stamp
        if stamp is not None:
            stamp.attempt = attempt
        if attempt.count == 0:
            attempt._finish(None)
            return attempt
        return self._start(attempt, self._enqueues, self._step_enqueue, timeout)

    def _validate_enqueue(self, batch: Batch) -> None:
        """Extra per-type checks (priority queues check their priorities)."""

    def dequeue(self, n: int | None = None, *, mode: str = ONE, timeout: float | None = None,
                max_bytes: int | None = None) -> Attempt:
        """Start a dequeue: ``mode`` is ``"one"`` (n ignored), ``"many"`` or ``"up_to"``.

        As in TensorFlow, ``n`` may exceed the capacity: the call takes elements as they come until
        it has ``n``. ``max_bytes`` (the largest reply the caller can receive) bounds what it may
        hold meanwhile, so the capacity still bounds memory: a call whose ``n`` elements of known
        size would be larger is refused at once; one of elements of unknown size fails, giving back
        what it took, when what it took grows past it.

        Raises:
            InvalidArgumentError: ``n`` is negative, or the queue cannot batch its components.
            ResourceExhaustedError: ``n`` elements of this queue's fixed size exceed ``max_bytes``.
        """
        self._check_alive()
        timeout = check_timeout(timeout, "dequeue from {} '{}'", self.type_name, self.name)
        if mode == ONE:
            n = 1
        else:
            if n is None or int(n) < 0:
                raise InvalidArgumentError(f"dequeue_{mode}: n must be a non-negative integer, got {n!r}")
            n = int(n)
            self._check_dequeue_many()
        layout = self.spec.fixed_layout if max_bytes is not None and n > 1 else None
        if layout is not None and n * sum(nb for _, _, nb in layout) > max_bytes:  # type: ignore[operator]
            need = n * sum(nb for _, _, nb in layout)
            raise ResourceExhaustedError(
                f"dequeue_{mode}({n}) from {self.type_name} '{self.name}' would need a reply of {need} bytes, over"
                f" the largest message of {max_bytes} bytes (the server's --max-message-bytes): ask for fewer")
        attempt = Attempt(self, False, n, mode=mode)
        if layout is None and n > 1:
            attempt.max_bytes = max_bytes
        if n == 0:
            attempt._finish(empty_batch(self.spec))
            return attempt
        return self._start(attempt, self._dequeues, self._step_dequeue, timeout)

    def _start(self, attempt: Attempt, line: deque, step: Callable[[Attempt], bool],
               timeout: float | None) -> Attempt:
        """Put a new attempt in its line and run the engine; arm its timer if it has to wait."""
        if not self._enqueues and not self._dequeues and step(attempt) and attempt.done:
            return attempt  # nobody waits: the engine would have run exactly this one step
        line.append(attempt)
        self._flush()
        if not attempt.done:
            attempt.waiting_since = self.clock.monotonic()
            self._arm_timer(attempt, timeout)
        return attempt

    def close(self, cancel_pending_enqueues: bool = False) -> None:
        """Close the queue: no new enqueues; dequeues drain what is left.

        As TensorFlow's: a cancelling close always succeeds (the TF1 shutdown pattern closes, then
        closes again cancelling pending enqueues); a plain close of a closed queue fails.

        Raises:
            CancelledError: a plain close of a queue already closed (as TensorFlow 2 reports it).
        """
        self._check_alive()
        if self.closed and not cancel_pending_enqueues:
            raise CancelledError(f"Queue '{self.name}' is already closed.")
        self.closed = True
        if self.recorder is not None:
            self.recorder.closed(self)
        if cancel_pending_enqueues:
            while self._enqueues:
                att = self._enqueues.popleft()
                att._finish(error=CancelledError(
                    f"Enqueue into {self.type_name} '{self.name}' was cancelled by close(cancel_pending_enqueues=True)"
                    f" after placing {att.progress} of {att.count} element(s)", placed=att.progress))
        self._flush()

    def return_elements(self, batches: Sequence[Batch]) -> None:
        """Put delivered but unacknowledged elements back at the front, in their order."""
        if self.destroyed:
            return
        if self.recorder is not None and batches:
            self.recorder.returned(self, batches)
        for batch in reversed(batches):
            self._store.push_front(batch)
            self.stats["returned"] += batch_count(batch)
        self._flush()

    def destroy(self, reason: str) -> None:
        """Free the queue (container reset): every waiting call fails with Cancelled."""
        self.destroyed = True
        for line in (self._enqueues, self._dequeues):
            while line:
                line.popleft()._finish(error=CancelledError(reason))
        self._store.clear()

    def cancel_all(self, error: QueueServerError) -> None:
        """Fail every waiting call with ``error`` (server shutdown); dequeues give back what they took."""
        for line in (self._enqueues, self._dequeues):
            for att in list(line):
                if not att.done:  # withdrawing one may let the next complete before its turn here
                    self._withdraw(att, error)

    # ----- the engine
    def _arm_timer(self, attempt: Attempt, timeout: float | None) -> None:
        if attempt.done or timeout is None:
            return
        if timeout <= 0:
            self._expire(attempt)
            return
        attempt._timer = self.clock.call_later(timeout, self._expire, attempt)

    def _expire(self, attempt: Attempt) -> None:
        if attempt.done:
            return
        if attempt.is_enqueue:
            msg = (f"Timed out waiting for room in {self.type_name} '{self.name}': placed {attempt.progress}"
                   f" of {attempt.count} element(s); the placed ones stay in the queue")
            self._withdraw(attempt, DeadlineExceededError(msg, placed=attempt.progress))
        else:
            msg = (f"Timed out waiting for {attempt.count} element(s) from {self.type_name} '{self.name}'"
                   f" (size {self._store.size + attempt.progress}); nothing was taken")
            self._withdraw(attempt, DeadlineExceededError(msg))

    def _fail_waiting(self, attempt: Attempt, error: QueueServerError) -> None:
        if not attempt.done:
            self._withdraw(attempt, error)

    def _withdraw(self, attempt: Attempt, error: QueueServerError) -> None:
        line = self._enqueues if attempt.is_enqueue else self._dequeues
        try:
            line.remove(attempt)
        except ValueError:
            pass
        if not attempt.is_enqueue:
            self._rollback(attempt)
        attempt._finish(error=error)
        self._flush()

    def _rollback(self, attempt: Attempt) -> None:
        if self.recorder is not None and attempt.held:
            self.recorder.returned(self, attempt.held)
        for batch in reversed(attempt.held):
            self._store.push_front(batch)
        attempt.held = []
        attempt.progress = 0

    def _step_enqueue(self, att: Attempt) -> bool:
        room = self.capacity - self._store.size
        if room <= 0:
            return False
        k = min(room, att.count - att.progress)
        part = att.batch if (att.progress == 0 and k == att.count) else tuple(
            c[att.progress: att.progress + k] for c in att.batch)
        self._store.push_back(part)
        att.progress += k
        if att.stamp is not None:
            att.stamp.placed += k
        if self.recorder is not None:
            self.recorder.enqueued(self, part, att.stamp)
        stats = self.stats
        stats["enqueued"] += k
        stats["enqueued_bytes"] += _nbytes(part)
        if att.progress == att.count:
            att._finish(None)
        return True

    def _step_dequeue(self, att: Attempt) -> bool:
        k = min(self._available(), att.count - att.progress)
        if k <= 0 or (att.max_bytes is not None and att.held_bytes > att.max_bytes):
            return False  # (over its budget: it is failing, at the next turn)
        taken = self._store.take(k)
        if self.recorder is not None:
            self.recorder.taken(self, k, taken)
        att.held.extend(taken)
        att.progress += k
        if att.max_bytes is not None:
            att.held_bytes += sum(_nbytes(b) for b in taken)
            if att.held_bytes > att.max_bytes and att.progress < att.count:
                # Failed from the next turn of the loop: this runs inside the queue's engine.
                self.clock.call_later(0, self._fail_waiting, att, ResourceExhaustedError(
                    f"dequeue_{att.mode}({att.count}) from {self.type_name} '{self.name}': the {att.progress}"
                    f" element(s) taken so far already hold {att.held_bytes} bytes, over the largest message of"
                    f" {att.max_bytes} bytes (the server's --max-message-bytes); they stay in the queue"))
                return True
        if att.progress == att.count:
            self._count_delivered(att)
            att.taken = att.held
            att._finish(_ASSEMBLE)
        return True

    def _count_delivered(self, att: Attempt) -> None:
        self.stats["dequeued"] += att.progress
        held = att.held
        self.stats["dequeued_bytes"] += _nbytes(held[0]) if len(held) == 1 else sum(_nbytes(b) for b in held)

    def _output(self, held: list[Batch], mode: str) -> Batch:
        try:
            batch = self._assemble(held, mode)
        except MemoryError:
            count = sum(batch_count(b) for b in held)
            raise ResourceExhaustedError(
                f"{self.type_name} '{self.name}': the batch of {count} element(s) cannot be allocated"
                f" ({self.spec.describe()}); the elements stay in the queue") from None
        return tuple(c[0, ...] for c in batch) if mode == ONE else batch  # 0-d arrays, strings too

    def _flush(self) -> None:
        """Advance waiting attempts, oldest first, until none can move; then settle closed-queue dequeues."""
        while True:
            moved = True
            while moved:
                moved = False
                # Finishing an attempt runs its callbacks, which may re-enter this queue (a server
                # returning a batch whose client left): pop the head only if it still is the head.
                if self._enqueues:
                    head = self._enqueues[0]
                    moved |= self._step_enqueue(head)
                    if head.done and self._enqueues and self._enqueues[0] is head:
                        self._enqueues.popleft()
                if self._dequeues:
                    head = self._dequeues[0]
                    moved |= self._step_dequeue(head)
                    if head.done and self._dequeues and self._dequeues[0] is head:
                        self._dequeues.popleft()
            if not (self.closed and self._dequeues):
                return
            # Closed and stuck: the head dequeue can never be satisfied in full.
            head = self._dequeues.popleft()
            if head.mode == UP_TO and head.progress > 0:
                self._count_delivered(head)
                head.taken = head.held
                head._finish(_ASSEMBLE)
            else:
                self._rollback(head)
                head._finish(error=OutOfRangeError(
                    f"{self.type_name} '{self.name}' is closed and has insufficient elements"
                    f" (requested {head.count}, current size {self._store.size})"))


def _nbytes(batch: Batch) -> int:
    """Array bytes of a batch (string components count their object pointers only)."""
    if len(batch) == 1:
        return batch[0].nbytes
    return sum(c.nbytes for c in batch)


class FIFOQueue(QueueBase):
    """Elements leave in the order they arrived."""

    type_name = "FIFOQueue"


class PaddingFIFOQueue(QueueBase):
    """A FIFO queue whose shapes may hold ``None``; batches are zero-padded to the largest element."""

    type_name = "PaddingFIFOQueue"

    def __init__(self, name: str, capacity: int, spec: ComponentSpec, *, clock: Clock = LOOP_CLOCK) -> None:
        if spec.shapes is None:
            raise InvalidArgumentError(
                f"PaddingFIFOQueue '{name}' needs shapes (use None for the dimensions that vary)")
        super().__init__(name, capacity, spec, clock=clock)

    def _check_dequeue_many(self) -> None:
        pass

    def _assemble(self, batches: list[Batch], mode: str) -> Batch:
        return pad_batches(batches, self.spec) if mode != ONE else concat_batches(batches)


class RandomShuffleQueue(QueueBase):
    """Elements leave in random order; while open, at least ``min_after_dequeue`` stay behind."""

    type_name = "RandomShuffleQueue"

    def __init__(self, name: str, capacity: int, spec: ComponentSpec, *,
                 min_after_dequeue: int = 0, seed: int | None = None, clock: Clock = LOOP_CLOCK) -> None:
        if not isinstance(min_after_dequeue, (int, np.integer)) or min_after_dequeue < 0:
            raise InvalidArgumentError(f"RandomShuffleQueue '{name}': min_after_dequeue must be >= 0")
        if min_after_dequeue >= capacity:
            raise InvalidArgumentError(
                f"RandomShuffleQueue '{name}': min_after_dequeue ({min_after_dequeue}) must be below capacity"
                f" ({capacity}), or no dequeue could ever run before close()")
        self.min_after_dequeue = int(min_after_dequeue)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise InvalidArgumentError(f"RandomShuffleQueue '{name}': seed must be a non-negative integer or None,"
                                       f" got {seed!r}")
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        super().__init__(name, capacity, spec, clock=clock)

    def _make_store(self):
        return ShuffleStore(self.spec, self._rng, self.capacity)

    def _available(self) -> int:
        if self.closed:
            return self._store.size
        return self._store.size - self.min_after_dequeue


class PriorityQueue(QueueBase):
    """Smallest priority first; component 0 of every element is its int64 priority."""

    type_name = "PriorityQueue"

    def _make_store(self):
        return PriorityStore()

    def _step_dequeue(self, att: Attempt) -> bool:
        # TensorFlow's rule: a batch is taken only once all of it is there (closed, dequeue_up_to
        # takes what is left), so it comes out sorted; taking elements as they arrived would put a
        # later, smaller priority after an earlier, larger one. A batch above capacity waits, as there.
        if self._store.size < att.count and not (self.closed and att.mode == UP_TO):
            return False
        return super()._step_dequeue(att)

    def _validate_enqueue(self, batch: Batch) -> None:
        if batch[0].shape[1:] != ():
            raise InvalidArgumentError(f"PriorityQueue '{self.name}': the priority (component 0) must be a scalar")


QUEUE_TYPES: dict[str, type[QueueBase]] = {
    "fifo": FIFOQueue,
    "random_shuffle": RandomShuffleQueue,
    "padding_fifo": PaddingFIFOQueue,
    "priority": PriorityQueue,
}
