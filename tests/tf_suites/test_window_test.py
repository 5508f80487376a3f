"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/window_test.py``: the expected
values are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, verify

from pipeline.data import Dataset, DatasetSpec
from queueserver import errors


def _windows(ds):
    """Each window as a list of ints; an error as its class name (iteration goes on after it)."""
    out, it = [], iter(ds)
    while True:
        try:
            w = next(it)
        except StopIteration:
            return out
        except errors.QueueServerError as exc:
            out.append(type(exc).__name__)
            continue
        out.append([int(v) for v in w])


@pytest.mark.parametrize("size, shift, stride, drop, expected", [
    (3, 2, 1, False, [[0, 1, 2], [2, 3, 4], [4, 5, 6], [6]]),   # testWindowDataset cases
    (3, 2, 2, True, [[0, 2, 4], [2, 4, 6]]),
    (2, 3, 1, False, [[0, 1], [3, 4], [6]]),
    (4, 1, 2, False, [[0, 2, 4, 6], [1, 3, 5], [2, 4, 6], [3, 5], [4, 6], [5], [6]]),
])
def test_window_dataset(size, shift, stride, drop, expected):
    assert _windows(Dataset.range(7).window(size, shift, stride, drop)) == expected


def test_nested_output():  # WindowTest.testNestedOutput: a tuple of datasets, one per component
    ds = Dataset.zip((Dataset.range(100), Dataset.range(100))).window(10)
    assert ds.element_spec == (DatasetSpec(Dataset.range(1).element_spec),) * 2
    for i, (x, y) in enumerate(ds):
        assert [int(v) for v in x] == list(range(i * 10, (i + 1) * 10))
        assert [int(v) for v in y] == list(range(i * 10, (i + 1) * 10))


def test_dict_elements_give_a_dict_of_datasets():
    ds = Dataset.from_tensor_slices({"a": [1, 2, 3], "b": [4, 5, 6]}).window(2)
    first = next(iter(ds))
    assert sorted(first) == ["a", "b"] and [int(v) for v in first["b"]] == [4, 5]


def _fails_on(bad):
    def fn(x):
        if int(x) == bad:
            raise ValueError(f"element {bad}")
        return x
    return fn


def test_an_input_error_fails_its_window_and_later_windows_stay_in_place():
    # The failing element keeps its place in the buffer, as TensorFlow's window does.
    assert _windows(Dataset.range(8).map(_fails_on(3)).window(2)) == [[0, 1], "InvalidArgumentError", [4, 5], [6, 7]]
    assert _windows(Dataset.range(6).map(_fails_on(2)).window(3, shift=1)) == [
        "InvalidArgumentError", "InvalidArgumentError", "InvalidArgumentError", [3, 4, 5], [4, 5], [5]]
    # An element shifted past without being in any window is dropped, its error too.
    assert _windows(Dataset.range(8).map(_fails_on(2)).window(2, shift=3)) == [[0, 1], [3, 4], [6, 7]]


def test_window_state_keeps_buffered_errors():
    ds = Dataset.range(6).map(_fails_on(2)).window(3, shift=1)
    it = ds.iterator()
    with pytest.raises(errors.InvalidArgumentError):
        next(it)
    resumed = ds.iterator(state=it.get_state())
    assert _windows(resumed) == ["InvalidArgumentError", "InvalidArgumentError", [3, 4, 5], [4, 5], [5]]


@pytest.mark.parametrize("size, shift, stride, drop", [
    (3, 2, 1, False), (3, 2, 2, True), (2, 3, 1, False), (4, 1, 2, False), (4, 1, 2, True), (8, 1, 1, True),
])
def test_window_cardinality_matches_what_iteration_gives(size, shift, stride, drop):
    # cardinality_test: window's figure is known (TensorFlow computes it from the input's).
    ds = Dataset.range(7).window(size, shift, stride, drop)
    assert ds.cardinality() == len(_windows(ds))
    assert Dataset.range(7).repeat().window(3).cardinality() == -1
    assert Dataset.range(7).filter(lambda x: x > 2).window(3).cardinality() == -2


# ----------------------------------------------------------------------------- the rest of window_test.py
_COMPONENTS = (np.arange(7), np.array([[1, 2, 3]]) * np.arange(7)[:, np.newaxis], np.array(37.0) * np.arange(7))
_WINDOW_CASES = [(20, size, shift, stride, drop) for size in (10, 14, 17) for shift in (7, 14) for stride in (1, 2, 6)
                 for drop in (True, False)] + [(count, 10, 4, 1, drop) for count in (0, 1) for drop in (True, False)]


