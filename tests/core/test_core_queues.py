"""Queue semantics on the pure core, without sockets, replaying TensorFlow's golden cases."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from queueserver.core import MANY, ONE, UP_TO, ResourceManager
from queueserver.errors import (
    CancelledError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
)
from support import golden_steps


def make(kind="fifo", capacity=10, dtypes=(np.float32,), shapes=((),), **kw):
    return ResourceManager().queue(kind, "q", capacity=capacity, dtypes=list(dtypes),
                                   shapes=None if shapes is None else list(shapes), **kw)


def f32(*values):
    return np.array(values, np.float32)


def enq(q, *values, dtype=np.float32, timeout=None):
    return q.enqueue([np.array(values, dtype)], many=True, timeout=timeout)


async def deq(q, n=None, mode=ONE, timeout=None):
    return await q.dequeue(n, mode=mode, timeout=timeout).wait()


def values(batch):
    return batch[0].tolist()


def step_value(step):
    return step["value"]["value"]


async def test_fifo_close_dequeue_up_to_matches_tensorflow(golden):
    steps = {s["op"]: s for s in golden_steps(golden["fifo_close_dequeue_up_to"])[:6]}
    q = make()
    enq(q, 1, 2, 3, 4)
    q.enqueue([np.array(5, np.float32)])
    q.enqueue([np.array(6, np.float32)])
    assert q.size() == step_value(steps["size"]) == 6
    assert values(await deq(q, 2, MANY)) == step_value(steps["dequeue_many(2)"])
    assert values(await deq(q, 2, UP_TO)) == step_value(steps["dequeue_up_to(2) while open, 4 left"])
    q.close()
    assert q.size() == 2
    assert values(await deq(q, 2, MANY)) == [5.0, 6.0]
    with pytest.raises(CancelledError, match="is closed"):
        q.enqueue([np.array(9, np.float32)])
    with pytest.raises(CancelledError, match="is closed"):
        enq(q, 9)
    assert golden_steps(golden["fifo_close_dequeue_up_to"])[11]["error"]["class"] == "CancelledError"
    with pytest.raises(CancelledError, match="already closed"):
        q.close()

    q = make()
    enq(q, 1, 2, 3)
    q.close()
    assert values(await deq(q, 2, MANY)) == [1.0, 2.0]
    with pytest.raises(OutOfRangeError, match=r"requested 2, current size 1"):
        await deq(q, 2, MANY)
    assert q.size() == 1
    assert values(await deq(q, 10, UP_TO)) == [3.0]
    with pytest.raises(OutOfRangeError, match=r"requested 10, current size 0"):
        await deq(q, 10, UP_TO)
    with pytest.raises(OutOfRangeError, match=r"requested 1, current size 0"):
        await deq(q)


async def test_timed_out_dequeue_takes_nothing_unlike_tensorflow(golden):
    tf_steps = golden_steps(golden["fifo_timed_out_dequeue_many_loses_elements"])
    assert tf_steps[2]["value"]["value"] == 0  # TensorFlow lost 1, 2, 3; we must not
    q = make(dtypes=[np.int32])
    enq(q, 1, 2, 3, dtype=np.int32)
    with pytest.raises(DeadlineExceededError, match="nothing was taken"):
        await deq(q, 10, UP_TO, timeout=0.05)
    assert q.size() == 3
    enq(q, 4, 5, dtype=np.int32)
    assert (await deq(q))[0] == 1
    with pytest.raises(DeadlineExceededError):
        await deq(q, 5, MANY, timeout=0.05)
    assert q.size() == 4
    assert values(await deq(q, 4, MANY)) == [2, 3, 4, 5]


async def test_pending_dequeues_settle_on_close(golden):
    steps = golden_steps(golden["fifo_pending_dequeue_then_close_from_other_thread"])
    q = make(dtypes=[np.int32])
    enq(q, 1, 2, 3, dtype=np.int32)
    pending = q.dequeue(10, mode=UP_TO)
    assert not pending.done
    q.close()
    assert values(await pending.wait()) == step_value(steps[0]) == [1, 2, 3]
    assert q.size() == 0

    q = make(dtypes=[np.int32])
    enq(q, 1, 2, 3, dtype=np.int32)
    pending = q.dequeue(5, mode=MANY)
    q.close()
    with pytest.raises(OutOfRangeError, match="requested 5, current size 3"):
        await pending.wait()
    assert q.size() == step_value(steps[3]) == 3
    assert values(await deq(q, 10, UP_TO)) == step_value(steps[4]) == [1, 2, 3]

    q = make(dtypes=[np.int32])
    waiting = asyncio.ensure_future(deq(q))
    await asyncio.sleep(0)
    q.enqueue([np.array(42, np.int32)])
    assert (await waiting)[0] == step_value(steps[5]) == 42


async def test_timeout_setting_book_cell(golden):
    steps = golden_steps(golden["fifo_timeout_setting_book_cell"])
    q = make()
    for v in (1.0, 2.0, 3.0):
        q.enqueue([np.array(v, np.float32)])
    assert (await deq(q, timeout=1.0))[0] + 1 == step_value(steps[0])
    assert (await deq(q, timeout=1.0))[0] + 1 == step_value(steps[2])
    assert (await deq(q, timeout=1.0))[0] + 1 == step_value(steps[3])
    with pytest.raises(DeadlineExceededError):
        await deq(q, timeout=0.05)


async def test_enqueue_many_timeout_keeps_what_it_placed(golden):
    steps = golden_steps(golden["fifo_full_enqueue_many_timeout_partial"])
    q = make(capacity=3, dtypes=[np.int32])
    with pytest.raises(DeadlineExceededError, match="placed 3 of 5") as info:
        await enq(q, 1, 2, 3, 4, 5, dtype=np.int32, timeout=0.05).wait()
    assert info.value.details["placed"] == 3
    assert q.size() == step_value(steps[1]) == 3
    q.close()
    assert values(await deq(q, 10, UP_TO)) == step_value(steps[2])


async def test_close_cancels_pending_enqueues(golden):
    steps = golden_steps(golden["fifo_close_cancel_pending_enqueues"])
    q = make(capacity=2, dtypes=[np.int32])
    enq(q, 1, 2, dtype=np.int32)
    blocked = enq(q, 3, 4, dtype=np.int32)
    q.close(cancel_pending_enqueues=True)
    with pytest.raises(CancelledError, match="placing 0 of 2"):
        await blocked.wait()
    assert q.size() == step_value(steps[1]) == 2
    assert values(await deq(q, 5, UP_TO)) == step_value(steps[2])


async def test_close_without_cancel_lets_pending_enqueues_finish():
    q = make(capacity=2)
    enq(q, 1, 2)
    blocked = enq(q, 3, 4)
    q.close()
    assert values(await deq(q, 4, MANY)) == [1, 2, 3, 4]
    await blocked.wait()


async def test_shape_and_dtype_errors_change_nothing(golden):
    steps = golden_steps(golden["fifo_shape_mismatch_and_unshaped"])
    q = make(shapes=[[2]])
    with pytest.raises(InvalidArgumentError, match=r"Expected \[2\], got \[3\]"):
        q.enqueue([f32(1, 2, 3)])
    enq_ok = q.enqueue([np.array([[1, 2], [3, 4]], np.float32)], many=True)
    assert enq_ok.done
    with pytest.raises(InvalidArgumentError, match=r"Expected \[2,2\], got \[2,3\]"):
        q.enqueue([np.zeros((2, 3), np.float32)], many=True)
    with pytest.raises(InvalidArgumentError, match="Type mismatch"):
        q.enqueue([np.zeros(2, np.int32)])
    with pytest.raises(InvalidArgumentError, match="expected 1 component"):
        q.enqueue([f32(1, 2), f32(1, 2)])
    assert q.size() == 2
    assert "Expected [2,3,2], got [3,3,2]" in golden_steps(golden["fifo_tuple_int32_float32x3x2"])[3]["error"]["core"]

    u = make(shapes=None)
    u.enqueue([f32(1, 2)])
    u.enqueue([np.array([[3]], np.float32)])
    with pytest.raises(InvalidArgumentError, match="require the components to have specified shapes"):
        u.dequeue(2, mode=MANY)
    assert steps[5]["error"]["class"] == "InvalidArgumentError"
    assert (await deq(u))[0].tolist() == step_value(steps[6])


async def test_tuple_components_and_mismatched_first_dims(golden):
    steps = golden_steps(golden["fifo_tuple_int32_float32x3x2"])
    q = make(dtypes=[np.int32, np.float32], shapes=[[], [3, 2]])
    bb = np.arange(18, dtype=np.float32).reshape(3, 3, 2)
    q.enqueue([np.array([10, 20, 30], np.int32), bb], many=True)
    a, b = await deq(q)
    assert a.tolist() == 10 and b.tolist() == steps[1]["value"]["tuple"][1]["value"]
    a, b = await deq(q, 2, MANY)
    assert a.tolist() == [20, 30] and b.shape == (2, 3, 2)
    with pytest.raises(InvalidArgumentError, match=r"component 1. Expected \[2,3,2\], got \[3,3,2\]"):
        q.enqueue([np.array([1, 2], np.int32), bb], many=True)
    assert q.size() == 0


async def test_padding_fifo_pads_book_matrices(golden):
    expected = golden_steps(golden["padding_fifo_book_matrices"])[0]["value"]
    q = make("padding_fifo", capacity=50, shapes=[[None, None]])
    q.enqueue([np.array([[1., 2.], [3., 4.], [5., 6.]], np.float32)])
    q.enqueue([np.array([[1.]], np.float32)])
    q.enqueue([np.array([[7., 8., 9., 5.], [6., 7., 8., 9.]], np.float32)])
    out = (await deq(q, 3, MANY))[0]
    assert list(out.shape) == expected["shape"] and out.tolist() == expected["value"]


async def test_padding_fifo_up_to_with_strings_and_rank_error(golden):
    steps = golden_steps(golden["padding_fifo_dequeue_up_to_and_rank_error"])
    q = make("padding_fifo", capacity=50, dtypes=[np.int32, "string"], shapes=[[None], []])
    q.enqueue([np.array([1], np.int32), np.array(b"a", dtype=object)])
    q.enqueue([np.array([1, 2, 3], np.int32), np.array(b"bb", dtype=object)])
    with pytest.raises(InvalidArgumentError, match=r"Expected \[\?\], got \[1,1\]"):
        q.enqueue([np.array([[1]], np.int32), np.array(b"c", dtype=object)])
    q.close()
    ints, strs = await deq(q, 5, UP_TO)
    assert ints.tolist() == steps[1]["value"]["tuple"][0]["value"]
    assert [s.decode() for s in strs] == steps[1]["value"]["tuple"][1]["value"]


def test_padding_fifo_requires_shapes():
    with pytest.raises(InvalidArgumentError, match="needs shapes"):
        make("padding_fifo", shapes=None)


async def test_random_shuffle_min_after_dequeue(golden):
    steps = golden_steps(golden["random_shuffle_min_after_dequeue"])
    q = make("random_shuffle", capacity=50, min_after_dequeue=10, seed=42)
    enq(q, *range(22))
    seen = []
    for _ in range(2):
        batch = values(await deq(q, 5, MANY))
        assert len(batch) == 5
        seen += batch
    assert q.size() == step_value(steps[2]) == 12
    blocked = q.dequeue(5, mode=MANY)
    assert not blocked.done  # 12 - 5 < 10
    q.close()
    seen += values(await blocked.wait())
    seen += values(await deq(q, 5, MANY))
    with pytest.raises(OutOfRangeError, match="requested 5, current size 2"):
        await deq(q, 5, MANY)
    assert q.size() == 2
    seen += values(await deq(q, 10, UP_TO))
    assert sorted(seen) == list(range(22))
    assert seen != list(range(22))
    with pytest.raises(OutOfRangeError):
        await deq(q, 10, UP_TO)

    q = make("random_shuffle", capacity=50, min_after_dequeue=10, seed=42)
    enq(q, *range(12))
    await deq(q, timeout=1)  # 12 - 1 >= 10
    with pytest.raises(DeadlineExceededError):
        await deq(q, 5, MANY, timeout=0.05)
    assert q.size() == 11  # TensorFlow: 10, it lost the element the timed-out op took
    assert step_value(steps[-3]) == 10
    with pytest.raises(DeadlineExceededError):
        await deq(q, 2, MANY, timeout=0.05)  # 11 - 2 < 10
    assert (await deq(q, timeout=0.5))[0] in range(12)


async def test_random_shuffle_is_reproducible_with_a_seed():
    async def run():
        q = make("random_shuffle", capacity=100, min_after_dequeue=0, seed=7, shapes=[[2]])
        q.enqueue([np.arange(100, dtype=np.float32).reshape(50, 2)], many=True)
        out = []
        for _ in range(10):
            out += (await deq(q, 5, MANY))[0][:, 0].tolist()
        return out
    first = await run()
    assert first == await run()
    assert sorted(first) == list(range(0, 100, 2))


async def test_random_shuffle_is_roughly_uniform():
    counts = np.zeros(10)
    q = make("random_shuffle", capacity=20, min_after_dequeue=0, seed=1, dtypes=[np.int64])
    for _ in range(2000):
        enq(q, *range(10), dtype=np.int64)
        counts[(await deq(q))[0]] += 1
        await deq(q, 9, MANY)
    assert counts.min() > 140 and counts.max() < 260


async def test_priority_queue_smallest_first_ties_in_arrival_order():
    q = ResourceManager().queue("priority", "p", capacity=10, dtypes=[np.float32], shapes=[[]])
    q.enqueue([np.array([5, 1, 3, 1], np.int64), f32(50, 10, 30, 11)], many=True)
    prio, vals = await deq(q, 4, MANY)
    assert prio.tolist() == [1, 1, 3, 5] and vals.tolist() == [10, 11, 30, 50]
    with pytest.raises(InvalidArgumentError):
        q.enqueue([np.array([1.5], np.float32), f32(1)], many=True)


async def test_priority_queue_batch_waits_until_all_of_it_is_there():
    # TensorFlow's PriorityQueue takes a batch only once it is whole, so it comes out sorted
    # (taking elements as they arrived gave [5, 1, 3]); closed, dequeue_up_to takes what is left.
    q = ResourceManager().queue("priority", "p", capacity=10, dtypes=[np.float32], shapes=[[]])
    batch = q.dequeue(3, mode=MANY)
    for size, p in enumerate((5, 1), start=1):
        q.enqueue([np.array([p], np.int64), f32(p)], many=True)
        assert not batch.done and q.size() == size  # nothing taken while the batch is not whole
    q.enqueue([np.array([3], np.int64), f32(3)], many=True)
    prio, _ = await batch.wait()
    assert prio.tolist() == [1, 3, 5] and q.size() == 0
    q.enqueue([np.array([9, 7], np.int64), f32(9, 7)], many=True)
    rest = q.dequeue(3, mode=UP_TO)
    assert not rest.done
    q.close()
    assert (await rest.wait())[0].tolist() == [7, 9]


async def test_waiters_are_served_in_arrival_order():
    q = make()
    first = q.dequeue(2, mode=MANY)
    second = q.dequeue()
    enq(q, 1)
    assert not first.done and not second.done  # the head waits for 2; the second waits behind it
    enq(q, 2, 3)
    assert values(await first.wait()) == [1, 2]
    assert (await second.wait())[0] == 3


async def test_enqueue_many_stays_contiguous_across_waits():
    q = make(capacity=2)
    a = enq(q, 1, 2, 3, 4)
    b = enq(q, 10, 11)
    out = []
    while len(out) < 6:
        out.append(float((await deq(q, timeout=1))[0]))
    await a.wait()
    await b.wait()
    assert out == [1, 2, 3, 4, 10, 11]


async def test_dequeue_many_larger_than_capacity_completes():
    q = make(capacity=2)
    pending = q.dequeue(5, mode=MANY)
    producer = enq(q, 1, 2, 3, 4, 5)
    assert values(await pending.wait()) == [1, 2, 3, 4, 5]
    await producer.wait()


async def test_returned_elements_go_back_to_the_front_in_order():
    q = make()
    enq(q, 1, 2, 3, 4, 5)
    att = q.dequeue(3, mode=MANY)
    assert att.done
    q.return_elements(att.taken)
    assert values(await deq(q, 5, MANY)) == [1, 2, 3, 4, 5]


async def test_cancelled_waiting_dequeue_returns_partial_take():
    q = make()
    enq(q, 1, 2)
    att = q.dequeue(3, mode=MANY)
    assert q.size() == 0  # it holds 1, 2 while it waits for a third
    att.cancel()
    assert q.size() == 2
    assert values(await deq(q, 2, MANY)) == [1, 2]


async def test_zero_element_dequeue_many_returns_an_empty_batch():
    q = make(shapes=[[3]])
    out = await deq(q, 0, MANY)
    assert out[0].shape == (0, 3)


def test_bad_construction_is_refused_with_the_fix_in_the_message():
    with pytest.raises(InvalidArgumentError, match="capacity must be a positive integer"):
        make(capacity=0)
    with pytest.raises(InvalidArgumentError, match="must be below capacity"):
        make("random_shuffle", capacity=5, min_after_dequeue=5)
    with pytest.raises(InvalidArgumentError, match="unknown queue type"):
        ResourceManager().queue("lifo", "q", capacity=1, dtypes=[np.float32])
    with pytest.raises(InvalidArgumentError, match="one shape per component"):
        make(dtypes=[np.float32, np.int32], shapes=[[]])


async def test_destroyed_queue_cancels_waiters_and_is_gone():
    rm = ResourceManager()
    q = rm.queue("fifo", "q", container="c1", capacity=1, dtypes=[np.float32], shapes=[[]])
    waiting = q.dequeue()
    rm.reset(["c1"])
    with pytest.raises(CancelledError, match="reset"):
        await waiting.wait()
    with pytest.raises(NotFoundError):
        rm.get("c1", "q")
    with pytest.raises(NotFoundError):
        q.size()


async def test_a_finishing_attempt_whose_callback_returns_its_batch_orphans_no_other_waiter():
    # A server returns a batch at once when its client has left; that re-enters the queue from
    # inside the attempt's completion. The waiters behind it must all stay in line.
    q = make()
    enq(q, 1)
    first = q.dequeue(2, mode=MANY)       # takes 1, waits for a second
    second = q.dequeue()                  # waits behind it
    third = q.dequeue(2, mode=MANY)       # waits behind that
    first.add_done_callback(lambda att: q.return_elements(att.taken))
    enq(q, 2)
    assert first.done and values(first.result) == [1, 2]
    assert (await second.wait())[0] == 1  # the returned batch went back to the front
    assert not third.done and third.progress == 1
    enq(q, 3)
    assert values(await third.wait()) == [2, 3]


async def test_cancel_all_fails_each_waiter_once():
    q = make()
    enq(q, 1, 2)
    q.dequeue(3, mode=MANY)  # waits in line ahead of y
    y = q.dequeue()
    outcomes = []
    y.add_done_callback(lambda att: outcomes.append((type(att.error).__name__, att.result)))
    q.cancel_all(CancelledError("shutting down"))
    assert len(outcomes) == 1
    assert q.size() + (0 if y.error else 1) == 2  # nothing lost, nothing counted twice
    if y.error is None:  # x's rollback let y take an element before y's own turn
        assert y.result[0] == 1 and outcomes[0][0] == "NoneType"


async def test_priority_queue_returns_a_multi_element_batch_in_its_own_order():
    from queueserver.core.stores import PriorityStore

    store = PriorityStore()
    store.push_back((np.array([1], np.int64), f32(99)))
    store.push_front((np.array([1, 1, 1], np.int64), f32(10, 11, 12)))
    assert [float(b[1][0]) for b in store.take(4)] == [10, 11, 12, 99]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "1", True])
async def test_an_invalid_timeout_is_refused_before_anything_changes(bad):
    q = make(capacity=1)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        q.dequeue(timeout=bad)
    assert not q._dequeues  # no ghost waits in line
    enq(q, 1.0)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        enq(q, 2.0, timeout=bad)
    assert not q._enqueues and q.size() == 1
    assert values((await deq(q, 1, MANY))) == [1.0]


async def test_a_refused_timeout_names_the_call_and_its_resource():
    from queueserver.core import ConditionalAccumulator

    q = make(capacity=1)
    with pytest.raises(InvalidArgumentError, match=r"^dequeue from \w+ 'q': timeout must be a finite"):
        q.dequeue(timeout=float("nan"))
    with pytest.raises(InvalidArgumentError, match=r"^enqueue into \w+ 'q': timeout must be a number"):
        enq(q, 1.0, timeout="1")
    acc = ConditionalAccumulator("w", [2])
    with pytest.raises(InvalidArgumentError, match=r"^take_grad from \w+ 'w': timeout must be a finite"):
        acc.take_grad(1, timeout=float("inf"))


# ---------------------------------------------------------------- TensorFlow 2.21 audit
async def test_enqueue_many_of_zero_elements_into_a_closed_queue_is_a_no_op():
    # TensorFlow returns early for a batch of zero elements, closed queue or not.
    q = make()
    q.close()
    attempt = q.enqueue([np.zeros(0, np.float32)], many=True)
    assert attempt.done
    await attempt.wait()
    assert q.size() == 0 and q.stats["enqueued"] == 0
    with pytest.raises(CancelledError, match="'q' is closed"):
        enq(q, 1.0)
    with pytest.raises(CancelledError, match="'q' is closed"):
        q.enqueue([np.array(1.0, np.float32)])


def test_a_string_component_takes_text_only():
    from queueserver.core.specs import STRING, coerce_component

    # TensorFlow: TypeError "Expected string, but got 5 of type 'int'"; five zero bytes before.
    for value, shown in ((5, "5 of type 'int'"), ([3, 1], "3 of type 'int'"), ([b"a", 2.5], "2.5 of type 'float'"),
                         (np.array([b"a", None], dtype=object), "None of type 'NoneType'")):
        with pytest.raises(InvalidArgumentError, match=f"component 0. Expected string, but got {shown}"):
            coerce_component(value, STRING, 0)
    assert coerce_component(b"\xff\x00", STRING, 0).item() == b"\xff\x00"
    assert coerce_component("h\u00e9", STRING, 0).item() == "h\u00e9".encode()
    assert coerce_component(np.array([b"a", "\u00e9"], dtype=object), STRING, 0).tolist() == [b"a", "\u00e9".encode()]
    assert coerce_component(np.array(["x", "y"]), STRING, 0).tolist() == [b"x", b"y"]
