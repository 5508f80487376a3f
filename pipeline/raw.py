"""``decode_raw``: reinterpret the bytes of records as numbers, like ``tf.io.decode_raw``.

A batch of equal-length records becomes one array with a single ``np.frombuffer`` over the joined
bytes (no Python step per value). Byte order is converted to the machine's when needed, so the
result is always native-endian.

Example:
    >>> decode_raw(b"\\x01\\x02\\x03\\x04", np.int16)
    array([ 513, 1027], dtype=int16)
    >>> decode_raw([b"ab", b"cd"], np.uint8)
    array([[ 97,  98],
           [ 99, 100]], dtype=uint8)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from queueserver.errors import InvalidArgumentError

from .blocks import FixedBlock, RecordBlock, accepts_blocks

__all__ = ["decode_raw"]


def _as_records(records: Any) -> tuple[list[bytes] | np.ndarray, tuple[int, ...], bool]:
    """Normalise the input to (flat list of bytes or 2-D uint8 array, batch shape, is_scalar)."""
    if isinstance(records, (bytes, bytearray, memoryview)):
        return [bytes(records)], (), True
    if isinstance(records, str):
        return [records.encode()], (), True
    if isinstance(records, np.ndarray):
        if records.dtype.kind == "S":
            # Fixed-width bytes: every record is exactly itemsize bytes (trailing NULs included,
            # which .tolist() would strip), so view the raw buffer instead.
            flat = np.ascontiguousarray(records).reshape(-1)
            return flat.view(np.uint8).reshape(flat.size, records.dtype.itemsize), records.shape, records.ndim == 0
        shape = records.shape
        flat_list = [r.encode() if isinstance(r, str) else bytes(r) for r in records.reshape(-1).tolist()]
        return flat_list, shape, records.ndim == 0
    arr = np.empty(0, object)
    try:
        arr = np.array(records, dtype=object)
    except ValueError:
        pass
    if arr.ndim == 0 or arr.dtype != object:
        raise InvalidArgumentError(f"decode_raw needs bytes or a (nested) list of bytes, got {type(records).__name__}")
    flat_list = [r.encode() if isinstance(r, str) else bytes(r) for r in arr.reshape(-1).tolist()]
    return flat_list, arr.shape, False


def _checked_fixed_length(fixed_length: int | None, size: int) -> int:
    """``fixed_length`` as an int (0 when unset), checked as TensorFlow's DecodePaddedRaw checks it
    (in its order and words)."""
    if fixed_length is None:
        return 0
    fixed = int(fixed_length)
    if fixed % size:
        raise InvalidArgumentError(f"fixed_length ({fixed}) must be a multiple of the size of out_type ({size})")
    if fixed <= 0:
        raise InvalidArgumentError(f"fixed_length ({fixed}) must be greater than zero.")
    return fixed


@accepts_blocks("records")
def decode_raw(
    records: Any,
    out_type: Any,
    little_endian: bool = True,
    fixed_length: int | None = None,
) -> np.ndarray:
    """Reinterpret the bytes of each record as a vector of ``out_type``.

    Args:
        records: one ``bytes`` record, a list (possibly nested) of records, or a numpy array of
            ``bytes`` (an ``S`` array's records are taken as exactly ``itemsize`` bytes each).
        out_type: a numpy dtype (``np.uint8``, ``np.int16``, ``np.float32``, ...).
        little_endian: whether the bytes are little-endian (ignored for 1-byte types).
        fixed_length: if set, each record is first truncated or zero-padded to this many bytes
            (must be a positive multiple of the type's size), so records of different lengths batch.

    Returns:
        Shape ``records.shape + [n]`` where ``n`` is the number of values per record.

    Raises:
        InvalidArgumentError: records of different lengths (without ``fixed_length``), a length
            that is not a multiple of the type's size, a ``fixed_length`` that is not a positive
            multiple of it, or an unsupported type; the message names the record index.
    """
    dtype = np.dtype(out_type)
    if dtype.kind in "OSUV" or dtype.itemsize == 0:
        raise InvalidArgumentError(f"decode_raw: unsupported out_type {dtype}")
    size = dtype.itemsize
    src_dtype = dtype.newbyteorder("<" if little_endian else ">") if size > 1 else dtype
    fixed = _checked_fixed_length(fixed_length, size)
    if type(records) is FixedBlock and fixed_length is None:  # a Data API batch (pipeline.blocks)
        return _decode_rows(records.rows, dtype, src_dtype)
    recs, shape, scalar = _as_records(records.materialize() if isinstance(records, RecordBlock) else records)

    if isinstance(recs, np.ndarray):  # 2-D uint8 view of an 'S' array
        width = recs.shape[1]
        if fixed_length is not None:
            padded = np.zeros((recs.shape[0], fixed), np.uint8)
            padded[:, : min(fixed, width)] = recs[:, :fixed]
            recs, width = padded, fixed
        if width % size:
            raise InvalidArgumentError(
                f"Input to DecodeRaw has length {width} that is not a multiple of {size}, the size of {dtype}"
            )
        out = np.ascontiguousarray(recs).view(src_dtype).astype(dtype.newbyteorder("="), copy=False)
        return out.reshape(shape + (width // size,))

    if fixed_length is not None:
        buf = np.zeros((len(recs), fixed), np.uint8)
        for i, r in enumerate(recs):
            k = min(len(r), fixed)
            if k:
                buf[i, :k] = np.frombuffer(r, np.uint8, count=k)
        out = buf.view(src_dtype).astype(dtype.newbyteorder("="), copy=False)
        out = out.reshape(shape + (fixed // size,))
        return out

    if not recs:
        return np.empty(shape + (0,), dtype)
    first = len(recs[0])
    lengths = np.fromiter(map(len, recs), np.int64, len(recs))
    bad = np.flatnonzero(lengths != first)
    if bad.size:
        i = int(bad[0])
        # TensorFlow's wording (it names element 0's size first), then plainly.
        raise InvalidArgumentError(
            f"DecodeRaw requires input strings to all be the same size, but element {i} has size "
            f"{first} != {int(lengths[i])} (element 0 is {first} bytes, element {i} is "
            f"{int(lengths[i])} bytes; pass fixed_length= to pad or truncate)",
            record=i,
        )
    if first % size:
        raise InvalidArgumentError(
            f"Input to DecodeRaw has length {first} that is not a multiple of {size}, the size of {dtype}"
        )
    joined = recs[0] if len(recs) == 1 else b"".join(recs)
    out = np.frombuffer(joined, src_dtype)
    if src_dtype.byteorder not in ("=", "|") and not src_dtype.isnative:
        out = out.astype(dtype.newbyteorder("="))
    elif not out.flags.writeable:
        out = out.copy() if len(recs) == 1 else np.frombuffer(bytearray(joined), src_dtype)
    out = out.reshape(shape + (first // size,))
    return out


def _decode_rows(rows: np.ndarray, dtype: np.dtype, src_dtype: np.dtype) -> np.ndarray:
    """``decode_raw`` of the records that are the rows of ``rows`` (``uint8[n, width]``): a view.

    The same result as for the records as ``bytes`` (a writable native-endian array), and the
    same errors; ``rows`` belongs to the batch alone, so the result may share its memory.
    """
    n, width = rows.shape
    size = dtype.itemsize
    if n == 0:
        return np.empty((0, 0), dtype)
    if width % size:
        raise InvalidArgumentError(
            f"Input to DecodeRaw has length {width} that is not a multiple of {size}, the size of {dtype}"
        )
    rows = np.ascontiguousarray(rows)
    out = rows.reshape(-1).view(src_dtype)
    if src_dtype.byteorder not in ("=", "|") and not src_dtype.isnative:
        out = out.astype(dtype.newbyteorder("="))
    return out.reshape(n, width // size)
