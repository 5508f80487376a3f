"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/fixed_length_record_dataset_test.py``
and the ``FixedLengthRecordReaderTest`` cases of ``tensorflow/python/kernel_tests/io_ops/reader_ops_test.py``
(the TF1 reader, which has ``hop_bytes`` and compression): the expected values are TensorFlow's,
the code is ours."""

from __future__ import annotations

import gzip
import pathlib
import zlib

import pytest
from tf_checkpoint import VERIFY_FNS, verify

from pipeline.data import FixedLengthRecordDataset
from pipeline.fixed_length import FixedLengthRecordReader
from queueserver import errors

NUM_FILES, NUM_RECORDS = 2, 7
HEADER, RECORD, FOOTER, HOP = 5, 3, 2, 2


def _record(f: int, r: int) -> bytes:
    return str(f * 2 + r).encode() * RECORD


def _write(path: pathlib.Path, contents: bytes, compression: str | None) -> None:
    if compression == "GZIP":
        with gzip.GzipFile(path, "wb") as f:
            f.write(contents)
    elif compression == "ZLIB":
        path.write_bytes(zlib.compress(contents))
    else:
        path.write_bytes(contents)


def _create_files(tmp_path: pathlib.Path, compression: str | None = None) -> list[str]:
    names = []
    for i in range(NUM_FILES):
        fn = tmp_path / f"fixed_length_record.{i}.txt"
        body = b"".join(_record(i, j) for j in range(NUM_RECORDS))
        _write(fn, b"H" * HEADER + body + b"F" * FOOTER, compression)
        names.append(str(fn))
    return names


def _all_records() -> list[bytes]:
    return [_record(j, i) for j in range(NUM_FILES) for i in range(NUM_RECORDS)]


def _check_dataset(tmp_path: pathlib.Path, compression: str | None) -> None:
    files = _create_files(tmp_path, compression)

    def dataset_fn(filenames, num_epochs, batch_size=None):
        ds = FixedLengthRecordDataset(filenames, RECORD, HEADER, FOOTER, compression_type=compression)
        ds = ds.repeat(num_epochs)
        return ds.batch(batch_size) if batch_size else ds

    assert list(dataset_fn([files[0]], 1)) == [_record(0, i) for i in range(NUM_RECORDS)]
    assert list(dataset_fn([files[1]], 1)) == [_record(1, i) for i in range(NUM_RECORDS)]
    assert list(dataset_fn(files, 1)) == _all_records()
    it = iter(dataset_fn(files, 10))
    for _ in range(10):
        for expected in _all_records():
            assert next(it) == expected
    with pytest.raises(StopIteration):
        next(it)
    it = iter(dataset_fn(files, 10, NUM_RECORDS))
    for _ in range(10):
        for j in range(NUM_FILES):
            assert list(next(it)) == [_record(j, i) for i in range(NUM_RECORDS)]
    with pytest.raises(StopIteration):
        next(it)


def test_no_compression(tmp_path):  # testFixedLengthRecordDatasetNoCompression
    _check_dataset(tmp_path, None)


def test_gzip_compression(tmp_path):  # testFixedLengthRecordDatasetGzipCompression
    _check_dataset(tmp_path, "GZIP")


def test_zlib_compression(tmp_path):  # testFixedLengthRecordDatasetZlibCompression
    _check_dataset(tmp_path, "ZLIB")


def test_buffering(tmp_path):  # testFixedLengthRecordDatasetBuffering
    ds = FixedLengthRecordDataset(_create_files(tmp_path), RECORD, HEADER, FOOTER, buffer_size=10)
    assert list(ds) == _all_records()


def test_parallel_read(tmp_path):  # testFixedLengthRecordDatasetParallelRead
    ds = FixedLengthRecordDataset(_create_files(tmp_path), RECORD, HEADER, FOOTER, buffer_size=10,
                                  num_parallel_reads=4)
    assert sorted(ds) == sorted(_all_records())


def test_wrong_size(tmp_path):  # testFixedLengthRecordDatasetWrongSize
    ds = FixedLengthRecordDataset(_create_files(tmp_path), RECORD + 1, HEADER, FOOTER, buffer_size=10)
    with pytest.raises(
        errors.InvalidArgumentError,
        match=r"Excluding the header \(5 bytes\) and footer \(2 bytes\), input file \".*fixed_length_record.0.txt\" "
        r"has body length 21 bytes, which is not an exact multiple of the record length \(4 bytes\).",
    ):
        list(ds)


def test_pathlib(tmp_path):  # testFixedLengthRecordDatasetPathlib
    files = [pathlib.Path(f) for f in _create_files(tmp_path)]
    ds = FixedLengthRecordDataset(files, RECORD, HEADER, FOOTER, buffer_size=10, num_parallel_reads=4)
    assert sorted(ds) == sorted(_all_records())


def test_file_shorter_than_header_and_footer(tmp_path):
    # Not a test of TensorFlow's suite: the rule of its kernel (fixed_length_record_dataset_op.cc),
    # which computes the body length as a uint64, so a file shorter than header + footer wraps round.
    short = tmp_path / "short.bin"
    short.write_bytes(b"HHH")  # 3 bytes: 4 fewer than header (5) + footer (2)
    wrapped = 2**64 - 4
    assert wrapped % 5 != 0
    with pytest.raises(
        errors.InvalidArgumentError,
        match=rf"Excluding the header \(5 bytes\) and footer \(2 bytes\), input file \".*short.bin\" has body "
        rf"length {wrapped} bytes, which is not an exact multiple of the record length \(5 bytes\).",
    ):
        list(FixedLengthRecordDataset(str(short), 5, HEADER, FOOTER))
    # When the wrapped length happens to be a multiple, TensorFlow reads no record and no error
    # (the golden case h2_r3_f1_shorter_than_header_footer: 2**64 - 1 is a multiple of 3).
    assert wrapped % 4 == 0
    assert list(FixedLengthRecordDataset(str(short), 4, HEADER, FOOTER)) == []
    hh = tmp_path / "hh.bin"
    hh.write_bytes(b"HH")
    assert list(FixedLengthRecordDataset(str(hh), 3, 2, 1)) == []


# -- reader_ops_test.FixedLengthRecordReaderTest ---------------------------------------------------
def _create_gapped(tmp_path: pathlib.Path, num_records: int, gap_bytes: int, compression: str | None) -> list[str]:
    names = []
    for i in range(NUM_FILES):
        fn = tmp_path / f"fixed_length_record.{i}.txt"
        parts = [_record(i, j) for j in range(num_records)]
        body = (b"G" * gap_bytes).join(parts)
        _write(fn, b"H" * HEADER + body + b"F" * FOOTER, compression)
        names.append(str(fn))
    return names


def _overlapped_record(r: int) -> bytes:
    return "".join(str(i)[0] for i in range(r * HOP, r * HOP + RECORD)).encode()


def _create_overlapped(tmp_path: pathlib.Path, num_records: int, compression: str | None) -> list[str]:
    names = []
    for i in range(NUM_FILES):
        fn = tmp_path / f"fixed_length_overlapped_record.{i}.txt"
        body = b""
        if num_records > 0:
            body = "".join(str(k)[0] for k in range(RECORD + HOP * (num_records - 1))).encode()
        _write(fn, b"H" * HEADER + body + b"F" * FOOTER, compression)
        names.append(str(fn))
    return names


def _read_all(files: list[str], hop_bytes: int, compression: str | None) -> list[list[bytes]]:
    out = []
    for fn in files:
        with FixedLengthRecordReader(fn, record_bytes=RECORD, header_bytes=HEADER, footer_bytes=FOOTER,
                                     hop_bytes=hop_bytes, compression_type=compression) as r:
            out.append(list(r))
    return out


@pytest.mark.parametrize("compression", [None, "GZIP", "ZLIB"])
def test_reader_one_epoch(tmp_path, compression):  # testOneEpoch, testGzipOneEpoch, testZlibOneEpoch
    for num_records in (0, 7):
        for gap_bytes in (0, 1):  # gap 0: hop_bytes 0; gap 1: hop_bytes = record_bytes + 1
            files = _create_gapped(tmp_path, num_records, gap_bytes, compression)
            hop = 0 if gap_bytes == 0 else RECORD + gap_bytes
            assert _read_all(files, hop, compression) == [
                [_record(i, j) for j in range(num_records)] for i in range(NUM_FILES)
            ]


@pytest.mark.parametrize("compression", [None, "GZIP", "ZLIB"])
def test_reader_one_epoch_with_hop_bytes(tmp_path, compression):
    # testOneEpochWithHopBytes, testGzipOneEpochWithHopBytes, testZlibOneEpochWithHopBytes
    for num_overlapped in (0, 2):
        files = _create_overlapped(tmp_path, num_overlapped, compression)
        assert _read_all(files, HOP, compression) == [
            [_overlapped_record(j) for j in range(num_overlapped)] for _ in range(NUM_FILES)
        ]


@pytest.mark.parametrize("compression", [None, "GZIP", "ZLIB"])
def test_reader_hop_past_the_record_and_footer(tmp_path, compression):
    # Not in TensorFlow's suite: a hop longer than record + footer skips bytes never buffered
    # (the kernel's SkipNBytes branch); a trailing partial record is dropped quietly.
    body = bytes(range(40))
    fn = tmp_path / "hop.bin"
    _write(fn, b"H" * HEADER + body + b"F" * FOOTER, compression)
    with FixedLengthRecordReader(str(fn), record_bytes=3, header_bytes=HEADER, footer_bytes=FOOTER,
                                 hop_bytes=9, compression_type=compression) as r:
        first = r.read_chunk(2)
        rest = r.read_chunk(100)
    got = [row.tobytes() for row in first] + [row.tobytes() for row in rest]
    assert got == [body[k : k + 3] for k in range(0, 38, 9)]


@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_fixed_length_record_core(tmp_path, verify_fn):
    # FixedLengthRecordDatasetCheckpointTest.testFixedLengthRecordCore (TensorFlow's
    # checkpoint_test_base verifications over 10 epochs of both files)
    files = _create_files(tmp_path)
    verify(verify_fn, lambda: FixedLengthRecordDataset(files, RECORD, HEADER, FOOTER).repeat(10),
           10 * NUM_FILES * NUM_RECORDS)
