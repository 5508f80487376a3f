"""decode_csv against TensorFlow's golden cases, plus the vector path against the exact path."""

from __future__ import annotations

import gzip
import multiprocessing
import os
import random

import numpy as np
import pytest
from conftest import check, golden_names

import pipeline.csv as csv_mod
import pipeline.csv.arrow as csv_arrow
from pipeline.csv import decode_csv, read_csv_columns
from pipeline.textline import TextLineReader
from queueserver.errors import InvalidArgumentError

I32 = np.array([], np.int32)
F32 = np.array([], np.float32)
I64 = np.array([0], np.int64)

# Each tf.io.decode_csv golden case, rewritten as the same call here.
DECODE_CASES = {
    "decode_csv_defaults_5f_6i_7i": lambda: decode_csv("1.,,44", [[5.0], [6], [7]]),
    "decode_csv_seed_line_float": lambda: decode_csv("1.,, 0", [[-1.0], [-1.0], [-1.0]]),
    "decode_csv_seed_line_int": lambda: decode_csv("1.,, 0", [[-1.0], [-1.0], [-1]]),
    "decode_csv_seed_line2_int": lambda: decode_csv("4., 5. , 1", [[-1.0], [-1.0], [-1]]),
    "decode_csv_quoted_number": lambda: decode_csv('"3.5","7"', [[0.0], [0]]),
    "decode_csv_quoted_empty_uses_default": lambda: decode_csv('"",1', [["dflt"], [0]]),
    "decode_csv_whitespace_numbers_strings": lambda: decode_csv(" 1.5 , 2 ,  x ", [[0.0], [0], [""]]),
    "decode_csv_whitespace_only_float_field": lambda: decode_csv(" ,1", [[9.0], [0]]),
    "decode_csv_too_few_fields": lambda: decode_csv("1,2", [[0], [0], [0]]),
    "decode_csv_non_numeric_float": lambda: decode_csv("abc,1", [[0.0], [0]]),
    "decode_csv_non_numeric_int": lambda: decode_csv("1,abc", [[0.0], [0]]),
    "decode_csv_float_dot_in_int_column": lambda: decode_csv("3.", [[0]]),
    "decode_csv_required_field_present": lambda: decode_csv("2.5,1", [F32, [0]]),
    "decode_csv_required_field_missing_batch_record2": lambda: decode_csv(["1,1", "2,2", ",3"], [I32, [0]]),
    "decode_csv_batched_lines": lambda: decode_csv(["1,2", "3,4", "5,6"], [[0], [0.0]]),
    "decode_csv_batched_one_bad": lambda: decode_csv(["1,2", "x,4"], [[0], [0]]),
    "decode_csv_batched_2d_input": lambda: decode_csv([["1,2", "3,4"]], [[0], [0]]),
    "decode_csv_tab_delim": lambda: decode_csv("1\t2", [[0], [0]], field_delim="\t"),
    "decode_csv_multichar_delim_error": lambda: decode_csv("1, 2", [[0], [0]], field_delim=", "),
    "decode_csv_no_quote_delim": lambda: decode_csv('"a",b', [[""], [""]], use_quote_delim=False),
    "decode_csv_select_cols_len_mismatch_error": lambda: decode_csv("1,2,3,4", [[0], [0]], select_cols=[1]),
    "decode_csv_select_cols_unsorted_error": lambda: decode_csv("1,2,3,4", [[0], [0]], select_cols=[3, 1]),
    "decode_csv_quote_inside_unquoted": lambda: decode_csv('a"b,1', [[""], [0]]),
    "decode_csv_unterminated_quote": lambda: decode_csv('"abc', [[""]]),
    "decode_csv_text_after_closing_quote": lambda: decode_csv('"ab"c,1', [[""], [0]]),
    "decode_csv_int_forms": lambda: decode_csv("+5,-3,007, 8", [[0]] * 4),
    "decode_csv_int_hex_error": lambda: decode_csv("0x10", [[0]]),
    "decode_csv_int32_overflow": lambda: decode_csv("2147483648", [[0]]),
    "decode_csv_int32_max": lambda: decode_csv("2147483647,-2147483648", [[0], [0]]),
    "decode_csv_int64_numpy_scalar_in_list_becomes_int32": lambda: decode_csv("2147483648", [[np.int64(0)]]),
    "decode_csv_int64_column": lambda: decode_csv("2147483648,-9223372036854775808", [I64, I64]),
    "decode_csv_float64_column": lambda: decode_csv("0.1", [[np.float64(0)]]),
    "decode_csv_string_column_keeps_spaces": lambda: decode_csv(" a , b", [[""], [""]]),
    "decode_csv_trailing_comma": lambda: decode_csv("1,2,", [[0], [0], [9]]),
    "decode_csv_default_tensor_shape2_error": lambda: decode_csv("1", [[7, 8]]),
    "decode_csv_cr_at_end_of_line_float": lambda: decode_csv("1,2\r", [[0.0], [0.0]]),
    "decode_csv_cr_at_end_of_line_int": lambda: decode_csv("1,2\r", [[0], [0]]),
}


