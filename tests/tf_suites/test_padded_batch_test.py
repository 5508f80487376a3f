"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/padded_batch_test.py``: the
expected values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, verify

from pipeline.data import Dataset, NoneTensorSpec, RaggedTensor, TensorSpec
from queueserver import errors


def _fill(x):
    return np.full([int(x)], x)


def _as_string(a):
    out = np.empty(a.shape, dtype=object)
    out[...] = [str(v).encode() for v in a.reshape(-1)]
    return out


@pytest.mark.parametrize("drop_remainder", [True, False])
@pytest.mark.parametrize("padded_shapes", [[None], [25]])
@pytest.mark.parametrize("count", [32, 34])
def test_padded_batch_dataset(count, padded_shapes, drop_remainder):  # PaddedBatchTest.testPaddedBatchDataset
    seq_lens = np.random.default_rng(count).integers(20, size=(count,)).astype(np.int32)
    ds = Dataset.from_tensor_slices(seq_lens).map(_fill).padded_batch(
        batch_size=4, drop_remainder=drop_remainder, padded_shapes=padded_shapes)
    it = ds.iterator()

    def check(result, first, n):
        padded_len = padded_shapes[0]
        if padded_len is None:
            padded_len = np.max(result) if result.size > 0 else 0
        assert result.shape == (n, padded_len)
        for j in range(n):
            seq_len = seq_lens[first + j]
            assert result[j, :seq_len].tolist() == [seq_len] * seq_len
            assert result[j, seq_len:].tolist() == [0] * (padded_len - seq_len)

    full = count // 4
    for i in range(full):
        check(it.get_next(), i * 4, 4)
    if not drop_remainder and count % 4:
        check(it.get_next(), full * 4, count % 4)
    for _ in range(2):
        with pytest.raises(errors.OutOfRangeError):
            it.get_next()


def test_short_padding():  # PaddedBatchTest.testPaddedBatchShortPadding
    ds = Dataset.from_tensor_slices([6, 5, 5, 5, 5]).map(_fill).padded_batch(batch_size=4, padded_shapes=[5])
    with pytest.raises(errors.DataLossError):
        list(ds)


def test_empty_tensors():  # PaddedBatchTest.testPaddedBatchEmptyTensors
    ds = Dataset.from_tensor_slices([0, 0, 0, 0]).map(_fill).padded_batch(batch_size=4, padded_shapes=[-1])
    assert [b.tolist() for b in ds] == [[[], [], [], []]]


def test_default_padded_shapes():  # PaddedBatchTest.testDefaultPaddedShapes
    ds = Dataset.from_tensor_slices([1, 2, 3, 4]).map(_fill).padded_batch(batch_size=2)
    assert [b.tolist() for b in ds] == [[[1, 0], [2, 2]], [[3, 3, 3, 0], [4, 4, 4, 4]]]


def test_nested_default_padded_shapes():  # PaddedBatchTest.testNestedDefaultPaddedShapes
    ds = Dataset.from_tensor_slices([1, 2, 3, 4]).map(lambda x: (x, _fill(x))).padded_batch(batch_size=2)
    assert [(a.tolist(), b.tolist()) for a, b in ds] == [
        ([1, 2], [[1, 0], [2, 2]]), ([3, 4], [[3, 3, 3, 0], [4, 4, 4, 4]])]


@pytest.mark.parametrize("padding_values", [(-1, "<end>", {"structure": ""}), (-1, "<end>", None)])
def test_non_default_padding(padding_values):
    # PaddedBatchTest.testPaddedBatchDatasetNonDefaultPadding: None pads the dict with its default.
    def fill_tuple(x):
        filled = _fill(x)
        return (filled, _as_string(filled), {"structure": _as_string(filled)})

    seq_lens = np.random.default_rng(7).integers(20, size=(32,)).astype(np.int32)
    ds = Dataset.from_tensor_slices(seq_lens).map(fill_tuple).padded_batch(
        4, padded_shapes=([-1], [-1], {"structure": [-1]}), padding_values=padding_values)
    it = ds.iterator()
    for i in range(8):
        result = it.get_next()
        padded_len = np.max(result[0])
        assert result[0].shape == result[1].shape == result[2]["structure"].shape == (4, padded_len)
        for j in range(4):
            n = seq_lens[i * 4 + j]
            assert result[0][j, :n].tolist() == [n] * n
            assert result[0][j, n:].tolist() == [-1] * (padded_len - n)
            assert result[1][j, :n].tolist() == [str(n).encode()] * n
            assert result[1][j, n:].tolist() == [b"<end>"] * (padded_len - n)
            assert result[2]["structure"][j, :n].tolist() == [str(n).encode()] * n
            assert result[2]["structure"][j, n:].tolist() == [b""] * (padded_len - n)
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_unicode():  # PaddedBatchTest.testPaddedBatchDatasetUnicode
    def generator():
        for seq in [["Простой", "тест", "юникода"], ["никогда", "не", "бывает", "простым"]]:
            yield seq, [0, 1, 2, 3]

    ds = Dataset.from_generator(generator, ("string", np.int32), ([None], [None]))
    words, ints = next(iter(ds.padded_batch(2, padded_shapes=([None], [None]), padding_values=("", 0))))
    assert words.tolist() == [["Простой".encode(), "тест".encode(), "юникода".encode(), b""],
                              [w.encode() for w in ["никогда", "не", "бывает", "простым"]]]
    assert ints.tolist() == [[0, 1, 2, 3]] * 2


