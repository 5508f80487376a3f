"""decode_raw against TensorFlow's golden decode_raw_* cases."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import check, golden_names

from pipeline.raw import decode_raw
from queueserver.errors import InvalidArgumentError

CASES = {
    "decode_raw_int16_le": lambda: decode_raw(b"\x01\x02\x03\x04", np.int16),
    "decode_raw_int16_be": lambda: decode_raw(b"\x01\x02\x03\x04", np.int16, little_endian=False),
    "decode_raw_batch_same_len": lambda: decode_raw([b"ab", b"cd"], np.uint8),
    "decode_raw_batch_diff_len_error": lambda: decode_raw([b"ab", b"cde"], np.uint8),
    "decode_raw_fixed_length_pads": lambda: decode_raw([b"ab", b"cde"], np.uint8, fixed_length=4),
}


@pytest.mark.parametrize("name", [n for n in golden_names("fixedlen") if n.startswith("decode_raw")])
def test_golden_decode_raw(name, golden):
    result = golden[name]["result"]
    if "error" in result:
        with pytest.raises(InvalidArgumentError) as info:
            CASES[name]()
        assert result["error"]["core"] in str(info.value)
    else:
        check(CASES[name](), result["value"])


def test_float_and_shapes():
    x = np.arange(6, dtype=np.float32)
    out = decode_raw([x[:3].tobytes(), x[3:].tobytes()], np.float32)
    assert out.dtype == np.float32 and out.shape == (2, 3) and out.flags.writeable
    np.testing.assert_array_equal(out.ravel(), x)
    be = decode_raw(x.astype(">f4").tobytes(), np.float32, little_endian=False)
    np.testing.assert_array_equal(be, x)
    fixed = np.array([b"\x01\x00\x02\x00", b"\x03\x00\x00\x00"])  # 'S' array keeps trailing NULs
    assert decode_raw(fixed, np.int16).tolist() == [[1, 2], [3, 0]]
    with pytest.raises(InvalidArgumentError, match="not a multiple of 2"):
        decode_raw(b"abc", np.int16)


@pytest.mark.parametrize("fixed,out_type,message", [
    (0, np.uint8, r"fixed_length \(0\) must be greater than zero\."),
    (-1, np.uint8, r"fixed_length \(-1\) must be greater than zero\."),
    (0, np.int32, r"fixed_length \(0\) must be greater than zero\."),
    (-4, np.int32, r"fixed_length \(-4\) must be greater than zero\."),
    (-1, np.int32, r"fixed_length \(-1\) must be a multiple of the size of out_type \(4\)"),
    (6, np.int32, r"fixed_length \(6\) must be a multiple of the size of out_type \(4\)"),
])
def test_fixed_length_must_be_a_positive_multiple(fixed, out_type, message):
    """TensorFlow 2.21's DecodePaddedRaw checks and words, for every kind of input (also empty)."""
    from pipeline.blocks import FixedBlock

    for records in ([b"abcd"], b"abcd", [], np.array([b"abcd", b"ef"]), FixedBlock(np.zeros((2, 4), np.uint8))):
        with pytest.raises(InvalidArgumentError, match=message):
            decode_raw(records, out_type, fixed_length=fixed)
