"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/enumerate_test.py``: the
expected values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, plain, verify

from pipeline.data import Dataset


def test_enumerate():  # EnumerateTest.testEnumerate
    ds = Dataset.from_tensor_slices((["a", "b"], [1, 2], [37.0, 38])).enumerate(np.int64(20))
    index_spec, element_spec = ds.element_spec
    assert index_spec.dtype_name == "int64" and index_spec.shape == ()
    assert [s.shape for s in element_spec] == [(), (), ()]
    assert [plain(e) for e in ds] == [(20, (b"a", 1, 37.0)), (21, (b"b", 2, 38.0))]


# experimental_symbolic_checkpoint is an Option not present here: both values run the same.
@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, symbolic_checkpoint):  # EnumerateCheckpointTest.test
    verify(verify_fn, lambda: Dataset.range(2, 10).enumerate(), 8)
