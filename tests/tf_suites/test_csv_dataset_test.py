"""Ported from TensorFlow's ``tensorflow/python/data/experimental/kernel_tests/csv_dataset_test.py``
(``CsvDatasetTest`` and ``CsvDatasetCheckpointTest``): one function per TensorFlow test, the
inputs, expected values and error texts are TensorFlow's, the code is ours. TensorFlow's
``_test_by_comparison`` compares ``CsvDataset`` with ``TextLineDataset -> map(decode_csv)``;
here the same comparison runs against :func:`pipeline.csv.decode_csv` of each line.

The tests after the ported ones are this project's: ``ignore_errors()`` keeps every good row of
a large file, the fast and exact paths agree, and errors name the file and line.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.csv import decode_csv
from pipeline.data import CsvDataset
from queueserver.errors import InvalidArgumentError


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


def _setup_files(tmp: Path, inputs, linebreak="\n", compression_type=None) -> list[str]:
    names = []
    for i, rows in enumerate(inputs):
        fn = tmp / f"temp_{i}.csv"
        contents = linebreak.join(rows).encode("utf-8")
        if compression_type == "GZIP":
            contents = gzip.compress(contents)
        elif compression_type == "ZLIB":
            contents = zlib.compress(contents)
        fn.write_bytes(contents)
        names.append(str(fn))
    return names


def _rows(ds) -> list[tuple]:
    return [tuple(v.item() if isinstance(v, np.generic) else v for v in row) for row in ds]


def _enc(rows) -> list[tuple]:
    return [tuple(v.encode() if isinstance(v, str) else v for v in r) for r in rows]


def _test_dataset(tmp, inputs, expected_output=None, expected_err_re=None, linebreak="\n",
                  compression_type=None, **kwargs) -> None:
    names = _setup_files(tmp, inputs, linebreak, compression_type)
    kwargs["compression_type"] = compression_type
    if expected_err_re is not None:
        with pytest.raises(InvalidArgumentError, match=expected_err_re):
            _rows(CsvDataset(names, **kwargs))
        return
    got = _rows(CsvDataset(names, **kwargs))
    want = _enc(expected_output)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == pytest.approx(w) if any(isinstance(v, float) for v in w) else g == w


def _test_by_comparison(tmp, inputs, **kwargs) -> None:
    names = _setup_files(tmp, inputs)
    got = _rows(CsvDataset(names, **kwargs))
    want = []
    for rows in inputs:
        for line in rows:
            want.append(tuple(v.item() if isinstance(v, np.generic) else v for v in decode_csv(line, **kwargs)))
    assert got == want


def _test_on_buffer_sizes(tmp, inputs, expected, linebreak, record_defaults, compression_type=None):
    for size in list(range(1, 21)) + [None]:
        _test_dataset(tmp, inputs, expected, linebreak=linebreak, compression_type=compression_type,
                      record_defaults=record_defaults, buffer_size=size)


def test_required_fields(tmp):  # CsvDatasetTest.testRequiredFields
    _test_by_comparison(tmp, [["1,2,3,4"]], record_defaults=[[]] * 4)


def test_int(tmp):  # CsvDatasetTest.testInt
    _test_by_comparison(tmp, [["1,2,3,4", "5,6,7,8"]], record_defaults=[[0]] * 4)


def test_float(tmp):  # CsvDatasetTest.testFloat
    _test_by_comparison(tmp, [["1.0,2.1,3.2,4.3", "5.4,6.5,7.6,8.7"]], record_defaults=[[0.0]] * 4)


def test_string(tmp):  # CsvDatasetTest.testString
    _test_by_comparison(tmp, [["1.0,2.1,hello,4.3", "5.4,6.5,goodbye,8.7"]], record_defaults=[[""]] * 4)


def test_with_empty_fields(tmp):  # CsvDatasetTest.testWithEmptyFields
    _test_dataset(tmp, [[",,,", "1,1,1,", ",2,2,2"]], [[0, 0, 0, 0], [1, 1, 1, 0], [0, 2, 2, 2]],
                  record_defaults=[[0]] * 4)


def test_err_with_unquoted_quotes(tmp):  # CsvDatasetTest.testErrWithUnquotedQuotes
    _test_dataset(tmp, [['1,2"3,4']], expected_err_re="Unquoted fields cannot have quotes inside",
                  record_defaults=[[""]] * 3)


def test_err_with_unescaped_quotes(tmp):  # CsvDatasetTest.testErrWithUnescapedQuotes
    _test_dataset(tmp, [['"a"b","c","d"']],
                  expected_err_re="Quote inside a string has to be escaped by another quote",
                  record_defaults=[[""]] * 3)


def test_ignore_err_with_unescaped_quotes(tmp):  # CsvDatasetTest.testIgnoreErrWithUnescapedQuotes
    names = _setup_files(tmp, [['1,"2"3",4', '1,"2"3",4",5,5', 'a,b,"c"d"', "e,f,g"]])
    assert _rows(CsvDataset(names, record_defaults=[[""]] * 3).ignore_errors()) == [(b"e", b"f", b"g")]


def test_ignore_err_with_unquoted_quotes(tmp):  # CsvDatasetTest.testIgnoreErrWithUnquotedQuotes
    names = _setup_files(tmp, [['1,2"3,4', 'a,b,c"d', '9,8"7,6,5', "e,f,g"]])
    assert _rows(CsvDataset(names, record_defaults=[[""]] * 3).ignore_errors()) == [(b"e", b"f", b"g")]


def test_with_no_quote_delim_and_unquoted_quotes(tmp):  # CsvDatasetTest.testWithNoQuoteDelimAndUnquotedQuotes
    _test_by_comparison(tmp, [['1,2"3,4']], record_defaults=[[""]] * 3, use_quote_delim=False)


def test_mixed_types(tmp):  # CsvDatasetTest.testMixedTypes
    defaults = [np.array([], np.int32), np.array([], np.float32), np.array([], object), np.array([], np.float64)]
    _test_by_comparison(tmp, [["1,2.1,3.2,4.3", "5,6.5,7.6,8.7"]], record_defaults=defaults)
    ds = CsvDataset(_setup_files(tmp, [["1,2.1,3.2,4.3"]]), defaults)
    assert [type(v) for v in next(iter(ds))] == [np.int32, np.float32, bytes, np.float64]


def test_with_use_quote_delim_false(tmp):  # CsvDatasetTest.testWithUseQuoteDelimFalse
    _test_by_comparison(tmp, [['1,2,"3,4"', '"5,6",7,8']], record_defaults=[[""]] * 4, use_quote_delim=False)


def test_with_field_delim(tmp):  # CsvDatasetTest.testWithFieldDelim
    _test_by_comparison(tmp, [["1:2:3:4", "5:6:7:8"]], record_defaults=[[0]] * 4, field_delim=":")


def test_with_na_value(tmp):  # CsvDatasetTest.testWithNaValue
    _test_by_comparison(tmp, [["1,NA,3,4", "NA,6,7,8"]], record_defaults=[[0]] * 4, na_value="NA")


def test_with_select_cols(tmp):  # CsvDatasetTest.testWithSelectCols
    _test_by_comparison(tmp, [["1,2,3,4", '"5","6","7","8"']], record_defaults=[[""]] * 2, select_cols=[1, 2])


def test_with_select_cols_too_high(tmp):  # CsvDatasetTest.testWithSelectColsTooHigh
    _test_dataset(tmp, [["1,2,3,4", "5,6,7,8"]], expected_err_re="Expect 2 fields but have 1 in record",
                  record_defaults=[[0]] * 2, select_cols=[3, 4])


def test_with_one_col(tmp):  # CsvDatasetTest.testWithOneCol
    _test_dataset(tmp, [["0", "", "2"]], [["0"], ["NA"], ["2"]], record_defaults=[["NA"]])


def test_with_multiple_files(tmp):  # CsvDatasetTest.testWithMultipleFiles
    _test_by_comparison(tmp, [["1,2,3,4", "5,6,7,8"], ["5,6,7,8"]], record_defaults=[[0]] * 4)


def test_with_leading_and_trailing_spaces(tmp):  # CsvDatasetTest.testWithLeadingAndTrailingSpaces
    _test_dataset(tmp, [["0, 1, 2, 3"]], [[0.0, 1.0, 2.0, 3.0]], record_defaults=[[0.0]] * 4)


def test_error_with_missing_default(tmp):  # CsvDatasetTest.testErrorWithMissingDefault
    _test_dataset(tmp, [["0,"]], expected_err_re="Field 1 is required but missing in record!",
                  record_defaults=[[]] * 2)


def test_error_with_fewer_defaults_than_fields(tmp):  # CsvDatasetTest.testErrorWithFewerDefaultsThanFields
    _test_dataset(tmp, [["0,1,2,3"]], expected_err_re="Expect 2 fields but have more in record",
                  record_defaults=[[0.0]] * 2)


def test_error_with_more_defaults_than_fields(tmp):  # CsvDatasetTest.testErrorWithMoreDefaultsThanFields
    _test_dataset(tmp, [["0,1,2,3"]], expected_err_re="Expect 5 fields but have 4 in record",
                  record_defaults=[[0.0]] * 5)


def test_with_header(tmp):  # CsvDatasetTest.testWithHeader
    _test_dataset(tmp, [["col1,col2", "1,2"]], [[1, 2]], record_defaults=[[0]] * 2, header=True)


def test_with_header_and_no_records(tmp):  # CsvDatasetTest.testWithHeaderAndNoRecords
    _test_dataset(tmp, [["col1,col2"]], [], record_defaults=[[0]] * 2, header=True)


def test_error_with_header_empty_file(tmp):  # CsvDatasetTest.testErrorWithHeaderEmptyFile
    _test_dataset(tmp, [[]], expected_err_re="Can't read header of file", record_defaults=[[0]] * 2, header=True)


def test_with_empty_file(tmp):  # CsvDatasetTest.testWithEmptyFile
    _test_dataset(tmp, [[""]], [], record_defaults=[[""]] * 2)


def test_error_with_empty_record(tmp):  # CsvDatasetTest.testErrorWithEmptyRecord
    _test_dataset(tmp, [["", "1,2"]], expected_err_re="Expect 2 fields but have 1 in record",
                  record_defaults=[[""]] * 2)


def test_with_chained_ops(tmp):  # CsvDatasetTest.testWithChainedOps
    inputs = [["1,,3,4", "5,6,,8"]]
    ds = CsvDataset(_setup_files(tmp, inputs), [[0]] * 4)
    want = [tuple(int(v) for v in decode_csv(line, [[0]] * 4)) for line in inputs[0]]
    assert [tuple(int(v) for v in r) for r in ds.repeat(5).prefetch(1)] == want * 5


def test_with_type_defaults(tmp):  # CsvDatasetTest.testWithTypeDefaults
    _test_dataset(tmp, [["1.0,2.0", "3.0,4.0"]], [[1.0, 2.0], [3.0, 4.0]], record_defaults=[np.float32, [0.0]])


def test_with_quoted(tmp):  # CsvDatasetTest.testWithQuoted
    _test_by_comparison(tmp, [['"a","b","c :)","d"', '"e","f","g :(","h"']], record_defaults=[[""]] * 4)


def test_with_one_col_and_quotes(tmp):  # CsvDatasetTest.testWithOneColAndQuotes
    _test_dataset(tmp, [['"0"', '"1"', '"2"']], [["0"], ["1"], ["2"]], record_defaults=[[""]])


def test_with_new_line(tmp):  # CsvDatasetTest.testWithNewLine
    _test_dataset(tmp, [['a,b,"""c""\n0","d\ne"', "f,g,h,i"]],
                  [["a", "b", '"c"\n0', "d\ne"], ["f", "g", "h", "i"]], record_defaults=[[""]] * 4)


