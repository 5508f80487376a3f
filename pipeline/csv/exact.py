"""The exact path: a line-by-line port of TensorFlow's ``DecodeCSVOp::ExtractFields`` and number parsers.

One record at a time, it gives TensorFlow's exact value or exact error (``_RecordError`` with its
message) for any record: quotes, spaces, exponents, ``inf``/``nan``, hex, missing required fields.
The faster paths hand it every record they cannot prove well-formed.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

import numpy as np

from .defaults import _F32, _F64, _I32, _NP, _STR, _TYPE_WORD, _Column


class _RecordError(Exception):
    def __init__(self, message: str, field: int | None = None) -> None:
        super().__init__(message)
        self.field = field


_WS = b" \t\n\v\f\r"
# absl::SimpleAtof / SimpleAtod (what TensorFlow's decode_csv and CsvDataset call): surrounding
# ASCII whitespace, one optional "+" (not "+-"), then absl::from_chars: an optional "-" and
# "inf", "infinity", "nan" or "nan(chars)" (any case), a hex float "0x" hexdigits [. hexdigits]
# [p exponent], or a decimal [. digits] [e exponent]; any length, correctly rounded.
_FLOAT_RE = re.compile(
    rb"[ \t\n\v\f\r]*(?:\+|(-))?(?:(inf(?:inity)?|nan(?:\([0-9a-z_]*\))?)"
    rb"|0x([0-9a-f]*)(?:\.([0-9a-f]*))?(?:p([+-]?[0-9]+))?|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?))"
    rb"[ \t\n\v\f\r]*\Z",
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


_F32_MAX = float(np.finfo(np.float32).max)
_F32_OVER = Fraction(2**128 - 2**103)  # halfway from the largest float32 to 2**128: rounds to inf


def _f32_exact(exact: Fraction) -> np.float32:
    """Round an exact rational to float32 correctly (ties to even)."""
    with np.errstate(over="ignore"):
        guess = np.float32(float(exact))
    if not np.isfinite(guess):
        return guess if abs(exact) >= _F32_OVER else np.float32(-_F32_MAX if exact < 0 else _F32_MAX)
    best: tuple[Fraction, np.float32] | None = None
    for cand in (np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))):
        if not np.isfinite(cand):
            continue
        d = abs(Fraction(float(cand)) - exact)
        if best is None or d < best[0] or (d == best[0] and int(cand.view(np.uint32)) % 2 == 0):
            best = (d, cand)
    assert best is not None  # guess itself is finite
    return best[1]


def _is_f32_tie(x: float) -> bool:
    """Whether the float64 ``x`` lies halfway between two float32 values (or float32 max and 2**128)."""
    if abs(x) < 2.0**-126:  # subnormal float32: halfway points are the odd multiples of 2**-150
        m = x * 2.0**150
        return m == int(m) and int(m) % 2 == 1
    bits = np.float64(x).view(np.uint64)
    return int(bits) & 0x1FFFFFFF == 0x10000000


def _hex_value(neg: bool, whole: bytes, frac: bytes, exp: bytes | None) -> tuple[float, Fraction]:
    """A hex float's float64 value (correctly rounded) and its exact value."""
    mant = int(whole + frac, 16)
    e = (int(exp) if exp else 0) - 4 * len(frac)
    if mant == 0:
        return (-0.0 if neg else 0.0), Fraction(0)
    size = mant.bit_length() + e  # the value is in [2**(size-1), 2**size)
    if size > 1100 or size < -1100:  # far past float64's range: inf or 0, never a tie
        v = np.inf if size > 0 else 0.0
        return (-v if neg else v), Fraction(0)
    exact = Fraction(mant * 2**e) if e >= 0 else Fraction(mant, 2**-e)
    exact = -exact if neg else exact
    try:
        return float(exact), exact
    except OverflowError:
        return (-np.inf if neg else np.inf), exact


def _parse_float(tok: bytes, kind: str) -> Any:
    """TensorFlow's float parse (absl::SimpleAtof/Atod), or None when the field is not a valid number."""
    m = _FLOAT_RE.match(tok)
    if m is None:
        return None
    minus, special, hex_whole, hex_frac, hex_exp, dec = m.groups()
    neg = minus is not None
    if special is not None:
        v = float(special[:3].decode())
        return _NP[kind](-v if neg else v)
    if hex_whole is not None:
        if not hex_whole and not hex_frac:
            return None  # "0x" needs a digit: absl reads "0" and stops at the "x"
        v, exact = _hex_value(neg, hex_whole, hex_frac or b"", hex_exp)
        text = None
    else:
        text = ("-" if neg else "") + dec.decode()
        v = float(text)  # correctly rounded, any length
    if kind == _F64:
        return np.float64(v)
    if _is_f32_tie(v):  # float64 rounding may have moved the value onto a float32 tie: redo exactly
        return _f32_exact(exact if text is None else Fraction(text))
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
