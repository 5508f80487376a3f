"""``decode_csv``: CSV records to numpy columns with TensorFlow's exact rules, vectorised.

Rules (``tensorflow/core/kernels/decode_csv_op.cc``), all kept:

* each ``record_defaults`` entry fixes its column's dtype: a Python float or ``np.float32`` ->
  float32, ``np.float64`` -> float64, a Python int or ``np.int32`` -> int32 (TensorFlow also turns
  ``[np.int64(0)]`` into int32), a 1-element ``np.int64`` array or bare ``np.int64`` scalar ->
  int64, ``str``/``bytes`` -> string; ``[]`` (or an empty array of a dtype) makes the column
  required: an empty field is then an error;
* an empty field (or one equal to ``na_value``) takes the default;
* numbers may have surrounding whitespace; floats accept ``inf``/``nan`` (any case), hex
  integers (``0x1A``) and must be shorter than 32 characters; ints accept a sign and leading
  zeros, nothing else (``3.`` is not an int32), and must fit the type;
* with ``use_quote_delim`` a field in double quotes may hold the delimiter and ``""`` for a quote;
  quotes or CR/LF inside an unquoted field are errors; string fields keep their spaces;
* the first bad record raises ``InvalidArgumentError`` with TensorFlow's message ("Field 0 in
  record 2 is not a valid int32: x", "Expect 3 fields but have 2 in record 0", ...), to which this
  module adds the file and line when the caller says where the records came from (``source=``,
  ``first_line=``).

Speed: large batches of plain numeric records (digits, ``.``, signs, exponents, the delimiter;
numeric columns only) are parsed by pyarrow's native CSV reader, with the column types taken from
``record_defaults`` and empty fields filled with the defaults as arrays. pyarrow is optional (the
module works without it) and only gets chunks it reads exactly as TensorFlow does: a chunk with
anything else (spaces, quotes, CR, letters such as ``inf`` or ``0x1A``, a float field of 32 bytes or
more, a wrong field count, an empty record, a missing required field, an unparsable number) is
handed to the numpy path below, which gives TensorFlow's values and errors. ``read_csv_columns``
reads a whole file this way, block by block, without splitting it into lines.

Otherwise a batch of records is joined into one buffer and parsed with array operations. Field
boundaries come from one ``bytes.translate`` and ``flatnonzero``; each numeric field's last 16
bytes are gathered as two ``uint64`` words and turned into numbers with SWAR arithmetic (the
8-digits-per-multiply trick), so the cost per value is a few dozen numpy element operations and no
Python step. Values are exact: the integer mantissa divided by a power of ten in float64 is
correctly rounded (Clinger's fast path), and float32 results that land on a rounding tie are
recomputed exactly. Records the vector path cannot prove well-formed (quotes, spaces, exponents,
required fields missing, errors) go through a line-by-line port of TensorFlow's parser, which gives
the exact value or the exact error.

Example:
    >>> decode_csv("1.,,44", [[5.], [6], [7]])
    [np.float32(1.0), np.int32(6), np.int32(44)]
    >>> decode_csv(["1,2", "3,4"], [[0], [0.]])[1]
    array([2., 4.], dtype=float32)
    >>> read_csv_columns("w3.csv", [[0.0]] * 10 + [[0]], skip_header_lines=1)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import threading
from fractions import Fraction
from typing import Any, Sequence

import numpy as np

from queueserver.errors import InvalidArgumentError

__all__ = ["decode_csv", "read_csv_columns"]

# Records decoded per vector pass: keeps every temporary array inside the L2 cache.
_CHUNK = 8192
_PAD = b"\0" * 16  # so a 16-byte window ending at any field never starts before the buffer

_F32, _F64, _I32, _I64, _STR = "float32", "float64", "int32", "int64", "string"
_NP = {_F32: np.float32, _F64: np.float64, _I32: np.int32, _I64: np.int64}
_TYPE_WORD = {_F32: "float", _F64: "double", _I32: "int32", _I64: "int64"}


class _Column:
    """One output column: its dtype name and default (``None`` = required)."""

    __slots__ = ("kind", "default")

    def __init__(self, kind: str, default: Any) -> None:
        self.kind = kind
        self.default = default


def _kind_of_value(v: Any, in_list: bool) -> str | None:
    if isinstance(v, (bytes, str, np.bytes_, np.str_)):
        return _STR
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, np.float32):
        return _F32
    if isinstance(v, np.float64):
        return _F64  # np.float64 keeps float64, also inside a list (what TensorFlow does)
    if isinstance(v, float):
        return _F32
    if isinstance(v, np.int64):
        # TensorFlow converts a *list* of numpy int64 scalars like Python ints (to int32).
        return _I32 if in_list and -(2**31) <= int(v) < 2**31 else _I64
    if isinstance(v, np.int32):
        return _I32
    if isinstance(v, (int, np.integer)):
        return _I32 if -(2**31) <= int(v) < 2**31 else _I64
    return None


def _kind_of_dtype(dt: np.dtype) -> str | None:
    if dt == np.float32:
        return _F32
    if dt == np.float64:
        return _F64
    if dt == np.int32:
        return _I32
    if dt == np.int64:
        return _I64
    if dt.kind in "SUO":
        return _STR
    return None


def _as_default(kind: str, v: Any) -> Any:
    if kind == _STR:
        return v.encode() if isinstance(v, str) else bytes(v)
    return _NP[kind](v)


def _parse_defaults(record_defaults: Sequence[Any]) -> list[_Column]:
    """Turn ``record_defaults`` into columns, with TensorFlow's dtype rules."""
    if not isinstance(record_defaults, (list, tuple)) or not record_defaults:
        raise InvalidArgumentError("record_defaults must be a non-empty list, one entry per column")
    cols = []
    for f, d in enumerate(record_defaults):
        kind: str | None
        if isinstance(d, type) or isinstance(d, np.dtype):
            # A bare type (np.int32, float, bytes): a required column of that type.
            builtin = {float: _F32, int: _I32, bytes: _STR, str: _STR}
            kind = builtin[d] if d in builtin else _kind_of_dtype(np.dtype(d))
            values: list = []
        elif isinstance(d, np.ndarray):
            if d.ndim > 1:
                raise InvalidArgumentError(f"Each record default should be at most rank 1 (field {f})")
            kind = _kind_of_dtype(d.dtype)
            values = d.ravel().tolist()
        elif isinstance(d, (list, tuple)):
            values = list(d)
            if not values:
                kind = _F32  # tf.constant([]) is float32
            else:
                kinds = {_kind_of_value(v, True) for v in values}
                if kinds == {_I32, _F32} or kinds == {_I32, _I64, _F32}:
                    kinds = {_F32}
                kind = kinds.pop() if len(kinds) == 1 else None
        else:
            kind = _kind_of_value(d, False)
            values = [d]
        if len(values) > 1:
            raise InvalidArgumentError(
                f"There should only be 1 default per field but field {f} has {len(values)}"
            )
        if kind is None:
            raise InvalidArgumentError(
                f"csv: data type of record_defaults[{f}] ({d!r}) not supported; use float, "
                f"np.float64, int, np.int64 (array) or str/bytes"
            )
        cols.append(_Column(kind, _as_default(kind, values[0]) if values else None))
    return cols