def _write(tmp_path, name: str, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _unescape(s: str) -> bytes:
    return s.encode().decode("unicode_escape").encode()


def _run_file_case(name: str, case: dict, tmp_path):
    """Reproduce the TextLineDataset / CsvDataset golden cases with TextLineReader."""
    inputs = case.get("inputs", {})
    if name.startswith("seed_csv") or name.startswith("experimental"):
        path = _write(tmp_path, "my_test.csv", inputs["file_content"].encode())
        ints = "[-1]]" in case["code"]
        defaults = [[-1.0], [-1.0], [-1] if ints else [-1.0]]
        with TextLineReader(path, skip_header_lines=1) as r:
            if "batch(2)" in case["code"]:
                out = []
                while chunk := r.read_chunk(2):
                    out.append(decode_csv(chunk, defaults, source=str(path), first_line=2))
                return out
            return [decode_csv(line, defaults) for line in r]
    if name == "textline_two_files_interleave_c2":
        fa = _write(tmp_path, "a.txt", _unescape(inputs["FA"]))
        fb = _write(tmp_path, "b.txt", _unescape(inputs["FB"]))
        readers = [iter(TextLineReader(fa, skip_header_lines=1)), iter(TextLineReader(fb, skip_header_lines=1))]
        out = []
        while readers:  # interleave(cycle_length=2, block_length=1): round robin until all end
            for it in list(readers):
                try:
                    out.append(next(it))
                except StopIteration:
                    readers.remove(it)
        return out
    if name == "textline_gzip":
        path = _write(tmp_path, "f.gz", gzip.compress(_unescape(inputs["uncompressed"])))
        return list(TextLineReader(path, compression_type="GZIP"))
    path = _write(tmp_path, "f.txt", bytes.fromhex(inputs["file_content_hex"]))
    return list(TextLineReader(path))


@pytest.mark.parametrize("name", golden_names("csv"))
def test_golden_csv(name, golden, tmp_path):
    case = golden[name]
    assert "INFO_ONLY" not in name
    result = case["result"]
    if name in DECODE_CASES:
        call = DECODE_CASES[name]
        if "error" in result:
            err = result["error"]
            cls = ValueError if err["class"] == "ValueError" else InvalidArgumentError
            with pytest.raises(cls) as info:
                call()
            assert err["core"] in str(info.value)
            return
        check(call(), result["value"])
        return
    # Every other case of the group reads files: each is handled by _run_file_case.
    assert name.startswith(("seed_csv", "experimental", "textline_")), f"unhandled golden case {name}"
    elements = _run_file_case(name, case, tmp_path)
    assert len(elements) == len(result["elements"])
    for got, exp in zip(elements, result["elements"]):
        check(got, exp)


def test_seed_examples(tmp_path):
    assert [float(v) for v in decode_csv("1.,,44", [[5.0], [6], [7]])] == [1.0, 6, 44]
    path = _write(tmp_path, "my_test.csv", b"x1,x2,target\n1.,,0\n4.,5.,1\n7.,8.,0\n")
    with TextLineReader(path, skip_header_lines=1) as r:
        rows = [decode_csv(line, [[-1.0], [-1.0], [-1]]) for line in r]
    assert [([float(a), float(b)], int(t)) for a, b, t in rows] == [([1, -1], 0), ([4, 5], 1), ([7, 8], 0)]


def test_error_names_file_and_line():
    with pytest.raises(InvalidArgumentError) as info:
        decode_csv([b"1,2", b"3,x"], [[0], [0]], source="data.csv", first_line=10)
    msg = str(info.value)
    assert "Field 1 in record 1 is not a valid int32: x" in msg and "data.csv" in msg and "line 11" in msg
    assert info.value.details["record"] == 1 and info.value.details["line"] == 11


def test_skip_bad_records():
    bad: list = []
    cols = decode_csv([b"1,2", b"x,4", b"5,6", b"7"], [[0], [0.0]], on_error="skip", bad_records=bad)
    assert cols[0].tolist() == [1, 5] and cols[1].tolist() == [2.0, 6.0]
    assert len(bad) == 2 and bad[0].details["record"] == 1 and bad[1].details["record"] == 3


def test_quoted_delimiter_and_strings_batch():
    cols = decode_csv([b'"a,b",1', b'"say ""hi""",2', b"plain,3"], [[""], [0]])
    assert cols[0].tolist() == [b"a,b", b'say "hi"', b"plain"] and cols[1].tolist() == [1, 2, 3]


def test_select_cols_and_na_value():
    cols = decode_csv([b"1,NA,3,x", b"4,5,NA,y"], [[0], [-1.0]], select_cols=[0, 2], na_value="NA")
    assert cols[0].tolist() == [1, 4] and cols[1].tolist() == [3.0, -1.0]
    cols = decode_csv([b"-999,1", b"2,-999"], [[7], [8]], na_value="-999")
    assert cols[0].tolist() == [7, 2] and cols[1].tolist() == [1, 8]


def test_float_forms_match_tensorflow_rules():
    vals = decode_csv([b"1e3,inf,-NaN,0x1A, .5 ,-0"], [[0.0]] * 6)
    assert vals[0][0] == 1000 and np.isinf(vals[1][0]) and np.isnan(vals[2][0])
    assert vals[3][0] == 26 and vals[4][0] == 0.5 and np.signbit(vals[5][0])
    for bad in (b"1e", b"infinit", b"nan(", b"nan(1", b"0x", b"0x.", b"0x1p", b"+-1", b"1_0", b"."):
        with pytest.raises(InvalidArgumentError):
            decode_csv([bad, b"1"], [[0.0]])


# TensorFlow 2.21 reads floats with absl::SimpleAtof/SimpleAtod: any length, "infinity", hex floats
# with a binary exponent, "nan(...)" (all checked against TensorFlow 2.21; no float32 ties here).
LONG_AND_SPELLED = ["0.12345678901234567890123456789012", "0" * 32 + "1.5", "1" + "0" * 40, "Infinity",
                    "-INFINITY", "+infinity", "0x1.8p1", "0x1p-2", "0x.8", "-0X1P3", "+0x1.", " 0x10p-4 "]


@pytest.mark.parametrize("count", [1, 3, 300])
def test_long_and_spelled_floats_parse_on_every_path(count):
    """One record (exact path), a few (vector path), 300 (pyarrow's path where it may take them)."""
    for text in LONG_AND_SPELLED:
        want = float.fromhex(text) if "x" in text.lower() else float(text)
        got = decode_csv([text.encode()] * count, [[0.0]])[0]
        got64 = decode_csv([text.encode()] * count, [[np.float64(0)]])[0]
        with np.errstate(over="ignore"):
            assert (got == np.float32(want)).all() and (got64 == want).all(), text
    for text in ("nan(123)", "NaN()", "-nan(abc_1)"):
        assert np.isnan(decode_csv([text] * count, [[0.0]])[0]).all()


def test_float32_rounding_is_exact():
    # 16777217 is halfway between two float32 values: correct rounding goes to even (16777216),
    # and a decimal just above the tie must round up.
    vals = decode_csv([b"16777217", b"16777217.000001", b"0.1"], [[0.0]])[0]
    assert vals.tolist() == [16777216.0, 16777218.0, float(np.float32(0.1))]
    # Ties float64 rounding lands on beyond the normal range (TensorFlow's bits): just under the
    # halfway point above float32 max (-> max, not inf), just over half the smallest subnormal
    # (-> 2**-149, not 0), a long decimal just over a tie, and a hex zero's sign.
    edge = [b"3.4028235677973366e38", b"3.40282356779733661637539395458142568448e38", b"7.006492321624086e-46",
            b"0x1p-150", b"1.000000059604644775390625" + b"0" * 900 + b"1", b"-0x0"]
    for count in (1, 3):
        vals = decode_csv(edge * count, [[0.0]])[0][: len(edge)]
        assert vals.view(np.uint32).tolist() == [0x7F7FFFFF, 0x7F800000, 1, 0, 0x3F800001, 0x80000000]


def _random_field(rng: random.Random, integer: bool) -> str:
    r = rng.random()
    if r < 0.85:
        fmt = rng.choice(["%d", "%+d", "%05d"] if integer else ["%.6f", "%.3f", "%d", "%.1f", "%.10f", "%.15g", "%+.2f"])
        return fmt % (rng.uniform(-1e6, 1e6) if rng.random() < 0.5 else rng.uniform(-2, 2))
    if r < 0.92:
        return ""
    return "".join(rng.choice("0123456789.-+ e,x\"") for _ in range(rng.randint(0, 18)))


def test_vector_path_matches_exact_path():
    """Batched decoding (vectorised) must agree with one-record decoding (exact port), errors too."""
    rng = random.Random(7)
    defaults = [[0.0], [0], [np.float64(1)], np.array([0], np.int64), [""]]
    compared = 0
    for _ in range(600):
        recs = [
            ",".join(_random_field(rng, c in (1, 3)) for c in range(5)).encode() for _ in range(rng.randint(2, 6))
        ]
        try:
            batch, berr = decode_csv(recs, defaults), None
        except InvalidArgumentError as e:
            batch, berr = None, str(e)
        single, serr = [], None
        for i, r in enumerate(recs):
            try:
                single.append(decode_csv(r, defaults))
            except InvalidArgumentError as e:
                serr = str(e).replace("record 0", f"record {i}")
                break
        assert berr == serr, recs
        if berr:
            continue
        compared += 1
        for c in range(5):
            exp = [s[c] for s in single]
            if c == 4:
                assert batch[c].tolist() == exp
            else:
                exp = np.array(exp, dtype=batch[c].dtype)
                np.testing.assert_array_equal(batch[c], exp)
                assert np.array_equal(np.signbit(batch[c].astype(float)), np.signbit(exp.astype(float)))
    assert compared > 100  # the vector path really ran


def test_large_chunk_w3_like():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20000, 10))
    empty = rng.random((20000, 10)) < 0.02
    y = rng.integers(0, 10, 20000)
    lines = [
        (",".join("" if empty[i, j] else "%.6f" % x[i, j] for j in range(10)) + ",%d" % y[i]).encode()
        for i in range(20000)
    ]
    cols = decode_csv(lines, [[0.0]] * 10 + [[0]])
    expect = np.where(empty, 0.0, np.round(x, 6)).astype(np.float32)
    for j in range(10):
        np.testing.assert_array_equal(cols[j], expect[:, j])
    assert cols[10].dtype == np.int32 and np.array_equal(cols[10], y)


