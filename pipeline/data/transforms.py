"""Element-order transformations: repeat, take, skip, shard, enumerate, filter, scan,
ignore_errors, unique and cache."""

from __future__ import annotations

import json
import logging
import operator
import os
import threading
from typing import Any, Callable

import numpy as np

from queueserver import errors

from . import structure
from .base import (
    INFINITE_CARDINALITY,
    UNKNOWN_CARDINALITY,
    Dataset,
    DatasetIterator,
    _Unary,
    _UnaryIterator,
    call_fn,
    fn_name,
)
from .structure import Chunk, TensorSpec

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- repeat
class RepeatDataset(_Unary):
    """``ds.repeat(count)``; each epoch is a fresh pass with its own seed path."""

    def __init__(self, parent: Dataset, count: int | None) -> None:
        super().__init__(parent)
        self._count = -1 if count is None else int(count)

    def _cardinality(self) -> int:
        n = self._parent._cardinality()
        if self._count == 0 or n == 0:
            return 0
        if self._count < 0:
            # TensorFlow's rule: endless unless the input is known to be empty (an input of
            # unknown size counts as endless too).
            return INFINITE_CARDINALITY
        return n * self._count if n >= 0 else n

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _RepeatIterator(self, ctx)


class _RepeatIterator(DatasetIterator):
    def __init__(self, ds: RepeatDataset, ctx: tuple) -> None:
        self._ds = ds
        self._ctx = ctx
        self._epoch = 0
        self._produced = False  # an empty epoch ends an endless repeat instead of spinning
        self._it: DatasetIterator | None = ds._parent._make_iter(ctx + (0,)) if ds._count != 0 else None
        self.chunked = bool(self._it is not None and self._it.chunked)

    def _next_epoch(self) -> bool:
        ds = self._ds
        assert self._it is not None
        self._it.close()
        self._epoch += 1
        if (0 <= ds._count <= self._epoch) or not self._produced:
            self._it = None
            return False
        self._produced = False
        self._it = ds._parent._make_iter(self._ctx + (self._epoch,))
        return True

    def __next__(self) -> Any:
        while self._it is not None:
            try:
                e = next(self._it)
            except StopIteration:
                if not self._next_epoch():
                    break
                continue
            self._produced = True
            return e
        raise StopIteration

    def next_chunk(self, max_n: int) -> Chunk | None:
        while self._it is not None:
            c = self._it.next_chunk(max_n)
            if c is None:
                if not self._next_epoch():
                    break
                continue
            self._produced = True
            return c
        return None

    def _children(self) -> list[DatasetIterator]:
        return [self._it] if self._it is not None else []

    def get_state(self) -> dict:
        return self._state(
            epoch=self._epoch,
            produced=self._produced,
            child=None if self._it is None else self._it.get_state(),
        )

    def set_state(self, state: dict) -> None:
        self._check(state)
        self._epoch = int(state["epoch"])
        self._produced = bool(state["produced"])
        if self._it is not None:
            self._it.close()
        if state["child"] is None:
            self._it = None
        else:
            self._it = self._ds._parent._make_iter(self._ctx + (self._epoch,))
            self._it.set_state(state["child"])


# --------------------------------------------------------------------------- take / skip
class TakeDataset(_Unary):
    """``ds.take(count)``."""

    def __init__(self, parent: Dataset, count: int) -> None:
        super().__init__(parent)
        self._count = int(count)

    def _cardinality(self) -> int:
        n = self._parent._cardinality()
        if self._count < 0:
            return n
        if n == INFINITE_CARDINALITY:
            return self._count
        return min(n, self._count) if n >= 0 else UNKNOWN_CARDINALITY

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _TakeIterator(self._parent._make_iter(ctx), self._count)


