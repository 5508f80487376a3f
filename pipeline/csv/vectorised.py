"""The vector path: a chunk of records joined into one buffer and parsed with array operations.

Field boundaries come from one ``bytes.translate`` and ``flatnonzero``; each numeric field's last 16
bytes are gathered as two ``uint64`` words and turned into numbers with SWAR arithmetic (the
8-digits-per-multiply trick), so the cost per value is a few dozen numpy element operations and no
Python step. Values are exact: the integer mantissa divided by a power of ten in float64 is
correctly rounded (Clinger's fast path), and float32 results that land on a rounding tie are
recomputed exactly. Records the vector path cannot prove well-formed (quotes, spaces, exponents,
required fields missing, errors) are flagged for the exact path (:mod:`.exact`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import cast

import numpy as np

from .defaults import _F32, _F64, _I32, _NP, _STR, _Column
from .exact import _f32_exact


# Records decoded per vector pass: keeps every temporary array inside the L2 cache.
_CHUNK = 8192
_PAD = b"\0" * 16  # so a 16-byte window ending at any field never starts before the buffer


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
    return cast("list[np.ndarray]", out), slow  # every column was filled above


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