def test_shape_specifications():
    # PaddedBatchTest.testPaddedBatchDatasetShapeSpecifications (graph-only placeholders there:
    # here, a generator's components of unknown shape), every way of writing the shapes.
    ds = Dataset.from_generator(lambda: iter([]), (np.int32, np.float32, "string"))
    for shapes in [([None], [None, None], [37]), ([-1], [-1, -1], [37]),
                   (np.array([-1], np.int64), np.array([-1, -1], np.int64), np.array([37], np.int64))]:
        spec = ds.padded_batch(32, padded_shapes=shapes).element_spec
        assert [s.shape for s in spec] == [(None, None), (None, None, None), (None, 37)]


@pytest.mark.skip(reason="sparse tensors do not exist here (no SparseTensorValue)")
def test_sparse_error():  # PaddedBatchTest.testPaddedBatchSparseError
    pass


def test_ragged_error():  # PaddedBatchTest.testPaddedBatchRaggedError
    rt = RaggedTensor(np.array([0, 42]), np.array([2], np.int64))
    with pytest.raises(TypeError):
        Dataset.from_tensors(rt).repeat(10).padded_batch(10)


@pytest.mark.parametrize("shapes", [[1], np.array([1], np.int64)])
def test_shape_error_wrong_rank(shapes):
    # PaddedBatchTest.testPaddedBatchShapeErrorWrongRank / ...WrongRankFromTensor
    with pytest.raises(ValueError, match=r"The padded shape \(1,\) is not compatible with the corresponding input "
                                         r"component shape \(\)."):
        Dataset.range(10).padded_batch(5, padded_shapes=shapes)


def test_shape_error_too_small():  # PaddedBatchTest.testPaddedBatchShapeErrorTooSmall
    with pytest.raises(ValueError, match=r"The padded shape \(1,\) is not compatible with the corresponding input "
                                         r"component shape \(3,\)."):
        Dataset.from_tensors([1, 2, 3]).padded_batch(5, padded_shapes=[1])


def test_shape_error_shape_not_rank1():  # PaddedBatchTest.testPaddedBatchShapeErrorShapeNotRank1
    with pytest.raises(ValueError, match=r"Padded shape .* must be a 1-D tensor of tf.int64 values, but its shape "
                                         r"was \(2, 2\)."):
        Dataset.from_tensors([1, 2, 3]).padded_batch(5, padded_shapes=[[1, 1], [1, 1]])


def test_shape_error_shape_not_int():  # PaddedBatchTest.testPaddedBatchShapeErrorShapeNotInt
    with pytest.raises(TypeError, match=r"Padded shape .* must be a 1-D tensor of tf.int64 values, but its element "
                                        r"type was float32."):
        Dataset.from_tensors([1, 2, 3]).padded_batch(5, padded_shapes=np.array([1.5, 2.0, 3.0], np.float32))


def test_shape_error_default_shape_with_unknown_rank():
    # PaddedBatchTest.testPaddedBatchShapeErrorDefaultShapeWithUnknownRank
    with pytest.raises(ValueError, match=r"`padded_shapes`.*unknown rank"):
        Dataset.from_generator(lambda: iter([1, 2, 3]), output_types=np.int32).padded_batch(2)


@pytest.mark.skip(reason="graph mode only: a placeholder of unknown value as the padded shape")
def test_shape_error_placeholder():  # PaddedBatchTest.testPaddedBatchShapeErrorPlaceholder
    pass


def test_bfloat16_as_float16():
    # PaddedBatchTest.testPaddedBatchBfloat16: numpy has no bfloat16; the 16-bit float it has.
    ds = Dataset.range(5).map(lambda x: np.float16(x)).padded_batch(10)
    (batch,) = list(ds)
    assert batch.dtype == np.float16 and batch.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_default_padded_value_shapes():  # PaddedBatchTest.testDefaultPaddedValueShapes
    filled = Dataset.from_tensor_slices([1, 2, 3, 4]).map(_fill)
    ds = Dataset.zip((filled, filled)).padded_batch(batch_size=2, padding_values=-1)
    assert [(a.tolist(), b.tolist()) for a, b in ds] == [
        ([[1, -1], [2, 2]], [[1, -1], [2, 2]]), ([[3, 3, 3, -1], [4, 4, 4, 4]], [[3, 3, 3, -1], [4, 4, 4, 4]])]


def test_none_component_and_none_padding_values():
    # Our case (the "padding_values holding None"): None components stay None, a None
    # padding value is the component's default.
    ds = Dataset.range(1, 4).map(lambda x: (_fill(x), None, _as_string(_fill(x))))
    out = ds.padded_batch(3, padding_values=(None, None, "-"))
    assert out.element_spec == (TensorSpec((None, None), np.int64), NoneTensorSpec(), TensorSpec((None, None), "string"))
    a, none, s = next(iter(out))
    assert a.tolist() == [[1, 0, 0], [2, 2, 0], [3, 3, 3]] and none is None
    assert s.tolist() == [[b"1", b"-", b"-"], [b"2", b"2", b"-"], [b"3", b"3", b"3"]]
    with pytest.raises(TypeError, match="Padding value"):
        ds.padded_batch(3, padding_values=("x", None, "-"))


@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn):  # PaddedBatchCheckpointTest.testPaddedBatch
    seq_lens = np.random.default_rng(1).integers(1, 20, size=(32,)).astype(np.int32)
    verify(verify_fn, lambda: Dataset.from_tensor_slices(seq_lens).map(_fill).padded_batch(4, padded_shapes=[-1]), 8)


@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_non_default_padding(verify_fn):  # PaddedBatchCheckpointTest.testPaddedBatchNonDefaultPadding
    seq_lens = np.random.default_rng(2).integers(1, 20, size=(32,)).astype(np.int32)

    def build():
        return Dataset.from_tensor_slices(seq_lens).map(lambda x: (_fill(x), _as_string(_fill(x)))).padded_batch(
            4, padded_shapes=([-1], [-1]), padding_values=(-1, "<end>"))

    verify(verify_fn, build, 8)
