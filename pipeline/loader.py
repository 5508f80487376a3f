"""Reader pipelines into shared queues, and the loader client (``python -m pipeline load``).

The seed's multi-reader pipeline (figure 12-10): a queue of file names feeds ``N`` readers; each
reader takes a file name, opens the file in a worker thread, reads it a chunk of records at a time,
decodes the chunk with one vectorised call (``decode_csv``, ``parse_example`` ...) and enqueues the
decoded instances with ``enqueue_many``. Backpressure comes from the target queue's capacity: a
reader waits in ``enqueue_many`` while the queue is full. A :class:`~pipeline.coordination.QueueRunner`
runs the readers and closes the target queue when the file names run out.

* :class:`CsvFormat`, :class:`TextFormat`, :class:`FixedLengthFormat`, :class:`TFRecordFormat`
  say how to open and decode one kind of file;
* :func:`reader_runner` builds the QueueRunner for any format; :func:`csv_reader_runner` is the
  seed's CSV case;
* :func:`load_async` / :func:`load` and :func:`main` are the loader client: they create or open
  the target queue, read files matching a glob with concurrent readers, show progress on stderr,
  report their figures to the server every few seconds (``role="loader"``: records/s, bytes/s,
  totals; the status page and ``/metrics`` show them) and close the queue at the end. Ctrl-C
  (or cancelling :func:`load_async`) stops the readers and leaves the queue open and usable.

How decoded records become queue elements is decided by the queue's spec, so one rule serves
existing and new queues: the queue's components take the decoded CSV columns in order, a scalar
component one column, a ``[k]`` component the next ``k`` columns (stacked). A queue
``(float32[2], int32[])`` thus takes ``x1, x2, target`` as the seed's ``features, target``.

Example:
    >>> import numpy as np, queueserver as qs                              # doctest: +SKIP
    >>> c = qs.connect(target)                                             # doctest: +SKIP
    >>> files = c.fifo_queue("files", 10, [str], [[]])                     # doctest: +SKIP
    >>> instances = c.random_shuffle_queue("instances", 10, 2, [np.float32, np.int32], [[2], []])  # doctest: +SKIP
    >>> runner = csv_reader_runner(files, instances, [[-1.], [-1.], [-1]], num_readers=5)  # doctest: +SKIP
    >>> files.enqueue("my_test.csv"); files.close()                        # doctest: +SKIP
    >>> runner.create_threads(Coordinator())                               # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import asyncio
import glob as globlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TextIO

import numpy as np

import queueserver as qs
from queueserver import errors as qerrors
from queueserver.core.specs import STRING, ComponentSpec, dtype_name, shape_str

from pipeline.coordination import Coordinator, QueueRunner, as_async_queue
from pipeline.csv import decode_csv
from pipeline.fixed_length import FixedLengthRecordReader
from pipeline.textline import TextLineReader
from pipeline.tfrecord import FixedLenFeature, TFRecordReader, parse_example

__all__ = [
    "CsvFormat",
    "FixedLengthFormat",
    "LoadResult",
    "LocalFilenameQueue",
    "ReaderStats",
    "TFRecordFormat",
    "TextFormat",
    "csv_reader_runner",
    "load",
    "load_async",
    "main",
    "parse_features",
    "parse_record_defaults",
    "reader_runner",
]

log = logging.getLogger("pipeline.loader")

#: Records read and decoded per step of a reader (and per ``enqueue_many``).
DEFAULT_CHUNK = 1024
#: Seconds between the loader's reports to the server (``Client.report``).
DEFAULT_REPORT_EVERY_S = 2.0
#: Seconds an interrupted loader gives the enqueues in flight to land before withdrawing them.
DEFAULT_INTERRUPT_GRACE_S = 2.0
_MAX_KEPT_ERRORS = 100  # bad-record messages kept for the report (all are counted)


# --------------------------------------------------------------------------- conversions
def _cast(arr: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """Cast a decoded column to a component dtype, refusing casts that change its meaning."""
    if arr.dtype == dtype or (dtype == STRING and arr.dtype == object):
        return arr
    ok = (np.can_cast(arr.dtype, dtype, casting="same_kind") and arr.dtype.kind != "O" and dtype != STRING) or (
        arr.dtype.kind in "bui" and dtype.kind == "f")
    if not ok:
        raise qerrors.InvalidArgumentError(
            f"{what}: cannot put {dtype_name(arr.dtype)} values into a {dtype_name(dtype)} component")
    return arr.astype(dtype)


def _component_widths(spec: ComponentSpec, what: str) -> list[int]:
    """How many CSV columns each component takes: 1 for a scalar, k for a ``[k]`` vector."""
    if spec.shapes is None:
        return [1] * len(spec.dtypes)
    widths = []
    for i, shape in enumerate(spec.shapes):
        if shape == ():
            widths.append(1)
        elif len(shape) == 1 and shape[0] is not None:
            widths.append(shape[0])
        else:
            raise qerrors.InvalidArgumentError(
                f"{what}: component {i} has shape {shape_str(shape)}; CSV columns fill scalar or [k] components only")
    return widths


# --------------------------------------------------------------------------- formats
class _Format:
    """How to open one kind of file and turn a chunk of its records into queue components."""

    on_error = "raise"

    def open(self, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def default_spec(self) -> ComponentSpec:  # pragma: no cover - abstract
        """The spec of a queue created for this format."""
        raise NotImplementedError

    def bind(self, spec: ComponentSpec, queue_name: str) -> Callable[..., tuple | None]:
        """A function ``(records, path, first_line, errors) -> components`` for this queue.

        Raises:
            InvalidArgumentError: the queue cannot hold this format's records (said up front).
        """
        raise NotImplementedError  # pragma: no cover - abstract


@dataclass(frozen=True)
class CsvFormat(_Format):
    """CSV files read with ``TextLineReader`` and decoded with ``decode_csv``, a chunk at a time.

    Args:
        record_defaults: ``decode_csv`` defaults, one per column (``None``: derive them from an
            existing queue's spec, zeros of each component's dtype).
        skip_header_lines: lines to drop at the start of each file.
        field_delim: the delimiter.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        on_error: ``"raise"`` or ``"skip"`` (drop bad records, count and report them).
        layout: the spec of a queue created for these files: ``"features-target"`` (all columns
            but the last stacked, then the last: the seed's ``features, target``), ``"columns"``
            (one scalar component per column) or ``"stacked"`` (one ``[n]`` component).

    Example:
        >>> CsvFormat([[-1.], [-1.], [-1]], skip_header_lines=1).default_spec().describe()
        '(float32[2], int32[])'
    """

    record_defaults: Sequence[Any] | None = None
    skip_header_lines: int = 0
    field_delim: str = ","
    compression_type: str = ""
    on_error: str = "raise"
    layout: str = "features-target"

    def __post_init__(self) -> None:
        if self.layout not in ("features-target", "columns", "stacked"):
            raise qerrors.InvalidArgumentError(
                f"layout must be 'features-target', 'columns' or 'stacked', not {self.layout!r}")

    def _column_dtypes(self) -> list[np.dtype]:
        if self.record_defaults is None:
            raise qerrors.InvalidArgumentError("CSV needs record_defaults (or an existing queue to derive them from)")
        return [np.asarray(c).dtype for c in decode_csv([], self.record_defaults)]

    def open(self, path: str) -> TextLineReader:
        """Open one file (blocking: call it in a worker thread)."""
        return TextLineReader(path, skip_header_lines=self.skip_header_lines,
                              compression_type=self.compression_type, on_error=self.on_error)

    def first_line(self, reader: TextLineReader) -> int:
        """The 1-based line number of the next record of ``reader``."""
        return self.skip_header_lines + reader.records + 1

    def default_spec(self) -> ComponentSpec:
        """See :meth:`_Format.default_spec`."""
        dtypes = self._column_dtypes()
        if self.layout == "columns" or len(dtypes) == 1:
            return ComponentSpec(dtypes, [[]] * len(dtypes))
        features = dtypes if self.layout == "stacked" else dtypes[:-1]
        if len(set(features)) != 1:
            raise qerrors.InvalidArgumentError(
                f"layout {self.layout!r} stacks columns of different dtypes "
                f"({', '.join(dtype_name(d) for d in features)}); use layout='columns'")
        if self.layout == "stacked":
            return ComponentSpec([features[0]], [[len(features)]])
        return ComponentSpec([features[0], dtypes[-1]], [[len(features)], []])

    def with_defaults_for(self, spec: ComponentSpec) -> "CsvFormat":
        """This format, with record defaults (zeros) derived from a queue's spec if it has none."""
        if self.record_defaults is not None:
            return self
        widths = _component_widths(spec, "record defaults")
        defaults: list[Any] = []
        for dtype, width in zip(spec.dtypes, widths):
            one = [b""] if dtype == STRING else np.zeros(1, dtype)
            defaults += [one] * width
        return CsvFormat(defaults, self.skip_header_lines, self.field_delim, self.compression_type,
                         self.on_error, self.layout)

    def bind(self, spec: ComponentSpec, queue_name: str) -> Callable[..., tuple | None]:
        """See :meth:`_Format.bind`."""
        fmt = self.with_defaults_for(spec)
        where = f"queue '{queue_name}' {spec.describe()}"
        widths = _component_widths(spec, where)
        n_cols = len(fmt.record_defaults)
        if sum(widths) != n_cols:
            raise qerrors.InvalidArgumentError(
                f"{where} takes {sum(widths)} CSV column(s) but record_defaults has {n_cols}: "
                f"give one default per column the queue takes")
        starts = np.cumsum([0] + widths[:-1]).tolist()
        vector = [False] * len(widths) if spec.shapes is None else [len(s) == 1 for s in spec.shapes]
        # Check the column dtypes against the components now, not after the first chunk is read.
        col_dtypes = fmt._column_dtypes()
        for i, (s, w, dtype) in enumerate(zip(starts, widths, spec.dtypes)):
            for c in range(s, s + w):
                _cast(np.empty(0, col_dtypes[c]), dtype, f"{where}, component {i} (CSV column {c})")

        def convert(records: list[bytes], path: str, first_line: int, errors: list) -> tuple | None:
            bad: list = []
            cols = decode_csv(records, fmt.record_defaults, fmt.field_delim, on_error=fmt.on_error,
                              bad_records=bad, source=path, first_line=first_line)
            errors.extend(bad)
            if len(cols[0]) == 0:
                return None
            out = []
            for i, (s, w, dtype) in enumerate(zip(starts, widths, spec.dtypes)):
                what = f"{where}, component {i}"
                if vector[i]:
                    block = np.stack([_cast(c, dtype, what) for c in cols[s:s + w]], axis=1)
                else:
                    block = _cast(cols[s], dtype, what)
                out.append(block)
            return tuple(out)

        return convert


@dataclass(frozen=True)
class TextFormat(_Format):
    """Text files, one string element per line (``TextLineReader``).

    Args:
        skip_header_lines: lines to drop at the start of each file.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        on_error: ``"raise"`` or ``"skip"``.

    Example:
        >>> TextFormat().default_spec().describe()
        '(string[])'
    """

    skip_header_lines: int = 0
    compression_type: str = ""
    on_error: str = "raise"

    def open(self, path: str) -> TextLineReader:
        """Open one file (blocking)."""
        return TextLineReader(path, skip_header_lines=self.skip_header_lines,
                              compression_type=self.compression_type, on_error=self.on_error)

    def first_line(self, reader: TextLineReader) -> int:
        """The 1-based line number of the next line of ``reader``."""
        return self.skip_header_lines + reader.records + 1

    def default_spec(self) -> ComponentSpec:
        """One string component."""
        return ComponentSpec([STRING], [[]])

    def bind(self, spec: ComponentSpec, queue_name: str) -> Callable[..., tuple | None]:
        """See :meth:`_Format.bind`."""
        if len(spec.dtypes) != 1 or spec.dtypes[0] != STRING:
            raise qerrors.InvalidArgumentError(
                f"queue '{queue_name}' {spec.describe()} cannot take text lines: it needs one string component")

        def convert(records: list[bytes], path: str, first_line: int, errors: list) -> tuple | None:
            arr = np.empty(len(records), object)
            arr[:] = records
            return (arr,)

        return convert


@dataclass(frozen=True)
class FixedLengthFormat(_Format):
    """Fixed-length binary records (``FixedLengthRecordReader``): one ``uint8[record_bytes]``
    component per record (or one string component holding the record's bytes).

    Args:
        record_bytes: size of each record.
        header_bytes: bytes skipped at the start of each file.
        footer_bytes: bytes ignored at the end of each file.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        on_error: ``"raise"`` or ``"skip"``.

    Example:
        >>> FixedLengthFormat(3073).default_spec().describe()
        '(uint8[3073])'
    """

    record_bytes: int
    header_bytes: int = 0
    footer_bytes: int = 0
    compression_type: str = ""
    on_error: str = "raise"

    def open(self, path: str) -> FixedLengthRecordReader:
        """Open one file (blocking)."""
        return FixedLengthRecordReader(path, record_bytes=self.record_bytes, header_bytes=self.header_bytes,
                                       footer_bytes=self.footer_bytes, compression_type=self.compression_type,
                                       on_error=self.on_error)

    def first_line(self, reader: Any) -> int:
        """The 1-based index of the next record of ``reader``."""
        return reader.records + 1

    def default_spec(self) -> ComponentSpec:
        """One ``uint8[record_bytes]`` component."""
        return ComponentSpec([np.uint8], [[self.record_bytes]])

    def bind(self, spec: ComponentSpec, queue_name: str) -> Callable[..., tuple | None]:
        """See :meth:`_Format.bind`."""
        as_string = spec.dtypes == (STRING,)
        if not as_string and (spec.dtypes != (np.dtype(np.uint8),) or
                              (spec.shapes is not None and spec.shapes[0] != (self.record_bytes,))):
            raise qerrors.InvalidArgumentError(
                f"queue '{queue_name}' {spec.describe()} cannot take {self.record_bytes}-byte records: it "
                f"needs one uint8[{self.record_bytes}] or string component")

        def convert(records: np.ndarray, path: str, first_line: int, errors: list) -> tuple | None:
            if not as_string:
                return (records,)
            arr = np.empty(len(records), object)
            arr[:] = [bytes(r) for r in records]
            return (arr,)

        return convert


def parse_features(text: str) -> dict[str, FixedLenFeature]:
    """Parse the CLI's ``--features``: ``name:dtype[:size[xsize...]]`` entries, comma separated.

    Args:
        text: e.g. ``"x:float32:784,y:int64:1"`` (``y:int64`` alone is a scalar feature).

    Returns:
        Feature name -> ``FixedLenFeature``, in the given order.

    Raises:
        InvalidArgumentError: a malformed entry.

    Example:
        >>> parse_features("x:float32:784,y:int64")["x"]
        FixedLenFeature(shape=(784,), dtype='float32', default_value=None)
    """
    out: dict[str, FixedLenFeature] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not parts[0]:
            raise qerrors.InvalidArgumentError(f"--features entry {entry!r}: expected name:dtype[:size]")
        name, dtype = parts[0], parts[1]
        if dtype not in ("float32", "int64", "string", "bytes"):
            raise qerrors.InvalidArgumentError(
                f"--features entry {entry!r}: dtype must be float32, int64 or string (what tf.train.Example holds)")
        try:
            shape = tuple(int(d) for d in parts[2].split("x")) if len(parts) == 3 else ()
        except ValueError:
            raise qerrors.InvalidArgumentError(f"--features entry {entry!r}: size must be an integer like 784 or 28x28") from None
        out[name] = FixedLenFeature(shape, "string" if dtype == "bytes" else dtype)
    if not out:
        raise qerrors.InvalidArgumentError("--features is empty")
    return out


@dataclass(frozen=True)
class TFRecordFormat(_Format):
    """TFRecord files (``TFRecordReader``), parsed with ``parse_example`` when ``features`` are given.

    Args:
        features: feature name -> ``FixedLenFeature``; ``None`` enqueues each record's raw bytes
            into one string component.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        on_error: ``"raise"`` or ``"skip"`` (corrupt records and records that do not parse).

    Example:
        >>> TFRecordFormat(parse_features("x:float32:784,y:int64:1")).default_spec().describe()
        '(float32[784], int64[1])'
    """

    features: dict[str, FixedLenFeature] | None = None
    compression_type: str = ""
    on_error: str = "raise"

    def open(self, path: str) -> TFRecordReader:
        """Open one file (blocking)."""
        return TFRecordReader(path, compression_type=self.compression_type, on_error=self.on_error)

    def first_line(self, reader: Any) -> int:
        """The 1-based index of the next record of ``reader``."""
        return reader.records + 1

    def default_spec(self) -> ComponentSpec:
        """One component per feature, in order (one string component without features)."""
        if self.features is None:
            return ComponentSpec([STRING], [[]])
        return ComponentSpec([STRING if f.dtype == "string" else f.dtype for f in self.features.values()],
                             [list(f.shape) for f in self.features.values()])

    def bind(self, spec: ComponentSpec, queue_name: str) -> Callable[..., tuple | None]:
        """See :meth:`_Format.bind`."""
        where = f"queue '{queue_name}' {spec.describe()}"
        if self.features is None:
            if spec.dtypes != (STRING,):
                raise qerrors.InvalidArgumentError(
                    f"{where} cannot take raw TFRecord records: give features to parse, or use a string queue")
            return TextFormat().bind(spec, queue_name)
        names = list(self.features)
        if spec.names is not None:
            if set(spec.names) != set(names):
                raise qerrors.InvalidArgumentError(
                    f"{where} has components {list(spec.names)} but the features are {names}")
            order = list(spec.names)
        else:
            if len(spec.dtypes) != len(names):
                raise qerrors.InvalidArgumentError(
                    f"{where} has {len(spec.dtypes)} component(s) but {len(names)} feature(s) were given")
            order = names
        on_error = self.on_error
        features = self.features

        def parse_one_by_one(records: list[bytes], path: str, first_line: int, errors: list) -> dict | None:
            good = []
            for i, rec in enumerate(records):
                try:
                    parse_example([rec], features)
                except qerrors.InvalidArgumentError as exc:
                    errors.append(qerrors.InvalidArgumentError(
                        f"{exc} (file {path}, record {first_line + i})", source=path, line=first_line + i))
                    continue
                good.append(rec)
            return parse_example(good, features) if good else None

        def convert(records: list[bytes], path: str, first_line: int, errors: list) -> tuple | None:
            try:
                parsed = parse_example(records, features)
            except qerrors.InvalidArgumentError as exc:
                if on_error == "raise":
                    raise qerrors.InvalidArgumentError(
                        f"{exc} (file {path}, records {first_line}..{first_line + len(records) - 1})",
                        source=path) from exc
                parsed = parse_one_by_one(records, path, first_line, errors)
                if parsed is None:
                    return None
            return tuple(_cast(parsed[n], spec.dtypes[i], f"{where}, feature {n!r}") for i, n in enumerate(order))

        return convert


# --------------------------------------------------------------------------- readers
@dataclass
class ReaderStats:
    """Counters shared by the readers of one pipeline (read them for progress and reports)."""

    records: int = 0
    files_done: int = 0
    bad_records: int = 0
    errors: list = field(default_factory=list)
    bytes: int = 0  # bytes of the enqueued components (a string counts its own bytes)

    def add_errors(self, errors: list) -> None:
        """Count bad records and keep the first messages."""
        self.bad_records += len(errors)
        room = _MAX_KEPT_ERRORS - len(self.errors)
        if room > 0:
            self.errors.extend(str(e) for e in errors[:room])


class _ReaderOp:
    """One reader: takes file names from a queue, enqueues decoded chunks. An async enqueue op."""

    def __init__(self, files: Any, queue: Any, fmt: _Format, convert: Callable, chunk_size: int,
                 stats: ReaderStats) -> None:
        self.files = files
        self.queue = queue
        self.fmt = fmt
        self.convert = convert
        self.chunk_size = chunk_size
        self.stats = stats
        self.reader: Any = None
        self.path = ""

    def _read_and_decode(self) -> tuple[bool, tuple | None, int, int, list]:
        """Worker thread: read one chunk and decode it. Returns (end_of_file, components, n, bytes, errors)."""
        reader = self.reader
        first = self.fmt.first_line(reader)
        bad_before = reader.bad_records
        records = reader.read_chunk(self.chunk_size)
        errors: list = [qerrors.DataLossError(f"{self.path}: corrupt data skipped near record {first}")] * (
            reader.bad_records - bad_before)
        if len(records) == 0:
            return True, None, 0, 0, errors
        comps = self.convert(records, self.path, first, errors)
        n = 0 if comps is None else len(comps[0])
        return False, comps, n, 0 if comps is None else _payload_bytes(comps), errors

    async def __call__(self) -> None:
        while True:
            if self.reader is None:
                name = await self.files.dequeue()  # OutOfRangeError when no file is left: we are done
                if isinstance(name, np.ndarray):  # a server string queue hands out 0-d object arrays
                    name = name.item()
                self.path = os.fsdecode(name)
                self.reader = await asyncio.to_thread(self.fmt.open, self.path)
            try:
                eof, comps, n, nbytes, errors = await asyncio.to_thread(self._read_and_decode)
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
            if n:
                await self.queue.enqueue_many(comps)
                self.stats.records += n
                self.stats.bytes += nbytes
            return


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
    ops = [_ReaderOp(files, target, fmt, convert, chunk_size, stats) for _ in range(num_readers)]
    runner = QueueRunner(queue, ops, name=name or f"{target.name}_readers")
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


# --------------------------------------------------------------------------- the loader
@dataclass
class LoadResult:
    """What :func:`load` did."""

    queue: str
    records: int
    files: int
    bad_records: int
    errors: list
    seconds: float
    closed: bool
    bytes: int = 0

    @property
    def records_per_second(self) -> float:
        """Throughput over the whole run."""
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_second(self) -> float:
        """Bytes enqueued per second over the whole run."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


class _Reporter:
    """Sends the loader's figures to the server every ``every`` seconds (``Client.report``).

    Figures (role ``loader``): ``records_per_s`` and ``bytes_per_s`` since the last report, and the
    totals so far: ``records``, ``bytes``, ``files`` and ``bad_records``. One small round trip
    per report; the server drops the report when the connection closes.
    """

    def __init__(self, client: Any, stats: ReaderStats, every: float) -> None:
        self.client, self.stats, self.every = client, stats, every

    def figures(self, dt: float, records: int, nbytes: int) -> dict[str, float]:
        st = self.stats
        dt = max(dt, 1e-9)
        return {"records_per_s": round((st.records - records) / dt, 3),
                "bytes_per_s": round((st.bytes - nbytes) / dt, 3),
                "records": st.records, "bytes": st.bytes, "files": st.files_done, "bad_records": st.bad_records}

    async def run(self) -> None:
        st = self.stats
        last, records, nbytes = time.monotonic(), st.records, st.bytes
        while True:
            await asyncio.sleep(self.every)  # the report period, not a wait for an event
            now = time.monotonic()
            figures = self.figures(now - last, records, nbytes)
            last, records, nbytes = now, st.records, st.bytes
            try:
                await self.client.report("loader", figures)
            except qerrors.QueueServerError as exc:  # an older server, or the connection is gone
                log.debug("loader report failed, not reporting any more: %s", exc)
                return


class _Progress:
    """A one-line progress bar on a terminal: records, records/s, files."""

    def __init__(self, stats: ReaderStats, total_files: int | None, stream: TextIO | None) -> None:
        self.stats = stats
        self.total = total_files
        self.stream = stream
        self.start = time.monotonic()
        self.live = stream is not None and getattr(stream, "isatty", lambda: False)()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.stats.records / elapsed
        files = f"{self.stats.files_done}/{self.total}" if self.total else str(self.stats.files_done)
        bar = ""
        if self.total:
            filled = int(20 * min(1.0, self.stats.files_done / self.total))
            bar = "[" + "#" * filled + "." * (20 - filled) + "] "
        bad = f", {self.stats.bad_records:,} skipped" if self.stats.bad_records else ""
        return f"{bar}{self.stats.records:,} records, {rate:,.0f} records/s, files {files}{bad}"

    async def run(self) -> None:
        if not self.live:
            return
        while True:
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()
            await asyncio.sleep(0.2)  # a redraw rate, not a wait for an event

    def finish(self) -> None:
        if self.stream is None:
            return
        self.stream.write(("\r" if self.live else "") + self.line() + ("\x1b[K" if self.live else "") + "\n")
        self.stream.flush()


def expand_files(patterns: str | Sequence[str]) -> list[str]:
    """Sorted paths matching one or more globs (``**`` allowed).

    Raises:
        NotFoundError: nothing matches, naming the patterns.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [os.fspath(patterns)]
    paths = sorted({p for pat in patterns for p in globlib.glob(os.fspath(pat), recursive=True) if os.path.isfile(p)})
    if not paths:
        raise qerrors.NotFoundError(f"no file matches {', '.join(map(str, patterns))}")
    return paths


async def _open_or_create(client: Any, name: str, fmt: _Format, *, container: str, capacity: int,
                          queue_type: str, min_after_dequeue: int, seed: int | None) -> Any:
    try:
        return await client.queue(name, container=container)
    except qerrors.NotFoundError:
        pass
    spec = fmt.default_spec()
    if queue_type == "fifo":
        return await client.fifo_queue(name, capacity, spec.dtypes, spec.shapes, container=container)
    if queue_type == "random_shuffle":
        return await client.random_shuffle_queue(name, capacity, min_after_dequeue, spec.dtypes, spec.shapes,
                                                 seed=seed, container=container)
    raise qerrors.InvalidArgumentError(f"queue type must be 'fifo' or 'random_shuffle', not {queue_type!r}")


async def load_async(
    target: str,
    queue: str,
    fmt: _Format,
    files: str | Sequence[str],
    *,
    readers: int = 4,
    batch: int = DEFAULT_CHUNK,
    num_epochs: int | None = 1,
    shuffle_files: bool = False,
    seed: int | None = None,
    close: bool = True,
    token: str | None = None,
    container: str = "",
    capacity: int = 10_000,
    queue_type: str = "fifo",
    min_after_dequeue: int = 0,
    progress: TextIO | None = None,
    report_every_s: float = DEFAULT_REPORT_EVERY_S,
    client_name: str | None = None,
    interrupt_grace_s: float = DEFAULT_INTERRUPT_GRACE_S,
) -> LoadResult:
    """Read files into a shared queue with concurrent readers; the loader client's engine.

    Opens the queue ``queue`` on the server (or creates it with ``fmt``'s default spec), reads the
    files with ``readers`` concurrent readers, ``batch`` records per ``enqueue_many``, and closes the
    queue at the end (``close=True``) so consumers see ``OutOfRangeError`` once it is drained. If
    loading fails, the queue is closed with ``cancel_pending_enqueues=True`` (unless
    ``close=False``) so no consumer waits for ever, and the error is raised.

    Interrupted (Ctrl-C under :func:`load`, or this coroutine cancelled), the loader stops its
    readers and leaves the queue open for its other loaders and consumers: the ``enqueue_many``
    calls in flight get ``interrupt_grace_s`` seconds to land whole, then are withdrawn (a call
    waiting for room in a full queue keeps the records it already placed, as a timed-out
    ``enqueue_many`` does; no call is left pending on the server), and the cancellation (Ctrl-C:
    ``KeyboardInterrupt``) propagates.

    Args:
        target: the server address.
        queue: the queue's name.
        fmt: the files' format.
        files: a glob or a list of globs.
        readers: concurrent readers.
        batch: records per read, decode and ``enqueue_many``.
        num_epochs: passes over the files (``None``: for ever).
        shuffle_files: shuffle the file order every epoch.
        seed: the file shuffle seed (and a created random-shuffle queue's seed).
        close: close the queue when done.
        token: the server's shared secret.
        container: the queue's container.
        capacity: capacity of a created queue.
        queue_type: ``"fifo"`` or ``"random_shuffle"`` for a created queue.
        min_after_dequeue: for a created random-shuffle queue.
        progress: a stream for the progress bar and the summary (``None``: silent).
        report_every_s: seconds between reports of the loader's figures to the server (role
            ``"loader"``: ``records_per_s``, ``bytes_per_s``, ``records``, ``bytes``, ``files``,
            ``bad_records``); 0 disables them.
        client_name: the connection's name in the server's status and logs (default
            ``"loader <queue> pid <pid>"``).
        interrupt_grace_s: when interrupted, how long the enqueues in flight may take to land.

    Returns:
        A :class:`LoadResult`.

    Raises:
        NotFoundError: no file matches.
        InvalidArgumentError, DataLossError: a bad record (with ``on_error="raise"``), naming the
            file and line or record; or a queue that cannot hold the records.

    Example:
        >>> asyncio.run(load_async(server.target, "rows", CsvFormat([[0.], [0]], 1), "data/*.csv"))  # doctest: +SKIP
        LoadResult(queue='rows', records=500000, ...)
    """
    if num_epochs is not None and num_epochs < 1:
        raise qerrors.InvalidArgumentError(f"num_epochs must be >= 1 or None (for ever), got {num_epochs}")
    paths = expand_files(files)
    start = time.monotonic()
    name = client_name or f"loader {container + '/' if container else ''}{queue} pid {os.getpid()}"
    async with qs.connect_async(target, token=token, client_name=name) as client:
        q = await _open_or_create(client, queue, fmt, container=container, capacity=capacity,
                                  queue_type=queue_type, min_after_dequeue=min_after_dequeue, seed=seed)
        names = LocalFilenameQueue(paths, num_epochs=num_epochs, shuffle=shuffle_files, seed=seed)
        stats = ReaderStats()
        runner = reader_runner(names, q, fmt, num_readers=readers, chunk_size=batch, stats=stats,
                               name=f"load:{queue}")
        if not close:
            runner.close_op = runner.cancel_op = _keep_open
        total = len(paths) * num_epochs if num_epochs is not None else None
        bar = _Progress(stats, total, progress)
        helpers = [asyncio.create_task(bar.run(), name=f"load:{queue}:progress")]
        if report_every_s and report_every_s > 0:
            helpers.append(asyncio.create_task(_Reporter(client, stats, report_every_s).run(),
                                               name=f"load:{queue}:report"))
        coord = Coordinator()
        tasks: list = []
        interrupted = False
        try:
            tasks = runner.create_tasks(coord)
            await coord.join(tasks, stop_grace_period_secs=10.0)
        except asyncio.CancelledError:
            interrupted = True
            await _stop_readers(runner, coord, tasks, interrupt_grace_s)
            raise
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            bar.finish()
            if interrupted and progress is not None:
                progress.write(f"interrupted: the readers stopped after {stats.records:,} records; "
                               f"queue '{queue}' left open\n")
                progress.flush()
        closed = close
    seconds = time.monotonic() - start
    result = LoadResult(queue, stats.records, stats.files_done, stats.bad_records, stats.errors, seconds, closed,
                        stats.bytes)
    if progress is not None and stats.bad_records:
        progress.write(f"skipped {stats.bad_records:,} bad record(s):\n")
        for message in stats.errors[:10]:
            progress.write(f"  {message}\n")
        if stats.bad_records > 10:
            progress.write(f"  ... and {stats.bad_records - 10:,} more\n")
        progress.flush()
    return result


async def _keep_open() -> None:
    """A close/cancel op that leaves the queue open."""
    return None


async def _stop_readers(runner: QueueRunner, coord: Coordinator, tasks: list, grace: float) -> None:
    """Stop an interrupted loader's readers without closing or cancelling their queue.

    Each reader finishes the chunk it is on (its ``enqueue_many`` lands whole if the queue has
    room within ``grace`` seconds); then the stragglers are cancelled, which withdraws their calls
    on the server. Runs inside a task being cancelled: a second Ctrl-C ends it at once.
    """
    runner.close_op = runner.cancel_op = _keep_open  # the queue is shared: leave it open
    coord.request_stop()
    pending = {t for t in tasks if not t.done()}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=max(0.0, grace))
    for t in pending:
        t.cancel()
    if pending:  # let the cancelled calls send their withdrawals before the connection closes
        await asyncio.wait(pending, timeout=5.0)


