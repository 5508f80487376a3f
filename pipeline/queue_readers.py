"""TensorFlow 1's readers as the seed writes them: ``key, value = reader.read(filename_queue)``.

``TextLineReader(skip_header_lines=1)``, ``FixedLengthRecordReader(record_bytes=3073)`` and
``TFRecordReader()`` made without a path are *queue-fed* readers (TensorFlow's ``ReaderBase``): they
take the names of the files to read from a queue of file names (a :func:`string_input_producer`,
or any string queue), one file (one *work unit*) at a time, and hand out its records:

* :meth:`~QueueFedReader.read` returns the next record as ``(key, value)`` (both ``bytes``), taking
  the next file name from the queue when the current file is done; ``OutOfRangeError`` once the
  queue is closed and drained;
* :meth:`~QueueFedReader.read_up_to` returns up to ``n`` records of the current file as two arrays
  of ``bytes`` (fewer at the end of a file: a call never mixes two files);
* :meth:`~QueueFedReader.num_records_produced`, :meth:`~QueueFedReader.num_work_units_completed`
  and :meth:`~QueueFedReader.reset`, as TensorFlow's.

Keys are TensorFlow's: ``b"<file>:<line>"`` for text (lines counted from 1, header lines included),
``b"<file>:<record>"`` for fixed-length records (from 0), ``b"<file>:<offset>"`` for TFRecords (the
record's byte offset in the uncompressed stream). The records are read by the project's readers
(the ones given a path), so compression, CRC checks and errors are theirs.

A reader is safe to share between threads (each call takes a lock, as TensorFlow's stateful reader
op runs one call at a time); several readers on one queue read different files at the same time,
the seed's figure 12-10.

Example:
    >>> files = string_input_producer(c, ["a.csv", "b.csv"], num_epochs=1)    # doctest: +SKIP
    >>> reader = TextLineReader(skip_header_lines=1)                          # doctest: +SKIP
    >>> threads = files.start(coord)                                          # doctest: +SKIP
    >>> reader.read(files)                                                    # doctest: +SKIP
    (b'a.csv:2', b'1.,, 0')
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from queueserver.errors import InvalidArgumentError

__all__ = ["QueueFedFixedLengthRecordReader", "QueueFedReader", "QueueFedTFRecordReader", "QueueFedTextLineReader"]


class _FileRecords:
    """The records of one file, taken ``n`` at a time: ``take(n)`` -> (keys, values), empty at the end."""

    def __init__(self, reader: Any, name: bytes) -> None:
        self.reader = reader
        self.name = name

    def take(self, n: int) -> tuple[list[bytes], list[bytes]]:
        values: list[bytes] = []
        while len(values) < n:  # a chunk may stop short of n before the end of the file
            chunk = self.reader.read_chunk(n - len(values))
            if not len(chunk):
                break
            values.extend(self._as_bytes(chunk))
        return self._keys(values), values

    def _as_bytes(self, chunk: Any) -> list[bytes]:
        return chunk  # the text and TFRecord readers give bytes

    def _keys(self, values: list[bytes]) -> list[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        self.reader.close()


class _NumberedRecords(_FileRecords):
    """Keys ``b"<file>:<n>"``, numbered from ``first``: a text line's number (from 1, header lines
    counted), a fixed-length record's (from 0)."""

    def __init__(self, reader: Any, name: bytes, first: int) -> None:
        super().__init__(reader, name)
        self.next = first

    def _keys(self, values: list[bytes]) -> list[bytes]:
        keys = [b"%s:%d" % (self.name, self.next + i) for i in range(len(values))]
        self.next += len(values)
        return keys


class _FixedRecords(_NumberedRecords):
    def _as_bytes(self, chunk: Any) -> list[bytes]:
        return [row.tobytes() for row in chunk]  # the reader gives rows of a uint8 array


class _TFRecordRecords(_FileRecords):
    def __init__(self, reader: Any, name: bytes) -> None:
        super().__init__(reader, name)
        self.offset = 0

    def _keys(self, values: list[bytes]) -> list[bytes]:
        keys = []
        for v in values:  # a record takes its length (8), the length's CRC (4), the data, its CRC (4)
            keys.append(b"%s:%d" % (self.name, self.offset))
            self.offset += 16 + len(v)
        return keys


