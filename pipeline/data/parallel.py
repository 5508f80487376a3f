"""Transformations that call user functions, possibly concurrently: map, interleave/flat_map,
and prefetch.

Concurrency model: ``num_parallel_calls`` threads per iterator for plain functions (numpy work
releases the GIL), the shared background event loop for coroutine functions. Work runs ahead of
the consumer, but iterator states only ever describe what the consumer has received: inputs
whose results are still in flight are saved as inputs and recomputed on restore, and elements
buffered ahead are saved as elements.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import inspect
import os
import threading
import weakref
from collections import deque
from typing import Any, Callable

import numpy as np

from pipeline.blocks import RecordBlock, block_call
from queueserver import errors

from . import base as _base
from . import structure
from .base import (
    AUTOTUNE,
    INFINITE_CARDINALITY,
    UNKNOWN_CARDINALITY,
    Dataset,
    DatasetIterator,
    autotune_parallelism,
    call_fn,
    fn_name,
    run_coroutine,
    spec_sample,
    _Unary,
    _UnaryIterator,
    wrap_user_error,
)
from .batching import _BatchIterator
from .structure import TensorSpec


def _on_background_loop() -> bool:
    """Whether this thread is the pipeline's background loop's, running a coroutine there."""
    loop = asyncio._get_running_loop()
    return loop is not None and loop is _base._LOOP


_ON_LOOP = (
    "a coroutine function runs on the pipeline's background event loop, but this dataset is being "
    "iterated synchronously on that loop's own thread (from a coroutine running there, e.g. another "
    "map's coroutine function), so the loop would wait for itself for ever. Iterate the dataset with "
    "`async for` (each step runs in a worker thread), or move the synchronous iteration off the loop: "
    "`await asyncio.to_thread(list, dataset)`"
)


def _refuse(out: Any) -> errors.FailedPreconditionError:
    if inspect.iscoroutine(out):
        out.close()  # never awaited: no "coroutine was never awaited" warning
    return errors.FailedPreconditionError(_ON_LOOP)


def _guard(fn: Callable) -> Callable:
    """``fn``, refusing (instead of deadlocking) to wait for an awaitable result when called on
    the background loop's thread; ``call_fn`` then reports the refusal like any failure."""

    def call(*args: Any) -> Any:
        out = fn(*args)
        if _on_background_loop() and inspect.isawaitable(out):
            raise _refuse(out)
        return out

    return call


def _call_raw(fn: Callable, element: Any, consumer_on_loop: bool = False) -> Any:
    """Runs ``fn`` on ``element`` in a worker; awaitable results are awaited on the loop (unless
    the consumer waiting for this result blocks that loop)."""
    out = fn(*element) if type(element) is tuple else fn(element)
    if inspect.isawaitable(out):
        if consumer_on_loop:
            raise _refuse(out)
        out = run_coroutine(out).result()
    return out