def test_with_new_line_in_unselected_col(tmp):  # CsvDatasetTest.testWithNewLineInUnselectedCol
    _test_dataset(tmp, [['1,"2\n3",4', "5,6,7"]], [["1"], ["5"]], record_defaults=[[""]], select_cols=[0])


def test_with_exclude_col(tmp):  # CsvDatasetTest.testWithExcludeCol
    _test_dataset(tmp, [["1,2,3", "5,6,7"]], [["1"], ["5"]], record_defaults=[[""]], exclude_cols=[1, 2])


def test_with_select_and_exclude_col(tmp):  # CsvDatasetTest.testWithSelectandExcludeCol
    _test_dataset(tmp, [["1,2,3", "5,6,7"]], expected_err_re="Either select_cols or exclude_cols should be empty",
                  record_defaults=[[""]], select_cols=[0], exclude_cols=[1, 2])


def test_with_exclude_col_and_record_defaults_too_low(tmp):  # CsvDatasetTest.testWithExcludeColandRecordDefaultsTooLow
    _test_dataset(tmp, [["1,2,3", "5,6,7"]], expected_err_re="Expect 1 fields but have more in record",
                  record_defaults=[[""]], exclude_cols=[0])


def test_with_exclude_col_and_record_defaults_too_high(tmp):  # CsvDatasetTest.testWithExcludeColandRecordDefaultsTooHigh
    _test_dataset(tmp, [["1,2,3", "5,6,7"]], expected_err_re="Expect 3 fields but have 2 in record",
                  record_defaults=[[""]] * 3, exclude_cols=[0])