class _TakeIterator(_UnaryIterator):
    def __init__(self, parent_it: DatasetIterator, count: int) -> None:
        super().__init__(parent_it)
        self._left = count  # < 0: everything
        self.chunked = parent_it.chunked

    def __next__(self) -> Any:
        if self._left == 0:
            raise StopIteration
        e = next(self._parent)
        if self._left > 0:
            self._left -= 1
            if self._left == 0:
                # Done with the input: release it now (a generator's resources, a file), as
                # TensorFlow does when take ends, not when this iterator is collected.
                self._parent.close()
        return e

    def next_chunk(self, max_n: int) -> Chunk | None:
        if self._left == 0:
            return None
        c = self._parent.next_chunk(max_n if self._left < 0 else min(max_n, self._left))
        if c is not None and self._left > 0:
            self._left -= c.n
        return c

    def _own_state(self) -> dict:
        return {"left": self._left}

    def _set_own_state(self, state: dict) -> None:
        self._left = int(state["left"])


class SkipDataset(_Unary):
    """``ds.skip(count)``."""

    def __init__(self, parent: Dataset, count: int) -> None:
        super().__init__(parent)
        self._count = int(count)

    def _cardinality(self) -> int:
        n = self._parent._cardinality()
        if n < 0:
            return n
        return 0 if self._count < 0 else max(0, n - self._count)

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        # Skipping everything of an endless input leaves nothing, at once (as TensorFlow's; its
        # cardinality stays TensorFlow's too: the input's).
        endless = self._count < 0 and self._parent._cardinality() == INFINITE_CARDINALITY
        return _SkipIterator(self._parent._make_iter(ctx), self._count, endless)


class _SkipIterator(_UnaryIterator):
    def __init__(self, parent_it: DatasetIterator, count: int, endless: bool = False) -> None:
        super().__init__(parent_it)
        self._to_skip = count  # < 0: skip everything
        self._endless = endless  # skipping everything of an endless input: nothing is left
        self.chunked = parent_it.chunked

    def _skip(self) -> bool:
        """Drops the skipped prefix in blocks; False when the input ended inside it."""
        if self._endless:
            return False
        while self._to_skip != 0:
            if self._parent.chunked:
                c = self._parent.next_chunk(self._to_skip if self._to_skip > 0 else 1 << 16)
                if c is None:
                    return False
                n = c.n
            else:
                try:
                    next(self._parent)
                except StopIteration:
                    return False
                n = 1
            if self._to_skip > 0:
                self._to_skip -= n
        return True

    def __next__(self) -> Any:
        if self._to_skip and not self._skip():
            raise StopIteration
        return next(self._parent)

    def next_chunk(self, max_n: int) -> Chunk | None:
        if self._to_skip and not self._skip():
            return None
        return self._parent.next_chunk(max_n)

    def _own_state(self) -> dict:
        return {"to_skip": self._to_skip}

    def _set_own_state(self, state: dict) -> None:
        self._to_skip = int(state["to_skip"])


# --------------------------------------------------------------------------- shard
class ShardDataset(_Unary):
    """``ds.shard(num_shards, index)``: elements whose position % num_shards == index."""

    def __init__(self, parent: Dataset, num_shards: int, index: int) -> None:
        super().__init__(parent)
        num_shards, index = int(num_shards), int(index)
        if num_shards < 1:
            raise errors.InvalidArgumentError(f"Number of shards must be positive, got {num_shards}.")
        if not 0 <= index < num_shards:
            raise errors.InvalidArgumentError(
                f"Index must be between 0 and {num_shards - 1} (currently index = {index})."
            )
        self._n, self._index = num_shards, index

    def _cardinality(self) -> int:
        n = self._parent._cardinality()
        if n < 0:
            return n
        return n // self._n + (1 if n % self._n > self._index else 0)

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _ShardIterator(self, self._parent._make_iter(ctx))


