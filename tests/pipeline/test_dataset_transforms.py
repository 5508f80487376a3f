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


# --------------------------------------------------------------------------- audit against tf.data 2.21
def test_spec_sampling_is_bounded_by_source_elements() -> None:
    # A filter that (almost) never passes: TensorFlow traces and builds at once; sampling stops after
    # SPEC_SAMPLE_SOURCE_ELEMENTS source elements and knows nothing (no invented dtype).
    from pipeline.data.structure import UnknownSpec

    ds = Dataset.range(10**12).filter(lambda x: x < 0).map(lambda x: x * 2)
    assert isinstance(ds.element_spec, UnknownSpec)
    for built in (ds.padded_batch(4), ds.unbatch(), ds.batch(2), ds.concatenate(Dataset.range(3)),
                  ds.unique(), Dataset.choose_from_datasets([ds, ds], Dataset.range(2)),
                  ds.scan(np.int64(0), lambda s, x: (s, x)), ds.interleave(lambda x: Dataset.range(x)),
                  Dataset.range(3).repeat().filter(lambda x: x < 0).map(lambda x: x)):
        assert "UnknownSpec" in repr(built)
    # A rare element within the budget still gives the spec.
    rare = Dataset.range(10**12).filter(lambda x: x == 5000).map(lambda x: (x, np.arange(2.0)))
    assert rare.element_spec == (TensorSpec((), np.int64), TensorSpec((2,), np.float64))


def test_spec_sampling_lets_signals_through_and_iteration_reports_errors() -> None:
    def interrupted(x):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _ = Dataset.range(3).map(interrupted).element_spec
    failing = Dataset.range(3).map(lambda x: {}[int(x)])
    assert repr(failing.element_spec) == "UnknownSpec()"
    with pytest.raises(errors.InvalidArgumentError, match="KeyError"):
        list(failing)


def test_map_over_an_empty_input_invents_no_dtype() -> None:
    # TensorFlow: [], [0, 1, 2], [] (its spec comes from tracing; ours is unknown, never float32).
    empty = Dataset.range(0).map(lambda x: x * 2)
    assert repr(empty.element_spec) == "UnknownSpec()"
    assert list(empty.padded_batch(2)) == []
    assert [int(v) for v in empty.concatenate(Dataset.range(3))] == [0, 1, 2]
    assert list(empty.unique()) == []
    assert list(Dataset.range(0).map(lambda x: (x, x)).map(lambda a, b: a)) == []


def test_ragged_batch_keeps_fully_known_components_dense() -> None:
    ds = Dataset.from_tensor_slices(np.arange(8).reshape(4, 2)).ragged_batch(3)
    assert ds.element_spec == TensorSpec((None, 2), np.int64)
    out = list(ds)
    assert all(type(b) is np.ndarray for b in out) and [b.tolist() for b in out] == [[[0, 1], [2, 3], [4, 5]], [[6, 7]]]
    mixed = Dataset.range(1, 3).map(lambda x: (np.arange(x), x)).ragged_batch(2)
    rows, xs = next(iter(mixed))
    assert rows.to_list() == [[0], [0, 1]] and xs.tolist() == [1, 2]
    # (None, 2) batches are not fully known: ragged, as TensorFlow's [[[0, 0], [0, 0]]].
    twice = Dataset.from_tensor_slices(np.zeros((4, 2), np.int64)).ragged_batch(2).ragged_batch(1)
    assert [r.to_list() for r in twice] == [[[[0, 0], [0, 0]]]] * 2


def test_ragged_batch_of_ragged_elements_is_refused_clearly() -> None:
    ragged = Dataset.range(1, 4).map(lambda x: np.arange(x)).ragged_batch(2)
    with pytest.raises(errors.UnimplementedError, match="ragged rank above 1"):
        ragged.ragged_batch(2)
    with pytest.raises(errors.UnimplementedError, match="ragged rank above 1"):
        Dataset.from_generator(lambda: iter([np.arange(2)])).ragged_batch(1).ragged_batch(1).__iter__().__next__()


