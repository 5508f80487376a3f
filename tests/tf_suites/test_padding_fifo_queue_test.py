"""Ported from TensorFlow's ``tensorflow/python/kernel_tests/data_structures/padding_fifo_queue_test.py``
(PaddingFIFOQueueTest, QueueFromListTest), on the real server: the expected values and error
classes are TensorFlow's, the code is ours. The tests shared with the other queue files live in
``tf_queue_cases.py``: this module imports those it ports (pytest collects them here, on this
module's PaddingFIFOQueues), each import naming the TensorFlow test; the rest are written here. See
``test_fifo_queue_test.py`` for how graph constructs map to calls.
"""

from __future__ import annotations

import numpy as np
import pytest

import queueserver as qs
import tf_queue_cases as cases
from tf_queue_cases import ELEMS10, F, INT_PAIRS10

KIND = "padding_fifo"
c, make, ordered = cases.c, cases.make, cases.ordered  # the fixtures: a client, fresh PaddingFIFOQueues, True

# ----- PaddingFIFOQueueTest

from tf_queue_cases import (  # noqa: F401 - shared tests, collected here
    test_enqueue_with_shape,  # PaddingFIFOQueueTest.testEnqueueWithShape
    test_enqueue_many_with_shape,  # PaddingFIFOQueueTest.testEnqueueManyWithShape
    test_parallel_enqueue,  # PaddingFIFOQueueTest.testParallelEnqueue
    test_parallel_dequeue,  # PaddingFIFOQueueTest.testParallelDequeue
    test_dequeue,  # PaddingFIFOQueueTest.testDequeue
    test_enqueue_and_blocking_dequeue,  # PaddingFIFOQueueTest.testEnqueueAndBlockingDequeue
    test_multi_enqueue_and_dequeue,  # PaddingFIFOQueueTest.testMultiEnqueueAndDequeue
    test_queue_size_empty,  # PaddingFIFOQueueTest.testQueueSizeEmpty
    test_queue_size_after_enqueue_and_dequeue,  # PaddingFIFOQueueTest.testQueueSizeAfterEnqueueAndDequeue
    test_enqueue_many,  # PaddingFIFOQueueTest.testEnqueueMany
    test_empty_dequeue_many,  # PaddingFIFOQueueTest.testEmptyDequeueMany
    test_dequeue_many,  # PaddingFIFOQueueTest.testDequeueMany
    test_dequeue_up_to_no_blocking,  # PaddingFIFOQueueTest.testDequeueUpToNoBlocking
    test_multi_dequeue_many,  # PaddingFIFOQueueTest.testMultiDequeueMany
    test_high_dimension,  # PaddingFIFOQueueTest.testHighDimension
    test_enqueue_wrong_shape,  # PaddingFIFOQueueTest.testEnqueueWrongShape
    test_batch_size_mismatch,  # PaddingFIFOQueueTest.testBatchSizeMismatch
    test_enqueue_many_empty_type_conversion,  # PaddingFIFOQueueTest.testEnqueueManyEmptyTypeConversion
    test_enqueue_wrong_type,  # PaddingFIFOQueueTest.testEnqueueWrongType
    test_parallel_enqueue_many,  # PaddingFIFOQueueTest.testParallelEnqueueMany
    test_parallel_dequeue_many,  # PaddingFIFOQueueTest.testParallelDequeueMany
    test_parallel_dequeue_up_to,  # PaddingFIFOQueueTest.testParallelDequeueUpTo
    test_parallel_enqueue_and_dequeue,  # PaddingFIFOQueueTest.testParallelEnqueueAndDequeue
    test_mixture_of_enqueue_and_enqueue_many,  # PaddingFIFOQueueTest.testMixtureOfEnqueueAndEnqueueMany
    test_mixture_of_dequeue_and_dequeue_many,  # PaddingFIFOQueueTest.testMixtureOfDequeueAndDequeueMany
    test_blocking_dequeue_many,  # PaddingFIFOQueueTest.testBlockingDequeueMany
    test_blocking_dequeue_up_to,  # PaddingFIFOQueueTest.testBlockingDequeueUpTo
    test_dequeue_many_with_tensor_parameter,  # PaddingFIFOQueueTest.testDequeueManyWithTensorParameter
    test_dequeue_from_closed_queue,  # PaddingFIFOQueueTest.testDequeueFromClosedQueue
    test_blocking_dequeue_from_closed_queue,  # PaddingFIFOQueueTest.testBlockingDequeueFromClosedQueue
    # PaddingFIFOQueueTest.testDequeueUpToFromClosedQueueReturnsRemainder
    test_dequeue_up_to_from_closed_queue_returns_remainder,
    test_blocking_dequeue_from_closed_empty_queue,  # PaddingFIFOQueueTest.testBlockingDequeueFromClosedEmptyQueue
    test_blocking_dequeue_many_from_closed_queue,  # PaddingFIFOQueueTest.testBlockingDequeueManyFromClosedQueue
    # PaddingFIFOQueueTest.testBlockingDequeueManyButNotAllFromClosedQueue
    test_blocking_dequeue_many_but_not_all_from_closed_queue,
    # PaddingFIFOQueueTest.testEnqueueManyLargerThanCapacityWithConcurrentDequeueMany
    test_enqueue_many_larger_than_capacity_with_concurrent_dequeue_many,
    # PaddingFIFOQueueTest.testClosedBlockingDequeueManyRestoresPartialBatch
    test_closed_blocking_dequeue_many_restores_partial_batch,
    # PaddingFIFOQueueTest.testBlockingDequeueManyFromClosedEmptyQueue
    test_blocking_dequeue_many_from_closed_empty_queue,
    # PaddingFIFOQueueTest.testBlockingDequeueUpToFromClosedEmptyQueue
    test_blocking_dequeue_up_to_from_closed_empty_queue,
    test_enqueue_to_closed_queue,  # PaddingFIFOQueueTest.testEnqueueToClosedQueue
    test_enqueue_many_to_closed_queue,  # PaddingFIFOQueueTest.testEnqueueManyToClosedQueue
    test_blocking_enqueue_to_full_queue,  # PaddingFIFOQueueTest.testBlockingEnqueueToFullQueue
    test_blocking_enqueue_many_to_full_queue,  # PaddingFIFOQueueTest.testBlockingEnqueueManyToFullQueue
    test_blocking_enqueue_before_close,  # PaddingFIFOQueueTest.testBlockingEnqueueBeforeClose
    test_blocking_enqueue_many_before_close,  # PaddingFIFOQueueTest.testBlockingEnqueueManyBeforeClose
    test_does_not_lose_value,  # PaddingFIFOQueueTest.testDoesNotLoseValue
    test_shared_queue_same_session,  # PaddingFIFOQueueTest.testSharedQueueSameSession
    test_select_queue,  # PaddingFIFOQueueTest.testSelectQueue
    test_select_queue_out_of_range,  # PaddingFIFOQueueTest.testSelectQueueOutOfRange
    test_reset_of_blocking_operation,  # PaddingFIFOQueueTest.testResetOfBlockingOperation
    test_big_enqueue_many,  # PaddingFIFOQueueTest.testBigEnqueueMany
    test_big_dequeue_many,  # PaddingFIFOQueueTest.testBigDequeueMany
)


