"""``decode_csv``: CSV records to numpy columns with TensorFlow's exact rules, vectorised.

Rules (``tensorflow/core/kernels/decode_csv_op.cc``), all kept:

* each ``record_defaults`` entry fixes its column's dtype: a Python float or ``np.float32`` ->
  float32, ``np.float64`` -> float64, a Python int or ``np.int32`` -> int32 (TensorFlow also turns
  ``[np.int64(0)]`` into int32), a 1-element ``np.int64`` array or bare ``np.int64`` scalar ->
  int64, ``str``/``bytes`` -> string; ``[]`` (or an empty array of a dtype) makes the column
  required: an empty field is then an error;
* an empty field (or one equal to ``na_value``) takes the default;
* numbers may have surrounding whitespace; floats are read as ``absl::SimpleAtof``/``SimpleAtod``
  read them: any length, correctly rounded, ``inf``/``infinity``/``nan``/``nan(chars)`` (any case),
  hex floats (``0x1A``, ``0x1.8p1``); ints accept a sign and leading zeros, nothing else (``3.`` is
  not an int32), and must fit the type;
* with ``use_quote_delim`` a field in double quotes may hold the delimiter and ``""`` for a quote;
  quotes or CR/LF inside an unquoted field are errors; string fields keep their spaces;
* the first bad record raises ``InvalidArgumentError`` with TensorFlow's message ("Field 0 in
  record 2 is not a valid int32: x", "Expect 3 fields but have 2 in record 0", ...), to which this
  module adds the file and line when the caller says where the records came from (``source=``,
  ``first_line=``).

Three decoding paths, fastest first, each in its module; this one holds the entry points
(``decode_csv``, ``read_csv_columns``) and the dispatch between them:

* :mod:`.arrow`: large chunks of plain numeric records through pyarrow's native reader
  (optional; ``USE_ARROW = False`` switches it off);
* :mod:`.vectorised`: a chunk of records parsed with numpy array operations (SWAR digits);
* :mod:`.exact`: a line-by-line port of TensorFlow's parser, for every record the others decline,
  which gives the exact value or the exact error.

:mod:`.defaults` turns ``record_defaults`` into the columns all three share.
``read_csv_columns`` reads a whole file the way the Data API does (``TextLineReader.read_segment``:
whole lines as raw text), without splitting it into lines where pyarrow takes them.

Example:
    >>> decode_csv("1.,,44", [[5.], [6], [7]])
    [np.float32(1.0), np.int32(6), np.int32(44)]
    >>> decode_csv(["1,2", "3,4"], [[0], [0.]])[1]
    array([2., 4.], dtype=float32)
    >>> read_csv_columns("w3.csv", [[0.0]] * 10 + [[0]], skip_header_lines=1)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from queueserver.errors import InvalidArgumentError

from ..blocks import LinesBlock, RecordBlock, accepts_blocks

from .arrow import _ArrowPlan, _arrow_plan, _decode_arrow
from .defaults import _NP, _STR, _Column, _empty_columns, _parse_defaults
from .exact import _decode_record_slow, _RecordError
from .vectorised import _CHUNK, _decode_chunk_fast

__all__ = ["decode_csv", "read_csv_columns"]

#: Use pyarrow (when installed) for large numeric chunks. Tests switch it off to compare paths.
USE_ARROW = True
# Fewer records than this go to the numpy path: a pyarrow call costs ~0.1 ms of fixed overhead.
_ARROW_MIN_RECORDS = 256
# Records handed to pyarrow per call (and so the unit that falls back when pyarrow says no).
_ARROW_CHUNK = 1 << 16


# ------------------------------------------------------------------------------------------------
# Public entry point
# ------------------------------------------------------------------------------------------------
def _to_bytes_list(records: Any) -> tuple[list[bytes], tuple[int, ...], bool]:
    if isinstance(records, (bytes, bytearray, memoryview)):
        return [bytes(records)], (), True
    if isinstance(records, (str, np.str_)):
        return [str(records).encode()], (), True
    if isinstance(records, np.ndarray):
        shape = records.shape
        flat = records.reshape(-1).tolist()
        scalar = records.ndim == 0
    elif isinstance(records, list) and records and isinstance(records[0], (bytes, str)):
        shape, flat, scalar = (len(records),), records, False
    else:
        arr = np.array(records, dtype=object)
        shape, flat, scalar = arr.shape, arr.reshape(-1).tolist(), arr.ndim == 0
    if flat and not (type(flat[0]) is bytes and type(flat[-1]) is bytes):
        flat = _all_bytes(flat)
    return flat, shape, scalar


def _all_bytes(flat: list) -> list[bytes]:
    return [r.encode() if isinstance(r, str) else bytes(r) for r in flat]


@accepts_blocks("records")
def decode_csv(
    records: Any,
    record_defaults: Sequence[Any],
    field_delim: str | bytes = ",",
    use_quote_delim: bool = True,
    na_value: str | bytes = "",
    select_cols: Sequence[int] | None = None,
    *,
    on_error: str = "raise",
    bad_records: list | None = None,
    source: str | None = None,
    first_line: int | None = None,
) -> list[Any]:
    """Convert CSV records to columns, like ``tf.io.decode_csv``.

    Args:
        records: one record (``bytes``/``str``) or a sequence / numpy array of records (any shape).
        record_defaults: one entry per output column; its type sets the column dtype and its value
            fills empty fields; ``[]`` makes the column required (see the module docstring).
        field_delim: a one-character delimiter.
        use_quote_delim: whether double quotes are special (RFC 4180 quoting).
        na_value: a field equal to this is treated as empty (takes the default).
        select_cols: strictly increasing source column indices to keep (one per default).
        on_error: ``"raise"`` (TensorFlow's behaviour) or ``"skip"``: drop bad records from the
            output instead (the columns are then shorter than the input).
        bad_records: with ``on_error="skip"``, a list to which each dropped record's
            ``InvalidArgumentError`` is appended (its ``details`` hold ``record`` and ``line``).
        source: where the records come from (a file name), added to error messages.
        first_line: the line number of ``records[0]`` in ``source``, to report lines.

    Returns:
        A list with one entry per column: for a single record, numpy scalars (``bytes`` for
        string columns); otherwise numpy arrays with the records' shape (``object`` arrays of
        ``bytes`` for string columns).

    Raises:
        InvalidArgumentError: a malformed record (TensorFlow's message, naming the record and
            field, plus the file and line if given), or bad arguments.
        ValueError: ``select_cols`` not strictly increasing, negative, or of the wrong length
            (as TensorFlow raises them).

    Example:
        >>> x1, x2, target = decode_csv([b"1.,,0", b"4.,5.,1"], [[-1.], [-1.], [-1]])
        >>> x2, target
        (array([-1.,  5.], dtype=float32), array([0, 1], dtype=int32))
    """
    cols, delim, na, select = _prepare(record_defaults, field_delim, na_value, select_cols, on_error)
    if isinstance(records, RecordBlock):  # a batch of lines from the Data API (see pipeline.blocks)
        got = _decode_block(records, cols, delim, na, select) if type(records) is LinesBlock else None
        if got is not None:
            return got
        records = records.materialize()
    recs, shape, scalar = _to_bytes_list(records)
    cols_out, dropped = _decode_records(
        recs, cols, delim, use_quote_delim, na, select, on_error, bad_records, source, first_line, True
    )
    if scalar:
        if dropped:
            return []
        return [o[0] for o in cols_out]
    if not dropped and len(shape) != 1:
        cols_out = [o.reshape(shape) for o in cols_out]
    return cols_out


def _decode_block(
    block: LinesBlock, cols: list[_Column], delim: int, na: bytes, select: list[int] | None
) -> list[np.ndarray] | None:
    """The columns of a batch of lines, from one pyarrow parse of the whole segment they belong to.

    A segment (the lines of one large read, many batches) is parsed once, on its first batch;
    every batch then copies its rows out. Whatever pyarrow declines (any record it might not read
    as TensorFlow does, every error) returns None, and that batch alone takes the usual path:
    values and errors are exactly those of ``decode_csv`` on the batch's lines.
    """
    plan = _arrow_plan(cols, delim, na, select) if USE_ARROW else None
    if plan is None or block.n < 1:
        return None

    def parse(text: bytes, n: int) -> list[np.ndarray] | None:
        if n < _ARROW_MIN_RECORDS:
            return None
        res = _decode_arrow(text, n, cols, plan)
        return None if res is None else res[0]

    start, columns = block.segment_result(plan, parse)
    if columns is None:
        return None
    return [c[block.i - start : block.j - start].copy() for c in columns]


def _prepare(
    record_defaults: Sequence[Any], field_delim: str | bytes, na_value: str | bytes,
    select_cols: Sequence[int] | None, on_error: str,
) -> tuple[list[_Column], int, bytes, list[int] | None]:
    """Check the arguments shared by decode_csv and read_csv_columns (TensorFlow's errors)."""
    if on_error not in ("raise", "skip"):
        raise InvalidArgumentError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    select = None
    if select_cols is not None:
        select = [int(c) for c in select_cols]
        if any(select[i] >= select[i + 1] for i in range(len(select) - 1)):
            raise ValueError("select_cols is not strictly increasing.")
        if select and select[0] < 0:
            raise ValueError("select_cols contains negative values.")
        if len(select) != len(record_defaults):
            raise ValueError("Length of select_cols and record_defaults do not match.")
    delim_b = field_delim.encode() if isinstance(field_delim, str) else bytes(field_delim)
    if len(delim_b) != 1:
        raise InvalidArgumentError("field_delim should be only 1 char")
    na = na_value.encode() if isinstance(na_value, str) else bytes(na_value)
    return _columns_of(record_defaults), delim_b[0], na, select


_PLAIN = (float, int, str, bytes)
_columns_cache: dict = {}


def _defaults_key(record_defaults: Any) -> tuple | None:
    """A hashable key that equals another only for defaults that give the same columns, or None
    (numpy values, anything unusual: those are parsed every time)."""
    if type(record_defaults) not in (list, tuple):
        return None
    key: list[tuple] = []
    for d in record_defaults:
        if type(d) in (list, tuple):
            if any(type(v) not in _PLAIN for v in d):
                return None
            # float.hex: -0.0 and 0.0 (and each nan) stay apart; the types keep 0 and 0.0 apart.
            key.append((type(d), tuple((type(v), v.hex() if type(v) is float else v) for v in d)))
        elif type(d) in _PLAIN:
            key.append((type(d), d.hex() if type(d) is float else d))
        else:
            return None
    return tuple(key)


def _columns_of(record_defaults: Any) -> list[_Column]:
    """``_parse_defaults(record_defaults)``, remembered for plain defaults (a map calls decode_csv
    with the same list for every batch)."""
    key = _defaults_key(record_defaults)
    if key is None:
        return _parse_defaults(record_defaults)
    cols = _columns_cache.get(key)
    if cols is None:
        cols = _parse_defaults(record_defaults)
        if len(_columns_cache) >= 256:
            _columns_cache.clear()
        _columns_cache[key] = cols
    return list(cols)


def _decode_records(
    recs: list[bytes], cols: list[_Column], delim: int, use_quote: bool, na: bytes, select: list[int] | None,
    on_error: str, bad_records: list | None, source: str | None, first_line: int | None, try_arrow: bool,
) -> tuple[list[np.ndarray], bool]:
    """Decode a flat list of records to 1-D columns; returns ``(columns, any record dropped)``.

    Large chunks of plain numeric records go to pyarrow; every chunk it declines (and every
    small batch) goes through the numpy vector path and, record by record, the exact path.
    """
    n = len(recs)
    plan = _arrow_plan(cols, delim, na, select) if USE_ARROW and try_arrow and n >= _ARROW_MIN_RECORDS else None
    step = _ARROW_CHUNK if plan is not None else _CHUNK
    parts: list[list[np.ndarray]] = []
    dropped = False
    for outer in range(0, n, step):
        if plan is not None:
            arrow_out = _decode_arrow_block(recs, outer, step, cols, plan)
            if arrow_out is not None:
                parts.append(arrow_out)
                continue
        for base in range(outer, min(n, outer + step), _CHUNK):
            out, chunk_dropped = _decode_chunk(
                recs, base, cols, delim, use_quote, na, select, on_error, bad_records, source, first_line
            )
            dropped = dropped or chunk_dropped
            parts.append(out)

    if n == 0:
        return _empty_columns(cols), False
    if len(parts) == 1:
        return parts[0], dropped
    return [np.concatenate([p[c] for p in parts]) for c in range(len(cols))], dropped


def _decode_arrow_block(
    recs: list[bytes], outer: int, step: int, cols: list[_Column], plan: _ArrowPlan
) -> list[np.ndarray] | None:
    """pyarrow's columns for ``recs[outer : outer + step]``, or None when the block must go the numpy way."""
    block = recs[outer : outer + step]
    try:
        text = b"\n".join(block)
    except TypeError:  # a str among bytes records (only the ends were checked): convert all
        block = recs[outer : outer + step] = _all_bytes(block)
        text = b"\n".join(block)
    res = _decode_arrow(text, len(block), cols, plan) if len(block) >= _ARROW_MIN_RECORDS else None
    return None if res is None else res[0]


def _decode_chunk(
    recs: list[bytes], base: int, cols: list[_Column], delim: int, use_quote: bool, na: bytes,
    select: list[int] | None, on_error: str, bad_records: list | None, source: str | None, first_line: int | None,
) -> tuple[list[np.ndarray], bool]:
    """Decode ``recs[base : base + _CHUNK]``: the vector path, then the exact path for the records it
    flags; returns ``(columns, any record dropped)``."""
    chunk = recs[base : base + _CHUNK]
    try:
        res = _decode_chunk_fast(chunk, cols, delim, use_quote, na, select) if len(chunk) > 1 else None
    except TypeError:  # a str among bytes records (only the ends were checked): convert all
        chunk = recs[base : base + _CHUNK] = _all_bytes(chunk)
        res = _decode_chunk_fast(chunk, cols, delim, use_quote, na, select)
    slow_idx: Sequence[int]
    if res is None:
        out = [
            np.empty(len(chunk), object) if c.kind == _STR else np.empty(len(chunk), _NP[c.kind])
            for c in cols
        ]
        slow_idx = range(len(chunk))
    else:
        out, slow = res
        slow_idx = np.flatnonzero(slow).tolist()
    keep = None
    for r in slow_idx:
        try:
            vals = _decode_record_slow(chunk[r], base + r, cols, delim, use_quote, na, select)
        except _RecordError as e:
            err = _located_error(base + r, e, source, first_line)
            if on_error == "raise":
                raise err from None
            if bad_records is not None:
                bad_records.append(err)
            if keep is None:
                keep = np.ones(len(chunk), bool)
            keep[r] = False
            continue
        for c, v in enumerate(vals):
            out[c][r] = v
    if keep is not None:
        return [o[keep] for o in out], True
    return out, False


def _located_error(i: int, err: _RecordError, source: str | None, first_line: int | None) -> InvalidArgumentError:
    """The InvalidArgumentError of record ``i``: TensorFlow's message plus the file and line, when known."""
    where = ""
    line = None
    if first_line is not None:
        line = first_line + i
    if source is not None and line is not None:
        where = f" (file {source}, line {line})"
    elif source is not None:
        where = f" (file {source})"
    elif line is not None:
        where = f" (line {line})"
    return InvalidArgumentError(f"{err}{where}", record=i, field=err.field, source=source, line=line)


def read_csv_columns(
    path: str | os.PathLike,
    record_defaults: Sequence[Any],
    *,
    field_delim: str | bytes = ",",
    use_quote_delim: bool = True,
    na_value: str | bytes = "",
    select_cols: Sequence[int] | None = None,
    skip_header_lines: int = 0,
    compression_type: str | None = "",
    on_error: str = "raise",
    bad_records: list | None = None,
    block_bytes: int = 1 << 24,
    use_threads: bool = False,
) -> list[np.ndarray]:
    """Read a whole CSV file into numpy columns.

    The result is exactly what ``TextLineReader(path, skip_header_lines=...)`` followed by
    :func:`decode_csv` of every line gives (same line rules: ``\\n`` ends a line, a ``\\r`` before
    it is dropped, empty lines are records; same values, same errors), read the way the Data API's
    ``TextLineDataset(...).batch(n).map(decode_csv)`` reads: the file comes in large pieces of whole
    lines (:meth:`TextLineReader.read_segment`) and each piece of plain numeric lines is parsed by
    pyarrow straight from the bytes, without splitting it into lines. Pieces pyarrow declines are
    split into lines and decoded by :func:`decode_csv`'s paths, whose errors name the file and line.

    Args:
        path: the CSV file.
        record_defaults: as for :func:`decode_csv`.
        field_delim, use_quote_delim, na_value, select_cols: as for :func:`decode_csv`.
        skip_header_lines: lines to skip at the start of the file.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        on_error: ``"raise"`` or ``"skip"`` (drop bad records, appending their errors to
            ``bad_records`` if given), as for :func:`decode_csv`.
        bad_records: see ``on_error``.
        block_bytes: bytes read per block.
        use_threads: let pyarrow parse each block on all cores (one core by default).

    Returns:
        One 1-D numpy array per column (``object`` arrays of ``bytes`` for string columns).

    Raises:
        NotFoundError: the file does not exist.
        InvalidArgumentError: a malformed record (naming the file and line) or bad arguments.
        DataLossError: corrupt compressed data.

    Example:
        >>> x0, target = read_csv_columns("w3.csv", [[0.0], [0]], select_cols=[0, 10],
        ...                               skip_header_lines=1)  # doctest: +SKIP
    """
    from pipeline.textline import TextLineReader

    cols, delim, na, select = _prepare(record_defaults, field_delim, na_value, select_cols, on_error)
    plan = _arrow_plan(cols, delim, na, select, bool(use_threads)) if USE_ARROW else None
    source = os.fspath(path)
    parts: list[list[np.ndarray]] = []
    line_no = int(skip_header_lines) + 1  # the 1-based number of the next line of the file
    block_bytes = max(int(block_bytes), 1 << 16)
    # The Data API's reading path: whole lines as raw text (TextLineReader.read_segment), parsed
    # by pyarrow as they are; what it declines is split into lines and decoded by decode_csv's paths.
    with TextLineReader(source, skip_header_lines=skip_header_lines, compression_type=compression_type) as reader:
        while len(block := reader.read_segment(1 << 40, block_bytes)):
            res = _decode_arrow(block.seg.text_from(0), block.n, cols, plan) if plan is not None else None
            if res is not None:
                parts.append(res[0])
            else:
                out, _ = _decode_records(block.lines(), cols, delim, use_quote_delim, na, select, on_error,
                                         bad_records, source, line_no, True)
                parts.append(out)
            line_no += block.n
    if not parts:
        return _empty_columns(cols)
    if len(parts) == 1:
        return parts[0]
    return [np.concatenate([p[c] for p in parts]) for c in range(len(cols))]
