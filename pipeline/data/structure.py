"""Elements, their nesting, their specs and their plain-data encoding.

An *element* is what a dataset yields: a leaf, or tuples and dicts of elements (as in tf.data).
Leaves are normalised so that every stage sees the same kinds of values:

* rank-0 numbers are numpy scalars (``np.int64(3)``), rank >= 1 values are ``np.ndarray``;
* strings are ``bytes`` when scalar and ``object`` arrays of ``bytes`` otherwise (TensorFlow's
  ``tf.string``, which ``as_numpy_iterator`` returns the same way);
* Python lists become arrays with TensorFlow's conversion rules (``[1, 2]`` is int32,
  ``[1.5]`` is float32, ``["a"]`` is a string array), Python scalars likewise;
* :class:`RaggedTensor` rows (from :meth:`Dataset.ragged_batch`) and nested datasets (from
  :meth:`Dataset.window`) are leaves too.

A *chunk* is ``n`` consecutive elements with uniform shapes stored as one stacked structure
(each leaf gains a leading axis of length ``n``); pipelines pass chunks between stages where the
semantics allow, so batching is one gather per batch instead of a Python loop per element.

:func:`encode` / :func:`decode` turn elements into JSON-serialisable data for iterator states.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from queueserver import errors

__all__ = [
    "TensorSpec",
    "RaggedTensorSpec",
    "DatasetSpec",
    "NoneTensorSpec",
    "UnknownSpec",
    "RaggedTensor",
    "normalize",
    "spec_of",
]

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


# --------------------------------------------------------------------------- ragged values
class RaggedTensor:
    """A batch of rows of different lengths: ``flat_values`` split by ``row_lengths``.

    Produced by :meth:`Dataset.ragged_batch` (and accepted by :meth:`Dataset.from_tensor_slices`,
    which yields its rows). Only one ragged dimension (the second) is supported.

    Args:
        flat_values: the rows concatenated along axis 0.
        row_lengths: int64 array, the length of each row.

    Example:
        >>> r = RaggedTensor.from_rows([[1], [2, 3]])
        >>> r.to_tensor().tolist(), r.row_lengths.tolist()
        ([[1, 0], [2, 3]], [1, 2])
    """

    __slots__ = ("flat_values", "row_lengths", "_offsets")

    def __init__(self, flat_values: np.ndarray, row_lengths: np.ndarray) -> None:
        self.flat_values = np.asarray(flat_values)
        self.row_lengths = np.asarray(row_lengths, dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(self.row_lengths)]).astype(np.int64)

    @classmethod
    def from_rows(cls, rows: Sequence[Any], dtype: Any = None) -> "RaggedTensor":
        """Builds a ragged tensor from a list of rows (lists or arrays).

        Args:
            rows: the rows; Python numbers follow TensorFlow's rules (ints give int32).
            dtype: optional dtype of the values.

        Returns:
            The ragged tensor.

        Example:
            >>> RaggedTensor.from_rows([[1], [2, 3]]).flat_values.dtype
            dtype('int32')
        """
        arrays = [to_array(list(r) if not isinstance(r, np.ndarray) else r) for r in rows]
        lengths = np.array([len(a) for a in arrays], np.int64)
        if arrays:
            flat = np.concatenate(arrays)
            if not any(isinstance(r, np.ndarray) for r in rows) and flat.dtype == np.int64:
                flat = _python_ints(flat)
        else:
            flat = np.zeros((0,), np.float32)
        if dtype is not None:
            flat = flat.astype(dtype)
        return cls(flat, lengths)

    def __len__(self) -> int:
        return len(self.row_lengths)

    def row(self, i: int) -> np.ndarray:
        """Returns row ``i`` as an array."""
        return self.flat_values[self._offsets[i] : self._offsets[i + 1]]

    def rows(self) -> list[np.ndarray]:
        """Returns every row as an array."""
        return [self.row(i) for i in range(len(self))]

    def to_tensor(self, default_value: Any = 0) -> np.ndarray:
        """Pads the rows to the longest one.

        Args:
            default_value: the padding value.

        Returns:
            A dense array of shape ``[rows, max_len, ...]``.
        """
        width = int(self.row_lengths.max()) if len(self) else 0
        out = np.full(
            (len(self), width) + self.flat_values.shape[1:], default_value, self.flat_values.dtype
        )
        for i in range(len(self)):
            r = self.row(i)
            out[i, : len(r)] = r
        return out

    def to_list(self) -> list:
        """Returns the rows as nested Python lists."""
        return [r.tolist() for r in self.rows()]

    def __repr__(self) -> str:
        return f"RaggedTensor({self.to_list()!r})"


# --------------------------------------------------------------------------- specs
_TF_NAMES = {
    "bool": "bool",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "float16": "float16",
    "float32": "float32",
    "float64": "float64",
    "complex64": "complex64",
    "complex128": "complex128",
    "object": "string",
}


def dtype_name(dtype: Any) -> str:
    """TensorFlow's name for a numpy dtype (``object`` holds strings: ``"string"``)."""
    if dtype == "string":
        return "string"
    name = np.dtype(dtype).name
    return _TF_NAMES.get(name, name)


