"""The tf.data-style Data API: :class:`Dataset` and the file datasets, in pure Python.

Datasets are immutable descriptions (google/grain's design): each transformation returns a new
dataset, iteration happens in :class:`DatasetIterator` objects whose state is plain data and can
be restored exactly, also in another process.

Example:
    >>> import numpy as np
    >>> from pipeline.data import Dataset
    >>> [b.tolist() for b in Dataset.from_tensor_slices(np.arange(10)).repeat(3).batch(7)][:2]
    [[0, 1, 2, 3, 4, 5, 6], [7, 8, 9, 0, 1, 2, 3]]

Modules, one per transformation family: :mod:`.base` (Dataset, iterators), :mod:`.structure`
(elements, specs, state encoding), :mod:`.sources`, :mod:`.transforms`, :mod:`.batching`,
:mod:`.shuffle`, :mod:`.parallel` (map, interleave, prefetch), :mod:`.files` and :mod:`.bridges`
(server queues: the implementation of ``Dataset.from_queue`` / ``to_queue``, imported when first used).
"""

from .base import (
    AUTOTUNE,
    INFINITE_CARDINALITY,
    UNKNOWN_CARDINALITY,
    AsyncDatasetIterator,
    Dataset,
    DatasetIterator,
)
from .files import CsvDataset, FixedLengthRecordDataset, TextLineDataset, TFRecordDataset
from .structure import DatasetSpec, NoneTensorSpec, RaggedTensor, RaggedTensorSpec, TensorSpec, UnknownSpec

__all__ = [
    "AUTOTUNE",
    "INFINITE_CARDINALITY",
    "UNKNOWN_CARDINALITY",
    "AsyncDatasetIterator",
    "CsvDataset",
    "Dataset",
    "DatasetIterator",
    "DatasetSpec",
    "FixedLengthRecordDataset",
    "NoneTensorSpec",
    "RaggedTensor",
    "RaggedTensorSpec",
    "TFRecordDataset",
    "TensorSpec",
    "UnknownSpec",
    "TextLineDataset",
]
