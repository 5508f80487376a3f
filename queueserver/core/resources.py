"""Resource containers and variables (the seed's section 2.5).

Every resource is found by ``(container, shared_name)``; ``""`` is the default container. Asking for
an existing name with the same spec returns the same resource; with a different spec it fails with
InvalidArgument and says what differs. ``reset(containers)`` frees every resource in those
containers: waiting calls fail with Cancelled, later calls see NotFound.

With a ``recorder`` (the durable log's, :mod:`queueserver.durability`), the manager and every
resource it holds tell it each change of state: created, updated, reset.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import numpy as np

from queueserver.core.accumulators import ConditionalAccumulator, SparseConditionalAccumulator
from queueserver.core.clock import LOOP_CLOCK, Clock
from queueserver.core.queues import QUEUE_TYPES, QueueBase, RandomShuffleQueue
from queueserver.core.specs import ComponentSpec, as_dtype, coerce_value, dtype_name, shape_str
from queueserver.core.wire_dtypes import widen
from queueserver.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)


class Variable:
    """A named numpy array shared by every client; uninitialised until :meth:`initialize`.

    Each operation is atomic: the event loop runs it to completion before any other call.
    """

    type_name = "Variable"
    recorder: Any = None  # the durable log's recorder (set by the ResourceManager), or None
    key: tuple[str, str] = ("", "")  # (container, name), set by the ResourceManager

    def __init__(self, name: str, initial_value: np.ndarray) -> None:
        self.name = name
        self.initial_value = np.array(initial_value)  # our own copy: callers may reuse theirs
        self.dtype = self.initial_value.dtype
        self.shape = self.initial_value.shape
        self.value: np.ndarray | None = None
        self.destroyed = False
        self.stats = {"reads": 0, "updates": 0, "gathers": 0, "scatters": 0}
        self.updated_at: float | None = None  # wall-clock time of the last update, for status pages
        # Whether ``value`` has been handed out (a reply, the durable log's writer): then a sparse
        # update copies it before changing rows in place, so nobody holding it sees it change.
        self._shared = False

    def _check(self) -> np.ndarray:
        if self.destroyed:
            raise NotFoundError(f"Variable '{self.name}' no longer exists (its container was reset)")
        if self.value is None:
            raise FailedPreconditionError(
                f"Attempting to use uninitialized value {self.name}: run initialize() first")
        return self.value

    def _coerce(self, value: np.ndarray, op: str, wire_dtype: str | None = None) -> np.ndarray:
        """``value`` as this variable's dtype and shape; see :mod:`queueserver.core.wire_dtypes` for ``wire_dtype``."""
        value = widen(np.asarray(value), wire_dtype, self.dtype, f"Variable '{self.name}' {op}")
        if value.shape != self.shape:
            raise InvalidArgumentError(
                f"Variable '{self.name}' {op}: expected shape {shape_str(self.shape)}, got {shape_str(value.shape)}")
        return value

    def initialize(self) -> np.ndarray:
        """Set the value to the initial value (again, if it was set before)."""
        if self.destroyed:
            raise NotFoundError(f"Variable '{self.name}' no longer exists (its container was reset)")
        self.value = self.initial_value.copy()
        self._updated()
        return self.value

    def is_initialized(self) -> bool:
        """Whether :meth:`initialize` or :meth:`assign` has run."""
        return self.value is not None

    def read(self) -> np.ndarray:
        """The current value (a snapshot: later updates do not change it)."""
        value = self._check()
        self.stats["reads"] += 1
        self._shared = True
        return value

    def assign(self, value: Any, wire_dtype: str | None = None) -> np.ndarray:
        """Replace the value. Assigning initializes, as TensorFlow's ``assign`` does.

        ``wire_dtype="bfloat16"``: ``value`` holds bfloat16 bit patterns (uint16), widened exactly.
        """
        if self.destroyed:
            raise NotFoundError(f"Variable '{self.name}' no longer exists (its container was reset)")
        self.value = self._coerce(value, "assign", wire_dtype).copy()
        self._updated()
        return self.value

    def _check_arithmetic(self, op: str, instead: str) -> None:
        """Refuse arithmetic on a bool variable (TensorFlow registers no such kernel; NumPy would
        make ``+`` a logical or), pointing at the update that works (``instead``)."""
        if self.dtype == np.bool_:
            raise InvalidArgumentError(f"Variable '{self.name}' {op}: not defined for a bool variable (use {instead})")

    def assign_add(self, delta: Any, wire_dtype: str | None = None) -> np.ndarray:
        """Add ``delta`` atomically; returns the new value. ``wire_dtype``: as for :meth:`assign`.

        Raises:
            InvalidArgumentError: a bool variable, or a delta of another shape or dtype; nothing changes.
        """
        current = self._check()
        self._check_arithmetic("assign_add", "assign")
        self.value = current + self._coerce(delta, "assign_add", wire_dtype)
        self._updated()
        return self.value

    def assign_sub(self, delta: Any, wire_dtype: str | None = None) -> np.ndarray:
        """Subtract ``delta`` atomically; returns the new value. ``wire_dtype``: as for :meth:`assign`;
        raises as :meth:`assign_add`."""
        current = self._check()
        self._check_arithmetic("assign_sub", "assign")
        self.value = current - self._coerce(delta, "assign_sub", wire_dtype)
        self._updated()
        return self.value

    def _updated(self) -> None:
        # Every update makes a new array (none is changed in place), so the recorder may keep it.
        self.stats["updates"] += 1
        self.updated_at = time.time()
        self._shared = True  # returned to the caller, and kept by the recorder
        if self.recorder is not None:
            self.recorder.variable_set(self)

    # ----- sparse access: rows of the first dimension (TensorFlow's gather and scatter_* ops)
    def _indices(self, indices: Any, op: str) -> np.ndarray:
        """``indices`` checked against the first dimension, as ``intp``, in their own shape.

        Raises:
            InvalidArgumentError: the variable is a scalar, the indices are not integers, or one is
                negative or past the last row (named as TensorFlow does: ``indices[1] = 7 is not in [0, 6)``).
        """
        if not self.shape:
            raise InvalidArgumentError(f"Variable '{self.name}' {op}: a scalar variable has no rows to index")
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise InvalidArgumentError(
                f"Variable '{self.name}' {op}: indices must be int32 or int64, got {dtype_name(idx.dtype)}")
        rows = self.shape[0]
        flat = idx.reshape(-1)
        bad = np.flatnonzero((flat < 0) | (flat >= rows))
        if bad.size:
            where = ",".join(str(int(i)) for i in np.unravel_index(int(bad[0]), idx.shape)) if idx.ndim else ""
            at = f"indices[{where}]" if idx.ndim else "indices"
            raise InvalidArgumentError(
                f"Variable '{self.name}' {op}: {at} = {int(flat[bad[0]])} is not in [0, {rows})")
        return idx.astype(np.intp, copy=False)

    def _updates(self, idx: np.ndarray, updates: Any, op: str, wire_dtype: str | None) -> np.ndarray:
        """``updates`` as this variable's dtype, of shape ``indices.shape + shape[1:]`` or a scalar."""
        value = widen(np.asarray(updates), wire_dtype, self.dtype, f"Variable '{self.name}' {op}")
        if value.shape and value.shape != idx.shape + self.shape[1:]:
            raise InvalidArgumentError(
                f"Variable '{self.name}' {op}: updates must have shape indices.shape + params.shape[1:]"
                f" = {shape_str(idx.shape + self.shape[1:])} or be a scalar, got {shape_str(value.shape)}"
                f" (indices {shape_str(idx.shape)}, params {shape_str(self.shape)})")
        return value

    def _writable(self) -> np.ndarray:
        """The value, ready to change in place: copied first when someone else may hold it."""
        value = self._check()
        if self._shared:
            value = self.value = value.copy()
            self._shared = False
        return value

    def _rows_updated(self, rows: np.ndarray) -> None:
        """Rows ``rows`` (unique when there is a recorder) were changed in place: count it, and log
        their new values only."""
        self.stats["scatters"] += 1  # apart from "updates": metrics count those as whole-value writes
        self.updated_at = time.time()
        if self.recorder is not None:
            self.recorder.variable_rows(self, rows, self.value[rows])  # type: ignore[index]  # fancy indexing copies

    def gather(self, indices: Any) -> np.ndarray:
        """Rows ``indices`` of the value (a new array of shape ``indices.shape + shape[1:]``).

        Raises:
            InvalidArgumentError: see :meth:`scatter_add`; FailedPreconditionError before initialize.
        """
        value = self._check()
        idx = self._indices(indices, "gather")
        self.stats["gathers"] += 1
        return np.take(value, idx, axis=0)

    def _scatter_sum(self, op: str, indices: Any, updates: Any, wire_dtype: str | None, sign: int) -> None:
        self._check()
        self._check_arithmetic(op, "scatter_update")
        idx = self._indices(indices, op)
        upd = self._updates(idx, updates, op, wire_dtype)
        flat = idx.reshape(-1)
        if upd.shape:
            upd = upd.reshape((flat.size,) + self.shape[1:])
        value = self._writable()
        # ufunc.at is unbuffered: a row named twice gets both updates, as TensorFlow sums duplicates.
        (np.add if sign > 0 else np.subtract).at(value, flat, upd)
        self._rows_updated(np.unique(flat) if self.recorder is not None else flat)  # the log wants each row once

    def scatter_add(self, indices: Any, updates: Any, wire_dtype: str | None = None) -> None:
        """Add ``updates`` to rows ``indices``, atomically; a row named more than once gets every update.

        Args:
            indices: int32 or int64 row numbers in ``[0, shape[0])``, of any shape.
            updates: ``indices.shape + shape[1:]`` values (or one scalar for every named row) that
                convert to the variable's dtype; ``wire_dtype="bfloat16"`` as for :meth:`assign`.

        Raises:
            InvalidArgumentError: a scalar or bool variable, indices that are not integers or out
                of range (the first bad one is named), updates of another shape or a dtype that does
                not convert. Nothing changes.
            FailedPreconditionError: the variable is not initialized.
        """
        self._scatter_sum("scatter_add", indices, updates, wire_dtype, 1)

    def scatter_sub(self, indices: Any, updates: Any, wire_dtype: str | None = None) -> None:
        """Subtract ``updates`` from rows ``indices``; as :meth:`scatter_add` otherwise."""
        self._scatter_sum("scatter_sub", indices, updates, wire_dtype, -1)

    def scatter_update(self, indices: Any, updates: Any, wire_dtype: str | None = None) -> None:
        """Set rows ``indices`` to ``updates``; as :meth:`scatter_add` otherwise (bool variables too).

        A row named more than once takes its *last* update in index order. (TensorFlow leaves the
        order of duplicate updates undefined; one defined winner makes every replica and a replay
        of the durable log agree.)
        """
        self._check()
        idx = self._indices(indices, "scatter_update")
        upd = self._updates(idx, updates, "scatter_update", wire_dtype)
        flat = idx.reshape(-1)
        # The last occurrence of each row: the first occurrence in the reversed indices.
        rows, first_in_reversed = np.unique(flat[::-1], return_index=True)
        value = self._writable()
        if upd.shape:
            value[rows] = upd.reshape((flat.size,) + self.shape[1:])[flat.size - 1 - first_in_reversed]
        else:
            value[rows] = upd
        self._rows_updated(rows)

    def describe(self) -> dict:
        """A status summary."""
        return {"type": "Variable", "dtype": dtype_name(self.dtype), "shape": list(self.shape),
                "initialized": self.value is not None, "nbytes": self.initial_value.nbytes,
                "updated_at": self.updated_at, **self.stats}


