"""Ported from TensorFlow's ``tensorflow/python/kernel_tests/proto/parsing_ops_test.py``
(``ParseExampleTest``, the FixedLenFeature and VarLenFeature cases): the expected values are
TensorFlow's, the code is ours. Examples are written with ``encode_example`` (or by hand where
TensorFlow's test uses a feature with no list at all)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.tfrecord import (
    FixedLenFeature,
    TFRecordWriter,
    VarLenFeature,
    encode_example,
    parse_example,
    read_tfrecord_examples,
)
from pipeline.tfrecord.example import _ld
from queueserver import errors


def _empty_feature_example(key: str) -> bytes:
    """An Example whose feature ``key`` is an empty ``Feature`` message (TF's ``feature()``)."""
    entry = _ld(0x0A, key.encode()) + _ld(0x12, b"")
    return _ld(0x0A, _ld(0x0A, entry))


def _check(out: dict, expected: dict) -> None:
    assert set(out) == set(expected)
    for k, want in expected.items():
        got = out[k]
        if isinstance(want, tuple):
            np.testing.assert_array_equal(got.indices, want[0])
            np.testing.assert_array_equal(got.values, want[1])
            np.testing.assert_array_equal(got.dense_shape, want[2])
        else:
            assert np.asarray(got).shape == np.asarray(want).shape, k
            np.testing.assert_array_equal(got, want)


def test_empty_serialized_with_all_defaults():  # ParseExampleTest.testEmptySerializedWithAllDefaults
    a_default = [0, 42, 0]
    b_default = np.random.rand(3, 3).astype(bytes)
    c_default = np.random.rand(2).astype(np.float32)
    out = parse_example([b"", b""], {
        "st_a": VarLenFeature(np.int64),
        "a": FixedLenFeature((1, 3), np.int64, default_value=a_default),
        "b": FixedLenFeature((3, 3), bytes, default_value=b_default),
        "c:has_a_tricky_name": FixedLenFeature((2,), np.float32, default_value=c_default),
    })
    _check(out, {
        "st_a": (np.empty((0, 2), np.int64), np.empty((0,), np.int64), np.array([2, 0], np.int64)),
        "a": np.array(2 * [[a_default]]),
        "b": np.array(2 * [b_default]),
        "c:has_a_tricky_name": np.array(2 * [c_default]),
    })


def test_empty_serialized_without_defaults_should_fail():
    # ParseExampleTest.testEmptySerializedWithoutDefaultsShouldFail
    features = {
        "st_a": VarLenFeature(np.int64),
        "a": FixedLenFeature((1, 3), np.int64, default_value=[0, 42, 0]),
        "b": FixedLenFeature((3, 3), bytes, default_value=np.random.rand(3, 3).astype(bytes)),
        "c": FixedLenFeature((2,), np.float32),  # no default: the gap makes it fail
    }
    # The key is there but the feature value is empty.
    with pytest.raises(errors.InvalidArgumentError, match=r"Feature: c \(data type: float\) is required"):
        parse_example([_empty_feature_example("c")], features)
    # The key is missing.
    with pytest.raises(errors.InvalidArgumentError, match=r"Feature: c \(data type: float\) is required"):
        parse_example([b"", b""], features)


def test_dense_not_matching_shape_should_fail():  # ParseExampleTest.testDenseNotMatchingShapeShouldFail
    serialized = [encode_example({"a": np.array([1, 1, 3], np.float32)}),
                  encode_example({"a": np.array([-1, -1], np.float32)})]
    with pytest.raises(errors.InvalidArgumentError, match="Key: a"):
        parse_example(serialized, {"a": FixedLenFeature((1, 3), np.float32)})


def test_dense_default_no_shape_should_fail():  # ParseExampleTest.testDenseDefaultNoShapeShouldFail
    serialized = [encode_example({"a": np.array([1, 1, 3], np.float32)})]
    with pytest.raises(ValueError, match="Missing shape for feature a"):
        parse_example(serialized, {"a": FixedLenFeature(None, np.float32)})
    with pytest.raises(ValueError, match="Missing shape for feature a"):
        parse_example(serialized[0], {"a": FixedLenFeature(None, np.float32)})


def test_serialized_containing_sparse():  # ParseExampleTest.testSerializedContainingSparse
    serialized = [
        encode_example({"st_c": np.array([3, 4], np.float32)}),
        encode_example({"st_c": np.zeros(0, np.float32)}),
        _empty_feature_example("st_d"),
        encode_example({"st_c": np.array([1, 2, -1], np.float32), "st_d": [b"hi"]}),
    ]
    out = parse_example(serialized, {"st_c": VarLenFeature(np.float32), "st_d": VarLenFeature(bytes)})
    _check(out, {
        "st_c": (np.array([[0, 0], [0, 1], [3, 0], [3, 1], [3, 2]], np.int64),
                 np.array([3.0, 4.0, 1.0, 2.0, -1.0], np.float32), np.array([4, 3], np.int64)),
        "st_d": (np.array([[3, 0]], np.int64), np.array([b"hi"], object), np.array([4, 1], np.int64)),
    })


def test_serialized_containing_dense():  # ParseExampleTest.testSerializedContainingDense
    bname = "b*has+a:tricky_name"
    serialized = [
        encode_example({"a": np.array([1, 1], np.float32), bname: [b"b0_str"]}),
        encode_example({"a": np.array([-1, -1], np.float32), bname: [b""]}),
    ]
    out = parse_example(serialized, {
        "a": FixedLenFeature((1, 2, 1), np.float32),
        bname: FixedLenFeature((1, 1, 1, 1), bytes),
    })
    _check(out, {
        "a": np.array([[1, 1], [-1, -1]], np.float32).reshape(2, 1, 2, 1),
        bname: np.array([b"b0_str", b""], object).reshape(2, 1, 1, 1, 1),
    })


def test_serialized_containing_dense_with_concat():  # ParseExampleTest.testSerializedContainingDenseWithConcat
    bname = "b*has+a:tricky_name"
    pairs = [
        (encode_example({"a": np.array([10, 10], np.float32)}),
         encode_example({"a": np.array([1, 1], np.float32), bname: [b"b0_str"]})),
        (encode_example({bname: [b"b100"]}),
         encode_example({"a": np.array([-1, -1], np.float32), bname: [b"b1"]})),
    ]
    out = parse_example([m + n for m, n in pairs], {
        "a": FixedLenFeature((1, 2, 1), np.float32),
        bname: FixedLenFeature((1, 1, 1, 1), bytes),
    })
    _check(out, {
        "a": np.array([[1, 1], [-1, -1]], np.float32).reshape(2, 1, 2, 1),
        bname: np.array([b"b0_str", b"b1"], object).reshape(2, 1, 1, 1, 1),
    })


def test_serialized_containing_dense_scalar():  # ParseExampleTest.testSerializedContainingDenseScalar
    serialized = [encode_example({"a": np.array([1], np.float32)}), encode_example({})]
    out = parse_example(serialized, {"a": FixedLenFeature((1,), np.float32, default_value=-1)})
    _check(out, {"a": np.array([[1], [-1]], np.float32)})


def test_serialized_containing_dense_with_defaults():
    # ParseExampleTest.testSerializedContainingDenseWithDefaults: a flat default for a
    # multi-dimensional shape is reshaped to it.
    serialized = [
        encode_example({"a": np.array([1, 1], np.float32)}),
        encode_example({"b": [b"b1"]}),
        _empty_feature_example("b"),
    ]
    features = {
        "a": FixedLenFeature((1, 2, 1), np.float32, default_value=[3.0, -3.0]),
        "b": FixedLenFeature((1, 1, 1, 1), bytes, default_value="tmp_str"),
    }
    expected = {
        "a": np.array([[1, 1], [3, -3], [3, -3]], np.float32).reshape(3, 1, 2, 1),
        "b": np.array([b"tmp_str", b"b1", b"tmp_str"], object).reshape(3, 1, 1, 1, 1),
    }
    _check(parse_example(serialized, features), expected)
    # One record at a time (parse_single_example) gives the same values.
    for i, rec in enumerate(serialized):
        _check(parse_example(rec, features), {k: v[i] for k, v in expected.items()})


def test_serialized_containing_sparse_and_dense_with_no_default():
    # ParseExampleTest.testSerializedContainingSparseAndSparseFeatureAndDenseWithNoDefault
    # (without the SparseFeature, which this parser does not have)
    serialized = [encode_example({"c": np.array([3, 4], np.float32)}),
                  encode_example({"c": np.array([1, 2], np.float32)})]
    a_default = [1, 2, 3]
    b_default = np.random.rand(3, 3).astype(bytes)
    out = parse_example(serialized, {
        "st_a": VarLenFeature(np.int64),
        "a": FixedLenFeature((1, 3), np.int64, default_value=a_default),
        "b": FixedLenFeature((3, 3), bytes, default_value=b_default),
        "c": FixedLenFeature((2,), np.float32),
    })
    _check(out, {
        "st_a": (np.empty((0, 2), np.int64), np.empty((0,), np.int64), np.array([2, 0], np.int64)),
        "a": np.array(2 * [[a_default]]),
        "b": np.array(2 * [b_default]),
        "c": np.array([[3, 4], [1, 2]], np.float32),
    })


def test_default_that_cannot_be_reshaped_fails():
    # Not a test of TensorFlow's suite: parsing_config reshapes the default to the dense shape,
    # so a default with another number of values is a ValueError (graph mode's reshape error).
    with pytest.raises(ValueError, match=r"Cannot reshape a tensor with 1 elements to shape \[2, 3\]"):
        parse_example([b""], {"a": FixedLenFeature((2, 3), np.float32, default_value=0.0)})
    with pytest.raises(ValueError, match=r"Cannot reshape a tensor with 0 elements to shape \[2\]"):
        parse_example(b"", {"a": FixedLenFeature([2], np.int64, default_value=[])})


def test_int_shape_is_a_vector(tmp_path):
    # Not a test of TensorFlow's suite: FixedLenFeature(3, ...) is shape [3], because parsing_config
    # turns the shape into a TensorShape and TensorShape(3) is the vector shape [3].
    s = encode_example({"x": np.array([1, 2, 3], np.int64)})
    path = str(tmp_path / "x.tfrecord")
    with TFRecordWriter(path) as w:
        for _ in range(3):
            w.write(s)
    assert read_tfrecord_examples(path, {"x": FixedLenFeature(3, np.int64)})["x"].shape == (3, 3)
    assert parse_example(s, {"x": FixedLenFeature(3, np.int64)})["x"].tolist() == [1, 2, 3]
    assert parse_example([s, s], {"x": FixedLenFeature(3, np.int64)})["x"].shape == (2, 3)
    assert parse_example([b""], {"x": FixedLenFeature(2, np.int64, default_value=[4, 5])})["x"].tolist() == [[4, 5]]


def test_unknown_dimensions_fail():
    # Not a test of TensorFlow's suite: parsing_config's _add_fixed_len_feature checks.
    with pytest.raises(ValueError, match="First dimension of shape for feature a unknown"):
        parse_example([b""], {"a": FixedLenFeature((None, 2), np.float32)})
    with pytest.raises(ValueError, match="All dimensions of shape for feature a need to be known"):
        parse_example([b""], {"a": FixedLenFeature((2, None), np.float32)})