# -- the pyarrow path ------------------------------------------------------------------------------



def _numeric_field(rng: random.Random, integer: bool, special: float) -> str:
    """Mostly fields pyarrow may take, plus every kind it must hand back to the exact path."""
    r = rng.random()
    if r < 0.90 - special:
        fmt = rng.choice(["%d", "%05d", "%-d"] if integer else ["%.6f", "%.3f", "%d", "%.17g", "%.3e", "%.1E"])
        return fmt % (rng.uniform(-1e6, 1e6) if rng.random() < 0.5 else rng.uniform(-2, 2))
    if r < 0.98 - special:
        return ""
    return rng.choice([
        "+5", "+1.5", " 1.5", "1.5 ", "inf", "-inf", "nan", "infinity", "0x1A", "1e", "e5", ".", "-", "1..2",
        "2147483648", "-2147483649", "9223372036854775808", "1" * 31, "0" * 32, "0." + "1" * 30, "1." + "0" * 22,
        "1" * 40 + ".5", "0x1.8p1", "Infinity", "nan(1)", "3.4028235677973366e38",
        "1e400", "-1e-400", "16777217", "16777217.000001", "3.", ".5", "-0", "NA", '"1"', "1\r",
    ])


@pytest.mark.parametrize("defaults", [
    [[0.0], [0], [np.float64(1)], np.array([0], np.int64)],
    [[0.0], I32, [np.float64(1)], [7]],
    [[-1.0]],
])
def test_arrow_path_matches_exact_path(monkeypatch, defaults):
    """Batches through pyarrow (forced on for tiny batches) agree with one-record decoding."""
    pytest.importorskip("pyarrow")
    monkeypatch.setattr(csv_mod, "_ARROW_MIN_RECORDS", 2)
    taken = []
    real = csv_mod._decode_arrow

    def spy(*args):
        res = real(*args)
        taken.append(res is not None)
        return res

    monkeypatch.setattr(csv_mod, "_decode_arrow", spy)
    rng = random.Random(11)
    ncols = len(defaults)
    ints = [isinstance(d, np.ndarray) and d.dtype != np.float32 or d == [0] or d == [7] for d in defaults]
    for trial in range(800):
        width = ncols if rng.random() < 0.95 else rng.choice([ncols - 1, ncols + 1])
        special = rng.choice([0.0, 0.0, 0.02, 0.2])
        recs = [
            ",".join(_numeric_field(rng, ints[c % ncols], special) for c in range(max(width, 1))).encode()
            for _ in range(rng.randint(2, 6))
        ]
        if trial % 50 == 0:
            recs.insert(rng.randint(0, len(recs)), b"")
        if trial % 50 == 1:
            recs.append(b"," * (ncols - 1))  # every field empty: defaults, not an empty line
        try:
            batch, berr = decode_csv(recs, defaults), None
        except InvalidArgumentError as e:
            batch, berr = None, str(e)
        single, serr = [], None
        for i, r in enumerate(recs):
            try:
                single.append(decode_csv(r, defaults))
            except InvalidArgumentError as e:
                serr = str(e).replace("record 0", f"record {i}")
                break
        assert berr == serr, recs
        if berr:
            continue
        for c in range(ncols):
            exp = np.array([s[c] for s in single], dtype=batch[c].dtype)
            np.testing.assert_array_equal(batch[c], exp)
            assert np.array_equal(np.signbit(batch[c].astype(float)), np.signbit(exp.astype(float)))
            assert batch[c].flags.writeable
    assert sum(taken) > 100 and not all(taken)  # both paths really ran


