"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/zip_test.py`` (and the zip case
of ``ignore_errors_test.py``): the expected values are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import Dataset
from queueserver import errors


def _fails_on(bad: int):
    def fn(x):
        if int(x) == bad:
            raise ValueError(f"element {bad}")
        return x
    return fn


def test_zip_equal_and_unequal_lengths():  # zip_test.ZipTest.testZipEqual / testZipUnequal
    a, b = Dataset.range(4), Dataset.range(10, 14)
    assert [(int(x), int(y)) for x, y in Dataset.zip((a, b))] == [(0, 10), (1, 11), (2, 12), (3, 13)]
    assert [(int(x), int(y)) for x, y in Dataset.zip((Dataset.range(2), b))] == [(0, 10), (1, 11)]


def test_an_input_that_raises_does_not_put_the_others_out_of_step():
    # TensorFlow advances every input even when one fails, and then reports the error.
    zipped = Dataset.zip((Dataset.range(5).map(_fails_on(2)), Dataset.range(5)))
    it = iter(zipped)
    seen = [tuple(int(v) for v in next(it)) for _ in range(2)]
    with pytest.raises(errors.InvalidArgumentError, match="element 2"):
        next(it)
    seen += [tuple(int(v) for v in t) for t in it]
    assert seen == [(0, 0), (1, 1), (3, 3), (4, 4)]


def test_zip_under_ignore_errors_skips_the_whole_tuple():  # ignore_errors_test: testZipIgnoreError
    a = Dataset.from_tensor_slices(np.array([1.0, 2.0, 0.0, 4.0], np.float32))
    b = Dataset.from_tensor_slices(np.array([1.0, 2.0, 3.0, 4.0], np.float32))

    def inverse(x):
        if float(x) == 0.0:
            raise errors.InvalidArgumentError("error: Tensor had Inf values")
        return np.float32(1.0) / x

    out = Dataset.zip((a.map(inverse), b)).map(lambda x, y: x + y).ignore_errors()
    assert [float(v) for v in out] == [2.0, 2.5, 4.25]


def test_a_zip_that_ended_stays_ended_across_a_checkpoint():
    zipped = Dataset.zip((Dataset.range(1), Dataset.range(5)))
    it = zipped.iterator()
    assert [int(x) for x, _ in it] == [0]
    resumed = zipped.iterator(state=it.get_state())
    assert list(resumed) == []


def test_zip_cardinality():  # cardinality_test: Zip cases
    assert Dataset.zip((Dataset.range(5), Dataset.range(3))).cardinality() == 3
    assert Dataset.zip((Dataset.range(5), Dataset.range(3).repeat())).cardinality() == 5
    assert Dataset.zip((Dataset.range(3).repeat(), Dataset.range(3).repeat())).cardinality() == -1
    # One input of unknown length (filtered: 3 of 5 remain) makes the zip's unknown, never 5.
    filtered = Dataset.range(5).filter(lambda x: x < 3)
    assert Dataset.zip((Dataset.range(5), filtered)).cardinality() == -2
    assert len(list(Dataset.zip((Dataset.range(5), filtered)))) == 3
