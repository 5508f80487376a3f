"""Sources and transformations beyond the golden cases: specs, construction errors, cardinality,
generators, zip, cache files, reduce and apply."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import Dataset, TensorSpec
from queueserver import errors


def test_iterating_twice_starts_over_and_elements_are_numpy() -> None:
    ds = Dataset.from_tensor_slices((np.arange(3), np.array([1.5, 2.5, 3.5]))).batch(2)
    a, b = list(ds), list(ds)
    assert len(a) == len(b) == 2
    assert a[0][0].tolist() == [0, 1] and a[1][1].dtype == np.float64
    assert isinstance(next(iter(Dataset.range(3))), np.int64)


def test_batches_are_read_only_views_not_per_element_copies() -> None:
    x = np.arange(12.0).reshape(6, 2)
    b = next(iter(Dataset.from_tensor_slices(x).batch(4)))
    assert np.shares_memory(b, x) and not b.flags.writeable


def test_from_generator_with_signature_and_resume() -> None:
    def gen():
        for i in range(5):
            yield i, [i] * 2

    ds = Dataset.from_generator(gen, output_signature=(TensorSpec((), np.int64), TensorSpec((2,), np.float32)))
    elems = list(ds)
    assert elems[3][0] == 3 and elems[3][1].dtype == np.float32
    assert repr(ds.element_spec[1]) == "TensorSpec(shape=(2,), dtype=tf.float32, name=None)"
    it = ds.iterator()
    next(it), next(it)
    assert [int(a) for a, _ in ds.iterator(state=it.get_state())] == [2, 3, 4]
    with pytest.raises(errors.InvalidArgumentError, match="shape"):
        list(Dataset.from_generator(lambda: iter([[1, 2, 3]]), output_signature=TensorSpec((2,), np.int64)))


def test_zip_and_enumerate_specs() -> None:
    ds = Dataset.zip({"a": Dataset.range(3), "b": Dataset.from_tensor_slices([b"x", b"y"])})
    assert [e["b"] for e in ds] == [b"x", b"y"]
    assert repr(Dataset.range(2).enumerate().element_spec) == (
        "(TensorSpec(shape=(), dtype=tf.int64, name=None), TensorSpec(shape=(), dtype=tf.int64, name=None))")


def test_construction_errors() -> None:
    with pytest.raises(ValueError, match="not compatible"):
        Dataset.from_tensor_slices((np.arange(2), np.arange(3)))
    with pytest.raises(ValueError, match="rank >= 1"):
        Dataset.from_tensor_slices(np.float32(1))
    with pytest.raises(errors.InvalidArgumentError, match="Index must be between"):
        Dataset.range(3).shard(2, 2)
    with pytest.raises(errors.InvalidArgumentError, match="batch_size"):
        Dataset.range(3).batch(0)
    with pytest.raises(TypeError, match="Incompatible dataset elements"):
        Dataset.range(2).concatenate(Dataset.from_tensor_slices(np.zeros((2, 2))))
    with pytest.raises(TypeError, match="must return a Dataset"):
        Dataset.range(2).apply(lambda d: 3)


def test_batch_shape_mismatch_is_invalid_argument() -> None:
    ds = Dataset.range(1, 4).map(lambda x: np.arange(x)).batch(2)
    with pytest.raises(errors.InvalidArgumentError, match="different shapes"):
        next(iter(ds))


def test_cardinality() -> None:
    assert Dataset.range(10).batch(3).cardinality() == 4
    assert Dataset.range(10).batch(3, drop_remainder=True).cardinality() == 3
    assert Dataset.range(3).repeat().cardinality() == -1
    assert Dataset.range(3).repeat().take(5).cardinality() == 5
    assert Dataset.range(10).filter(lambda x: x > 2).cardinality() == -2
    assert len(Dataset.range(10).shard(3, 1)) == 3


def test_map_spec_after_batch_has_unknown_batch_dim() -> None:
    ds = Dataset.range(10).batch(4).map(lambda x: (x * 2, x.astype(np.float32)))
    assert repr(ds.element_spec) == (
        "(TensorSpec(shape=(None,), dtype=tf.int64, name=None), TensorSpec(shape=(None,), dtype=tf.float32, name=None))")


def test_cache_to_file_is_reused(tmp_path) -> None:
    calls = []

    def f(x):
        calls.append(int(x))
        return x * 2

    path = str(tmp_path / "c")
    ds = Dataset.range(4).map(f).cache(path)
    assert [int(x) for x in ds] == [0, 2, 4, 6]
    assert [int(x) for x in ds] == [0, 2, 4, 6]
    assert [int(x) for x in Dataset.range(4).map(f).cache(path)] == [0, 2, 4, 6]  # another "process"
    assert calls == [0, 1, 2, 3]


def test_partial_pass_does_not_complete_the_memory_cache() -> None:
    calls = []
    ds = Dataset.range(4).map(lambda x: calls.append(1) or x).cache()
    it = ds.iterator()
    next(it)
    assert len(list(ds)) == 4 and len(list(ds)) == 4
    assert len(calls) == 1 + 4


def test_reduce_scan_apply_unique() -> None:
    assert int(Dataset.range(5).reduce(np.int64(0), lambda s, x: s + x)) == 10
    assert [int(x) for x in Dataset.range(4).apply(lambda d: d.skip(1).take(2))] == [1, 2]
    assert [int(x) for x in Dataset.from_tensor_slices([2, 2, 5, 2, 7]).unique()] == [2, 5, 7]


def test_window_without_drop_and_repeat_of_empty() -> None:
    ds = Dataset.range(5).window(2).flat_map(lambda w: w.batch(2))
    assert [w.tolist() for w in ds] == [[0, 1], [2, 3], [4]]
    assert list(Dataset.range(0).repeat()) == []


def test_get_next_raises_out_of_range() -> None:
    it = Dataset.range(1).make_one_shot_iterator()
    assert int(it.get_next()) == 0
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_strings_are_bytes() -> None:
    ds = Dataset.from_tensor_slices(["a", "bc"])
    assert list(ds) == [b"a", b"bc"]
    assert repr(ds.element_spec) == "TensorSpec(shape=(), dtype=tf.string, name=None)"
    b = next(iter(ds.batch(2)))
    assert b.dtype == object and b.tolist() == [b"a", b"bc"]
