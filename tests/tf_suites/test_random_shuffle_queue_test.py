"""Ported from TensorFlow's ``tensorflow/python/kernel_tests/data_structures/random_shuffle_queue_test.py``
(RandomShuffleQueueTest), on the real server: the expected values and error classes are
TensorFlow's, the code is ours. The tests shared with the other queue files live in
``tf_queue_cases.py``: this module imports those it ports (pytest collects them here, on this
module's RandomShuffleQueues, comparing contents, not order), each import naming the TensorFlow
test; the rest are written here. See ``test_fifo_queue_test.py`` for how graph constructs map to calls.

Seeds: a seeded queue's order is reproducible (the same seed, the same order), but it is not
TensorFlow's order (its Philox stream is not reproduced); TensorFlow's own tests only require that
different seeds give different orders, which these check. There is no graph-level seed: a queue
made without ``seed`` draws its order from the OS, and reopening a shared queue without a seed
accepts whatever seed it has (TensorFlow's rule for seed 0).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import queueserver as qs
import tf_queue_cases as cases
from tf_queue_cases import ELEMS4, ELEMS10, F, started, wait_until

KIND = "random_shuffle"
c, make, ordered = cases.c, cases.make, cases.ordered  # the fixtures: a client, fresh RandomShuffleQueues, False

# ----- RandomShuffleQueueTest

from tf_queue_cases import (  # noqa: F401 - shared tests, collected here
    test_parallel_enqueue,  # RandomShuffleQueueTest.testParallelEnqueue
    test_parallel_dequeue,  # RandomShuffleQueueTest.testParallelDequeue
    test_dequeue,  # RandomShuffleQueueTest.testDequeue
    test_enqueue_and_blocking_dequeue,  # RandomShuffleQueueTest.testEnqueueAndBlockingDequeue
    test_multi_enqueue_and_dequeue,  # RandomShuffleQueueTest.testMultiEnqueueAndDequeue
    test_queue_size_after_enqueue_and_dequeue,  # RandomShuffleQueueTest.testQueueSizeAfterEnqueueAndDequeue
    test_enqueue_many,  # RandomShuffleQueueTest.testEnqueueMany
    test_empty_dequeue_many,  # RandomShuffleQueueTest.testEmptyDequeueMany
    test_empty_dequeue_up_to,  # RandomShuffleQueueTest.testEmptyDequeueUpTo
    test_multi_enqueue_many,  # RandomShuffleQueueTest.testMultiEnqueueMany
    test_multi_dequeue_many,  # RandomShuffleQueueTest.testMultiDequeueMany
    test_multi_dequeue_up_to_no_blocking,  # RandomShuffleQueueTest.testMultiDequeueUpToNoBlocking
    test_high_dimension,  # RandomShuffleQueueTest.testHighDimension
    test_parallel_enqueue_many,  # RandomShuffleQueueTest.testParallelEnqueueMany
    test_parallel_dequeue_many,  # RandomShuffleQueueTest.testParallelDequeueMany
    test_blocking_dequeue_many,  # RandomShuffleQueueTest.testBlockingDequeueMany
    test_blocking_dequeue_up_to,  # RandomShuffleQueueTest.testBlockingDequeueUpTo
    test_dequeue_many_with_tensor_parameter,  # RandomShuffleQueueTest.testDequeueManyWithTensorParameter
    test_blocking_dequeue_from_closed_empty_queue,  # RandomShuffleQueueTest.testBlockingDequeueFromClosedEmptyQueue
    test_blocking_dequeue_many_from_closed_queue,  # RandomShuffleQueueTest.testBlockingDequeueManyFromClosedQueue
    test_blocking_enqueue_to_full_queue,  # RandomShuffleQueueTest.testBlockingEnqueueToFullQueue
    test_blocking_enqueue_many_to_full_queue,  # RandomShuffleQueueTest.testBlockingEnqueueManyToFullQueue
    test_select_queue,  # RandomShuffleQueueTest.testSelectQueue
    test_select_queue_out_of_range,  # RandomShuffleQueueTest.testSelectQueueOutOfRange
    test_big_enqueue_many,  # RandomShuffleQueueTest.testBigEnqueueMany
    test_big_dequeue_many,  # RandomShuffleQueueTest.testBigDequeueMany
)


def test_enqueue(make):  # RandomShuffleQueueTest.testEnqueue
    q = make(10, F, min_after_dequeue=5)
    assert q.size() == 0
    q.enqueue((10.0,))
    assert q.size() == 1


def test_enqueue_with_shape(make):  # RandomShuffleQueueTest.testEnqueueWithShape
    cases.test_enqueue_with_shape(lambda *a, **k: make(*a, min_after_dequeue=5, **k))


def test_enqueue_many_with_shape(make):  # RandomShuffleQueueTest.testEnqueueManyWithShape
    cases.test_enqueue_many_with_shape(lambda *a, **k: make(*a, min_after_dequeue=5, **k))
    q2 = make(10, np.int32, shapes=[3], min_after_dequeue=5)
    q2.enqueue(([1, 2, 3],))
    q2.enqueue_many(([[1, 2, 3]],))
    assert q2.size() == 2


def test_scalar_shapes(make):  # RandomShuffleQueueTest.testScalarShapes
    q = make(10, [np.int32, np.int32], shapes=[(), (1,)])
    q.enqueue_many([[1, 2, 3, 4], [[5], [6], [7], [8]]])
    q.enqueue([9, [10]])
    results = [(int(a), b.tolist()) for a, b in (q.dequeue() for _ in range(2))]
    a, b = q.dequeue_many(3)
    results += [(int(x), y) for x, y in zip(a, b.tolist())]
    assert sorted(results) == [(1, [5]), (2, [6]), (3, [7]), (4, [8]), (9, [10])]


def test_queue_size_empty(make):  # RandomShuffleQueueTest.testQueueSizeEmpty
    assert make(10, F, min_after_dequeue=5).size() == 0


def test_empty_enqueue_many(make):  # RandomShuffleQueueTest.testEmptyEnqueueMany
    cases.test_empty_enqueue_many(make, min_after_dequeue=5)


@pytest.mark.parametrize("up_to", [False, True], ids=["many", "up_to"])
def test_empty_dequeue_with_no_shape(make, up_to):
    # RandomShuffleQueueTest.testEmptyDequeueManyWithNoShape, testEmptyDequeueUpToWithNoShape
    q = make(10, F)
    take = q.dequeue_up_to if up_to else q.dequeue_many
    with pytest.raises(qs.InvalidArgumentError, match="require the components to have specified shapes"):
        take(0)
    q.enqueue((np.array([[10.0, 20.0]], np.float32),))
    # Not even when the elements enqueued would tell a shape.
    with pytest.raises(qs.InvalidArgumentError, match="require the components to have specified shapes"):
        take(0)
    assert q.size() == 1


def test_dequeue_many(make):  # RandomShuffleQueueTest.testDequeueMany
    q = make(10, F, [[]])
    q.enqueue_many((ELEMS10,))
    results = q.dequeue_many(5).tolist() + q.dequeue_many(5).tolist()
    assert sorted(results) == ELEMS10


def test_dequeue_up_to_no_blocking(make):  # RandomShuffleQueueTest.testDequeueUpToNoBlocking
    q = make(10, F, [[]])
    q.enqueue_many((ELEMS10,))
    results = q.dequeue_up_to(5).tolist() + q.dequeue_up_to(5).tolist()
    assert sorted(results) == ELEMS10


def test_parallel_dequeue_up_to(make):  # RandomShuffleQueueTest.testParallelDequeueUpTo
    cases.test_parallel_dequeue_many(make, up_to=True)


def test_parallel_dequeue_up_to_random_partition(make):  # RandomShuffleQueueTest.testParallelDequeueUpToRandomPartition
    rnd = random.Random(10)
    sizes = [rnd.randint(50, 150) for _ in range(10)]
    total = sum(sizes)
    q = make(total, F, [[]])
    elems = [10.0 * x for x in range(total)]
    q.enqueue_many((elems,))
    dequeued: list = []
    threads = [started(lambda n=n: dequeued.extend(q.dequeue_up_to(n).tolist())) for n in sizes]
    for t in threads:
        t.finish()
    assert sorted(dequeued) == elems


def test_dequeue_up_to_with_tensor_parameter(make, ordered):  # RandomShuffleQueueTest.testDequeueUpToWithTensorParameter
    cases.test_dequeue_many_with_tensor_parameter(make, ordered, up_to=True)


def test_dequeue_from_closed_queue(make, ordered):  # RandomShuffleQueueTest.testDequeueFromClosedQueue
    cases.test_dequeue_from_closed_queue(make, ordered, min_after_dequeue=2)


def test_blocking_dequeue_from_closed_queue(c, make):  # RandomShuffleQueueTest.testBlockingDequeueFromClosedQueue
    q = make(10, F, min_after_dequeue=2)
    q.enqueue_many((ELEMS4,))
    results = [float(q.dequeue()), float(q.dequeue())]  # down to min_after_dequeue

    def blocking_dequeue() -> None:
        results.append(float(q.dequeue()))
        results.append(float(q.dequeue()))
        assert sorted(results) == ELEMS4
        with pytest.raises(qs.OutOfRangeError, match="is closed and has insufficient"):
            q.dequeue()

    dequeuer = started(blocking_dequeue)
    wait_until(c, q, dequeues=1)
    assert len(results) == 2  # blocked by min_after_dequeue
    q.close()  # which no longer holds once the queue is closed
    dequeuer.finish()
    assert len(results) == 4


def test_blocking_dequeue_up_to_from_closed_queue_returns_remainder(c, make, ordered):
    # RandomShuffleQueueTest.testBlockingDequeueUpToFromClosedQueueReturnsRemainder
    cases.test_dequeue_up_to_from_closed_queue_returns_remainder(c, make, ordered)


def test_blocking_dequeue_up_to_smaller_than_min_after_dequeue(c, make, ordered):
    # RandomShuffleQueueTest.testBlockingDequeueUpToSmallerThanMinAfterDequeue
    cases.test_dequeue_up_to_from_closed_queue_returns_remainder(
        c, lambda *a, **k: make(*a, min_after_dequeue=2, **k), ordered)


def test_blocking_dequeue_many_from_closed_queue_with_elements_remaining(c, make):
    # RandomShuffleQueueTest.testBlockingDequeueManyFromClosedQueueWithElementsRemaining
    q = make(10, F, [[]])
    q.enqueue_many((ELEMS4,))
    results: list = []

    def dequeue() -> None:
        results.extend(q.dequeue_many(3).tolist())
        assert len(results) == 3
        with pytest.raises(qs.OutOfRangeError, match="is closed and has insufficient"):
            q.dequeue_many(3)
        # The failed dequeue gave back what it had taken: the cleanup gets one element.
        results.extend(q.dequeue_many(q.size()).tolist())

    dequeuer = started(dequeue)
    wait_until(c, q, dequeues=1)
    q.close()
    dequeuer.finish()
    assert sorted(results) == ELEMS4


def test_blocking_dequeue_many_from_closed_empty_queue(c, make):
    # RandomShuffleQueueTest.testBlockingDequeueManyFromClosedEmptyQueue
    cases.test_blocking_dequeue_many_from_closed_empty_queue(c, lambda *a, **k: make(*a, min_after_dequeue=5, **k))


def test_blocking_dequeue_up_to_from_closed_empty_queue(c, make):
    # RandomShuffleQueueTest.testBlockingDequeueUpToFromClosedEmptyQueue
    cases.test_blocking_dequeue_up_to_from_closed_empty_queue(c, lambda *a, **k: make(*a, min_after_dequeue=5, **k))


def test_enqueue_to_closed_queue(make):  # RandomShuffleQueueTest.testEnqueueToClosedQueue
    cases.test_enqueue_to_closed_queue(make, many=False, min_after_dequeue=4)


def test_enqueue_many_to_closed_queue(make):  # RandomShuffleQueueTest.testEnqueueManyToClosedQueue
    cases.test_enqueue_many_to_closed_queue(make, min_after_dequeue=5)


def test_blocking_enqueue_to_closed_queue(c, make):  # RandomShuffleQueueTest.testBlockingEnqueueToClosedQueue
    q = make(4, F, [[]])
    q.enqueue_many((ELEMS4,))

    def blocking_enqueue() -> None:
        q.enqueue((50.0,))  # completes: it was pending when the queue was closed
        with pytest.raises(qs.CancelledError, match="closed"):
            q.enqueue((50.0,))

    enqueuer = started(blocking_enqueue)
    wait_until(c, q, enqueues=1)
    closer = started(q.close)
    closer.finish()
    assert float(q.dequeue()) in ELEMS4  # lets the pending enqueue place its element
    enqueuer.finish()
    assert q.size() == 4


def test_blocking_enqueue_many_to_closed_queue(c, make):  # RandomShuffleQueueTest.testBlockingEnqueueManyToClosedQueue
    q = make(4, F, [[]])
    q.enqueue_many(([10.0, 20.0, 30.0],))
    assert q.size() == 3
    enqueuer = started(q.enqueue_many, ([50.0, 60.0],))
    wait_until(c, q, enqueues=1)
    assert q.size() == 4  # one of two placed; it waits for room for the other
    closer = started(q.close)
    closer.finish()
    q.dequeue()
    enqueuer.finish()
    with pytest.raises(qs.CancelledError, match="closed"):
        q.enqueue_many(([50.0, 60.0],))


def test_shared_queue_same_session(make):  # RandomShuffleQueueTest.testSharedQueueSameSession
    # TensorFlow's q1 takes its seed from the test's graph seed (887634792); there is no graph seed
    # here, so q1 names the same seed q2 asks for.
    cases.test_shared_queue_same_session(lambda *a, **k: make(*a, seed=887634792, **k))


def test_shared_queue_same_session_graph_seed_none(make):  # RandomShuffleQueueTest.testSharedQueueSameSessionGraphSeedNone
    q1 = make(1, F, [[]], name="shared_queue", seed=98765432)
    q1.enqueue((10.0,))
    q2 = make(1, F, [[]], name="shared_queue")  # no seed: accepts the shared queue's
    assert q1.size() == q2.size() == 1


def test_incompatible_shared_queue_errors(c):  # RandomShuffleQueueTest.testIncompatibleSharedQueueErrors
    c.random_shuffle_queue("q_a", 10, 5, F)
    with pytest.raises(qs.InvalidArgumentError, match="capacity"):
        c.random_shuffle_queue("q_a", 15, 5, F)
    c.random_shuffle_queue("q_b", 10, 0, F)
    with pytest.raises(qs.InvalidArgumentError, match="min_after_dequeue"):
        c.random_shuffle_queue("q_b", 10, 5, F)
    c.random_shuffle_queue("q_c", 10, 5, F)
    with pytest.raises(qs.InvalidArgumentError, match="component types"):
        c.random_shuffle_queue("q_c", 10, 5, np.int32)
    c.random_shuffle_queue("q_d", 10, 5, F)
    with pytest.raises(qs.InvalidArgumentError, match="component shapes"):
        c.random_shuffle_queue("q_d", 10, 5, F, shapes=[(1, 1, 2, 3)])
    c.random_shuffle_queue("q_e", 10, 5, F, shapes=[(1, 1, 2, 3)])
    with pytest.raises(qs.InvalidArgumentError, match="component shapes"):
        c.random_shuffle_queue("q_e", 10, 5, F)
    c.random_shuffle_queue("q_f", 10, 5, F, shapes=[(1, 1, 2, 3)])
    with pytest.raises(qs.InvalidArgumentError, match="component shapes"):
        c.random_shuffle_queue("q_f", 10, 5, F, shapes=[(1, 1, 2, 4)])
    c.random_shuffle_queue("q_g", 10, 5, F)
    with pytest.raises(qs.InvalidArgumentError, match="component types"):
        c.random_shuffle_queue("q_g", 10, 5, (F, np.int32))
    c.random_shuffle_queue("q_h", 10, 5, F, seed=12)
    with pytest.raises(qs.InvalidArgumentError, match=r"random seeds \(12\) but requested seeds were \(21\)"):
        c.random_shuffle_queue("q_h", 10, 5, F, seed=21)


def test_reset_of_blocking_operation(c, local_server, make):  # RandomShuffleQueueTest.testResetOfBlockingOperation
    cases.test_reset_of_blocking_operation(c, local_server, make, up_to=True)


def _orders(make, mode: str, seeds=(1729, 87539319)) -> list[list[int]]:
    """TensorFlow's four runs: two seeded queues, each dequeued open (above min_after_dequeue) and closed."""
    queues = [make(10, np.int32, [[]], min_after_dequeue=5, seed=seed) for seed in seeds]
    for q in queues:
        q.enqueue_many(([1, 2, 3, 4, 5],))
        q.enqueue_many(([1, 2, 3, 4, 5],))

    def take(q) -> list[int]:
        if mode == "one":
            return [int(q.dequeue()) for _ in range(5)]
        return (q.dequeue_many(5) if mode == "many" else q.dequeue_up_to(5)).tolist()

    results = [take(q) for q in queues]
    for q in queues:
        q.close()
    return results + [take(q) for q in queues]


@pytest.mark.parametrize("mode", ["many", "up_to", "one"])
def test_dequeue_in_different_orders(make, mode):
    # RandomShuffleQueueTest.testDequeueManyInDifferentOrders, testDequeueUpToInDifferentOrders,
    # testDequeueInDifferentOrders
    results = _orders(make, mode)
    for i in range(1, 4):
        for j in range(i):
            assert results[i] != results[j]
    # The seeds make it reproducible: the same seeds give the same four orders.
    assert _orders(make, mode) == results
