"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/tf_record_dataset_test.py`` (with
``tf_record_test_base.TFRecordTestBase``'s files: 2 files of 7 records): the expected values and
error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import gzip
import pathlib
import zlib

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, verify

from pipeline.data import Dataset, TFRecordDataset
from pipeline.tfrecord import TFRecordWriter

NUM_FILES, NUM_RECORDS = 2, 7


def _record(f, r):
    return b"Record %d of file %d" % (r, f)


@pytest.fixture()
def filenames(tmp_path):
    names = []
    for i in range(NUM_FILES):
        fn = str(tmp_path / f"tf_record.{i}.txt")
        names.append(fn)
        writer = TFRecordWriter(fn)
        for j in range(NUM_RECORDS):
            writer.write(_record(i, j))
        writer.close()
    return names


def _compressed(names, tmp_path, compression_type):
    out = []
    for i, fn in enumerate(names):
        with open(fn, "rb") as f:
            data = f.read()
        if compression_type == "ZLIB":
            path = str(tmp_path / f"tfrecord_{i}.z")
            with open(path, "wb") as f:
                f.write(zlib.compress(data))
        else:
            path = str(tmp_path / f"tfrecord_{i}.gz")
            with gzip.GzipFile(path, "wb") as f:
                f.write(data)
        out.append(path)
    return out


ALL = [_record(j, i) for j in range(NUM_FILES) for i in range(NUM_RECORDS)]


def _factory(names, compression_type="", num_epochs=1, batch_size=None):
    ds = TFRecordDataset(names, compression_type).repeat(num_epochs)
    return ds.batch(batch_size) if batch_size else ds


def test_constructor_errors_tensor_input():  # TFRecordDatasetTest.testConstructorErrorsTensorInput
    msg = "The `filenames` argument must contain `tf.string` elements. Got `tf.int32` elements."
    with pytest.raises(TypeError, match=msg):
        TFRecordDataset([1, 2, 3])
    with pytest.raises(TypeError, match=msg):
        TFRecordDataset(np.array([1, 2, 3], np.int32))
    with pytest.raises(TypeError, match=msg):
        TFRecordDataset(Dataset.from_tensor_slices(np.array([1, 2, 3], np.int32)))
    with pytest.raises(TypeError):
        TFRecordDataset(object())


def test_read_one_epoch(filenames):  # TFRecordDatasetTest.testReadOneEpoch
    assert list(_factory(filenames[0])) == [_record(0, i) for i in range(NUM_RECORDS)]
    assert list(_factory(filenames[1])) == [_record(1, i) for i in range(NUM_RECORDS)]
    assert list(_factory(filenames)) == ALL


def test_read_ten_epochs(filenames):  # TFRecordDatasetTest.testReadTenEpochs
    assert list(_factory(filenames, num_epochs=10)) == ALL * 10


def test_read_ten_epochs_of_batches(filenames):  # TFRecordDatasetTest.testReadTenEpochsOfBatches
    batches = [b.tolist() for b in _factory(filenames, num_epochs=10, batch_size=NUM_RECORDS)]
    assert batches == [[_record(j, i) for i in range(NUM_RECORDS)] for j in range(NUM_FILES)] * 10


@pytest.mark.parametrize("compression_type", ["ZLIB", "GZIP"])
def test_read_compressed_files(filenames, tmp_path, compression_type):
    # TFRecordDatasetTest.testReadZlibFiles / testReadGzipFiles
    assert list(_factory(_compressed(filenames, tmp_path, compression_type), compression_type=compression_type)) == ALL


def test_read_with_buffer(filenames):  # TFRecordDatasetTest.testReadWithBuffer
    assert list(TFRecordDataset(filenames, buffer_size=2**20)) == ALL


def test_read_from_dataset_of_files(filenames):  # TFRecordDatasetTest.testReadFromDatasetOfFiles
    assert list(TFRecordDataset(Dataset.from_tensor_slices(filenames))) == ALL


def test_read_ten_epochs_from_dataset_of_files_in_parallel(filenames):
    # TFRecordDatasetTest.testReadTenEpochsFromDatasetOfFilesInParallel
    files = Dataset.from_tensor_slices(filenames).repeat(10)
    assert sorted(TFRecordDataset(files, num_parallel_reads=4)) == sorted(ALL * 10)


def test_pathlib(filenames):  # TFRecordDatasetTest.testPathlib
    assert sorted(TFRecordDataset([pathlib.Path(filenames[0])])) == [_record(0, i) for i in range(NUM_RECORDS)]


def test_name(filenames):  # TFRecordDatasetTest.testName (op names do not exist here: the output only)
    assert list(TFRecordDataset([filenames[0]])) == [_record(0, i) for i in range(NUM_RECORDS)]


@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_batch_size(filenames, verify_fn, batch_size):  # TFRecordDatasetCheckpointTest.testBatchSize
    verify(verify_fn, lambda: TFRecordDataset(filenames).repeat(5).batch(batch_size),
           5 * NUM_FILES * NUM_RECORDS // batch_size)


@pytest.mark.parametrize("buffer_size", [0, 5])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_buffer_size(filenames, verify_fn, buffer_size):  # TFRecordDatasetCheckpointTest.testBufferSize
    verify(verify_fn, lambda: TFRecordDataset(filenames, buffer_size=buffer_size).repeat(5).batch(1),
           5 * NUM_FILES * NUM_RECORDS)


@pytest.mark.parametrize("compression_type", [None, "GZIP", "ZLIB"])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_compression_types(filenames, tmp_path, verify_fn, compression_type):
    # TFRecordDatasetCheckpointTest.testCompressionTypes
    names = filenames if compression_type is None else _compressed(filenames, tmp_path, compression_type)
    verify(verify_fn, lambda: TFRecordDataset(names, compression_type).repeat(5).batch(1), 5 * NUM_FILES * NUM_RECORDS)