# ------------------------------------------------------------------------------------------------
# The exact path: TensorFlow's ExtractFields and number parsers, one record at a time
# ------------------------------------------------------------------------------------------------
class _RecordError(Exception):
    def __init__(self, message: str, field: int | None = None) -> None:
        super().__init__(message)
        self.field = field


_WS = b" \t\n\v\f\r"
# double-conversion with ALLOW_LEADING_SPACES | ALLOW_TRAILING_SPACES | ALLOW_HEX |
# ALLOW_CASE_INSENSIBILITY, infinity "inf", nan "nan": what TensorFlow's safe_strtof/strtod accept.
_FLOAT_RE = re.compile(
    rb"[ \t\n\v\f\r]*([+-]?)(?:(inf|nan)|0x([0-9a-f]+)|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?))[ \t\n\v\f\r]*\Z",
    re.IGNORECASE,
)
# absl::SimpleAtoi: surrounding ASCII whitespace, one optional sign, decimal digits.
_INT_RE = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*\Z")


def _extract_fields(rec: bytes, delim: int, use_quote: bool, select: list[int] | None) -> list[bytes]:
    """A port of DecodeCSVOp::ExtractFields (same fields, same errors)."""
    fields: list[bytes] = []
    n = len(rec)
    if n == 0:
        return fields
    dbyte = bytes((delim,))
    i = 0
    parsed = 0
    sel = 0
    while i < n:
        c = rec[i]
        if c == 10 or c == 13:  # TensorFlow skips CR/LF where a field would start
            i += 1
            continue
        include = select is None or select[sel] == parsed
        if use_quote and c == 34:
            i += 1
            field = bytearray()
            while i < n - 1 and (rec[i] != 34 or rec[i + 1] != delim):
                if rec[i] != 34:
                    field.append(rec[i])
                    i += 1
                else:
                    if rec[i + 1] != 34:
                        raise _RecordError("Quote inside a string has to be escaped by another quote")
                    field.append(34)
                    i += 2
            if not (i < n and rec[i] == 34 and (i == n - 1 or rec[i + 1] == delim)):
                raise _RecordError("Quoted field has to end with quote followed by delim or end")
            i += 2
            value = bytes(field)
        else:
            j = rec.find(dbyte, i)
            if j < 0:
                j = n
            value = rec[i:j]
            if (use_quote and b'"' in value) or b"\n" in value or b"\r" in value:
                raise _RecordError("Unquoted fields cannot have quotes/CRLFs inside")
            i = j + 1
        parsed += 1
        if include:
            fields.append(value)
            sel += 1
            if select is not None and sel == len(select):
                return fields
    if (select is None or select[sel] == parsed) and rec[n - 1] == delim:
        fields.append(b"")  # a trailing delimiter ends with one more, empty, field
    return fields


