"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/text_line_dataset_test.py``: the
expected values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import gc
import gzip
import os
import pathlib
import zlib

import pytest
from tf_checkpoint import VERIFY_FNS, plain, verify

from pipeline.data import Dataset, TextLineDataset


def _line_text(f, line):
    return b"%d: %d" % (f, line)


def _create_files(tmp_path, num_files, num_lines, crlf=False, compression_type=None):
    filenames = []
    for i in range(num_files):
        fn = str(tmp_path / f"text_line.{i}.txt")
        filenames.append(fn)
        contents = []
        for j in range(num_lines):
            contents.append(_line_text(i, j))
            # A newline after every record but the last of files other than the first.
            if j + 1 != num_lines or i == 0:
                contents.append(b"\r\n" if crlf else b"\n")
        data = b"".join(contents)
        if compression_type == "GZIP":
            with gzip.GzipFile(fn, "wb") as f:
                f.write(data)
        else:
            with open(fn, "wb") as f:
                f.write(zlib.compress(data) if compression_type == "ZLIB" else data)
    return filenames


@pytest.mark.parametrize("compression_type", [None, "GZIP", "ZLIB"])
def test_text_line_dataset(tmp_path, compression_type):  # TextLineDatasetTest.testTextLineDataset
    names = _create_files(tmp_path, 2, 5, crlf=True, compression_type=compression_type)

    def dataset_fn(filenames, num_epochs, batch_size=None):
        ds = TextLineDataset(filenames, compression_type=compression_type).repeat(num_epochs)
        return ds.batch(batch_size) if batch_size else ds

    file0 = [_line_text(0, i) for i in range(5)]
    file1 = [_line_text(1, i) for i in range(5)]
    assert list(dataset_fn([names[0]], 1)) == file0
    assert list(dataset_fn([names[1]], 1)) == file1
    assert list(dataset_fn(names, 1)) == file0 + file1
    assert list(dataset_fn(names, 10)) == (file0 + file1) * 10
    assert [b.tolist() for b in dataset_fn(names, 10, 5)] == [file0, file1] * 10


def test_parallel_read(tmp_path):  # TextLineDatasetTest.testTextLineDatasetParallelRead
    names = _create_files(tmp_path, 10, 10)
    files = Dataset.from_tensor_slices(names).repeat(10)
    expected = [_line_text(j, i) for j in range(10) for i in range(10)] * 10
    assert sorted(TextLineDataset(files, num_parallel_reads=4)) == sorted(expected)


def test_buffering(tmp_path):  # TextLineDatasetTest.testTextLineDatasetBuffering
    names = _create_files(tmp_path, 2, 5, crlf=True)
    expected = [_line_text(j, i) for j in range(2) for i in range(5)]
    assert list(TextLineDataset(names, buffer_size=10)) == expected


def _open_paths():
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to list open files (psutil there)")
def test_iterator_resource_cleanup(tmp_path):  # TextLineDatasetTest.testIteratorResourceCleanup
    filename = str(tmp_path / "text.txt")
    with open(filename, "w") as f:
        for i in range(3):
            f.write(f"{i}\n")
    first = iter(TextLineDataset(filename))
    assert next(first) == b"0"
    second = iter(TextLineDataset(filename))
    assert next(second) == b"0"
    different = iter(TextLineDataset(filename).repeat().batch(16))
    assert next(different).shape == (16,)
    del first, second, different
    gc.collect()
    assert filename not in _open_paths()


def test_pathlib(tmp_path):  # TextLineDatasetTest.testTextLineDatasetPathlib
    names = [pathlib.Path(f) for f in _create_files(tmp_path, 1, 5)]
    assert sorted(TextLineDataset(names)) == [_line_text(0, i) for i in range(5)]


@pytest.mark.parametrize("compression_type", [None, "GZIP", "ZLIB"])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_text_line_core(tmp_path, verify_fn, compression_type):
    # TextLineDatasetCheckpointTest.testTextLineCore
    names = _create_files(tmp_path, 5, 5, crlf=True, compression_type=compression_type)
    verify(verify_fn, lambda: TextLineDataset(names, compression_type=compression_type, buffer_size=10), 25)
    assert plain(next(iter(TextLineDataset(names, compression_type=compression_type)))) == _line_text(0, 0)