class _ShardIterator(_UnaryIterator):
    def __init__(self, ds: ShardDataset, parent_it: DatasetIterator) -> None:
        super().__init__(parent_it)
        self._n, self._index = ds._n, ds._index
        self._pos = 0  # input elements consumed
        self.chunked = parent_it.chunked

    def __next__(self) -> Any:
        while True:
            e = next(self._parent)
            pos = self._pos
            self._pos += 1
            if pos % self._n == self._index:
                return e

    def next_chunk(self, max_n: int) -> Chunk | None:
        while True:
            # Ask for exactly the inputs up to and including the max_n-th selected element, so
            # the input never runs ahead of what element-wise iteration would have consumed.
            offset = (self._index - self._pos) % self._n
            c = self._parent.next_chunk(offset + (max_n - 1) * self._n + 1)
            if c is None:
                return None
            first = (self._index - self._pos) % self._n
            self._pos += c.n
            if first < c.n:
                idx = np.arange(first, c.n, self._n)
                return c.gather(idx) if self._n > 1 else c

    def _own_state(self) -> dict:
        return {"pos": self._pos}

    def _set_own_state(self, state: dict) -> None:
        self._pos = int(state["pos"])


# --------------------------------------------------------------------------- enumerate
class EnumerateDataset(_Unary):
    """``ds.enumerate(start)``: ``(int64 index, element)`` pairs."""

    def __init__(self, parent: Dataset, start: int) -> None:
        super().__init__(parent)
        if start is None:  # TensorFlow's class for a None it cannot convert
            raise ValueError("Attempt to convert a value (None) with an unsupported type (<class 'NoneType'>) to a Tensor.")
        if isinstance(start, np.floating) and float(start).is_integer():
            start = int(start)  # as TensorFlow converts a NumPy float of integral value (not 1.5 or 2.0)
        try:
            self._start = operator.index(start)
        except TypeError:
            raise TypeError(f"Cannot convert {start!r} to EagerTensor of dtype int64") from None

    def _compute_spec(self) -> Any:
        return (TensorSpec((), np.int64), self._parent.element_spec)

    def _cardinality(self) -> int:
        return self._parent._cardinality()

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _EnumerateIterator(self._parent._make_iter(ctx), self._start)


class _EnumerateIterator(_UnaryIterator):
    def __init__(self, parent_it: DatasetIterator, start: int) -> None:
        super().__init__(parent_it)
        self._i = start
        self.chunked = parent_it.chunked

    def __next__(self) -> Any:
        e = next(self._parent)
        self._i += 1
        return (np.int64(self._i - 1), e)

    def next_chunk(self, max_n: int) -> Chunk | None:
        c = self._parent.next_chunk(max_n)
        if c is None:
            return None
        idx = np.arange(self._i, self._i + c.n, dtype=np.int64)
        self._i += c.n
        return Chunk(c.n, (idx, c.data))

    def _own_state(self) -> dict:
        return {"i": self._i}

    def _set_own_state(self, state: dict) -> None:
        self._i = int(state["i"])


# --------------------------------------------------------------------------- filter
class FilterDataset(_Unary):
    """``ds.filter(predicate)``."""

    def __init__(self, parent: Dataset, predicate: Callable) -> None:
        super().__init__(parent)
        if not callable(predicate):
            raise TypeError("`predicate` must be callable")
        self._pred = predicate
        self._where = f"Dataset.filter(predicate={fn_name(predicate)})"

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _FilterIterator(self, self._parent._make_iter(ctx))


class _FilterIterator(_UnaryIterator):
    def __init__(self, ds: FilterDataset, parent_it: DatasetIterator) -> None:
        super().__init__(parent_it)
        self._ds = ds

    def __next__(self) -> Any:
        ds = self._ds
        while True:
            e = next(self._parent)
            keep = call_fn(ds._pred, e, ds._where)
            if np.ndim(keep) != 0 or np.asarray(keep).dtype != np.bool_:
                raise errors.InvalidArgumentError(
                    f"in {ds._where}: the predicate must return a scalar boolean, got "
                    f"{structure.spec_of(keep)!r}"
                )
            if keep:
                return e


# --------------------------------------------------------------------------- take_while
class TakeWhileDataset(_Unary):
    """``ds.take_while(predicate)``: elements until the first for which ``predicate`` is false."""

    def __init__(self, parent: Dataset, predicate: Callable) -> None:
        super().__init__(parent)
        if not callable(predicate):
            raise TypeError("`predicate` must be callable")
        self._pred = predicate
        self._where = f"Dataset.take_while(predicate={fn_name(predicate)})"

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _TakeWhileIterator(self, self._parent._make_iter(ctx))


