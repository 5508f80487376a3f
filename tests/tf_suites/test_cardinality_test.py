"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/cardinality_test.py`` (the TF2
cases: ``map`` keeps the cardinality; the TF1-only UNKNOWN for map is graph-mode history): the
expected values are TensorFlow's, the code is ours. (Filtered inputs, as TensorFlow: UNKNOWN.)"""

from __future__ import annotations

import pytest

from pipeline.data import INFINITE_CARDINALITY as INFINITE
from pipeline.data import UNKNOWN_CARDINALITY as UNKNOWN
from pipeline.data import Dataset


def _filtered():
    return Dataset.range(5).filter(lambda _: True)


CASES = [
    ("Map1", lambda: Dataset.range(5).map(lambda x: x), 5),
    ("Map2", lambda: Dataset.range(5).map(lambda x: x, num_parallel_calls=1), 5),
    ("Batch1", lambda: Dataset.range(5).batch(2, drop_remainder=True), 2),
    ("Batch2", lambda: Dataset.range(5).batch(2, drop_remainder=False), 3),
    ("Batch3", lambda: _filtered().batch(2), UNKNOWN),
    ("Batch4", lambda: Dataset.range(5).repeat().batch(2), INFINITE),
    ("Cache1", lambda: Dataset.range(5).cache(), 5),
    ("Cache2", lambda: Dataset.range(5).cache("foo"), 5),
    ("Concatenate1", lambda: Dataset.range(5).concatenate(Dataset.range(5)), 10),
    ("Concatenate2", lambda: _filtered().concatenate(Dataset.range(5)), UNKNOWN),
    ("Concatenate3", lambda: Dataset.range(5).repeat().concatenate(Dataset.range(5)), INFINITE),
    ("Concatenate4", lambda: Dataset.range(5).concatenate(_filtered()), UNKNOWN),
    ("Concatenate5", lambda: _filtered().concatenate(_filtered()), UNKNOWN),
    ("Concatenate6", lambda: Dataset.range(5).repeat().concatenate(_filtered()), INFINITE),
    ("Concatenate7", lambda: Dataset.range(5).concatenate(Dataset.range(5).repeat()), INFINITE),
    ("Concatenate8", lambda: _filtered().concatenate(Dataset.range(5).repeat()), INFINITE),
    ("Concatenate9", lambda: Dataset.range(5).repeat().concatenate(Dataset.range(5).repeat()), INFINITE),
    ("FlatMap", lambda: Dataset.range(5).flat_map(lambda _: Dataset.from_tensors(0)), UNKNOWN),
    ("Filter", _filtered, UNKNOWN),
    ("FromTensors1", lambda: Dataset.from_tensors(0), 1),
    ("FromTensors2", lambda: Dataset.from_tensors((0, 1)), 1),
    ("FromTensorSlices1", lambda: Dataset.from_tensor_slices([0, 0, 0]), 3),
    ("FromTensorSlices2", lambda: Dataset.from_tensor_slices(([0, 0, 0], [1, 1, 1])), 3),
    ("Interleave1", lambda: Dataset.range(5).interleave(lambda _: Dataset.from_tensors(0), cycle_length=1), UNKNOWN),
    ("Interleave2", lambda: Dataset.range(5).interleave(lambda _: Dataset.from_tensors(0), cycle_length=1,
                                                        num_parallel_calls=1), UNKNOWN),
    ("Interleave3", lambda: Dataset.range(5).repeat().interleave(lambda _: Dataset.from_tensors(0), cycle_length=1,
                                                                 num_parallel_calls=1), INFINITE),
    ("PaddedBatch1", lambda: Dataset.range(5).padded_batch(2, [], drop_remainder=True), 2),
    ("PaddedBatch2", lambda: Dataset.range(5).padded_batch(2, [], drop_remainder=False), 3),
    ("PaddedBatch3", lambda: _filtered().padded_batch(2, []), UNKNOWN),
    ("PaddedBatch4", lambda: Dataset.range(5).repeat().padded_batch(2, []), INFINITE),
    ("Prefetch", lambda: Dataset.range(5).prefetch(buffer_size=1), 5),
    ("Range1", lambda: Dataset.range(0), 0),
    ("Range2", lambda: Dataset.range(5), 5),
    ("Range3", lambda: Dataset.range(5, 10), 5),
    ("Range4", lambda: Dataset.range(10, 5), 0),
    ("Range5", lambda: Dataset.range(5, 10, 2), 3),
    ("Range6", lambda: Dataset.range(10, 5, -2), 3),
    ("Range7", lambda: Dataset.range(0, 0, -2), 0),
    ("Range8", lambda: Dataset.range(3, 3, 1), 0),
    ("Range9", lambda: Dataset.range(-4, -4, 2), 0),
    ("Range10", lambda: Dataset.range(1, 0, 3), 0),
    ("Range11", lambda: Dataset.range(0, 1, -3), 0),
    ("Repeat1", lambda: Dataset.range(0).repeat(0), 0),
    ("Repeat2", lambda: Dataset.range(1).repeat(0), 0),
    ("Repeat3", lambda: Dataset.range(0).repeat(5), 0),
    ("Repeat4", lambda: Dataset.range(1).repeat(5), 5),
    ("Repeat5", lambda: Dataset.range(0).repeat(), 0),
    ("Repeat6", lambda: Dataset.range(1).repeat(), INFINITE),
    ("Shuffle", lambda: Dataset.range(5).shuffle(buffer_size=1), 5),
    ("Shard1", lambda: Dataset.range(5).shard(2, 0), 3),
    ("Shard2", lambda: Dataset.range(5).shard(8, 7), 0),
    ("Shard3", lambda: _filtered().shard(2, 0), UNKNOWN),
    ("Shard4", lambda: Dataset.range(5).repeat().shard(2, 0), INFINITE),
    ("Skip1", lambda: Dataset.range(5).skip(2), 3),
    ("Skip2", lambda: Dataset.range(5).skip(8), 0),
    ("Skip3", lambda: _filtered().skip(2), UNKNOWN),
    ("Skip4", lambda: Dataset.range(5).repeat().skip(2), INFINITE),
    ("Take1", lambda: Dataset.range(5).take(2), 2),
    ("Take2", lambda: Dataset.range(5).take(8), 5),
    ("Take3", lambda: _filtered().take(2), UNKNOWN),
    ("Take4", lambda: Dataset.range(5).repeat().take(2), 2),
    ("Window1", lambda: Dataset.range(5).window(size=2, shift=2, drop_remainder=True), 2),
    ("Window2", lambda: Dataset.range(5).window(size=2, shift=2, drop_remainder=False), 3),
    ("Zip1", lambda: Dataset.zip(Dataset.range(5)), 5),
    ("Zip2", lambda: Dataset.zip((Dataset.range(5), Dataset.range(3))), 3),
    ("Zip3", lambda: Dataset.zip((Dataset.range(5), Dataset.range(3).repeat())), 5),
    ("Zip4", lambda: Dataset.zip((Dataset.range(5).repeat(), Dataset.range(3).repeat())), INFINITE),
    ("Zip5", lambda: Dataset.zip((Dataset.range(5), Dataset.range(3).filter(lambda _: True))), UNKNOWN),
]


@pytest.mark.parametrize("name, dataset_fn, expected", CASES, ids=[c[0] for c in CASES])
def test_cardinality(name, dataset_fn, expected):  # CardinalityTest.testCardinality
    ds = dataset_fn()
    assert ds.cardinality() == expected
    if expected >= 0 and name != "Cache2":  # and the figure is true (Cache2 is not run: it would write ./foo)
        assert len(list(ds)) == expected
