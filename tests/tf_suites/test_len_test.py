"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/len_test.py``: the expected values
and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import pytest

from pipeline.data import Dataset


def test_known():  # LenTest.testKnown
    assert len(Dataset.range(10)) == 10


def test_infinite():  # LenTest.testInfinite
    with pytest.raises(TypeError, match="infinite"):
        len(Dataset.range(10).repeat())


def test_unknown():  # LenTest.testUnknown
    with pytest.raises(TypeError, match="unknown"):
        len(Dataset.range(10).filter(lambda x: True))


@pytest.mark.skip(reason="graph mode only: len() while tracing a tf.function")
def test_graph_mode():  # LenTest.testGraphMode
    pass
