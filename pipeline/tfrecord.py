"""TFRecord files and ``tf.train.Example`` protos, without TensorFlow or protobuf.

TFRecord framing, per record::

    uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
    masked_crc(c) = ((c >> 15) | (c << 17)) + 0xa282ead8   (mod 2**32)

CRC32C comes from the native ``google_crc32c`` extension. GZIP and ZLIB files are written with
the zlib settings TensorFlow uses (default level, ``memLevel=9``), so the compressed bytes match
TensorFlow's too.

Reading follows TensorFlow's record reader exactly, including what comes out before an error:

* a file that ends inside a 12-byte record header ends the input quietly (no error);
* a header whose CRC does not match: ``DataLossError("corrupted record at <offset>")`` (plus
  "(Is this even a TFRecord file?)" at offset 0);
* a data or footer CRC that does not match: ``DataLossError`` at the offset of the data
  (record offset + 12);
* data or footer cut short: ``DataLossError("truncated record at <offset>' failed with Read less
  bytes than requested")``.

Messages keep TensorFlow's wording and add the file and what was found there. ``on_error="skip"``
drops bad records instead, counting them in ``bad_records`` (after a bad header the reader scans
forward for the next valid header).

``encode_example`` writes the same bytes as TensorFlow's ``SerializeToString(deterministic=True)``
(map keys sorted, packed float and int64 lists); ``parse_example`` reads packed and unpacked lists,
with a vectorised path for batches of records that share one layout (every ``float_list`` of a batch
becomes one ``np.frombuffer`` view).

``read_tfrecord_examples`` reads whole files straight into stacked arrays: an uncompressed file is
memory-mapped, runs of equal-length records are framed with one array comparison of their headers
(each data CRC is still checked, one native call per record), and each feature of a run is copied
once, as a strided view of the file, into its output. GZIP/ZLIB files are inflated by a thread
running one block ahead (with python-isal's faster inflate when it is installed) while each
block's records are framed and parsed, straight into outputs sized from the GZIP trailer. Anything
irregular (a bad CRC, a truncated file, an odd stream) sends the file through ``TFRecordReader``,
so errors are TensorFlow's.

Example:
    >>> with TFRecordWriter("data.tfrecord") as w:  # doctest: +SKIP
    ...     w.write(encode_example({"x": np.arange(3, dtype=np.float32), "y": [1]}))
    >>> parse_example(next(tf_record_iterator("data.tfrecord")))  # doctest: +SKIP
    {'x': array([0., 1., 2.], dtype=float32), 'y': array([1])}
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import namedtuple
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

try:  # the C extension's own entry point skips a Python-level wrapper call per record
    from google_crc32c.cext import value as _crc32c
except ImportError:  # pragma: no cover - google_crc32c without its C extension
    from google_crc32c import value as _crc32c

from queueserver.errors import DataLossError, InvalidArgumentError
from pipeline.textline import DEFAULT_BUFFER_SIZE, ByteSource, _check_compression, check_on_error

__all__ = [
    "TFRecordWriter",
    "TFRecordReader",
    "tf_record_iterator",
    "masked_crc32c",
    "encode_example",
    "parse_example",
    "FixedLenFeature",
    "VarLenFeature",
    "SparseTensor",
    "read_tfrecord_examples",
]

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def masked_crc32c(data: bytes) -> int:
    """The masked CRC32C TFRecord stores after the length and after the data.

    Args:
        data: the bytes to checksum.

    Returns:
        ``((crc >> 15) | (crc << 17)) + 0xa282ead8`` modulo 2**32, with ``crc`` the CRC32C.
    """
    c = _crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------
class TFRecordWriter:
    """Write records to a TFRecord file, like ``tf.io.TFRecordWriter``.

    Args:
        path: the file to create (truncated if it exists).
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``; compressed output is byte-identical
            to TensorFlow's.

    Raises:
        NotFoundError: the directory does not exist.

    Example:
        >>> with TFRecordWriter("out.tfrecord") as w:  # doctest: +SKIP
        ...     w.write(b"hello")
    """

    def __init__(self, path: str | os.PathLike, compression_type: str | None = "") -> None:
        from queueserver.errors import NotFoundError

        self.path = os.fspath(path)
        self.compression_type = _check_compression(compression_type)
        try:
            self._file = open(self.path, "wb")
        except FileNotFoundError:
            raise NotFoundError(f"{self.path}; No such file or directory", path=self.path) from None
        self._comp = None
        if self.compression_type:
            # TensorFlow's ZlibCompressionOptions: Z_DEFAULT_COMPRESSION, memLevel 9, window 15 (+16
            # for the GZIP wrapper). Same settings, same bytes.
            wbits = 31 if self.compression_type == "GZIP" else 15
            self._comp = zlib.compressobj(-1, zlib.DEFLATED, wbits, 9)
        self.records = 0
        self._closed = False

    def write(self, record: bytes) -> None:
        """Append one record.

        Args:
            record: the record's bytes (``str`` is encoded as UTF-8).

        Raises:
            ValueError: the writer is closed.
        """
        if self._closed:
            raise ValueError(f"TFRecordWriter for {self.path} is closed")
        if isinstance(record, str):
            record = record.encode()
        record = bytes(record)
        header = _U64.pack(len(record))
        framed = b"".join(
            (header, _U32.pack(masked_crc32c(header)), record, _U32.pack(masked_crc32c(record)))
        )
        if self._comp is not None:
            framed = self._comp.compress(framed)
        if framed:
            self._file.write(framed)
        self.records += 1

    def flush(self) -> None:
        """Write what is buffered to the operating system.

        For compressed files this, like TensorFlow's flush, does not end a deflate block (which
        would change the compressed bytes); records become readable when the writer is closed.
        """
        self._file.flush()

    def close(self) -> None:
        """Finish the compressed stream, if any, and close the file. Safe to call twice."""
        if self._closed:
            return
        if self._comp is not None:
            self._file.write(self._comp.flush())
        self._file.close()
        self._closed = True

    def __enter__(self) -> "TFRecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
class TFRecordReader:
    """Read the records of one TFRecord file, checking both CRCs of every record.

    Args:
        path: the file.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        buffer_size: bytes read per block.
        on_error: ``"raise"`` (TensorFlow's behaviour) or ``"skip"``: drop corrupt or truncated
            records and count them in ``bad_records``.
        state: a dict from :meth:`get_state` to resume from.

    Raises:
        NotFoundError: the file does not exist.

    Example:
        >>> with TFRecordReader("data.tfrecord") as r:  # doctest: +SKIP
        ...     batch = r.read_chunk(256)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        compression_type: str | None = "",
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        on_error: str = "raise",
        state: dict | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.compression_type = _check_compression(compression_type)
        self.buffer_size = int(buffer_size)
        self.on_error = check_on_error(on_error)
        self.records = 0
        self.bad_records = 0
        self._src = ByteSource(self.path, self.compression_type, self.buffer_size)
        self._size = self._src.size()  # None when compressed
        self._buf = b""
        self._p = 0  # next record's position in self._buf
        self._base = 0  # stream offset of self._buf[0]
        self._done = False
        self._pending_error: Exception | None = None
        if state is not None:
            self.set_state(state)

    # -- buffer management ----------------------------------------------------------------------
    def _ensure(self, n: int) -> int:
        """Make at least ``n`` bytes available after ``self._p``; return how many there are."""
        avail = len(self._buf) - self._p
        if avail >= n:
            return avail
        rest = self._buf[self._p :]
        self._base += self._p
        self._p = 0
        pieces = [rest]
        have = len(rest)
        want = max(n, self.buffer_size)
        while have < n:
            block = self._src.read(want - have) if want - have > self.buffer_size else self._src.read_block()
            if not block:
                break
            pieces.append(block)
            have += len(block)
        self._buf = b"".join(pieces)
        return have

    def _error(self, message: str, offset: int, truncated: bool = False) -> DataLossError:
        return DataLossError(f"{self.path}: {message}", path=self.path, offset=offset, truncated=truncated)

    def _resync(self) -> None:
        """After a bad header, move to the next offset whose 12-byte header checks out."""
        self._p += 1
        while True:
            if self._ensure(12) < 12:
                self._p = len(self._buf)
                self._done = True
                return
            buf, end = self._buf, len(self._buf) - 11
            p = self._p
            while p < end:
                if masked_crc32c(buf[p : p + 8]) == _U32.unpack_from(buf, p + 8)[0]:
                    self._p = p
                    return
                p += 1
            self._p = p

    def read_chunk(self, max_records: int) -> list[bytes]:
        """Return up to ``max_records`` next records (``[]`` at the end).

        A corrupt or truncated record raises only after the good records before it have been
        returned (this call returns them; the next call raises), as TensorFlow yields them.

        Args:
            max_records: the most records to return.

        Returns:
            A list of ``bytes``.

        Raises:
            DataLossError: a CRC mismatch or a truncated record (``on_error="raise"``), naming the
                file and the byte offset (uncompressed) as TensorFlow does.
        """
        if self._pending_error is not None:
            err, self._pending_error = self._pending_error, None
            raise err
        out: list[bytes] = []
        if self._done:
            return out
        crc = _crc32c
        unpack_header = _HEADER.unpack_from
        unpack_u32 = _U32.unpack_from
        skip = self.on_error == "skip"
        while len(out) < max_records:
            buf, p = self._buf, self._p
            if len(buf) - p < 12 and self._ensure(12) < 12:
                # TensorFlow: a file ending inside a record header simply ends the input.
                self._p = len(self._buf)
                self._done = True
                break
            buf, p = self._buf, self._p
            length, length_crc = unpack_header(buf, p)
            c = crc(buf[p : p + 8])
            if ((((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF) != length_crc:
                offset = self._base + p
                if skip:
                    self.bad_records += 1
                    self._resync()
                    continue
                hint = " (Is this even a TFRecord file?)" if offset == 0 else ""
                err = self._error(
                    f"corrupted record at {offset}{hint}: the CRC of the 8-byte length field does "
                    f"not match (stored {length_crc:#010x}, computed {masked_crc32c(buf[p:p + 8]):#010x})",
                    offset,
                )
                self._done = True
                return self._defer(out, err)
            total = length + 16
            if len(buf) - p < total:
                short = (
                    self._size is not None and self._base + p + total > self._size
                ) or self._ensure(total) < total
                if short:
                    offset = self._base + self._p
                    have = (self._size - offset) if self._size is not None else len(self._buf) - self._p
                    self._done = True
                    if skip:
                        self.bad_records += 1
                        break
                    err = self._error(
                        f"truncated record at {offset}' failed with Read less bytes than requested "
                        f"(the record at byte offset {offset} needs {total} bytes: 12 of header, "
                        f"{length} of data, 4 of CRC; only {have} remain)",
                        offset,
                        truncated=True,
                    )
                    return self._defer(out, err)
                buf, p = self._buf, self._p
            data = buf[p + 12 : p + 12 + length]
            c = crc(data)
            if ((((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF) != unpack_u32(buf, p + 12 + length)[0]:
                offset = self._base + p + 12
                self._p = p + total
                if skip:
                    self.bad_records += 1
                    continue
                self._done = True
                err = self._error(
                    f"corrupted record at {offset}: the CRC of the {length} data bytes starting at "
                    f"byte offset {offset} does not match (record header at {offset - 12})",
                    offset,
                )
                return self._defer(out, err)
            out.append(data)
            self._p = p + total
        self.records += len(out)
        return out

    def _defer(self, out: list[bytes], err: Exception) -> list[bytes]:
        if not out:
            raise err
        self.records += len(out)
        self._pending_error = err
        return out

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self.read_chunk(1024)
            if not chunk:
                return
            yield from chunk

    # -- checkpointing --------------------------------------------------------------------------
    def get_state(self) -> dict:
        """A JSON-serialisable position.

        Returns:
            ``{"offset": uncompressed byte offset of the next record, "records": records returned,
            "bad_records": count}``.
        """
        return {"offset": self._base + self._p, "records": self.records, "bad_records": self.bad_records}

    def set_state(self, state: dict) -> None:
        """Continue with exactly the record after the last one counted in ``state``.

        Args:
            state: a dict from :meth:`get_state`.
        """
        offset = int(state["offset"])
        self._src.seek(offset)
        self._buf, self._p, self._base = b"", 0, offset
        self._done = False
        self._pending_error = None
        self.records = int(state.get("records", 0))
        self.bad_records = int(state.get("bad_records", 0))

    def close(self) -> None:
        """Close the file."""
        self._src.close()

    def __enter__(self) -> "TFRecordReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tf_record_iterator(path: str | os.PathLike, compression_type: str | None = "") -> Iterator[bytes]:
    """Yield each record of a TFRecord file, like ``tf.compat.v1.io.tf_record_iterator``.

    Args:
        path: the file.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.

    Yields:
        Each record's bytes, CRC-checked.

    Raises:
        NotFoundError: the file does not exist (raised when iteration starts).
        DataLossError: a corrupt or truncated record, after the records before it.
    """
    with TFRecordReader(path, compression_type=compression_type) as reader:
        yield from reader


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
        '0a0a0a080a017912031a0107'
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
_KIND_NAMES = {"b": "string", "f": "float", "i": "int64"}


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
                tag, p = _read_varint(buf, p, f_end)
                if tag >> 3 == 1 and tag & 7 == 2:  # Features.feature map entry
                    m, p = _read_varint(buf, p, f_end)
                    e_end = min(p + m, f_end)
                    key, kind, parts = "", None, []
                    while p < e_end:
                        tag, p = _read_varint(buf, p, e_end)
                        if tag == 0x0A:
                            k, p = _read_varint(buf, p, e_end)
                            if p + k > e_end:
                                raise _ParseError("feature name runs past the end")
                            key = buf[p : p + k].decode("utf-8", "surrogateescape")
                            p += k
                        elif tag == 0x12:
                            k, p = _read_varint(buf, p, e_end)
                            v_end = min(p + k, e_end)
                            kind, parts = _parse_feature(buf, p, v_end)
                            p = v_end
                        else:
                            p = _skip_field(buf, p, e_end, tag & 7)
                    feats[key] = (kind, parts)  # map semantics: the last entry for a key wins
                    p = e_end
                else:
                    p = _skip_field(buf, p, f_end, tag & 7)
            p = f_end
        else:
            p = _skip_field(buf, p, end, wire)
    return feats


@dataclass(frozen=True)
class FixedLenFeature:
    """A feature with a fixed number of values, like ``tf.io.FixedLenFeature``.

    Args:
        shape: the shape of one record's values (``[]`` for a scalar).
        dtype: ``np.float32``, ``np.int64`` or ``bytes`` (also ``"float32"``, ``"int64"``,
            ``"string"``, ``str``, ``object``).
        default_value: used when a record lacks the feature; ``None`` makes it required.
    """

    shape: Sequence[int]
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
    return {"f": np.empty(0, np.float32), "i": np.empty(0, np.int64), "b": np.empty(0, object)}[kind]


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
            if tag != 0x0A:
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
    for kind, s, e in layout.values():
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
        block = arr[:, s:e]
        if kind == "f":
            vals = np.ascontiguousarray(block).view("<f4").astype(np.float32, copy=False)
        elif kind == "i":
            if e == s:
                vals = np.empty((n, 0), np.int64)
            elif not (block >= 0x80).any():
                vals = block.astype(np.int64)
            else:
                cont = block >= 0x80
                if not (cont == cont[0]).all():
                    return None
                ends = np.flatnonzero(~cont[0])
                if ends.size == 0 or ends[-1] != e - s - 1:
                    return None
                starts = np.concatenate(([0], ends[:-1] + 1))
                lens = ends - starts + 1
                if lens.max() > 10:
                    return None
                shift = (np.arange(e - s) - np.repeat(starts, lens)).astype(np.uint64) * np.uint64(7)
                contrib = (block & 0x7F).astype(np.uint64) << shift
                vals = np.bitwise_or.reduceat(contrib, starts, axis=1).view(np.int64)
        else:
            vals = np.empty((n, 1), object)
            vals[:, 0] = [row.tobytes() for row in block]
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

    Example:
        >>> s = encode_example({"x": np.array([1.5, 2.5], np.float32), "y": [7]})
        >>> parse_example([s, s], {"x": FixedLenFeature([2], np.float32)})["x"].shape
        (2, 2)
    """
    recs, single = _as_batch(serialized)
    n = len(recs)
    if features is None:
        dicts = []
        for i, rec in enumerate(recs):
            raw = _parse_raw_or_raise(rec, i, n)
            dicts.append({k: _values(kind, parts) for k, (kind, parts) in raw.items()})
        return dicts[0] if single else dicts

    kinds = {}
    for name, sp in features.items():
        if not isinstance(sp, (FixedLenFeature, VarLenFeature)):
            raise InvalidArgumentError(f"feature {name!r}: spec must be FixedLenFeature or VarLenFeature, got {sp!r}")
        kinds[name] = _kind_of(sp.dtype, name)

    if not single:
        fast = _parse_batch_fast(recs, features, kinds)
        if fast is not None:
            return fast

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
                    arr[i] = v
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


# ------------------------------------------------------------------------------------------------
# Whole files straight to arrays
# ------------------------------------------------------------------------------------------------
# Uncompressed files are mapped whole (each value is then copied once, into its array); GZIP/ZLIB
# files are inflated in blocks of this size by a thread that runs ahead of the parser (zlib
# releases the GIL while it inflates).
_INFLATE_BLOCK = 1 << 21
_UNIFORM_MIN = 2  # a run of equal records shorter than this is parsed by the general path


class _Irregular(Exception):
    """The fast reader met something only TFRecordReader reports exactly (bad CRC, truncation)."""


def _inflater() -> Any:
    """The fastest available zlib-compatible ``decompressobj`` (python-isal when installed)."""
    try:
        from isal import isal_zlib  # optional: ISA-L inflates about twice as fast as zlib

        return isal_zlib.decompressobj
    except ImportError:
        return zlib.decompressobj


def _compressed_blocks(path: str, compression_type: str, block: int) -> Iterator[bytes]:
    """Inflate a GZIP/ZLIB file in ~``block``-byte pieces (concatenated GZIP members included).

    Few, large inflate calls: the thread running this needs the GIL back after each one, and
    the parser holding it can delay that by a switch interval.
    """
    wbits = 31 if compression_type == "GZIP" else 15
    new = _inflater()
    with open(path, "rb") as f:
        d = new(wbits)
        pieces, have = [], 0
        while True:
            if d.unconsumed_tail:
                data = d.unconsumed_tail
            else:
                data = (d.unused_data if d.eof else b"") or f.read(block)
                if d.eof:
                    if not data:
                        break  # the stream ended with a complete member
                    d = new(wbits)  # another GZIP member follows
            if not data:
                if f.tell():
                    raise _Irregular("truncated compressed stream")
                break  # an empty file is an empty stream
            try:
                out = d.decompress(data, block)
            except Exception as e:  # zlib.error or isal's: the exact reader words it
                raise _Irregular(str(e)) from None
            if out:
                pieces.append(out)
                have += len(out)
                if have >= block:
                    yield b"".join(pieces) if len(pieces) > 1 else pieces[0]
                    pieces, have = [], 0
        if pieces:
            yield b"".join(pieces)


def _read_ahead(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """Produce ``blocks`` in a background thread, one block ahead of the consumer."""
    import queue
    import threading

    q: "queue.Queue" = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: tuple) -> bool:
        # Never block for good: the consumer may have stopped (an exception) and gone away.
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for b in blocks:
                if not put(("block", b)):
                    return
            put(("end", None))
        except BaseException as e:  # handed to the consumer, raised there
            put(("error", e))

    t = threading.Thread(target=work, name="tfrecord-inflate", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        t.join()


def _frame(buf: Any) -> tuple[int, list[tuple[int, int, int, int]]]:
    """Find the complete records at the start of ``buf`` and check both CRCs of each.

    Returns ``(end, runs)``: ``end`` is where the first incomplete record starts; each run
    ``(data_offset, length, count, stride)`` is ``count`` consecutive records of one length.
    Records of one length are found with one vectorised comparison of their headers (equal length
    fields have equal header CRCs, so one header check covers the run); each record's data CRC is
    one native call. Raises _Irregular on any CRC mismatch.
    """
    crc, unpack_header = _crc32c, _HEADER.unpack_from  # buf: bytes or mmap (slices are bytes)
    n, p, runs = len(buf), 0, []
    while n - p >= 12:
        length, length_crc = unpack_header(buf, p)
        c = crc(buf[p : p + 8])
        if ((((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF) != length_crc:
            raise _Irregular("header CRC")
        stride = length + 16
        k = (n - p) // stride
        if k == 0:
            break
        if k > 1 and buf[p + stride : p + stride + 12] == buf[p : p + 12]:
            lens = np.ndarray((k,), "<u8", buf, p, (stride,))
            hcrc = np.ndarray((k,), "<u4", buf, p + 8, (stride,))
            same = (lens == length) & (hcrc == length_crc)
            k = k if same.all() else int(np.argmin(same))
        else:
            k = 1
        first = p + 12
        if k == 1:
            c = crc(buf[first : first + length])
            if ((((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF) != _U32.unpack_from(buf, first + length)[0]:
                raise _Irregular("data CRC")
        else:
            crcs = np.array([crc(buf[o : o + length]) for o in range(first, first + k * stride, stride)], np.uint32)
            masked = ((crcs >> np.uint32(15)) | (crcs << np.uint32(17))) + np.uint32(_MASK_DELTA)
            if not np.array_equal(masked, np.ndarray((k,), "<u4", buf, first + length, (stride,))):
                raise _Irregular("data CRC")
        runs.append((first, length, k, stride))
        p += k * stride
    return p, runs


def _concat_parsed(parts: list[tuple[dict, int]], features: Mapping[str, Any]) -> dict:
    """Stack per-block results in order (dense: concatenated; sparse: rows renumbered)."""
    if len(parts) == 1:
        return parts[0][0]
    out: dict[str, Any] = {}
    for name, sp in features.items():
        if isinstance(sp, FixedLenFeature):
            out[name] = np.concatenate([d[name] for d, _ in parts])
            continue
        indices, values, base, width = [], [], 0, 0
        for d, n in parts:
            st = d[name]
            idx = st.indices.copy()
            idx[:, 0] += base
            indices.append(idx)
            values.append(st.values)
            base += n
            width = max(width, int(st.dense_shape[1]))
        out[name] = SparseTensor(np.concatenate(indices), np.concatenate(values), np.array([base, width], np.int64))
    return out


def _parse_general(recs: list[bytes], features: Mapping[str, Any], path: str, first: int) -> dict:
    try:
        return parse_example(recs, features)
    except InvalidArgumentError as e:
        i = first + int(e.details.get("record", 0))
        raise InvalidArgumentError(f"{e} (file {path}, record {i})", **{**e.details, "record": i, "path": path}) from None


def _map_file(path: str) -> Any:
    """An uncompressed file's bytes without copying them: a read-only ``mmap`` (pre-faulted).

    Mapping the page cache skips the copy ``read()`` makes (and the page faults of the fresh
    buffer it copies into, most of the cost of reading at these sizes); every value still gets
    copied exactly once, into its output array. Where mapping is not possible (an empty file, a
    platform without these flags) the file is read into one numpy buffer instead.
    """
    import mmap

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            try:
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                return mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
            except (AttributeError, TypeError, ValueError, OSError):  # pragma: no cover - not Linux
                pass
        return f.read()


class _Assembler:
    """Collects one file's parsed parts in record order, writing dense runs into preallocated arrays.

    A compressed file is parsed block by block while the next block inflates; stacking the
    blocks' arrays at the end would be one more full copy (into fresh, page-faulting memory) after
    the last block, on nobody else's time. When the record count can be estimated (a GZIP
    trailer's size over the first run's record stride), each dense part is copied straight into
    its final place instead. Anything that does not fit the estimate (a sparse feature, records
    parsed by the general path, more records than estimated) ends the preallocation: what was
    gathered becomes one part and the rest are kept as parts, so order and values never change.
    """

    def __init__(self, parts: list, capacity_bytes: int) -> None:
        self.parts = parts
        self.capacity_bytes = capacity_bytes  # 0: no estimate, keep parts
        self.arrays: dict[str, np.ndarray] | None = None
        self.rows = 0  # rows preallocated in each of ``arrays``
        self.filled = 0

    def add(self, got: dict, k: int, stride: int = 0) -> None:
        if self.arrays is None and self.capacity_bytes and stride:
            cap = self.capacity_bytes // stride
            if cap >= k and all(isinstance(a, np.ndarray) for a in got.values()):
                self.arrays = {name: np.empty((cap,) + a.shape[1:], a.dtype) for name, a in got.items()}
                self.rows = cap
            self.capacity_bytes = 0  # one attempt per file
        arrays = self.arrays
        if arrays is not None:
            fits = self.filled + k <= self.rows and all(
                isinstance(a, np.ndarray) and a.dtype == arrays[name].dtype and a.shape[1:] == arrays[name].shape[1:]
                for name, a in got.items()
            )
            if fits and arrays.keys() == got.keys():
                for name, a in got.items():
                    arrays[name][self.filled : self.filled + k] = a
                self.filled += k
                return
            self.close()
        self.parts.append((got, k))

    def close(self) -> None:
        """Hand over what was gathered as one part (exactly sized) and stop preallocating."""
        arrays, self.arrays, self.capacity_bytes = self.arrays, None, 0
        if arrays is None or not self.filled:
            return
        n = self.filled
        self.parts.append(({name: a if n == self.rows else a[:n].copy() for name, a in arrays.items()}, n))


def _gzip_size_hint(path: str, comp: str) -> int:
    """The uncompressed size a single-member GZIP file states in its trailer (0 if unknown)."""
    if comp != "GZIP":
        return 0
    size = os.path.getsize(path)
    if size < 18:
        return 0
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        isize = int.from_bytes(f.read(4), "little")  # length mod 2**32
    return min(isize, 1032 * size)  # DEFLATE expands at most ~1032:1; a wild trailer is ignored


def _read_file_fast(path: str, features: Mapping[str, Any], kinds: dict, comp: str, parts: list) -> None:
    """Append ``(arrays, records)`` parts for one file; raises _Irregular for the exact path."""
    done = 0
    pending: list[bytes] = []  # records of short runs, parsed together by the general path
    sink = _Assembler(parts, _gzip_size_hint(path, comp))

    def flush() -> None:
        nonlocal done
        if pending:
            sink.add(_parse_general(pending, features, path, done), len(pending))
            done += len(pending)
            pending.clear()

    def parse_runs(buf: Any, runs: list[tuple[int, int, int, int]]) -> None:
        nonlocal done
        for first, length, k, stride in runs:
            if k >= _UNIFORM_MIN and length:
                try:
                    got = _parse_rows_fast(np.ndarray((k, length), np.uint8, buf, first, (stride, 1)), features, kinds)
                except InvalidArgumentError:
                    got = None  # e.g. a required feature missing: the general path names the record
                if got is not None:
                    flush()
                    sink.add(got, k, stride)
                    done += k
                    continue
            pending.extend(bytes(buf[o : o + length]) for o in range(first, first + k * stride, stride))

    if not comp:
        buf = _map_file(path)
        try:
            end, runs = _frame(buf)
            parse_runs(buf, runs)
            tail = len(buf) - end
        finally:
            if not isinstance(buf, bytes):
                try:
                    buf.close()
                except BufferError:  # a view is still alive (an exception is unwinding): GC closes it
                    pass
    else:
        # Each inflated block's complete records are framed and parsed while the thread inflates
        # the next; the bytes of a record cut by the block's end are carried into the next block.
        # A record longer than a block is gathered as a list and joined once it is whole, so a
        # huge record costs one copy, not one per block.
        carry: list[bytes] = []
        have = need = 0
        for block in _read_ahead(_compressed_blocks(path, comp, _INFLATE_BLOCK)):
            if carry:
                carry.append(block)
                have += len(block)
                if have < need:
                    continue
                buf = b"".join(carry)
            else:
                buf = block
            end, runs = _frame(buf)
            parse_runs(buf, runs)
            rest = buf[end:]
            carry, have = ([rest], len(rest)) if rest else ([], 0)
            # The carried record's full size, once its length field is there (a header alone first).
            need = _HEADER.unpack_from(rest)[0] + 16 if have >= 12 else 12
        tail = have
    flush()
    sink.close()
    if tail >= 12:
        raise _Irregular("truncated record")  # TFRecordReader words the error
    # Fewer than 12 bytes left: TensorFlow ends the input there without an error.


def read_tfrecord_examples(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    features: Mapping[str, Any],
    compression_type: str | None = "",
) -> dict:
    """Read whole TFRecord files of ``tf.train.Example`` records straight into stacked arrays.

    The result equals ``parse_example`` of every record of the files in order (what a
    ``TFRecordDataset(paths).batch(all).map(parse_example)`` would give), with both CRCs of every
    record checked. Records that share one length and layout (what ``encode_example`` of uniform
    data writes) are parsed a run at a time: the headers of a run are compared as one array, each
    data CRC is one native call, and each feature becomes one slice of the file's bytes copied into
    its output array. Other records go through the general parser, and a file with any corrupt or
    truncated record is re-read by :class:`TFRecordReader`, so errors are TensorFlow's.

    Args:
        paths: one file or a sequence of files.
        features: name -> :class:`FixedLenFeature` or :class:`VarLenFeature`.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"`` (GZIP/ZLIB are inflated by a thread
            running ahead of the parser).

    Returns:
        name -> array with a leading record dimension (a :class:`SparseTensor` for var-len
        features), as :func:`parse_example` returns for a batch.

    Raises:
        NotFoundError: a file does not exist.
        DataLossError: a corrupt or truncated record (TensorFlow's message and offset).
        InvalidArgumentError: a record that does not parse (naming the file and record index).

    Example:
        >>> spec = {"x": FixedLenFeature([784], np.float32), "y": FixedLenFeature([1], np.int64)}
        >>> arrays = read_tfrecord_examples("w4.tfrecord", spec)  # doctest: +SKIP
        >>> arrays["x"].shape  # doctest: +SKIP
        (20000, 784)
    """
    comp = _check_compression(compression_type)
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    kinds = {}
    for name, sp in features.items():
        if not isinstance(sp, (FixedLenFeature, VarLenFeature)):
            raise InvalidArgumentError(f"feature {name!r}: spec must be FixedLenFeature or VarLenFeature, got {sp!r}")
        kinds[name] = _kind_of(sp.dtype, name)
    parts: list[tuple[dict, int]] = []
    for path in map(os.fspath, paths):
        mark = len(parts)
        try:
            if not os.path.isfile(path):
                raise _Irregular("not a regular file")  # TFRecordReader raises the right error
            _read_file_fast(path, features, kinds, comp, parts)
        except (_Irregular, zlib.error, DataLossError):
            # The exact reader finds and words the problem (or, for a stream that merely ends
            # inside a header, reads the same records without one).
            del parts[mark:]
            done = 0
            with TFRecordReader(path, compression_type=comp) as reader:
                while recs := reader.read_chunk(4096):
                    parts.append((_parse_general(recs, features, path, done), len(recs)))
                    done += len(recs)
    if not parts:
        return parse_example([], features)
    return _concat_parsed(parts, features)
