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

# Stamps kept per client: a client retries only calls still in flight when it lost its
# connection, never more than this many.
STAMPS_PER_CLIENT = 1024
# Clients remembered: the least recently seen are forgotten first.
MAX_CLIENTS = 10_000


class Stamp:
    """One stamped enqueue call: ``placed`` counts the elements its tries have placed so far."""

    __slots__ = ("client", "seq", "placed")

    def __init__(self, client: str, seq: int, placed: int = 0) -> None:
        self.client = client
        self.seq = seq
        self.placed = placed


class Stamps:
    """The last stamps of each client, bounded per client and in clients.

    On every stamped enqueue: plain dicts, pruned in bulk (a client's sequence numbers grow, so its
    oldest stamps are those below its newest minus ``per_client``).
    """

    def __init__(self, per_client: int = STAMPS_PER_CLIENT, max_clients: int = MAX_CLIENTS) -> None:
        self.per_client = per_client
        self.max_clients = max_clients
        self._clients: dict[str, dict[int, Stamp]] = {}

    def get(self, client: str, seq: int) -> Stamp:
        """The stamp of ``(client, seq)``: the one seen before (with what it placed), or a new one."""
        seen = self._clients.get(client)
        if seen is None:
            if len(self._clients) >= self.max_clients:  # forget the clients seen first
                for old in list(self._clients)[: self.max_clients // 2]:
                    del self._clients[old]
            seen = self._clients[client] = {}
        stamp = seen.get(seq)
        if stamp is None:
            stamp = seen[seq] = Stamp(client, seq)
            if len(seen) > 2 * self.per_client:
                keep = max(seen) - self.per_client
                for old_seq in [s for s in seen if s <= keep]:
                    del seen[old_seq]
        return stamp

    def set(self, client: str, seq: int, placed: int) -> None:
        """Record that ``(client, seq)`` has placed ``placed`` elements (a replay of the durable log)."""
        self.get(client, seq).placed = placed

    def items(self) -> list[Stamp]:
        """Every stamp kept that placed something (a snapshot of the durable log writes them)."""
        return [stamp for seen in self._clients.values() for stamp in seen.values() if stamp.placed]

    def __len__(self) -> int:
        return sum(len(seen) for seen in self._clients.values())
