"""Component specs: dtypes and shapes of queue elements, and validation of incoming batches.

A queue element is a tuple of components. Inside the core every operation works on *batches*: a
tuple of numpy arrays that share a leading dimension, the element count. A single ``enqueue`` is a
batch of one. Strings (TensorFlow's ``tf.string``) are numpy object arrays holding ``bytes``.
"""

from __future__ import annotations

import math

from typing import Any, Iterable, Sequence

import numpy as np

from queueserver.errors import InvalidArgumentError, ResourceExhaustedError

Shape = tuple  # of int | None
Batch = tuple  # of np.ndarray, each with a leading element-count dimension

STRING = np.dtype(object)
_STRING_NAMES = {"string", "str", "bytes", "object", "tf.string"}


def as_dtype(spec: Any) -> np.dtype:
    """Normalise a dtype spec (numpy dtype, type, or name; ``"string"``/``bytes`` for strings).

    Raises:
        InvalidArgumentError: for anything numpy does not know or that is not a plain value type.
    """
    if spec is str or spec is bytes or (isinstance(spec, str) and spec in _STRING_NAMES):
        return STRING
    try:
        dtype = np.dtype(spec)
    except TypeError as exc:
        raise InvalidArgumentError(f"unknown dtype {spec!r}") from exc
    if dtype.kind in "SUO":
        return STRING
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise InvalidArgumentError(f"unsupported dtype {spec!r}: use numeric, bool or string")
    return dtype.newbyteorder("=") if dtype.byteorder not in "=|" else dtype


def dtype_name(dtype: np.dtype) -> str:
    """The short name used in messages and on the wire: ``float32``, ``string``."""
    return "string" if dtype == STRING or dtype.kind in "SU" else dtype.name  # text a user passed: not "str32"


MAX_RANK = 64  # NumPy's limit on an array's dimensions


def as_shape(spec: Any) -> Shape | None:
    """Normalise one component's shape: a sequence of ints or ``None`` (unknown size); ``None`` = unshaped."""
    if spec is None:
        return None
    if isinstance(spec, (int, np.integer)):
        spec = [spec]
    if not isinstance(spec, (list, tuple)):
        raise InvalidArgumentError(f"a shape is a list of dimensions, got {spec!r}")
    if len(spec) > MAX_RANK:
        raise InvalidArgumentError(f"shape {list(spec)} has {len(spec)} dimensions; at most {MAX_RANK} are supported")
    dims: list[int | None] = []
    for dim in spec:
        if dim is None or (isinstance(dim, (int, np.integer)) and int(dim) == -1):
            dims.append(None)
        elif isinstance(dim, (int, np.integer)) and int(dim) >= 0:
            dims.append(int(dim))
        else:
            raise InvalidArgumentError(f"bad dimension {dim!r} in shape {spec!r}")
    return tuple(dims)


def allocate(shape: Sequence[int], dtype: Any, what: str, fill: Any = None) -> np.ndarray:
    """A new array (zeros with ``fill=0``), or ResourceExhaustedError naming ``what`` when it cannot
    be allocated (a shape a client asked for is too large: numpy raises ValueError or MemoryError)."""
    try:
        return np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)
    except (ValueError, MemoryError):
        raise ResourceExhaustedError(
            f"{what}: an array of shape {shape_str(shape)} ({dtype_name(np.dtype(dtype))}) cannot be allocated") from None


def shape_str(shape: Iterable) -> str:
    """TensorFlow's way of printing a shape in messages: ``[2,3]`` with ``?`` for unknown sizes."""
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def shape_compatible(declared: Shape, actual: Sequence[int]) -> bool:
    """True when ``actual`` has the declared rank and matches every known dimension."""
    return len(declared) == len(actual) and all(d is None or d == a for d, a in zip(declared, actual))


