"""Readers: :func:`reader_runner` and :func:`csv_reader_runner` build the QueueRunner of a reader pipeline.

Each reader (``_ReaderOp``) takes a file name from the filename queue (a server queue, or a
:class:`LocalFilenameQueue`), opens the file in a worker thread, reads and decodes it a chunk at a
time with its format and enqueues each chunk with ``enqueue_many``; :class:`ReaderStats` counts
what they did.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from queueserver import errors as qerrors

from pipeline.blocks import RecordBlock
from pipeline.coordination import QueueRunner, as_async_queue

from .formats import CsvFormat, GoodPrefix, _Format

__all__ = ["LocalFilenameQueue", "ReaderStats", "auto_chunk_size", "csv_reader_runner", "reader_runner"]

#: Records read and decoded per step of a reader (and per ``enqueue_many``).
DEFAULT_CHUNK = 1024
#: The loader's default ``enqueue_many``: about this many bytes of elements (each call costs a
#: round trip and the server's bookkeeping; 1,024 rows of 44 bytes made that the loader's cost).
AUTO_CHUNK_BYTES = 1 << 20
_AUTO_CHUNK_RANGE = (64, 1 << 16)
_STRING_BYTES_GUESS = 64  # a string element's size is not in the spec
_MAX_KEPT_ERRORS = 100  # bad-record messages kept for the report (all are counted)


def auto_chunk_size(spec: Any) -> int:
    """Records per ``enqueue_many`` so that each carries about :data:`AUTO_CHUNK_BYTES` of
    elements of ``spec`` (64 to 65,536 records; a string counts 64 bytes, an unknown dimension 1).

    Example:
        >>> from queueserver.core.specs import ComponentSpec
        >>> auto_chunk_size(ComponentSpec([np.float32, np.int32], [[10], []]))  # 44-byte rows
        23831
        >>> auto_chunk_size(ComponentSpec([np.uint8], [[3073]]))  # CIFAR-10 records
        341
    """
    size = 0
    for i, dtype in enumerate(spec.dtypes):
        shape = spec.shapes[i] if spec.shapes is not None else ()
        count = int(np.prod([d if d is not None else 1 for d in shape])) if shape else 1
        size += count * (_STRING_BYTES_GUESS if dtype.kind == "O" else dtype.itemsize)
    lo, hi = _AUTO_CHUNK_RANGE
    return max(lo, min(hi, AUTO_CHUNK_BYTES // max(size, 1)))


@dataclass
class ReaderStats:
    """Counters shared by the readers of one pipeline (read them for progress and reports)."""

    records: int = 0
    files_done: int = 0
    bad_records: int = 0
    errors: list = field(default_factory=list)
    bytes: int = 0  # bytes of the enqueued components (a string counts its own bytes)
    waiting: int = 0  # readers waiting for room in a full queue now (readers with enqueue slices)

    def add_errors(self, errors: list) -> None:
        """Count bad records and keep the first messages."""
        self.bad_records += len(errors)
        room = _MAX_KEPT_ERRORS - len(self.errors)
        if room > 0:
            self.errors.extend(str(e) for e in errors[:room])


class _ReaderOp:
    """One reader: takes file names from a queue, enqueues decoded chunks. An async enqueue op."""

    def __init__(self, files: Any, queue: Any, fmt: _Format, convert: Callable, chunk_size: int,
                 stats: ReaderStats, enqueue_slice_s: float | None = None) -> None:
        self.files = files
        self.enqueue_slice_s = enqueue_slice_s
        #: Set by whoever runs the reader: true once it should stop (checked between slices).
        self.should_stop: Callable[[], bool] = lambda: False
        self.queue = queue
        self.fmt = fmt
        self.convert = convert
        self.chunk_size = chunk_size
        self.stats = stats
        self.reader: Any = None
        self.path = ""
        self.bad_seen = 0  # the open reader's bad records already reported
        self.block: Any = ()  # the records of the last read (a format reads one or more chunks)
        self.block_at = 0  # the next record of self.block to convert
        self.block_first = 0  # the line (record) number in its file of self.block's first record
        self.block_offset: int | None = None  # the byte offset of self.block's first record

    def _read_and_decode(self) -> tuple[bool, tuple | None, int, int, list, BaseException | None]:
        """Worker thread: take the next chunk of records and decode it.

        A format may read more than a chunk at a time (a line format reads a segment of many
        chunks, parsed once); the chunks of that read are then decoded and enqueued one by one,
        so ``chunk_size`` still bounds every ``enqueue_many`` and places every error by line.

        Returns (end_of_file, components, n, bytes, errors skipped, the error to raise once the
        components are enqueued: a bad record after good ones, with ``on_error="raise"``).
        """
        errors: list = []
        if self.block_at >= len(self.block):
            reader = self.reader
            self.block_first = self.fmt.first_line(reader)
            self.block_offset = self.fmt.position(reader)
            try:
                self.block = self.fmt.read(reader, max(self.chunk_size, self.fmt.read_records_min))
            except qerrors.DataLossError as exc:  # the good records before it came with the previous read
                raise qerrors.DataLossError(f"{exc} ({self.fmt.unit} {self.fmt.first_line(reader)} of the file)",
                                            **exc.details) from None
            self.block_at = 0
            skipped = reader.bad_records - self.bad_seen
            self.bad_seen = reader.bad_records
            if skipped:
                errors = self.fmt.skipped(reader, self.path, skipped)
                self.block_offset = None  # the offsets of a read that skipped records would not add up
            if len(self.block) == 0:
                return True, None, 0, 0, errors, None
        i = self.block_at
        j = min(i + self.chunk_size, len(self.block))
        records = self.block
        if (i, j) != (0, len(records)):
            records = records.slice(i, j) if isinstance(records, RecordBlock) else records[i:j]
        self.block_at = j
        offset = self.block_offset if i == 0 else None  # a later chunk's offset is not known here
        stop: BaseException | None = None
        try:
            comps = self.convert(records, self.path, self.block_first + i, errors, offset)
        except GoodPrefix as partial:
            comps, stop = partial.components, partial.error
        n = 0 if comps is None else len(comps[0])
        return False, comps, n, 0 if comps is None else _payload_bytes(comps), errors, stop

    async def __call__(self) -> None:
        while True:
            if self.reader is None:
                name = await self.files.dequeue()  # OutOfRangeError when no file is left: we are done
                if isinstance(name, np.ndarray):  # a server string queue hands out 0-d object arrays
                    name = name.item()
                self.path = os.fsdecode(name)
                self.reader = await asyncio.to_thread(self.fmt.open, self.path)
                self.bad_seen = 0
                self.block, self.block_at = (), 0
            try:
                eof, comps, n, nbytes, errors, stop = await asyncio.to_thread(self._read_and_decode)
            except BaseException:
                self.reader.close()
                self.reader = None
                raise
            if errors:
                self.stats.add_errors(errors)
            if eof:
                self.reader.close()
                self.reader = None
                self.stats.files_done += 1
                continue
            if comps is not None and n:
                await self._enqueue(comps, n, nbytes)
            if stop is not None:  # the good records before the bad one are in the queue now
                self.reader.close()
                self.reader = None
                raise stop
            return


    async def _enqueue(self, comps: tuple, n: int, nbytes: int) -> None:
        """``enqueue_many`` the chunk, counting exactly what lands.

        With ``enqueue_slice_s``, a wait for room is cut into timed slices: each timed-out slice
        keeps what it placed and says how many (``placed``), the rest is sent again, and a stop
        request ends the wait within one slice with every placed record counted (a cancelled call
        would keep its placed records too, but nobody would know how many).
        """
        if self.enqueue_slice_s is None:
            await self.queue.enqueue_many(comps)
            self.stats.records += n
            self.stats.bytes += nbytes
            return
        waiting = False
        try:
            while True:
                try:
                    await self.queue.enqueue_many(comps, timeout=self.enqueue_slice_s)
                except qerrors.DeadlineExceededError as exc:
                    placed = int(exc.details.get("placed", 0))
                    if placed:
                        self.stats.records += placed
                        self.stats.bytes += _payload_bytes(tuple(c[:placed] for c in comps))
                        comps = tuple(c[placed:] for c in comps)
                    if not waiting:  # a whole slice without room: the queue is full (the bar says so)
                        waiting = True
                        self.stats.waiting += 1
                    if self.should_stop():
                        return  # interrupted: the rest of the chunk is not loaded
                    continue
                self.stats.records += len(comps[0])
                self.stats.bytes += _payload_bytes(comps)
                return
        finally:
            if waiting:
                self.stats.waiting -= 1


def _payload_bytes(comps: tuple) -> int:
    """Bytes of decoded components: array bytes, or the strings' own bytes for object arrays."""
    total = 0
    for c in comps:
        if c.dtype == object:
            total += sum(len(v) for v in c.ravel())
        else:
            total += c.nbytes
    return total