def load(*args: Any, **kwargs: Any) -> LoadResult:
    """The blocking :func:`load_async` (for scripts without an event loop).

    Example:
        >>> load(server.target, "rows", CsvFormat([[0.], [0]], 1), "data/*.csv").records  # doctest: +SKIP
        500000
    """
    return asyncio.run(load_async(*args, **kwargs))


# --------------------------------------------------------------------------- the CLI
_DTYPES = {"float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64}


def parse_record_defaults(text: str) -> list[Any]:
    """Parse the CLI's ``--record-defaults`` into ``decode_csv`` record defaults.

    Comma-separated entries, each optionally repeated with ``*N``:

    * a number: ``-1.`` (a float32 column defaulting to -1) or ``0`` (int32);
    * ``TYPE`` (``float32``, ``float64``, ``int32``, ``int64``, ``string``): defaults to 0 / empty;
    * ``TYPE=VALUE``: that default; ``TYPE!``: a required column (an empty field is an error).

    Args:
        text: e.g. ``"float32*10,int32"`` or ``"-1.,-1.,-1"``.

    Returns:
        The record defaults.

    Raises:
        InvalidArgumentError: a malformed entry.

    Example:
        >>> [d.dtype.name for d in parse_record_defaults("float32*2,int64=7")]
        ['float32', 'float32', 'int64']
    """
    out: list[Any] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            raise qerrors.InvalidArgumentError(f"--record-defaults {text!r}: empty entry")
        count = 1
        if "*" in entry:
            entry, _, times = entry.rpartition("*")
            try:
                count = int(times)
            except ValueError:
                raise qerrors.InvalidArgumentError(f"--record-defaults entry {raw!r}: repeat count must be an integer") from None
        name, eq, value = entry.partition("=")
        required = name.endswith("!")
        name = name.rstrip("!")
        if name == "string":
            default: Any = np.array([], object) if required else np.array([value.encode()], object)
        elif name in _DTYPES:
            dtype = _DTYPES[name]
            try:
                default = np.array([], dtype) if required else np.array([dtype(value) if eq and value else 0], dtype)
            except ValueError:
                raise qerrors.InvalidArgumentError(f"--record-defaults entry {raw!r}: {value!r} is not a {name}") from None
        else:
            try:
                number = float(entry) if any(ch in entry for ch in ".eEn") else int(entry)
            except ValueError:
                raise qerrors.InvalidArgumentError(
                    f"--record-defaults entry {raw!r}: expected a number, TYPE, TYPE=VALUE or TYPE! "
                    f"with TYPE one of float32, float64, int32, int64, string") from None
            default = np.array([number], np.float32 if isinstance(number, float) else np.int32)
        out += [default] * count
    return out


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m pipeline`` argument parser (subcommand ``load``)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Input pipelines for queueserver: load files into a shared queue.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "load",
        help="read files into a shared queue with concurrent readers",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Read files into the shared queue NAME on the server at T, with N concurrent readers,\n"
            "enqueueing decoded records with enqueue_many (a full queue makes readers wait).\n"
            "If the queue exists its spec decides the element layout; otherwise it is created from\n"
            "the format. At the end the queue is closed (unless --no-close), so consumers get\n"
            "OutOfRangeError once it is drained. Progress goes to stderr."
        ),
        epilog=(
            "CSV columns fill the queue's components in order: a scalar component takes one column,\n"
            "a [k] component the next k columns. A created CSV queue is (features[n-1], target) by\n"
            "default (--layout).\n\n"
            "examples:\n"
            "  python -m pipeline load --target 127.0.0.1:2222 --queue rows --format csv \\\n"
            "      --files 'data/*.csv' --skip-header-lines 1 --record-defaults 'float32*10,int32'\n"
            "  python -m pipeline load --target 127.0.0.1:2222 --queue mnist --format tfrecord \\\n"
            "      --files 'mnist-*.tfrecord' --features x:float32:784,y:int64:1 --readers 4\n"
            "  python -m pipeline load --target 127.0.0.1:2222 --queue cifar --format fixed \\\n"
            "      --files 'cifar/data_batch_*.bin' --record-bytes 3073\n\n"
            "Every --report-every seconds the loader reports its records/s and bytes/s to the server\n"
            "(the status page and /metrics show them). Ctrl-C stops the readers and leaves the queue\n"
            "open (not closed, not cancelled) for its other loaders and consumers.\n\n"
            "exit status: 0 loaded; 1 an error (the message names the file and line or record); 2 bad usage;\n"
            "130 interrupted (Ctrl-C)"
        ),
    )
    p.add_argument("--target", required=True, help="the queue server, e.g. 127.0.0.1:2222 or http://host:port")
    p.add_argument("--queue", required=True, metavar="NAME", help="the queue to fill (opened, or created)")
    p.add_argument("--container", default="", help="the queue's resource container (default: none)")
    p.add_argument("--format", required=True, choices=["csv", "fixed", "tfrecord", "text"],
                   help="file format: csv (decode_csv), fixed (fixed-length records), tfrecord, text (lines)")
    p.add_argument("--files", required=True, action="append", metavar="GLOB",
                   help="files to read (a glob; repeat the option for several)")
    g = p.add_argument_group("csv and text")
    g.add_argument("--record-defaults", metavar="SPEC",
                   help="csv column types and defaults: comma-separated numbers (-1., 0), TYPE, TYPE=VALUE "
                        "or TYPE! (required), each optionally *N; TYPE is float32, float64, int32, int64 or "
                        "string. Default: derived from an existing queue's spec")
    g.add_argument("--skip-header-lines", type=int, default=0, metavar="N", help="header lines per file (default 0)")
    g.add_argument("--field-delim", default=",", help="csv delimiter (default ',')")
    g.add_argument("--layout", default="features-target", choices=["features-target", "columns", "stacked"],
                   help="spec of a created csv queue (default features-target)")
    g = p.add_argument_group("fixed-length records")
    g.add_argument("--record-bytes", type=int, metavar="N", help="bytes per record (required for --format fixed)")
    g.add_argument("--header-bytes", type=int, default=0, metavar="N", help="bytes to skip at the start of each file")
    g.add_argument("--footer-bytes", type=int, default=0, metavar="N", help="bytes to ignore at the end of each file")
    g = p.add_argument_group("tfrecord")
    g.add_argument("--features", metavar="SPEC",
                   help="parse tf.train.Example records: name:dtype[:size] entries, e.g. x:float32:784,y:int64:1 "
                        "(dtype float32, int64 or string); without it each record's bytes are enqueued")
    g = p.add_argument_group("reading")
    g.add_argument("--compression", default="", type=str.upper, choices=["", "GZIP", "ZLIB"],
                   help="compressed input (GZIP or ZLIB)")
    g.add_argument("--readers", type=int, default=4, metavar="N", help="concurrent readers (default 4)")
    g.add_argument("--batch", type=int, default=DEFAULT_CHUNK, metavar="N",
                   help=f"records per read and enqueue_many (default {DEFAULT_CHUNK})")
    g.add_argument("--num-epochs", type=int, default=1, metavar="N",
                   help="passes over the files (default 1; 0: for ever, until Ctrl-C)")
    g.add_argument("--shuffle-files", action="store_true", help="shuffle the file order every epoch")
    g.add_argument("--seed", type=int, help="seed of --shuffle-files (and of a created random-shuffle queue)")
    g.add_argument("--on-error", default="raise", choices=["raise", "skip"],
                   help="bad records: raise (stop, the default) or skip (count and report them at the end)")
    g = p.add_argument_group("the queue")
    g.add_argument("--close", dest="close", action="store_true", default=True,
                   help="close the queue when done (the default)")
    g.add_argument("--no-close", dest="close", action="store_false",
                   help="leave the queue open (e.g. other loaders feed it too)")
    g.add_argument("--capacity", type=int, default=10_000, metavar="N", help="capacity of a created queue (default 10000)")
    g.add_argument("--queue-type", default="fifo", choices=["fifo", "random_shuffle"], help="type of a created queue")
    g.add_argument("--min-after-dequeue", type=int, default=0, metavar="N", help="for a created random_shuffle queue")
    g.add_argument("--token", default=None, help="the server's shared secret (default: $QUEUESERVER_TOKEN)")
    g.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    g.add_argument("--report-every", type=float, default=DEFAULT_REPORT_EVERY_S, metavar="S",
                   help=f"seconds between reports of records/s and bytes/s to the server "
                        f"(default {DEFAULT_REPORT_EVERY_S:g}; 0: never)")
    g.add_argument("--client-name", metavar="NAME",
                   help="this loader's name on the server's status page (default: 'loader QUEUE pid PID')")
    return parser


