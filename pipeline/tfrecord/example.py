"""``tf.train.Example`` without TensorFlow or protobuf: ``encode_example`` and ``parse_example``.

``encode_example`` writes the same bytes as TensorFlow's ``SerializeToString(deterministic=True)``
(map keys sorted, packed float and int64 lists); ``parse_example`` reads packed and unpacked lists,
with a vectorised path for batches of records that share one layout (every ``float_list`` of a batch
becomes one ``np.frombuffer`` view). The feature specs (:class:`FixedLenFeature`,
:class:`VarLenFeature`) and :class:`SparseTensor` results live here too; the vectorised path
(``_parse_rows_fast``) is shared with :mod:`pipeline.tfrecord.bulk`.

Example:
    >>> s = encode_example({"x": np.array([1.5, 2.5], np.float32), "y": [7]})
    >>> parse_example(s)["y"]
    array([7])
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from pipeline.blocks import FramedBlock, RecordBlock, accepts_blocks
from queueserver.errors import InvalidArgumentError

__all__ = ["encode_example", "parse_example", "FixedLenFeature", "VarLenFeature", "SparseTensor"]


# ------------------------------------------------------------------------------------------------
# tf.train.Example: protobuf wire format by hand
# ------------------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    """Protobuf varint of a non-negative int (negative int64 values pass as n mod 2**64)."""
    if n < 0:
        n += 1 << 64
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _encode_varints(values: np.ndarray) -> bytes:
    """Packed varints of an int64 array, vectorised over values."""
    v = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64).ravel()
    if v.size <= 8:
        return b"".join(_varint(x) for x in v.tolist())
    if not (v >> np.uint64(7)).any():
        return v.astype(np.uint8).tobytes()
    nbytes = np.ones(v.size, np.int64)
    for k in range(1, 10):
        nbytes += v >= np.uint64(1 << (7 * k))
    starts = np.cumsum(nbytes) - nbytes
    out = np.empty(int(nbytes.sum()), np.uint8)
    for j in range(10):
        m = nbytes > j
        if not m.any():
            break
        byte = ((v[m] >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        byte |= (nbytes[m] > j + 1).astype(np.uint8) << np.uint8(7)
        out[starts[m] + j] = byte
    return out.tobytes()


def _ld(field_tag: int, payload: bytes) -> bytes:
    """A length-delimited field: tag byte, varint length, payload."""
    return bytes((field_tag,)) + _varint(len(payload)) + payload


def _feature_bytes(name: str, value: Any) -> bytes:
    """Serialise one Feature message, choosing the list type from the value's type."""
    if isinstance(value, (bytes, bytearray, str)):
        value = [value]
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind in "SUO":
            items = value.ravel().tolist()
            kind = "b"
        elif kind == "f":
            kind = "f"
        elif kind in "iub":
            kind = "i"
        else:
            raise InvalidArgumentError(f"feature {name!r}: cannot store dtype {value.dtype} in an Example")
        arr = value
    elif isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise InvalidArgumentError(
                f"feature {name!r}: cannot tell the type of an empty list; pass a typed numpy array "
                f"(np.zeros(0, np.float32), np.zeros(0, np.int64) or np.array([], object))"
            )
        if all(isinstance(x, (bytes, bytearray, str, np.bytes_)) for x in value):
            items, kind, arr = list(value), "b", None
        else:
            arr = np.asarray(value)
            kind = "f" if arr.dtype.kind == "f" else "i" if arr.dtype.kind in "iub" else None
            if kind is None:
                raise InvalidArgumentError(f"feature {name!r}: cannot store {value!r} in an Example")
    elif isinstance(value, (float, np.floating)):
        arr, kind = np.asarray([value]), "f"
    elif isinstance(value, (int, np.integer, bool, np.bool_)):
        arr, kind = np.asarray([value]), "i"
    else:
        raise InvalidArgumentError(f"feature {name!r}: cannot store a {type(value).__name__} in an Example")

    if kind == "b":
        lst = b"".join(_ld(0x0A, x.encode() if isinstance(x, str) else bytes(x)) for x in items)
        return _ld(0x0A, lst)  # Feature.bytes_list = 1
    if kind == "f":
        payload = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        return _ld(0x12, _ld(0x0A, payload) if payload else b"")  # Feature.float_list = 2, packed
    payload = _encode_varints(np.asarray(arr).astype(np.int64, copy=False))
    return _ld(0x1A, _ld(0x0A, payload) if payload else b"")  # Feature.int64_list = 3, packed


