"""The durable log's records: framing, checksums and decoding, with no I/O.

A log file (a segment or a snapshot) is a magic line followed by records::

    file:    b"QSLOG1\\n\\0" | record | record | ...
    record:  u32 payload_len | u32 crc32c(payload) | payload
    payload: u32 header_len | header (msgpack map) | array bytes, back to back

The header names the change (``"k"``, see :mod:`queueserver.durability.state`) and describes its
arrays exactly as a wire frame does (``"a"``, :func:`queueserver.wire.encode_arrays`), so array
bytes are written from the arrays themselves and read back as views of the file's buffer.

The checksum is CRC32C, from the same native library the TFRecord reader uses (``google-crc32c``'s
bundled ``libcrc32c``, called through ctypes: it runs on any buffer without a copy, at several
GB/s, and without the GIL). :func:`scan` checks every record and stops at the first that is torn
(a crash in the middle of a write) or corrupt, saying where and why: nothing after it is used.
"""

from __future__ import annotations

import ctypes
import glob
import os
import struct
from typing import Any, Iterator, NamedTuple, Sequence

import msgpack
import numpy as np

from queueserver.wire import decode_arrays, encode_arrays

MAGIC = b"QSLOG1\n\0"
RECORD = struct.Struct("<II")       # payload length, crc32c of the payload
HEADER_LEN = struct.Struct("<I")
# No record is larger (a frame is at most max_message_bytes, 256 MiB by default; 1 GiB leaves room).
MAX_RECORD_BYTES = 1 << 30


def _native_crc():
    """The bundled libcrc32c's ``crc32c_extend``, or None (then the C extension does it, on bytes)."""
    import google_crc32c

    here = os.path.dirname(google_crc32c.__file__)
    for path in sorted(glob.glob(os.path.join(here, os.pardir, "google_crc32c.libs", "libcrc32c*"))):
        try:
            fn = ctypes.CDLL(path).crc32c_extend
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_uint32
        fn.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t]
        return fn
    return None


_EXTEND = _native_crc()
_SMALL = 4096
try:
    from google_crc32c.cext import extend as _extend_bytes
except ImportError:  # pragma: no cover - google_crc32c without its C extension
    from google_crc32c.python import extend as _extend_bytes


def crc32c(buffers: Sequence[Any], crc: int = 0) -> int:
    """CRC32C of the concatenation of ``buffers`` (bytes, bytearrays, memoryviews), without copying them."""
    for buf in buffers:
        if type(buf) is bytes:  # headers and small arrays: the C extension's call costs least
            crc = _extend_bytes(crc, buf)
        elif len(buf) < _SMALL:  # a copy of a few bytes costs less than wrapping them for ctypes
            crc = _extend_bytes(crc, bytes(buf))
        elif _EXTEND is not None:
            view = np.frombuffer(buf, np.uint8)
            if view.size:
                crc = _EXTEND(crc, view.ctypes.data, view.size)
        else:  # pragma: no cover - only without the bundled library
            from google_crc32c.cext import extend

            crc = extend(crc, bytes(buf))
    return crc


_packer = msgpack.Packer(use_bin_type=True)


class Encoded(NamedTuple):
    """One record ready to write: its buffers (arrays uncopied) and their total size."""

    buffers: list
    nbytes: int


def encode(header: dict, arrays: Sequence[np.ndarray] = ()) -> tuple[bytes, list, int]:
    """The payload's head (header length and msgpack header) and array buffers of one change.

    Cheap enough for the event loop: the arrays are described, not copied. :func:`frame` adds the
    length and checksum (in the writer's thread).
    """
    if arrays:
        descriptors, buffers, body_len = encode_arrays(arrays)
        header["a"] = descriptors
    else:
        buffers, body_len = [], 0
    head = msgpack.packb(header, use_bin_type=True)
    return HEADER_LEN.pack(len(head)) + head, buffers, body_len


def frame(head: bytes, buffers: list, body_len: int) -> Encoded:
    """A whole record: length and checksum, then the payload."""
    payload_len = len(head) + body_len
    if payload_len > MAX_RECORD_BYTES:
        raise ValueError(f"a log record of {payload_len} bytes is over the {MAX_RECORD_BYTES} byte limit")
    crc = crc32c([head, *buffers])
    return Encoded([RECORD.pack(payload_len, crc), head, *buffers], RECORD.size + payload_len)


def record_bytes(header: dict, arrays: Sequence[np.ndarray] = ()) -> bytes:
    """One whole record as bytes (tests, snapshots of small state)."""
    encoded = frame(*encode(header, arrays))
    return b"".join(bytes(b) for b in encoded.buffers)


class Damage(NamedTuple):
    """Where a file stops being trustworthy, and why."""

    offset: int
    reason: str


def scan(buf: bytearray | bytes | memoryview, start: int = 0) -> Iterator[tuple[dict, list[np.ndarray], int] | Damage]:
    """Yield ``(header, arrays, end offset)`` for each good record of ``buf`` from ``start`` (after
    the magic); a :class:`Damage` ends the iteration at the first record that is torn or corrupt.

    Arrays are views of ``buf`` (no copy).
    """
    view = memoryview(buf)
    end = len(view)
    pos = start
    while pos < end:
        if end - pos < RECORD.size:
            yield Damage(pos, f"a torn record: {end - pos} byte(s) where a record header needs {RECORD.size}")
            return
        length, crc = RECORD.unpack_from(view, pos)
        body = pos + RECORD.size
        if length < HEADER_LEN.size or length > MAX_RECORD_BYTES:
            yield Damage(pos, f"a record length of {length} bytes cannot be right")
            return
        if body + length > end:
            yield Damage(pos, f"a torn record: {length} bytes announced, {end - body} written")
            return
        payload = view[body: body + length]
        if crc32c([payload]) != crc:
            yield Damage(pos, "a record whose checksum does not match its bytes")
            return
        (head_len,) = HEADER_LEN.unpack_from(payload, 0)
        try:
            if HEADER_LEN.size + head_len > length:
                raise ValueError("its header is longer than the record")
            header = msgpack.unpackb(payload[HEADER_LEN.size: HEADER_LEN.size + head_len], raw=False)
            if not isinstance(header, dict) or not isinstance(header.get("k"), str):
                raise ValueError("its header names no change")
            arrays = decode_arrays(header.pop("a", []), payload[HEADER_LEN.size + head_len:])  # type: ignore[arg-type]  # any buffer does
        except Exception as exc:  # a checksummed record that does not decode: written by something else
            yield Damage(pos, f"a record that does not decode: {exc}")
            return
        pos = body + length
        yield header, arrays, pos
