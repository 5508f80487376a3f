"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/filter_test.py`` (and
``filter_test_base.py``; ``filter_with_legacy_function`` is TF1 graph tracing, the same filter
here): the expected values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest
from tf_checkpoint import VERIFY_FNS, plain, verify

from pipeline.data import Dataset
from queueserver import errors

_COMPONENTS = (np.arange(7, dtype=np.int64), np.array([[1, 2, 3]], dtype=np.int64) * np.arange(7, dtype=np.int64)[:, None],
               np.array(37.0, dtype=np.float64) * np.arange(7))


@pytest.mark.parametrize("count, modulus", [(14, 2), (4, 18), (0, 1)])
def test_filter_dataset(count, modulus):  # FilterTest.testFilterDataset (its three do_test runs)
    ds = Dataset.from_tensor_slices(_COMPONENTS).map(lambda x, y, z: (x * x, y * y, z * z)).repeat(count)
    ds = ds.filter(lambda x, _y, _z: x % modulus == 0)
    assert [s.shape for s in ds.element_spec] == [c.shape[1:] for c in _COMPONENTS]
    it = ds.iterator()
    for _ in range(count):
        for i in [x for x in range(7) if x**2 % modulus == 0]:
            for component, got in zip(_COMPONENTS, it.get_next()):
                np.testing.assert_array_equal(component[i] ** 2, got)
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()


def test_filter_range():  # FilterTest.testFilterRange
    assert [int(x) for x in Dataset.range(4).filter(lambda x: x % 3 != 2)] == [0, 1, 3]


def _dict_dataset():
    return (Dataset.range(10).map(lambda x: {"foo": x * 2, "bar": x**2}).filter(lambda d: d["bar"] % 2 == 0)
            .map(lambda d: d["foo"] + d["bar"]))


def test_filter_dict():  # FilterTest.testFilterDict
    assert [int(x) for x in _dict_dataset()] == [i * 2 + i**2 for i in range(10) if not (i**2) % 2]


def test_use_step_container_in_filter():  # FilterTest.testUseStepContainerInFilter
    ds = Dataset.from_tensor_slices([[1, 2, 3], [4, 5, 6]]).filter(lambda xs: np.sum(xs * xs) == 1 + 4 + 9)
    assert [x.tolist() for x in ds] == [[1, 2, 3]]


@pytest.mark.skip(reason="sparse tensors do not exist here (no SparseTensorValue)")
def test_sparse():  # FilterTest.testSparse
    pass


def test_short_circuit():  # FilterTest.testShortCircuit
    ds = Dataset.zip((Dataset.range(10), Dataset.from_tensors(True).repeat(None))).filter(lambda x, y: y)
    assert [plain(e) for e in ds] == [(i, True) for i in range(10)]


def test_parallel_filters():  # FilterTest.testParallelFilters
    ds = Dataset.range(10).filter(lambda x: x % 2 == 0)
    iterators = [ds.iterator() for _ in range(10)]
    assert [int(it.get_next()) for it in iterators] == [0] * 10


def test_name():  # FilterTest.testName (op names do not exist here: the output only)
    assert [int(x) for x in Dataset.from_tensors(42).filter(lambda x: True)] == [42]


def test_predicate_fail_with_error_context():
    # FilterTest.testPredicateFailWithErrorContext: InvalidArgumentError whose message says which
    # transformation's user function failed (TensorFlow's names its iterator path; ours the
    # transformation and the function).
    it = Dataset.from_tensors(42).filter(lambda x: (int(x) // 0) > 0).iterator()
    with pytest.raises(errors.InvalidArgumentError, match=r"in Dataset.filter\(predicate=.*lambda.*ZeroDivisionError"):
        it.get_next()


def test_predicate_must_return_a_scalar_bool():  # our case: TensorFlow refuses other predicate results
    with pytest.raises(errors.InvalidArgumentError, match="scalar boolean"):
        list(Dataset.range(3).filter(lambda x: x))


@pytest.mark.parametrize("symbolic_checkpoint", [False, True])
@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint(verify_fn, symbolic_checkpoint):
    # FilterCheckpointTest.test (experimental_symbolic_checkpoint: an Option not present here;
    # both values run the same)
    verify(verify_fn, lambda: Dataset.range(100).filter(lambda x: x % 3 != 2), sum(x % 3 != 2 for x in range(100)))


@pytest.mark.parametrize("verify_fn", VERIFY_FNS)
def test_checkpoint_dict(verify_fn):  # FilterCheckpointTest.testDict
    verify(verify_fn, _dict_dataset, sum((x**2) % 2 == 0 for x in range(10)))


@pytest.mark.skip(reason="sparse tensors do not exist here (no SparseTensor)")
def test_checkpoint_sparse():  # FilterCheckpointTest.testSparse
    pass


@pytest.mark.skip(reason="global_shuffle (random access over the whole input) does not exist here")
@pytest.mark.parametrize("case", ["FilterGlobalShuffleTest.testShuffleFilter", "FilterGlobalShuffleTest.testFilterShuffle",
                                  "FilterGlobalShuffleCheckpointTest.testShuffleFilter"])
def test_global_shuffle(case):
    pass