def test_constructor(c):  # PaddingFIFOQueueTest.testConstructor
    q = c.padding_fifo_queue("Q", 10, F, ((None,),))
    assert q.type_name == "PaddingFIFOQueue" and q.dtypes == (np.dtype(F),) and q.shapes == ((None,),)
    assert q.container == ""


def test_multi_queue_constructor(c):  # PaddingFIFOQueueTest.testMultiQueueConstructor
    q = c.padding_fifo_queue(capacity=5, dtypes=(np.int32, F), shapes=((), ()), shared_name="foo", name="Q")
    assert q.name == "foo" and q.shapes == ((), ()) and q.dtypes == (np.dtype(np.int32), np.dtype(F))


def test_constructor_with_shapes(c):  # PaddingFIFOQueueTest.testConstructorWithShapes
    q = c.padding_fifo_queue("Q", 5, (np.int32, F), shapes=([1, 1, 2, 3], [5, 8]))
    assert q.shapes == ((1, 1, 2, 3), (5, 8))


def test_enqueue(make):  # PaddingFIFOQueueTest.testEnqueue
    q = make(10, F, ((),))
    q.enqueue((10.0,))
    assert q.size() == 1


def test_empty_enqueue_many(make):  # PaddingFIFOQueueTest.testEmptyEnqueueMany
    cases.test_empty_enqueue_many(make, ((None, None),))