def reader_runner(
    filename_queue: Any,
    queue: Any,
    fmt: _Format,
    *,
    num_readers: int = 1,
    chunk_size: int = DEFAULT_CHUNK,
    stats: ReaderStats | None = None,
    name: str | None = None,
    closed_is_an_error: bool = False,
    enqueue_slice_s: float | None = None,
) -> QueueRunner:
    """A QueueRunner of ``num_readers`` readers moving records of files named in ``filename_queue``
    into ``queue`` (the seed's figure 12-10).

    Each reader dequeues a file name, opens the file with ``fmt`` in a worker thread, and enqueues
    ``chunk_size`` decoded records per ``enqueue_many`` until the file ends, then takes the next
    name. When the file names run out (the filename queue is closed and empty) the reader stops;
    when all have stopped the runner closes ``queue``.

    Args:
        filename_queue: a string queue of file names (``Queue``/``AsyncQueue``), or any object with
            a coroutine ``dequeue()`` raising ``OutOfRangeError`` at the end
            (:class:`LocalFilenameQueue`).
        queue: the target queue; its spec decides the element layout (see the module docstring).
        fmt: :class:`CsvFormat`, :class:`TextFormat`, :class:`FixedLengthFormat` or
            :class:`TFRecordFormat`.
        num_readers: concurrent readers (files read at the same time).
        chunk_size: records per read, decode and ``enqueue_many``.
        stats: counters to update (a new :class:`ReaderStats` by default; see ``runner.stats``).
        name: the runner's name.
        closed_is_an_error: the target queue closed by someone else stops the readers with
            its CancelledError (a loader must not report success then); by default, as in
            TensorFlow's QueueRunner, a closed queue ends the readers quietly.
        enqueue_slice_s: wait for room in timed slices of this many seconds, so that a reader
            asked to stop (its ``should_stop`` callable, in ``runner.enqueue_ops``) ends its wait
            within one slice and every record it placed is counted (``None``: one untimed wait).

    Returns:
        The :class:`QueueRunner`; start it with ``create_tasks(coord)`` or ``create_threads(coord)``.
        Its ``stats`` attribute counts records, files and bad records.

    Raises:
        InvalidArgumentError: the queue's spec cannot hold the format's records (before any read).

    Example:
        >>> runner = reader_runner(files, instances, CsvFormat([[-1.], [-1.], [-1]], 1), num_readers=5)  # doctest: +SKIP
    """
    if num_readers < 1:
        raise qerrors.InvalidArgumentError(f"num_readers must be >= 1, got {num_readers}")
    if chunk_size < 1:
        raise qerrors.InvalidArgumentError(f"chunk_size must be >= 1, got {chunk_size}")
    target = as_async_queue(queue)
    files = as_async_queue(filename_queue)
    convert = fmt.bind(target.spec, target.name)
    stats = stats if stats is not None else ReaderStats()
    ops = [_ReaderOp(files, target, fmt, convert, chunk_size, stats, enqueue_slice_s) for _ in range(num_readers)]
    ends = (qerrors.OutOfRangeError,) if closed_is_an_error else (qerrors.OutOfRangeError, qerrors.CancelledError)
    runner = QueueRunner(queue, ops, name=name or f"{target.name}_readers", queue_closed_exception_types=ends)
    runner.stats = stats  # type: ignore[attr-defined]
    return runner


