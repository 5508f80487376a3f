"""Ported from TensorFlow's queue tests (``tensorflow/python/kernel_tests/data_structures/``
``fifo_queue_test.py``, ``random_shuffle_queue_test.py``, ``padding_fifo_queue_test.py``), on the
real server: the expected values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import numpy as np
import pytest

import queueserver as qs


@pytest.fixture
def c(local_server):
    with qs.connect(local_server.target) as client:
        yield client


def test_empty_enqueue_many(c):  # FIFOQueueTest.testEmptyEnqueueMany
    q = c.fifo_queue("empty_many", 10, [np.float32], [[2, 3]])
    q.enqueue_many(np.zeros((0, 2, 3), np.float32))
    assert q.size() == 0
    pair = c.fifo_queue("empty_lists", 10, [np.int32, np.int32], [[], []])
    pair.enqueue_many(([], []))  # Python's empty lists take the queue's dtypes
    assert pair.size() == 0


@pytest.mark.parametrize("dtype, value", [(np.int32, 2 ** 40), (np.uint8, 300), (np.uint8, -1), (np.int8, 128)])
def test_an_int_out_of_range_is_refused_not_wrapped(c, dtype, value):
    # TensorFlow refuses such a conversion (its constant conversion checks the range).
    q = c.fifo_queue(f"range_{np.dtype(dtype).name}_{value}", 4, [dtype], [[]])
    with pytest.raises(qs.InvalidArgumentError, match="out of range"):
        q.enqueue(value)
    with pytest.raises(qs.InvalidArgumentError, match="out of range"):
        q.enqueue_many(np.array([1, value]))
    assert q.size() == 0


def test_an_int_out_of_range_is_refused_by_variables_too(c):
    v = c.variable("int_var", np.int32(0))
    v.initialize()
    with pytest.raises(qs.InvalidArgumentError, match="out of range for int32"):
        v.assign(2 ** 40)
    assert int(v.read()) == 0
    with pytest.raises(qs.InvalidArgumentError, match="out of range for uint8"):
        c.variable("uint8_var", 300, dtype=np.uint8)


def test_close_then_cancelling_close_both_succeed(c):
    # The TF1 shutdown pattern: close, then close(cancel_pending_enqueues=True).
    q = c.fifo_queue("close_twice", 2, [np.float32], [[]])
    q.close()
    q.close(cancel_pending_enqueues=True)
    q.close(cancel_pending_enqueues=True)
    with pytest.raises(qs.CancelledError, match="is already closed"):
        q.close()


def test_incompatible_shared_random_shuffle_queue_seeds(c):  # testIncompatibleSharedQueueErrors
    c.random_shuffle_queue("q_f", 10, 5, [np.float32], seed=12)
    with pytest.raises(qs.InvalidArgumentError, match=r"random seeds \(12\) but requested seeds were \(21\)"):
        c.random_shuffle_queue("q_f", 10, 5, [np.float32], seed=21)
    assert c.random_shuffle_queue("q_f", 10, 5, [np.float32], seed=12).size() == 0


def test_named_queue_elements_are_dicts(c):  # FIFOQueueTest.testEnqueueDequeueOneDictionary et al.
    q = c.fifo_queue("named_q", 10, [np.int32, np.float32], [[], []], names=["i", "f"])
    assert q.names == ("i", "f")
    q.enqueue({"i": 1, "f": 2.0})
    q.enqueue_many({"i": [3, 4], "f": [5.0, 6.0]})
    one = q.dequeue()
    assert sorted(one) == ["f", "i"] and int(one["i"]) == 1 and float(one["f"]) == 2.0
    assert q.dequeue_many(2)["i"].tolist() == [3, 4]
    # testEnqueueWithBadNames / positional values: refused, nothing placed (TensorFlow's words).
    with pytest.raises(ValueError, match="You must enqueue a dictionary in a Queue with names"):
        q.enqueue((1, 2.0))
    with pytest.raises(ValueError, match="Keys in dictionary to enqueue do not match names of Queue"):
        q.enqueue({"i": 1, "g": 2.0})
    plain = c.fifo_queue("unnamed_q", 10, [np.int32], [[]])
    assert plain.names is None
    with pytest.raises(ValueError, match="Queue must have names to enqueue a dictionary"):
        plain.enqueue({"i": 1})
    one_named = c.fifo_queue("one_named", 10, [np.int32], [[]], names=["x"])
    with pytest.raises(ValueError, match="You must enqueue a dictionary"):
        one_named.enqueue(np.int32(5))  # the compact fast path checks names too
    assert q.size() == 0 and one_named.size() == 0


def test_tf1_names_shared_name_and_container_blocks(c):
    # tf.FIFOQueue(capacity, dtypes, shapes, shared_name=..., name=...): shared_name is the key.
    a = c.fifo_queue(capacity=10, dtypes=[np.float32], shapes=[[]], shared_name="shared_q", name="q_op")
    a.enqueue(1.0)
    assert c.fifo_queue("shared_q", 10, [np.float32], [[]]).size() == 1
    with c.container("exp"):  # with tf.container("exp"):
        inside = c.fifo_queue(capacity=10, dtypes=[np.float32], shapes=[[]], shared_name="shared_q")
        v = c.variable("w", np.zeros(2, np.float32))
        with c.container("inner"):
            assert c.variable("w", np.zeros(3, np.float32)).container == "inner"
        assert c.queue("shared_q").container == "exp"
        explicit = c.fifo_queue("shared_q", 10, [np.float32], [[]], container="")
    assert inside.container == "exp" and v.container == "exp" and inside.size() == 0
    assert explicit.size() == 1  # container= still wins inside a block
    assert c.variable("w", np.zeros(4, np.float32)).container == ""  # outside: the default container
    assert c.reset(["exp"]) == 2
    with pytest.raises(TypeError, match="needs a name"):
        c.fifo_queue(capacity=1, dtypes=[np.float32])