class _Failed:
    """A slot in a run-ahead window whose input itself raised; re-raised in its turn."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


# --------------------------------------------------------------------------- map
class MapDataset(_Unary):
    """``ds.map(fn, num_parallel_calls, deterministic)``."""

    def __init__(self, parent: Dataset, fn: Callable, num_parallel_calls: int | None,
                 deterministic: bool | None, output_signature: Any) -> None:
        super().__init__(parent)
        if not callable(fn):
            raise TypeError("`map_func` must be callable")
        self._fn = fn
        self._call = _guard(fn)
        self._parallel = autotune_parallelism(num_parallel_calls) if num_parallel_calls else 1
        self._deterministic = True if deterministic is None else bool(deterministic)
        self._where = f"Dataset.map(fn={fn_name(fn)})"
        if output_signature is not None:
            self.__dict__["_spec"] = output_signature

    def _compute_spec(self) -> Any:
        # Python functions cannot be traced: run the function on a few input elements. A result
        # dimension equal to an input dimension that is unknown (e.g. the batch dimension) is
        # unknown too, so `batch(256).map(f)` reports (None, ...) as TensorFlow does.
        if self._parent._iteration_consumes():
            return structure.UNKNOWN_SPEC  # never take from a queue or run a generator to look
        in_spec = self._parent.element_spec
        spec = None
        free_sizes: set = set()
        with spec_sample(self._parent, 8) as elements:
            for e in elements:
                for s, leaf in zip(structure.flatten(in_spec), structure.flatten(e)):
                    if isinstance(s, TensorSpec) and s.shape is not None:
                        free_sizes.update(
                            d for d, k in zip(np.shape(leaf), s.shape) if k is None
                        )
                try:
                    out = call_fn(self._call, e, self._where)
                except Exception:  # noqa: BLE001 - sample around failing elements
                    continue
                sp = structure.spec_of(out)
                spec = sp if spec is None else structure.relax(spec, sp)
        if spec is None:
            # Nothing to look at (an empty input, or a filter that let nothing through within
            # the sample): no dtype is invented; later checks use the elements themselves.
            return structure.UNKNOWN_SPEC

        def loosen(s: Any) -> Any:
            if isinstance(s, TensorSpec) and s.shape:
                return TensorSpec(tuple(None if d in free_sizes else d for d in s.shape), s.dtype)
            return s

        return structure.map_structure(loosen, spec) if free_sizes else spec

    def _cardinality(self) -> int:
        return self._parent._cardinality()

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        parent = self._parent._make_iter(ctx)
        if self._parallel == 1:
            plan = None
            if type(parent) is _BatchIterator:
                # A batch of file records decoded by a function that only hands it to a decoder:
                # the batch is built as a record block, read by the decoder from the reader's
                # bytes (pipeline.blocks). Same results, same state.
                plan = block_call(self._fn)
                if plan is not None and not parent.enable_blocks():
                    plan = None
            return _MapIterator(self, parent, plan)
        return _ParallelMapIterator(self, parent)


class _MapIterator(_UnaryIterator):
    def __init__(self, ds: MapDataset, parent_it: DatasetIterator, plan: Any = None) -> None:
        super().__init__(parent_it)
        self._fn, self._where = ds._call, ds._where
        self._plan = plan

    def __next__(self) -> Any:
        e = next(self._parent)
        if isinstance(e, RecordBlock) and not self._plan.takes_block():
            e = e.materialize()  # the name no longer means a decoder of blocks: the plain batch
        return call_fn(self._fn, e, self._where)


class _ParallelMapIterator(_UnaryIterator):
    """Keeps up to ``num_parallel_calls`` calls in flight (a window of futures)."""

    def __init__(self, ds: MapDataset, parent_it: DatasetIterator) -> None:
        super().__init__(parent_it)
        self._ds = ds
        self._pending: deque = deque()  # [input, future | _Failed]
        self._parent_done = False
        self._pool: cf.ThreadPoolExecutor | None = None
        self._coro = inspect.iscoroutinefunction(ds._fn)

    def _submit(self, element: Any) -> Any:
        on_loop = _on_background_loop()
        if self._coro:  # coroutine functions run on the event loop, not in threads
            if on_loop:
                raise errors.FailedPreconditionError(f"in {self._ds._where}: {_ON_LOOP}")
            fn = self._ds._fn
            return run_coroutine(fn(*element) if type(element) is tuple else fn(element))
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(self._ds._parallel, thread_name_prefix="pipeline-map")
            # Threads end when the iterator is dropped without close().
            weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        return self._pool.submit(_call_raw, self._ds._fn, element, on_loop)

    def _fill(self) -> None:
        while not self._parent_done and len(self._pending) < self._ds._parallel:
            try:
                e = next(self._parent)
            except StopIteration:
                self._parent_done = True
                break
            except Exception as exc:  # noqa: BLE001 - delivered in order, like a result
                self._pending.append([None, _Failed(exc)])
                continue
            self._pending.append([e, self._submit(e)])

    def __next__(self) -> Any:
        self._fill()
        if not self._pending:
            raise StopIteration
        if self._ds._deterministic:
            entry = self._pending.popleft()
        else:
            entry = next((p for p in self._pending if isinstance(p[1], _Failed) or p[1].done()), None)
            if entry is None:  # nothing ready: wait for the first call to complete
                cf.wait([p[1] for p in self._pending], return_when=cf.FIRST_COMPLETED)
                entry = next(p for p in self._pending if p[1].done())
            self._pending.remove(entry)
        fut = entry[1]
        if isinstance(fut, _Failed):
            raise fut.exc
        try:
            out = fut.result()
            return structure.normalize(out)
        except Exception as e:
            raise wrap_user_error(e, self._ds._where) from e

    def close(self) -> None:
        super().close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None  # a restored state (set_state after close) starts a fresh pool

    def _own_state(self) -> dict:
        pending = []
        for e, f in self._pending:
            pending.append({"error": structure.encode(f.exc)} if isinstance(f, _Failed) else {"input": structure.encode(e)})
        return {"pending": pending, "parent_done": self._parent_done}

    def _set_own_state(self, state: dict) -> None:
        self._parent_done = bool(state["parent_done"])
        self._pending = deque()
        for p in state["pending"]:
            if "error" in p:
                self._pending.append([None, _Failed(structure.decode(p["error"]))])
            else:
                e = structure.decode(p["input"])
                self._pending.append([e, self._submit(e)])


# --------------------------------------------------------------------------- interleave
def schedulable_cores() -> int:
    """The CPU cores this process may run on (TensorFlow's ``port::MaxParallelism``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API on this platform
        return max(1, os.cpu_count() or 1)


class InterleaveDataset(_Unary):
    """``ds.interleave(...)`` and ``ds.flat_map(fn)`` (cycle_length 1)."""

    def __init__(self, parent: Dataset, fn: Callable, cycle_length: int | None,
                 block_length: int | None, num_parallel_calls: int | None,
                 deterministic: bool | None, name: str = "interleave") -> None:
        super().__init__(parent)
        if not callable(fn):
            raise TypeError("`map_func` must be callable")
        self._fn = fn
        self._call = _guard(fn)
        fixed_cycle = cycle_length is not None and cycle_length != AUTOTUNE
        if cycle_length is None or cycle_length == AUTOTUNE:
            # "If cycle_length is not set, it defaults to the number of schedulable CPU cores."
            cycle_length = schedulable_cores()
        if int(cycle_length) < 1:  # TensorFlow's class and words
            raise errors.InvalidArgumentError(f"cycle_length must be greater than zero, got {cycle_length}.")
        if block_length is None:
            block_length = 1
        if int(block_length) < 1:
            raise errors.InvalidArgumentError(f"block_length must be greater than zero, got {block_length}.")
        self._cycle, self._block = int(cycle_length), int(block_length)
        if (fixed_cycle and num_parallel_calls is not None and num_parallel_calls != AUTOTUNE
                and num_parallel_calls > self._cycle):  # TensorFlow's check, in its words
            raise errors.InvalidArgumentError(
                "If `cycle_length` is set to a fixed value, `num_parallel_calls` must be either `tf.data.AUTOTUNE` "
                f"or a value less than or equal to `cycle_length`. However, `num_parallel_calls` is "
                f"{num_parallel_calls} and `cycle_length` is {self._cycle}")
        self._parallel = autotune_parallelism(num_parallel_calls) if num_parallel_calls else 1
        # TensorFlow's parallel interleave (any num_parallel_calls) knows an endless input makes an
        # endless output; its sequential interleave and flat_map do not say.
        self._parallel_op = num_parallel_calls is not None and name == "interleave"
        self._where = f"Dataset.{name}(fn={fn_name(fn)})"
        self._name = name

    def _cardinality(self) -> int:
        # TensorFlow's parallel interleave: an endless input makes an endless output; otherwise
        # how many elements the opened datasets hold is known only by opening them.
        if self._parallel_op and self._parent._cardinality() == INFINITE_CARDINALITY:
            return INFINITE_CARDINALITY
        return UNKNOWN_CARDINALITY

    def _open(self, element: Any) -> Dataset:
        out = call_fn(self._call, element, self._where)
        if not isinstance(out, Dataset):
            raise TypeError(f"in {self._where}: `map_func` must return a `Dataset` object, got {type(out).__name__}")
        return out

    def _compute_spec(self) -> Any:
        if self._parent._iteration_consumes():
            return structure.UNKNOWN_SPEC  # never take from a queue or run a generator to look
        with spec_sample(self._parent, 64) as elements:
            for e in elements:
                return self._open(e).element_spec
        # No element to look at: when the input's elements are datasets (windows), trace map_func
        # on empty datasets of their specs, as TensorFlow traces it on the input's spec.
        spec = self._parent.element_spec
        leaves = structure.flatten(spec)
        if leaves and all(isinstance(s, structure.DatasetSpec) and s.shape == () for s in leaves):
            from .sources import ListDataset

            empty = structure.pack_as(spec, [ListDataset([], spec=s.element_spec) for s in leaves])
            try:
                return self._open(empty).element_spec
            except Exception:  # noqa: BLE001 - a function that needs elements: known by iterating
                return structure.UNKNOWN_SPEC
        return structure.UNKNOWN_SPEC

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _InterleaveIterator(self, self._parent._make_iter(ctx), ctx)


class _Slot:
    """One open input element of the cycle: its iterator and (in parallel mode) read-ahead.

    Parallel mode opens inputs ahead of the cycle; an input that failed to open (its input
    element or its function raised) holds the error as a slot without an iterator (``it`` None),
    raised when the cycle reaches it -- where the sequential algorithm would have opened it."""

    __slots__ = ("element", "it", "buf", "fut", "ended", "exc")

    def __init__(self, element: Any, it: DatasetIterator | None) -> None:
        self.element = element
        self.it = it
        self.buf: deque = deque()
        self.fut: cf.Future | None = None
        self.ended = False
        self.exc: BaseException | None = None


def _fetch(it: DatasetIterator, n: int) -> tuple[list, bool, BaseException | None]:
    out = []
    try:
        for _ in range(n):
            out.append(next(it))
    except StopIteration:
        return out, True, None
    except Exception as e:  # noqa: BLE001 - handed to the consumer in order
        return out, False, e
    return out, False, None


class _InterleaveIterator(_UnaryIterator):
    """TensorFlow's interleave order (InterleaveDatasetOp::GetNextInternal), optionally with
    each open input read ahead by one block in a thread pool."""

    def __init__(self, ds: InterleaveDataset, parent_it: DatasetIterator, ctx: tuple) -> None:
        super().__init__(parent_it)
        self._ds = ds
        self._ctx = ctx
        self._slots: list[_Slot | None] = [None] * ds._cycle
        self._cycle_index = 0
        self._block_index = 0
        self._end_of_input = False
        self._num_open = 0
        self._pool: cf.ThreadPoolExecutor | None = None

    def _children(self) -> list[DatasetIterator]:
        return [self._parent] + [s.it for s in self._slots if s is not None and s.it is not None]

    def close(self) -> None:
        super().close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None  # a restored state (set_state after close) starts a fresh pool

    def _advance_cycle(self) -> None:
        self._block_index = 0
        self._cycle_index = (self._cycle_index + 1) % self._ds._cycle

    def _schedule(self, slot: _Slot) -> None:
        if self._ds._parallel <= 1 or slot.it is None or slot.fut is not None or slot.ended or slot.exc is not None:
            return
        if _on_background_loop():  # its thread would wait for a worker that may need the loop
            return
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(self._ds._parallel, thread_name_prefix="pipeline-interleave")
            weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        slot.fut = self._pool.submit(_fetch, slot.it, self._ds._block)

    def _settle(self, slot: _Slot) -> None:
        """Waits for the slot's read-ahead and moves its results into the slot."""
        if slot.fut is None:
            return
        result = slot.fut.result()
        slot.fut = None
        self._apply(slot, result)

    @staticmethod
    def _apply(slot: _Slot, result: tuple[list, bool, BaseException | None]) -> None:
        out, ended, exc = result
        slot.buf.extend(out)
        slot.ended = slot.ended or ended
        slot.exc = exc

    def _slot_next(self, slot: _Slot) -> Any:
        assert slot.it is not None
        if self._ds._parallel <= 1:
            return next(slot.it)
        if not slot.buf:
            if slot.exc is None and not slot.ended:
                if slot.fut is None and _on_background_loop():
                    self._apply(slot, _fetch(slot.it, 1))  # no read-ahead on the loop's thread
                else:
                    self._schedule(slot)
            self._settle(slot)
        if slot.buf:
            e = slot.buf.popleft()
            if not slot.buf:
                self._schedule(slot)
            return e
        if slot.exc is not None:
            exc, slot.exc = slot.exc, None
            raise exc
        raise StopIteration

    def _open(self, element: Any) -> _Slot:
        it = self._ds._open(element)._make_iter(self._ctx)
        slot = _Slot(element, it)
        self._schedule(slot)
        return slot

    def _open_ahead(self) -> None:
        """Parallel mode: fill every empty slot now, in the order the cycle will visit them.

        The sequential algorithm opens the next input at the first empty slot the cycle reaches;
        filling empty slots in visiting order assigns each input to that same slot, so the
        output order is unchanged while all open inputs read ahead concurrently."""
        n = self._ds._cycle
        for k in range(n):
            if self._end_of_input:
                return
            idx = (self._cycle_index + k) % n
            held = self._slots[idx]
            if held is not None and held.it is None:
                return  # after this error, the next input goes into this slot
            if held is None:
                try:
                    element = next(self._parent)
                except StopIteration:
                    self._end_of_input = True
                    return
                except Exception as exc:  # noqa: BLE001 - raised when the cycle gets here
                    self._hold_error(idx, None, exc)
                    return
                try:
                    self._slots[idx] = self._open(element)
                except Exception as exc:  # noqa: BLE001 - raised when the cycle gets here
                    self._hold_error(idx, element, exc)
                    return
                self._num_open += 1

    def _hold_error(self, idx: int, element: Any, exc: BaseException) -> None:
        """Parks an input's error in its slot; opening ahead stops there, as after that error the
        sequential algorithm takes the next input into this same slot."""
        slot = _Slot(element, None)
        slot.exc = exc
        self._slots[idx] = slot
        self._num_open += 1

    def _raise_held(self, slot: _Slot) -> None:
        self._slots[self._cycle_index] = None
        self._num_open -= 1
        assert slot.exc is not None
        raise slot.exc

    def __next__(self) -> Any:
        ds = self._ds
        if ds._parallel > 1 and not self._end_of_input:
            self._open_ahead()
        while not self._end_of_input or self._num_open > 0:
            slot = self._slots[self._cycle_index]
            if slot is not None:
                if slot.it is None:
                    self._raise_held(slot)
                try:
                    e = self._slot_next(slot)
                except StopIteration:
                    assert slot.it is not None
                    slot.it.close()
                    self._slots[self._cycle_index] = None
                    self._num_open -= 1
                    self._advance_cycle()
                    continue
                self._block_index += 1
                if self._block_index == ds._block:
                    self._advance_cycle()
                return e
            if not self._end_of_input:
                try:
                    element = next(self._parent)
                except StopIteration:
                    self._end_of_input = True
                    continue
                self._slots[self._cycle_index] = self._open(element)
                self._num_open += 1
            else:
                self._advance_cycle()
        raise StopIteration

    def _own_state(self) -> dict:
        slots: list[dict[str, Any] | None] = []
        for s in self._slots:
            if s is None:
                slots.append(None)
                continue
            if s.it is None:
                assert s.exc is not None
                slots.append({"failed": structure.encode(s.exc)})
                continue
            self._settle(s)
            slots.append(
                {
                    "element": structure.encode(s.element),
                    "state": s.it.get_state(),
                    "buf": structure.encode(list(s.buf)),
                    "ended": s.ended,
                    "exc": None if s.exc is None else structure.encode(s.exc),
                }
            )
        return {
            "cycle_index": self._cycle_index,
            "block_index": self._block_index,
            "end_of_input": self._end_of_input,
            "num_open": self._num_open,
            "slots": slots,
        }

    def _set_own_state(self, state: dict) -> None:
        for s in self._slots:
            if s is not None and s.it is not None:
                s.it.close()
        self._cycle_index = int(state["cycle_index"])
        self._block_index = int(state["block_index"])
        self._end_of_input = bool(state["end_of_input"])
        self._num_open = int(state["num_open"])
        self._slots = []
        for s in state["slots"]:
            if s is None:
                self._slots.append(None)
                continue
            if "failed" in s:
                held = _Slot(None, None)
                held.exc = structure.decode(s["failed"])
                self._slots.append(held)
                continue
            element = structure.decode(s["element"])
            it = self._ds._open(element)._make_iter(self._ctx)
            it.set_state(s["state"])
            slot = _Slot(element, it)
            slot.buf.extend(structure.decode(s["buf"]))
            slot.ended = bool(s["ended"])
            slot.exc = None if s["exc"] is None else structure.decode(s["exc"])
            self._slots.append(slot)


# --------------------------------------------------------------------------- prefetch
class PrefetchDataset(_Unary):
    """``ds.prefetch(buffer_size)``: a background thread keeps a buffer filled."""

    def __init__(self, parent: Dataset, buffer_size: int | None) -> None:
        super().__init__(parent)
        # As tf.data: None means AUTOTUNE, 0 no prefetching, other negatives are refused.
        buffer_size = AUTOTUNE if buffer_size is None else int(buffer_size)
        if buffer_size == AUTOTUNE:
            buffer_size = 4
        if buffer_size < 0:
            raise errors.InvalidArgumentError(f"buffer_size must be >= 0 or AUTOTUNE (-1), got {buffer_size}")
        self._size = buffer_size

    def _cardinality(self) -> int:
        return self._parent._cardinality()

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        parent = self._parent._make_iter(ctx)
        if self._size == 0:
            return parent
        return _PrefetchIterator(parent, self._size)


class _PrefetchCore:
    """What the producer thread shares with the iterator (not the iterator itself, so that a
    dropped iterator is collected and stops its thread)."""

    def __init__(self, parent: DatasetIterator, size: int) -> None:
        self.parent = parent
        self.size = size
        self.buf: deque = deque()  # ("v", element) | ("err", exception) | ("end", None)
        self.cv = threading.Condition()
        self.parent_lock = threading.Lock()  # held while the producer advances the input
        self.stop = False
        self.finished = False

    def run(self) -> None:
        while True:
            with self.cv:
                while len(self.buf) >= self.size and not self.stop:
                    self.cv.wait()
                if self.stop:
                    return
            with self.parent_lock:
                if self.stop:
                    return
                try:
                    item = ("v", next(self.parent))
                except StopIteration:
                    item = ("end", None)
                except Exception as e:  # noqa: BLE001 - delivered in order to the consumer
                    item = ("err", e)
                with self.cv:
                    self.buf.append(item)
                    self.cv.notify_all()
            if item[0] == "end":
                return

    def halt(self) -> None:
        with self.cv:
            self.stop = True
            self.cv.notify_all()


class _PrefetchIterator(DatasetIterator):
    def __init__(self, parent_it: DatasetIterator, size: int) -> None:
        self._core = _PrefetchCore(parent_it, size)
        self._thread: threading.Thread | None = None
        weakref.finalize(self, self._core.halt)

    def _children(self) -> list[DatasetIterator]:
        return [self._core.parent]

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._core.run, name="pipeline-prefetch", daemon=True)
        self._thread.start()

    def _next_inline(self) -> Any:
        """On the background loop's thread: no producer thread (it could need the blocked loop)."""
        core = self._core
        if core.buf:
            kind, value = core.buf[0]
            if kind == "end":
                raise StopIteration
            core.buf.popleft()
            if kind == "err":
                raise value
            return value
        try:
            return next(core.parent)
        except StopIteration:
            core.buf.append(("end", None))
            raise

    def __next__(self) -> Any:
        if self._thread is None:
            if _on_background_loop():
                return self._next_inline()
            self._start()
        core = self._core
        with core.cv:
            ready = bool(core.buf)
        if not ready and core.parent_lock.acquire(blocking=False):
            # The buffer is empty and the producer is idle: produce this element here instead of
            # waiting for a thread switch. Order is kept: nothing is buffered ahead of it.
            try:
                with core.cv:
                    ready = bool(core.buf)
                if not ready:
                    try:
                        return next(core.parent)
                    except StopIteration:
                        with core.cv:
                            core.buf.append(("end", None))
                            core.cv.notify_all()
                        raise
            finally:
                core.parent_lock.release()
        with core.cv:
            while not core.buf:
                core.cv.wait()
            kind, value = core.buf[0]
            if kind != "end":  # the end marker stays: later calls see the end again
                core.buf.popleft()
                core.cv.notify_all()
        if kind == "end":
            raise StopIteration
        if kind == "err":
            raise value
        return value

    def close(self) -> None:
        self._core.halt()
        if self._thread is not None:
            self._thread.join()
        super().close()

    def get_state(self) -> dict:
        core = self._core
        with core.parent_lock, core.cv:
            items = list(core.buf)
            child = core.parent.get_state()
        return self._state(
            child=child,
            buffer=[
                {"kind": k, "value": None if v is None else structure.encode(v)} for k, v in items
            ],
        )

    def set_state(self, state: dict) -> None:
        self._check(state)
        core = self._core
        if self._thread is not None:  # stop the producer before rewinding its input
            core.halt()
            self._thread.join()
            self._core = core = _PrefetchCore(core.parent, core.size)
            weakref.finalize(self, core.halt)
            self._thread = None
        core.parent.set_state(state["child"])
        core.buf.extend(
            (b["kind"], None if b["value"] is None else structure.decode(b["value"])) for b in state["buffer"]
        )