@dataclass(frozen=True)
class TensorSpec:
    """The type of one leaf of an element: shape (``None`` for an unknown size) and dtype.

    ``repr`` matches TensorFlow's, e.g. ``TensorSpec(shape=(None,), dtype=tf.int64, name=None)``.

    Args:
        shape: a tuple of ints and ``None``; ``None`` for an unknown rank.
        dtype: a numpy dtype, or ``"string"``.

    Example:
        >>> TensorSpec((None,), np.int64)
        TensorSpec(shape=(None,), dtype=tf.int64, name=None)
    """

    shape: tuple | None
    dtype: Any
    name: str | None = None

    @property
    def dtype_name(self) -> str:
        """TensorFlow's name of the dtype (``"int64"``, ``"string"``, ...)."""
        return dtype_name(self.dtype)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TensorSpec)
            and self.shape == other.shape
            and self.dtype_name == other.dtype_name
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype_name))

    def __repr__(self) -> str:
        shape = "None" if self.shape is None else repr(tuple(self.shape))
        return f"TensorSpec(shape={shape}, dtype=tf.{self.dtype_name}, name={self.name!r})"


@dataclass(frozen=True)
class RaggedTensorSpec:
    """The type of a :class:`RaggedTensor` leaf; ``repr`` matches TensorFlow's.

    Example:
        >>> RaggedTensorSpec((None, None), np.int64)
        RaggedTensorSpec(TensorShape([None, None]), tf.int64, 1, tf.int64)
    """

    shape: tuple
    dtype: Any
    ragged_rank: int = 1

    @property
    def dtype_name(self) -> str:
        """TensorFlow's name of the values' dtype."""
        return dtype_name(self.dtype)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RaggedTensorSpec)
            and self.shape == other.shape
            and self.dtype_name == other.dtype_name
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype_name))

    def __repr__(self) -> str:
        dims = ", ".join("None" if d is None else str(d) for d in self.shape)
        return (
            f"RaggedTensorSpec(TensorShape([{dims}]), tf.{self.dtype_name}, "
            f"{self.ragged_rank}, tf.int64)"
        )


@dataclass(frozen=True)
class DatasetSpec:
    """The type of a leaf that is itself a dataset (the windows of :meth:`Dataset.window`), or,
    with a non-empty ``shape``, an array of datasets (a ``batch`` of dataset elements, as
    TensorFlow allows: ``unbatch`` gives the datasets back).

    Example:
        >>> DatasetSpec(TensorSpec((), np.int64))
        DatasetSpec(TensorSpec(shape=(), dtype=tf.int64, name=None), TensorShape([]))
        >>> DatasetSpec(TensorSpec((), np.int64), (None,))
        DatasetSpec(TensorSpec(shape=(), dtype=tf.int64, name=None), TensorShape([None]))
    """

    element_spec: Any
    shape: tuple = ()

    def __repr__(self) -> str:
        dims = ", ".join("None" if d is None else str(d) for d in self.shape)
        return f"DatasetSpec({self.element_spec!r}, TensorShape([{dims}]))"


@dataclass(frozen=True)
class NoneTensorSpec:
    """The type of a ``None`` component of an element (TensorFlow's ``NoneTensorSpec``): it stays
    ``None`` through ``batch``, ``unbatch``, ``padded_batch`` and the rest.

    Example:
        >>> spec_of((np.int64(1), None))
        (TensorSpec(shape=(), dtype=tf.int64, name=None), NoneTensorSpec())
    """

    @property
    def dtype_name(self) -> str:
        """A name for messages (a None component has no dtype)."""
        return "none"

    def __repr__(self) -> str:
        return "NoneTensorSpec()"


