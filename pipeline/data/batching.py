"""Batching transformations: batch, padded_batch, ragged_batch, unbatch and window."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from pipeline.blocks import concat_blocks
from queueserver import errors

from . import structure
from .base import UNKNOWN_CARDINALITY, Dataset, DatasetIterator, _Unary, _UnaryIterator
from .structure import Chunk, DatasetSpec, NoneTensorSpec, RaggedTensor, RaggedTensorSpec, TensorSpec


def _check_batch_size(batch_size: int) -> int:
    batch_size = int(batch_size)
    if batch_size < 1:
        raise errors.InvalidArgumentError(f"batch_size must be greater than zero, got {batch_size}.")
    return batch_size


def _batched_card(n: int, size: int, drop: bool) -> int:
    if n < 0:
        return n
    return n // size if drop else -(-n // size)


class _Batching(_Unary):
    """What every batching transformation shares: a checked batch size and drop_remainder."""

    def __init__(self, parent: Dataset, batch_size: int, drop_remainder: bool) -> None:
        super().__init__(parent)
        self._size = _check_batch_size(batch_size)
        self._drop = bool(drop_remainder)

    def _cardinality(self) -> int:
        return _batched_card(self._parent._cardinality(), self._size, self._drop)


# --------------------------------------------------------------------------- batch
class BatchDataset(_Batching):
    """``ds.batch(batch_size, drop_remainder)``."""

    def _compute_spec(self) -> Any:
        dim = self._size if self._drop else None

        def one(s: Any) -> Any:
            if isinstance(s, TensorSpec):
                return TensorSpec(None if s.shape is None else (dim,) + tuple(s.shape), s.dtype)
            if isinstance(s, NoneTensorSpec):
                return s
            if isinstance(s, DatasetSpec):  # a vector of datasets, as TensorFlow batches them
                return DatasetSpec(s.element_spec, (dim,) + tuple(s.shape))
            raise TypeError(f"cannot batch elements of type {s!r}; use ragged_batch or padded_batch")

        return structure.map_structure(one, self._parent.element_spec)


    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _BatchIterator(self, self._parent._make_iter(ctx))


class _BatchIterator(_UnaryIterator):
    def __init__(self, ds: BatchDataset, parent_it: DatasetIterator) -> None:
        super().__init__(parent_it)
        self._size, self._drop = ds._size, ds._drop
        self._blocks = False

    def enable_blocks(self) -> bool:
        """Build batches as record blocks (:mod:`pipeline.blocks`) for a ``map`` that decodes them.

        Only where a block holds exactly the batch's records: the input is a file dataset read
        one file after another, possibly behind ``skip``/``take`` (which pass its chunks on).
        Nothing else changes: the same records, the same batch sizes, the same state.
        """
        from .files import _FilesIterator
        from .transforms import _SkipIterator, _TakeIterator

        it: Any = self._parent
        while type(it) in (_SkipIterator, _TakeIterator):
            it = it._parent
        if type(it) is not _FilesIterator or not it.enable_blocks(self._size):
            return False
        self._blocks = True
        return True

    def __next__(self) -> Any:
        size = self._size
        parent = self._parent
        if parent.chunked:
            # Blocks from the input: usually one chunk (a view or one gather) per batch.
            chunks = []
            got = 0
            while got < size:
                c = parent.next_chunk(size - got)
                if c is None:
                    break
                chunks.append(c)
                got += c.n
            if got == 0 or (self._drop and got < size):
                raise StopIteration
            if self._blocks:
                return concat_blocks([c.data for c in chunks])
            return structure.concat_chunks(chunks).data
        return structure.stack(_next_elements(parent, size, self._drop))


# --------------------------------------------------------------------------- padded_batch
class PaddedBatchDataset(_Batching):
    """``ds.padded_batch(...)``: pads components to a common (or given) shape.

    ``padded_shapes`` and ``padding_values`` follow the element's structure down to its
    components (``nest.map_structure_up_to`` in TensorFlow): ``None`` anywhere means the default
    for that part (the component's own shape, padded to the longest; 0, ``b""`` or False), a single
    value applies to every component below it. Both are checked against the input's spec at
    construction, with TensorFlow's errors.
    """

    def __init__(self, parent: Dataset, batch_size: int, padded_shapes: Any, padding_values: Any,
                 drop_remainder: bool) -> None:
        super().__init__(parent, batch_size, drop_remainder)
        self._padded_shapes, self._padding_values = padded_shapes, padding_values
        spec = parent.element_spec
        # Checked at construction, as TensorFlow does, when the input's spec is known without
        # consuming anything; else from the first element's (see UnknownSpec).
        self._padding: tuple[list, list] | None = (
            None if isinstance(spec, structure.UnknownSpec) else self._resolve(spec, at_build=True))

    def _resolve(self, spec: Any, at_build: bool = False) -> tuple[list, list]:
        """Per flattened component of ``spec``: (padded shape or None, padding value)."""
        specs = structure.flatten(spec)
        raw_shapes = _up_to(spec, self._padded_shapes)
        raw_pads = _up_to(spec, self._padding_values)
        shapes: list[tuple | None] = []
        pads: list[Any] = []
        for s, shape, pad in zip(specs, raw_shapes, raw_pads, strict=True):
            if isinstance(s, NoneTensorSpec):
                shapes.append(None)
                pads.append(None)
                continue
            if not isinstance(s, TensorSpec):
                raise TypeError(f"padded_batch is only supported for tensor components, got {s!r}; "
                                "use ragged_batch for ragged values")
            if shape is None:
                if s.shape is None and at_build and self._padded_shapes is None:
                    raise ValueError("You must provide `padded_shapes` argument because component "
                                     f"{len(shapes)} has unknown rank.")
                shapes.append(None)
            else:
                shapes.append(_checked_shape(shape, s))
            pads.append(_checked_pad(pad, s))
        return shapes, pads

    def _compute_spec(self) -> Any:
        dim = self._size if self._drop else None
        spec = self._parent.element_spec
        assert self._padding is not None  # resolved in __init__: the input's spec is known here
        out: list[Any] = []
        for s, shape in zip(structure.flatten(spec), self._padding[0], strict=True):
            if isinstance(s, NoneTensorSpec):
                out.append(s)
                continue
            inner = shape if shape is not None else (None if s.shape is None else tuple(s.shape))
            out.append(TensorSpec(None if inner is None else (dim,) + tuple(inner), s.dtype))
        return structure.pack_as(spec, out)

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _PaddedBatchIterator(self, self._parent._make_iter(ctx))


def _up_to(spec: Any, value: Any) -> list:
    """``value`` spread over the flattened components of ``spec``: a nested value follows the
    spec's nesting; a leaf (or None) at a nested spec node applies to every component below it."""
    if isinstance(spec, tuple) and isinstance(value, tuple):
        if len(value) != len(spec):
            raise ValueError(f"The structure of {value!r} does not match the element structure {spec!r}")
        out: list = []
        for s, v in zip(spec, value):
            out.extend(_up_to(s, v))
        return out
    if isinstance(spec, dict) and isinstance(value, dict):
        if set(value) != set(spec):
            raise ValueError(f"The keys of {value!r} do not match the element's keys {sorted(spec)}")
        out = []
        for k in sorted(spec):
            out.extend(_up_to(spec[k], value[k]))
        return out
    return [value] * len(structure.flatten(spec))


def _checked_shape(shape: Any, spec: TensorSpec) -> tuple:
    """A padded shape as a tuple (None for -1/None dims), checked against the component's spec."""
    arr = np.asarray(list(shape) if isinstance(shape, tuple) else shape, dtype=object)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    numeric = [d for d in arr.reshape(-1).tolist() if d is not None]
    if isinstance(shape, np.ndarray) and shape.dtype.kind not in "iu" or any(
            isinstance(d, (float, np.floating)) for d in numeric):
        kind = shape.dtype.name if isinstance(shape, np.ndarray) else "float32"
        raise TypeError(f"Padded shape {list(arr.reshape(-1))} must be a 1-D tensor of tf.int64 values, but its "
                        f"element type was {kind}.")
    if arr.ndim != 1:
        raise ValueError(f"Padded shape {arr.tolist()} must be a 1-D tensor of tf.int64 values, but its shape "
                         f"was {arr.shape}.")
    if any(d is not None and int(d) < -1 for d in arr.tolist()):
        raise ValueError(f"Padded shape {arr.tolist()} holds a dimension below -1: each must be -1 or None (pad to "
                         "the longest in the batch) or a size >= 0.")
    dims = tuple(None if (d is None or int(d) < 0) else int(d) for d in arr.tolist())
    if spec.shape is not None:
        have = tuple(spec.shape)
        if len(have) != len(dims) or any(p is not None and h is not None and p < h for p, h in zip(dims, have)):
            raise ValueError(f"The padded shape {_pyshape(dims)} is not compatible with the corresponding input "
                             f"component shape {_pyshape(have)}.")
    return dims


def _pyshape(dims: tuple) -> str:
    return repr(tuple(dims))


def _checked_pad(pad: Any, spec: TensorSpec) -> Any:
    """The padding value of one component (its default for None), of the component's dtype."""
    is_string = spec.dtype_name == "string"
    if pad is None:
        if is_string:
            return b""
        return np.zeros((), spec.dtype)[()]
    value = structure.normalize(pad)
    if np.ndim(value) != 0:  # TensorFlow's classes: ValueError for the shape, TypeError for the type
        raise ValueError(f"Invalid `padding_values`. `padding_values` values should be scalars, but got "
                         f"{pad!r} of shape {np.shape(value)}.")
    if is_string != isinstance(value, bytes):
        raise TypeError(f"Padding value {pad!r} must be a scalar of the component's type {spec.dtype_name}")
    return value if is_string else np.asarray(value).astype(spec.dtype)[()]


def _next_elements(parent: DatasetIterator, size: int, drop_remainder: bool) -> list:
    """The next batch's elements, one at a time; StopIteration when none (or too few) remain."""
    elements = []
    for _ in range(size):
        try:
            elements.append(next(parent))
        except StopIteration:
            break
    if not elements or (drop_remainder and len(elements) < size):
        raise StopIteration
    return elements


class _PaddedBatchIterator(_UnaryIterator):
    def __init__(self, ds: PaddedBatchDataset, parent_it: DatasetIterator) -> None:
        super().__init__(parent_it)
        self._ds = ds

    def __next__(self) -> Any:
        ds = self._ds
        elements = _next_elements(self._parent, ds._size, ds._drop)
        template = elements[0]
        flats = [structure.flatten(e) for e in elements]
        if ds._padding is None:  # the input's spec was unknown: the first element's tells
            ds._padding = ds._resolve(structure.spec_of(template))
        shapes, pads = ds._padding
        out: list[Any] = []
        for c in range(len(flats[0])):
            column = [f[c] for f in flats]
            out.append(None if column[0] is None else _pad_component(column, shapes[c], pads[c], c))
        return structure.pack_as(template, out)


def _pad_component(column: list, shape: Any, pad: Any, component: int) -> np.ndarray:
    arrays = [np.asarray(v) if not isinstance(v, bytes) else np.array(v, dtype=object) for v in column]
    rank = arrays[0].ndim
    for a in arrays:
        if a.ndim != rank:
            raise errors.InvalidArgumentError(
                f"All elements in a batch must have the same rank as the padded shape for "
                f"component{component}: expected rank {rank} but got element with rank {a.ndim}"
            )
    maxdims = [max(a.shape[d] for a in arrays) for d in range(rank)]
    if shape is None:
        target = maxdims
    else:
        if len(shape) != rank:
            raise errors.InvalidArgumentError(
                f"The padded shape {list(shape)} for component {component} does not have rank {rank}"
            )
        target = []
        for d, want in enumerate(shape):
            if want is None:
                target.append(maxdims[d])
            elif maxdims[d] > want:
                raise errors.DataLossError("Attempted to pad to a smaller size than the input element.")
            else:
                target.append(want)
    dtype = arrays[0].dtype
    out = np.full([len(arrays)] + target, pad, dtype=dtype)
    for i, a in enumerate(arrays):
        out[(i,) + tuple(slice(0, s) for s in a.shape)] = a
    return out


# --------------------------------------------------------------------------- ragged_batch
class RaggedBatchDataset(_Batching):
    """``ds.ragged_batch(batch_size)``: as TensorFlow's, components whose shape is fully known
    (or of unknown rank) are batched dense; the others become :class:`RaggedTensor` rows (one
    ragged dimension: ragged elements cannot be batched again)."""

    def __init__(self, parent: Dataset, batch_size: int, drop_remainder: bool) -> None:
        super().__init__(parent, batch_size, drop_remainder)
        spec = parent.element_spec
        # Per flattened component: batched as rows of a RaggedTensor? None: decided per element
        # (the input's spec is unknown: components with a dimension are ragged).
        self._ragged: list[bool] | None = (
            None if isinstance(spec, structure.UnknownSpec) else [_ragged_component(s) for s in structure.flatten(spec)])

    def _compute_spec(self) -> Any:
        dim = self._size if self._drop else None
        spec = self._parent.element_spec
        assert self._ragged is not None  # set in __init__: the input's spec is known here
        out: list[Any] = []
        for s, ragged in zip(structure.flatten(spec), self._ragged, strict=True):
            if isinstance(s, NoneTensorSpec):
                out.append(s)
            elif ragged:
                out.append(RaggedTensorSpec((dim,) + tuple(s.shape), s.dtype))
            else:
                out.append(TensorSpec(None if s.shape is None else (dim,) + tuple(s.shape), s.dtype))
        return structure.pack_as(spec, out)

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _RaggedBatchIterator(self, self._parent._make_iter(ctx))


def _ragged_component(s: Any) -> bool:
    """Whether ragged_batch makes a component of spec ``s`` ragged (TensorFlow's rule: a tensor
    with a dimension of unknown size)."""
    if isinstance(s, RaggedTensorSpec):
        raise _ragged_again(s)
    if isinstance(s, NoneTensorSpec):
        return False
    if not isinstance(s, TensorSpec):
        raise TypeError(f"ragged_batch is only supported for tensor components, got {s!r}")
    if s.shape is None or None not in s.shape:
        return False
    if None in s.shape[1:]:
        raise _ragged_again(s)
    return True


def _ragged_again(s: Any) -> Exception:
    return errors.UnimplementedError(
        f"ragged_batch of elements of {s!r} is not supported: it needs a ragged rank above 1 (a "
        "RaggedTensor here has one ragged dimension, the second)")


class _RaggedBatchIterator(_UnaryIterator):
    def __init__(self, ds: RaggedBatchDataset, parent_it: DatasetIterator) -> None:
        super().__init__(parent_it)
        self._ds = ds

    def __next__(self) -> Any:
        ds = self._ds
        elements = _next_elements(self._parent, ds._size, ds._drop)
        flats = [structure.flatten(e) for e in elements]
        out: list[Any] = []  # arrays and RaggedTensors
        for c in range(len(flats[0])):
            if any(isinstance(f[c], RaggedTensor) for f in flats):
                raise _ragged_again(structure.spec_of(elements[0]))
            column = [f[c] for f in flats]
            ragged = ds._ragged[c] if ds._ragged is not None else np.ndim(column[0]) > 0
            if ragged and column[0] is not None:
                arrays = [np.asarray(v) for v in column]
                out.append(RaggedTensor(np.concatenate(arrays), np.array([len(a) for a in arrays])))
            else:
                out.append(structure.stack(column))  # dense (TensorFlow's error if shapes differ)
        return structure.pack_as(elements[0], out)


# --------------------------------------------------------------------------- unbatch
class UnbatchDataset(_Unary):
    """``ds.unbatch()``: one element per row of each input element."""

    def __init__(self, parent: Dataset) -> None:
        super().__init__(parent)
        spec = parent.element_spec
        if not isinstance(spec, structure.UnknownSpec):
            # Checked at construction, as TensorFlow does, when the spec is known.
            self.__dict__["_spec"] = self._unbatched(spec)

    @staticmethod
    def _unbatched(spec: Any) -> Any:
        dims: set = set()

        def one(s: Any) -> Any:
            if isinstance(s, NoneTensorSpec):
                return s
            if isinstance(s, RaggedTensorSpec):
                dims.add(s.shape[0])
                return TensorSpec((None,) + tuple(s.shape[2:]), s.dtype)
            if s.shape is not None and len(s.shape) == 0:
                raise ValueError("Cannot unbatch an input with scalar components.")
            if s.shape is not None:
                dims.add(s.shape[0])
            if isinstance(s, DatasetSpec):
                return DatasetSpec(s.element_spec, tuple(s.shape[1:]))
            return TensorSpec(None if s.shape is None else tuple(s.shape[1:]), s.dtype)

        out = structure.map_structure(one, spec)
        known = dims - {None}
        if len(known) > 1:
            raise ValueError(f"Cannot unbatch an input whose components have different sizes in their first "
                             f"dimension: {sorted(known)} in {spec!r}")
        return out

    def _compute_spec(self) -> Any:
        return self._unbatched(self._parent.element_spec)

    def _cardinality(self) -> int:
        # TensorFlow's: the input's count times the batch size, when the input's spec gives one
        # (the first component with a known first dimension; 0 counts as unknown).
        n = self._parent._cardinality()
        if n < 0:
            return n
        spec = self._parent.element_spec
        if isinstance(spec, structure.UnknownSpec):
            return UNKNOWN_CARDINALITY
        for s in structure.flatten(spec):
            shape = getattr(s, "shape", None)
            if not isinstance(s, NoneTensorSpec) and shape and shape[0] is not None:
                return n * shape[0] if shape[0] > 0 else UNKNOWN_CARDINALITY
        return UNKNOWN_CARDINALITY

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _UnbatchIterator(self._parent._make_iter(ctx))


class _UnbatchIterator(_UnaryIterator):
    chunked = True

    def __init__(self, parent_it: DatasetIterator) -> None:
        super().__init__(parent_it)
        self._batch: Any = None
        self._n = 0
        self._i = 0

    def _load(self) -> bool:
        while self._i >= self._n:
            b = next(self._parent, _END)
            if b is _END:
                self._batch = None
                return False
            leaves = structure.flatten(b)
            sizes = set()
            for leaf in leaves:
                if leaf is None:  # a None component unbatches to None
                    continue
                if isinstance(leaf, RaggedTensor):
                    sizes.add(len(leaf))
                elif isinstance(leaf, bytes) or np.ndim(leaf) == 0:
                    raise errors.InvalidArgumentError(
                        "Input element must have a non-scalar value in each component."
                    )
                else:
                    sizes.add(len(leaf))
            if not sizes:
                raise errors.InvalidArgumentError("Cannot unbatch an element whose every component is None.")
            if len(sizes) != 1:
                raise errors.InvalidArgumentError(
                    "Input element must have the same batch size in each component. Component 0 "
                    f"had size {len(leaves[0])} but another component had a different size."
                )
            self._batch, self._n, self._i = b, sizes.pop(), 0
            self.chunked = not any(isinstance(leaf, RaggedTensor) for leaf in leaves)
        return True

    def __next__(self) -> Any:
        if not self._load():
            raise StopIteration
        i = self._i
        self._i += 1
        b = self._batch
        if not isinstance(b, (tuple, dict)):
            return structure.unstack_leaf(b, i)
        return structure.map_structure(lambda a: structure.unstack_leaf(a, i), b)

    def next_chunk(self, max_n: int) -> Chunk | None:
        if not self._load():
            return None
        if not self.chunked:  # ragged rows cannot be stacked
            return DatasetIterator.next_chunk(self, 1)
        i = self._i
        j = min(self._n, i + max_n)
        self._i = j
        b = self._batch
        return Chunk(j - i, b[i:j] if not isinstance(b, (tuple, dict))
                     else structure.map_structure(lambda a: None if a is None else a[i:j], b))

    def _own_state(self) -> dict:
        if self._batch is None or self._i >= self._n:
            return {"batch": None, "i": 0}
        return {"batch": structure.encode(self._batch), "i": self._i}

    def _set_own_state(self, state: dict) -> None:
        if state["batch"] is None:
            self._batch, self._n, self._i = None, 0, 0
        else:
            self._batch = structure.decode(state["batch"])
            leaf = next(x for x in structure.flatten(self._batch) if x is not None)
            self._n, self._i = len(leaf), int(state["i"])


_END = object()


# --------------------------------------------------------------------------- window
class WindowDataset(_Unary):
    """``ds.window(size, shift, stride, drop_remainder)``: a dataset of small datasets."""

    def __init__(self, parent: Dataset, size: int, shift: int | None, stride: int,
                 drop_remainder: bool) -> None:
        super().__init__(parent)
        self._size = int(size)
        self._shift = self._size if shift is None else int(shift)
        self._stride = int(stride)
        for name, v in (("size", self._size), ("shift", self._shift), ("stride", self._stride)):
            if v < 1:
                raise errors.InvalidArgumentError(f"Window {name} must be positive, got {v}.")
        self._drop = bool(drop_remainder)

    def _compute_spec(self) -> Any:
        # As TensorFlow: a window of structured elements is the same structure of datasets, one
        # per component.
        return structure.map_structure(DatasetSpec, self._parent.element_spec)

    def _cardinality(self) -> int:
        n = self._parent._cardinality()
        if n < 0:  # infinite or unknown stays so
            return n
        if self._drop:
            rest = n - ((self._size - 1) * self._stride + 1)  # elements after the first full window
            return 0 if rest < 0 else rest // self._shift + 1
        return -(-n // self._shift)

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _WindowIterator(self, self._parent._make_iter(ctx))


class _WindowIterator(_UnaryIterator):
    """TensorFlow's window: a buffer of ``(size - 1) * stride + 1`` input elements, each kept with
    the error its input raised, if any; a window whose elements include an error raises it (after
    the buffer has shifted, so the next window is the right one); elements shifted past without
    being buffered are read and dropped, errors included."""

    def __init__(self, ds: WindowDataset, parent_it: DatasetIterator) -> None:
        super().__init__(parent_it)
        self._ds = ds
        self._target = (ds._size - 1) * ds._stride + 1
        self._buf: deque = deque()  # (element, error): one per input position from the window's start
        self._ended = False

    def _read(self) -> tuple[Any, BaseException | None] | None:
        """The next input element as ``(element, error)``; None at the end of the input."""
        try:
            return next(self._parent), None
        except StopIteration:
            self._ended = True
            return None
        except Exception as exc:  # noqa: BLE001 - kept in its place in the window
            return None, exc

    def __next__(self) -> Any:
        ds = self._ds
        buf = self._buf
        while not self._ended and len(buf) < self._target:
            item = self._read()
            if item is not None:
                buf.append(item)
        if not buf or (ds._drop and len(buf) < self._target):
            raise StopIteration
        window, error = [], None
        for k in range(0, len(buf), ds._stride):
            element, error = buf[k]
            if error is not None:
                break
            window.append(element)
        if ds._shift >= len(buf):
            for _ in range(ds._shift - len(buf)):
                if self._ended or self._read() is None:
                    break
            buf.clear()
        else:
            for _ in range(ds._shift):
                buf.popleft()
        if error is not None:
            raise error
        return _window_of(window, ds._parent.element_spec)

    def _own_state(self) -> dict:
        return {
            "ended": self._ended,
            "buf": [[structure.encode(e), None if err is None else [type(err).__name__, str(err)]]
                    for e, err in self._buf],
        }

    def _set_own_state(self, state: dict) -> None:
        self._ended = bool(state["ended"])
        self._buf = deque((structure.decode(e), None if err is None else _restored_error(*err))
                          for e, err in state["buf"])


def _window_of(elements: list, spec: Any) -> Any:
    """One window: a dataset of ``elements``, or, for structured elements, the same structure of
    datasets, one per component."""
    from .sources import ListDataset

    if not elements or not structure.is_nested(elements[0]):
        return ListDataset(elements, spec=spec)
    columns = zip(*(structure.flatten(e) for e in elements))
    specs = structure.flatten(spec) if structure.is_nested(spec) else [None] * len(structure.flatten(elements[0]))
    return structure.pack_as(elements[0], [ListDataset(list(c), spec=s) for c, s in zip(columns, specs)])


def _restored_error(name: str, message: str) -> BaseException:
    """An error saved with a window's state, as the class of this tree it was (else InvalidArgument)."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.QueueServerError):
        return cls(message)
    return errors.InvalidArgumentError(message)


