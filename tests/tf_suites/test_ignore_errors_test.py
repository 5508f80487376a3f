"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/ignore_errors_test.py``: the
expected values and error classes are TensorFlow's, the code is ours. (Its zip case is in
``test_zip_test.py``, where the zip defect was fixed; it runs here too.)"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, plain, verify

from pipeline.data import UNKNOWN_CARDINALITY, Dataset, TFRecordDataset
from pipeline.tfrecord import TFRecordWriter
from queueserver import errors

_COMPONENTS = np.array([1.0, 2.0, 3.0, np.nan, 5.0], np.float32)


def _check_numerics(x, message="message"):
    if not np.all(np.isfinite(x)):
        raise errors.InvalidArgumentError(f"{message} : Tensor had {'NaN' if np.any(np.isnan(x)) else 'Inf'} values")
    return x


def test_map_ignore_error():  # IgnoreErrorsTest.testMapIgnoreError
    it = Dataset.from_tensor_slices(_COMPONENTS).map(_check_numerics).ignore_errors().iterator()
    assert [float(it.get_next()) for _ in range(4)] == [1.0, 2.0, 3.0, 5.0]
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_ignore_error_with_log_warning(caplog):  # IgnoreErrorsTest.testIgnoreError_withLogWarning
    it = Dataset.from_tensor_slices(_COMPONENTS).map(_check_numerics).ignore_errors(log_warning=True).iterator()
    with caplog.at_level(logging.WARNING):
        assert [float(it.get_next()) for _ in range(4)] == [1.0, 2.0, 3.0, 5.0]
    assert "Tensor had NaN values" in caplog.text
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_parallel_map_ignore_error():  # IgnoreErrorsTest.testParallelMapIgnoreError
    ds = Dataset.from_tensor_slices(_COMPONENTS).map(_check_numerics, num_parallel_calls=2).prefetch(2).ignore_errors()
    it = ds.iterator()
    assert [float(it.get_next()) for _ in range(4)] == [1.0, 2.0, 3.0, 5.0]
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def _read_file(name):
    with open(name, "rb") as f:
        return f.read()


def test_read_file_ignore_error(tmp_path):  # IgnoreErrorsTest.testReadFileIgnoreError
    filenames = [str(tmp_path / f"file_{i}.txt") for i in range(5)]
    for name in filenames:
        with open(name, "w") as f:
            f.write(name)
    ds = Dataset.from_tensor_slices(filenames).map(_read_file, num_parallel_calls=2).prefetch(2).ignore_errors()
    assert list(ds) == [name.encode() for name in filenames]
    os.remove(filenames[0])
    assert list(ds) == [name.encode() for name in filenames[1:]]


def test_tf_record_dataset_ignore_error(tmp_path):  # IgnoreErrorsTest.testTFRecordDatasetIgnoreError
    filenames = []
    for i in range(5):
        name = str(tmp_path / f"tf_record.{i}.txt")
        filenames.append(name)
        writer = TFRecordWriter(name)
        for _ in range(10):
            writer.write(b"record")
        writer.close()
        with open(name, "a") as f:
            f.write("corrupted data")
    it = TFRecordDataset(filenames).ignore_errors().iterator()
    assert [it.get_next() for _ in range(50)] == [b"record"] * 50
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_zip_ignore_error():  # IgnoreErrorsTest.testZipIgnoreError
    a = Dataset.from_tensor_slices([1.0, 2.0, 0.0, 4.0])
    b = a.map(lambda x: _check_numerics(np.float32(1.0) / x, "error"))
    with np.errstate(divide="ignore"):
        assert [plain(e) for e in Dataset.zip((b, a)).ignore_errors()] == [(1.0, 1.0), (0.5, 2.0), (0.25, 4.0)]


def test_cardinality():  # IgnoreErrorsTest.testCardinality
    assert Dataset.range(10).ignore_errors().cardinality() == UNKNOWN_CARDINALITY


@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn):  # IgnoreErrorsCheckpointTest.test
    verify(verify_fn, lambda: Dataset.from_tensor_slices(_COMPONENTS).map(_check_numerics).ignore_errors(), 4)