class _TakeWhileIterator(_UnaryIterator):
    def __init__(self, ds: TakeWhileDataset, parent_it: DatasetIterator) -> None:
        super().__init__(parent_it)
        self._ds = ds
        self._ended = False

    def __next__(self) -> Any:
        if self._ended:
            raise StopIteration
        ds = self._ds
        e = next(self._parent)
        keep = call_fn(ds._pred, e, ds._where)
        if np.ndim(keep) != 0 or np.asarray(keep).dtype != np.bool_:
            raise errors.InvalidArgumentError(
                f"in {ds._where}: `predicate` must return a scalar boolean tensor, got {structure.spec_of(keep)!r}")
        if not keep:
            self._ended = True
            raise StopIteration
        return e

    def _own_state(self) -> dict:
        return {"ended": self._ended}

    def _set_own_state(self, state: dict) -> None:
        self._ended = bool(state["ended"])


# --------------------------------------------------------------------------- group_by_window
class GroupByWindowDataset(_Unary):
    """``ds.group_by_window(key_func, reduce_func, window_size)``: elements grouped by key in
    windows; each full window (and, at the end, each partial one) goes through ``reduce_func``."""

    def __init__(self, parent: Dataset, key_func: Callable, reduce_func: Callable, window_size: int | None,
                 window_size_func: Callable | None) -> None:
        super().__init__(parent)
        if (window_size is None) == (window_size_func is None):
            raise ValueError("Either the `window_size` argument or the `window_size_func` argument must be specified.")
        if window_size is not None and int(window_size) < 1:
            # TensorFlow's words; refused when built rather than at the first element.
            raise errors.InvalidArgumentError(f"Window size must be greater than zero, but got {window_size}.")
        self._key, self._reduce = key_func, reduce_func
        self._size, self._size_fn = window_size, window_size_func
        self._where = f"Dataset.group_by_window(key_func={fn_name(key_func)})"

    def _window(self, elements: list) -> Dataset:
        """A window: a dataset of ``elements`` whose spec is the input's, as TensorFlow's windows
        (so a padded_batch of it pads unknown dimensions the same way for every window)."""
        from .sources import ListDataset

        spec = self._parent.element_spec
        return ListDataset(elements, spec=None if isinstance(spec, structure.UnknownSpec) else spec)

    def _compute_spec(self) -> Any:
        # As TensorFlow traces reduce_func on a window of the input's spec: the spec of what
        # reduce_func makes of an empty window (nothing is read or consumed to find it). TensorFlow's
        # key is symbolic; here two keys are tried and what differs between them becomes None.
        spec = None
        for key in (0, 1):
            try:
                out = self._reduce(np.int64(key), self._window([]))
                if not isinstance(out, Dataset):
                    continue
                s = out.element_spec
                spec = s if spec is None else structure.relax(spec, s)
            except Exception:  # noqa: BLE001 - a function that needs real elements: known by iterating
                continue
        return structure.UNKNOWN_SPEC if spec is None else spec

    def _cardinality(self) -> int:
        # TensorFlow's: an endless input gives endless windows; otherwise known only by grouping.
        if self._parent._cardinality() == INFINITE_CARDINALITY:
            return INFINITE_CARDINALITY
        return UNKNOWN_CARDINALITY

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _GroupByWindowIterator(self, self._parent._make_iter(ctx))