def test_with_multiple_new_lines(tmp):  # CsvDatasetTest.testWithMultipleNewLines
    _test_dataset(tmp, [['a,"b\n\nx","""c""\n \n0","d\ne"', "f,g,h,i"]],
                  [["a", "b\n\nx", '"c"\n \n0', "d\ne"], ["f", "g", "h", "i"]], record_defaults=[[""]] * 4)


def test_error_with_terminate_mid_record(tmp):  # CsvDatasetTest.testErrorWithTerminateMidRecord
    _test_dataset(tmp, [['a,b,c,"a']], expected_err_re="Reached end of file without closing quoted field in record",
                  record_defaults=[[""]] * 4)


def test_with_escaped_quotes(tmp):  # CsvDatasetTest.testWithEscapedQuotes
    _test_by_comparison(tmp, [['1.0,2.1,"she said: ""hello""",4.3', "5.4,6.5,goodbye,8.7"]],
                        record_defaults=[[""]] * 4)


def test_with_invalid_buffer_size(tmp):  # CsvDatasetTest.testWithInvalidBufferSize
    _test_dataset(tmp, [["a,b,c,d"]], expected_err_re="buffer_size should be positive",
                  record_defaults=[[""]] * 4, buffer_size=0)


LINES = [["abc,def,ghi", "0,1,2", ",,"]]
LINES_OUT = [["abc", "def", "ghi"], ["0", "1", "2"], ["NA", "NA", "NA"]]
QUOTED = [['"\n\n\n","\r\r\r","abc"', '"0","1","2"', '"","",""']]
QUOTED_OUT = [["\n\n\n", "\r\r\r", "abc"], ["0", "1", "2"], ["NA", "NA", "NA"]]