def csv_reader_runner(
    filename_queue: Any,
    queue: Any,
    record_defaults: Sequence[Any] | None,
    *,
    num_readers: int = 5,
    skip_header_lines: int = 1,
    field_delim: str = ",",
    on_error: str = "raise",
    chunk_size: int = DEFAULT_CHUNK,
    name: str | None = None,
) -> QueueRunner:
    """The seed's multi-reader CSV pipeline: :func:`reader_runner` with a :class:`CsvFormat`.

    Args:
        filename_queue: the queue of file names.
        queue: the instance queue, e.g. ``RandomShuffleQueue(dtypes=[float32, int32], shapes=[[2], []])``.
        record_defaults: ``decode_csv`` defaults (``None``: zeros from the queue's spec).
        num_readers: readers reading different files at the same time.
        skip_header_lines: header lines per file.
        field_delim: the delimiter.
        on_error: ``"raise"`` or ``"skip"``.
        chunk_size: lines per read, decode and ``enqueue_many``.
        name: the runner's name.

    Returns:
        The :class:`QueueRunner`.

    Example:
        >>> runner = csv_reader_runner(files, instances, [[-1.], [-1.], [-1]])  # doctest: +SKIP
        >>> coord = Coordinator(); threads = runner.create_threads(coord)      # doctest: +SKIP
    """
    fmt = CsvFormat(record_defaults, skip_header_lines, field_delim, on_error=on_error)
    return reader_runner(filename_queue, queue, fmt, num_readers=num_readers, chunk_size=chunk_size, name=name)


class LocalFilenameQueue:
    """An in-process source of file names with the filename queue's ``dequeue`` protocol.

    The loader uses it instead of a server queue: the names never leave the loading process.

    Args:
        paths: the files of one epoch.
        num_epochs: how many times to hand out the list (``None``: for ever).
        shuffle: shuffle the list every epoch.
        seed: the shuffle seed.

    Example:
        >>> q = LocalFilenameQueue(["a", "b"], num_epochs=2)
        >>> [asyncio.run(q.dequeue()) for _ in range(4)]
        ['a', 'b', 'a', 'b']
    """

    name = "local_filenames"

    def __init__(self, paths: Sequence[str], num_epochs: int | None = 1, shuffle: bool = False,
                 seed: int | None = None) -> None:
        self.paths = list(paths)
        self.num_epochs = num_epochs
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._epoch = 0
        self._pending: list[str] = []

    async def dequeue(self) -> str:
        """The next file name.

        Raises:
            OutOfRangeError: every epoch was handed out.
        """
        if not self._pending:
            if not self.paths or (self.num_epochs is not None and self._epoch >= self.num_epochs):
                raise qerrors.OutOfRangeError("no more files to read")
            order = self._rng.permutation(len(self.paths)) if self.shuffle else range(len(self.paths))
            self._pending = [self.paths[i] for i in order][::-1]
            self._epoch += 1
        return self._pending.pop()

    async def close(self, cancel_pending_enqueues: bool = False) -> None:
        """Nothing to release (for the queue protocol)."""
