"""What the durable log records, and how a replay rebuilds the state from it; no I/O.

The core tells a :class:`Recorder` every change of state as it happens (the hooks in
:mod:`queueserver.core`: queues, variables, accumulators, the resource manager; and the delivery
session's acknowledgements). The recorder turns each into one record, handed to its ``sink`` (the
log writer). :class:`Replay` applies records to a fresh :class:`~queueserver.core.ResourceManager`
with the same core code (the stores' push and take, a variable's assign, an accumulator's add), so
a replayed queue holds exactly the elements, in the order, of the one that was logged.

Records (header ``"k"``; ``c``/``n`` name the resource; arrays travel beside the header):

=====  ==============================================================================
``q``  queue created: ``kind``, ``cap``, ``spec``, ``mad``, ``seed``
``e``  elements placed at the back (arrays); ``s``: the enqueue's stamp [client, seq, placed, low]
``t``  ``m`` elements taken as ``b`` batches, take ids ``t``.. ``t+b-1`` (a shuffle's picks as array)
``r``  taken batches ``t`` (ids) put back at the front, in that order
``f``  elements put back at the front that were never taken under an id (arrays)
``a``  taken batches ``t`` acknowledged: gone for good
``o``  (snapshots) a batch taken under id ``t`` and not yet acknowledged (arrays)
``x``  queue closed
``z``  containers ``cs`` reset
``d``  resource ``n`` in container ``c`` deleted (a queue: its taken batches are forgotten)
``v``  variable created (initial value); ``w`` its value set; ``wr`` rows of it set (a sparse
       update: the rows' indices, int64, and their new values, so a scatter logs what it changed)
``g``  accumulator created: ``shape``, ``dtype`` (``sparse``: a sparse one's reduction type);
       ``ga`` a gradient added (widened, array; a sparse one's: unique rows and their sums);
       ``gt`` the average taken; ``gs`` global step set to ``s``; ``gx`` (snapshots) sum, ``cnt``, ``s``
       (a sparse one's sum: rows, sums, per-row counts)
``st`` (snapshots) enqueue stamps ``l``: [[client, seq, placed], ...]
``nt`` (snapshots) the next take id ``t``
=====  ==============================================================================

A batch taken and not acknowledged when the server died goes back to the front of its queue on
restart, in the order it was taken: :meth:`Replay.held` lists them, and the service returns them
through the core once the recorder is attached, so the return is itself logged.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np

from queueserver.core import (
    ConditionalAccumulatorBase, QueueBase, ResourceManager, SparseConditionalAccumulator, Variable,
)
from queueserver.core.queues import QUEUE_TYPES, PriorityQueue, RandomShuffleQueue
from queueserver.core.specs import Batch, concat_batches
from queueserver.core.stamps import Stamp, Stamps
from queueserver.errors import DataLossError

_KIND_OF = {cls: kind for kind, cls in QUEUE_TYPES.items()}

Sink = Callable[[dict, Sequence[np.ndarray]], None]


def _created(res: Any) -> tuple[dict, list]:
    """The record that creates ``res`` as it was created."""
    c, n = res.key
    if isinstance(res, QueueBase):
        spec = res.spec.to_wire()
        if isinstance(res, PriorityQueue):  # the int64 priority component is added by the manager
            spec = {"dtypes": spec["dtypes"][1:], "shapes": None if spec["shapes"] is None else spec["shapes"][1:],
                    "names": None if spec["names"] is None else spec["names"][1:]}
        mad, seed = (res.min_after_dequeue, res.seed) if isinstance(res, RandomShuffleQueue) else (0, None)
        return ({"k": "q", "c": c, "n": n, "kind": _KIND_OF[type(res)], "cap": res.capacity, "spec": spec,
                 "mad": mad, "seed": seed}, [])
    if isinstance(res, Variable):
        return {"k": "v", "c": c, "n": n}, [res.initial_value]
    header = {"k": "g", "c": c, "n": n, "shape": list(res.shape), "dtype": res.dtype.str}
    if isinstance(res, SparseConditionalAccumulator):
        header["sparse"] = res.reduction_type
    return header, []


class Recorder:
    """Turns the core's changes into records for ``sink(header, arrays)``; keeps the take ids of the
    batches taken and not yet acknowledged or returned.

    Args:
        sink: where each record goes (the log writer's ``append``).
        next_tid: the first take id to give (a replay says which).
    """

    def __init__(self, sink: Sink, next_tid: int = 1) -> None:
        self.sink = sink
        self.next_tid = next_tid
        # id(batch) -> (take id, queue, batch): the batch itself is kept, so its id stays its own.
        self._out: dict[int, tuple[int, QueueBase, Batch]] = {}

    # ----- resources
    def created(self, res: Any) -> None:
        """A queue, variable or accumulator was created."""
        self.sink(*_created(res))

    def reset(self, containers: list[str]) -> None:
        """Containers are about to be reset: their queues' taken batches are forgotten."""
        self.sink({"k": "z", "cs": list(containers)}, ())
        gone = set(containers)
        for key, (_, queue, _) in list(self._out.items()):
            if queue.key[0] in gone:
                del self._out[key]

    def deleted(self, container: str, name: str) -> None:
        """One resource is about to be deleted: a queue's taken batches are forgotten."""
        self.sink({"k": "d", "c": container, "n": name}, ())
        for key, (_, queue, _) in list(self._out.items()):
            if queue.key == (container, name):
                del self._out[key]

    # ----- queues
    def enqueued(self, queue: QueueBase, part: Batch, stamp: Stamp | None) -> None:
        """``part`` was placed at the back of ``queue``."""
        c, n = queue.key
        header: dict[str, Any] = {"k": "e", "c": c, "n": n}
        if stamp is not None:
            header["s"] = [stamp.client, stamp.seq, stamp.placed, stamp.low]
        self.sink(header, part)

    def taken(self, queue: QueueBase, k: int, batches: list[Batch]) -> None:
        """``k`` elements were taken from ``queue``'s store as ``batches``."""
        c, n = queue.key
        tid = self.next_tid
        self.next_tid += len(batches)
        picks = getattr(queue._store, "last_picks", None)
        self.sink({"k": "t", "c": c, "n": n, "m": k, "b": len(batches), "t": tid},
                  () if picks is None else (np.asarray(picks, dtype=np.int64),))
        for i, batch in enumerate(batches):
            self._out[id(batch)] = (tid + i, queue, batch)

    def returned(self, queue: QueueBase, batches: Sequence[Batch]) -> None:
        """``batches`` are about to go back to the front of ``queue``, in that order."""
        c, n = queue.key
        tids = []
        for batch in batches:
            entry = self._out.pop(id(batch), None)
            if entry is None:
                break
            tids.append(entry[0])
        if len(tids) == len(batches):
            self.sink({"k": "r", "c": c, "n": n, "t": tids}, ())
            return
        # A batch with no take id (never expected): put back by value, one record per batch, last
        # first, as the queue pushes them; those with ids are found again by their ids.
        for tid, batch in zip(tids, batches):
            self._out[id(batch)] = (tid, queue, batch)
        for batch in reversed(batches):
            entry = self._out.pop(id(batch), None)
            if entry is not None:
                self.sink({"k": "r", "c": c, "n": n, "t": [entry[0]]}, ())
            else:
                self.sink({"k": "f", "c": c, "n": n}, batch)

    def acked(self, batches: Sequence[Batch]) -> None:
        """The client is done with ``batches``: they are gone for good."""
        tids = []
        for batch in batches:
            entry = self._out.pop(id(batch), None)
            if entry is not None:
                tids.append(entry[0])
        if tids:
            self.sink({"k": "a", "t": tids}, ())

    def closed(self, queue: QueueBase) -> None:
        """``queue`` was closed."""
        c, n = queue.key
        self.sink({"k": "x", "c": c, "n": n}, ())

    def adopt(self, held: list[tuple[int, QueueBase, Batch]]) -> None:
        """Know again batches a replay found taken and not acknowledged (to return them, logged)."""
        for tid, queue, batch in held:
            self._out[id(batch)] = (tid, queue, batch)

    # ----- variables and accumulators
    def variable_set(self, var: Variable) -> None:
        """``var`` has a new value (a new array: never changed in place)."""
        c, n = var.key
        self.sink({"k": "w", "c": c, "n": n}, (var.value,))  # type: ignore[arg-type]  # set: it was just updated

    def variable_rows(self, var: Variable, rows: np.ndarray, values: np.ndarray) -> None:
        """Rows ``rows`` (unique) of ``var`` now hold ``values`` (a copy: the variable changes in place)."""
        c, n = var.key
        self.sink({"k": "wr", "c": c, "n": n}, (rows.astype(np.int64, copy=False), values))

    def gradient_added(self, acc: ConditionalAccumulatorBase, *arrays: np.ndarray) -> None:
        """A fresh gradient (widened to the sum's dtype; a sparse one: its rows and their sums) was added."""
        c, n = acc.key
        self.sink({"k": "ga", "c": c, "n": n}, arrays)

    def gradients_taken(self, acc: ConditionalAccumulatorBase) -> None:
        """A taker got the average: the sum was cleared and the step advanced."""
        c, n = acc.key
        self.sink({"k": "gt", "c": c, "n": n}, ())

    def step_set(self, acc: ConditionalAccumulatorBase) -> None:
        """The global step was moved."""
        c, n = acc.key
        self.sink({"k": "gs", "c": c, "n": n, "s": acc.global_step}, ())


class Replay:
    """Applies records to ``resources`` (and ``stamps``) with the core's own code.

    Raises:
        DataLossError: a record contradicts the state (it names a resource that does not exist, or
            takes more than the queue holds): the log is not this state's history.
    """

    def __init__(self, resources: ResourceManager, stamps: Stamps) -> None:
        self.resources = resources
        self.stamps = stamps
        self.next_tid = 1
        self.records = 0
        self._out: dict[int, tuple[QueueBase, Batch]] = {}  # take id -> (queue, batch), in take order

    def _get(self, h: dict, kind: type) -> Any:
        try:
            return self.resources.get(h["c"], h["n"], kind)
        except Exception:
            raise DataLossError(f"the log names {kind.__name__} '{h.get('n')}' in container '{h.get('c')}',"
                                " which it never created") from None

    def apply(self, h: dict, arrays: list[np.ndarray]) -> None:
        """Apply one record.

        Raises:
            DataLossError: the record contradicts the state, or is of a kind this version does not know.
        """
        self.records += 1
        step = self._STEPS.get(h["k"])
        if step is None:
            raise DataLossError(f"the log holds a change of unknown kind {h['k']!r}: written by a newer version?")
        step(self, h, arrays)

    # ----- one method per record kind (see the module notes)
    def _placed(self, h: dict, arrays: list) -> None:
        self._get(h, QueueBase)._store.push_back(tuple(arrays))
        if "s" in h:
            client, seq, placed, *low = h["s"]  # (logs written before low-water marks have three)
            self.stamps.set(client, seq, placed, low[0] if low else None)

    def _taken(self, h: dict, arrays: list) -> None:
        q = self._get(h, QueueBase)
        m, tid = h["m"], h["t"]
        if m > q._store.size:
            raise DataLossError(f"the log takes {m} element(s) from {q.type_name} '{q.name}', which holds {q._store.size}")
        taken = q._store.take(m, arrays[0]) if arrays else q._store.take(m)
        if len(taken) != h["b"]:
            raise DataLossError(f"the log took {h['b']} batch(es) from {q.type_name} '{q.name}'; a replay takes {len(taken)}")
        for i, batch in enumerate(taken):
            self._out[tid + i] = (q, batch)
        self.next_tid = max(self.next_tid, tid + len(taken))

    def _acked(self, h: dict, arrays: list) -> None:
        for tid in h["t"]:
            self._out.pop(tid, None)

    def _returned(self, h: dict, arrays: list) -> None:
        q = self._get(h, QueueBase)
        batches = [self._out.pop(tid)[1] for tid in h["t"] if tid in self._out]
        for batch in reversed(batches):
            q._store.push_front(batch)

    def _put_front(self, h: dict, arrays: list) -> None:
        self._get(h, QueueBase)._store.push_front(tuple(arrays))

    def _outstanding(self, h: dict, arrays: list) -> None:
        self._out[h["t"]] = (self._get(h, QueueBase), tuple(arrays))
        self.next_tid = max(self.next_tid, h["t"] + 1)

    def _closed(self, h: dict, arrays: list) -> None:
        self._get(h, QueueBase).closed = True

    def _queue(self, h: dict, arrays: list) -> None:
        spec = h["spec"]
        self.resources.queue(h["kind"], h["n"], container=h["c"], capacity=h["cap"], dtypes=spec["dtypes"],
                             shapes=spec.get("shapes"), names=spec.get("names"),
                             min_after_dequeue=h.get("mad", 0), seed=h.get("seed"))

    def _variable(self, h: dict, arrays: list) -> None:
        self.resources.variable(h["n"], arrays[0], container=h["c"])

    def _value(self, h: dict, arrays: list) -> None:
        self._get(h, Variable).assign(arrays[0])

    def _rows(self, h: dict, arrays: list) -> None:
        self._get(h, Variable).scatter_update(arrays[0], arrays[1])

    def _accumulator(self, h: dict, arrays: list) -> None:
        if "sparse" in h:
            self.resources.sparse_accumulator(h["n"], h["shape"], dtype=h["dtype"], reduction_type=h["sparse"],
                                              container=h["c"])
        else:
            self.resources.accumulator(h["n"], h["shape"], dtype=h["dtype"], container=h["c"])

    def _gradient(self, h: dict, arrays: list) -> None:
        self._get(h, ConditionalAccumulatorBase).add(*arrays)

    def _average_taken(self, h: dict, arrays: list) -> None:
        self._get(h, ConditionalAccumulatorBase).take_now()

    def _step(self, h: dict, arrays: list) -> None:
        self._get(h, ConditionalAccumulatorBase).set_global_step(h["s"])

    def _sum(self, h: dict, arrays: list) -> None:
        self._get(h, ConditionalAccumulatorBase).restore(*arrays, h["cnt"], h["s"])

    def _reset(self, h: dict, arrays: list) -> None:
        gone = set(h["cs"])
        self._out = {tid: e for tid, e in self._out.items() if e[0].key[0] not in gone}
        self.resources.reset(h["cs"])

    def _deleted(self, h: dict, arrays: list) -> None:
        key = (h["c"], h["n"])
        self._out = {tid: e for tid, e in self._out.items() if e[0].key != key}
        self.resources.delete(h["c"], h["n"], "deleted")

    def _stamps(self, h: dict, arrays: list) -> None:
        for client, seq, placed in h["l"]:
            self.stamps.set(client, seq, placed)

    def _next_tid(self, h: dict, arrays: list) -> None:
        self.next_tid = max(self.next_tid, h["t"])

    _STEPS: dict[str, Callable[["Replay", dict, list], None]] = {
        "e": _placed, "t": _taken, "a": _acked, "r": _returned, "f": _put_front, "o": _outstanding,
        "x": _closed, "q": _queue, "v": _variable, "w": _value, "wr": _rows, "g": _accumulator, "ga": _gradient,
        "gt": _average_taken, "gs": _step, "gx": _sum, "z": _reset, "d": _deleted, "st": _stamps, "nt": _next_tid,
    }

    def held(self) -> list[tuple[int, QueueBase, Batch]]:
        """Batches taken and not acknowledged, in take order: ``(take id, queue, batch)``."""
        return [(tid, q, batch) for tid, (q, batch) in sorted(self._out.items())]


# A snapshot writes a queue's contents in records of at most this many bytes: one record per queue
# (a big shuffle or priority queue) outgrew what a record can hold, and compaction failed for good.
SNAPSHOT_RECORD_BYTES = 64 * 1024 * 1024


def _pieces(batch: Batch) -> Iterator[Batch]:
    """``batch`` cut along its elements into parts of at most SNAPSHOT_RECORD_BYTES (one element at least)."""
    count = len(batch[0])
    per_element = max(1, sum(c.nbytes for c in batch) // max(count, 1))
    step = max(1, SNAPSHOT_RECORD_BYTES // per_element)
    if step >= count:
        yield batch
        return
    for start in range(0, count, step):
        yield tuple(c[start:start + step] for c in batch)


def _joined(elements: list[Batch]) -> list[Batch]:
    """Consecutive one-element batches joined into batches of up to 4096 (in order); elements of
    unknown shape that differ cannot be joined, and stay apart."""
    out: list[Batch] = []
    for start in range(0, len(elements), 4096):
        run = elements[start:start + 4096]
        try:
            out.append(concat_batches(run))
        except ValueError:  # shapes differ (a queue without shapes): one record each
            out.extend(run)
    return out


def snapshot(resources: ResourceManager, stamps: Stamps,
             held: list[tuple[int, QueueBase, Batch]], next_tid: int) -> Iterator[tuple[dict, Sequence[np.ndarray]]]:
    """Records that rebuild this state from nothing (a snapshot): ``held`` are the batches taken
    and not acknowledged, which stay so."""
    held_by_queue: dict[int, list[tuple[int, Batch]]] = {}
    for tid, q, batch in held:
        held_by_queue.setdefault(id(q), []).append((tid, batch))
    for container, name, res in list(resources.items()):
        yield _created(res)
        c, n = container, name
        if isinstance(res, QueueBase):
            contents = res._store.contents()
            if isinstance(res, PriorityQueue):
                contents = _joined(contents)  # its elements, one batch each: fewer records
            for batch in contents:
                for piece in _pieces(batch):
                    yield {"k": "e", "c": c, "n": n}, piece
            for tid, batch in held_by_queue.get(id(res), ()):
                yield {"k": "o", "c": c, "n": n, "t": tid}, batch
            if res.closed:
                yield {"k": "x", "c": c, "n": n}, ()
        elif isinstance(res, Variable):
            if res.value is not None:
                yield {"k": "w", "c": c, "n": n}, (res.value,)
        elif isinstance(res, ConditionalAccumulatorBase):
            yield {"k": "gx", "c": c, "n": n, "cnt": res.count, "s": res.global_step}, res.sum_arrays()
    stamp_list = [[s.client, s.seq, s.placed] for s in stamps.items()]
    if stamp_list:
        yield {"k": "st", "l": stamp_list}, ()
    yield {"k": "nt", "t": next_tid}, ()