def test_with_lf(tmp):  # CsvDatasetTest.testWithLF
    _test_on_buffer_sizes(tmp, LINES, LINES_OUT, "\n", [["NA"]] * 3)


def test_with_cr(tmp):  # CsvDatasetTest.testWithCR
    _test_on_buffer_sizes(tmp, LINES, LINES_OUT, "\r", [["NA"]] * 3)


def test_with_crlf(tmp):  # CsvDatasetTest.testWithCRLF
    _test_on_buffer_sizes(tmp, LINES, LINES_OUT, "\r\n", [["NA"]] * 3)


def test_with_buffer_size_and_quoted(tmp):  # CsvDatasetTest.testWithBufferSizeAndQuoted
    _test_on_buffer_sizes(tmp, QUOTED, QUOTED_OUT, "\n", [["NA"]] * 3)


def test_with_cr_and_quoted(tmp):  # CsvDatasetTest.testWithCRAndQuoted
    _test_on_buffer_sizes(tmp, QUOTED, QUOTED_OUT, "\r", [["NA"]] * 3)


def test_with_crlf_and_quoted(tmp):  # CsvDatasetTest.testWithCRLFAndQuoted
    _test_on_buffer_sizes(tmp, QUOTED, QUOTED_OUT, "\r\n", [["NA"]] * 3)


