"""Fixed-length record reader (``tf.FixedLengthRecordReader`` / ``tf.data.FixedLengthRecordDataset``).

A file is ``header_bytes`` of header, then records of ``record_bytes`` each (starting every
``hop_bytes`` bytes when that is set), then ``footer_bytes`` of footer. ``read_chunk`` returns a
whole block of records as one ``uint8`` array of shape ``(n, record_bytes)`` read with a single
``readinto``: no Python step per record.

TensorFlow's rules, which this reader matches:

* a file shorter than header + footer: TensorFlow computes its body length as an unsigned 64-bit
  number, so it wraps to ``2**64 - (header + footer - size)``; when that is not a multiple of
  ``record_bytes`` the file is refused with the same ``InvalidArgumentError`` as any other partial
  body (naming that wrapped length), otherwise it holds no records;
* uncompressed, a body that is not a whole number of records is refused when the file is opened,
  before any record, with ``InvalidArgumentError`` ("... is not an exact multiple of the record
  length ...");
* compressed (GZIP/ZLIB), the size is only known at the end, so the whole records come out first and
  then ``DataLossError`` reports the partial one.

``decode_cifar10`` splits CIFAR-10 binary records (1 label byte + 3,072 pixel bytes) into labels and
``uint8[3, 32, 32]`` images without copying the pixels.

Example:
    >>> with FixedLengthRecordReader("data_batch_1.bin", record_bytes=3073) as r:  # doctest: +SKIP
    ...     labels, images = decode_cifar10(r.read_chunk(10000))
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import numpy as np

from queueserver.errors import DataLossError, InvalidArgumentError
from pipeline.textline import DEFAULT_BUFFER_SIZE, ByteSource, _check_compression, check_on_error

__all__ = ["FixedLengthRecordReader", "decode_cifar10"]


class FixedLengthRecordReader:
    """Read fixed-size records from one file.

    Args:
        path: the file.
        record_bytes: size of each record (> 0).
        header_bytes: bytes to skip at the start of the file.
        footer_bytes: bytes to ignore at the end of the file.
        hop_bytes: if > 0, record ``k`` starts at ``header_bytes + k * hop_bytes`` (records may
            overlap or leave gaps); the file is then read while a whole record fits before the
            footer, and a trailing partial record is dropped quietly, as TensorFlow's
            ``FixedLengthRecordReader`` does (with or without compression).
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        buffer_size: bytes read per block for compressed files.
        on_error: ``"raise"`` (TensorFlow's behaviour) or ``"skip"``: a trailing partial record is
            dropped and counted in ``bad_records`` instead of raising.
        state: a dict from :meth:`get_state` to resume from.

    Raises:
        NotFoundError: the file does not exist.
        InvalidArgumentError: bad sizes; or (uncompressed, ``on_error="raise"``) a body that is not
            a whole number of records, naming the file and the offset of the partial record.
    """

    def __new__(cls, path: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Without a path (``FixedLengthRecordReader(record_bytes=3073)``, or TensorFlow's
        positional ``FixedLengthRecordReader(3073)``): TensorFlow 1's reader of the files a queue
        names, ``reader.read(filename_queue)`` (see :mod:`pipeline.queue_readers`)."""
        if path is None or (isinstance(path, (int, np.integer)) and not isinstance(path, bool)):
            from pipeline.queue_readers import QueueFedFixedLengthRecordReader

            if path is not None:
                kwargs["record_bytes"] = int(path)
            return QueueFedFixedLengthRecordReader(*args, **kwargs)
        return super().__new__(cls)

    def __getnewargs__(self) -> tuple:
        # A copy (or pickle) passes the path to __new__: without one it would make a queue-fed reader.
        return (self.path,)

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        record_bytes: int,
        header_bytes: int = 0,
        footer_bytes: int = 0,
        hop_bytes: int = 0,
        compression_type: str | None = "",
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        on_error: str = "raise",
        state: dict | None = None,
    ) -> None:
        if record_bytes <= 0:
            raise InvalidArgumentError(f"record_bytes must be > 0, got {record_bytes}")
        if header_bytes < 0 or footer_bytes < 0 or hop_bytes < 0:
            raise InvalidArgumentError(
                f"header_bytes, footer_bytes and hop_bytes must be >= 0, got "
                f"{header_bytes}, {footer_bytes}, {hop_bytes}"
            )
        self.path = os.fspath(path)
        self.record_bytes = int(record_bytes)
        self.header_bytes = int(header_bytes)
        self.footer_bytes = int(footer_bytes)
        self.hop_bytes = int(hop_bytes)
        self.compression_type = _check_compression(compression_type)
        self.buffer_size = int(buffer_size)
        self.on_error = check_on_error(on_error)
        self.records = 0
        self.bad_records = 0
        self._src = ByteSource(self.path, self.compression_type, self.buffer_size)
        self._next = 0  # index of the next record
        self._buf = bytearray()  # compressed files: decompressed bytes from the next record on
        self._skip = 0  # compressed files with a hop past the buffer: bytes still to discard
        self._eof = False
        self._reported = False  # the partial trailing record was already raised/counted
        self._stream_error: DataLossError | None = None  # corrupt/truncated stream, raised after the records before it
        if self.compression_type:
            self._n = None  # unknown until the end of the stream
        else:
            self._n = self._count_uncompressed()
        if state is not None:
            self.set_state(state)
        elif self.compression_type:
            self._src.seek(self.header_bytes)

    # -- layout ---------------------------------------------------------------------------------
    def _body_error(self, cls: type, body: int, total: int) -> Exception:
        if body < 0:
            # TensorFlow's body length is a uint64: a file shorter than header + footer wraps.
            wrapped = body + (1 << 64)
            return cls(
                f"Excluding the header ({self.header_bytes} bytes) and footer ({self.footer_bytes} "
                f"bytes), input file \"{self.path}\" has body length {wrapped} bytes, which is not an "
                f"exact multiple of the record length ({self.record_bytes} bytes). (The file has only "
                f"{total} bytes, {-body} fewer than the header and footer together.)",
                path=self.path,
                offset=0,
            )
        whole = body // self.record_bytes * self.record_bytes
        return cls(
            f"Excluding the header ({self.header_bytes} bytes) and footer ({self.footer_bytes} "
            f"bytes), input file \"{self.path}\" has body length {body} bytes, which is not an "
            f"exact multiple of the record length ({self.record_bytes} bytes). The partial record "
            f"starts at byte offset {self.header_bytes + whole} and has {body - whole} of "
            f"{self.record_bytes} bytes (file size {total}).",
            path=self.path,
            offset=self.header_bytes + whole,
        )

    def _count_uncompressed(self) -> int:
        size = self._src.size() or 0
        limit = size - self.footer_bytes
        body = limit - self.header_bytes
        if body < 0:
            if self.hop_bytes or (body + (1 << 64)) % self.record_bytes == 0:
                return 0  # TensorFlow: then such a file simply holds no records
            if self.on_error == "raise":
                raise self._body_error(InvalidArgumentError, body, size)
            self.bad_records += 1
            self._reported = True
            return 0
        if self.hop_bytes:
            if body < self.record_bytes:
                return 0
            return (body - self.record_bytes) // self.hop_bytes + 1
        if body % self.record_bytes:
            if self.on_error == "raise":
                raise self._body_error(InvalidArgumentError, body, size)
            self.bad_records += 1
            self._reported = True
        return body // self.record_bytes

    def _offset_of(self, k: int) -> int:
        return self.header_bytes + k * (self.hop_bytes or self.record_bytes)

    # -- reading --------------------------------------------------------------------------------
    def read_chunk(self, max_records: int) -> np.ndarray:
        """Return up to ``max_records`` next records as a ``uint8`` array ``(n, record_bytes)``.

        Args:
            max_records: the most records to return.

        Returns:
            A writable C-contiguous array; ``n == 0`` at the end of the file.

        Raises:
            DataLossError: compressed input ends in a partial record (after all whole records
                have been returned), or the file shrank while being read.
        """
        rb = self.record_bytes
        if self.compression_type:
            return self._read_compressed(max_records)
        assert self._n is not None  # counted in __init__ for uncompressed files
        n = max(0, min(int(max_records), self._n - self._next))
        if n == 0:
            return np.empty((0, rb), np.uint8)
        start = self._offset_of(self._next)
        if self._src.tell() != start:
            self._src.seek(start)
        if not self.hop_bytes or self.hop_bytes == rb:
            out = np.empty((n, rb), np.uint8)
            got = self._src.readinto(out)
            want = out.nbytes
        else:
            span = (n - 1) * self.hop_bytes + rb
            flat = np.empty(span, np.uint8)
            got = self._src.readinto(flat)
            want = span
            out = np.lib.stride_tricks.as_strided(flat, (n, rb), (self.hop_bytes, 1)).copy()
        if got != want:
            raise DataLossError(
                f"{self.path}: file ended at byte offset {start + got} while reading {n} records of "
                f"{rb} bytes from offset {start} (did the file change while it was read?)",
                path=self.path,
                offset=start + got,
            )
        self._next += n
        self.records += n
        return out

    def _fill_compressed(self, need: int) -> None:
        """Decompress until ``self._buf`` holds ``need`` bytes or the stream ends (or breaks: the
        error is kept, to be raised once the whole records decompressed before it are out)."""
        try:
            while self._skip and not self._eof:  # a hop past the end of the buffer: discard the gap
                gap = self._src.read(min(self._skip, 1 << 20))
                if not gap:
                    self._eof = True
                self._skip -= len(gap)
            while len(self._buf) < need and not self._eof:
                block = self._src.read_block()
                if not block:
                    self._eof = True
                else:
                    self._buf += block
        except DataLossError as e:
            self._stream_error, self._eof = e, True

    def _read_compressed(self, max_records: int) -> np.ndarray:
        rb, fb = self.record_bytes, self.footer_bytes
        step = self.hop_bytes or rb
        want = max(0, int(max_records))
        # Record k of this chunk starts at k * step in the buffer; it is a record (not footer) when
        # the footer's bytes follow it, which is all a one-pass stream can know.
        self._fill_compressed((want - 1) * step + rb + fb if want else 0)
        last = len(self._buf) - fb - rb  # the furthest start a whole record can have
        k = min(want, last // step + 1) if last >= 0 else 0
        if k:
            span = (k - 1) * step + rb
            flat = np.frombuffer(bytes(self._buf[:span]), np.uint8)
            out = np.lib.stride_tricks.as_strided(flat, (k, rb), (step, 1)).copy()
        else:
            out = np.empty((0, rb), np.uint8)
        drop = k * step
        self._skip += max(0, drop - len(self._buf))
        del self._buf[:drop]
        self._next += k
        self.records += k
        if k < want and self._stream_error is not None:
            if k:
                return out  # the records before the damage first (as TensorFlow); the error next call
            err, self._stream_error = self._stream_error, None
            raise err
        if k < want and self._eof and not self._reported and not self.hop_bytes:
            leftover = len(self._buf) - fb
            if leftover > 0:
                self._reported = True
                total = self._src.tell()
                body = total - self.header_bytes - fb
                if self.on_error == "raise":
                    if k:
                        # Hand out the whole records first, as TensorFlow does; raise next call.
                        self._reported = False
                        return out
                    raise self._body_error(DataLossError, body, total)
                self.bad_records += 1
        return out

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self.read_chunk(4096)
            if not len(chunk):
                return
            yield from (row.tobytes() for row in chunk)

    # -- checkpointing --------------------------------------------------------------------------
    def get_state(self) -> dict:
        """A JSON-serialisable position.

        Returns:
            ``{"offset": byte offset of the next record (uncompressed), "records": records
            returned, "bad_records": count}``.
        """
        return {
            "offset": self._offset_of(self._next),
            "records": self.records,
            "bad_records": self.bad_records,
        }

    def set_state(self, state: dict) -> None:
        """Continue with exactly the record after the last one counted in ``state``.

        Args:
            state: a dict from :meth:`get_state`.

        Raises:
            InvalidArgumentError: the offset is not a record boundary of this layout.
        """
        offset = int(state["offset"])
        step = self.hop_bytes or self.record_bytes
        k, rem = divmod(offset - self.header_bytes, step)
        if rem or k < 0:
            raise InvalidArgumentError(
                f"{self.path}: state offset {offset} is not a record boundary (header "
                f"{self.header_bytes} bytes, record step {step} bytes)"
            )
        self._next = k
        self.records = int(state.get("records", k))
        self.bad_records = int(state.get("bad_records", self.bad_records))
        if self.compression_type:
            self._buf = bytearray()
            self._skip = 0
            self._eof = False
            self._reported = False
            self._src.seek(offset)
        else:
            self._src.seek(offset)

    def close(self) -> None:
        """Close the file."""
        self._src.close()

    def __enter__(self) -> "FixedLengthRecordReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_cifar10(
    records: np.ndarray | Sequence[bytes] | bytes,
    *,
    label_bytes: int = 1,
    image_shape: tuple[int, ...] = (3, 32, 32),
    label_dtype: type = np.int32,
) -> tuple[np.ndarray, np.ndarray]:
    """Split CIFAR-10 binary records into labels and ``uint8[3, 32, 32]`` images.

    Args:
        records: a ``uint8`` array ``(n, 3073)`` (what ``read_chunk`` returns), a list of 3,073-byte
            records, or one record.
        label_bytes: bytes of label before the pixels (1 for CIFAR-10; CIFAR-100 uses 2, take
            the second as the fine label).
        image_shape: the pixel layout, channels first as stored in the file.
        label_dtype: dtype of the labels returned (``int32``, as the TensorFlow tutorial casts).

    Returns:
        ``(labels, images)``: labels ``(n,)`` (``(n, label_bytes)`` if ``label_bytes > 1``) and
        images ``(n, *image_shape)`` as a view into ``records`` (no copy); for one ``bytes``
        record, a scalar label and one image.

    Raises:
        InvalidArgumentError: the records are not ``label_bytes + prod(image_shape)`` bytes long.
    """
    single = isinstance(records, (bytes, bytearray, memoryview))
    if isinstance(records, (bytes, bytearray, memoryview)):
        arr = np.frombuffer(records, np.uint8)[None, :]
    elif isinstance(records, np.ndarray) and records.dtype == np.uint8 and records.ndim == 2:
        arr = records
    else:
        records = list(records)
        arr = np.frombuffer(b"".join(records), np.uint8).reshape(len(records), -1) if records else (
            np.empty((0, label_bytes + int(np.prod(image_shape))), np.uint8)
        )
    want = label_bytes + int(np.prod(image_shape))
    if arr.shape[1] != want:
        raise InvalidArgumentError(
            f"CIFAR records must be {want} bytes ({label_bytes} label + {want - label_bytes} "
            f"pixels), got {arr.shape[1]}"
        )
    labels: np.ndarray = arr[:, :label_bytes].astype(label_dtype)
    labels = labels[:, 0] if label_bytes == 1 else labels
    images = arr[:, label_bytes:].reshape((arr.shape[0],) + tuple(image_shape))
    if single:
        return labels[0], images[0]
    return labels, images