def test_arrow_select_cols_and_na_value(monkeypatch):
    pytest.importorskip("pyarrow")
    monkeypatch.setattr(csv_mod, "_ARROW_MIN_RECORDS", 2)
    recs = [b"1,-999,3,7,8", b"4,5,-999,9,9", b"6,7,8,9,1"]
    got = decode_csv(recs, [[0], [-1.0]], select_cols=[0, 2], na_value="-999")
    monkeypatch.setattr(csv_mod, "USE_ARROW", False)
    exp = decode_csv(recs, [[0], [-1.0]], select_cols=[0, 2], na_value="-999")
    assert got[0].tolist() == exp[0].tolist() == [1, 4, 6] and got[1].tolist() == exp[1].tolist() == [3, -1, 8]
    # Records shorter than the last selected column: TensorFlow's error, not pyarrow's.
    monkeypatch.setattr(csv_mod, "USE_ARROW", True)
    with pytest.raises(InvalidArgumentError, match="Expect 2 fields but have 1 in record 1"):
        decode_csv([b"1,2,3", b"4"], [[0], [0]], select_cols=[0, 2])


def test_works_without_pyarrow(monkeypatch):
    monkeypatch.setattr(csv_arrow, "_arrow_mods", False)
    monkeypatch.setattr(csv_arrow, "_arrow_plans", {})
    lines = [b"%d.5,%d" % (i, i) for i in range(1000)]
    cols = decode_csv(lines, [[0.0], [0]])
    assert cols[0][3] == 3.5 and cols[1].tolist() == list(range(1000))