def encode_example(features: Mapping[str, Any]) -> bytes:
    """Serialise a ``tf.train.Example``, byte for byte as ``SerializeToString(deterministic=True)``.

    The list type of each feature follows its value: float arrays and Python floats go to
    ``float_list`` (stored as float32), integer and bool arrays and Python ints to ``int64_list``,
    ``bytes``/``str`` (or lists and object arrays of them) to ``bytes_list``. Scalars become
    one-element lists. Map keys are written sorted, as TensorFlow's deterministic serialisation does.

    Args:
        features: feature name -> value.

    Returns:
        The serialised Example. An empty dict gives ``b""``, what ``tf.train.Example()``
        serialises to (both parse to an Example without features).

    Raises:
        InvalidArgumentError: a value whose type cannot be stored (or an untyped empty list).

    Example:
        >>> encode_example({"y": [7]}).hex()
        '0a0c0a0a0a017912051a030a0107'
    """
    entries = []
    for key in sorted(features, key=lambda k: k.encode() if isinstance(k, str) else bytes(k)):
        kb = key.encode() if isinstance(key, str) else bytes(key)
        entry = _ld(0x0A, kb) + _ld(0x12, _feature_bytes(str(key), features[key]))
        entries.append(_ld(0x0A, entry))
    if not entries:
        return b""
    return _ld(0x0A, b"".join(entries))


class _ParseError(Exception):
    """Malformed protobuf bytes (turned into InvalidArgumentError with the record index)."""


