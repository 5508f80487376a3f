"""The client's half of at-least-once delivery: which received batches each caller is done with.

The server holds every batch it delivered until the client acknowledges it, and puts back what a
connection held when the connection drops. Which held batches a call may acknowledge is decided
here, on the client, without I/O:

* A plain dequeue acknowledges what *the same caller* received earlier from the same queue: a caller
  that asks for more is done with what it had. The caller is the asyncio task that awaits the call
  (for the synchronous client, the calling thread), so several tasks consuming one queue over one
  connection never acknowledge a batch a sibling is still processing, and a consumer killed
  mid-way repeats at most what its callers held.
* Batches received by a task that has since ended were handed to whoever awaited that task; the
  next dequeue or ``ack()`` on their queue, from any caller, acknowledges them (the pattern
  ``await asyncio.gather(*(q.dequeue() for ...))`` then processing the results, then gathering
  again). Use ``take()`` where that is too early.
* A *taken* batch (``AsyncQueue.take``) is acknowledged only by its own ``ack()``. One still
  unacknowledged when the client closes goes back to its queue: the caller never said it was done.
"""

from __future__ import annotations

from typing import Hashable

QueueKey = tuple[str, str]  # (container, name)


class Deliveries:
    """Delivery ids a connection received and has not acknowledged, by queue and by caller."""

    def __init__(self) -> None:
        self._held: dict[QueueKey, dict[Hashable, list[int]]] = {}
        self._handed_over: dict[QueueKey, list[int]] = {}  # received by callers that have ended
        self._taken: dict[int, dict] = {}                  # taken delivery -> its route (where it goes back)

    def received(self, key: QueueKey, caller: Hashable, delivery: int) -> None:
        """``caller`` received ``delivery`` from queue ``key`` by a plain dequeue."""
        self._held.setdefault(key, {}).setdefault(caller, []).append(delivery)

    def done_with(self, key: QueueKey, caller: Hashable) -> list[int]:
        """What ``caller``'s next call on ``key`` acknowledges (removed from the books; see :meth:`restore`)."""
        by_caller = self._held.get(key)
        ids = by_caller.pop(caller, []) if by_caller else []
        handed = self._handed_over.pop(key, None)
        if by_caller is not None and not by_caller:
            del self._held[key]
        return handed + ids if handed else ids

    def count(self, key: QueueKey, caller: Hashable) -> int:
        """How many ids :meth:`done_with` would return now."""
        by_caller = self._held.get(key)
        mine = len(by_caller.get(caller, ())) if by_caller else 0
        return mine + len(self._handed_over.get(key, ()))

    def restore(self, key: QueueKey, caller: Hashable, ids: list[int]) -> None:
        """The call that was to acknowledge ``ids`` failed before it was sent: they stay held."""
        if ids:
            mine = self._held.setdefault(key, {}).setdefault(caller, [])
            mine[:0] = ids

    def caller_ended(self, caller: Hashable) -> None:
        """``caller`` (a task) ended: what it received was handed over to whoever awaited it."""
        for key in list(self._held):
            ids = self._held[key].pop(caller, None)
            if ids:
                self._handed_over.setdefault(key, []).extend(ids)
            if not self._held[key]:
                del self._held[key]

    def forget(self, key: QueueKey, delivery: int) -> None:
        """``delivery`` goes back to its queue (nobody will see it): no call may acknowledge it."""
        self._taken.pop(delivery, None)
        for ids in [*self._held.get(key, {}).values(), self._handed_over.get(key, [])]:
            if delivery in ids:
                ids.remove(delivery)
                return

    def taken(self, delivery: int, route: dict) -> None:
        """``delivery`` was taken: only its own ``ack()`` acknowledges it."""
        self._taken[delivery] = route

    def settled(self, delivery: int) -> bool:
        """A taken delivery was acknowledged or given back; False if it already was."""
        return self._taken.pop(delivery, None) is not None

    def close(self) -> list[tuple[int, dict]]:
        """The client closes cleanly: plain deliveries are acknowledged by the goodbye; returns the
        taken ones nobody acknowledged, with their routes, to give back first."""
        outstanding = list(self._taken.items())
        self._held.clear()
        self._handed_over.clear()
        self._taken.clear()
        return outstanding