def test_unbatch_cardinality_from_the_batch_dimension() -> None:
    assert Dataset.from_tensors(np.zeros((3, 2))).unbatch().cardinality() == 3
    assert len(Dataset.from_tensors(np.zeros((3, 2))).unbatch()) == 3
    assert Dataset.range(10).batch(3, drop_remainder=True).unbatch().cardinality() == 9
    assert Dataset.range(6).batch(2).repeat().unbatch().take(7).cardinality() == 7
    assert Dataset.range(6).batch(2).repeat().unbatch().cardinality() == -1
    # TensorFlow does not know these: a partial batch is possible, a zero batch dimension says nothing.
    assert Dataset.range(9).batch(3).unbatch().cardinality() == -2
    assert Dataset.from_tensors(np.zeros((0, 2))).unbatch().cardinality() == -2
    assert Dataset.from_tensors((np.zeros((3, 2)), np.zeros(3))).unbatch().cardinality() == 3


def test_range_output_type() -> None:
    assert Dataset.range(3, output_type=np.int32).element_spec == TensorSpec((), np.int32)
    assert [v.dtype for v in Dataset.range(3, output_type=np.int32)] == [np.int32] * 3
    assert Dataset.range(3, dtype=np.int32).element_spec == TensorSpec((), np.int32)
    assert Dataset.range(3).element_spec == TensorSpec((), np.int64)


def test_skip_everything_of_an_endless_input_ends_at_once() -> None:
    ds = Dataset.range(3).repeat().skip(-1)
    assert list(ds.take(2)) == []
    assert ds.cardinality() == -1 and ds.take(2).cardinality() == 2  # TensorFlow's values


def test_interleave_cardinality_and_parallelism_checks() -> None:
    endless = Dataset.range(3).repeat()
    assert endless.interleave(lambda x: Dataset.range(x), cycle_length=2).cardinality() == -2
    assert endless.interleave(lambda x: Dataset.range(x), cycle_length=2, num_parallel_calls=1).cardinality() == -1
    with pytest.raises(errors.InvalidArgumentError, match="`num_parallel_calls` is 4 and `cycle_length` is 2"):
        Dataset.range(3).interleave(lambda x: Dataset.range(x), cycle_length=2, num_parallel_calls=4)


def test_enumerate_start_and_from_tensors_need_values() -> None:
    with pytest.raises(TypeError, match="Cannot convert 1.5"):
        Dataset.range(2).enumerate(1.5)
    assert [int(i) for i, _ in Dataset.range(2).enumerate(np.int32(2))] == [2, 3]
    for empty in (None, (), {}):
        with pytest.raises(errors.InvalidArgumentError, match="at least minimum 1"):
            Dataset.from_tensors(empty)
    assert list(Dataset.from_tensors((None, 1))) == [(None, 1)]


def test_sample_and_choose_cardinality() -> None:
    two = [Dataset.range(3), Dataset.range(10, 12)]
    assert Dataset.sample_from_datasets(two, weights=[1.0, 0.0], seed=3).cardinality() == 3
    assert Dataset.sample_from_datasets(two, weights=[0.0, 0.0], seed=3).cardinality() == 0
    assert Dataset.sample_from_datasets(two, seed=3).cardinality() == -2
    assert Dataset.sample_from_datasets([Dataset.range(3).repeat(), Dataset.range(2)], seed=3).cardinality() == -1
    assert Dataset.choose_from_datasets([Dataset.range(3).repeat(), Dataset.range(2)],
                                        Dataset.range(2).repeat()).cardinality() == -1


def test_argument_errors_have_tensorflows_classes():
    # tf.data: InvalidArgumentError for interleave's lengths, ValueError for a padding value that is
    # not a scalar (TypeError only for one of the wrong type), ValueError for enumerate(None).
    ds = Dataset.range(4)
    with pytest.raises(errors.InvalidArgumentError, match="cycle_length must be greater than zero"):
        ds.interleave(lambda x: Dataset.range(x), cycle_length=0)
    with pytest.raises(errors.InvalidArgumentError, match="block_length must be greater than zero"):
        ds.interleave(lambda x: Dataset.range(x), cycle_length=1, block_length=0)
    with pytest.raises(ValueError, match="should be scalars"):
        list(ds.padded_batch(2, padding_values=np.array([1, 2], np.int64)))
    with pytest.raises(TypeError, match="must be a scalar of the component's type int64"):
        list(ds.padded_batch(2, padding_values=b"x"))
    with pytest.raises(ValueError, match="unsupported type"):
        ds.enumerate(None)
