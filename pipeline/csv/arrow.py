"""The native path: pyarrow's CSV parser, for chunks it is proven to read exactly as TensorFlow does.

Large batches of plain numeric records (digits, ``.``, signs, exponents, the delimiter; numeric
columns only) are parsed by pyarrow's native CSV reader, with the column types taken from
``record_defaults`` and empty fields filled with the defaults as arrays. pyarrow is optional (the
package works without it) and only gets chunks it reads exactly as TensorFlow does: a chunk with
anything else (spaces, quotes, CR, letters such as ``inf`` or ``0x1A``, a wrong field count, an
empty record, a missing required field, an unparsable number) is declined (``_decode_arrow`` returns None) and handed to the numpy paths, which give TensorFlow's
values and errors. Whether pyarrow is tried at all is decided in :mod:`pipeline.csv` (``USE_ARROW``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.workers import ProcessWorker

from .defaults import _F32, _F64, _I32, _I64, _STR, _Column

_ARROW_BLOCK = 1 << 22  # pyarrow's own parse block: large blocks parse fastest, 4 MB is plenty
# Bytes a chunk may hold for pyarrow: numbers in TensorFlow's plain decimal / exponent syntax, the
# delimiter and "\n". No spaces, quotes, CR, letters (so no "inf", "infinity", "0x1A" or "NA"):
# pyarrow and TensorFlow disagree on those, and any chunk holding one goes to the exact path.
_ARROW_NUMBER_BYTES = b"0123456789.+-eE"
_PARALLEL_CHECK_BYTES = 1 << 18  # chunks from this size are checked on a thread during the parse
_CHECKER = ProcessWorker("csv-check")
_arrow_mods: Any = None  # (pyarrow, pyarrow.csv, pyarrow.compute), or False when not installed
_arrow_plans: dict = {}


def _arrow() -> Any:
    """pyarrow's modules, imported on first use (pyarrow is optional: ``None`` without it)."""
    global _arrow_mods
    if _arrow_mods is None:
        try:
            import pyarrow
            import pyarrow.compute
            import pyarrow.csv
        except ImportError:  # pragma: no cover - the numpy path does everything, just slower
            _arrow_mods = False
        else:
            _arrow_mods = (pyarrow, pyarrow.csv, pyarrow.compute)
    return _arrow_mods or None


class _ArrowPlan:
    """pyarrow options for one column layout (built once per layout and cached)."""

    def __init__(
        self, mods: Any, cols: list[_Column], delim: int, na: bytes, select: list[int] | None, threads: bool
    ) -> None:
        pa, pacsv, _ = mods
        self.ncols = len(cols)
        self.select = select
        self.names = [f"f{c}" for c in (range(len(cols)) if select is None else select)]
        self.allowed = _ARROW_NUMBER_BYTES + bytes((delim, 10))
        arrow_type = {_F32: pa.float32(), _F64: pa.float64(), _I32: pa.int32(), _I64: pa.int64()}
        types = [arrow_type[c.kind] for c in cols]
        self.fills = [None if c.default is None else pa.scalar(c.default.item(), t) for c, t in zip(cols, types)]
        self.delim = delim
        self.read = pacsv.ReadOptions(use_threads=threads, autogenerate_column_names=True, block_size=_ARROW_BLOCK)
        self.parse = pacsv.ParseOptions(
            delimiter=chr(delim), quote_char=False, double_quote=False, escape_char=False,
            newlines_in_values=False, ignore_empty_lines=False,
        )
        nulls = [""] + ([na.decode("ascii")] if na else [])  # TensorFlow: empty or == na_value
        self.convert = pacsv.ConvertOptions(
            column_types=dict(zip(self.names, types)), null_values=nulls, true_values=[], false_values=[],
            strings_can_be_null=True, quoted_strings_can_be_null=True, check_utf8=False,
            # With select_cols the records may have more fields than the last selected one (as in
            # TensorFlow); without it every field is a column and the column count is checked.
            include_columns=self.names if select is not None else None,
        )


def _arrow_plan(
    cols: list[_Column], delim: int, na: bytes, select: list[int] | None, threads: bool = False
) -> _ArrowPlan | None:
    """The cached pyarrow plan for these columns, or None when pyarrow cannot serve them."""
    if any(c.kind == _STR for c in cols) or delim in _ARROW_NUMBER_BYTES + b"\n\r\"":
        return None
    if na and (not na.isascii() or delim in na or 10 in na):
        return None
    mods = _arrow()
    if mods is None:
        return None
    key = (tuple((c.kind, None if c.default is None else c.default.item()) for c in cols), delim, na,
           None if select is None else tuple(select), threads)
    plan = _arrow_plans.get(key)
    if plan is None:
        plan = _arrow_plans[key] = _ArrowPlan(mods, cols, delim, na, select, threads)
    return plan


def _arrow_text_ok(text: bytes, plan: _ArrowPlan) -> bool:
    """Whether ``text`` holds only bytes pyarrow reads as TensorFlow does.

    Float fields of any length qualify: pyarrow rounds them correctly, as absl::SimpleAtof does.
    """
    return not text.translate(None, plan.allowed)


def _checker() -> Any:
    """The one worker thread that checks large chunks while pyarrow parses them."""
    return _CHECKER.executor()


def _decode_arrow(text: bytes, nrec: int | None, cols: list[_Column], plan: _ArrowPlan) -> tuple[list[np.ndarray], int] | None:
    """Decode ``"\\n"``-joined records with pyarrow, or None when the exact path must do it.

    Only a chunk that pyarrow reads exactly as TensorFlow would comes back: plain numbers,
    ``nrec`` records (when given), the right field count everywhere, and no empty field in a required column. Anything else (including every error
    TensorFlow would raise) returns None, so messages and edge cases stay those of the exact path.

    Returns:
        ``(columns, records)``: writable numpy columns with the defaults filled in.
    """
    if not text or text[:1] == b"\n" or text[-1:] == b"\n":
        return None  # an empty record has no fields at all in TensorFlow, not empty fields
    pa, pacsv, pac = _arrow()
    # The byte checks of a large chunk run on a second thread while pyarrow parses it (pyarrow
    # releases the GIL): on two cores they cost no time. The parse is only used if they pass.
    checks = _checker().submit(_arrow_text_ok, text, plan) if len(text) >= _PARALLEL_CHECK_BYTES else None
    if checks is None and not _arrow_text_ok(text, plan):
        return None
    try:
        table = pacsv.read_csv(pa.BufferReader(text), read_options=plan.read, parse_options=plan.parse,
                               convert_options=plan.convert)
    except pa.ArrowException:
        table = None  # wrong field count, a bad number, an int out of range, a missing column...
    if (checks is not None and not checks.result()) or table is None:
        return None
    rows = table.num_rows
    if (nrec is not None and rows != nrec) or (plan.select is None and table.num_columns != plan.ncols):
        return None
    columns = [table.column(name) for name in plan.names]
    if all(arr.null_count for arr in columns):
        # pyarrow reads an empty line as a row of nulls; TensorFlow finds no fields in it. Only a
        # row that is null everywhere can be one, and only then is the text searched for it.
        if b"\n\n" in text:
            return None
    out = []
    for arr, fill in zip(columns, plan.fills):
        if arr.null_count:
            if fill is None:
                return None  # a required field is missing: the exact path names it
            arr = pac.fill_null(arr, fill)
        values = arr.to_numpy()
        out.append(values if values.flags.writeable else values.copy())
    return out, rows
