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
