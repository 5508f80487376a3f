"""One connection's delivery state, with no I/O: the server's half of "no data lost".

A :class:`DeliverySession` is fed events by the connection that owns it and answers with what to
do; it never touches a socket, so every rule here is unit-tested without one:

* a finished dequeue's batch is *held* under a delivery id until the client acknowledges it
  (:meth:`ack`, its ``bye``) or gives it back (:meth:`give_back`); when the connection drops, every
  held batch goes back to the front of its queue, in the order it was delivered (:meth:`lost`);
* deliveries the client received through this task from *another* task (forwarded dequeues) are
  remembered per home task, so a goodbye acknowledges them there and a lost connection returns
  them there (the owner of the connection sends those calls);
* enqueues waiting for room count against a pending-bytes budget, so one producer cannot grow the
  server's memory without bound;
* compact-frame handles map a client's small integers to a queue and the element layout the
  client expects.

The queues themselves are the core's (:mod:`queueserver.core`): returning a batch is a core call.
With ``--data-dir``, the session tells the durable log's recorder which taken batches the client
acknowledged (gone for good); a batch held when the server dies goes back to its queue on restart.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

from queueserver.core import QueueBase
from queueserver.core.specs import Batch
from queueserver.errors import InvalidArgumentError, ResourceExhaustedError

QueueKey = tuple[str, str]  # (container, name)


class DeliverySession:
    """What one client connection holds and owes.

    Args:
        pending_bytes_limit: bytes of waiting enqueues past which further enqueues are refused.
        max_handles: compact-frame handles one connection may bind.
        recorder: the durable log's recorder (told of acknowledgements), or None.
        first_id: this session's first delivery id (the server gives each connection its own
            range, so an id a client kept from a lost connection names nothing on a new one).
    """

    def __init__(self, pending_bytes_limit: int, max_handles: int, recorder: Any = None, first_id: int = 1) -> None:
        self.recorder = recorder
        self.pending_bytes_limit = pending_bytes_limit
        self.max_handles = max_handles
        self.held: dict[int, tuple[QueueBase, list[Batch]]] = {}
        self.forwarded_held: dict[str, set[int]] = {}  # home task -> deliveries held there for us
        self.pending_bytes = 0
        # handle -> ((container, name), the element layout the client expects or None, element
        # bytes, the queue once found or None).
        self.handles: dict[int, tuple[QueueKey, Any, int, QueueBase | None]] = {}
        self._ids = itertools.count(first_id)  # delivery ids are this connection's own

    # ----- deliveries made here
    def next_id(self) -> int:
        """A fresh delivery id, for a reply being built (held by :meth:`hold` once it is)."""
        return next(self._ids)

    def hold(self, delivery: int, queue: QueueBase, taken: list[Batch]) -> None:
        """Hold the batch ``taken`` from ``queue``, just sent to the client as ``delivery``."""
        self.held[delivery] = (queue, taken)

    def ack(self, ids: Any) -> None:
        """The client is done with these deliveries (unknown ids are ignored: acks may repeat).

        Raises:
            InvalidArgumentError: ``ids`` is not a list.
        """
        if not ids:
            return
        if not isinstance(ids, list):
            raise InvalidArgumentError("ack ids must be a list")
        recorder = self.recorder
        for d in ids:
            entry = self.held.pop(d, None)
            if entry is not None and recorder is not None:
                recorder.acked(entry[1])

    def give_back(self, ids: list) -> None:
        """Return these deliveries to the front of their queues, in delivery order."""
        by_queue: dict[int, tuple[QueueBase, list[Batch]]] = {}
        for d in sorted(ids):
            entry = self.held.pop(d, None)
            if entry is not None:
                queue, batches = entry
                by_queue.setdefault(id(queue), (queue, []))[1].extend(batches)
        for queue, batches in by_queue.values():
            queue.return_elements(batches)

    def goodbye(self) -> dict[str, list[int]]:
        """A clean goodbye: everything held is acknowledged. Returns the forwarded deliveries to
        acknowledge on their home tasks."""
        if self.recorder is not None:
            for _, batches in self.held.values():
                self.recorder.acked(batches)
        self.held.clear()
        return self._take_forwarded()

    def lost(self) -> dict[str, list[int]]:
        """The connection dropped: everything held goes back to its queue. Returns the forwarded
        deliveries to return on their home tasks."""
        self.give_back(list(self.held))
        return self._take_forwarded()

    # ----- deliveries held on other tasks, for this client
    def forwarded(self, home: str, acked: Any, delivery: int | None) -> None:
        """A forwarded call came back from ``home``: it acknowledged ``acked`` there, and (a dequeue)
        delivered ``delivery``, which ``home`` now holds for this client."""
        held = self.forwarded_held.setdefault(home, set())
        for d in acked or ():
            held.discard(d)
        if delivery is not None:
            held.add(delivery)

    def _take_forwarded(self) -> dict[str, list[int]]:
        pending, self.forwarded_held = self.forwarded_held, {}
        return {home: sorted(ids) for home, ids in pending.items() if ids}

    # ----- the pending-bytes budget of waiting enqueues
    def check_budget(self) -> None:
        """Raises ResourceExhaustedError while waiting enqueues hold more than the budget."""
        if self.pending_bytes > self.pending_bytes_limit:
            raise ResourceExhaustedError(
                f"{self.pending_bytes} bytes of this connection's enqueues already wait for room (limit"
                f" {self.pending_bytes_limit}); wait for them to complete, or enqueue from another connection")

    # ----- compact-frame handles
    def bind(self, handle: Any, key: QueueKey, layout: Any, size: int) -> None:
        """Bind a client-chosen handle to a queue and the element layout the client expects.

        Raises:
            InvalidArgumentError: the handle is not a number in 1..2**32-1.
            ResourceExhaustedError: the connection has bound ``max_handles`` already.
        """
        if type(handle) is not int or not 0 < handle < 2 ** 32:
            raise InvalidArgumentError(f"bind needs a handle number between 1 and 2**32-1, got {handle!r}")
        if handle not in self.handles and len(self.handles) >= self.max_handles:
            raise ResourceExhaustedError(f"this connection already bound {self.max_handles} compact handles")
        self.handles[handle] = (key, layout, size, None)

    def bound(self, handle: int, find: Callable[[QueueKey], QueueBase],
              layout_of: Callable[[QueueBase], Any]) -> tuple[QueueBase, Any, int]:
        """``(queue, layout, element bytes)`` of a handle. The queue is found (``find``) on first use
        and again after a reset destroyed it, and must have the layout the client expects.

        Raises:
            InvalidArgumentError: nothing is bound to the handle, or the queue's elements differ.
        """
        entry = self.handles.get(handle)
        if entry is None:
            raise InvalidArgumentError(f"no queue is bound to compact handle {handle} on this connection")
        key, layout, size, q = entry
        if q is None or q.destroyed:
            if layout is None:
                raise InvalidArgumentError(f"compact handle {handle} was bound without a fixed-size element spec")
            q = find(key)
            if layout_of(q) != layout:
                raise InvalidArgumentError(f"{q.type_name} '{q.name}' holds {q.spec.describe()}, not the elements this"
                                           " client expects (created again with another spec?): open it again")
            self.handles[handle] = (key, layout, size, q)
        return q, layout, size