def _resource_key(container: str, name: str) -> str:
    return f"{container}/{name}" if container else name


class ResourceManager:
    """All resources of one server, by container."""

    def __init__(self, clock: Clock = LOOP_CLOCK) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.clock = clock  # every queue's and accumulator's timers (see queueserver.core.clock)
        self.recorder: Any = None  # the durable log's recorder; see attach()

    def attach(self, recorder: Any) -> None:
        """Tell ``recorder`` every later change of state, of this manager and of every resource."""
        self.recorder = recorder
        for _, _, res in self.items():
            res.recorder = recorder

    def _existing(self, container: str, name: str):
        return self.containers.get(container, {}).get(name)

    def _add(self, container: str, name: str, resource) -> None:
        self.containers.setdefault(container, {})[name] = resource
        resource.key = (container, name)
        if self.recorder is not None:
            resource.recorder = self.recorder
            self.recorder.created(resource)

    def queue(self, kind: str, name: str, *, container: str = "", capacity: int,
              dtypes, shapes=None, names=None, min_after_dequeue: int = 0,
              seed: int | None = None) -> QueueBase:
        """Get or create a queue.

        Raises:
            InvalidArgumentError: the name exists with another type or spec, or the spec is invalid.
        """
        if kind not in QUEUE_TYPES:
            raise InvalidArgumentError(f"unknown queue type {kind!r}; use one of {sorted(QUEUE_TYPES)}")
        if not name:
            raise InvalidArgumentError("a shared queue needs a non-empty name")
        if kind == "priority":
            # The priority is component 0, an int64 scalar, as in TensorFlow's PriorityQueue.
            dtypes = [np.int64] + list(dtypes)
            shapes = None if shapes is None else [[]] + list(shapes)
            names = None if names is None else ["priority"] + list(names)
        spec = ComponentSpec(dtypes, shapes, names)
        cls = QUEUE_TYPES[kind]
        display = _resource_key(container, name)
        existing = self._existing(container, name)
        if existing is not None:
            self._check_same_queue(existing, cls, display, capacity, spec, min_after_dequeue, seed)
            return existing
        queue: QueueBase
        if cls is RandomShuffleQueue:
            queue = RandomShuffleQueue(display, capacity, spec, min_after_dequeue=min_after_dequeue, seed=seed,
                                       clock=self.clock)
        else:
            queue = cls(display, capacity, spec, clock=self.clock)
        self._add(container, name, queue)
        return queue

    @staticmethod
    def _check_same_queue(existing, cls, display, capacity, spec, min_after_dequeue, seed) -> None:
        if not isinstance(existing, QueueBase) or type(existing) is not cls:
            raise InvalidArgumentError(
                f"Shared resource '{display}' is a {existing.type_name}, not a {cls.type_name}")
        if existing.capacity != capacity:
            raise InvalidArgumentError(
                f"Shared queue '{display}' has capacity {existing.capacity} but requested capacity was {capacity}")
        mine, theirs = existing.spec.to_wire(), spec.to_wire()
        for field, label in (("dtypes", "component types"), ("shapes", "component shapes"), ("names", "component names")):
            if mine[field] != theirs[field]:
                raise InvalidArgumentError(
                    f"Shared queue '{display}' has {label} {mine[field]} but requested {label} were {theirs[field]}")
        if isinstance(existing, RandomShuffleQueue) and existing.min_after_dequeue != min_after_dequeue:
            raise InvalidArgumentError(
                f"Shared queue '{display}' has min_after_dequeue {existing.min_after_dequeue}"
                f" but requested min_after_dequeue was {min_after_dequeue}")
        # TensorFlow's rule: a request without a seed (its seed 0) accepts the shared queue's.
        if isinstance(existing, RandomShuffleQueue) and seed is not None and existing.seed != seed:
            raise InvalidArgumentError(
                f"Shared queue '{display}' has random seeds ({existing.seed}) but requested seeds were ({seed})")

    def variable(self, name: str, initial_value: Any, *, container: str = "", dtype=None) -> Variable:
        """Get or create a variable (uninitialised until ``initialize``).

        Raises:
            InvalidArgumentError: the name exists with another dtype or shape, or is not a variable.
        """
        if not name:
            raise InvalidArgumentError("a shared variable needs a non-empty name")
        if dtype is None:
            value = np.asarray(initial_value)
        else:
            # A queue's rule for a user's value: a float into an int dtype or a complex into a float
            # one is refused, never truncated; integers are range-checked.
            value = coerce_value(initial_value, as_dtype(dtype), f"Variable '{_resource_key(container, name)}' initial value")
        if value.dtype.kind not in "biufc":
            raise InvalidArgumentError(f"Variable '{name}': values must be numeric or bool, got {value.dtype}")
        display = _resource_key(container, name)
        existing = self._existing(container, name)
        if existing is not None:
            if not isinstance(existing, Variable):
                raise InvalidArgumentError(f"Shared resource '{display}' is a {existing.type_name}, not a Variable")
            if existing.dtype != value.dtype or existing.shape != value.shape:
                raise InvalidArgumentError(
                    f"Shared variable '{display}' is {dtype_name(existing.dtype)}{shape_str(existing.shape)}"
                    f" but {dtype_name(value.dtype)}{shape_str(value.shape)} was requested")
            return existing
        var = Variable(display, value)
        self._add(container, name, var)
        return var

    def accumulator(self, name: str, shape: Any, *, dtype: Any = np.float32,
                    container: str = "") -> ConditionalAccumulator:
        """Get or create a conditional accumulator.

        Raises:
            InvalidArgumentError: the name exists with another shape, dtype or kind.
        """
        if not name:
            raise InvalidArgumentError("a shared accumulator needs a non-empty name")
        acc = ConditionalAccumulator(_resource_key(container, name), shape, dtype, clock=self.clock)
        return self._accumulator(container, name, acc, ())

    def sparse_accumulator(self, name: str, shape: Any, *, dtype: Any = np.float32, reduction_type: str = "MEAN",
                           container: str = "") -> SparseConditionalAccumulator:
        """Get or create a sparse conditional accumulator (rows of a ``shape`` table).

        Raises:
            InvalidArgumentError: the name exists with another shape, dtype, reduction or kind.
        """
        if not name:
            raise InvalidArgumentError("a shared accumulator needs a non-empty name")
        acc = SparseConditionalAccumulator(_resource_key(container, name), shape, dtype,
                                           reduction_type=reduction_type, clock=self.clock)
        return self._accumulator(container, name, acc, ("reduction_type",))

    def _accumulator(self, container: str, name: str, acc: Any, same: tuple[str, ...]) -> Any:
        """``acc``, added; or the existing one of that name when it is the same kind, shape, dtype and ``same``."""
        existing = self._existing(container, name)
        if existing is None:
            self._add(container, name, acc)
            return acc
        display = _resource_key(container, name)
        if type(existing) is not type(acc):
            raise InvalidArgumentError(f"Shared resource '{display}' is a {existing.type_name}, not a {acc.type_name}")
        if existing.shape != acc.shape or existing.dtype != acc.dtype:
            raise InvalidArgumentError(
                f"Shared accumulator '{display}' is {dtype_name(existing.dtype)}{shape_str(existing.shape)}"
                f" but {dtype_name(acc.dtype)}{shape_str(acc.shape)} was requested")
        for attr in same:
            if getattr(existing, attr) != getattr(acc, attr):
                raise InvalidArgumentError(f"Shared accumulator '{display}' has {attr} {getattr(existing, attr)!r}"
                                           f" but {getattr(acc, attr)!r} was requested")
        return existing

    def get(self, container: str, name: str, kind: type | None = None):
        """Look up a resource.

        Raises:
            NotFoundError: no such resource (never created, or its container was reset).
        """
        res = self._existing(container, name)
        if res is None or (kind is not None and not isinstance(res, kind)):
            what = "resource" if kind is None else kind.type_name if hasattr(kind, "type_name") else kind.__name__
            where = f" in container '{container}'" if container else ""
            raise NotFoundError(f"{what} '{name}'{where} does not exist (was it created, or was its container reset?)")
        return res

    def reset(self, containers: Iterable[str]) -> int:
        """Free every resource in ``containers``; returns how many were freed."""
        freed = 0
        containers = list(containers)
        if self.recorder is not None:
            self.recorder.reset(containers)
        for container in containers:
            resources = self.containers.pop(container, {})
            for res in resources.values():
                if hasattr(res, "destroy"):
                    res.destroy(f"{res.type_name} '{res.name}' was reset (container '{container}')")
                else:
                    res.destroyed = True
                freed += 1
        return freed

    def delete(self, container: str, name: str, reason: str) -> None:
        """Free one resource: its waiting calls fail with Cancelled (``reason``), later calls see NotFound.

        Raises:
            NotFoundError: there is no such resource.
        """
        res = self.get(container, name)
        if self.recorder is not None:
            self.recorder.deleted(container, name)
        resources = self.containers[container]
        del resources[name]
        if not resources:
            del self.containers[container]
        if hasattr(res, "destroy"):
            res.destroy(reason)
        else:
            res.destroyed = True

    def items(self):
        """``(container, name, resource)`` for every resource."""
        for container, resources in self.containers.items():
            for name, res in resources.items():
                yield container, name, res
