"""TFRecord framing: :class:`TFRecordWriter`, :class:`TFRecordReader`, ``tf_record_iterator``.

Per record::

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
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any, Iterator

import numpy as np

try:  # the C extension's own entry point skips a Python-level wrapper call per record
    from google_crc32c.cext import value as _crc32c
except ImportError:  # pragma: no cover - google_crc32c without its C extension
    from google_crc32c import value as _crc32c

from queueserver.errors import DataLossError, FailedPreconditionError
from pipeline.blocks import FramedBlock
from pipeline.textline import DEFAULT_BUFFER_SIZE, ByteSource, _check_compression, check_on_error

__all__ = ["TFRecordWriter", "TFRecordReader", "tf_record_iterator", "masked_crc32c"]

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# read_chunk frames whole runs of records when at least this much is buffered (smaller leftovers
# go record by record, as does anything irregular).
_FRAME_MIN_BYTES = 4096


class _Irregular(Exception):
    """The fast framing met something only the record-by-record path reports exactly (a bad CRC,
    a truncation): the caller goes that way instead."""


def _frame(
    buf: Any, p: int = 0, limit: int | None = None, stop: int | None = None
) -> tuple[int, list[tuple[int, int, int, int]]]:
    """Find the complete records in ``buf[:stop]`` from ``p`` (at most ``limit``) and check both CRCs of each.

    Returns ``(end, runs)``: ``end`` is where the first record not framed starts; each run
    ``(data_offset, length, count, stride)`` is ``count`` consecutive records of one length.
    Records of one length are found with one vectorised comparison of their headers (equal length
    fields have equal header CRCs, so one header check covers the run); each record's data CRC is
    one native call. Raises _Irregular on any CRC mismatch.
    """
    crc, unpack_header = _crc32c, _HEADER.unpack_from  # buf: bytes or mmap (slices are bytes)
    n, runs = len(buf) if stop is None else min(len(buf), stop), []
    left = n if limit is None else limit
    while n - p >= 12 and left > 0:
        length, length_crc = unpack_header(buf, p)
        c = crc(buf[p : p + 8])
        if ((((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF) != length_crc:
            raise _Irregular("header CRC")
        stride = length + 16
        k = min((n - p) // stride, left)
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
        left -= k
    return p, runs


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
            FailedPreconditionError: the writer is closed (TensorFlow's "Writer is closed.").
        """
        self._check_open()
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

        Raises:
            FailedPreconditionError: the writer is closed (TensorFlow's "Writer is closed.").
        """
        self._check_open()
        self._file.flush()

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPreconditionError(f"Writer is closed. ({self.path})", path=self.path)

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

    def __new__(cls, path: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Without a path (``TFRecordReader()``, ``TFRecordReader(options="GZIP")``): TensorFlow 1's
        reader of the files a queue names, ``reader.read(filename_queue)`` (see
        :mod:`pipeline.queue_readers`)."""
        if path is None:
            from pipeline.queue_readers import QueueFedTFRecordReader

            return QueueFedTFRecordReader(*args, **kwargs)
        return super().__new__(cls)

    def __getnewargs__(self) -> tuple:
        # A copy (or pickle) passes the path to __new__: without one it would make a queue-fed reader.
        return (self.path,)

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
        #: ``(record index, byte offset)`` of each record skipped (``on_error="skip"``), 0-based
        #: among the file's records, good and bad; a reader of these positions clears the list.
        self.skipped: list[tuple[int, int]] = []
        self._src = ByteSource(self.path, self.compression_type, self.buffer_size)
        self._size = self._src.size()  # None when compressed
        self._buf = b""
        self._p = 0  # next record's position in self._buf
        self._base = 0  # stream offset of self._buf[0]
        self._done = False
        self._pending_error: Exception | None = None
        self._stop = 0  # offset of the record the last read stopped at (end of file or an error)
        self._map: Any = None  # the file's mmap (read_block), False where it cannot be mapped
        self._src_error: Exception | None = None  # broken compressed data met by read_block, raised when reached
        if state is not None:
            self.set_state(state)

    # -- buffer management ----------------------------------------------------------------------
    def _ensure(self, n: int) -> int:
        """Make at least ``n`` bytes available after ``self._p``; return how many there are."""
        avail = len(self._buf) - self._p
        if avail >= n:
            return avail
        rest = self._buf[self._p :]
        pieces = [rest]
        have = len(rest)
        want = max(n, self.buffer_size)
        while have < n:  # (broken compressed data raises here, with the buffer as it was)
            if self._src_error is not None:
                raise self._src_error
            block = self._src.read(want - have) if want - have > self.buffer_size else self._src.read_block()
            if not block:
                break
            pieces.append(block)
            have += len(block)
        self._base += self._p
        self._buf, self._p = b"".join(pieces), 0
        return have

    def _error(self, message: str, offset: int, truncated: bool = False) -> DataLossError:
        return DataLossError(f"{self.path}: {message}", path=self.path, offset=offset, truncated=truncated)

    def _resync(self) -> None:
        """After a bad header, move to the next offset whose 12-byte header checks out."""
        self._p += 1
        while True:
            if self._ensure(12) < 12:
                self._p = len(self._buf)
                self._stop = self._base + self._p
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
            if len(buf) - p >= _FRAME_MIN_BYTES and self._take_runs(out, max_records):
                continue
            if len(buf) - p < 12 and (got := self._ensure_or_defer(12, out)) < 12:
                if got < 0:
                    break  # the records so far come out; the next read raises
                # TensorFlow: a file ending inside a record header simply ends the input.
                self._stop = self._base + self._p
                self._p = len(self._buf)
                self._done = True
                break
            buf, p = self._buf, self._p
            length, length_crc = unpack_header(buf, p)
            c = crc(buf[p : p + 8])
            if ((((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF) != length_crc:
                offset = self._stop = self._base + p
                if skip:
                    self._skipped(len(out), offset)
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
                buffered = self._buffer_record(p, total, out)
                if buffered < 0:
                    break  # the records so far come out; the next read raises
                if not buffered:
                    offset = self._stop = self._base + self._p
                    have = (self._size - offset) if self._size is not None else len(self._buf) - self._p
                    self._done = True
                    if skip:
                        self._skipped(len(out), offset)
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
                self._stop = self._base + p
                self._p = p + total
                if skip:
                    self._skipped(len(out), self._stop)
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

    def _buffer_record(self, p: int, total: int, out: list[bytes]) -> int:
        """1: the ``total`` bytes of the record at ``p`` are buffered; 0: the input ends first;
        -1: broken compressed data, raised by the next read (``out`` comes first)."""
        if self._size is not None and self._base + p + total > self._size:
            return 0
        got = self._ensure_or_defer(total, out)
        return -1 if got < 0 else int(got >= total)

    def _ensure_or_defer(self, n: int, out: list[bytes]) -> int:
        """``_ensure(n)``; broken compressed data raises only once the records before it are out."""
        try:
            return self._ensure(n)
        except DataLossError as e:
            self._done = True
            self._stop = self._base + self._p  # where tf_record_iterator reads again from
            if out:
                self._pending_error = e
                return -1
            raise

    def read_block(self, max_records: int, max_bytes: int = 16 << 20) -> FramedBlock:
        """The next records (at most ``max_records``) as a :class:`~pipeline.blocks.FramedBlock`:
        where they lie in the file's memory map (uncompressed files) or in the inflated buffer,
        not cut into ``bytes``. The same records, CRC checks, errors and state as
        :meth:`read_chunk`: about ``max_bytes`` of whole, regular records per call; anything else
        (a bad CRC, a truncation, a record larger than that) is read by :meth:`read_chunk`.

        Returns:
            A ``FramedBlock`` (empty at the end of the file).
        """
        if self._pending_error is not None or self._done:
            return FramedBlock.of(self.read_chunk(max_records))
        if not self.compression_type:
            off = self._base + self._p
            mm = self._mapped()
            buf, p, stop = mm, off, off + max_bytes
        else:
            self._grow(max_bytes)
            buf, p, stop = self._buf, self._p, None
        runs: list[tuple[int, int, int, int]] = []
        irregular = buf is None
        if buf is not None:
            try:
                end, runs = _frame(buf, p, max_records, stop)
            except _Irregular:
                irregular = True  # read_chunk reports it exactly, after the good records before it
        if not runs:
            # A bad record, the end of the file, or a record larger than max_bytes.
            return FramedBlock.of(self.read_chunk(max_records if irregular else 1))
        n = sum(r[2] for r in runs)
        if self.compression_type:
            self._p = end
        else:
            self._src.seek(end)
            self._buf, self._p, self._base = b"", 0, end
        self.records += n
        return FramedBlock(buf, runs)

    def _grow(self, n: int) -> None:
        """Buffer about ``n`` bytes ahead, one inflated piece at a time, joined once. Broken
        compressed data is kept for ``_ensure`` to raise once the records before it are read."""
        have = len(self._buf) - self._p
        if have >= n or self._src_error is not None:
            return
        pieces = [self._buf[self._p :]]
        while have < n:
            try:
                piece = self._src.read_block()
            except DataLossError as e:
                self._src_error = e
                break
            if not piece:
                break
            pieces.append(piece)
            have += len(piece)
        self._base += self._p
        self._buf, self._p = b"".join(pieces), 0

    def _mapped(self) -> Any:
        """The file as a read-only ``mmap`` (made once), or None where it cannot be mapped.

        Records are then parsed where the page cache holds them: no ``read()`` copy, no fresh
        pages to fault in. A file that grows later is read past the map by ``read_chunk``.
        """
        if self._map is None:
            self._map = False
            try:
                import mmap

                fd = self._src._file.fileno()
                if os.fstat(fd).st_size:
                    self._map = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
                    if hasattr(self._map, "madvise") and hasattr(mmap, "MADV_SEQUENTIAL"):
                        self._map.madvise(mmap.MADV_SEQUENTIAL)
            except (AttributeError, TypeError, ValueError, OSError):  # pragma: no cover - not Linux
                self._map = False
        return self._map or None

    def _take_runs(self, out: list[bytes], max_records: int) -> bool:
        """Add the buffered records to ``out`` whole runs at a time (one header comparison per run,
        one native CRC call per record: the common case); whether any were. Anything irregular
        is left to the record-by-record path, which reports it exactly."""
        buf = self._buf
        try:
            end, runs = _frame(buf, self._p, max_records - len(out))
        except _Irregular:
            return False
        for first, length, count, stride in runs:
            out.extend([buf[o : o + length] for o in range(first, first + count * stride, stride)])
        self._p = end
        return bool(runs)

    def _skipped(self, returned: int, offset: int) -> None:
        """Count a skipped record and keep where it was (``returned``: good records of this read so far)."""
        if len(self.skipped) < 10_000:  # bounded: a reader that never clears it keeps the first ones
            self.skipped.append((self.records + returned + self.bad_records, offset))
        self.bad_records += 1

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
        self._size = self._src.size()  # the file may have grown since it was opened
        self._buf, self._p, self._base = b"", 0, offset
        self._src_error = None
        self._stop = offset
        self._done = False
        self._pending_error = None
        self.records = int(state.get("records", 0))
        self.bad_records = int(state.get("bad_records", 0))

    def _retry(self) -> None:
        """Read again from the record the last read stopped at (for ``tf_record_iterator``).

        Bytes appended to the file since then are read, so a record that was missing or cut short
        comes out now, and a corrupt one raises again, as TensorFlow's iterator behaves.
        """
        self.set_state({"offset": self._stop, "records": self.records, "bad_records": self.bad_records})

    def close(self) -> None:
        """Close the file. Its map, if any, goes when the last block using it does."""
        self._src.close()
        self._map = None

    def __enter__(self) -> "TFRecordReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _RecordIterator:
    """What :func:`tf_record_iterator` returns: an iterator that keeps its read offset.

    At the end of the file (or at a record cut short, or a corrupt one) it raises ``StopIteration``
    (or the ``DataLossError``) but stays open; the next ``next()`` reads again from the record it
    stopped at, so records appended since come out (what TensorBoard relies on).
    """

    def __init__(self, path: str | os.PathLike, compression_type: str | None) -> None:
        self._reader = TFRecordReader(path, compression_type=compression_type)
        self._records: list[bytes] = []
        self._i = 0
        self._stopped = False  # the last read ended: re-read from the reader's stop offset

    def __iter__(self) -> "_RecordIterator":
        return self

    def __next__(self) -> bytes:
        if self._i < len(self._records):
            self._i += 1
            return self._records[self._i - 1]
        reader = self._reader
        if self._stopped:
            reader._retry()
        self._stopped = True  # until a read returns records
        self._records, self._i = reader.read_chunk(1024), 0
        if not self._records:
            raise StopIteration
        self._stopped = reader._done  # the file (or a bad record) was reached in this chunk
        self._i = 1
        return self._records[0]

    def close(self) -> None:
        """Close the file."""
        self._reader.close()

    def __enter__(self) -> "_RecordIterator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tf_record_iterator(path: str | os.PathLike, compression_type: str | None = "") -> _RecordIterator:
    """Iterate over the records of a TFRecord file, like ``tf.compat.v1.io.tf_record_iterator``.

    The iterator keeps its read offset, as TensorFlow's does: after ``StopIteration`` (or a
    ``DataLossError`` for a record cut short), a later ``next()`` returns the records appended to
    the file since, so a file that is still being written can be followed (uncompressed files).

    Args:
        path: the file.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.

    Returns:
        An iterator of each record's bytes, CRC-checked (with a ``close`` method).

    Raises:
        NotFoundError: the file does not exist.
        DataLossError: (from ``next``) a corrupt or truncated record, after the records before it.
    """
    return _RecordIterator(path, compression_type)
