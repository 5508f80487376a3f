"""Ported from TensorFlow's ``tensorflow/python/lib/io/tf_record_test.py`` (``TFRecordIteratorTest`` and
``TFRecordWriterCloseAndFlushTests``, each for no compression, GZIP and ZLIB): the expected values
are TensorFlow's, the code is ours."""

from __future__ import annotations

import gzip
import zlib

import pytest

from pipeline.tfrecord import TFRecordWriter, tf_record_iterator
from queueserver import errors

COMPRESSIONS = ["", "GZIP", "ZLIB"]


def _record(f: int, r: int) -> bytes:
    return f"Record {r} of file {f}".encode()


def _write(path, records, compression=""):
    with TFRecordWriter(str(path), compression) as w:
        for r in records:
            w.write(r)
    return str(path)


def test_iterator(tmp_path):  # TFRecordIteratorTest.testIterator
    records = [_record(0, i) for i in range(7)]
    fn = _write(tmp_path / "compressed_records", records, "ZLIB")
    reader = tf_record_iterator(fn, "ZLIB")
    for expected in records:
        assert next(reader) == expected
    with pytest.raises(StopIteration):
        next(reader)


def test_write_zlib_read(tmp_path):  # TFRecordIteratorTest.testWriteZlibRead
    fn = _write(tmp_path / "write_zlib_read.tfrecord.z", [b"foo", b"bar"], "ZLIB")
    plain = tmp_path / "write_zlib_read.tfrecord"
    plain.write_bytes(zlib.decompress((tmp_path / "write_zlib_read.tfrecord.z").read_bytes()))
    assert list(tf_record_iterator(str(plain))) == [b"foo", b"bar"]
    assert list(tf_record_iterator(fn, "ZLIB")) == [b"foo", b"bar"]


def test_write_gzip_read(tmp_path):  # TFRecordIteratorTest.testWriteGzipRead
    fn = _write(tmp_path / "write_gzip_read.tfrecord.gz", [b"foo", b"bar"], "GZIP")
    plain = tmp_path / "write_gzip_read.tfrecord"
    plain.write_bytes(gzip.decompress((tmp_path / "write_gzip_read.tfrecord.gz").read_bytes()))
    assert list(tf_record_iterator(str(plain))) == [b"foo", b"bar"]
    assert list(tf_record_iterator(fn, "GZIP")) == [b"foo", b"bar"]


def test_read_growing_file_preserves_read_offset(tmp_path):
    # TFRecordIteratorTest.testReadGrowingFile_preservesReadOffset
    fn = str(tmp_path / "file.tfrecord")
    with TFRecordWriter(fn) as writer:
        writer.write(b"one")
        writer.write(b"two")
        writer.flush()
        iterator = tf_record_iterator(fn)
        assert next(iterator) == b"one"
        assert next(iterator) == b"two"
        # Iterating at EOF results in StopIteration repeatedly.
        with pytest.raises(StopIteration):
            next(iterator)
        with pytest.raises(StopIteration):
            next(iterator)
        # Retrying after adding a new record returns it, keeping the prior read offset.
        writer.write(b"three")
        writer.flush()
        assert next(iterator) == b"three"
        with pytest.raises(StopIteration):
            next(iterator)


def test_read_truncated_file_preserves_read_offset(tmp_path):
    # TFRecordIteratorTest.testReadTruncatedFile_preservesReadOffset
    fn = tmp_path / "temp_file"
    with TFRecordWriter(str(fn)) as writer:
        writer.write(b"truncated")
    record_bytes = fn.read_bytes()
    fn_truncated = tmp_path / "truncated_file"
    with TFRecordWriter(str(fn_truncated)) as writer:
        writer.write(b"good")
    with open(fn_truncated, "ab", buffering=0) as f:
        f.write(record_bytes[:-1])  # the last byte of the record is missing
        iterator = tf_record_iterator(str(fn_truncated))
        assert next(iterator) == b"good"
        # The truncated record raises DataLossError on every try.
        with pytest.raises(errors.DataLossError):
            next(iterator)
        with pytest.raises(errors.DataLossError):
            next(iterator)
        # Completing the record makes it come out, from the prior read offset.
        f.write(record_bytes[-1:])
        assert next(iterator) == b"truncated"
        with pytest.raises(StopIteration):
            next(iterator)


def test_read_file_that_ends_inside_a_header_then_grows(tmp_path):
    # Not in TensorFlow's suite: the same kept offset when the file ends inside a record's
    # 12-byte header (TensorFlow: a quiet end of input, then the record once it is complete).
    fn = tmp_path / "partial_header"
    _write(fn, [b"a", b"bc"])
    whole = fn.read_bytes()
    fn.write_bytes(whole[:17 + 5])  # record "a" (17 bytes) and 5 bytes of the next header
    iterator = tf_record_iterator(str(fn))
    assert next(iterator) == b"a"
    with pytest.raises(StopIteration):
        next(iterator)
    with open(fn, "ab") as f:
        f.write(whole[17 + 5 :])
    assert next(iterator) == b"bc"
    with pytest.raises(StopIteration):
        next(iterator)


def test_bad_file(tmp_path):  # TFRecordIteratorTest.testBadFile
    fn = tmp_path / "bad_file"
    _write(fn, [b"123"])
    truncated = tmp_path / "bad_file_truncated"
    truncated.write_bytes(fn.read_bytes()[:14])
    with pytest.raises(errors.DataLossError):
        for _ in tf_record_iterator(str(truncated)):
            pass


@pytest.fixture(params=COMPRESSIONS)
def writer_and_options(request, tmp_path):
    fn = str(tmp_path / "tf_record_writer_test.txt")
    return TFRecordWriter(fn, request.param), fn, request.param


def test_write_and_read(writer_and_options):  # TFRecordWriterCloseAndFlush*Tests.testWriteAndRead
    writer, fn, compression = writer_and_options
    records = [f"Record {r}".encode() for r in range(20)]
    for r in records:
        writer.write(r)
    writer.close()
    assert list(tf_record_iterator(fn, compression)) == records


def test_double_close(writer_and_options):  # TFRecordWriterCloseAndFlush*Tests.testDoubleClose
    writer, _fn, _c = writer_and_options
    writer.write(b"Record 0")
    writer.close()
    writer.close()


def test_flush_after_close_is_error(writer_and_options):
    # TFRecordWriterCloseAndFlush*Tests.testFlushAfterCloseIsError
    writer, _fn, _c = writer_and_options
    writer.write(b"Record 0")
    writer.close()
    with pytest.raises(errors.FailedPreconditionError):
        writer.flush()


def test_write_after_close_is_error(writer_and_options):
    # TFRecordWriterCloseAndFlush*Tests.testWriteAfterCloseIsError
    writer, _fn, _c = writer_and_options
    writer.write(b"Record 0")
    writer.close()
    with pytest.raises(errors.FailedPreconditionError):
        writer.write(b"Record 1")