def _f32_exact(exact: Fraction) -> np.float32:
    """Round an exact rational to float32 correctly (ties to even)."""
    guess = np.float32(float(exact))
    if not np.isfinite(guess):
        return guess
    best = None
    for cand in (np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))):
        if not np.isfinite(cand):
            continue
        d = abs(Fraction(float(cand)) - exact)
        if best is None or d < best[0] or (d == best[0] and int(cand.view(np.uint32)) % 2 == 0):
            best = (d, cand)
    return best[1]


def _is_f32_tie(x: float) -> bool:
    bits = np.float64(x).view(np.uint64)
    return int(bits) & 0x1FFFFFFF == 0x10000000


def _parse_float(tok: bytes, kind: str) -> Any:
    """TensorFlow's safe_strtof/safe_strtod, or None when the field is not a valid number."""
    if len(tok) >= 32:  # kFastToBufferSize: TensorFlow refuses longer fields outright
        return None
    m = _FLOAT_RE.match(tok)
    if m is None:
        return None
    sign, special, hexdigits, dec = m.groups()
    neg = sign == b"-"
    if special is not None:
        v = float(special.decode())
        return _NP[kind](-v if neg else v)
    if hexdigits is not None:
        iv = int(hexdigits, 16)
        exact = Fraction(-iv if neg else iv)
        try:
            v = float(exact)
        except OverflowError:
            v = -np.inf if neg else np.inf
    else:
        text = (sign + dec).decode()
        v = float(text)
        exact = None
    if kind == _F64:
        return np.float64(v)
    if _is_f32_tie(v):
        return _f32_exact(exact if exact is not None else Fraction(text))
    with np.errstate(over="ignore"):
        return np.float32(v)


def _parse_int(tok: bytes, kind: str) -> Any:
    m = _INT_RE.match(tok)
    if m is None:
        return None
    v = int(m.group(1))
    if kind == _I32:
        return np.int32(v) if -(2**31) <= v < 2**31 else None
    return np.int64(v) if -(2**63) <= v < 2**63 else None


def _decode_record_slow(
    rec: bytes, i: int, cols: list[_Column], delim: int, use_quote: bool, na: bytes, select: list[int] | None
) -> list[Any]:
    """Decode one record exactly as TensorFlow does, or raise _RecordError with its message."""
    fields = _extract_fields(rec, delim, use_quote, select)
    if len(fields) != len(cols):
        raise _RecordError(f"Expect {len(cols)} fields but have {len(fields)} in record {i}")
    out = []
    for f, (tok, col) in enumerate(zip(fields, cols)):
        if not tok or (na and tok == na):
            if col.default is None:
                raise _RecordError(f"Field {f} is required but missing in record {i}!", f)
            out.append(col.default)
            continue
        if col.kind == _STR:
            out.append(tok)
            continue
        v = _parse_float(tok, col.kind) if col.kind in (_F32, _F64) else _parse_int(tok, col.kind)
        if v is None:
            shown = tok.decode("utf-8", "backslashreplace")
            raise _RecordError(f"Field {f} in record {i} is not a valid {_TYPE_WORD[col.kind]}: {shown}", f)
        out.append(v)
    return out