class ComponentSpec:
    """The dtypes, shapes and optional names of a queue's components.

    Args:
        dtypes: one dtype per component.
        shapes: one shape per component, or ``None`` when elements may have any shape.
        names: optional component names (TensorFlow's ``names=``), which make elements dicts.
    """

    def __init__(self, dtypes: Sequence[Any], shapes: Sequence[Any] | None = None,
                 names: Sequence[str] | None = None) -> None:
        if isinstance(dtypes, (str, np.dtype, type)):
            dtypes = [dtypes]
        if not isinstance(dtypes, (list, tuple)):
            raise InvalidArgumentError(f"dtypes is a list of dtypes, one per component, got {dtypes!r}")
        if not dtypes:
            raise InvalidArgumentError("a queue needs at least one component dtype")
        self.dtypes = tuple(as_dtype(d) for d in dtypes)
        if shapes is not None:
            if not isinstance(shapes, (list, tuple)):
                raise InvalidArgumentError(f"shapes is a list of shapes, one per component, got {shapes!r}")
            if all(s is None or isinstance(s, (int, np.integer)) for s in shapes):
                # TensorFlow's reading: a list of plain dimensions (``(3, 2)``, ``()``) is one shape,
                # the one component's: FIFOQueue(10, tf.float32, shapes=(3, 2)).
                shapes = [shapes]
            shapes = list(shapes)
            if len(shapes) != len(self.dtypes):
                raise InvalidArgumentError(
                    f"shapes has {len(shapes)} entries but dtypes has {len(self.dtypes)}: give one shape per component")
            self.shapes: tuple | None = tuple(as_shape(s) for s in shapes)
            if any(s is None for s in self.shapes):
                raise InvalidArgumentError("give every component a shape, or none of them")
        else:
            self.shapes = None
        if isinstance(names, str):
            names = [names]  # TensorFlow's spelling of one component's name: names="f"
        if names is not None:
            if not isinstance(names, (list, tuple)):
                raise InvalidArgumentError(f"names is a list of component names, got {names!r}")
            names = tuple(str(n) for n in names)
            if len(names) != len(self.dtypes) or len(set(names)) != len(names):
                raise InvalidArgumentError(f"names {list(names)} must be unique, one per component")
        self.names = names
        # Per component, what the common case needs to match exactly (numeric dtype and a fully
        # known element shape): checked first, so a well-formed element skips the general checks.
        self._exact = tuple(
            (d, None if self.shapes is None or None in self.shapes[i] or d == STRING else self.shapes[i])
            for i, d in enumerate(self.dtypes))

    @property
    def fixed_layout(self) -> tuple[tuple[np.dtype, tuple, int], ...] | None:
        """Per component ``(dtype, shape, nbytes)`` when one element is a fixed run of bytes (numeric
        dtypes, fully known shapes), else None. Such elements can travel as bare bytes: the spec
        both ends hold says how to cut them (the wire's compact frames)."""
        if not self.fully_defined or any(d == STRING for d in self.dtypes):
            return None
        shapes: Any = self.shapes  # fully defined: a shape for every component
        return tuple((d, s, math.prod(s) * d.itemsize) for d, s in zip(self.dtypes, shapes))

    @property
    def fully_defined(self) -> bool:
        """True when every component has a shape with no unknown dimension."""
        return self.shapes is not None and all(None not in s for s in self.shapes)

    def to_wire(self) -> dict:
        """Plain data for the wire and for spec comparison."""
        return {
            "dtypes": [dtype_name(d) for d in self.dtypes],
            "shapes": None if self.shapes is None else [[-1 if d is None else d for d in s] for s in self.shapes],
            "names": None if self.names is None else list(self.names),
        }

    @classmethod
    def from_wire(cls, data: dict) -> "ComponentSpec":
        """Inverse of :meth:`to_wire`."""
        return cls(data["dtypes"], data.get("shapes"), data.get("names"))

    def validate_batch(self, components: Sequence[np.ndarray], *, many: bool) -> Batch:
        """Check a batch against the spec and return it with a leading count dimension.

        Args:
            components: the arrays the caller sent, one per component.
            many: True for ``enqueue_many`` (the first dimension is already the count).

        Raises:
            InvalidArgumentError: wrong component count, dtype or shape; the queue is unchanged.
        """
        if len(components) != len(self.dtypes):
            raise InvalidArgumentError(
                f"expected {len(self.dtypes)} component(s), got {len(components)}")
        if not many:
            out = []
            for arr, (dtype, shape) in zip(components, self._exact):
                if shape is None or type(arr) is not np.ndarray or arr.dtype != dtype or arr.shape != shape:
                    break  # anything else takes the general path, which names what is wrong
                out.append(arr[np.newaxis])
            else:
                return tuple(out)
        out = []
        count = None
        for i, (arr, dtype) in enumerate(zip(components, self.dtypes)):
            arr = _checked_dtype(i, arr, dtype)
            if many:
                if arr.ndim == 0:
                    raise InvalidArgumentError(
                        f"enqueue_many needs a leading element dimension, but component {i} is a scalar")
                if count is None:
                    count = arr.shape[0]
                out.append(self._checked_many(i, arr, count))
            else:
                if self.shapes is not None and not shape_compatible(self.shapes[i], arr.shape):
                    raise InvalidArgumentError(
                        f"Shape mismatch in tuple component {i}. Expected {shape_str(self.shapes[i])}, got {shape_str(arr.shape)}")
                out.append(arr[np.newaxis])
        return tuple(out)

    def _checked_many(self, i: int, arr: np.ndarray, count: int) -> np.ndarray:
        """Component ``i`` of an ``enqueue_many`` batch of ``count`` elements, checked."""
        if self.shapes is not None:
            expected = (count,) + self.shapes[i]
            if not shape_compatible(expected, arr.shape):
                raise InvalidArgumentError(
                    f"Shape mismatch in tuple component {i}. Expected {shape_str(expected)}, got {shape_str(arr.shape)}")
        elif arr.shape[0] != count:
            raise InvalidArgumentError(
                f"Shape mismatch in tuple component {i}. Expected first dimension {count}, got {arr.shape[0]}")
        return arr

    def describe(self) -> str:
        """Human-readable spec for status output."""
        parts = []
        for i, d in enumerate(self.dtypes):
            shape = "?" if self.shapes is None else shape_str(self.shapes[i])
            name = f"{self.names[i]}:" if self.names else ""
            parts.append(f"{name}{dtype_name(d)}{shape}")
        return "(" + ", ".join(parts) + ")"


