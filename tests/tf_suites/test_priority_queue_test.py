"""Ported from TensorFlow's ``tensorflow/python/kernel_tests/data_structures/priority_queue_test.py``
(PriorityQueueTest), on the real server: the expected values and error classes are TensorFlow's,
the code is ours. A PriorityQueue's ``dtypes`` and ``shapes`` are its values'; every element is
``(int64 priority, *values)``, the smallest priority first.

TensorFlow's random inputs come from a fixed ``np.random.default_rng`` here, so a failure repeats.
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

import queueserver as qs
import tf_queue_cases as cases
from tf_queue_cases import started, wait_until

KIND = "priority"
c, make = cases.c, cases.make  # the fixtures: a client, and fresh PriorityQueues: make(capacity, dtypes, shapes)


def _sides(rng, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TensorFlow's inputs: int64 priorities in [-5, 5) and two random byte strings per element."""
    elem = rng.integers(-5, 5, size=n).astype(np.int64)
    return elem, rng.random(n).astype(bytes), rng.random(n).astype(bytes)


def _batches(seed: int) -> tuple[list[np.ndarray], list[int]]:
    """TensorFlow's batches: 40 of up to 9 values in [0, 5), and the batch sizes shuffled (one dequeue each)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(10, size=40)
    values = [rng.integers(5, size=n) for n in counts]
    shuffled = list(counts)
    random.Random(seed).shuffle(shuffled)
    return values, shuffled


def _check_sorted_pairs(elem, side0, side1, deq_elem, deq0, deq1, all_taken: bool = True) -> None:
    """The priorities come out sorted, each with a pair of values enqueued under it, every pair once."""
    allowed: dict = {}
    missed = set()
    for e, v0, v1 in zip(elem, side0, side1):
        allowed.setdefault(int(e), set()).add((bytes(v0), bytes(v1)))
        missed.add((bytes(v0), bytes(v1)))
    assert deq_elem.tolist() == sorted(elem.tolist())
    for e, d0, d1 in zip(deq_elem, deq0, deq1):
        assert (d0, d1) in allowed[int(e)]
        if all_taken:
            missed.remove((d0, d1))
    if all_taken:
        assert missed == set()


def test_round_trip_insert_read_once_sorts(make):  # PriorityQueueTest.testRoundTripInsertReadOnceSorts
    q = make(2000, ("string", "string"), ((), ()))
    elem, side0, side1 = _sides(np.random.default_rng(1), 100)
    for e, v0, v1 in zip(elem, side0, side1):
        q.enqueue((e, v0, v1))
    _check_sorted_pairs(elem, side0, side1, *q.dequeue_many(100))


def test_round_trip_insert_multi_threaded_read_once_sorts(make):
    # PriorityQueueTest.testRoundTripInsertMultiThreadedReadOnceSorts
    q = make(2000, ("string", "string"), ((), ()))
    elem, side0, side1 = _sides(np.random.default_rng(2), 100)
    threads = [started(q.enqueue, (e, v0, v1)) for e, v0, v1 in zip(elem, side0, side1)]
    result = q.dequeue_many(100)  # waits for all 100, then takes them sorted
    for t in threads:
        t.finish()
    _check_sorted_pairs(elem, side0, side1, *result)


def test_round_trip_fills_capacity_multi_threaded_enqueue_and_dequeue(make):
    # PriorityQueueTest.testRoundTripFillsCapacityMultiThreadedEnqueueAndDequeue
    q = make(10, np.int64, ())
    values, shuffled = _batches(3)
    dequeued: list = []

    def dequeue(n: int) -> None:
        indices, vals = q.dequeue_many(n)
        assert indices.tolist() == vals.tolist()
        dequeued.extend(indices.tolist())

    dequeuers = [started(dequeue, int(n)) for n in shuffled]
    enqueuers = [started(q.enqueue_many, (v, v)) for v in values]
    for t in enqueuers + dequeuers:
        t.finish()
    assert sorted(dequeued) == sorted(np.hstack(values).tolist())


def test_round_trip_insert_many_multi_threaded_read_many_multithreaded_sorts(make):
    # PriorityQueueTest.testRoundTripInsertManyMultiThreadedReadManyMultithreadedSorts
    q = make(2000, np.int64, ())
    values, shuffled = _batches(4)
    lock = threading.Lock()
    dequeued: list = []

    def dequeue(n: int) -> None:
        indices, vals = q.dequeue_many(n)
        assert indices.tolist() == vals.tolist() == sorted(indices.tolist())
        with lock:
            dequeued.extend(indices.tolist())

    for t in [started(q.enqueue_many, (v, v)) for v in values]:
        t.finish()
    for t in [started(dequeue, int(n)) for n in shuffled]:
        t.finish()
    assert sorted(dequeued) == sorted(np.hstack(values).tolist())


def test_round_trip_insert_many_multi_threaded_read_once_sorts(make):
    # PriorityQueueTest.testRoundTripInsertManyMultiThreadedReadOnceSorts
    q = make(2000, ("string", "string"), ((), ()))
    elem, side0, side1 = _sides(np.random.default_rng(5), 100)
    batch = 5
    threads = [started(q.enqueue_many, (elem[i * batch:(i + 1) * batch], side0[i * batch:(i + 1) * batch],
                                        side1[i * batch:(i + 1) * batch])) for i in range(20)]
    result = q.dequeue_many(100)
    for t in threads:
        t.finish()
    _check_sorted_pairs(elem, side0, side1, *result)


def test_round_trip_insert_once_read_once_sorts(make):  # PriorityQueueTest.testRoundTripInsertOnceReadOnceSorts
    q = make(2000, ("string", "string"), ((), ()))
    rng = np.random.default_rng(6)
    elem = rng.integers(-100, 100, size=1000).astype(np.int64)
    side0, side1 = rng.random(1000).astype(bytes), rng.random(1000).astype(bytes)
    q.enqueue_many((elem, side0, side1))
    _check_sorted_pairs(elem, side0, side1, *q.dequeue_many(1000))


def test_round_trip_insert_once_read_many_sorts(make):  # PriorityQueueTest.testRoundTripInsertOnceReadManySorts
    q = make(2000, np.int64, ())
    elem = np.random.default_rng(7).integers(-100, 100, size=1000).astype(np.int64)
    q.enqueue_many((elem, elem))
    got = np.hstack([q.dequeue_many(100)[0] for _ in range(10)])
    assert got.tolist() == sorted(elem.tolist())


def test_round_trip_insert_once_read_once_lots_sorts(make):  # PriorityQueueTest.testRoundTripInsertOnceReadOnceLotsSorts
    q = make(2000, np.int64, ())
    elem = np.random.default_rng(8).integers(-100, 100, size=1000).astype(np.int64)
    q.enqueue_many((elem, elem))
    got = [int(q.dequeue()[0]) for _ in range(1000)]
    assert got == sorted(elem.tolist())


def test_inserting_non_int64_fails(make):  # PriorityQueueTest.testInsertingNonInt64Fails
    # TensorFlow: TypeError while building the graph; here the call is refused, and adds nothing.
    q = make(2000, "string", ())
    with pytest.raises(qs.InvalidArgumentError, match="component 0. Expected int64, got string"):
        q.enqueue_many((["a", "b", "c"], ["a", "b", "c"]))
    assert q.size() == 0


def test_inserting_non_scalar_fails(make):  # PriorityQueueTest.testInsertingNonScalarFails
    q = make(2000, ("string",), ())
    rng = np.random.default_rng(9)
    with pytest.raises(qs.InvalidArgumentError, match=r"Shape mismatch in tuple component 0. Expected \[\], got \[2\]"):
        q.enqueue((np.array([0, 2], np.int64), rng.random((3, 5)).astype(bytes)))
    with pytest.raises(qs.InvalidArgumentError,
                       match=r"Shape mismatch in tuple component 0. Expected \[2\], got \[2,2\]"):
        q.enqueue_many((np.array([[0, 2], [3, 4]], np.int64), rng.random((2, 3)).astype(bytes)))
    assert q.size() == 0


def test_dequeue_many_waits_for_its_whole_batch_to_sort_it(c, make):
    # TensorFlow's PriorityQueue takes a dequeue_many's batch only once all of it is there, so the
    # batch comes out sorted (the multi-threaded round trips above rely on it). Taking elements as
    # they arrived gave [5, 1, 3] here.
    q = make(10, np.int64, ())
    result: list = []
    dequeuer = started(lambda: result.extend(q.dequeue_many(3)[0].tolist()))
    for p in (5, 1, 3):
        wait_until(c, q, dequeues=1)
        q.enqueue((p, p))
    dequeuer.finish()
    assert result == [1, 3, 5]
    # dequeue_up_to on a closed queue still returns what is left, sorted.
    q.enqueue_many(([9, 7], [9, 7]))
    taker = started(lambda: result.extend(q.dequeue_up_to(3)[0].tolist()))
    wait_until(c, q, dequeues=1)
    q.close()
    taker.finish()
    assert result == [1, 3, 5, 7, 9]