class UnknownSpec:
    """The spec of elements that cannot be known without consuming input.

    A Python function cannot be traced, so a spec after ``map``/``scan``/``flat_map`` is inferred by
    running the pipeline on a few elements. Where that would take elements from a server queue or
    run a user's generator, the spec stays unknown instead (building, printing or inspecting a
    dataset never consumes anything): iterate to see the elements, or declare them with
    ``output_signature``. So is the spec of a sample without elements (an empty input, or a
    ``filter`` that lets nothing through within the sample's bound). Transformations of an
    unknown spec are unknown too; their checks use the elements themselves.

    Example:
        >>> UnknownSpec()
        UnknownSpec()
    """

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnknownSpec)

    def __hash__(self) -> int:
        return hash(UnknownSpec)

    def __repr__(self) -> str:
        return "UnknownSpec()"


UNKNOWN_SPEC = UnknownSpec()


# --------------------------------------------------------------------------- nesting
def is_nested(x: Any) -> bool:
    """True for the containers that make structure: tuples (incl. namedtuples) and dicts."""
    return isinstance(x, (tuple, dict))


def flatten(x: Any) -> list:
    """The leaves of ``x`` in a fixed order (dict keys sorted, as tf.nest does)."""
    if isinstance(x, tuple):
        out: list = []
        for v in x:
            out.extend(flatten(v))
        return out
    if isinstance(x, dict):
        out = []
        for k in sorted(x):
            out.extend(flatten(x[k]))
        return out
    return [x]


def pack_as(template: Any, leaves: Iterable) -> Any:
    """Rebuilds ``template``'s structure from ``leaves`` (the inverse of :func:`flatten`)."""
    it = iter(leaves)

    def build(t: Any) -> Any:
        if isinstance(t, tuple):
            vals = [build(v) for v in t]
            return type(t)(*vals) if hasattr(t, "_fields") else tuple(vals)
        if isinstance(t, dict):
            built = {k: build(t[k]) for k in sorted(t)}
            return {k: built[k] for k in t}
        return next(it)

    return build(template)


def map_structure(fn: Callable, x: Any, *rest: Any) -> Any:
    """Applies ``fn`` leaf by leaf over one or more elements of the same structure."""
    if isinstance(x, tuple):
        vals = [map_structure(fn, *parts) for parts in zip(x, *rest, strict=True)]
        return type(x)(*vals) if hasattr(x, "_fields") else tuple(vals)
    if isinstance(x, dict):
        for r in rest:
            if not isinstance(r, dict) or set(r) != set(x):
                raise ValueError("The two structures don't have the same keys.")
        return {k: map_structure(fn, x[k], *(r[k] for r in rest)) for k in x}
    for r in rest:
        if is_nested(r):
            raise ValueError("The two structures don't have the same nested structure.")
    return fn(x, *rest)