def _checked_dtype(i: int, arr: Any, dtype: np.dtype) -> np.ndarray:
    """Component ``i`` as an array of ``dtype`` (text becomes bytes objects for strings), or the error."""
    if not isinstance(arr, np.ndarray):
        raise InvalidArgumentError(f"component {i} is not an array")
    if arr.dtype != dtype and not (dtype == STRING and arr.dtype.kind in "OSU"):
        raise InvalidArgumentError(
            f"Type mismatch in tuple component {i}. Expected {dtype_name(dtype)}, got {dtype_name(arr.dtype)}")
    if dtype == STRING and arr.dtype != STRING:
        arr = _to_bytes_objects(arr, i)
    return arr


def _to_bytes_objects(arr: np.ndarray, index: int) -> np.ndarray:
    """Text as a string component ``index`` holds it: bytes as they are, str as UTF-8.

    Raises:
        InvalidArgumentError: an element is not bytes or str (``5`` would become five zero bytes),
            in TensorFlow's words: "Expected string, but got 5 of type 'int'".
    """
    out = np.empty(arr.shape, dtype=object)
    flat = out.reshape(-1)
    for j, v in enumerate(arr.reshape(-1)):
        if isinstance(v, str):
            flat[j] = v.encode()
        elif isinstance(v, (bytes, bytearray, memoryview)):
            flat[j] = bytes(v)
        else:
            raise InvalidArgumentError(f"Type mismatch in tuple component {index}. Expected string,"
                                       f" but got {v!r} of type '{type(v).__name__}'")
    return out


def batch_count(batch: Batch) -> int:
    """Number of elements in a batch."""
    return int(batch[0].shape[0])


def concat_batches(batches: Sequence[Batch]) -> Batch:
    """Join batches along the element axis; one batch is returned as it is (no copy)."""
    if len(batches) == 1:
        return batches[0]
    return tuple(np.concatenate([b[i] for b in batches]) for i in range(len(batches[0])))


def empty_batch(spec: ComponentSpec) -> Batch:
    """A batch of zero elements with the spec's shapes (unknown dimensions become 0)."""
    comps = []
    for i, dtype in enumerate(spec.dtypes):
        shape = () if spec.shapes is None else tuple(0 if d is None else d for d in spec.shapes[i])
        comps.append(np.empty((0,) + shape, dtype=dtype))
    return tuple(comps)


