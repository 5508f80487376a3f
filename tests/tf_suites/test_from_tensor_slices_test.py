"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/from_tensor_slices_test.py`` and
``from_tensors_test.py``: the expected values are TensorFlow's, the code is ours."""

from __future__ import annotations

import collections


from pipeline.data import Dataset, DatasetSpec


def test_from_tensor_slices_dataset():  # FromTensorSlicesTest.testFromTensorSlicesDataset
    dss = [Dataset.range(10) for _ in range(10)]
    ds = Dataset.from_tensor_slices(dss).flat_map(lambda x: x)
    assert [int(x) for x in ds] == list(range(10)) * 10


def test_from_tensor_slices_dataset_of_ordered_dict():  # testFromTensorSlicesDatasetOfOrderedDict
    dss = [Dataset.range(10).map(lambda x: collections.OrderedDict([("x", x)])) for _ in range(10)]
    ds = Dataset.from_tensor_slices(dss)
    assert isinstance(ds.element_spec, DatasetSpec) and ds.cardinality() == 10
    assert [int(e["x"]) for e in ds.flat_map(lambda x: x)] == list(range(10)) * 10


def test_from_tensors_dataset():  # FromTensorsTest.testFromTensorsDataset
    ds = Dataset.from_tensors(Dataset.range(10)).flat_map(lambda x: x)
    assert [int(x) for x in ds] == list(range(10))


def test_a_list_of_datasets_is_never_iterated_into_bytes():
    # Before: each dataset in the list was iterated and its elements packed into bytes.
    runs = []

    def gen():
        runs.append(1)
        yield from range(3)

    # As TensorFlow (unbatch_test.testUnbatchNestedDataset): one element, a vector of datasets.
    ds = Dataset.from_tensors([Dataset.from_generator(gen), Dataset.range(2)])
    assert runs == []
    assert [int(x) for x in ds.unbatch().flat_map(lambda d: d)] == [0, 1, 2, 0, 1]
    assert runs == [1]