# ------------------------------------------------------------------------------------------------
# The vector path
# ------------------------------------------------------------------------------------------------
def _table(mapping: dict[int, int], default: int = 0) -> bytes:
    t = bytearray([default] * 256)
    for k, v in mapping.items():
        t[k] = v
    return bytes(t)


# Code channel: a digit d -> 0x40 | d, "." -> 0x10, "+"/"-" -> 0x80, every other byte -> 0. The low
# nibble carries digit values, the high nibble the character class, so one gathered word gives both.
_CODE_TAB = _table({**{48 + d: 0x40 | d for d in range(10)}, 46: 0x10, 43: 0x80, 45: 0x80})
_U = np.uint64
_M0F = _U(0x0F0F0F0F0F0F0F0F)
_M10 = _U(0x1010101010101010)
_M40 = _U(0x4040404040404040)
_M80 = _U(0x8080808080808080)
# _KEEP[k]: keep the top k bytes of a little-endian word (the last k characters before the end).
_KEEP = np.array([0] + [((1 << 64) - 1) ^ ((1 << (8 * (8 - k))) - 1) for k in range(1, 9)], np.uint64)


def _pow_tables() -> tuple[np.ndarray, np.ndarray]:
    """Float64 exponent bits of the lone dot bit -> (10**q, 10**(q-1)), q = characters after it.

    The dot bits of both words are summed into one float, the high word's scaled by 2**64, so the
    exponent alone says where the dot is; no dot (exponent bits 0) maps to (1, 1).
    """
    pw, dv = np.ones(2048), np.ones(2048)
    for m in range(16):  # lo-word byte m (m < 8) or hi-word byte m - 8: dot bit 2**(8m + 4)
        e = 1023 + 8 * m + 4
        b = m + 8 if m < 8 else m - 8  # its position in the 16-byte window (15 = last character)
        q = 15 - b
        pw[e], dv[e] = 10.0**q, (10.0 ** (q - 1) if q else 0.1)  # k * 0.1 is exact for k = 10 * int
    return pw, dv


_PW, _DV = _pow_tables()


def _swar8(v: np.ndarray) -> np.ndarray:
    """Eight digit values (0..9) per little-endian uint64, first byte most significant -> number."""
    v = ((v * _U(2561)) >> _U(8)) & _U(0x00FF00FF00FF00FF)
    v = ((v * _U(6553601)) >> _U(16)) & _U(0x0000FFFF0000FFFF)
    return (v * _U(42949672960001)) >> _U(32)


def _parse_numbers(code: bytes, u8: np.ndarray, ends: np.ndarray, L: np.ndarray):
    """Parse the fields ending at ``ends`` (lengths ``L``) of the coded buffer.

    Returns ``(values, magnitudes, neg, has_dot, ok, mantissas, powers)``: float64 values, the
    digits as an integer (for int columns), sign and dot flags, ``ok`` (False where the field is
    not ``[+-]?digits[.digits]`` / ``[+-]?.digits`` of at most 16 characters whose digits fit
    2**53: such fields go to the exact path), and the exact mantissa and power of ten of each
    value (to fix float32 rounding ties).
    """
    win = np.ndarray((len(code) - 15,), dtype="V16", buffer=code, strides=(1,))
    w = win[ends - 16].view("<u8")
    Lc = np.minimum(L, 16)
    L8 = np.minimum(Lc, 8)
    lo = w[1::2] & _KEEP[L8]
    hi = w[0::2] & _KEEP[Lc - L8]
    X = _swar8(hi & _M0F) * _U(100000000) + _swar8(lo & _M0F)
    dots = np.bitwise_count(lo & _M10) + np.bitwise_count(hi & _M10)
    signs = np.bitwise_count(lo & _M80) + np.bitwise_count(hi & _M80)
    digits = np.bitwise_count(lo & _M40) + np.bitwise_count(hi & _M40)
    first = u8[ends - L]
    neg = first == 45
    has_dot = dots == 1
    # Valid: at most one dot, at most one sign and only as the first character, at least one
    # digit, nothing else (any other character has class 0 and so is missing from the counts).
    ok = (dots <= 1) & ((signs == 0) | ((signs == 1) & (neg | (first == 43))))
    ok &= (digits >= 1) & ((digits + dots + signs) == L)
    ok &= X < _U(1 << 53)
    dotf = (lo & _M10).astype(np.float64) + (hi & _M10).astype(np.float64) * 18446744073709551616.0
    e = (dotf.view(np.uint64) >> _U(52)).astype(np.intp)
    Xd = _PW[e]
    Xf = X.astype(np.float64)
    k = np.floor(Xf / Xd)
    mant = k * _DV[e] + (Xf - k * Xd)
    val = mant / Xd  # correctly rounded: exact mantissa < 2**53 over an exact power of ten
    np.negative(val, out=val, where=neg)
    return val, X, neg, has_dot, ok, mant, Xd


