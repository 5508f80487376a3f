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
from typing import Any

import numpy as np

from queueserver.core.clock import LOOP_CLOCK, Clock
from queueserver.core.specs import allocate, as_dtype, dtype_name, shape_str
from queueserver.core.timeouts import check_timeout
from queueserver.core.wire_dtypes import check_wire, widen
from queueserver.errors import CancelledError, DeadlineExceededError, InvalidArgumentError, NotFoundError


class ConditionalAccumulator:
    """Sums fresh gradients of one shape and dtype until a taker asks for their average.

    Args:
        name: display name.
        shape: the gradients' shape.
        dtype: a floating dtype: what :meth:`take_grad` returns. The sum is kept in this dtype
            promoted to at least float32 (``sum_dtype``).
    """

    type_name = "ConditionalAccumulator"
    recorder: Any = None  # the durable log's recorder (set by the ResourceManager), or None
    key: tuple[str, str] = ("", "")  # (container, name), set by the ResourceManager

    def __init__(self, name: str, shape: Any, dtype: Any = np.float32, *, clock: Clock = LOOP_CLOCK) -> None:
        self.name = name
        self.clock = clock
        self.dtype = as_dtype(dtype)
        if self.dtype.kind not in "fc":
            raise InvalidArgumentError(f"ConditionalAccumulator '{name}': dtype must be floating, got {dtype_name(self.dtype)}")
        self.shape = tuple(int(d) for d in shape)
        self.global_step = 0
        self.count = 0
        self.sum_dtype = np.promote_types(self.dtype, np.float32)  # float16 -> float32; wider ones stay
        self._sum = allocate(self.shape, self.sum_dtype, f"ConditionalAccumulator '{name}'", fill=0)
        self._takers: deque[tuple[int, asyncio.Future]] = deque()
        self.destroyed = False
        self.stats = {"applied": 0, "dropped_stale": 0, "taken": 0}

    def _check_alive(self) -> None:
        if self.destroyed:
            raise NotFoundError(f"ConditionalAccumulator '{self.name}' no longer exists (its container was reset)")

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
            raise InvalidArgumentError(f"{owner}: gradient must be numeric")
        check_wire(grad.dtype, wire_dtype, self.sum_dtype, owner)
        if int(local_step) < self.global_step:
            self.stats["dropped_stale"] += 1
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

    def take_grad(self, num_required: int, timeout: float | None = None) -> "asyncio.Future":
        """A future of the average of ``num_required`` fresh gradients (waits until there are enough).

        Raises:
            InvalidArgumentError: ``num_required`` < 1.
        """
        self._check_alive()
        timeout = check_timeout(timeout, f"take_grad from ConditionalAccumulator '{self.name}'")
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
                        f"Timed out waiting for {num_required} gradient(s) in ConditionalAccumulator"
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
            fut.set_result(average.astype(self.dtype, copy=False))

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

    def set_global_step(self, step: int) -> None:
        """Move the global step (only forwards); gradients for older steps become stale."""
        self._check_alive()
        self.global_step = max(self.global_step, int(step))
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