@pytest.mark.parametrize("up_to", [False, True], ids=["many", "up_to"])
def test_empty_dequeue_with_dynamic_shape(make, up_to):
    # PaddingFIFOQueueTest.testEmptyDequeueManyWithDynamicShape, testEmptyDequeueUpToWithDynamicShape
    q = make(10, F, shapes=((None,),))
    take = q.dequeue_up_to if up_to else q.dequeue_many
    assert take(0).tolist() == []
    q.enqueue(([10.0],))
    assert take(0).tolist() == []
    assert q.size() == 1


def test_construct_padding_fifo_queue_with_no_shape(c):  # PaddingFIFOQueueTest.testConstructPaddingFIFOQueueWithNoShape
    # TensorFlow: ValueError "When providing partial shapes, a list of shapes must be provided."
    with pytest.raises(qs.InvalidArgumentError, match="needs shapes"):
        c.padding_fifo_queue("no_shape", 10, F, None)


def test_multi_enqueue_many(make, ordered):  # PaddingFIFOQueueTest.testMultiEnqueueMany
    cases.test_multi_enqueue_many(make, ordered, shapes=((), (2,)))


def test_multi_enqueue_many_with_partially_known_shapes(make, ordered):
    # PaddingFIFOQueueTest.testMultiEnqueueManyWithPartiallyKnownShapes
    cases.test_multi_enqueue_many(make, ordered, shapes=((), (None,)))


def test_multi_dequeue_many_with_partially_known_shapes(make):
    # PaddingFIFOQueueTest.testMultiDequeueManyWithPartiallyKnownShapes
    q = make(10, (F, np.int32), shapes=((), (None,)))
    q.enqueue_many((ELEMS10, INT_PAIRS10))
    for start in (0, 4):
        f, i = q.dequeue_many(4)
        assert f.tolist() == ELEMS10[start:start + 4] and i.tolist() == INT_PAIRS10[start:start + 4]
    f, i = q.dequeue()
    assert float(f) == ELEMS10[8] and i.tolist() == INT_PAIRS10[8]


@pytest.mark.parametrize("up_to", [False, True], ids=["many", "up_to"])
def test_multi_dequeue_partially_known_shapes_and_variable_size_input(make, up_to):
    # PaddingFIFOQueueTest.testMultiDequeueManyWithPartiallyKnownShapesAndVariableSizeInput,
    # testMultiDequeueUpToPartiallyKnownShapesAndVariableInputNoBlocking
    q = make(10, ("string", np.int32), shapes=((None,), (1, None)))
    str_elems = [["a"], ["ab"], ["abc"], ["abc", "d"], ["abc", "d", "e"], ["abc", "d", "e", "f"]]
    int_elems = [[[1]], [[2]], [[3]], [[1, 2]], [[1, 2, 3]], [[1, 2, 3, 4]]]
    for s, i in zip(str_elems, int_elems):
        q.enqueue((s, i))
    strings, ints = (q.dequeue_up_to if up_to else q.dequeue_many)(5)
    assert strings.tolist() == [[b"a", b"", b""], [b"ab", b"", b""], [b"abc", b"", b""], [b"abc", b"d", b""],
                                [b"abc", b"d", b"e"]]
    assert ints.tolist() == [[[1, 0, 0]], [[2, 0, 0]], [[3, 0, 0]], [[1, 2, 0]], [[1, 2, 3]]]
    assert strings.shape == (5, 3) and ints.shape == (5, 1, 3)  # compatible with [5, ?] and [5, 1, ?]
    strings, ints = q.dequeue()
    assert strings.tolist() == [b"abc", b"d", b"e", b"f"] and ints.tolist() == [[1, 2, 3, 4]]