class _GroupByWindowIterator(_UnaryIterator):
    def __init__(self, ds: GroupByWindowDataset, parent_it: DatasetIterator) -> None:
        super().__init__(parent_it)
        self._ds = ds
        self._groups: dict[int, list] = {}  # key -> the elements of its open window
        self._sizes: dict[int, int] = {}
        self._current: DatasetIterator | None = None  # the reduced window being emitted
        self._current_window: tuple[int, list] | None = None  # its key and elements (for the state)
        self._ended = False

    def _key_of(self, e: Any) -> int:
        key = call_fn(self._ds._key, e, self._ds._where)
        if np.ndim(key) != 0 or np.asarray(key).dtype != np.int64:
            raise errors.InvalidArgumentError(
                f"in {self._ds._where}: `key_func` must return a single tf.int64 scalar tensor, got "
                f"{structure.spec_of(key)!r}")
        return int(key)

    def _window_size(self, key: int) -> int:
        ds = self._ds
        if ds._size is not None:
            return int(ds._size)
        size_fn = ds._size_fn
        assert size_fn is not None  # checked at construction: one of window_size, window_size_func
        size = int(call_fn(size_fn, np.int64(key), ds._where))
        if size < 1:
            raise errors.InvalidArgumentError(f"Window size must be greater than zero, but got {size}.")
        return size

    def _reduce(self, key: int, elements: list, state: dict | None = None) -> DatasetIterator:
        out = call_fn(self._ds._reduce, (np.int64(key), self._ds._window(elements)), self._ds._where)
        if not isinstance(out, Dataset):
            raise TypeError(f"in {self._ds._where}: `reduce_func` must return a `Dataset` object")
        self._current_window = (key, elements)
        return out.iterator(state=state)

    def __next__(self) -> Any:
        while True:
            if self._current is not None:
                try:
                    return next(self._current)
                except StopIteration:
                    self._current = None
                    self._current_window = None
            if self._ended:
                if not self._groups:
                    raise StopIteration
                key = min(self._groups)  # at the end, the open windows in key order, as TensorFlow
                self._current = self._reduce(key, self._groups.pop(key))
                continue
            try:
                e = next(self._parent)
            except StopIteration:
                self._ended = True
                continue
            key = self._key_of(e)
            if key not in self._sizes:
                self._sizes[key] = self._window_size(key)
            window = self._groups.setdefault(key, [])
            window.append(e)
            if len(window) >= self._sizes[key]:
                self._current = self._reduce(key, self._groups.pop(key))

    def _children(self) -> list[DatasetIterator]:
        return [self._parent] + ([self._current] if self._current is not None else [])

    def _own_state(self) -> dict:
        # The open windows' elements, and the window being emitted with its reduced iterator's
        # position: restoring calls reduce_func on the same window again (as deterministic as
        # reduce_func is) and resumes its iterator there.
        current = None
        if self._current is not None and self._current_window is not None:
            key, elements = self._current_window
            current = {"key": key, "window": structure.encode(elements), "state": self._current.get_state()}
        return {
            "groups": [[k, structure.encode(v)] for k, v in self._groups.items()],
            "sizes": [[k, n] for k, n in self._sizes.items()],
            "current": current,
            "ended": self._ended,
        }

    def _set_own_state(self, state: dict) -> None:
        self._groups = {int(k): structure.decode(v) for k, v in state["groups"]}
        self._sizes = {int(k): int(n) for k, n in state["sizes"]}
        self._ended = bool(state["ended"])
        if self._current is not None:
            self._current.close()
        self._current, self._current_window = None, None
        current = state["current"]
        if current is not None:
            self._current = self._reduce(int(current["key"]), structure.decode(current["window"]), current["state"])


