"""Conditional accumulators: the gradient aggregation behind synchronous data-parallel training.

TensorFlow's ``ConditionalAccumulator``: replicas ``apply_grad(grad, local_step)``; a gradient
computed for a step older than the accumulator's global step is stale and dropped; the chief's
``take_grad(n)`` waits for ``n`` fresh gradients, returns their average, clears the sum and advances
the global step, so gradients still in flight for the finished step are dropped when they arrive.

Gradients may arrive narrower than the accumulator's dtype (float16, or bfloat16 bit patterns marked
``wire_dtype="bfloat16"``) to halve the bytes of a push: each is widened once on arrival by
:func:`queueserver.core.wire_dtypes.widen`, and the sum is kept in float32 at least (float16 sums
lose a bit per add, and NumPy emulates float16 arithmetic in software: several times slower than
float32). The average a taker gets is in the accumulator's declared dtype, as in TensorFlow.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable

import numpy as np

from queueserver.core.clock import LOOP_CLOCK, Clock
from queueserver.core.specs import allocate, as_dtype, as_shape, dtype_name, shape_str
from queueserver.core.timeouts import check_timeout
from queueserver.core.wire_dtypes import check_wire, widen
from queueserver.errors import CancelledError, DeadlineExceededError, InvalidArgumentError, NotFoundError


# TensorFlow registers its accumulators' kernels for half, float and double only.
ACCUMULATOR_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def accumulator_dtype(dtype: Any, owner: str) -> np.dtype:
    """``dtype`` as an accumulator's: float16, float32 or float64.

    Raises:
        InvalidArgumentError: any other dtype (integers, complex, bool), named.
    """
    dt = as_dtype(dtype)
    if dt not in ACCUMULATOR_DTYPES:
        raise InvalidArgumentError(
            f"{owner}: dtype must be floating (float16, float32 or float64, as TensorFlow's), got {dtype_name(dt)}")
    return dt


def defined_shape(shape: Any, owner: str) -> tuple:
    """An accumulator's shape: every dimension known (a list of ints >= 0, or one int).

    Raises:
        InvalidArgumentError: ``None`` (unknown rank) or an unknown dimension (``None`` or -1):
            TensorFlow's accumulators take them, these do not (the sum is allocated up front).
    """
    dims = as_shape(shape)  # InvalidArgumentError for anything that is not a shape
    if dims is None or None in dims:
        raise InvalidArgumentError(
            f"{owner}: needs a fully defined shape, got {'None' if dims is None else shape_str(dims)}"
            " (unknown dimensions are not supported)")
    return dims


class ConditionalAccumulatorBase:
    """What dense and sparse accumulators share: the global step that makes a gradient stale, the
    count of fresh gradients, and the takers waiting for enough of them (served in arrival order).

    A subclass keeps the sum: ``take_now()`` (the average, clearing the sum and advancing the step)
    and ``_output(average)`` (what a served taker gets).
    """

    type_name = "ConditionalAccumulatorBase"
    recorder: Any = None  # the durable log's recorder (set by the ResourceManager), or None
    key: tuple[str, str] = ("", "")  # (container, name), set by the ResourceManager
    name: str
    clock: Clock
    shape: tuple
    dtype: np.dtype
    global_step: int
    count: int
    destroyed: bool
    stats: dict
    _takers: deque
    # Each kind's own signature: the durable log's replay and snapshot call them with its records.
    add: Callable[..., None]
    restore: Callable[..., None]
    sum_arrays: Callable[[], tuple]

    def _check_alive(self) -> None:
        if self.destroyed:
            raise NotFoundError(f"{self.type_name} '{self.name}' no longer exists (its container was reset)")

    def _stale(self, local_step: int) -> bool:
        """Whether a gradient computed at ``local_step`` is stale (then it is counted and dropped)."""
        if int(local_step) < self.global_step:
            self.stats["dropped_stale"] += 1
            return True
        return False

    def take_now(self) -> Any:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def _output(self, average: Any) -> Any:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def take_grad(self, num_required: int, timeout: float | None = None) -> "asyncio.Future":
        """A future of the average of ``num_required`` fresh gradients (waits until there are enough).

        Raises:
            InvalidArgumentError: ``num_required`` < 1.
        """
        self._check_alive()
        timeout = check_timeout(timeout, "take_grad from {} '{}'", self.type_name, self.name)
        if int(num_required) < 1:
            raise InvalidArgumentError(f"take_grad needs num_required >= 1, got {num_required}")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        entry = (int(num_required), fut)
        self._takers.append(entry)
        self._serve()
        if not fut.done() and timeout is not None:
            def expire() -> None:
                if not fut.done():
                    self._takers.remove(entry)
                    fut.set_exception(DeadlineExceededError(
                        f"Timed out waiting for {num_required} gradient(s) in {self.type_name}"
                        f" '{self.name}' (have {self.count})"))
                    self._serve()  # the next taker may need fewer gradients than this one did
            handle = self.clock.call_later(max(timeout, 0), expire)
            fut.add_done_callback(lambda _: handle.cancel())
        return fut

    def _serve(self) -> None:
        while self._takers and self._takers[0][1].done():
            self._takers.popleft()
        if self._takers and self.count >= self._takers[0][0]:
            _, fut = self._takers.popleft()
            average = self.take_now()
            if self.recorder is not None:
                self.recorder.gradients_taken(self)
            fut.set_result(self._output(average))

    def set_global_step(self, step: int) -> None:
        """Set the global step, backwards too (as TensorFlow does, which only logs a warning then);
        gradients for older steps become stale."""
        self._check_alive()
        self.global_step = int(step)
        if self.recorder is not None:
            self.recorder.step_set(self)

    def num_accumulated(self) -> int:
        """Fresh gradients summed so far."""
        self._check_alive()
        return self.count

    def destroy(self, reason: str) -> None:
        """Free the accumulator: waiting takers fail with Cancelled."""
        self.destroyed = True
        while self._takers:
            _, fut = self._takers.popleft()
            if not fut.done():
                fut.set_exception(CancelledError(reason))

    def describe(self) -> dict:
        """A status summary."""
        return {"type": self.type_name, "dtype": dtype_name(self.dtype), "shape": list(self.shape),
                "global_step": self.global_step, "accumulated": self.count, **self.stats}


class ConditionalAccumulator(ConditionalAccumulatorBase):
    """Sums fresh gradients of one shape and dtype until a taker asks for their average.

    Args:
        name: display name.
        shape: the gradients' shape.
        dtype: a floating dtype: what :meth:`take_grad` returns. The sum is kept in this dtype
            promoted to at least float32 (``sum_dtype``).
    """

    type_name = "ConditionalAccumulator"

    def __init__(self, name: str, shape: Any, dtype: Any = np.float32, *, clock: Clock = LOOP_CLOCK) -> None:
        self.name = name
        self.clock = clock
        self.dtype = accumulator_dtype(dtype, f"ConditionalAccumulator '{name}'")
        self.shape = defined_shape(shape, f"ConditionalAccumulator '{name}'")
        self.global_step = 0
        self.count = 0
        self.sum_dtype = np.promote_types(self.dtype, np.float32)  # float16 -> float32; wider ones stay
        self._sum = allocate(self.shape, self.sum_dtype, f"ConditionalAccumulator '{name}'", fill=0)
        self._takers: deque[tuple[int, asyncio.Future]] = deque()
        self.destroyed = False
        self.stats = {"applied": 0, "dropped_stale": 0, "taken": 0}

    def apply_grad(self, grad: np.ndarray, local_step: int, wire_dtype: str | None = None) -> bool:
        """Add a gradient computed at ``local_step``; returns False when it was stale and dropped.

        Args:
            grad: the gradient, of the accumulator's shape: any real dtype that converts to the
                accumulator's (float16 halves a push), or bfloat16 bit patterns (uint16).
            local_step: the global step the gradient was computed at.
            wire_dtype: ``"bfloat16"`` when ``grad`` holds bfloat16 bit patterns, else None.

        Raises:
            InvalidArgumentError: wrong shape or dtype, or an unknown ``wire_dtype``; checked even
                for a stale gradient.
        """
        self._check_alive()
        grad = np.asarray(grad)
        owner = f"ConditionalAccumulator '{self.name}'"
        if grad.shape != self.shape:
            raise InvalidArgumentError(
                f"{owner}: gradient shape {shape_str(grad.shape)}, expected {shape_str(self.shape)}")
        if grad.dtype.kind not in "fiu":
            raise InvalidArgumentError(f"{owner}: gradient must be numeric (integer or floating), got {dtype_name(grad.dtype)}")
        check_wire(grad.dtype, wire_dtype, self.sum_dtype, owner)
        if self._stale(local_step):
            return False  # before widening: a stale gradient costs no conversion
        wide = widen(grad, wire_dtype, self.sum_dtype, owner)
        self.add(wide)
        if self.recorder is not None:
            self.recorder.gradient_added(self, wide)
        self._serve()
        return True

    def add(self, wide: np.ndarray) -> None:
        """Add a fresh gradient already widened to ``sum_dtype`` (the durable log's replay calls it)."""
        np.add(self._sum, wide, out=self._sum)
        self.count += 1
        self.stats["applied"] += 1

    def take_now(self) -> np.ndarray:
        """Take the average of what is summed: clear the sum, advance the global step (a served
        taker; the durable log's replay of one)."""
        average = self._sum / self.count  # a new array: the sum can be cleared in place
        self._sum.fill(0)
        self.count = 0
        self.global_step += 1
        self.stats["taken"] += 1
        return average

    def restore(self, total: np.ndarray, count: int, step: int) -> None:
        """Set the sum, its count and the global step (a snapshot of the durable log being replayed)."""
        self._sum[...] = total
        self.count = int(count)
        self.global_step = int(step)

    def _output(self, average: np.ndarray) -> np.ndarray:
        return average.astype(self.dtype, copy=False)

    def sum_arrays(self) -> tuple:
        """The sum as the durable log's snapshot keeps it (``restore(*arrays, count, step)`` takes it back)."""
        return (self._sum,)


REDUCTIONS = ("MEAN", "SUM")


class SparseConditionalAccumulator(ConditionalAccumulatorBase):
    """Sums fresh sparse gradients (rows of a ``shape`` table: indices and their values) until a
    taker asks for them: TensorFlow's ``SparseConditionalAccumulator``.

    Staleness, takers and the global step follow the dense :class:`ConditionalAccumulator`. The
    sum holds only the rows some gradient touched. A taker gets ``(indices, values, dense_shape)``:
    the touched rows in increasing order and, with ``reduction_type="MEAN"`` (TensorFlow's
    default), each row's sum divided by the number of gradients that touched *that row* (not by the
    number of gradients: TensorFlow averages element-wise); with ``"SUM"``, the sums. A gradient
    that names a row twice adds both values and counts once for it.

    Args:
        name: display name.
        shape: the dense shape of the gradients (rows first), fully defined.
        dtype: a floating dtype: what a taker gets; the sum is kept in at least float32.
        reduction_type: ``"MEAN"`` or ``"SUM"``.
    """

    type_name = "SparseConditionalAccumulator"

    def __init__(self, name: str, shape: Any, dtype: Any = np.float32, *, reduction_type: str = "MEAN",
                 clock: Clock = LOOP_CLOCK) -> None:
        self.name = name
        self.clock = clock
        owner = f"SparseConditionalAccumulator '{name}'"
        self.dtype = accumulator_dtype(dtype, owner)
        self.shape = defined_shape(shape, owner)
        if not self.shape:
            raise InvalidArgumentError(f"{owner}: needs a fully defined shape of rank >= 1, got {list(self.shape)}")
        if reduction_type not in REDUCTIONS:
            raise InvalidArgumentError(f"{owner}: reduction_type must be one of {list(REDUCTIONS)}, got {reduction_type!r}")
        self.reduction_type = reduction_type
        self.global_step = 0
        self.count = 0
        self.sum_dtype = np.promote_types(self.dtype, np.float32)
        self._clear()
        self._takers: deque[tuple[int, asyncio.Future]] = deque()
        self.destroyed = False
        self.stats = {"applied": 0, "dropped_stale": 0, "taken": 0}

    def _clear(self) -> None:
        self._rows = np.empty(0, np.int64)                                    # touched rows, increasing
        self._values = np.zeros((0,) + self.shape[1:], self.sum_dtype)        # their sums
        self._counts = np.zeros(0, np.int64)                                  # gradients that touched each

    def apply_indexed_slices_grad(self, indices: Any, values: Any, local_step: int,
                                  wire_dtype: str | None = None, dense_shape: Any = None) -> bool:
        """Add a sparse gradient computed at ``local_step``; False when it was stale and dropped.

        Args:
            indices: a vector of int32 or int64 rows in ``[0, shape[0])``, in any order.
            values: ``len(indices)`` rows of ``shape[1:]``; any real dtype that converts to the
                accumulator's, or bfloat16 bit patterns with ``wire_dtype="bfloat16"``.
            local_step: the global step the gradient was computed at.
            dense_shape: the gradient's ``IndexedSlices.dense_shape``, or None; when given it must
                agree with the accumulator's shape, as TensorFlow checks it.

        Raises:
            InvalidArgumentError: indices that are not a vector of integers, or one out of range
                (named), values of another shape or dtype, a ``dense_shape`` that differs from the
                accumulator's; checked even for a stale gradient.
        """
        self._check_alive()
        owner = f"SparseConditionalAccumulator '{self.name}'"
        if dense_shape is not None:
            self._check_dense_shape(np.asarray(dense_shape), owner)
        idx, vals = np.asarray(indices), np.asarray(values)
        if idx.ndim != 1:
            raise InvalidArgumentError(f"{owner}: indices must be a vector, got shape {shape_str(idx.shape)}")
        if idx.dtype.kind not in "iu":
            raise InvalidArgumentError(f"{owner}: indices must be int32 or int64, got {dtype_name(idx.dtype)}")
        bad = np.flatnonzero((idx < 0) | (idx >= self.shape[0]))
        if bad.size:
            raise InvalidArgumentError(
                f"{owner}: indices[{int(bad[0])}] = {int(idx[bad[0]])} is not in [0, {self.shape[0]})")
        if vals.shape != idx.shape + self.shape[1:]:
            raise InvalidArgumentError(
                f"{owner}: values must have shape {shape_str(idx.shape + self.shape[1:])}"
                f" (one row of {shape_str(self.shape[1:])} per index), got {shape_str(vals.shape)}")
        if vals.dtype.kind not in "fiu":
            raise InvalidArgumentError(
                f"{owner}: gradient values must be numeric (integer or floating), got {dtype_name(vals.dtype)}")
        check_wire(vals.dtype, wire_dtype, self.sum_dtype, owner)
        if self._stale(local_step):
            return False
        wide = widen(vals, wire_dtype, self.sum_dtype, owner)
        rows, where = np.unique(idx.astype(np.int64, copy=False), return_inverse=True)
        summed = np.zeros((rows.size,) + self.shape[1:], self.sum_dtype)
        np.add.at(summed, where, wide)  # a row named twice in one gradient: both values, one count
        self.add(rows, summed)
        if self.recorder is not None:
            self.recorder.gradient_added(self, rows, summed)
        self._serve()
        return True

    def _check_dense_shape(self, dense_shape: np.ndarray, owner: str) -> None:
        """TensorFlow's check of a gradient's ``dense_shape``: at least the accumulator's rank, and
        its dimensions where the accumulator's are known."""
        if dense_shape.ndim != 1 or dense_shape.dtype.kind not in "iu":
            raise InvalidArgumentError(
                f"{owner}: dense_shape must be a vector of integers, got {dtype_name(dense_shape.dtype)}"
                f"{shape_str(dense_shape.shape)}")
        if dense_shape.size < len(self.shape):
            raise InvalidArgumentError(
                f"{owner}: Shape mismatch: expected shape rank at least {len(self.shape)}, got {dense_shape.size}")
        for i, d in enumerate(self.shape):
            if d != int(dense_shape[i]):
                raise InvalidArgumentError(
                    f"{owner}: Shape mismatch: expected shape dim {i} to be {d}, got {int(dense_shape[i])}")

    def apply_grad(self, grad: Any, local_step: int, wire_dtype: str | None = None) -> bool:
        """Refused: a sparse accumulator takes :meth:`apply_indexed_slices_grad`."""
        raise InvalidArgumentError(
            f"SparseConditionalAccumulator '{self.name}' takes sparse gradients: use apply_indexed_slices_grad")

    def add(self, rows: np.ndarray, summed: np.ndarray) -> None:
        """Add a fresh gradient: ``rows`` unique and increasing, ``summed`` their values in
        ``sum_dtype`` (the durable log's replay calls it too)."""
        merged = np.union1d(self._rows, rows)
        values = np.zeros((merged.size,) + self.shape[1:], self.sum_dtype)
        counts = np.zeros(merged.size, np.int64)
        old = np.searchsorted(merged, self._rows)
        values[old] = self._values
        counts[old] = self._counts
        new = np.searchsorted(merged, rows)
        values[new] += summed
        counts[new] += 1
        self._rows, self._values, self._counts = merged, values, counts
        self.count += 1
        self.stats["applied"] += 1

    def take_now(self) -> tuple[np.ndarray, np.ndarray]:
        """Take the touched rows and their reduction; clear the sum, advance the global step."""
        rows, values = self._rows, self._values
        if self.reduction_type == "MEAN":
            values = values / self._counts.reshape((-1,) + (1,) * (values.ndim - 1))
        self._clear()
        self.count = 0
        self.global_step += 1
        self.stats["taken"] += 1
        return rows, values

    def _output(self, average: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, values = average
        return rows, values.astype(self.dtype, copy=False), np.array(self.shape, np.int64)

    def restore(self, rows: np.ndarray, values: np.ndarray, counts: np.ndarray, count: int, step: int) -> None:
        """Set the sum, the gradient count and the global step (a durable snapshot being replayed)."""
        self._rows = np.array(rows, np.int64)
        self._values = np.array(values, self.sum_dtype)
        self._counts = np.array(counts, np.int64)
        self.count = int(count)
        self.global_step = int(step)

    def sum_arrays(self) -> tuple:
        """The sum as the durable log's snapshot keeps it: rows, values, per-row counts."""
        return (self._rows, self._values, self._counts)

    def describe(self) -> dict:
        """A status summary (``rows``: rows touched by the gradients summed so far)."""
        return {**super().describe(), "reduction_type": self.reduction_type, "rows": int(self._rows.size)}