def _format_from_args(args: argparse.Namespace) -> _Format:
    if args.format == "csv":
        defaults = parse_record_defaults(args.record_defaults) if args.record_defaults else None
        return CsvFormat(defaults, args.skip_header_lines, args.field_delim, args.compression, args.on_error, args.layout)
    if args.format == "text":
        return TextFormat(args.skip_header_lines, args.compression, args.on_error)
    if args.format == "fixed":
        if not args.record_bytes:
            raise qerrors.InvalidArgumentError("--format fixed needs --record-bytes")
        return FixedLengthFormat(args.record_bytes, args.header_bytes, args.footer_bytes, args.compression, args.on_error)
    features = parse_features(args.features) if args.features else None
    return TFRecordFormat(features, args.compression, args.on_error)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m pipeline ...``; returns the exit status.

    Example:
        >>> main(["load", "--target", t, "--queue", "q", "--format", "text", "--files", "*.txt"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    stream = None if args.quiet else sys.stderr
    if args.num_epochs < 0:
        parser.error(f"--num-epochs must be >= 0 (0: for ever), got {args.num_epochs}")
    if args.report_every < 0:
        parser.error(f"--report-every must be >= 0 (0: never), got {args.report_every}")
    try:
        fmt = _format_from_args(args)
        result = load(args.target, args.queue, fmt, args.files, readers=args.readers, batch=args.batch,
                      num_epochs=args.num_epochs or None, shuffle_files=args.shuffle_files, seed=args.seed,
                      close=args.close, token=args.token, container=args.container, capacity=args.capacity,
                      queue_type=args.queue_type, min_after_dequeue=args.min_after_dequeue, progress=stream,
                      report_every_s=args.report_every, client_name=args.client_name)
    except qerrors.QueueServerError as exc:
        print(f"pipeline load: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pipeline load: interrupted: the readers stopped; queue '{args.queue}' left open "
              f"(not closed) for its other loaders and consumers", file=sys.stderr)
        return 130
    if stream is not None:
        state = "closed" if result.closed else "left open"
        stream.write(f"loaded {result.records:,} records from {result.files} file(s) into queue "
                     f"'{args.queue}' in {result.seconds:.2f} s ({result.records_per_second:,.0f} records/s); "
                     f"queue {state}\n")
    return 0