# --------------------------------------------------------------------------- bucket_by_sequence_length
def bucket_by_sequence_length(ds: Dataset, element_length_func: Callable, bucket_boundaries: Any,
                              bucket_batch_sizes: Any, padded_shapes: Any, padding_values: Any,
                              pad_to_bucket_boundary: bool, no_padding: bool, drop_remainder: bool) -> Dataset:
    """``ds.bucket_by_sequence_length(...)``: group_by_window keyed by the length's bucket, each
    window batched by its bucket's batch size (TensorFlow's construction, step for step)."""
    boundaries = [int(b) for b in bucket_boundaries]
    batch_sizes = [int(b) for b in bucket_batch_sizes]
    if len(batch_sizes) != len(boundaries) + 1:
        raise ValueError("len(bucket_batch_sizes) must equal len(bucket_boundaries) + 1")
    if any(b < 1 for b in batch_sizes):
        raise ValueError(f"bucket_batch_sizes must be positive, got {batch_sizes}")
    if boundaries != sorted(boundaries):
        raise ValueError(f"bucket_boundaries must be sorted in increasing order, got {boundaries}")
    where = f"Dataset.bucket_by_sequence_length(element_length_func={fn_name(element_length_func)})"
    lows = [np.iinfo(np.int32).min] + boundaries
    highs = boundaries + [np.iinfo(np.int32).max]

    def element_to_bucket_id(*element: Any) -> np.int64:
        length = int(call_fn(element_length_func, element if len(element) > 1 else element[0], where))
        return np.int64(next(i for i, (lo, hi) in enumerate(zip(lows, highs)) if lo <= length < hi))

    def window_size_fn(bucket_id: Any) -> np.int64:
        return np.int64(batch_sizes[int(bucket_id)])

    def batching_fn(bucket_id: Any, window: Dataset) -> Dataset:
        batch_size = batch_sizes[int(bucket_id)]
        if no_padding:
            return window.batch(batch_size, drop_remainder=drop_remainder)
        filler = None
        if pad_to_bucket_boundary:
            if int(bucket_id) >= len(batch_sizes) - 1:
                raise errors.InvalidArgumentError(
                    "When pad_to_bucket_boundary=True, elements must have length < max(bucket_boundaries).")
            filler = boundaries[int(bucket_id)] - 1
        shapes = padded_shapes
        if shapes is None:
            shapes = structure.map_structure(
                lambda s: None if s.shape is None else [filler if d is None else d for d in s.shape],
                window.element_spec)
        elif filler is not None:
            shapes = _fill_unknown(window.element_spec, shapes, filler)
        return window.padded_batch(batch_size, shapes, padding_values, drop_remainder=drop_remainder)

    return ds.group_by_window(key_func=element_to_bucket_id, reduce_func=batching_fn,
                              window_size_func=window_size_fn)


def _fill_unknown(spec: Any, shapes: Any, filler: int) -> Any:
    """Given padded shapes with their unknown (None / -1) dimensions set to ``filler``."""
    if isinstance(spec, tuple):
        return tuple(_fill_unknown(s, p, filler) for s, p in zip(spec, shapes, strict=True))
    if isinstance(spec, dict):
        return {k: _fill_unknown(spec[k], shapes[k], filler) for k in spec}
    if shapes is None:
        return None if spec.shape is None else [filler if d is None else d for d in spec.shape]
    return [filler if d is None or int(d) < 0 else int(d) for d in np.asarray(shapes, dtype=object).reshape(-1)]


# --------------------------------------------------------------------------- scan
class ScanDataset(_Unary):
    """``ds.scan(initial_state, scan_func)``."""

    def __init__(self, parent: Dataset, initial_state: Any, scan_func: Callable) -> None:
        super().__init__(parent)
        self._init = structure.normalize(initial_state)
        self._fn = scan_func
        self._where = f"Dataset.scan(scan_func={fn_name(scan_func)})"

    def _compute_spec(self) -> Any:
        from .sources import infer_spec

        return infer_spec(self)

    def _cardinality(self) -> int:
        return self._parent._cardinality()

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _ScanIterator(self, self._parent._make_iter(ctx))


class _ScanIterator(_UnaryIterator):
    def __init__(self, ds: ScanDataset, parent_it: DatasetIterator) -> None:
        super().__init__(parent_it)
        self._ds = ds
        self._carry = ds._init

    def __next__(self) -> Any:
        e = next(self._parent)
        out = call_fn(self._ds._fn, (self._carry, e), self._ds._where)
        # TensorFlow checks these when it traces scan_func at construction; a Python function
        # cannot be traced, so they are checked at each call, with TensorFlow's classes and words.
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(f"in {self._ds._where}: `scan_func` should return a pair consisting of new state and "
                            f"the output value, got {structure.spec_of(out)!r}")
        _check_new_state(self._ds._init, out[0], self._ds._where)
        self._carry = out[0]
        return out[1]

    def _own_state(self) -> dict:
        return {"carry": structure.encode(self._carry)}

    def _set_own_state(self, state: dict) -> None:
        self._carry = structure.decode(state["carry"])


