"""Ported from TensorFlow's ``tensorflow/python/kernel_tests/io_ops/decode_csv_op_test.py``
(``DecodeCSVOpTest``): one function per TensorFlow test, the expected values and error texts are
TensorFlow's, the code is ours. Graph-mode-only branches (``ValueError: Shape must be at most
rank 1``, ``Expected list for 'record_defaults'``) have no counterpart here: this project runs
eagerly, so the eager branch of each test is the one ported.

The float-spelling cases at the end are not a TensorFlow test: they pin what TensorFlow's
``safe_strtof`` (double-conversion with leading/trailing spaces, hex, case-insensitive
``inf``/``nan``) accepts and refuses.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import pipeline.csv as csv_mod
from pipeline.csv import decode_csv
from queueserver.errors import InvalidArgumentError


@pytest.fixture(params=[True, False], ids=["arrow", "numpy"], autouse=True)
def _both_paths(request, monkeypatch):
    monkeypatch.setattr(csv_mod, "USE_ARROW", request.param)


def _check(args: dict, expected_out: list) -> None:
    out = decode_csv(**args)
    assert len(out) == len(expected_out)
    for field, want in zip(out, expected_out):
        field = np.asarray(field)
        if field.dtype in (np.float32, np.float64):
            np.testing.assert_allclose(field, np.asarray(want, field.dtype), rtol=1e-6)
        elif field.dtype == object:
            assert field.tolist() == want
        else:
            assert field.tolist() == want


def _err(args: dict, expected_err_re: str, cls: type[Exception] = InvalidArgumentError) -> None:
    with pytest.raises(cls, match=expected_err_re):
        decode_csv(**args)


def test_simple():  # DecodeCSVOpTest.testSimple
    _check({"records": ["1", "2", '"3"'], "record_defaults": [[1]]}, [[1, 2, 3]])


def test_simple_with_scalar_defaults():  # DecodeCSVOpTest.testSimpleWithScalarDefaults
    _check({"records": ["1,4", "2,5", "3,6"], "record_defaults": [1, 2]}, [[1, 2, 3], [4, 5, 6]])


def test_simple_with_2d_defaults():  # DecodeCSVOpTest.testSimpleWith2DDefaults (eager branch)
    _err({"records": ["1", "2", "3"], "record_defaults": [np.array([[0]])]},
         "Each record default should be at most rank 1")


def test_simple_no_quote_delimiter():  # DecodeCSVOpTest.testSimpleNoQuoteDelimiter
    _check({"records": ["1", "2", '"3"'], "record_defaults": [[""]], "use_quote_delim": False},
           [[b"1", b"2", b'"3"']])


def test_scalar():  # DecodeCSVOpTest.testScalar
    _check({"records": '1,""', "record_defaults": [[3], [4]]}, [1, 4])


def test_2d():  # DecodeCSVOpTest.test2D
    _check({"records": [["1", "2"], ['""', "4"]], "record_defaults": [[5]]}, [[[1, 2], [5, 4]]])


def test_2d_no_quote_delimiter():  # DecodeCSVOpTest.test2DNoQuoteDelimiter
    _check({"records": [["1", "2"], ['""', '"']], "record_defaults": [[""]], "use_quote_delim": False},
           [[[b"1", b"2"], [b'""', b'"']]])


def test_double():  # DecodeCSVOpTest.testDouble
    _check({"records": ["1.0", "-1.79e+308", '"1.79e+308"'], "record_defaults": [np.array([], dtype=np.double)]},
           [[1.0, -1.79e308, 1.79e308]])


def test_int64():  # DecodeCSVOpTest.testInt64
    out = decode_csv(["1", "2", '"2147483648"'], [np.array([], dtype=np.int64)])
    assert out[0].dtype == np.int64 and out[0].tolist() == [1, 2, 2147483648]


def test_complex_string():  # DecodeCSVOpTest.testComplexString
    _check({"records": ['"1.0"', '"ab , c"', '"a\nbc"', '"ab""c"', " abc "], "record_defaults": [["1"]]},
           [[b"1.0", b"ab , c", b"a\nbc", b'ab"c', b" abc "]])


def test_multi_records():  # DecodeCSVOpTest.testMultiRecords
    _check({"records": ["1.0,4,aa", "0.2,5,bb", "3,6,cc"], "record_defaults": [[1.0], [1], ["aa"]]},
           [[1.0, 0.2, 3], [4, 5, 6], [b"aa", b"bb", b"cc"]])


def test_na():  # DecodeCSVOpTest.testNA
    _check({"records": ["2.0,NA,aa", "NA,5,bb", "3,6,NA"], "record_defaults": [[0.0], [0], [""]],
            "na_value": "NA"},
           [[2.0, 0.0, 3], [0, 5, 6], [b"aa", b"bb", b""]])


def test_with_defaults():  # DecodeCSVOpTest.testWithDefaults
    _check({"records": [",1,", "0.2,3,bcd", "3.0,,"], "record_defaults": [[1.0], [0], ["a"]]},
           [[1.0, 0.2, 3.0], [1, 3, 0], [b"a", b"bcd", b"a"]])


def test_with_defaults_and_no_quote_delimiter():  # DecodeCSVOpTest.testWithDefaultsAndNoQuoteDelimiter
    _check({"records": [",1,", "0.2,3,bcd", '3.0,,"'], "record_defaults": [[1.0], [0], ["a"]],
            "use_quote_delim": False},
           [[1.0, 0.2, 3.0], [1, 3, 0], [b"a", b"bcd", b'"']])


def test_with_tab_delim():  # DecodeCSVOpTest.testWithTabDelim
    _check({"records": ["1\t1", "0.2\t3", "3.0\t"], "record_defaults": [[1.0], [0]], "field_delim": "\t"},
           [[1.0, 0.2, 3.0], [1, 3, 0]])


def test_without_defaults_error():  # DecodeCSVOpTest.testWithoutDefaultsError
    _err({"records": [",1", "0.2,3", "3.0,"], "record_defaults": [[1.0], np.array([], dtype=np.int32)]},
         "Field 1 is required but missing in record 2!")


def test_wrong_field_int_error():  # DecodeCSVOpTest.testWrongFieldIntError
    _err({"records": [",1", "0.2,234a", "3.0,2"], "record_defaults": [[1.0], np.array([], dtype=np.int32)]},
         "Field 1 in record 1 is not a valid int32: 234a")


def test_out_of_range_error():  # DecodeCSVOpTest.testOutOfRangeError
    _err({"records": ["1", "9999999999999999999999999", "3"], "record_defaults": [[1]]},
         "Field 0 in record 1 is not a valid int32: ")


def test_wrong_field_float_error():  # DecodeCSVOpTest.testWrongFieldFloatError
    _err({"records": [",1", "0.2,2", "3.0adf,3"], "record_defaults": [[1.0], np.array([], dtype=np.int32)]},
         "Field 0 in record 2 is not a valid float: ")


def test_wrong_field_string_error():  # DecodeCSVOpTest.testWrongFieldStringError
    _err({"records": ['"1,a,"', "0.22", 'a"bc'], "record_defaults": [["a"]]},
         "Unquoted fields cannot have quotes/CRLFs inside")


def test_wrong_defaults():  # DecodeCSVOpTest.testWrongDefaults
    _err({"records": [",1", "0.2,2", "3.0adf,3"], "record_defaults": [[1.0]]},
         "Expect 1 fields but have 2 in record 0")


def test_short_quoted_string():  # DecodeCSVOpTest.testShortQuotedString
    _err({"records": ['"'], "record_defaults": [["default"]]}, "Quoted field has to end with quote followed.*")


def test_select_cols():  # DecodeCSVOpTest.testSelectCols
    _check({"records": [",,", "4,5,6"], "record_defaults": [[1], [2]], "select_cols": [0, 1]}, [[1, 4], [2, 5]])


def test_select_cols_incl_last():  # DecodeCSVOpTest.testSelectColsInclLast
    _check({"records": [",,", "4,5,6"], "record_defaults": [[0], [1], [2]], "select_cols": [0, 1, 2]},
           [[0, 4], [1, 5], [2, 6]])


def test_wrong_select_cols_incl_last():  # DecodeCSVOpTest.testWrongSelectColsInclLast
    _err({"records": [",,", "4,5,6"], "record_defaults": [[0], [1], [2]], "select_cols": [0, 1, 3]},
         "Expect 3 fields but have 2 in record 0")


def test_wrong_select_cols_len():  # DecodeCSVOpTest.testWrongSelectColsLen
    _err({"records": ["1,2,3", "4,5,6"], "record_defaults": [[0], [0], [0]], "select_cols": [0]},
         "Length of select_cols and record_defaults do not match.", ValueError)


def test_wrong_select_cols_sorting():  # DecodeCSVOpTest.testWrongSelectColsSorting
    _err({"records": ["1,2,3"], "record_defaults": [[0], [1]], "select_cols": [1, 0]},
         "select_cols is not strictly increasing.", ValueError)


def test_wrong_select_cols_indices_negative():  # DecodeCSVOpTest.testWrongSelectColsIndicesNegative
    _err({"records": ["1,2,3"], "record_defaults": [[0], [1]], "select_cols": [-1, 0]},
         "select_cols contains negative values.", ValueError)


def test_wrong_select_cols_indices_too_high():  # DecodeCSVOpTest.testWrongSelectColsIndicesTooHigh
    _err({"records": ["1,2,3"], "record_defaults": [[0], [1]], "select_cols": [0, 3]},
         "Expect 2 fields but have 1 in record 0")


def test_numpy_attribute():  # DecodeCSVOpTest.testNumpyAttribute (eager branch)
    out = decode_csv("1,2,3,4,5", np.zeros(5))
    assert [float(v) for v in out] == [1, 2, 3, 4, 5]
    assert all(np.asarray(v).dtype == np.float64 for v in out)  # np.zeros(5) holds float64 scalars
    cols = decode_csv(["1,2", "3,"], np.array([[0], [7]], np.int64))  # rows of an array: one default each
    assert [c.tolist() for c in cols] == [[1, 3], [2, 7]] and cols[0].dtype == np.int64


# Not a TensorFlow test: the float spellings TensorFlow 2.21 (absl::SimpleAtof) accepts, and some
# it refuses (checked against TensorFlow 2.21).
ACCEPTED = {
    "1e5": 1e5, ".5": 0.5, "5.": 5.0, "+1.5": 1.5, "-1.5": -1.5, "1E5": 1e5, "1.5e+3": 1500.0,
    "-.5e-3": -0.0005, "00.5": 0.5, "0x1A": 26.0, "-0x10": -16.0, " 2.5 ": 2.5, "inf": np.inf,
    "INF": np.inf, "-inf": -np.inf, "+Inf": np.inf, "1e999": np.inf, "-1e999": -np.inf,
    "Infinity": np.inf, "-infinity": -np.inf, "+INFINITY": np.inf, "0x1.8p1": 3.0, "0x1p-2": 0.25,
    "0x.8": 0.5, "0X1P3": 8.0, "-0x1.8": -1.5, "0x1.8e1": 1.554931640625, "0" * 40 + "1.25": 1.25,
    "1.5" + "0" * 40: 1.5,
}
REFUSED = ["infinit", "infinityy", "nan(", "nan(1", "nan(1 2)", "1e", ".", "+", "-", "1.5f", "- 1", "e5", "0x",
           "0x.", "0xp1", "0x1p", "0xinf", "1e+", "+-1", "-+1", "1.5e3.5"]


@pytest.mark.parametrize("text", sorted(ACCEPTED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_spellings_tensorflow_accepts(text, dtype):
    want = ACCEPTED[text]
    default = [dtype(0)] if dtype == np.float64 else [0.0]
    one = decode_csv(text, default)[0]
    few = decode_csv([text] * 3, default)[0]
    many = decode_csv([text] * 300 + ["1"], default)[0]  # the vector / arrow paths too
    assert one.dtype == dtype and many.dtype == dtype
    assert one == dtype(want) and many[0] == dtype(want) and (many[:300] == many[0]).all()
    assert (few == dtype(want)).all()


@pytest.mark.parametrize("text", ["nan", "NaN", "-nan", "+NAN", "nan(123)", "NAN()", "-nan(a_Z9)"])
def test_float_nan_spellings(text):
    assert np.isnan(decode_csv(text, [0.0])[0]) and np.isnan(decode_csv([text] * 300, [0.0])[0]).all()
    assert np.isnan(decode_csv([text] * 3, [np.float64(0)])[0]).all()


@pytest.mark.parametrize("text", REFUSED)
def test_float_spellings_tensorflow_refuses(text):
    with pytest.raises(InvalidArgumentError, match=f"Field 0 in record 0 is not a valid float: {re.escape(text)}$"):
        decode_csv(text, [[0.0]])
    with pytest.raises(InvalidArgumentError, match="Field 0 in record 299 is not a valid float"):
        decode_csv(["1"] * 299 + [text], [[0.0]])