def test_with_gzip_compression_type(tmp):  # CsvDatasetTest.testWithGzipCompressionType
    _test_on_buffer_sizes(tmp, QUOTED, QUOTED_OUT, "\r\n", [["NA"]] * 3, compression_type="GZIP")


def test_with_zlib_compression_type(tmp):  # CsvDatasetTest.testWithZlibCompressionType
    _test_on_buffer_sizes(tmp, QUOTED, QUOTED_OUT, "\r\n", [["NA"]] * 3, compression_type="ZLIB")


def test_with_scalar_defaults(tmp):  # CsvDatasetTest.testWithScalarDefaults
    _test_dataset(tmp, [[",,,", "1,1,1,", ",2,2,2"]], [[0, 0, 0, 0], [1, 1, 1, 0], [0, 2, 2, 2]],
                  record_defaults=[np.int64(0)] * 4)
    assert CsvDataset(_setup_files(tmp, [["1,2,3,4"]]), [np.int64(0)] * 4).element_spec[0].dtype == "int64"


def test_with_2d_defaults(tmp):  # CsvDatasetTest.testWith2DDefaults (eager branch)
    with pytest.raises(InvalidArgumentError, match="Each record default should be at most rank 1"):
        _test_dataset(tmp, [[",,,", "1,1,1,", ",2,2,2"]], [[0, 0, 0, 0], [1, 1, 1, 0], [0, 2, 2, 2]],
                      record_defaults=[np.array([[0]], np.int64)] * 4)


@pytest.mark.skip(reason="CsvDatasetTest.testImmutableParams tests make_csv_dataset, which this project lacks")
def test_immutable_params():  # CsvDatasetTest.testImmutableParams
    pass


def test_checkpoint_core(tmp):  # CsvDatasetCheckpointTest.testCore (resume at every element, plain and GZIP)
    rows = [",".join(str(7 * j + i) for i in range(7)) for j in range(10)]
    plain = tmp / "file.csv"
    plain.write_bytes("\n".join(rows).encode())
    comp = tmp / "comp.csv"
    comp.write_bytes(gzip.compress("\n".join(rows).encode()))
    for path, ct in [(plain, None), (comp, "GZIP")]:
        ds = CsvDataset(str(path), [[0]] * 7, buffer_size=2, compression_type=ct).repeat(14)
        full = _rows(ds)
        assert len(full) == 140 and full[0] == tuple(range(7))
        it = ds.iterator()
        for k in range(140):
            rest = _rows(ds.iterator(state=it.get_state()))
            assert rest == full[k:]
            next(it)


# ------------------------------------------------------------------------ this project's own tests
def _big(tmp: Path, n: int, bad: set[int], crlf: bool = False) -> str:
    lines = [b"x%d,y" % i if i in bad else b"%d,%d.5" % (i, i) for i in range(n)]
    p = tmp / "big.csv"
    p.write_bytes((b"\r\n" if crlf else b"\n").join(lines) + b"\n")
    return str(p)


@pytest.mark.parametrize("crlf", [False, True])
def test_ignore_errors_drops_only_the_bad_record(tmp, crlf):
    bad = {5, 1500, 1501, 3000}
    path = _big(tmp, 4000, bad, crlf)
    got = _rows(CsvDataset(path, [[0], [0.0]]).ignore_errors())
    assert [r[0] for r in got] == [i for i in range(4000) if i not in bad]
    assert all(r[1] == i + 0.5 for r, i in zip(got, (i for i in range(4000) if i not in bad)))
    batched = list(CsvDataset(path, [[0], [0.0]]).ignore_errors().batch(1000))
    assert sum(len(b[0]) for b in batched) == 4000 - len(bad)


def test_errors_surface_at_their_position_and_name_the_file_and_line(tmp):
    path = _big(tmp, 3000, {2000})
    it = iter(CsvDataset(path, [[0], [0.0]]))
    assert [int(next(it)[0]) for _ in range(2000)] == list(range(2000))
    with pytest.raises(InvalidArgumentError, match=r"Field 0 in record is not a valid int32: x2000 \(file .*big.csv, line 2001\)"):
        next(it)
    assert int(next(it)[0]) == 2001  # the record after the bad one follows


