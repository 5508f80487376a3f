"""Narrow wire dtypes: bfloat16 rounding and widening, and the one rule the server reads them by."""

from __future__ import annotations

import numpy as np
import pytest

from queueserver.core.wire_dtypes import bfloat16_bits_to_float32, check_wire, float32_to_bfloat16_bits, widen
from queueserver.errors import InvalidArgumentError

F32 = np.dtype(np.float32)
ALL_BF16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


def _is_nan_bits(bits: np.ndarray) -> np.ndarray:
    return ((bits & 0x7F80) == 0x7F80) & ((bits & 0x007F) != 0)


def _reference_bfloat16(x: np.ndarray) -> np.ndarray:
    """Round to nearest bfloat16, ties to even, by comparing distances in float64 (not by the bit trick)."""
    u = x.view(np.uint32)
    lo = (u >> 16).astype(np.uint16)  # truncated toward zero
    hi = lo + np.uint16(1)            # the next one away from zero (may be infinity)
    lo_v = bfloat16_bits_to_float32(lo).astype(np.float64)
    hi_v = bfloat16_bits_to_float32(hi).astype(np.float64)
    # Overflow: IEEE rounds as if the exponent were unbounded, so "infinity" sits at 2**128.
    hi_v = np.where(np.isinf(hi_v), np.copysign(2.0 ** 128, hi_v), hi_v)
    xv = x.astype(np.float64)  # exact, and so are the differences below
    d_lo, d_hi = np.abs(xv - lo_v), np.abs(hi_v - xv)
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (lo & 1 == 1))
    return np.where(pick_hi, hi, lo)


def test_every_bfloat16_survives_a_round_trip_through_float32():
    wide = bfloat16_bits_to_float32(ALL_BF16)
    assert wide.dtype == np.float32
    # Widening is exact: each bfloat16 is the high half of its float32.
    np.testing.assert_array_equal(wide.view(np.uint32) >> 16, ALL_BF16.astype(np.uint32))
    back = float32_to_bfloat16_bits(wide)
    nan = _is_nan_bits(ALL_BF16)
    np.testing.assert_array_equal(back[~nan], ALL_BF16[~nan])  # infinities, zeros, subnormals included
    # NaNs stay NaNs of the same sign (the quiet NaN, as TensorFlow's conversion makes them).
    assert _is_nan_bits(back[nan]).all()
    np.testing.assert_array_equal(back[nan] & 0x8000, ALL_BF16[nan] & 0x8000)
    assert set(np.unique(back[nan] & 0x7FFF).tolist()) == {0x7FC0}


def test_rounding_matches_round_to_nearest_even_on_random_float32s():
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    # Ties and near-ties, which random bits almost never hit: low halves 0x7FFF, 0x8000, 0x8001.
    bits[:3000] = (bits[:3000] & 0xFFFF0000) | np.resize(np.uint32([0x7FFF, 0x8000, 0x8001]), 3000)
    x = bits.view(np.float32)
    x = x[~np.isnan(x)]
    np.testing.assert_array_equal(float32_to_bfloat16_bits(x), _reference_bfloat16(x))


@pytest.mark.parametrize("f32_bits, bf16_bits", [
    (0x3F808000, 0x3F80),  # a tie whose kept bit is even: down
    (0x3F818000, 0x3F82),  # a tie whose kept bit is odd: up, to even
    (0x00008000, 0x0000),  # a subnormal tie: down to +0
    (0x80018000, 0x8002),  # a negative subnormal tie: up (in magnitude) to even
    (0x7F7F8000, 0x7F80),  # a tie at the top rounds to even, which is infinity
    (0x7F7F7FFF, 0x7F7F),  # just below it: the largest finite bfloat16
    (0x7F800000, 0x7F80),  # +inf
    (0xFF800000, 0xFF80),  # -inf
    (0x007FFFFF, 0x0080),  # the largest subnormal rounds up to the smallest normal
])
def test_rounding_edge_cases(f32_bits, bf16_bits):
    x = np.array([f32_bits], np.uint32).view(np.float32)
    assert int(float32_to_bfloat16_bits(x)[0]) == bf16_bits


def test_every_nan_payload_stays_a_nan_with_its_sign():
    rng = np.random.default_rng(3)
    payload = rng.integers(1, 1 << 23, 10_000, dtype=np.uint32)
    sign = rng.integers(0, 2, 10_000, dtype=np.uint32) << 31
    x = (sign | np.uint32(0x7F800000) | payload).view(np.float32)
    back = bfloat16_bits_to_float32(float32_to_bfloat16_bits(x))
    assert np.isnan(back).all()
    np.testing.assert_array_equal(np.signbit(back), sign != 0)


def test_shapes_dtypes_and_layouts_are_kept():
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)[:, ::2]  # float64, not contiguous
    bits = float32_to_bfloat16_bits(x)
    assert bits.shape == (2, 2, 4) and bits.dtype == np.uint16 and bits.flags.c_contiguous
    np.testing.assert_array_equal(bfloat16_bits_to_float32(bits), x.astype(np.float32))  # small ints: exact
    scalar = float32_to_bfloat16_bits(np.float32(-2.5))
    assert scalar.shape == () and int(scalar) == 0xC020
    assert float32_to_bfloat16_bits(np.zeros((0, 3), np.float32)).shape == (0, 3)


def test_widen_reads_marked_bfloat16_exactly_and_unmarked_values_as_themselves():
    bits = float32_to_bfloat16_bits(np.float32([1.0, -3.140625, 1e-3]))
    out = widen(bits, "bfloat16", F32, "X")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, bfloat16_bits_to_float32(bits))
    np.testing.assert_array_equal(widen(bits, "bfloat16", np.dtype(np.float64), "X"), out.astype(np.float64))
    half = np.float16([1.5, -2.25])
    assert widen(half, None, F32, "X").dtype == np.float32
    same = np.float32([1.0])
    assert widen(same, None, F32, "X") is same  # nothing to convert: no copy


@pytest.mark.parametrize("value, wire_dtype, dtype, match", [
    (np.float32([1.0]), "bfloat16", F32, r"Acc 'g': a bfloat16 value travels as uint16 bit patterns, got float32"),
    (np.float16([1.0]), "bfloat16", F32, r"Acc 'g': a bfloat16 value travels as uint16"),
    (np.uint16([1]), "float8", F32, r"Acc 'g': unknown wire dtype 'float8'"),
    (np.uint16([1]), 16, F32, r"Acc 'g': unknown wire dtype 16"),
    (np.uint16([1]), "bfloat16", np.dtype(np.int64), r"Acc 'g': expected int64, got bfloat16"),
    (np.complex64([1]), None, F32, r"Acc 'g': expected float32, got complex64"),
])
def test_a_wrong_wire_dtype_is_refused_naming_its_owner(value, wire_dtype, dtype, match):
    with pytest.raises(InvalidArgumentError, match=match):
        check_wire(value.dtype, wire_dtype, dtype, "Acc 'g'")
    with pytest.raises(InvalidArgumentError, match=match):
        widen(value, wire_dtype, dtype, "Acc 'g'")


def test_docstring_example_runs_as_written():
    import doctest

    from queueserver.core import wire_dtypes

    result = doctest.testmod(wire_dtypes, extraglobs={"np": np})
    assert result.attempted and result.failed == 0