def _check_new_state(initial: Any, new: Any, where: str) -> None:
    """A scan state keeps its structure and dtypes (shapes may change), as in TensorFlow."""
    if not structure.same_structure(initial, new):
        raise TypeError(f"in {where}: The element structure for the new state must match the initial state. "
                        f"Expected {structure.spec_of(initial)!r}; got {structure.spec_of(new)!r}.")
    want = [getattr(s, "dtype_name", None) for s in structure.flatten(structure.spec_of(initial))]
    got = [getattr(s, "dtype_name", None) for s in structure.flatten(structure.spec_of(new))]
    if want != got:
        raise TypeError(f"in {where}: The element types for the new state must match the initial state. "
                        f"Expected {want}; got {got}.")


# --------------------------------------------------------------------------- ignore_errors
class IgnoreErrorsDataset(_Unary):
    """``ds.ignore_errors()``: drops elements whose production raised."""

    def __init__(self, parent: Dataset, log_warning: bool) -> None:
        super().__init__(parent)
        self._log = log_warning

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _IgnoreErrorsIterator(self._parent._make_iter(ctx), self._log)


class _IgnoreErrorsIterator(_UnaryIterator):
    def __init__(self, parent_it: DatasetIterator, log_warning: bool) -> None:
        super().__init__(parent_it)
        self._log = log_warning

    def __next__(self) -> Any:
        while True:
            try:
                return next(self._parent)
            except StopIteration:
                raise
            except Exception as e:  # noqa: BLE001 - dropping failed elements is the point
                if self._log:
                    log.warning("Dataset.ignore_errors dropped an element: %s", e)


# --------------------------------------------------------------------------- unique
class UniqueDataset(_Unary):
    """``ds.unique()``: each distinct element once, in the order of first appearance. As TensorFlow's:
    single-component elements of int32, int64 or string, of any shape (vectors compare whole,
    shape included)."""

    _SUPPORTED = ("int32", "int64", "string")

    def __init__(self, parent: Dataset) -> None:
        super().__init__(parent)
        spec = parent.element_spec
        if isinstance(spec, structure.UnknownSpec):
            return  # known only by iterating: the iterator checks the elements themselves
        if not isinstance(spec, TensorSpec):
            raise TypeError(f"Dataset.unique() supports only single-component elements, got {spec!r}")
        if spec.dtype_name not in self._SUPPORTED:
            raise TypeError(f"`tf.data.Dataset.unique` does not support type {spec.dtype_name} -- only "
                            "tf.int32, tf.int64, and tf.string are supported.")

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _UniqueIterator(self._parent._make_iter(ctx))


def _unique_key(e: Any) -> Any:
    """What two equal elements share: the value for scalars, shape and bytes for arrays."""
    if isinstance(e, bytes):
        return e
    arr = np.asarray(e)
    if arr.dtype.name not in ("int32", "int64") and arr.dtype != object:
        raise errors.InvalidArgumentError(f"Dataset.unique() supports int32, int64 and string elements, got {arr.dtype}")
    if arr.ndim == 0:
        return arr.item()
    if arr.dtype == object:
        return (arr.shape, tuple(arr.reshape(-1).tolist()))
    return (arr.shape, arr.dtype.str, arr.tobytes())


class _UniqueIterator(_UnaryIterator):
    def __init__(self, parent_it: DatasetIterator) -> None:
        super().__init__(parent_it)
        self._seen: dict = {}

    def __next__(self) -> Any:
        while True:
            e = next(self._parent)
            key = _unique_key(e)
            if key not in self._seen:
                self._seen[key] = e
                return e

    def _own_state(self) -> dict:
        return {"seen": structure.encode(list(self._seen.values()))}

    def _set_own_state(self, state: dict) -> None:
        vals = structure.decode(state["seen"])
        self._seen = {_unique_key(v): v for v in vals}