def _read_varint(buf: bytes, p: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if p >= end:
            raise _ParseError("truncated varint")
        b = buf[p]
        p += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, p
        shift += 7
        if shift >= 70:
            raise _ParseError("varint longer than 10 bytes")


def _skip_field(buf: bytes, p: int, end: int, wire: int) -> int:
    if wire == 0:
        return _read_varint(buf, p, end)[1]
    if wire == 1:
        p += 8
    elif wire == 2:
        n, p = _read_varint(buf, p, end)
        p += n
    elif wire == 5:
        p += 4
    else:
        raise _ParseError(f"unsupported wire type {wire}")
    if p > end:
        raise _ParseError("field runs past the end of its message")
    return p


def _decode_varints(payload: bytes) -> np.ndarray:
    """Packed varints -> int64 array, vectorised (values of 1 byte take a single astype)."""
    u = np.frombuffer(payload, np.uint8)
    if u.size == 0:
        return np.empty(0, np.int64)
    if u.max() < 0x80:
        return u.astype(np.int64)
    ends = np.flatnonzero(u < 0x80)
    if ends.size == 0 or ends[-1] != u.size - 1:
        raise _ParseError("truncated packed varint list")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lens = ends - starts + 1
    if lens.max() > 10:
        raise _ParseError("varint longer than 10 bytes")
    pos = np.arange(u.size) - np.repeat(starts, lens)
    contrib = (u & 0x7F).astype(np.uint64) << (pos.astype(np.uint64) * np.uint64(7))
    return np.bitwise_or.reduceat(contrib, starts).view(np.int64)


# Feature kinds: 'b' bytes_list, 'f' float_list, 'i' int64_list.
_KIND_NAMES: dict[str | None, str] = {"b": "string", "f": "float", "i": "int64"}


def _parse_list(buf: bytes, p: int, end: int, kind: str, parts: list) -> None:
    """Parse one BytesList/FloatList/Int64List message into ``parts`` (arrays or bytes)."""
    while p < end:
        tag, p = _read_varint(buf, p, end)
        field, wire = tag >> 3, tag & 7
        if field != 1:
            p = _skip_field(buf, p, end, wire)
            continue
        if kind == "b":
            if wire != 2:
                raise _ParseError("bytes_list value with a wrong wire type")
            n, p = _read_varint(buf, p, end)
            if p + n > end:
                raise _ParseError("bytes_list value runs past the end")
            parts.append(buf[p : p + n])
            p += n
        elif kind == "f":
            if wire == 2:  # packed
                n, p = _read_varint(buf, p, end)
                if p + n > end or n % 4:
                    raise _ParseError("bad packed float_list")
                parts.append(np.frombuffer(buf, "<f4", n // 4, p))
                p += n
            elif wire == 5:  # unpacked: one float per tag
                if p + 4 > end:
                    raise _ParseError("truncated float")
                parts.append(np.frombuffer(buf, "<f4", 1, p))
                p += 4
            else:
                raise _ParseError("float_list value with a wrong wire type")
        else:
            if wire == 2:  # packed
                n, p = _read_varint(buf, p, end)
                if p + n > end:
                    raise _ParseError("packed int64_list runs past the end")
                parts.append(_decode_varints(buf[p : p + n]))
                p += n
            elif wire == 0:  # unpacked
                v, p = _read_varint(buf, p, end)
                parts.append(np.array([v], np.uint64).view(np.int64))
            else:
                raise _ParseError("int64_list value with a wrong wire type")


def _parse_feature(buf: bytes, p: int, end: int) -> tuple[str | None, list]:
    kind: str | None = None
    parts: list = []
    while p < end:
        tag, p = _read_varint(buf, p, end)
        field, wire = tag >> 3, tag & 7
        if field in (1, 2, 3) and wire == 2:
            n, p = _read_varint(buf, p, end)
            sub_end = min(p + n, end)
            new_kind = "bfi"[field - 1]
            if new_kind != kind:  # a oneof: a different member replaces; the same one merges
                kind, parts = new_kind, []
            _parse_list(buf, p, sub_end, new_kind, parts)
            p = sub_end
        else:
            p = _skip_field(buf, p, end, wire)
    return kind, parts


def _values(kind: str | None, parts: list) -> np.ndarray:
    if kind == "b":
        arr = np.empty(len(parts), object)
        arr[:] = parts
        return arr
    if kind == "f":
        if len(parts) == 1:
            return parts[0].astype(np.float32)  # native, aligned, writable copy
        return np.concatenate(parts).astype(np.float32) if parts else np.empty(0, np.float32)
    if kind == "i":
        if len(parts) == 1:
            return parts[0].astype(np.int64, copy=len(parts[0]) != 1 or parts[0].flags.writeable is False)
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)
    return np.empty(0, np.float32)


def _parse_example_raw(buf: bytes) -> dict[str, tuple[str | None, list]]:
    """Parse an Example into name -> (kind, parts); TensorFlow's leniency on truncated tails kept."""
    feats: dict[str, tuple[str | None, list]] = {}
    p, end = 0, len(buf)
    while p < end:
        tag, p = _read_varint(buf, p, end)
        field, wire = tag >> 3, tag & 7
        if field == 1 and wire == 2:  # Example.features
            n, p = _read_varint(buf, p, end)
            # TensorFlow's parser reads a sub-message that claims more bytes than remain up to
            # the end of the input, so b"\n\x05" parses as an empty Example.
            f_end = min(p + n, end)
            while p < f_end:
                # TensorFlow's parser (example_proto_fast_parsing.cc): a Features message holds
                # map entries only; an entry's length past the Features' end reads to that end (as
                # above), but its key and value must lie within it, and it holds exactly two
                # fields (key and value, in any order; a repeated one replaces the first).
                tag, p = _read_varint(buf, p, f_end)
                if tag != 0x0A:
                    raise _ParseError("a Features field that is not a feature map entry")
                m, p = _read_varint(buf, p, f_end)
                e_end = min(p + m, f_end)
                key, kind = "", None
                parts: list = []
                for _field in range(2):
                    tag, p = _read_varint(buf, p, e_end)
                    if tag != 0x0A and tag != 0x12:
                        raise _ParseError("a feature map entry without its name and value")
                    k, p = _read_varint(buf, p, e_end)
                    if p + k > e_end:
                        raise _ParseError(f"feature {'name' if tag == 0x0A else 'value'} runs past the end of its entry")
                    if tag == 0x0A:
                        key = buf[p : p + k].decode("utf-8", "surrogateescape")
                    else:
                        kind, parts = _parse_feature(buf, p, p + k)
                    p += k
                if p != e_end:
                    raise _ParseError("a feature map entry with more than its name and value")
                feats[key] = (kind, parts)  # map semantics: the last entry for a key wins
            p = f_end
        else:
            p = _skip_field(buf, p, end, wire)
    return feats


@dataclass(frozen=True)
class FixedLenFeature:
    """A feature with a fixed number of values, like ``tf.io.FixedLenFeature``.

    Args:
        shape: the shape of one record's values (``[]`` for a scalar; an int ``n`` means ``[n]``,
            as TensorFlow's ``TensorShape`` reads it). ``None`` is refused by the parser with
            TensorFlow's ``ValueError("Missing shape for feature ...")``.
        dtype: ``np.float32``, ``np.int64`` or ``bytes`` (also ``"float32"``, ``"int64"``,
            ``"string"``, ``str``, ``object``).
        default_value: used when a record lacks the feature; ``None`` makes it required. As in
            TensorFlow it is reshaped to ``shape``, so it must hold exactly as many values (a
            flat list for a multi-dimensional shape, or a scalar when the shape holds one value);
            otherwise the parser raises ``ValueError("Cannot reshape a tensor with ...")``.
    """

    shape: Any  # a sequence of ints (an int n is [n]); None is refused when parsing
    dtype: Any
    default_value: Any = None


@dataclass(frozen=True)
class VarLenFeature:
    """A feature with any number of values per record, parsed to a :class:`SparseTensor`.

    Args:
        dtype: ``np.float32``, ``np.int64`` or ``bytes`` (as for :class:`FixedLenFeature`).
    """

    dtype: Any


SparseTensor = namedtuple("SparseTensor", ["indices", "values", "dense_shape"])
SparseTensor.__doc__ = """A sparse result, like ``tf.SparseTensor``: ``indices`` int64 ``(n, rank)``,
``values`` ``(n,)``, ``dense_shape`` int64 ``(rank,)``."""


def _kind_of(dtype: Any, name: str) -> str:
    if dtype in (bytes, str, object, "string", "bytes", "str"):
        return "b"
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is not None:
        if dt == np.float32:
            return "f"
        if dt == np.int64:
            return "i"
        if dt.kind in "SUO":
            return "b"
    raise InvalidArgumentError(
        f"feature {name!r}: dtype must be float32, int64 or string (bytes), got {dtype!r}"
    )


def _empty(kind: str) -> np.ndarray:
    empty: dict[str, np.ndarray] = {"f": np.empty(0, np.float32), "i": np.empty(0, np.int64), "b": np.empty(0, object)}
    return empty[kind]


def _as_kind(values: Any, kind: str) -> np.ndarray:
    if kind == "b":
        arr = np.empty(np.shape(values), object)
        flat = [v.encode() if isinstance(v, str) else v for v in np.asarray(values, object).ravel().tolist()]
        arr.ravel()[:] = flat if arr.ndim else flat[0]
        if arr.ndim == 0:
            arr = np.array(flat[0], object)
        return arr
    return np.asarray(values, np.float32 if kind == "f" else np.int64)


def _record_error(i: int, n: int, message: str, **details: Any) -> InvalidArgumentError:
    where = f" (record {i} of the batch)" if n > 1 or i else ""
    return InvalidArgumentError(message + where, record=i, **details)


def _dense_value(
    name: str, spec: FixedLenFeature, kind: str, got: tuple[str | None, list] | None, i: int, n: int
) -> np.ndarray:
    shape = tuple(int(s) for s in spec.shape)
    size = int(np.prod(shape)) if shape else 1
    if got is None or (got[0] is None and not got[1]):
        if spec.default_value is None:
            raise _record_error(
                i, n, f"Feature: {name} (data type: {_KIND_NAMES[kind]}) is required but could not be found.",
                feature=name,
            )
        return np.broadcast_to(_as_kind(spec.default_value, kind), shape).copy()
    gkind, parts = got
    if gkind != kind:
        raise _record_error(
            i, n,
            f"Key: {name}.  Data types don't match. Data type: {_KIND_NAMES.get(gkind, 'none')} "
            f"but expected type: {_KIND_NAMES[kind]}",
            feature=name,
        )
    vals = _values(gkind, parts)
    if vals.size != size:
        raise _record_error(
            i, n,
            f"Key: {name}.  Can't parse serialized Example: Some {_KIND_NAMES[kind].replace('string', 'bytes')}"
            f"{'_list' if kind != 'f' else '_list'} slice was not parsed. (feature {name!r} has "
            f"{vals.size} values, but shape {list(shape)} needs {size})",
            feature=name,
        )
    return vals.reshape(shape)


def _as_batch(serialized: Any) -> tuple[list[bytes], bool]:
    if isinstance(serialized, (bytes, bytearray, memoryview)):
        return [bytes(serialized)], True
    if isinstance(serialized, np.ndarray) and serialized.ndim == 0:
        return [bytes(serialized.item())], True
    recs = serialized.ravel().tolist() if isinstance(serialized, np.ndarray) else list(serialized)
    return [bytes(r) for r in recs], False


def _parse_raw_or_raise(rec: bytes, i: int, n: int) -> dict:
    try:
        return _parse_example_raw(rec)
    except _ParseError as e:
        raise _record_error(
            i, n, f"Could not parse example input, value: {rec[:64]!r}{'...' if len(rec) > 64 else ''} ({e})"
        ) from None


# -- vectorised batch path -----------------------------------------------------------------------
def _layout(rec: bytes) -> dict[str, tuple[str, int, int]] | None:
    """Where each feature's values sit in ``rec``: name -> (kind, start, end), if simple.

    "Simple" means each feature's values are one packed float/int64 payload or one bytes value,
    which is how TensorFlow writes them. Anything else returns None (use the general parser).
    """
    out: dict[str, tuple[str, int, int]] = {}
    try:
        p, end = 0, len(rec)
        if end == 0:
            return out
        tag, p = _read_varint(rec, p, end)
        if tag != 0x0A:
            return None
        n, p = _read_varint(rec, p, end)
        if p + n != end:
            return None
        while p < end:
            tag, p = _read_varint(rec, p, end)
            if tag != 0x0A:
                return None
            m, p = _read_varint(rec, p, end)
            e_end = p + m
            tag, p = _read_varint(rec, p, e_end)
            if tag != 0x0A or e_end > end:  # (an entry past the record's end: the general path says what)
                return None
            k, p = _read_varint(rec, p, e_end)
            key = rec[p : p + k].decode("utf-8", "surrogateescape")
            p += k
            tag, p = _read_varint(rec, p, e_end)
            if tag != 0x12 or key in out:
                return None
            k, p = _read_varint(rec, p, e_end)
            if p + k != e_end:
                return None
            ftag, p = _read_varint(rec, p, e_end)
            if ftag not in (0x0A, 0x12, 0x1A):
                return None
            kind = "bfi"[(ftag >> 3) - 1]
            ln, p = _read_varint(rec, p, e_end)
            if p + ln != e_end:
                return None
            if ln == 0:
                out[key] = (kind, p, p)
                continue
            tag, p = _read_varint(rec, p, e_end)
            if tag != 0x0A:
                return None
            vl, p = _read_varint(rec, p, e_end)
            if p + vl != e_end or (kind == "f" and vl % 4):
                return None
            out[key] = (kind, p, p + vl)
            p = e_end
    except _ParseError:
        return None
    return out


def _parse_batch_fast(recs: list[bytes], spec: Mapping[str, Any], kinds: dict[str, str]) -> dict | None:
    """Parse a batch of identically laid-out records with array operations, or return None."""
    n = len(recs)
    if n < 2:
        return None
    length = len(recs[0])
    if length == 0 or any(len(r) != length for r in recs):
        return None
    return _parse_rows_fast(np.frombuffer(b"".join(recs), np.uint8).reshape(n, length), spec, kinds)


def _parse_rows_fast(arr: np.ndarray, spec: Mapping[str, Any], kinds: dict[str, str]) -> dict | None:
    """Parse ``arr`` (n records of one length, as a possibly strided uint8 view), or return None.

    The first record's layout is read once; every other record must hold the same bytes outside
    the value payloads (compared as arrays), and each feature is then one slice of ``arr``.
    """
    n = arr.shape[0]
    layout = _layout(arr[0].tobytes())
    if layout is None:
        return None
    length = arr.shape[1]
    row0 = arr[0]
    payload = np.zeros(length, bool)
    for _kind, s, e in layout.values():
        payload[s:e] = True
    skeleton = np.flatnonzero(~payload)
    if skeleton.size and not (arr[:, skeleton] == row0[skeleton]).all():
        return None
    out: dict[str, Any] = {}
    for name, sp in spec.items():
        kind = kinds[name]
        if name not in layout:
            if isinstance(sp, VarLenFeature):
                out[name] = SparseTensor(np.empty((0, 2), np.int64), _empty(kind), np.array([n, 0], np.int64))
            else:
                one = _dense_value(name, sp, kind, None, 0, n)
                out[name] = np.broadcast_to(one, (n,) + one.shape).copy()
            continue
        gkind, s, e = layout[name]
        if gkind != kind:
            return None  # let the general path raise the exact error
        vals = _rows_values(arr[:, s:e], kind)
        if vals is None:
            return None
        count = vals.shape[1]
        if isinstance(sp, VarLenFeature):
            rows = np.repeat(np.arange(n, dtype=np.int64), count)
            cols = np.tile(np.arange(count, dtype=np.int64), n)
            out[name] = SparseTensor(
                np.stack([rows, cols], axis=1), vals.reshape(-1), np.array([n, count], np.int64)
            )
        else:
            shape = tuple(int(x) for x in sp.shape)
            if count != (int(np.prod(shape)) if shape else 1):
                return None  # the general path raises the exact error
            out[name] = vals.reshape((n,) + shape)
    return out


def _read_rows(block: FramedBlock, spec: Mapping[str, Any], kinds: dict[str, str]) -> dict | None:
    """The batch path's result for ``block``, a batch cut from a larger read, as rows of that
    read's fast parse (:meth:`FramedBlock.read_result`: one parse per read and spec, into arrays
    large enough for the allocator's huge pages, and one copy of the records instead of one per
    batch); None where that does not apply (a spec with defaults or var-len features, a read of
    several runs, records the fast parse declines). The values equal those of parsing the batch
    alone: the fast parse gives each record's values independently of the others'."""
    root = block.root
    if root is None or len(root.runs) != 1:
        return None
    key: list[Any] = ["parse_example"]
    for name, sp in spec.items():
        if not isinstance(sp, FixedLenFeature) or sp.default_value is not None:
            return None
        key.append((name, kinds[name], sp.shape))

    def parse(read: FramedBlock) -> dict | None:
        rows = read.rows()
        return None if rows is None else _parse_rows_fast(rows, spec, kinds)

    at, whole = block.read_result(tuple(key), parse)
    if whole is None:
        return None
    return {name: v[at : at + block.n] for name, v in whole.items()}


def _rows_values(block: np.ndarray, kind: str) -> np.ndarray | None:
    """One feature's values in every row of ``block`` (n, payload bytes), or None if their varints differ."""
    n, width = block.shape
    if kind == "f":
        return np.ascontiguousarray(block).view("<f4").astype(np.float32, copy=False)
    if kind == "b":
        vals = np.empty((n, 1), object)
        vals[:, 0] = [row.tobytes() for row in block]
        return vals
    if width == 0:
        return np.empty((n, 0), np.int64)
    if not (block >= 0x80).any():
        return block.astype(np.int64)
    cont = block >= 0x80
    if not (cont == cont[0]).all():
        return None
    ends = np.flatnonzero(~cont[0])
    if ends.size == 0 or ends[-1] != width - 1:
        return None
    starts = np.concatenate(([0], ends[:-1] + 1))
    lens = ends - starts + 1
    if lens.max() > 10:
        return None
    shift = (np.arange(width) - np.repeat(starts, lens)).astype(np.uint64) * np.uint64(7)
    contrib = (block & 0x7F).astype(np.uint64) << shift
    return np.bitwise_or.reduceat(contrib, starts, axis=1).view(np.int64)


@accepts_blocks("serialized")
def parse_example(serialized: Any, features: Mapping[str, Any] | None = None) -> Any:
    """Parse serialised ``tf.train.Example`` records.

    Without ``features``: one record gives a dict name -> numpy array (``float32`` for
    float_list, ``int64`` for int64_list, an object array of ``bytes`` for bytes_list); a list of
    records gives a list of such dicts.

    With ``features`` (name -> :class:`FixedLenFeature` or :class:`VarLenFeature`): one record
    gives what ``tf.io.parse_single_example`` gives (arrays of each feature's shape, a
    :class:`SparseTensor` with ``(n, 1)`` indices for var-len features); a list or array of records
    gives what ``tf.io.parse_example`` gives (arrays with a leading batch dimension,
    :class:`SparseTensor` with ``(n, 2)`` indices). A batch whose records share one layout (same
    keys, same sizes: what ``encode_example`` of uniform data produces) is parsed with a handful of
    array operations over all records at once.

    Packed and unpacked list encodings are both accepted.

    Args:
        serialized: ``bytes`` (one record) or a sequence / numpy array of ``bytes``.
        features: optional parsing spec.

    Returns:
        A dict (or list of dicts without a spec for a batch).

    Raises:
        InvalidArgumentError: malformed bytes, a required feature missing, a wrong number of
            values or a wrong type; the message names the feature and the record index.
        ValueError: a FixedLenFeature without a shape (or with an unknown dimension), or with a
            ``default_value`` that does not hold exactly the shape's number of values.

    Example:
        >>> s = encode_example({"x": np.array([1.5, 2.5], np.float32), "y": [7]})
        >>> parse_example([s, s], {"x": FixedLenFeature([2], np.float32)})["x"].shape
        (2, 2)
    """
    if isinstance(serialized, RecordBlock):  # a batch of file records from the Data API (pipeline.blocks)
        rows = serialized.rows() if features is not None and type(serialized) is FramedBlock else None
        if rows is not None and rows.shape[0] >= 2 and rows.shape[1]:
            # What the batch path below does with the records joined, on a view of where they lie.
            spec = _checked_features(features)  # type: ignore[arg-type]
            kinds = _feature_kinds(spec)
            fast = _read_rows(serialized, spec, kinds)  # type: ignore[arg-type]
            if fast is None:
                fast = _parse_rows_fast(rows, spec, kinds)
            if fast is not None:
                return fast
        serialized = serialized.materialize()
    recs, single = _as_batch(serialized)
    n = len(recs)
    if features is None:
        dicts = []
        for i, rec in enumerate(recs):
            raw = _parse_raw_or_raise(rec, i, n)
            dicts.append({k: _values(kind, parts) for k, (kind, parts) in raw.items()})
        return dicts[0] if single else dicts

    features = _checked_features(features)
    kinds = _feature_kinds(features)
    if not single:
        fast = _parse_batch_fast(recs, features, kinds)
        if fast is not None:
            return fast
    dense, sparse = _parse_records(recs, features, kinds)
    return _stack_features(dense, sparse, features, kinds, n, single)


def _dense_shape(name: str, sp: FixedLenFeature) -> tuple[int, ...]:
    """The feature's shape as a tuple, checked as TensorFlow's parsing config checks it."""
    if sp.shape is None:
        raise ValueError(f"Missing shape for feature {name}. Received feature={sp}.")
    if isinstance(sp.shape, (int, np.integer)):
        return (int(sp.shape),)  # TensorShape(3) is the vector shape [3]
    dims = tuple(sp.shape)
    if dims and dims[0] is None:
        raise ValueError(
            f"First dimension of shape for feature {name} unknown. Consider using "
            f"FixedLenSequenceFeature. Received feature={sp}."
        )
    if any(d is None or int(d) < 0 for d in dims):
        raise ValueError(f"All dimensions of shape for feature {name} need to be known but received {sp.shape!s}.")
    return tuple(int(d) for d in dims)


def _checked_features(features: Mapping[str, Any]) -> dict[str, Any]:
    """The spec with each FixedLenFeature's shape a tuple and its default reshaped to it.

    Raises:
        ValueError: a missing or partly unknown shape, or a default whose number of values is not
            the shape's, in TensorFlow's words.
    """
    out: dict[str, Any] = {}
    for name, sp in features.items():
        if isinstance(sp, FixedLenFeature):
            shape = _dense_shape(name, sp)
            default = sp.default_value
            if default is not None:
                arr = _as_kind(default, _kind_of(sp.dtype, name))
                size = int(np.prod(shape)) if shape else 1
                if arr.size != size:
                    raise ValueError(
                        f"Cannot reshape a tensor with {arr.size} elements to shape {list(shape)} ({size} "
                        f"elements) for the default_value of feature {name}"
                    )
                default = arr.reshape(shape)
            sp = FixedLenFeature(shape, sp.dtype, default)
        out[name] = sp
    return out


def _feature_kinds(features: Mapping[str, Any]) -> dict[str, str]:
    """Each feature's kind (``"f"``, ``"i"`` or ``"b"``); refuses specs that are not feature specs."""
    kinds = {}
    for name, sp in features.items():
        if not isinstance(sp, (FixedLenFeature, VarLenFeature)):
            raise InvalidArgumentError(f"feature {name!r}: spec must be FixedLenFeature or VarLenFeature, got {sp!r}")
        kinds[name] = _kind_of(sp.dtype, name)
    return kinds


def _parse_records(
    recs: list[bytes], features: Mapping[str, Any], kinds: dict[str, str]
) -> tuple[dict[str, list], dict[str, list]]:
    """The general path: parse every record, giving each dense feature's values and each sparse one's, per record."""
    n = len(recs)
    dense: dict[str, list] = {k: [] for k, sp in features.items() if isinstance(sp, FixedLenFeature)}
    sparse: dict[str, list] = {k: [] for k, sp in features.items() if isinstance(sp, VarLenFeature)}
    for i, rec in enumerate(recs):
        raw = _parse_raw_or_raise(rec, i, n)
        for name, sp in features.items():
            kind = kinds[name]
            got = raw.get(name)
            if isinstance(sp, FixedLenFeature):
                dense[name].append(_dense_value(name, sp, kind, got, i, n))
            else:
                if got is None or got[0] is None:
                    sparse[name].append(_empty(kind))
                elif got[0] != kind:
                    raise _record_error(
                        i, n,
                        f"Key: {name}.  Data types don't match. Data type: {_KIND_NAMES[got[0]]} but "
                        f"expected type: {_KIND_NAMES[kind]}",
                        feature=name,
                    )
                else:
                    sparse[name].append(_values(*got))
    return dense, sparse


def _stack_features(
    dense: dict[str, list], sparse: dict[str, list], features: Mapping[str, Any], kinds: dict[str, str], n: int,
    single: bool,
) -> dict[str, Any]:
    """The general path's result: per-record values stacked into arrays and SparseTensors."""
    out: dict[str, Any] = {}
    for name, sp in features.items():
        kind = kinds[name]
        if name in dense:
            shape = tuple(int(x) for x in sp.shape)
            if single:
                out[name] = dense[name][0]
            elif kind == "b":
                arr = np.empty((n,) + shape, object)
                for i, v in enumerate(dense[name]):
                    arr[i, ...] = v  # copies the values (arr[i] = v of a 0-d array would store the array)
                out[name] = arr
            else:
                out[name] = (
                    np.stack(dense[name]) if n else np.empty((0,) + shape, np.float32 if kind == "f" else np.int64)
                )
        else:
            vals = sparse[name]
            counts = np.array([len(v) for v in vals], np.int64)
            values = np.concatenate(vals) if vals else _empty(kind)
            if kind == "b":
                values = np.asarray(values, object)
            cols = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)).astype(np.int64)
            if single:
                out[name] = SparseTensor(cols[:, None], values, np.array([counts[0]], np.int64))
            else:
                rows = np.repeat(np.arange(n, dtype=np.int64), counts)
                width = int(counts.max()) if n else 0
                out[name] = SparseTensor(np.stack([rows, cols], axis=1), values, np.array([n, width], np.int64))
    return out