def _f32_column(val: np.ndarray, mant: np.ndarray, Xd: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """float64 -> float32, fixing the rare double-rounding ties exactly."""
    out = val.astype(np.float32)
    ties = np.flatnonzero((val.view(np.uint64) & _U(0x1FFFFFFF)) == _U(0x10000000))
    for t in ties.tolist():
        exact = Fraction(int(mant[t]), int(Xd[t]))
        out[t] = _f32_exact(-exact if neg[t] else exact)
    return out


def _decode_chunk_fast(
    recs: list[bytes], cols: list[_Column], delim: int, use_quote: bool, na: bytes, select: list[int] | None
) -> tuple[list[np.ndarray], np.ndarray] | None:
    """Vector-decode a chunk; returns (columns, slow mask) or None if the chunk must go slow."""
    n = len(recs)
    text = b"\n".join(recs)
    if text.count(b"\n") != n - 1 or delim in (10, 13, 0):
        return None  # a record holding a newline: let the exact path split it
    ptext = _PAD + text + b"\n"
    u8 = np.frombuffer(ptext, np.uint8)
    seps = np.flatnonzero(np.frombuffer(ptext.translate(_SEP_TABS[delim]), np.bool_))
    nf = seps.size
    nl = np.flatnonzero(u8[seps] == 10)  # index (in seps) of each record's last field
    f0 = np.empty(n, np.int64)
    f0[0] = 0
    f0[1:] = nl[:-1] + 1
    counts = nl - f0 + 1
    starts = np.empty(nf, np.int64)
    starts[0] = 16
    starts[1:] = seps[:-1] + 1
    lens = seps - starts

    ncols = len(cols)
    src = list(range(ncols)) if select is None else list(select)
    if select is None:
        slow = counts != ncols
    else:
        slow = counts <= src[-1]
    slow |= (counts == 1) & (lens[f0] == 0)  # an empty record has no fields at all (TensorFlow)

    F = np.minimum(f0[:, None] + np.asarray(src, np.int64)[None, :], nf - 1)  # (n, ncols)
    numeric = [c for c in range(ncols) if cols[c].kind != _STR]
    out: list[np.ndarray | None] = [None] * ncols
    if numeric:
        Fn = F[:, numeric].ravel()
        e = seps[Fn]
        L = lens[Fn]
        code = ptext.translate(_CODE_TAB)
        val, X, neg, has_dot, ok, mant, Xd = _parse_numbers(code, u8, e, L)
        empty = L == 0
        if na:
            empty |= _matches(ptext, e, L, na)
        k = len(numeric)
        shape = (n, k)
        ok2, empty2 = ok.reshape(shape), empty.reshape(shape)
        for j, c in enumerate(numeric):
            col = cols[c]
            okc, emc = ok2[:, j], empty2[:, j]
            sl = slice(j, None, k)
            if col.kind in (_F32, _F64):
                bad_c = ~(okc | emc)
                v = val[sl]
                arr = _f32_column(v, mant[sl], Xd[sl], neg[sl]) if col.kind == _F32 else v.copy()
            else:
                hd = has_dot[sl]
                mag = X[sl]
                ng = neg[sl]
                limit = _U(2**31 - 1) if col.kind == _I32 else _U(2**63 - 1)
                in_range = (mag <= limit) | (ng & (mag == limit + _U(1)))
                bad_c = ~((okc & ~hd & in_range) | emc)
                signed = mag.astype(np.int64)  # wraps only for |v| = 2**63, fixed by negation below
                np.negative(signed, out=signed, where=ng)
                arr = signed.astype(_NP[col.kind])
            if emc.any():
                if col.default is None:
                    bad_c = bad_c | emc
                else:
                    arr[emc] = col.default
            slow |= bad_c
            out[c] = arr
    for c in range(ncols):
        if cols[c].kind != _STR:
            continue
        idx = F[:, c]
        s_list, e_list = starts[idx].tolist(), seps[idx].tolist()
        vals = [ptext[s:e] for s, e in zip(s_list, e_list)]
        arr = np.empty(n, object)
        arr[:] = vals
        emc = lens[idx] == 0
        if na:
            emc |= np.array([v == na for v in vals], bool)
        if emc.any():
            if cols[c].default is None:
                slow |= emc
            else:
                arr[emc] = cols[c].default
        out[c] = arr
    if (use_quote and b'"' in text) or b"\r" in text:
        # A quote (or CR) anywhere in a record changes how it splits: decode that record exactly.
        qmask = np.frombuffer(ptext.translate(_QUOTE_TAB if use_quote else _CR_TAB), np.bool_)
        per_field = np.logical_or.reduceat(qmask, starts)
        slow |= np.logical_or.reduceat(per_field, f0)
    return out, slow


def _matches(ptext: bytes, e: np.ndarray, L: np.ndarray, na: bytes) -> np.ndarray:
    """Which fields equal ``na`` exactly (vectorised compare of the last 16 bytes)."""
    if len(na) > 16:
        return np.array([ptext[int(a) - int(b) : int(a)] == na for a, b in zip(e, L)], bool)
    win = np.ndarray((len(ptext) - 15,), dtype="V16", buffer=ptext, strides=(1,))
    w = win[e - 16].view("<u8").reshape(-1, 2)
    target = np.frombuffer((b"\0" * 16 + na)[-16:], "<u8")
    k = len(na)
    lo_keep, hi_keep = _KEEP[min(k, 8)], _KEEP[k - min(k, 8)]
    return (L == k) & ((w[:, 1] & lo_keep) == (target[1] & lo_keep)) & ((w[:, 0] & hi_keep) == (target[0] & hi_keep))


_SEP_TABS = {d: _table({d: 1, 10: 1}) for d in range(256)}
_QUOTE_TAB = _table({34: 1, 13: 1})
_CR_TAB = _table({13: 1})


# ------------------------------------------------------------------------------------------------
# The native path: pyarrow's CSV parser, for chunks it is proven to read exactly as TensorFlow does
# ------------------------------------------------------------------------------------------------
#: Use pyarrow (when installed) for large numeric chunks. Tests switch it off to compare paths.
USE_ARROW = True
# Fewer records than this go to the numpy path: a pyarrow call costs ~0.1 ms of fixed overhead.
_ARROW_MIN_RECORDS = 256
# Records handed to pyarrow per call (and so the unit that falls back when pyarrow says no).
_ARROW_CHUNK = 1 << 16
_ARROW_BLOCK = 1 << 22  # pyarrow's own parse block: large blocks parse fastest, 4 MB is plenty
# Bytes a chunk may hold for pyarrow: numbers in TensorFlow's plain decimal / exponent syntax, the
# delimiter and "\n". No spaces, quotes, CR, letters (so no "inf", "infinity", "0x1A" or "NA"):
# pyarrow and TensorFlow disagree on those, and any chunk holding one goes to the exact path.
_ARROW_NUMBER_BYTES = b"0123456789.+-eE"
_LONG_PIECE = 1 << 17  # bytes per step of the long-field test (fits the L2 cache)
_PARALLEL_CHECK_BYTES = 1 << 18  # chunks from this size are checked on a thread during the parse
_check_pool: Any = None
_check_lock = threading.Lock()
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
        # TensorFlow refuses float fields of 32 bytes or more (kFastToBufferSize); pyarrow does not.
        self.check_long = any(c.kind in (_F32, _F64) for c in cols)
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
    if not USE_ARROW or any(c.kind == _STR for c in cols) or delim in _ARROW_NUMBER_BYTES + b"\n\r\"":
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


def _has_long_field(text: bytes, delim: int) -> bool:
    """Whether any field of ``text`` is 32 bytes or longer (conservatively: maybe 24 or more).

    A field of 32 bytes or more covers at least three whole aligned 8-byte words, so the vector
    test looks for three consecutive words without a delimiter or newline: a handful of passes at
    memory speed. Words it flags (fields of 24+ bytes) are measured exactly.
    """
    u8 = np.frombuffer(text, np.uint8)
    m = len(u8) & ~7
    if m < 32:
        return any(len(f) >= 32 for f in text.replace(bytes((delim,)), b"\n").split(b"\n"))
    has = np.empty(m // 8, bool)  # word k holds a delimiter or newline
    # Pieces that stay in the cache: one pass over fresh 48 MB temporaries costs 4x more.
    piece = min(m, _LONG_PIECE)
    a, b = np.empty(piece, bool), np.empty(piece, bool)
    for s in range(0, m, piece):
        u, k = u8[s : min(m, s + piece)], min(m - s, piece)
        np.equal(u, delim, out=a[:k])
        np.equal(u, 10, out=b[:k])
        np.logical_or(a[:k], b[:k], out=a[:k])
        np.not_equal(a[:k].view(np.uint64), 0, out=has[s // 8 : (s + k) // 8])
    run = has[:-2] | has[1:-1]
    run |= has[2:]
    suspects = np.flatnonzero(~run) if not run.all() else ()
    if len(suspects) > 64:  # many long-ish fields: measure every field
        sep = (u8 == delim) | (u8 == 10)
        ends = np.flatnonzero(sep)
        widths = np.diff(ends, prepend=-1, append=len(u8)) - 1
        return bool(widths.max() >= 32)
    d = bytes((delim,))
    for w in suspects:
        p = 8 * int(w)
        start = max(text.rfind(d, 0, p), text.rfind(b"\n", 0, p)) + 1
        end = min(x for x in (text.find(d, p), text.find(b"\n", p), len(text)) if x >= 0)
        if end - start >= 32:
            return True
    # The last bytes (beyond the whole words) are measured exactly; a field reaching back past
    # them has been seen by the word test already.
    tail = text[max(0, len(text) - 80) :].replace(d, b"\n")
    return any(len(f) >= 32 for f in tail.split(b"\n"))


def _arrow_text_ok(text: bytes, plan: _ArrowPlan) -> bool:
    """Whether ``text`` holds only bytes pyarrow reads as TensorFlow does, and no long float."""
    if text.translate(None, plan.allowed):
        return False
    return not (plan.check_long and _has_long_field(text, plan.delim))


def _checker() -> Any:
    """The one worker thread that checks large chunks while pyarrow parses them."""
    global _check_pool
    if _check_pool is None:
        from concurrent.futures import ThreadPoolExecutor

        with _check_lock:
            if _check_pool is None:
                _check_pool = ThreadPoolExecutor(1, thread_name_prefix="csv-check")
    return _check_pool


def _decode_arrow(text: bytes, nrec: int | None, cols: list[_Column], plan: _ArrowPlan) -> tuple[list[np.ndarray], int] | None:
    """Decode ``"\\n"``-joined records with pyarrow, or None when the exact path must do it.

    Only a chunk that pyarrow reads exactly as TensorFlow would comes back: plain numbers,
    ``nrec`` records (when given), the right field count everywhere, float fields shorter than 32
    bytes, and no empty field in a required column. Anything else (including every error
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
    return _parse_defaults(record_defaults), delim_b[0], na, select


def _empty_columns(cols: list[_Column]) -> list[np.ndarray]:
    return [np.empty(0, object) if c.kind == _STR else np.empty(0, _NP[c.kind]) for c in cols]


def _decode_records(
    recs: list[bytes], cols: list[_Column], delim: int, use_quote: bool, na: bytes, select: list[int] | None,
    on_error: str, bad_records: list | None, source: str | None, first_line: int | None, try_arrow: bool,
) -> tuple[list[np.ndarray], bool]:
    """Decode a flat list of records to 1-D columns; returns ``(columns, any record dropped)``.

    Large chunks of plain numeric records go to pyarrow; every chunk it declines (and every
    small batch) goes through the numpy vector path and, record by record, the exact path.
    """
    n = len(recs)

    def fail(i: int, err: _RecordError) -> InvalidArgumentError:
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

    plan = _arrow_plan(cols, delim, na, select) if try_arrow and n >= _ARROW_MIN_RECORDS else None
    step = _ARROW_CHUNK if plan is not None else _CHUNK
    parts: list[list[np.ndarray]] = []
    dropped = False
    for outer in range(0, n, step):
        if plan is not None:
            block = recs[outer : outer + step]
            try:
                text = b"\n".join(block)
            except TypeError:  # a str among bytes records (only the ends were checked): convert all
                block = recs[outer : outer + step] = _all_bytes(block)
                text = b"\n".join(block)
            res = _decode_arrow(text, len(block), cols, plan) if len(block) >= _ARROW_MIN_RECORDS else None
            if res is not None:
                parts.append(res[0])
                continue
        for base in range(outer, min(n, outer + step), _CHUNK):
            chunk = recs[base : base + _CHUNK]
            try:
                res = _decode_chunk_fast(chunk, cols, delim, use_quote, na, select) if len(chunk) > 1 else None
            except TypeError:  # a str among bytes records (only the ends were checked): convert all
                chunk = recs[base : base + _CHUNK] = _all_bytes(chunk)
                res = _decode_chunk_fast(chunk, cols, delim, use_quote, na, select)
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
                    err = fail(base + r, e)
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
                out = [o[keep] for o in out]
                dropped = True
            parts.append(out)

    if n == 0:
        return _empty_columns(cols), False
    if len(parts) == 1:
        return parts[0], dropped
    return [np.concatenate([p[c] for p in parts]) for c in range(len(cols))], dropped


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
    it is dropped, empty lines are records; same values, same errors), only faster: the file is
    read in large blocks and each block of plain numeric lines is parsed by pyarrow straight from
    the bytes, without splitting it into lines first. Blocks pyarrow declines are split into lines
    and decoded by :func:`decode_csv`, whose errors then name the file and the line.

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
    from pipeline.textline import ByteSource

    cols, delim, na, select = _prepare(record_defaults, field_delim, na_value, select_cols, on_error)
    plan = _arrow_plan(cols, delim, na, select, bool(use_threads))
    source = os.fspath(path)
    parts: list[list[np.ndarray]] = []
    line_no = 1  # the 1-based number of the next line of the file
    header_left = int(skip_header_lines)
    block_bytes = max(int(block_bytes), 1 << 16)

    def decode(text: bytes) -> None:
        # ``text``: one or more complete lines joined by "\n" (no final "\n").
        nonlocal line_no, header_left
        while header_left:
            header_left -= 1
            line_no += 1
            cut = text.find(b"\n")
            if cut < 0:
                return
            text = text[cut + 1 :]
        res = _decode_arrow(text, None, cols, plan) if plan is not None else None
        if res is not None:
            parts.append(res[0])
            line_no += res[1]
            return
        lines = text.split(b"\n")
        if b"\r" in text:  # "\r\n" line ends: TextLineReader drops the "\r"
            lines = [ln[:-1] if ln[-1:] == b"\r" else ln for ln in lines]
        out, _ = _decode_records(
            lines, cols, delim, use_quote_delim, na, select, on_error, bad_records, source, line_no, True
        )
        parts.append(out)
        line_no += len(lines)

    with ByteSource(source, compression_type, buffer_size=min(block_bytes, 1 << 22)) as src:
        tail = b""
        while True:
            data = src.read(block_bytes)
            if not data:
                break
            buf = tail + data if tail else data
            cut = buf.rfind(b"\n")
            if cut < 0:
                tail = buf
                continue
            tail = buf[cut + 1 :]
            decode(buf[:cut])
        # TextLineReader: a last line without "\n" counts unless it is empty after the "\r" cut.
        if tail and tail != b"\r":
            decode(tail)
    if not parts:
        return _empty_columns(cols)
    if len(parts) == 1:
        return parts[0]
    return [np.concatenate([p[c] for p in parts]) for c in range(len(cols))]
