"""Narrow wire dtypes: gradients and updates sent in fewer bytes than the resource they go to.

A trainer may push gradients (``apply_grad``) and parameter updates (``assign``, ``assign_add``,
``assign_sub``) in a narrower dtype than the accumulator or variable holds, to halve the bytes of
every push:

* float16 needs no marker: NumPy has the dtype, so the array describes itself.
* bfloat16 has no NumPy dtype. It travels as its uint16 bit patterns (the high half of the float32
  with the same value: sign, 8 exponent bits, 7 mantissa bits) with an explicit marker,
  ``wire_dtype="bfloat16"`` (``"wd"`` in the request header), so bit patterns are never mistaken
  for integers and integers never for bit patterns.

The server reads every such value through :func:`widen`, the one rule for all paths: it checks the
marker and the dtype (a wrong one fails with InvalidArgument naming the resource) and widens the
value once, vectorised, to the dtype the resource computes in. bfloat16 -> float32 is exact (a
16-bit left shift), so the sums see the values the client rounded to and nothing else.

:func:`float32_to_bfloat16_bits` is the matching narrowing for clients (rounding to nearest, ties to
even, as hardware conversions do); ``compute.backend`` uses these two functions too.

Example:
    >>> bits = float32_to_bfloat16_bits(np.float32([1.0, 3.14159, -0.0]))
    >>> bits.dtype.name, [hex(b) for b in bits.tolist()]
    ('uint16', ['0x3f80', '0x4049', '0x8000'])
    >>> widen(bits, "bfloat16", np.dtype(np.float32), "Variable 'w' assign_add").tolist()
    [1.0, 3.140625, -0.0]
"""

from __future__ import annotations

from typing import Any

import sys

import numpy as np

from queueserver.core.specs import cast_exact, dtype_name
from queueserver.errors import InvalidArgumentError

__all__ = ["BFLOAT16", "WIRE_DTYPES", "check_wire", "widen", "float32_to_bfloat16_bits",
           "bfloat16_bits_to_float32"]

BFLOAT16 = "bfloat16"
#: The marked wire dtypes and the NumPy dtype that carries each (unmarked values carry their own).
WIRE_DTYPES: dict[str, np.dtype] = {BFLOAT16: np.dtype(np.uint16)}

_F32 = np.dtype(np.float32)
_U32 = np.uint32
# The high (bfloat16) half of each little- or big-endian uint32, seen as two uint16s.
_HIGH_HALF = 1 if sys.byteorder == "little" else 0


def check_wire(value_dtype: np.dtype, wire_dtype: str | None, dtype: np.dtype, owner: str) -> np.dtype:
    """Check that a value of ``value_dtype`` sent as ``wire_dtype`` may go to a resource computing in ``dtype``.

    The rule: a marked value must arrive in its carrier dtype (bfloat16: uint16) and stands for
    float32; an unmarked value stands for itself. Either must convert to ``dtype`` by a
    ``same_kind`` cast (float16 or float64 into float32: yes; complex into float32, or a float
    into an integer variable: no).

    Args:
        value_dtype: the dtype of the received array.
        wire_dtype: its marker (None or ``"bfloat16"``), as the client sent it.
        dtype: the dtype the resource computes in.
        owner: who is asking, for the error (``"ConditionalAccumulator 'w'"``).

    Returns:
        The dtype the value stands for (float32 for bfloat16 bits; ``value_dtype`` when unmarked).

    Raises:
        InvalidArgumentError: an unknown marker, a marked value in the wrong carrier dtype, or a
            value that does not convert to ``dtype``.
    """
    if wire_dtype is None:
        source = value_dtype
    else:
        carrier = WIRE_DTYPES.get(wire_dtype) if isinstance(wire_dtype, str) else None
        if carrier is None:
            raise InvalidArgumentError(
                f"{owner}: unknown wire dtype {wire_dtype!r}; marked wire dtypes are {', '.join(WIRE_DTYPES)}"
                " (float16 and float32 need no marker)")
        if value_dtype != carrier:
            raise InvalidArgumentError(
                f"{owner}: a {wire_dtype} value travels as {dtype_name(carrier)} bit patterns,"
                f" got {dtype_name(value_dtype)}")
        source = _F32
    if source != dtype and not np.can_cast(source, dtype, casting="same_kind"):
        got = wire_dtype if wire_dtype is not None else dtype_name(value_dtype)
        raise InvalidArgumentError(f"{owner}: expected {dtype_name(dtype)}, got {got}")
    return source


def widen(value: np.ndarray, wire_dtype: str | None, dtype: np.dtype, owner: str) -> np.ndarray:
    """A received value as ``dtype``: checked by :func:`check_wire`, then converted once, vectorised.

    Returns ``value`` itself when it already is ``dtype`` (no copy: callers that keep it must copy),
    else a new array.

    Raises:
        InvalidArgumentError: see :func:`check_wire`.
    """
    check_wire(value.dtype, wire_dtype, dtype, owner)
    if wire_dtype == BFLOAT16:
        value = bfloat16_bits_to_float32(value)
    return value if value.dtype == dtype else cast_exact(value, dtype, owner)


def float32_to_bfloat16_bits(x: np.ndarray, xp: Any = np) -> np.ndarray:
    """Round float32 values to bfloat16, returned as their uint16 bit patterns (same shape).

    Rounds to nearest, ties to even, like hardware conversions: add 0x7FFF plus the lowest kept bit,
    then keep the high 16 bits. The largest finite float32s round to infinity, as they must;
    infinities and zeros keep their sign. NaNs become the quiet NaN 0x7FC0 with their sign kept
    (as TensorFlow's conversion does), where the rounding's carry would otherwise turn some into
    infinities or flip their sign.

    Vectorised with in-place uint32 operations: one temporary the size of ``x``, no per-element
    Python, no float16 arithmetic (which NumPy emulates in software).

    Args:
        x: float values (converted to float32 first when they are not).
        xp: the array module ``x`` belongs to: ``cupy`` rounds a GPU array on the GPU, with the
            same operations.
    """
    shape = xp.shape(x)
    x = xp.ascontiguousarray(x, dtype=np.float32).reshape(shape)  # ascontiguousarray makes 0-d 1-d
    bits = x.view(_U32)
    tmp = bits >> _U32(16)
    tmp &= _U32(1)  # the lowest bit kept: ties round to make it 0
    tmp += _U32(0x7FFF)
    tmp += bits  # wraps only for NaNs, fixed below
    out = tmp.reshape(-1).view(np.uint16)[_HIGH_HALF::2].reshape(shape).copy()
    # np.min propagates NaNs: one cheap reduction instead of a boolean mask of every element.
    if x.size and xp.isnan(xp.min(x)):
        nan = xp.isnan(x)
        out[nan] = ((bits[nan] >> _U32(16)) & _U32(0x8000)).astype(np.uint16) | np.uint16(0x7FC0)
    return out


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bit patterns (uint16) to float32 exactly: each becomes the high half of a float32."""
    return (np.asarray(bits, dtype=np.uint16).astype(_U32) << _U32(16)).view(np.float32)
