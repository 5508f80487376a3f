"""CSV *records* of a file, read with the rules of TensorFlow's ``CsvDataset`` (``csv_dataset_op.cc``).

A record is not a line: a quoted field may hold the delimiter, newlines and ``""``; a record ends
at ``\\n``, ``\\r`` or ``\\r\\n`` outside quotes, or at the end of the file; an empty line is a
record of one empty field (which takes its default). A bad record is consumed whole, so the next
one still decodes (what ``ignore_errors()`` relies on), and its error carries TensorFlow's
``CsvDataset`` message ("Field 1 in record is not a valid float: x", "Expect 2 fields but have
more in record", "Unquoted fields cannot have quotes inside", ...) plus the file and line.

:class:`CsvRecordReader` hands out chunks of decoded records. A chunk of plain lines (no quote
character, no lone ``\\r``, no empty line) is decoded by :func:`pipeline.csv._decode_records` (the
arrow / vector paths); any other chunk goes through :func:`_read_record`, a port of TensorFlow's
``ReadRecord`` working on the buffered bytes, one record at a time.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import numpy as np

from queueserver.errors import InvalidArgumentError

from .defaults import _F32, _F64, _NP, _STR, _TYPE_WORD, _Column, _empty_columns
from .exact import _parse_float, _parse_int

__all__ = ["CsvRecordReader", "CsvChunk"]

_BLOCK = 1 << 20  # bytes read per fill unless buffer_size says less
_FAST_MAX_BYTES = 1 << 24  # give up looking for a line end past this many buffered bytes
_LINE_BYTES = 128  # a chunk of plain lines spans up to max_records * _LINE_BYTES bytes


class _NeedMore(Exception):
    """The record runs past the buffered bytes: fill the buffer and parse it again."""


class _Include:
    """Which parsed field indices are outputs: all, ``select_cols`` or all but ``exclude_cols``."""

    __slots__ = ("select", "exclude")

    def __init__(self, select: Sequence[int] | None, exclude: Sequence[int] | None) -> None:
        self.select = None if select is None else frozenset(select)
        self.exclude = None if exclude is None else frozenset(exclude)

    def __call__(self, k: int) -> bool:
        if self.select is not None:
            return k in self.select
        if self.exclude is not None:
            return k not in self.exclude
        return True


def _never(k: int) -> bool:
    return False


class _Record:
    """The outputs of one record under construction (TensorFlow's ``FieldToOutput``)."""

    __slots__ = ("cols", "na", "values", "error")

    def __init__(self, cols: list[_Column], na: bytes) -> None:
        self.cols = cols
        self.na = na
        self.values: list[Any] = []
        self.error: str | None = None

    def fail(self, message: str) -> None:
        if self.error is None:  # TensorFlow keeps the first error of a record
            self.error = message

    def add(self, field: bytes) -> None:
        if self.error is not None:
            return  # the record is lost anyway; only its first error counts
        k = len(self.values)
        if k >= len(self.cols):
            self.fail(f"Expect {len(self.cols)} fields but have more in record")
            return
        col = self.cols[k]
        if not field or field == self.na:
            if col.default is None:
                self.fail(f"Field {k} is required but missing in record!")
            self.values.append(col.default)
            return
        if col.kind == _STR:
            self.values.append(field)
            return
        v = _parse_float(field, col.kind) if col.kind in (_F32, _F64) else _parse_int(field, col.kind)
        if v is None:
            shown = field.decode("utf-8", "backslashreplace")
            self.fail(f"Field {k} in record is not a valid {_TYPE_WORD[col.kind]}: {shown}")
        self.values.append(v)


def _skip_lf(buf: bytes, pos: int, eof: bool) -> int:
    """After a ``\\r`` that ended a record: step over the ``\\n`` of a ``\\r\\n``."""
    if pos >= len(buf):
        if not eof:
            raise _NeedMore
        return pos
    return pos + 1 if buf[pos] == 10 else pos


def _quoted_field(buf: bytes, pos: int, eof: bool, delim: int, rec: _Record, include: bool) -> tuple[int, bool]:
    """TensorFlow's ``ParseQuotedField`` from the opening quote at ``pos``; returns ``(next pos, end of record)``."""
    n = len(buf)
    start = pos
    pos += 1
    ok = True
    while True:
        q = buf.find(b'"', pos)
        if q < 0:
            if not eof:
                raise _NeedMore
            rec.fail("Reached end of file without closing quoted field in record")
            return n, True
        pos = q + 1
        if pos >= n:
            if not eof:
                raise _NeedMore
            end, at_end = pos, True
            break
        nxt = buf[pos]
        pos += 1
        if nxt == delim or nxt == 10 or nxt == 13:
            end, at_end = pos - 1, nxt != delim
            if nxt == 13:
                pos = _skip_lf(buf, pos, eof)
            break
        if nxt != 34:
            ok = False  # keep going to the end of the field, so the next record still parses
            rec.fail("Quote inside a string has to be escaped by another quote")
    if include and ok:
        rec.add(buf[start + 1 : end - 1].replace(b'""', b'"'))
    return pos, at_end


def _ends_re(delim: int) -> re.Pattern[bytes]:
    return re.compile(b"[" + re.escape(bytes((delim,))) + b"\n\r]")


def _unquoted_field(
    buf: bytes, pos: int, eof: bool, ends: re.Pattern[bytes], quote: bool, rec: _Record, include: bool
) -> tuple[int, bool]:
    """TensorFlow's ``ParseUnquotedField``; returns ``(next pos, end of record)``."""
    m = ends.search(buf, pos)
    if m is None:
        if not eof:
            raise _NeedMore
        end, nxt, at_end = len(buf), len(buf), True
    else:
        end = m.start()
        nxt = end + 1
        at_end = buf[end] in (10, 13)
        if buf[end] == 13:
            nxt = _skip_lf(buf, nxt, eof)
    field = buf[pos:end]
    if quote and b'"' in field:
        rec.fail("Unquoted fields cannot have quotes inside")
    if include:
        rec.add(field)
    return nxt, at_end


def _read_record(
    buf: bytes, pos: int, eof: bool, delim: int, ends: re.Pattern[bytes], quote: bool,
    include: Callable[[int], bool], rec: _Record,
) -> int:
    """TensorFlow's ``ReadRecord`` from ``pos`` (< ``len(buf)``); fills ``rec`` and returns where the next
    record starts. Raises ``_NeedMore`` when the record runs past ``buf`` before the end of the file."""
    n = len(buf)
    k = 0
    at_end = False
    while not at_end:
        inc = include(k)
        if pos >= n:
            if not eof:
                raise _NeedMore
            if inc:
                rec.add(b"")  # the file ends right after a delimiter: one more, empty, field
            break
        if quote and buf[pos] == 34:
            pos, at_end = _quoted_field(buf, pos, eof, delim, rec, inc)
        else:
            pos, at_end = _unquoted_field(buf, pos, eof, ends, quote, rec, inc)
        k += 1
    if rec.error is None and include is not _never and len(rec.values) != len(rec.cols):
        rec.fail(f"Expect {len(rec.cols)} fields but have {len(rec.values)} in record")
    return pos


def _line_breaks(text: bytes) -> int:
    return text.count(b"\n") + text.count(b"\r") - text.count(b"\r\n")


class CsvChunk:
    """Decoded records of one read: ``columns`` (good rows only), ``n`` records in all and ``bad``,
    the ``(index among the n records, InvalidArgumentError)`` of each bad one, in order."""

    __slots__ = ("columns", "n", "bad")

    def __init__(self, columns: list[np.ndarray], n: int, bad: list[tuple[int, InvalidArgumentError]]) -> None:
        self.columns = columns
        self.n = n
        self.bad = bad


class CsvRecordReader:
    """Reads one CSV file as ``CsvDataset`` does, a chunk of records at a time.

    Args:
        path: the file.
        cols: the output columns (from :func:`pipeline.csv.defaults._parse_defaults`).
        delim, use_quote, na: the delimiter byte, whether ``"`` quotes, the NA string.
        select, exclude: ``select_cols`` / ``exclude_cols`` (at most one of them).
        header: the first record of the file is a header (skipped; an unreadable one is an error).
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        buffer_size: bytes per read (a fill grows past it when one record needs more).
        state: a :meth:`get_state` dict to resume from.

    Raises:
        NotFoundError: the file does not exist.
    """

    def __init__(
        self, path: str, cols: list[_Column], delim: int, use_quote: bool, na: bytes,
        select: list[int] | None, exclude: list[int] | None, header: bool,
        compression_type: str = "", buffer_size: int | None = None, state: dict | None = None,
    ) -> None:
        from pipeline.textline import ByteSource

        self.path = path
        self._cols, self._delim, self._quote, self._na = cols, delim, use_quote, na
        self._select, self._exclude = select, exclude
        self._include = _Include(select, exclude) if (select is not None or exclude is not None) else None
        self._ends = _ends_re(delim)
        self._block = int(buffer_size) if buffer_size else _BLOCK
        offset = 0 if state is None else int(state["offset"])
        self._line = 1 if state is None else int(state["line"])
        self._header_left = header and (state is None or not state.get("header_done", True))
        self._src = ByteSource(path, compression_type, offset=offset)
        self._base = offset  # stream offset of self._buf[0]
        self._buf = b""
        self._pos = 0
        self._eof = False

    # -- buffer ----------------------------------------------------------------------------------
    def _fill(self, want: int = 0) -> bool:
        """Reads more bytes (at least as many as are buffered, and ``want``); False at the end of
        the file."""
        if self._eof:
            return False
        rest = self._buf[self._pos :]
        self._base += self._pos
        self._pos = 0
        data = self._src.read(max(self._block, len(rest), want))
        if not data:
            self._eof = True
            self._buf = rest
            return False
        self._buf = rest + data
        return True

    def get_state(self) -> dict:
        """Where the next record starts (JSON-serialisable)."""
        return {"offset": self._base + self._pos, "line": self._line, "header_done": not self._header_left}

    def close(self) -> None:
        self._src.close()

    # -- records ---------------------------------------------------------------------------------
    def _error(self, message: str, line: int) -> InvalidArgumentError:
        return InvalidArgumentError(f"{message} (file {self.path}, line {line})", source=self.path, line=line)

    def _one_record(self, include: Callable[[int], bool]) -> tuple[_Record, int] | None:
        """Parses the record at the buffer position; ``(record, its line)``, or None at the end of the file."""
        while True:
            if self._pos >= len(self._buf) and not self._fill():
                return None
            rec = _Record(self._cols, self._na)
            try:
                end = _read_record(self._buf, self._pos, self._eof, self._delim, self._ends, self._quote, include, rec)
            except _NeedMore:
                self._fill()
                continue
            line = self._line
            self._line += _line_breaks(self._buf[self._pos : end])
            self._pos = end
            return rec, line

    def _skip_header(self) -> None:
        self._header_left = False
        got = self._one_record(_never)
        if got is None or got[0].error is not None:
            # TensorFlow's message; reading goes on after whatever the header consumed.
            raise self._error("Can't read header of file", 1)

    def read_chunk(self, max_records: int) -> CsvChunk | None:
        """Up to ``max_records`` records (good and bad); None at the end of the file.

        Raises:
            InvalidArgumentError: ``header=True`` and the header cannot be read (an empty file).
        """
        if self._header_left:
            self._skip_header()
        plain = self._plain_text(max_records)
        if plain is not None:
            chunk = self._decode_text(*plain)
            if chunk is not None:
                return chunk
        return self._exact_chunk(max_records)

    def _exact_chunk(self, max_records: int) -> CsvChunk | None:
        include = self._include or (lambda k: True)
        rows: list[list[Any]] = []
        bad: list[tuple[int, InvalidArgumentError]] = []
        n = 0
        while n < max_records:
            got = self._one_record(include)
            if got is None:
                break
            rec, line = got
            if rec.error is not None:
                bad.append((n, self._error(rec.error, line)))
            else:
                rows.append(rec.values)
            n += 1
        if n == 0:
            return None
        return CsvChunk(self._columns(rows), n, bad)

    def _columns(self, rows: list[list[Any]]) -> list[np.ndarray]:
        if not rows:
            return _empty_columns(self._cols)
        out = []
        for c, col in enumerate(self._cols):
            if col.kind == _STR:
                a = np.empty(len(rows), object)
                a[:] = [r[c] for r in rows]
            else:
                a = np.array([r[c] for r in rows], _NP[col.kind])
            out.append(a)
        return out

    # -- the fast path ---------------------------------------------------------------------------
    def _plain_text(self, max_records: int) -> tuple[bytes, int] | None:
        """The next ``max_records`` records (not yet consumed) when they are lines without quotes
        or lone ``"\\r"``, else None: ``(text, end)``, their text with ``"\\r\\n"`` endings made
        ``"\\n"`` and no final line end, and the buffer index after them. Empty lines are not
        looked for here (see :meth:`_decode_text`)."""
        if self._exclude is not None:
            return None  # field counts decide which columns are outputs: the exact path
        end = self._find_line_ends(max_records)
        if end is None:
            return None
        pos = self._pos
        buf = self._buf
        if self._quote and buf.find(b'"', pos, end) >= 0:
            return None
        if buf.find(b"\r", pos, end) < 0:
            return buf[pos : end - 1 if buf[end - 1] == 10 else end], end  # one copy
        text = buf[pos:end]
        if text.count(b"\r") != text.count(b"\r\n"):
            return None  # a lone "\r" ends a record: the exact path
        text = text.replace(b"\r\n", b"\n")
        return (text[:-1] if text[-1:] == b"\n" else text), end

    def _find_line_ends(self, max_records: int) -> int | None:
        """The buffer index after the last line end within ``max_records * _LINE_BYTES`` bytes (the
        whole rest at the end of the file; the first line's end when that line is longer), filling
        the buffer as needed; None when that takes too many bytes. The cut depends only on the
        file's bytes from the chunk start, so a resumed iterator re-reads the same chunk."""
        budget = max_records * _LINE_BYTES
        while len(self._buf) - self._pos < budget and self._fill(budget - (len(self._buf) - self._pos)):
            pass
        buf, pos = self._buf, self._pos
        if self._eof and len(buf) - pos <= budget:
            return len(buf) if len(buf) > pos else None
        end = buf.rfind(b"\n", pos, pos + budget) + 1
        while end <= 0:  # one line longer than the budget
            if len(self._buf) - self._pos > _FAST_MAX_BYTES:
                return None
            nl = self._buf.find(b"\n", self._pos)
            if nl >= 0:
                return nl + 1
            if not self._fill():
                return len(self._buf)
        return end

    def _decode_text(self, text: bytes, end: int) -> CsvChunk | None:
        """The chunk of plain lines ``text`` (the buffer up to ``end``), consumed; None (nothing
        consumed) when it has an empty line, a record of one empty field: the exact path's.

        pyarrow parses the text as it is when it reads it exactly as TensorFlow would (one native
        call, no split into lines; it declines any text with an empty line); else the text is split
        into lines and decoded by :meth:`_decode_lines`, with the same values, and the errors."""
        import pipeline.csv as mod  # USE_ARROW is read at each call (tests switch it off)

        # Small chunks (they cannot hold _ARROW_MIN_RECORDS records) are not worth pyarrow's call.
        if mod.USE_ARROW and len(text) >= 2 * mod._ARROW_MIN_RECORDS - 1:
            plan = mod._arrow_plan(self._cols, self._delim, self._na, self._select)
            # Without quotes or "\r", pyarrow's rows are the lines (an empty line: declined).
            res = mod._decode_arrow(text, None, self._cols, plan) if plan is not None else None
            if res is not None:
                self._pos = end
                self._line += res[1]
                return CsvChunk(res[0], res[1], [])
        if not text or text[:1] == b"\n" or text[-1:] == b"\n" or b"\n\n" in text:
            return None  # an empty line is a record of one empty field: the exact path
        self._pos = end
        return self._decode_lines(text.split(b"\n"))

    def _decode_lines(self, lines: list[bytes]) -> CsvChunk:
        from . import _decode_records

        first_line = self._line
        self._line += len(lines)
        errs: list = []
        cols, _ = _decode_records(
            lines, self._cols, self._delim, self._quote, self._na, self._select, "skip", errs, self.path,
            first_line, True,
        )
        bad = []
        for e in errs:
            i = int(e.details["record"])
            # The same record through TensorFlow's CsvDataset rules, for CsvDataset's message.
            rec = _Record(self._cols, self._na)
            _read_record(lines[i], 0, True, self._delim, self._ends, self._quote, self._include or (lambda k: True), rec)
            bad.append((i, self._error(rec.error or e.message, first_line + i)))
        return CsvChunk(cols, len(lines), bad)