def test_plain_and_unusual_chunks_agree(tmp):
    # A file whose chunks are plain lines except for one with quotes, an empty line and a lone CR.
    lines = [b"%d,%d.25,s%d" % (i, i, i) for i in range(5000)]
    lines[2500] = b'2500,"2500.25","s,2500\nmore"'
    lines[2600] = b""
    lines[2700] = b"2700,2700.25,s2700\r2700,0,cr"
    p = tmp / "mix.csv"
    p.write_bytes(b"\n".join(lines))
    got = _rows(CsvDataset(str(p), [[-1], [0.0], [b"d"]]).ignore_errors())
    assert len(got) == 5000  # the empty line is one field: a short, dropped record; the CR adds one
    assert got[2500] == (2500, 2500.25, b"s,2500\nmore")
    assert got[2599] == (2599, 2599.25, b"s2599") and got[2600] == (2601, 2601.25, b"s2601")
    assert got[2699] == (2700, 2700.25, b"s2700") and got[2700] == (2700, 0.0, b"cr")
    assert got[-1] == (4999, 4999.25, b"s4999")


def test_an_empty_line_is_one_empty_field(tmp):
    p = tmp / "e.csv"
    p.write_bytes(b"1\n\n3\n")
    assert _rows(CsvDataset(str(p), [[7]])) == [(1,), (7,), (3,)]
    p.write_bytes(b"1,2\n\n3,4\n")
    with pytest.raises(InvalidArgumentError, match="Expect 2 fields but have 1 in record .*line 2"):
        _rows(CsvDataset(str(p), [[7], [8]]))
    assert _rows(CsvDataset(str(p), [[7], [8]]).ignore_errors()) == [(1, 2), (3, 4)]


def test_header_with_a_quoted_newline(tmp):
    p = tmp / "h.csv"
    p.write_bytes(b'"a\nb",c\n1,2\n')
    assert _rows(CsvDataset(str(p), [[0], [0]], header=True)) == [(1, 2)]


def test_resume_mid_file_re_reads_the_same_chunk(tmp):
    lines = [b"%d,%s" % (i, b"7" * (i % 300)) for i in range(3000)]
    lines[1700] = b"1700," + b"9" * 200_000  # a line longer than a chunk's byte budget
    p = tmp / "r.csv"
    p.write_bytes(b"\n".join(lines) + b"\n")
    ds = CsvDataset(str(p), [[0], [b""]])
    full = _rows(ds)
    assert [r[0] for r in full] == list(range(3000))
    it = ds.iterator()
    for k in range(3000):
        if k in (1, 999, 1699, 1700, 1701, 2999):
            assert _rows(ds.iterator(state=it.get_state())) == full[k:]
        next(it)


@pytest.mark.parametrize("repeat", [1, 3, 5000])
def test_long_infinity_nan_and_hex_floats(tmp, repeat):
    """TensorFlow 2.21's CsvDataset reads these (absl::SimpleAtof), one file of a few lines or a
    large one (its pyarrow chunks); values are TensorFlow's."""
    toks = ["0.12345678901234567890123456789012", "00000000000000000000000000000001.5", "Infinity",
            "-INFINITY", "nan(123)", "0x1.8p1", "0x1p-2", "0x.8"]
    want = [0.12345678901234568, 1.5, np.inf, -np.inf, np.nan, 3.0, 0.25, 0.5]
    fn = _setup_files(tmp, [["1.25"] * repeat + toks + ["2.5"] * repeat])[0]
    got = [float(x[0]) for x in CsvDataset(fn, [np.array([], np.float64)])]
    np.testing.assert_array_equal(got[repeat : repeat + len(toks)], want)
    assert got[:repeat] == [1.25] * repeat and got[-repeat:] == [2.5] * repeat
    got32 = [x[0] for x in CsvDataset(fn, [[0.0]])]
    np.testing.assert_array_equal(got32[repeat : repeat + len(toks)], np.array(want, np.float32))
