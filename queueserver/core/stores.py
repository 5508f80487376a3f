"""Element storage behind each queue type: the order in which elements come out.

Stores hold batches (tuples of arrays with a leading count dimension) and never copy an incoming
batch that they can keep as it is: a FIFO store keeps each ``enqueue_many`` as one chunk and hands
out views of it, so a 256-element batch in is a 256-element batch out without touching its bytes.

Every store can list what it holds (``contents``): pushed back in that order into an empty store
of its kind, the batches give a store that behaves exactly as this one (the durable log's
snapshots). A shuffle store's ``take`` can be given its picks, so a replay takes what was taken.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque

from typing import Any

import numpy as np

from queueserver.core.specs import Batch, ComponentSpec, allocate, batch_count


class ChunkStore:
    """First in, first out, over whole chunks; used by FIFOQueue and PaddingFIFOQueue."""

    def __init__(self) -> None:
        self._chunks: deque[Batch] = deque()
        self.size = 0

    def push_back(self, batch: Batch) -> None:
        """Append a batch at the back."""
        n = batch_count(batch)
        if n:
            self._chunks.append(batch)
            self.size += n

    def push_front(self, batch: Batch) -> None:
        """Put a batch back at the front (a returned or rolled-back dequeue)."""
        n = batch_count(batch)
        if n:
            self._chunks.appendleft(batch)
            self.size += n

    def take(self, k: int) -> list[Batch]:
        """Remove the first ``k`` elements; returns them as views of the stored chunks."""
        out = []
        while k > 0:
            head = self._chunks[0]
            n = batch_count(head)
            if n <= k:
                out.append(self._chunks.popleft())
                k -= n
                self.size -= n
            else:
                out.append(tuple(c[:k] for c in head))
                self._chunks[0] = tuple(c[k:] for c in head)
                self.size -= k
                k = 0
        return out

    def contents(self) -> list[Batch]:
        """What the store holds, front first, chunk by chunk."""
        return list(self._chunks)

    def clear(self) -> None:
        """Drop everything."""
        self._chunks.clear()
        self.size = 0


class ShuffleStore:
    """Uniformly random order, for RandomShuffleQueue.

    Elements live in one growable array per component, so taking ``k`` random elements is one
    vectorised gather plus one move of ``k`` tail rows into the holes (TensorFlow's swap-remove,
    done for a whole batch at once).
    """

    def __init__(self, spec: ComponentSpec, rng: np.random.Generator, capacity_hint: int) -> None:
        self._rng = rng
        self._vectorised = spec.fully_defined
        self.size = 0
        self.last_picks: np.ndarray | None = None  # the rows the last take chose (the durable log keeps them)
        if self._vectorised:
            initial = max(1, min(capacity_hint, 1024))
            shapes: Any = spec.shapes  # fully defined: a shape for every component
            self._buffers = [allocate((initial,) + shape, dtype, "RandomShuffleQueue buffer")
                             for dtype, shape in zip(spec.dtypes, shapes)]
        else:
            self._elements: list[Batch] = []

    def push_back(self, batch: Batch) -> None:
        """Add a batch (position does not matter: order is random)."""
        n = batch_count(batch)
        if not n:
            return
        if not self._vectorised:
            self._elements.extend(tuple(c[j:j + 1] for c in batch) for j in range(n))
            self.size += n
            return
        need = self.size + n
        if need > self._buffers[0].shape[0]:
            grown = max(need, 2 * self._buffers[0].shape[0])
            for i, buf in enumerate(self._buffers):
                new = np.empty((grown,) + buf.shape[1:], dtype=buf.dtype)
                new[: self.size] = buf[: self.size]
                self._buffers[i] = new
        for buf, comp in zip(self._buffers, batch):
            buf[self.size: need] = comp
        self.size = need

    push_front = push_back

    def take(self, k: int, picks: np.ndarray | None = None) -> list[Batch]:
        """Remove ``k`` elements chosen uniformly at random, in random order (``picks``: the rows to
        take, as a replay of an earlier take gives them)."""
        if k <= 0:
            return []
        if picks is None:
            picks = self._rng.choice(self.size, size=k, replace=False, shuffle=True)
        self.last_picks = picks
        if not self._vectorised:
            chosen = [self._elements[j] for j in picks]
            keep = np.ones(self.size, dtype=bool)
            keep[picks] = False
            self._elements = [e for e, flag in zip(self._elements, keep) if flag]
            self.size -= k
            return chosen
        out = tuple(buf[picks] for buf in self._buffers)
        new_size = self.size - k
        # Fill holes below new_size with the surviving rows of the tail [new_size, size).
        holes = picks[picks < new_size]
        if holes.size:
            tail_taken = np.zeros(k, dtype=bool)
            tail_picks = picks[picks >= new_size] - new_size
            tail_taken[tail_picks] = True
            survivors = np.flatnonzero(~tail_taken) + new_size
            for buf in self._buffers:
                buf[holes] = buf[survivors]
        self.size = new_size
        return [out]

    def contents(self) -> list[Batch]:
        """What the store holds, in its row order (copies: the buffers change in place)."""
        if not self._vectorised:
            return list(self._elements)
        if not self.size:
            return []
        return [tuple(buf[: self.size].copy() for buf in self._buffers)]

    def clear(self) -> None:
        """Drop everything."""
        self.size = 0
        if not self._vectorised:
            self._elements.clear()


class PriorityStore:
    """Smallest priority first (component 0, an int64 scalar); equal priorities leave in arrival order."""

    def __init__(self) -> None:
        self._heap: list = []
        self._back = itertools.count()
        self._front = itertools.count(-1, -1)
        self.size = 0

    def _push(self, batch: Batch, order, rows) -> None:
        priorities = batch[0]
        for j in rows:
            heapq.heappush(self._heap, (int(priorities[j]), next(order), tuple(c[j:j + 1] for c in batch)))
        self.size += batch_count(batch)

    def push_back(self, batch: Batch) -> None:
        """Add elements by their priorities."""
        self._push(batch, self._back, range(batch_count(batch)))

    def push_front(self, batch: Batch) -> None:
        """Return elements; they go before others of equal priority, keeping their own order."""
        # Front sequence numbers count down, so the batch's last row is pushed first.
        self._push(batch, self._front, range(batch_count(batch) - 1, -1, -1))

    def take(self, k: int) -> list[Batch]:
        """Remove the ``k`` elements with the smallest priorities."""
        out = [heapq.heappop(self._heap)[2] for _ in range(k)]
        self.size -= k
        return out

    def contents(self) -> list[Batch]:
        """What the store holds, in the order it would give it out (one element per batch)."""
        return [entry[2] for entry in sorted(self._heap, key=lambda e: (e[0], e[1]))]

    def clear(self) -> None:
        """Drop everything."""
        self._heap.clear()
        self.size = 0