def pad_batches(batches: Sequence[Batch], spec: ComponentSpec) -> Batch:
    """Stack elements of differing sizes, padding each component with zeros (b"" for strings)."""
    out = []
    for i, dtype in enumerate(spec.dtypes):
        parts = [b[i] for b in batches]
        rank = parts[0].ndim
        target = [sum(p.shape[0] for p in parts)] + [max(p.shape[d] for p in parts) for d in range(1, rank)]
        if dtype == STRING:
            result = np.full(target, b"", dtype=object)
        else:
            result = np.zeros(target, dtype=dtype)
        row = 0
        for p in parts:
            index = (slice(row, row + p.shape[0]),) + tuple(slice(0, s) for s in p.shape[1:])
            result[index] = p
            row += p.shape[0]
        out.append(result)
    return tuple(out)


def cast_exact(arr: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """``arr`` as ``dtype``, refusing integers outside ``dtype``'s range instead of wrapping them
    (2**40 into int32, 300 or -1 into uint8), one vectorised min/max for the whole array.

    Raises:
        InvalidArgumentError: a value is out of range, naming it, the dtype and ``what``.
    """
    if arr.dtype == dtype:
        return arr
    if dtype.kind in "iu" and arr.dtype.kind in "iu" and arr.size:
        info = np.iinfo(dtype)
        low, high = arr.min(), arr.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidArgumentError(
                f"{what}: value {int(bad)} is out of range for {dtype_name(dtype)} ({info.min} to {info.max})")
    return arr.astype(dtype)


_INT32 = np.iinfo(np.int32)


def default_array(value: Any) -> np.ndarray:
    """``value`` as an array of the dtype TensorFlow gives it when none is named (``tf.Variable(5)``):
    a NumPy array or scalar keeps its own (``np.float64(1.5)``: float64); Python floats, and lists
    of numbers with one, become float32; Python ints, and lists of them, int32 (int64 when one does
    not fit, as TensorFlow does); bools, complex numbers and text keep NumPy's reading."""
    arr = np.asarray(value)
    if isinstance(value, (np.ndarray, np.generic)):
        return arr
    if arr.dtype == np.float64:
        return arr.astype(np.float32)
    if arr.dtype == np.int64 and (arr.size == 0 or (arr.min() >= _INT32.min and arr.max() <= _INT32.max)):
        return arr.astype(np.int32)
    return arr


def coerce_component(value: Any, dtype: np.dtype, index: int) -> np.ndarray:
    """Turn a user's value into component ``index`` of ``dtype``: text into bytes for a string
    component (anything else refused), numbers by :func:`coerce_value`.

    Raises:
        InvalidArgumentError: the value cannot be represented in ``dtype`` without changing kind.
    """
    if dtype == STRING:
        arr = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
        if arr.dtype.kind not in "OSU":
            raise InvalidArgumentError(f"Type mismatch in tuple component {index}. Expected string, got {dtype_name(arr.dtype)}")
        return _to_bytes_objects(arr, index)
    return coerce_value(value, dtype, f"tuple component {index}")


def coerce_value(value: Any, dtype: np.dtype, what: str) -> np.ndarray:
    """Turn a user's value (a queue's component, a variable's initial value) into an array of
    numeric ``dtype`` where the conversion loses no kind of meaning.

    Python numbers and lists convert freely within a kind (``1.0`` into float32, ``3`` into int64,
    ``2`` into float32); a float into an integer dtype, or a complex into a float one, is refused,
    as TensorFlow refuses it, never truncated; integers are range-checked (:func:`cast_exact`).

    Raises:
        InvalidArgumentError: the value cannot be represented in ``dtype`` without changing kind,
            naming ``what``.
    """
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype == dtype:
        return value if isinstance(value, np.ndarray) else np.asarray(value)
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype == dtype:
        return arr
    if arr.size == 0 and isinstance(value, (list, tuple)):
        return np.empty(arr.shape, dtype)  # an empty list has no dtype of its own: it takes the target's
    if arr.dtype.kind in "OSU" or not np.can_cast(arr.dtype, dtype, casting="same_kind"):
        if not (arr.dtype.kind in "bui" and dtype.kind in "biuf"):
            raise InvalidArgumentError(
                f"Type mismatch in {what}. Expected {dtype_name(dtype)}, got {dtype_name(arr.dtype)}"
                + (f" ({value!r})" if arr.size == 1 else ""))
    return cast_exact(arr, dtype, what)
