"""File formats for the readers: how to open one kind of file and turn its records into queue elements.

:class:`CsvFormat`, :class:`TextFormat`, :class:`FixedLengthFormat` and :class:`TFRecordFormat`
(with :func:`parse_features` for the CLI's ``--features``). Each format gives a default queue spec
for its records and binds, for a given queue spec, the function that converts a chunk of records
into the queue's components (see :mod:`pipeline.loader` for the rule).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from queueserver import errors as qerrors
from queueserver.core.specs import STRING, ComponentSpec, dtype_name, shape_str

from pipeline.blocks import LinesBlock, RecordBlock
from pipeline.csv import decode_csv
from pipeline.fixed_length import FixedLengthRecordReader
from pipeline.textline import TextLineReader
from pipeline.tfrecord import FixedLenFeature, TFRecordReader, parse_example
from pipeline.tfrecord.example import _dense_shape

__all__ = ["CsvFormat", "FixedLengthFormat", "TFRecordFormat", "TextFormat", "parse_features"]


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


class GoodPrefix(Exception):
    """A chunk that stops at a bad record (``on_error="raise"``): the decoded good records before
    it, to enqueue, and the bad record's error, to raise after them."""

    def __init__(self, components: tuple | None, error: qerrors.QueueServerError) -> None:
        super().__init__(str(error))
        self.components, self.error = components, error


_IN_RECORD = re.compile(r" in record \d+")  # decode_csv's chunk-relative record number
_FILE_LINE = re.compile(r" \(file [^()]*, line \d+\)$| \(line \d+\)$")


def _field_column(line: bytes, field: int, delim: bytes) -> int:
    """The 1-based column where field ``field`` (0-based) of a CSV line starts, quotes respected;
    one past the end of the line when it has fewer fields."""
    quoted, k = False, 0
    if field == 0:
        return 1
    for i, ch in enumerate(line):
        if ch == 0x22:  # '"': a delimiter inside quotes does not end a field
            quoted = not quoted
        elif ch == delim[0] and not quoted:
            k += 1
            if k == field:
                return i + 2
    return len(line.rstrip(b"\r\n")) + 1


def _csv_error(err: qerrors.QueueServerError, record: bytes, path: str, line: int, delim: str,
               n_cols: int) -> qerrors.InvalidArgumentError:
    """``err`` of one CSV record, placed by file, line and column instead of its chunk index."""
    field = err.details.get("field")
    if field is None:  # a wrong field count: where the missing field, or the first extra one, starts
        field = n_cols
    column = _field_column(record, int(field), delim.encode())
    text = _FILE_LINE.sub("", _IN_RECORD.sub("", err.message))
    return qerrors.InvalidArgumentError(f"{text} (file {path}, line {line}, column {column})",
                                        source=path, line=line, column=column)


#: Bytes of text a line reader reads at a time (whole lines; a longer line comes whole).
_SEGMENT_BYTES = 4 << 20


def _record_list(records: Any) -> list:
    """The records of a chunk as a list (a record block is split into its records)."""
    if isinstance(records, LinesBlock):
        return records.lines()
    if isinstance(records, RecordBlock):
        return list(records.materialize())
    return records


