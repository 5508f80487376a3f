"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/get_single_element_test.py`` (its
first case started in ``test_take_while_and_choose_test.py``): the expected values and error classes
are TensorFlow's, the code is ours."""

from __future__ import annotations

import pytest

from pipeline.data import Dataset
from queueserver import errors


@pytest.mark.parametrize("skip, take, error_msg", [
    (0, 1, None), (5, 1, None), (10, 1, None), (100, 1, "Dataset was empty."),
    (0, 2, "Dataset had more than one element."),
])
def test_basic(skip, take, error_msg):
    # GetSingleElementTest.testBasic (its sparse component does not exist here: the dense one)
    ds = Dataset.range(100).skip(skip).map(lambda x: (x * x, x)).take(take)
    if error_msg is None:
        dense, value = ds.get_single_element()
        assert (int(dense), int(value)) == (skip * skip, skip)
    else:
        with pytest.raises(errors.InvalidArgumentError, match=error_msg):
            ds.get_single_element()


def test_window():  # GetSingleElementTest.testWindow: get_single_element of a nested dataset
    ds = Dataset.range(10).window(2).flat_map(lambda w: Dataset.from_tensors(w.batch(2).get_single_element()))
    assert [b.tolist() for b in ds] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_side_effect():  # GetSingleElementTest.testSideEffect (a tf.function there: a plain function here)
    counter = [0]

    def increment_fn(x):
        counter[0] += 1
        return x

    def fn():
        Dataset.range(1).map(increment_fn).get_single_element()
        return "hello"

    assert fn() == "hello" and counter == [1]


def test_automatic_control_dependencies():  # GetSingleElementTest.testAutomaticControlDependencies
    counter = [1]

    def increment_fn(x):
        counter[0] += 1
        return x

    def multiply_fn(x):
        counter[0] *= 2
        return x

    Dataset.range(1).map(increment_fn).get_single_element()
    Dataset.range(1).map(multiply_fn).get_single_element()
    assert counter == [4]  # in program order: (1 + 1) * 2


def test_name():  # GetSingleElementTest.testName (op names do not exist here: the output only)
    assert int(Dataset.from_tensors(42).get_single_element()) == 42