# --------------------------------------------------------------------------- cache
class CacheDataset(_Unary):
    """``ds.cache(filename)``: the first complete pass is kept in memory or in a file."""

    def __init__(self, parent: Dataset, filename: str) -> None:
        super().__init__(parent)
        self._filename = os.fspath(filename)
        self._memory: list | None = None
        self._lock = threading.Lock()

    def _cardinality(self) -> int:
        return self._parent._cardinality()

    @property
    def _path(self) -> str:
        return self._filename + ".cache.jsonl"

    def _cached(self) -> Any:
        """The cached elements (a list), a file path, or None when no pass completed yet."""
        if not self._filename:
            return self._memory
        return self._path if os.path.exists(self._path) else None

    def _commit(self, elements: list) -> None:
        with self._lock:
            if not self._filename:
                if self._memory is None:
                    self._memory = elements
                return
            if os.path.exists(self._path):
                return
            tmp = f"{self._path}.tmp-{os.getpid()}-{threading.get_ident()}"
            with open(tmp, "w") as f:
                for e in elements:
                    f.write(json.dumps(structure.encode(e)))
                    f.write("\n")
            os.replace(tmp, self._path)  # atomic: readers never see a partial cache

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _CacheIterator(self, ctx)


class _CacheIterator(DatasetIterator):
    def __init__(self, ds: CacheDataset, ctx: tuple) -> None:
        self._ds = ds
        self._ctx = ctx
        self._i = 0
        self._source = ds._cached()
        self._parent: DatasetIterator | None = None
        self._file: Any = None
        self._written: list | None = None
        self._complete_at = ds._parent._cardinality()  # -1/-2 never match a count
        if self._source is None:
            self._parent = ds._parent._make_iter(ctx)
            self._written = []

    def _read_file_line(self) -> Any:
        if self._file is None:
            self._file = open(self._source)
            for _ in range(self._i):
                self._file.readline()
        line = self._file.readline()
        if not line:
            raise StopIteration
        return structure.decode(json.loads(line))

    def __next__(self) -> Any:
        if self._parent is not None:
            try:
                e = next(self._parent)
            except StopIteration:
                if self._written is not None:
                    self._ds._commit(self._written)
                    self._written = None
                raise
            if self._written is not None:
                self._written.append(e)
                if len(self._written) == self._complete_at:
                    # Every element of an input of known size has been read: the cache is
                    # complete without waiting for the end (TensorFlow's testCacheKnownCardinality).
                    self._ds._commit(self._written)
                    self._written = None
            self._i += 1
            return e
        if isinstance(self._source, list):
            if self._i >= len(self._source):
                raise StopIteration
            self._i += 1
            return self._source[self._i - 1]
        e = self._read_file_line()
        self._i += 1
        return e

    def _children(self) -> list[DatasetIterator]:
        return [self._parent] if self._parent is not None else []

    def close(self) -> None:
        super().close()
        if self._file is not None:
            self._file.close()
            self._file = None

    def get_state(self) -> dict:
        if self._parent is not None:
            return self._state(mode="fill", i=self._i, child=self._parent.get_state())
        return self._state(mode="read", i=self._i)

    def set_state(self, state: dict) -> None:
        self._check(state)
        self._i = int(state["i"])
        if state["mode"] == "read":
            self._source = self._ds._cached()
            if self._source is None:
                # The cache lives in another process's memory (or its file is gone): recompute
                # it from the start, replaying the i elements already delivered.
                self._parent = self._ds._parent._make_iter(self._ctx)
                self._written = []
                for _ in range(self._i):
                    self._written.append(next(self._parent))
                return
            self._parent = None
            return
        if self._parent is None:
            self._parent = self._ds._parent._make_iter(self._ctx)
        self._parent.set_state(state["child"])
        # Elements before the cut are not in the state, so a resumed pass cannot fill the cache.
        self._written = None
