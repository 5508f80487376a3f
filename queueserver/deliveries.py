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

from typing import Any, Callable, Hashable

QueueKey = tuple[str, str]  # (container, name)


class Deliveries:
    """Delivery ids a connection received and has not acknowledged, by queue and by caller.

    On the path of every dequeue: plain dicts keyed by ``(queue, caller)``, no container built
    or dropped per call when a caller keeps consuming.
    """

    def __init__(self, watch: Callable[[Hashable, Callable[[Any], None]], None] | None = None) -> None:
        # watch(caller, callback): arrange for callback(caller) when the caller ends (a task's done
        # callback), called once per caller, when it first receives something.
        self._watch = watch
        self._held: dict[tuple[QueueKey, Hashable], list[int]] = {}
        self._caller_keys: dict[Hashable, set[QueueKey]] = {}  # the queues each caller received from
        self._handed_over: dict[QueueKey, list[int]] = {}      # received by callers that have ended
        self._taken: dict[int, dict] = {}                      # taken delivery -> its route (where it goes back)

    def received(self, key: QueueKey, caller: Hashable, delivery: int) -> None:
        """``caller`` received ``delivery`` from queue ``key`` by a plain dequeue."""
        ids = self._held.get((key, caller))
        if ids is None:
            self._held[(key, caller)] = [delivery]
            keys = self._caller_keys.get(caller)
            if keys is None:
                self._caller_keys[caller] = {key}
                if self._watch is not None:
                    self._watch(caller, self.caller_ended)
            else:
                keys.add(key)
        else:
            ids.append(delivery)

    def done_with(self, key: QueueKey, caller: Hashable) -> list[int]:
        """What ``caller``'s next call on ``key`` acknowledges (removed from the books; see :meth:`restore`)."""
        ids = self._held.pop((key, caller), None)
        if self._handed_over:
            handed = self._handed_over.pop(key, None)
            if handed:
                return handed + ids if ids else handed
        return ids or []

    def count(self, key: QueueKey, caller: Hashable) -> int:
        """How many ids :meth:`done_with` would return now."""
        ids = self._held.get((key, caller))
        n = len(ids) if ids else 0
        if self._handed_over:
            n += len(self._handed_over.get(key, ()))
        return n

    def restore(self, key: QueueKey, caller: Hashable, ids: list[int]) -> None:
        """The call that was to acknowledge ``ids`` failed before it was sent: they stay held."""
        if ids:
            later = self._held.get((key, caller))
            if later:
                ids = ids + later
            else:
                self._caller_keys.setdefault(caller, set()).add(key)
            self._held[(key, caller)] = list(ids)

    def caller_ended(self, caller: Any) -> None:
        """``caller`` (a task) ended: what it received was handed over to whoever awaited it."""
        for key in self._caller_keys.pop(caller, ()):
            ids = self._held.pop((key, caller), None)
            if ids:
                self._handed_over.setdefault(key, []).extend(ids)

    def forget(self, key: QueueKey, delivery: int) -> None:
        """``delivery`` goes back to its queue (nobody will see it): no call may acknowledge it."""
        self._taken.pop(delivery, None)
        for (held_key, _), ids in list(self._held.items()):  # a copy: other threads' callers may add keys
            if held_key == key and delivery in ids:
                ids.remove(delivery)
                return
        handed = self._handed_over.get(key)
        if handed and delivery in handed:
            handed.remove(delivery)

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
        self._caller_keys.clear()
        self._handed_over.clear()
        self._taken.clear()
        return outstanding