def _lines_reference(path, defaults, skip, **kw):
    with TextLineReader(path, skip_header_lines=skip) as r:
        lines = [ln for ln in r]
    return decode_csv(lines, defaults, source=str(path), first_line=skip + 1, **kw) if lines else None


@pytest.mark.parametrize("block_bytes", [1 << 16, 1 << 24])
def test_read_csv_columns_matches_textline_and_decode_csv(tmp_path, block_bytes):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30000, 3))
    rows = ["%.6f,%.6f,%.6f,%d" % (a, b, c, i % 10) for i, (a, b, c) in enumerate(x)]
    rows[7] = ",,1.5,3"
    rows[20000] = "  2.5 ,1e3,-0,4"  # whitespace: the exact path for this block
    defaults = [[0.0], [0.0], [np.float64(0)], [0]]
    for name, content in {
        "plain.csv": "a,b,c,d\n" + "\n".join(rows) + "\n",
        "noeol.csv": "a,b,c,d\n" + "\n".join(rows),
        "crlf.csv": "a,b,c,d\r\n" + "\r\n".join(rows) + "\r\n",
    }.items():
        path = tmp_path / name
        path.write_bytes(content.encode())
        got = read_csv_columns(path, defaults, skip_header_lines=1, block_bytes=block_bytes)
        exp = _lines_reference(path, defaults, 1)
        for g, e in zip(got, exp):
            assert g.dtype == e.dtype
            np.testing.assert_array_equal(g, e)
    gz = tmp_path / "plain.csv.gz"
    gz.write_bytes(gzip.compress((tmp_path / "plain.csv").read_bytes()))
    got = read_csv_columns(gz, defaults, skip_header_lines=1, compression_type="GZIP", block_bytes=block_bytes)
    np.testing.assert_array_equal(got[0], exp[0])