# --------------------------------------------------------------------------- formats
class _Format:
    """How to open one kind of file and turn a chunk of its records into queue components."""

    on_error = "raise"
    #: What :meth:`first_line` counts, for messages: records, or lines of a text file.
    unit = "record"

    def open(self, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def first_line(self, reader: Any) -> int:  # pragma: no cover - abstract
        """The line (or record) number, in its file, of the next record ``reader`` gives (for messages)."""
        raise NotImplementedError

    def default_spec(self) -> ComponentSpec:  # pragma: no cover - abstract
        """The spec of a queue created for this format."""
        raise NotImplementedError

    def position(self, reader: Any) -> int | None:
        """The byte offset, in its file, of the next record ``reader`` gives (``None``: not known)."""
        return None

    #: Records one read may take (a reader then converts and enqueues them a chunk at a time).
    read_records_min = 0

    def read(self, reader: Any, max_records: int) -> Any:
        """The next records of ``reader`` (at most ``max_records``; empty at the end), in the
        form its converter takes: a list or array of records, or a record block."""
        return reader.read_chunk(max_records)

    def skipped(self, reader: Any, path: str, count: int) -> list[qerrors.QueueServerError]:
        """One error per record ``reader`` skipped in its last read (``count`` of them), naming
        where it was (called after that read)."""
        return [qerrors.DataLossError(f"{path}: corrupt data skipped before record {reader.records + 1}",
                                      source=path)] * count

    def bind(self, spec: ComponentSpec, queue_name: str) -> Callable[..., tuple | None]:
        """A function ``(records, path, first_line, errors) -> components`` for this queue.

        Raises:
            InvalidArgumentError: the queue cannot hold this format's records (said up front).
        """
        raise NotImplementedError  # pragma: no cover - abstract


class _LineFormat(_Format):
    """A format read line by line (CSV, text): skip_header_lines, compression_type and on_error
    are the subclass's fields."""

    skip_header_lines: int
    compression_type: str
    unit = "line"

    def open(self, path: str) -> TextLineReader:
        """Open one file (blocking: call it in a worker thread)."""
        return TextLineReader(path, skip_header_lines=self.skip_header_lines,
                              compression_type=self.compression_type, on_error=self.on_error)

    def first_line(self, reader: TextLineReader) -> int:
        """The 1-based line number of the next record of ``reader``."""
        return self.skip_header_lines + reader.records + 1

    #: A segment holds many chunks: it is parsed once (pyarrow, straight from the text) and each
    #: chunk copies its rows out, as the Data API's batches do.
    read_records_min = 1 << 16

    def read(self, reader: TextLineReader, max_records: int) -> LinesBlock:
        """About ``_SEGMENT_BYTES`` of whole lines as one raw-text segment (``read_segment``)."""
        return reader.read_segment(max_records, _SEGMENT_BYTES)

    def skipped(self, reader: Any, path: str, count: int) -> list[qerrors.QueueServerError]:
        """Lines are lost only to broken compression, which ends the file's lines where it starts."""
        line = self.first_line(reader) - 1
        return [qerrors.DataLossError(f"{path}: corrupt compressed data skipped after line {line}",
                                      source=path, line=line)] * count


@dataclass(frozen=True)
class CsvFormat(_LineFormat):
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
        record_defaults = fmt.record_defaults
        assert record_defaults is not None  # with_defaults_for fills them in
        where = f"queue '{queue_name}' {spec.describe()}"
        widths = _component_widths(spec, where)
        n_cols = len(record_defaults)
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

        def decode(records: Any, path: str, first_line: int, errors: list) -> list:
            bad: list = []
            try:
                cols = decode_csv(records, record_defaults, fmt.field_delim, on_error=fmt.on_error,
                                  bad_records=bad, source=path, first_line=first_line)
            except qerrors.InvalidArgumentError as exc:
                i = exc.details.get("record")
                if i is None:
                    raise
                # The records before the bad one are good: they are loaded, then the error raised
                # (decoding the prefix again finds an earlier bad record first, if there is one).
                lines = _record_list(records)
                error = _csv_error(exc, lines[i], path, first_line + i, fmt.field_delim, n_cols)
                raise GoodPrefix(to_components(decode(lines[:i], path, first_line, errors)) if i else None,
                                 error) from None
            if bad:
                lines = _record_list(records)
                errors.extend(_csv_error(e, lines[e.details["record"]], path, first_line + e.details["record"],
                                         fmt.field_delim, n_cols) for e in bad)
            return cols

        def convert(records: Any, path: str, first_line: int, errors: list,
                    offset: int | None = None) -> tuple | None:
            return to_components(decode(records, path, first_line, errors))

        def to_components(cols: list) -> tuple | None:
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
class TextFormat(_LineFormat):
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

    def default_spec(self) -> ComponentSpec:
        """One string component."""
        return ComponentSpec([STRING], [[]])

    def bind(self, spec: ComponentSpec, queue_name: str) -> Callable[..., tuple | None]:
        """See :meth:`_Format.bind`."""
        if len(spec.dtypes) != 1 or spec.dtypes[0] != STRING:
            raise qerrors.InvalidArgumentError(
                f"queue '{queue_name}' {spec.describe()} cannot take text lines: it needs one string component")

        def convert(records: Any, path: str, first_line: int, errors: list,
                    offset: int | None = None) -> tuple | None:
            if isinstance(records, RecordBlock):
                return (records.materialize().copy(),)
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

    def position(self, reader: Any) -> int | None:
        """The byte offset (uncompressed) of the next record of ``reader``."""
        return self.header_bytes + reader.records * self.record_bytes

    def skipped(self, reader: Any, path: str, count: int) -> list[qerrors.QueueServerError]:
        """The only record a fixed-length file can lose is a partial one at its end."""
        whole = None if self.compression_type else (os.path.getsize(path) - self.header_bytes
                                                     - self.footer_bytes) // self.record_bytes
        where = (f"record {whole + 1}, byte offset {self.header_bytes + whole * self.record_bytes}"
                 if whole is not None else "at the end of the file")
        return [qerrors.DataLossError(f"{path}: a partial record skipped ({where}): the body is not a multiple"
                                      f" of {self.record_bytes} bytes", source=path)] * count

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

        def convert(records: np.ndarray, path: str, first_line: int, errors: list,
                    offset: int | None = None) -> tuple | None:
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
        """The 1-based index of the next good record of ``reader``."""
        return reader.records + 1

    def position(self, reader: Any) -> int | None:
        """The byte offset (uncompressed) of the next record of ``reader``."""
        return int(reader.get_state()["offset"])

    def read(self, reader: TFRecordReader, max_records: int) -> Any:
        """The next records where they lie (``read_block``), parsed without cutting them out."""
        return reader.read_block(max_records)

    def skipped(self, reader: Any, path: str, count: int) -> list[qerrors.QueueServerError]:
        """Each corrupt or truncated record skipped, by its index in the file and its byte offset."""
        where, reader.skipped = list(getattr(reader, "skipped", ())), []
        out: list[qerrors.QueueServerError] = [
            qerrors.DataLossError(f"{path}: corrupt record skipped (record {index + 1}, byte offset {offset})",
                                  source=path, record=index + 1, offset=offset) for index, offset in where[:count]]
        return out + super().skipped(reader, path, count - len(out))

    def default_spec(self) -> ComponentSpec:
        """One component per feature, in order (one string component without features)."""
        if self.features is None:
            return ComponentSpec([STRING], [[]])
        return ComponentSpec([STRING if f.dtype == "string" else f.dtype for f in self.features.values()],
                             [list(_dense_shape(name, f)) for name, f in self.features.items()])

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
        return _ExampleConverter(self.features, order, spec, where, self.on_error).convert


@dataclass(frozen=True)
class _ExampleConverter:
    """Parses a chunk of Example records into a queue's components, in the queue's order."""

    features: dict[str, FixedLenFeature]
    order: list[str]
    spec: ComponentSpec
    where: str
    on_error: str

    def components(self, parsed: dict) -> tuple:
        """The parsed features as the queue's components, cast to its dtypes."""
        return tuple(_cast(parsed[n], self.spec.dtypes[i], f"{self.where}, feature {n!r}")
                     for i, n in enumerate(self.order))

    def convert(self, records: Any, path: str, first_line: int, errors: list,
                offset: int | None = None) -> tuple | None:
        """One chunk (see :meth:`_Format.bind`); ``offset``: the byte offset of ``records[0]``."""
        try:
            parsed = parse_example(records, self.features)
        except qerrors.InvalidArgumentError:
            # Find the bad record(s) one by one (the reader passes no offset for a chunk in
            # which it skipped a corrupt record: the offsets would not add up).
            parsed = self._one_by_one(_record_list(records), path, first_line, errors, offset)
            if parsed is None:
                return None
        return self.components(parsed)

    def _one_by_one(self, records: list[bytes], path: str, first_line: int, errors: list,
                    offset: int | None) -> dict | None:
        good: list[bytes] = []
        for i, rec in enumerate(records):
            try:
                parse_example([rec], self.features)
            except qerrors.InvalidArgumentError as exc:
                at = f", byte offset {offset}" if offset is not None else ""
                error = qerrors.InvalidArgumentError(f"{exc} (file {path}, record {first_line + i}{at})",
                                                     source=path, record=first_line + i, offset=offset)
                if self.on_error == "raise":  # the records before it are loaded, then this is raised
                    raise GoodPrefix(self.components(parse_example(good, self.features)) if good else None,
                                     error) from None
                errors.append(error)
            else:
                good.append(rec)
            if offset is not None:  # a record takes 12 bytes of header, its data, 4 of CRC
                offset += len(rec) + 16
        return parse_example(good, self.features) if good else None
