"""Ways one server lost data, each closed (issue "Nothing lost", part 1): invalid timeouts that left
ghost calls behind, replies that could not be built, and acknowledgements of batches a sibling
caller was still processing."""

from __future__ import annotations

import math

import numpy as np
import pytest

import queueserver as qs
from support import RawConnection

BAD_TIMEOUTS = [math.nan, math.inf, -math.inf, "1", True, [1]]


@pytest.mark.parametrize("bad", BAD_TIMEOUTS, ids=repr)
def test_an_invalid_timeout_is_refused_before_the_call_joins_the_line(local_server, bad):
    with qs.connect(local_server.target) as c:
        c.reset([""])
        q = c.fifo_queue("ghosts", capacity=2, dtypes=[np.int64], shapes=[[]])
        raw = RawConnection(local_server.target)
        try:
            reply, _ = raw.call({"i": 1, "o": "dequeue", "n": "ghosts", "md": "one", "t": bad})
            assert reply["e"][0] == qs.InvalidArgumentError.code and "timeout" in reply["e"][1]
            q.enqueue_many(np.array([0, 1]))  # now full
            element = np.array([9], np.int64).tobytes()
            reply, _ = raw.call({"i": 2, "o": "enqueue", "n": "ghosts", "a": [["<i8", []]], "t": bad}, element)
            assert reply["e"][0] == qs.InvalidArgumentError.code and "timeout" in reply["e"][1]
            # Nothing joined a waiting line: every element reaches the client that asks for it,
            # and the refused enqueue placed nothing.
            got = [int(q.dequeue(timeout=5)) for _ in range(2)]
            q.enqueue_many(np.array([2, 3]))
            got += [int(q.dequeue(timeout=5)) for _ in range(2)]
            q.enqueue(4)
            got.append(int(q.dequeue(timeout=5)))
            assert got == [0, 1, 2, 3, 4]
            assert q.size() == 0
        finally:
            raw.close()


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=repr)
def test_an_invalid_take_grad_timeout_leaves_no_taker_behind(local_server, bad):
    with qs.connect(local_server.target) as c:
        c.reset([""])
        acc = c.conditional_accumulator("grads", shape=[2])
        raw = RawConnection(local_server.target)
        try:
            reply, _ = raw.call({"i": 1, "o": "acc", "v": "take", "n": "grads", "nn": 1, "t": bad})
            assert reply["e"][0] == qs.InvalidArgumentError.code and "timeout" in reply["e"][1]
            assert acc.apply_grad(np.array([1.0, 3.0], np.float32), local_step=0)
            # The ghost taker would have swallowed this average and advanced the global step.
            assert acc.take_grad(1, timeout=5).tolist() == [1.0, 3.0]
        finally:
            raw.close()


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=repr)
def test_the_clients_refuse_an_invalid_timeout_too(local_server, bad):
    # The compact wire spells "no timeout" as NaN: a NaN from the caller must never reach it.
    with qs.connect(local_server.target) as c:
        c.reset([""])
        q = c.fifo_queue("nan", capacity=2, dtypes=[np.int64], shapes=[[]])
        with pytest.raises(qs.InvalidArgumentError, match="timeout"):
            q.dequeue(timeout=bad)
        with pytest.raises(qs.InvalidArgumentError, match="timeout"):
            q.enqueue(1, timeout=bad)
        q.enqueue(7)
        assert int(q.dequeue(timeout=5)) == 7


def test_a_batch_whose_reply_cannot_be_built_goes_back_in_order(local_server):
    wide, tall = np.ones((1, 2 ** 20), np.float32), np.full((2 ** 20, 1), 2.0, np.float32)
    with qs.connect(local_server.target) as c:
        c.reset([""])
        q = c.padding_fifo_queue("ragged", capacity=4, dtypes=[np.float32], shapes=[[None, None]])
        q.enqueue(wide)
        q.enqueue(tall)
        # Padded to (2, 2**20, 2**20) float32: 8 TiB, which no machine allocates.
        with pytest.raises(qs.ResourceExhaustedError, match="ragged.*cannot be allocated"):
            q.dequeue_many(2, timeout=5)
        assert q.size() == 2
    # A clean close acknowledges what the client received: the failed batch was never received.
    with qs.connect(local_server.target) as c:
        q = c.padding_fifo_queue("ragged", capacity=4, dtypes=[np.float32], shapes=[[None, None]])
        first, second = q.dequeue(timeout=5), q.dequeue(timeout=5)
        assert first.shape == wide.shape and second.shape == tall.shape and float(second[0, 0]) == 2.0