def test_read_csv_columns_errors_name_file_and_line(tmp_path):
    rows = ["%d.25,%d" % (i, i) for i in range(5000)]
    rows[4321] = "1.5,x"
    path = tmp_path / "bad.csv"
    path.write_bytes(("h1,h2\n" + "\n".join(rows) + "\n").encode())
    with pytest.raises(InvalidArgumentError) as info:
        read_csv_columns(path, [[0.0], [0]], skip_header_lines=1)
    assert "is not a valid int32: x" in str(info.value) and f"line {4321 + 2}" in str(info.value)
    assert str(path) in str(info.value)
    rows[4321] = ""  # an empty line is a record without fields
    path.write_bytes(("h1,h2\n" + "\n".join(rows) + "\n").encode())
    with pytest.raises(InvalidArgumentError, match=f"Expect 2 fields but have 0 .*line {4321 + 2}"):
        read_csv_columns(path, [[0.0], [0]], skip_header_lines=1)
    bad: list = []
    cols = read_csv_columns(path, [[0.0], [0]], skip_header_lines=1, on_error="skip", bad_records=bad)
    assert len(cols[0]) == 4999 and len(bad) == 1
    rows[4321] = "1.5,"
    path.write_bytes(("\n".join(rows)).encode())
    with pytest.raises(InvalidArgumentError, match="Field 1 is required but missing"):
        read_csv_columns(path, [[0.0], I32])
    assert [len(c) for c in read_csv_columns(tmp_path / "bad.csv", [[0.0], [0]], skip_header_lines=9000)] == [0, 0]


def test_read_csv_columns_long_float_field_parses(tmp_path):
    # TensorFlow 2.21 reads float fields of any length (absl::SimpleAtof); pyarrow's chunk too.
    rows = ["%d.5,%d" % (i, i) for i in range(40000)]
    rows[30000] = "0" * 32 + "2.5,1"
    rows[30001] = "0.1" + "0" * 40 + "1,2"
    path = tmp_path / "long.csv"
    path.write_bytes(("\n".join(rows) + "\n").encode())
    cols = read_csv_columns(path, [[0.0], [0]])
    assert cols[0][30000] == 2.5 and cols[0][30001] == np.float32(0.1) and cols[0][29999] == 29999.5
    rows[30000] = "0" * 32 + "x,1"  # still an error, at its line
    path.write_bytes(("\n".join(rows) + "\n").encode())
    with pytest.raises(InvalidArgumentError, match=r"Field 0 in record \d+ is not a valid float: 0{32}x .*line 30001"):
        read_csv_columns(path, [[0.0], [0]])


def _decode_in_child(lines: list, out) -> None:
    cols = decode_csv(lines, [[0.0], [0.0], [0]])
    out.send([len(c) for c in cols])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_decode_csv_works_in_a_forked_child_after_the_parent_used_its_worker_threads():
    # A large chunk's byte checks (and the Data API's read-ahead) run on a worker thread made on
    # first use. A forked child inherits the executor but not its thread: before, the child's
    # first large decode_csv waited for ever on work nobody would run.
    lines = [b"%d.5,%d.25,%d" % (i, -i, i % 7) for i in range(40_000)]  # > 256 KiB: checked on the worker
    assert [len(c) for c in decode_csv(lines, [[0.0], [0.0], [0]])] == [40_000] * 3
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_decode_in_child, args=(lines, send))
    child.start()
    try:
        assert receive.poll(30), "the forked child's decode_csv never finished"
        assert receive.recv() == [40_000] * 3
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