class QueueFedReader:
    """A reader that takes the names of its files from a queue (TensorFlow 1's ``ReaderBase``).

    Made by ``TextLineReader()``, ``FixedLengthRecordReader(record_bytes=...)`` or
    ``TFRecordReader()`` without a path; see :mod:`pipeline.queue_readers`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._file: _FileRecords | None = None
        self._produced = 0
        self._completed = 0

    def __repr__(self) -> str:
        where = f" reading {self._file.name!r}" if self._file is not None else ""
        return f"<{type(self).__name__}{where}, {self._produced} records, {self._completed} files done>"

    # -- what each kind of reader provides
    def _open(self, name: bytes) -> _FileRecords:
        raise NotImplementedError

    # -- the work units
    def _next_file(self, queue: Any) -> _FileRecords:
        source = getattr(queue, "queue", queue)  # a Producer (string_input_producer) or a queue
        if not hasattr(source, "dequeue"):
            raise TypeError(f"read() takes a queue of file names (a string_input_producer or a string queue), "
                            f"got {type(queue).__name__}")
        got = source.dequeue()  # OutOfRangeError once the queue is closed and drained: it ends the reads
        name = got.item() if isinstance(got, np.ndarray) else got
        if isinstance(name, str):
            name = name.encode()
        if not isinstance(name, bytes):
            raise InvalidArgumentError(f"a queue of file names gave {name!r}, not a file name")
        self._file = self._open(name)
        return self._file

    def _finish_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._completed += 1

    def read(self, queue: Any) -> tuple[bytes, bytes]:
        """The next record, as ``(key, value)``, taking file names from ``queue`` as needed.

        Args:
            queue: a :func:`string_input_producer` (or its queue), or any string queue handle.

        Raises:
            OutOfRangeError: the queue is closed and every file it named was read.
            NotFoundError, DataLossError, InvalidArgumentError: as the readers of one file raise them.
        """
        with self._lock:
            while True:
                records = self._file or self._next_file(queue)
                keys, values = records.take(1)
                if keys:
                    self._produced += 1
                    return keys[0], values[0]
                self._finish_file()

    def read_up_to(self, queue: Any, num_records: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``num_records`` records of one file, as two arrays of ``bytes`` (keys, values).

        Fewer come back at the end of a file (the next call starts the next file), never none: a
        file without records is skipped.

        Raises:
            InvalidArgumentError: ``num_records`` < 1.
            OutOfRangeError: the queue is closed and every file it named was read.
        """
        if num_records < 1:
            raise InvalidArgumentError(f"num_records must be >= 1, got {num_records}")
        with self._lock:
            while True:
                records = self._file or self._next_file(queue)
                keys, values = records.take(int(num_records))
                if len(keys) < num_records:
                    self._finish_file()  # the file ended: the next call takes the next one
                if keys:
                    self._produced += len(keys)
                    out_keys, out_values = np.empty(len(keys), object), np.empty(len(values), object)
                    out_keys[:], out_values[:] = keys, values
                    return out_keys, out_values

    def num_records_produced(self) -> int:
        """Records handed out since the reader was made (or reset)."""
        return self._produced

    def num_work_units_completed(self) -> int:
        """Files read to their end since the reader was made (or reset)."""
        return self._completed

    def reset(self) -> None:
        """Forget the current file and the counts, as TensorFlow's ``reader.reset()``."""
        with self._lock:
            if self._file is not None:
                self._file.close()
            self._file = None
            self._produced = self._completed = 0


class QueueFedTextLineReader(QueueFedReader):
    """``TextLineReader(skip_header_lines=..., compression_type=...)`` without a path: lines of the
    queue's files, keys ``b"<file>:<line>"``."""

    def __init__(self, skip_header_lines: int | None = 0, compression_type: str | None = "",
                 name: str | None = None, **options: Any) -> None:
        super().__init__()
        self.skip_header_lines = int(skip_header_lines or 0)  # TensorFlow's default is None
        if self.skip_header_lines < 0:
            raise InvalidArgumentError(f"skip_header_lines must be >= 0, got {skip_header_lines}")
        self.compression_type = compression_type
        self.options = options

    def _open(self, name: bytes) -> _FileRecords:
        from pipeline.textline import TextLineReader

        reader = TextLineReader(os.fsdecode(name), skip_header_lines=self.skip_header_lines,
                                compression_type=self.compression_type, **self.options)
        return _NumberedRecords(reader, name, self.skip_header_lines + 1)


class QueueFedFixedLengthRecordReader(QueueFedReader):
    """``FixedLengthRecordReader(record_bytes=..., header_bytes=..., footer_bytes=..., hop_bytes=...,
    encoding=...)`` without a path: the records of the queue's files, keys ``b"<file>:<record>"``."""

    def __init__(self, record_bytes: int, header_bytes: int | None = 0, footer_bytes: int | None = 0,
                 hop_bytes: int | None = 0, name: str | None = None, encoding: str | None = None,
                 compression_type: str | None = None, **options: Any) -> None:
        super().__init__()
        if record_bytes is None or int(record_bytes) <= 0:
            raise InvalidArgumentError(f"record_bytes must be > 0, got {record_bytes}")
        self.record_bytes = int(record_bytes)
        self.header_bytes, self.footer_bytes = int(header_bytes or 0), int(footer_bytes or 0)
        self.hop_bytes = int(hop_bytes or 0)
        self.compression_type = compression_type if compression_type is not None else (encoding or "")
        self.options = options

    def _open(self, name: bytes) -> _FileRecords:
        from pipeline.fixed_length import FixedLengthRecordReader

        reader = FixedLengthRecordReader(os.fsdecode(name), record_bytes=self.record_bytes,
                                         header_bytes=self.header_bytes, footer_bytes=self.footer_bytes,
                                         hop_bytes=self.hop_bytes, compression_type=self.compression_type,
                                         **self.options)
        return _FixedRecords(reader, name, 0)


class QueueFedTFRecordReader(QueueFedReader):
    """``TFRecordReader(options=...)`` without a path: the records of the queue's files, keys
    ``b"<file>:<offset>"``. ``options`` is a compression type (``"GZIP"``) or anything with a
    ``compression_type`` attribute (TensorFlow's ``TFRecordOptions``)."""

    def __init__(self, name: str | None = None, options: Any = None, compression_type: str | None = None,
                 **reader_options: Any) -> None:
        super().__init__()
        chosen: Any = compression_type
        if chosen is None:
            chosen = getattr(options, "compression_type", options)
        if isinstance(chosen, int):  # TensorFlow's old enum: 0 none, 1 ZLIB, 2 GZIP
            chosen = {0: "", 1: "ZLIB", 2: "GZIP"}.get(chosen, chosen)
        self.compression_type = chosen or ""
        self.options = reader_options

    def _open(self, name: bytes) -> _FileRecords:
        from pipeline.tfrecord.framing import TFRecordReader

        reader = TFRecordReader(os.fsdecode(name), compression_type=self.compression_type, **self.options)
        return _TFRecordRecords(reader, name)