@pytest.mark.parametrize("count, size, shift, stride, drop_remainder", _WINDOW_CASES)
def test_window_dataset_tf(count, size, shift, stride, drop_remainder):  # WindowTest.testWindowDataset
    ds = Dataset.from_tensor_slices(_COMPONENTS).map(lambda x, y, z: (x * x, y * y, z * z)).repeat(count).window(
        size=size, shift=shift, stride=stride, drop_remainder=drop_remainder).flat_map(
        lambda x, y, z: Dataset.zip((x.batch(size), y.batch(size), z.batch(size))))
    assert [list(s.shape) for s in ds.element_spec] == [[None] + list(c.shape[1:]) for c in _COMPONENTS]
    it = ds.iterator()
    full = max(0, (count * 7 - ((size - 1) * stride + 1)) // shift + 1)
    for i in range(full):
        for component, got in zip(_COMPONENTS, it.get_next()):
            for j in range(size):
                np.testing.assert_array_equal(component[(i * shift + j * stride) % 7] ** 2, got[j])
    if not drop_remainder:
        partial = (count * 7) // shift + ((count * 7) % shift > 0) - full
        for i in range(partial):
            for component, got in zip(_COMPONENTS, it.get_next()):
                remaining = (count * 7) - ((full + i) * shift)
                for j in range(remaining // stride + ((remaining % stride) > 0)):
                    np.testing.assert_array_equal(component[((full + i) * shift + j * stride) % 7] ** 2, got[j])
    for _ in range(2):
        with pytest.raises(errors.OutOfRangeError):
            it.get_next()


@pytest.mark.parametrize("size, shift, stride", [(0, 3, 1), (3, 0, 1), (3, 3, 0)])
def test_window_dataset_invalid(size, shift, stride):  # WindowTest.testWindowDatasetInvalid
    with pytest.raises(errors.InvalidArgumentError):
        Dataset.range(10).map(lambda x: x).repeat(20).window(size=size, shift=shift, stride=stride)


def test_window_different_nested_structures():  # WindowTest.testWindowDifferentNestedStructures
    a, b = next(iter(Dataset.from_tensor_slices(([1, 2], [3, 4])).window(2)))
    assert ([int(v) for v in a], [int(v) for v in b]) == ([1, 2], [3, 4])
    d = next(iter(Dataset.from_tensor_slices({"a": [1, 2]}).window(2)))
    assert [int(v) for v in d["a"]] == [1, 2]


@pytest.mark.skip(reason="sparse tensors do not exist here (no SparseTensorValue)")
@pytest.mark.parametrize("case", ["testWindowSparse", "testWindowSparseWithDifferentDenseShapes",
                                  "testNestedWindowSparse"])
def test_window_sparse(case):
    pass


def test_window_shape_error():  # WindowTest.testWindowShapeError
    def generator():
        yield [1.0, 2.0, 3.0]
        yield [4.0, 5.0, 6.0]
        yield [7.0, 8.0, 9.0, 10.0]

    ds = Dataset.from_generator(generator, np.float32, output_shapes=[None]).window(size=3, shift=1).flat_map(
        lambda x: x.batch(batch_size=3))
    with pytest.raises(errors.InvalidArgumentError, match=r"Cannot batch tensors with different shapes in component 0. "
                       r"First element had shape \[3\] and element 2 had shape \[4\]."):
        list(ds)


def test_window_ignore_errors():  # WindowTest.testWindowIgnoreErrors (the stride steps over the failing elements)
    def check_numerics(x):
        if np.isnan(x):
            raise errors.InvalidArgumentError("message : Tensor had NaN values")
        return x

    ds = Dataset.from_tensor_slices(np.float32([1.0, np.nan, 2.0, np.nan, 3.0])).map(check_numerics).window(
        size=2, shift=2, stride=2, drop_remainder=True).flat_map(lambda x: x.batch(batch_size=2))
    assert [b.tolist() for b in ds] == [[1.0, 2.0], [2.0, 3.0]]


def test_drop_remainder_output():  # WindowTest.testDropRemainderOutput
    ds = Dataset.range(100).window(30, drop_remainder=True).flat_map(lambda x: x.batch(30)).batch(4)
    assert [b.tolist() for b in ds] == [[[y + 30 * x for y in range(30)] for x in range(3)]]


def test_name():  # WindowTest.testName (op names do not exist here: the output only)
    assert [int(x) for x in Dataset.from_tensors(42).window(1).flat_map(lambda x: x)] == [42]


@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn):  # WindowCheckpointTest.test
    verify(verify_fn, lambda: Dataset.range(42).window(6).interleave(lambda x: x, cycle_length=2,
                                                                     num_parallel_calls=2), 42)