def same_structure(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` nest the same way (leaf values are not compared)."""
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(same_structure, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(same_structure(a[k], b[k]) for k in a)
    return not is_nested(b)


# --------------------------------------------------------------------------- normalisation
def _python_ints(arr: np.ndarray) -> np.ndarray:
    """TensorFlow converts Python ints to int32 when they fit, else int64."""
    if arr.size == 0 or (arr.min() >= _INT32_MIN and arr.max() <= _INT32_MAX):
        return arr.astype(np.int32)
    return arr


def _strings(arr: np.ndarray) -> np.ndarray:
    """numpy ``S``/``U`` arrays (and object arrays of str) become object arrays of bytes."""
    out = np.empty(arr.shape, dtype=object)
    flat_in = arr.reshape(-1)
    flat_out = out.reshape(-1)
    for i, v in enumerate(flat_in.tolist()):
        flat_out[i] = v.encode("utf-8") if isinstance(v, str) else bytes(v)
    return out


def to_array(value: Any) -> np.ndarray:
    """Converts one leaf to an array with TensorFlow's rules for Python values.

    Python ints give int32 (int64 when too large), floats give float32, ``str``/``bytes`` give
    object arrays of bytes; numpy inputs keep their dtype.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SU" or (value.dtype == object and value.size and isinstance(value.flat[0], str)):
            return _strings(value)
        return value
    if isinstance(value, np.generic):
        return to_array(np.asarray(value))
    if isinstance(value, (bytes, str)):
        return _strings(np.array(value, dtype=object))
    if isinstance(value, bool):
        return np.asarray(value, np.bool_)
    if isinstance(value, int):
        return _python_ints(np.asarray(value))
    if isinstance(value, float):
        return np.asarray(value, np.float32)
    if isinstance(value, list) and any(_is_dataset(v) for v in value):
        # Never iterate them (that would run a queue or a generator) to make bytes of them.
        raise TypeError("a list of datasets is not a tensor: Dataset.from_tensor_slices(list) makes a dataset"
                        " of datasets; a tuple makes a structure of them")
    if isinstance(value, list):
        arr = np.array(value, dtype=object if _has_strings(value) else None)
        if arr.dtype == object:
            return _strings(arr)
        if arr.dtype.kind in "SU":
            return _strings(arr)
        if arr.dtype == np.int64:
            return _python_ints(arr)
        if arr.dtype == np.float64:
            return arr.astype(np.float32)
        return arr
    arr = np.asarray(value)
    if arr.dtype == object:  # not a number, a string or a list of them: no tensor holds it
        raise TypeError(f"a value of type {type(value).__name__} ({value!r:.80}) is not a tensor, a string, "
                        "a tuple or a dict")
    return arr


def _has_strings(value: list) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, (str, bytes))


def normalize(value: Any) -> Any:
    """Brings a user value (a ``map`` result, a generator output, ...) into element form.

    Args:
        value: nested tuples/dicts of numpy values, Python scalars, lists, strings.

    Returns:
        The same structure with normalised leaves (see the module docstring).

    Example:
        >>> normalize((1, "a", [1.5]))
        (np.int32(1), b'a', array([1.5], dtype=float32))
    """
    t = type(value)
    if t is np.ndarray:
        if value.ndim == 0:
            return normalize(value[()])
        if value.dtype.kind in "SU" or (value.dtype == object and value.size and isinstance(value.flat[0], str)):
            return _strings(value)
        return value
    if t is bytes:
        return value
    if isinstance(value, np.generic):
        if isinstance(value, np.bytes_):  # dtype kind "S"
            return bytes(value)
        if value.dtype.kind == "U":
            return str(value).encode("utf-8")
        return value
    if t is str:
        return value.encode("utf-8")
    if isinstance(value, tuple):
        vals = [normalize(v) for v in value]
        return t(*vals) if hasattr(value, "_fields") else tuple(vals)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, RaggedTensor) or _is_dataset(value) or value is None:
        return value  # None: a component with no value (TensorFlow's NoneTensor)
    if isinstance(value, list) and value and all(_is_dataset(v) for v in value):
        return dataset_array(value)
    arr = to_array(value)
    return arr[()] if arr.ndim == 0 else arr


def dataset_array(datasets: Sequence[Any]) -> np.ndarray:
    """A vector of datasets (an object array): a ``batch`` of dataset elements, or
    ``from_tensors`` of a list of datasets; ``unbatch`` yields the datasets again."""
    arr = np.empty(len(datasets), dtype=object)
    for i, d in enumerate(datasets):
        arr[i] = d
    return arr


def is_dataset_array(value: Any) -> bool:
    """True for an object array holding datasets (see :func:`dataset_array`)."""
    return (isinstance(value, np.ndarray) and value.dtype == object and value.size > 0
            and _is_dataset(value.flat[0]))


def _is_dataset(value: Any) -> bool:
    from .base import Dataset  # local: base imports this module

    return isinstance(value, Dataset)


# --------------------------------------------------------------------------- specs of values
def leaf_spec(leaf: Any) -> Any:
    """The spec of one normalised leaf."""
    if isinstance(leaf, bytes):
        return TensorSpec((), "string")
    if isinstance(leaf, RaggedTensor):
        return RaggedTensorSpec((len(leaf), None) + leaf.flat_values.shape[1:], leaf.flat_values.dtype)
    if _is_dataset(leaf):
        return DatasetSpec(leaf.element_spec)
    if leaf is None:
        return NoneTensorSpec()
    if is_dataset_array(leaf):
        return DatasetSpec(leaf.flat[0].element_spec, tuple(leaf.shape))
    arr = np.asarray(leaf) if not isinstance(leaf, np.ndarray) else leaf
    return TensorSpec(tuple(arr.shape), "string" if arr.dtype == object else arr.dtype)


def spec_of(element: Any) -> Any:
    """The element spec (same nesting, :class:`TensorSpec` leaves) of a concrete element."""
    return map_structure(leaf_spec, element)


def relax(spec_a: Any, spec_b: Any) -> Any:
    """The most specific spec compatible with both (differing dimensions become ``None``).

    Raises:
        TypeError: when structure or dtypes differ.
    """

    def one(a: Any, b: Any) -> Any:
        if type(a) is not type(b) or getattr(a, "dtype_name", None) != getattr(b, "dtype_name", None):
            raise TypeError(f"Incompatible dataset elements:\n  {spec_a!r} vs.   {spec_b!r}")
        if isinstance(a, NoneTensorSpec):
            return a
        if isinstance(a, DatasetSpec):
            if len(a.shape) != len(b.shape):
                raise TypeError(f"Incompatible dataset elements:\n  {spec_a!r} vs.   {spec_b!r}")
            return DatasetSpec(a.element_spec, tuple(x if x == y else None for x, y in zip(a.shape, b.shape)))
        if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
            shape = None
        else:
            shape = tuple(x if x == y else None for x, y in zip(a.shape, b.shape))
        return type(a)(shape, a.dtype)

    if not same_structure(spec_a, spec_b):
        raise TypeError(f"Incompatible dataset elements:\n  {spec_a!r} vs.   {spec_b!r}")
    return map_structure(one, spec_a, spec_b)


# --------------------------------------------------------------------------- chunks
class Chunk:
    """``n`` consecutive elements stored as one structure of stacked leaves (leading axis ``n``).

    Internal: stages pass chunks to each other where the semantics allow, so that batching and
    shuffling move numpy blocks, not Python objects.
    """

    __slots__ = ("n", "data")

    def __init__(self, n: int, data: Any) -> None:
        self.n = n
        self.data = data

    def take(self, k: int) -> "Chunk":
        """The first ``k`` elements."""
        return Chunk(k, map_structure(lambda a: None if a is None else a[:k], self.data))

    def drop(self, k: int) -> "Chunk":
        """All but the first ``k`` elements."""
        return Chunk(self.n - k, map_structure(lambda a: None if a is None else a[k:], self.data))

    def gather(self, idx: np.ndarray) -> "Chunk":
        """The elements at ``idx`` (one fancy-index gather per leaf)."""
        return Chunk(len(idx), map_structure(lambda a: None if a is None else a[idx], self.data))

    def element(self, i: int) -> Any:
        """Element ``i`` in normal element form."""
        return map_structure(lambda a: None if a is None else a[i], self.data)

    def elements(self) -> list:
        """All elements, one by one."""
        return [self.element(i) for i in range(self.n)]


def concat_chunks(chunks: list[Chunk]) -> Chunk:
    """Joins chunks end to end (one copy per leaf)."""
    if len(chunks) == 1:
        return chunks[0]
    n = sum(c.n for c in chunks)
    return Chunk(n, map_structure(lambda *a: None if a[0] is None else np.concatenate(a), *[c.data for c in chunks]))


def stack(elements: Sequence[Any], what: str = "batch") -> Any:
    """Stacks elements along a new first axis (one ``np.stack`` per leaf).

    Raises:
        InvalidArgumentError: when the elements' shapes differ (TensorFlow's message).
    """
    first = elements[0]
    flats = [flatten(e) for e in elements]
    out: list[Any] = []
    for c, leaf in enumerate(flats[0]):
        column = [f[c] for f in flats]
        if isinstance(leaf, bytes):
            arr = np.empty(len(column), dtype=object)
            arr[:] = column
            out.append(arr)
            continue
        if leaf is None:  # a None component batches to None (TensorFlow's NoneTensor)
            out.append(None)
            continue
        if _is_dataset(leaf):  # datasets batch to a vector of datasets, as in TensorFlow
            if not all(_is_dataset(v) for v in column):
                raise errors.InvalidArgumentError(f"Cannot {what} datasets with other values in component {c}.")
            out.append(dataset_array(column))
            continue
        if isinstance(leaf, RaggedTensor):
            raise errors.InvalidArgumentError(f"Cannot {what} elements of this kind; use ragged_batch")
        shape0 = np.shape(leaf)
        for i, v in enumerate(column):
            if np.shape(v) != shape0:
                raise errors.InvalidArgumentError(
                    f"Cannot {what} tensors with different shapes in component {c}. First element "
                    f"had shape {list(shape0)} and element {i} had shape {list(np.shape(v))}."
                )
        if leaf is not None and isinstance(leaf, np.ndarray) and leaf.dtype == object:
            arr = np.empty((len(column),) + shape0, dtype=object)
            for i, v in enumerate(column):
                arr[i] = v
            out.append(arr)
        else:
            out.append(np.stack(column) if shape0 else np.array(column))
    return pack_as(first, out)


def unstack_leaf(arr: Any, i: int) -> Any:
    """Row ``i`` of a batched leaf in element form."""
    if isinstance(arr, RaggedTensor):
        return arr.row(i)
    if arr is None:
        return None
    return arr[i]


# --------------------------------------------------------------------------- plain-data codec
def encode(value: Any) -> Any:
    """Encodes an element (or nested lists of elements) as JSON-serialisable data.

    Array bytes are base64; strings, ragged values and window datasets are supported.

    Example:
        >>> decode(encode((np.int64(3), b"x"))) == (3, b"x")
        True
    """
    if isinstance(value, tuple):
        return {"t": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"d": {str(k): encode(v) for k, v in value.items()}, "k": [type(k).__name__ for k in value]}
    if isinstance(value, list):
        return {"l": [encode(v) for v in value]}
    if isinstance(value, bytes):
        return {"b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, RaggedTensor):
        return {"r": [encode(value.flat_values), encode(value.row_lengths)]}
    if isinstance(value, BaseException):
        return {"e": [type(value).__name__, str(value)]}
    if _is_dataset(value):
        from .sources import ListDataset, RangeDataset, TensorSliceDataset

        # Datasets that are plain data (windows, slices of arrays, ranges) are saved as that data;
        # one made of user functions cannot be written down and is refused.
        if isinstance(value, ListDataset):
            return {"ds": [encode(e) for e in value._elements]}
        if isinstance(value, TensorSliceDataset):
            return {"dss": encode(value._tensors)}
        if isinstance(value, RangeDataset):
            r = value._range
            return {"dsr": [r.start, r.stop, r.step, value._dtype.str]}
        raise TypeError(f"cannot save a nested dataset of type {type(value).__name__} in a state")
    if is_dataset_array(value):
        return {"dsa": [encode(d) for d in value.reshape(-1).tolist()], "shape": list(value.shape)}
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype == object:
            return {
                "s": [base64.b64encode(v).decode("ascii") for v in arr.reshape(-1).tolist()],
                "shape": list(arr.shape),
            }
        return {
            "a": base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii"),
            "dtype": arr.dtype.str,
            "shape": list(arr.shape),
            "scalar": isinstance(value, np.generic),
        }
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"p": value}
    raise TypeError(f"cannot encode a value of type {type(value).__name__} in an iterator state")


def _decode_dataset(data: dict) -> Any:
    """A nested dataset saved by :func:`encode` (a window, slices of arrays, a range)."""
    from .sources import ListDataset, RangeDataset, TensorSliceDataset

    if "ds" in data:
        return ListDataset([decode(e) for e in data["ds"]])
    if "dss" in data:
        return TensorSliceDataset(decode(data["dss"]))
    start, stop, step, dtype = data["dsr"]
    return RangeDataset(start, stop, step, dtype=np.dtype(dtype))


def decode(data: Any) -> Any:
    """Inverse of :func:`encode`."""
    if "t" in data:
        return tuple(decode(v) for v in data["t"])
    if "d" in data:
        keys = data.get("k")
        out = {}
        for (k, v), kt in zip(data["d"].items(), keys or ["str"] * len(data["d"])):
            out[int(k) if kt == "int" else k] = decode(v)
        return out
    if "l" in data:
        return [decode(v) for v in data["l"]]
    if "b" in data:
        return base64.b64decode(data["b"])
    if "r" in data:
        return RaggedTensor(decode(data["r"][0]), decode(data["r"][1]))
    if "e" in data:
        cls = getattr(errors, data["e"][0], None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            return cls(data["e"][1])
        return errors.InternalError(f"{data['e'][0]}: {data['e'][1]}")
    if "ds" in data or "dss" in data or "dsr" in data:
        return _decode_dataset(data)
    if "dsa" in data:
        return dataset_array([decode(d) for d in data["dsa"]]).reshape(data["shape"])
    if "s" in data:
        arr = np.empty(len(data["s"]), dtype=object)
        arr[:] = [base64.b64decode(v) for v in data["s"]]
        return arr.reshape(data["shape"])
    if "a" in data:
        arr = np.frombuffer(base64.b64decode(data["a"]), dtype=np.dtype(data["dtype"]))
        arr = arr.reshape(data["shape"]).copy()
        return arr[()] if data.get("scalar") else arr
    if "p" in data:
        return data["p"]
    raise ValueError(f"not an encoded element: {data!r:.100}")