def test_partially_known_high_dimension(make, ordered):  # PaddingFIFOQueueTest.testPartiallyKnownHighDimension
    cases.test_high_dimension(make, ordered, shape=(4, None, 4, None))


def test_enqueue_wrong_partially_known_shape_at_runtime(make):
    # PaddingFIFOQueueTest.testEnqueueWrongPartiallyKnownShapeAtRuntime
    q = make(10, (np.int32, np.int32), ((2, 2), (None, 3)))
    with pytest.raises(qs.InvalidArgumentError, match=r"Expected \[\?,3\], got \[3,4\]"):
        q.enqueue((np.ones((2, 2), np.int32), np.ones((3, 4), np.int32)))
    assert q.size() == 0


def test_enqueue_dequeue_many_wrong_partially_known_shape(make):
    # PaddingFIFOQueueTest.testEnqueueDequeueManyWrongPartiallyKnownShape
    q = make(10, (np.int32, np.int32), ((2, 2), (None, 3)))
    with pytest.raises(qs.InvalidArgumentError,
                       match=r"Shape mismatch in tuple component 1. Expected \[2,\?,3\], got \[2,3,4\]"):
        q.enqueue_many((np.ones((2, 2, 2), np.int32), np.ones((2, 3, 4), np.int32)))
    assert q.size() == 0


def test_incompatible_shared_queue_errors(c):  # PaddingFIFOQueueTest.testIncompatibleSharedQueueErrors
    c.padding_fifo_queue("q_a", 10, F, ((),))
    with pytest.raises(qs.InvalidArgumentError, match="capacity"):
        c.padding_fifo_queue("q_a", 15, F, ((),))
    c.padding_fifo_queue("q_b", 10, F, ((),))
    with pytest.raises(qs.InvalidArgumentError, match="component types"):
        c.padding_fifo_queue("q_b", 10, np.int32, ((),))
    c.padding_fifo_queue("q_c", 10, F, ((),))
    with pytest.raises(qs.InvalidArgumentError, match="component shapes"):
        c.padding_fifo_queue("q_c", 10, F, shapes=[(1, 1, 2, 3)])
    c.padding_fifo_queue("q_d", 10, F, shapes=[(1, 1, 2, 3)])
    with pytest.raises(qs.InvalidArgumentError, match="component shapes"):
        c.padding_fifo_queue("q_d", 10, F, ((),))
    c.padding_fifo_queue("q_e", 10, F, shapes=[(1, 1, 2, 3)])
    with pytest.raises(qs.InvalidArgumentError, match="component shapes"):
        c.padding_fifo_queue("q_e", 10, F, shapes=[(1, 1, 2, 4)])
    c.padding_fifo_queue("q_f", 10, F, ((),))
    with pytest.raises(qs.InvalidArgumentError, match="component types"):
        c.padding_fifo_queue("q_f", 10, (F, np.int32), ((), ()))


def test_dtypes(make):  # PaddingFIFOQueueTest.testDtypes
    cases.test_dtypes(make, with_uint16=False)


@pytest.mark.skip(reason="tensor_shape.TensorShape(None), a shape of unknown rank, has no spelling here: a shape "
                         "is a list of dimensions (a padding queue without shapes: testConstructPaddingFIFOQueue"
                         "WithNoShape)")
def test_unknown_rank():  # PaddingFIFOQueueTest.testUnknownRank
    pass


# ----- QueueFromListTest

@pytest.mark.skip(reason="QueueBase.from_list merges the static shapes of queues in a graph: graph mode only")
def test_queue_from_list_shapes():  # QueueFromListTest.testQueueFromListShapes
    pass


@pytest.mark.skip(reason="QueueBase.from_list merges the static shapes of queues in a graph: graph mode only")
def test_queue_from_list_shapes_multiple_components():  # QueueFromListTest.testQueueFromListShapesMultipleComponents
    pass
