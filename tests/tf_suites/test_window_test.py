"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/window_test.py``: the expected
values are TensorFlow's, the code is ours."""

from __future__ import annotations

import pytest

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
