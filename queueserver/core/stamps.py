"""Enqueue stamps: how a retried enqueue is applied once.

Each client stamps its enqueue calls with its client id and a sequence number of its own (see
:func:`queueserver.protocol.enqueue`). The server keeps, per client, the last stamps it saw and how
many elements each placed; a retry of a stamped call (its reply was lost when the connection or
the server went down) places only the elements that earlier tries did not, so nothing is enqueued
twice, whichever try the client hears back from. With ``--data-dir`` the stamps are in the durable
log, so a retry after the server's restart is recognised too.

Pure data, no I/O: :class:`Stamps` is a bounded table of :class:`Stamp` objects.
"""

from __future__ import annotations

from typing import Any

from queueserver.errors import ResourceExhaustedError

# Stamps kept per client that sends no low-water mark: a client retries only calls still in
# flight when it lost its connection, never more than this many.
STAMPS_PER_CLIENT = 1024
# A client with a low-water mark keeps every stamp at or above it; past this many the client is
# refused further stamped calls (a hostile or broken client cannot grow the table without bound).
MAX_OPEN_STAMPS = 100_000
# Clients remembered: the least recently seen are forgotten first.
MAX_CLIENTS = 10_000


class Stamp:
    """One stamped enqueue call: ``placed`` counts the elements its tries have placed so far;
    ``attempt`` is the try under way (a retry supersedes it); ``low`` the client's low-water mark
    sent with it (logged, so a replay forgets what the live table forgot)."""

    __slots__ = ("client", "seq", "placed", "attempt", "low")

    def __init__(self, client: str, seq: int, placed: int = 0, low: int | None = None) -> None:
        self.client = client
        self.seq = seq
        self.placed = placed
        self.attempt: Any = None
        self.low = low


class Stamps:
    """The stamps of each client that it may still retry, bounded in clients.

    A client sends, with each stamp, its low-water mark: the lowest sequence number among its calls
    not yet answered. It will never retry below it, so those stamps are forgotten, and the ones it
    may retry are kept however many newer calls it makes meanwhile (a stamp forgotten while its
    call could still be retried let that retry enqueue twice). A client that sends no mark keeps
    its last ``per_client`` stamps. The least recently seen clients are forgotten first.
    """

    def __init__(self, per_client: int = STAMPS_PER_CLIENT, max_clients: int = MAX_CLIENTS) -> None:
        self.per_client = per_client
        self.max_clients = max_clients
        self._clients: dict[str, dict[int, Stamp]] = {}
        self._low: dict[str, int] = {}
        # Per client, the table size at which stamps below the mark are next swept: twice what the
        # last sweep kept (at least 64), so a client with many calls open (a window of pipelined
        # enqueues) pays one pass per that many calls, not one per call.
        self._sweep_at: dict[str, int] = {}

    def get(self, client: str, seq: int, low: int | None = None) -> Stamp:
        """The stamp of ``(client, seq)``: the one seen before (with what it placed), or a new one.

        Raises:
            ResourceExhaustedError: the client keeps more than ``MAX_OPEN_STAMPS`` calls unanswered.
        """
        seen = self._clients.pop(client, None)  # re-inserted last: the dict's order is recency
        if seen is None:
            if len(self._clients) >= self.max_clients:  # forget the least recently seen clients
                for old in list(self._clients)[: self.max_clients // 2]:
                    del self._clients[old]
                    self._low.pop(old, None)
                    self._sweep_at.pop(old, None)
            seen = {}
        self._clients[client] = seen
        if low is not None:
            self._forget_below(client, seen, low)
        stamp = seen.get(seq)
        if stamp is None:
            if low is not None and len(seen) >= MAX_OPEN_STAMPS:
                raise ResourceExhaustedError(
                    f"client {client!r} has {len(seen)} stamped enqueues unanswered; at most {MAX_OPEN_STAMPS}")
            stamp = seen[seq] = Stamp(client, seq, low=low)
            if low is None and len(seen) > 2 * self.per_client:
                keep = max(seen) - self.per_client
                for old_seq in [s for s in seen if s <= keep]:
                    del seen[old_seq]
        return stamp

    def _forget_below(self, client: str, seen: dict[int, Stamp], low: int) -> None:
        """The client will not retry below ``low``: forget those stamps (in bulk, now and then)."""
        if low <= self._low.get(client, -1):
            return
        self._low[client] = low
        if len(seen) >= self._sweep_at.get(client, 64):  # amortised (see _sweep_at)
            for old_seq in [s for s in seen if s < low]:
                del seen[old_seq]
            self._sweep_at[client] = max(64, 2 * len(seen))

    def set(self, client: str, seq: int, placed: int, low: int | None = None) -> None:
        """Record that ``(client, seq)`` has placed ``placed`` elements (a replay of the durable log)."""
        self.get(client, seq, low).placed = placed

    def items(self) -> list[Stamp]:
        """Every stamp kept that placed something (a snapshot of the durable log writes them)."""
        return [stamp for seen in self._clients.values() for stamp in seen.values() if stamp.placed]

    def __len__(self) -> int:
        return sum(len(seen) for seen in self._clients.values())
