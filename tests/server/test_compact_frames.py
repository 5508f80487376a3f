"""Compact frames: one-element enqueue and dequeue of fixed-size elements without msgpack.

The queue rules are the core's whatever the frame; these tests pin which calls travel compact,
that both kinds of frame give the same results, and that malformed compact frames get clear
errors while the server keeps serving.
"""

from __future__ import annotations

import asyncio
import math
import time

import msgpack
import numpy as np
import pytest

import queueserver as qs
from queueserver.wire import (
    COMPACT_DEQUEUE, COMPACT_ENQUEUE, COMPACT_REPLY, COMPACT_REQUEST, PREAMBLE, PREFIX, encode_compact_request,
)
from test_bad_input import _frame, _raw, _read_frame, _still_serves


async def test_fixed_size_calls_travel_compact_and_others_do_not(local_server):
    async with qs.connect_async(local_server.target) as c:
        fixed = await c.fifo_queue("fixed", 10, [np.float32, np.int64], [[2], []], names=["x", "y"])
        ragged = await c.padding_fifo_queue("ragged", 10, [np.float32], [[None]])
        strings = await c.fifo_queue("strings", 10, [object], [[]])
        await fixed.enqueue({"x": [1.5, 2.5], "y": 7})
        await ragged.enqueue([1.0, 2.0, 3.0])
        await strings.enqueue(b"abc")
        got = await fixed.dequeue()
        assert got["x"].tolist() == [1.5, 2.5] and got["x"].dtype == np.float32
        assert got["y"].shape == () and int(got["y"]) == 7 and got["y"].dtype == np.int64
        assert (await ragged.dequeue()).tolist() == [1.0, 2.0, 3.0]
        assert await strings.dequeue() == b"abc"
        assert fixed._compact > 0 and ragged._compact == 0 and strings._compact == 0
        # Batches still travel as msgpack frames, from and into the same queue.
        await fixed.enqueue_many({"x": np.ones((3, 2), np.float32), "y": np.arange(3)})
        assert (await fixed.dequeue_many(2))["y"].tolist() == [0, 1]
        assert int((await fixed.dequeue())["y"]) == 2
    calls = local_server.service.calls
    assert calls["bind"] == 1 and calls["enqueue"] == 4 and calls["dequeue"] == 5


async def test_compact_and_msgpack_calls_share_one_queue_in_order(local_server):
    async with qs.connect_async(local_server.target) as c:
        q = await c.fifo_queue("mixed", 10, [np.float32], [[]])
        await q.enqueue(1.0)                              # compact
        await q.enqueue_many(np.float32([2.0, 3.0]))      # msgpack
        await q.enqueue(np.float64(4.0))                  # converted to float32, then compact
        assert [float(await q.dequeue()) for _ in range(4)] == [1.0, 2.0, 3.0, 4.0]
        # An element of the wrong shape is sent the ordinary way and refused with the usual message.
        with pytest.raises(qs.InvalidArgumentError, match="Shape mismatch"):
            await q.enqueue(np.float32([1.0, 2.0]))
        assert await q.size() == 0


async def test_a_server_without_compact_frames_gets_msgpack_calls(local_server):
    async with qs.connect_async(local_server.target) as c:
        c.server_info.pop("compact")  # as an older server answers hello
        q = await c.fifo_queue("old", 10, [np.float32], [[]])
        await q.enqueue(5.0)
        assert float(await q.dequeue()) == 5.0 and q._compact == 0
    assert "bind" not in local_server.service.calls


async def test_compact_timeouts_and_close_follow_the_queue_rules(local_server):
    async with qs.connect_async(local_server.target) as c:
        q = await c.fifo_queue("rules", 1, [np.int64], [[]])
        with pytest.raises(qs.DeadlineExceededError):
            await q.dequeue(timeout=0.05)
        await q.enqueue(1)
        with pytest.raises(qs.DeadlineExceededError):
            await q.enqueue(2, timeout=0.05)
        blocked = asyncio.ensure_future(q.dequeue())
        assert int(await q.dequeue()) == 1 and q._compact > 0
        await q.close()
        with pytest.raises(qs.OutOfRangeError):
            await blocked
        with pytest.raises(qs.CancelledError, match="closed"):
            await q.enqueue(3)


async def test_negative_timeouts_expire_at_once_and_leave_the_client_usable(local_server):
    async with qs.connect_async(local_server.target) as c:
        q = await c.fifo_queue("negative", 1, [np.float32], [[]])
        with pytest.raises(qs.DeadlineExceededError):
            await asyncio.wait_for(q.dequeue(timeout=-1), 5)
        await q.enqueue(1.0)
        with pytest.raises(qs.DeadlineExceededError):
            await asyncio.wait_for(q.enqueue(2.0, timeout=-1), 5)
        assert float(await q.dequeue()) == 1.0 and q._compact > 0 and c._fatal is None


async def test_handles_are_per_queue_and_acknowledgements_overflow_to_msgpack(local_server, monkeypatch):
    import queueserver.handles as client_module  # where queue handles read the limit

    monkeypatch.setattr(client_module, "COMPACT_MAX_ACKS", 3)
    async with qs.connect_async(local_server.target) as c:
        q = await c.fifo_queue("acks", 10, [np.float64], [[]])
        again = await c.queue("acks")
        await q.enqueue_many(np.arange(6.0))
        got = [await q.dequeue(), await again.dequeue()]
        assert q._compact == again._compact and len(c._compact_handles) == 1
        assert all(a.flags.aligned for a in got)  # the element starts 8-byte aligned in the reply
        got += [await q.dequeue() for _ in range(4)]  # the fifth carries 4 acks: an ordinary frame
        assert [float(v) for v in got] == [0, 1, 2, 3, 4, 5]
    async with qs.connect_async(local_server.target) as c:  # the clean close acknowledged them all
        assert await (await c.queue("acks")).size() == 0


async def test_a_handle_checks_the_queue_it_finds_on_every_call(local_server):
    async with qs.connect_async(local_server.target) as a, qs.connect_async(local_server.target) as b:
        held = await a.fifo_queue("respec", 4, [np.float32], [[]], container="box")
        await b.reset(["box"])  # before a's first call: the queue a holds a handle on is gone
        await b.fifo_queue("respec", 4, [np.int32], [[]], container="box")  # same element size
        with pytest.raises(qs.InvalidArgumentError, match="not the elements this client expects"):
            await held.enqueue(1.5)  # would have been read as the int32 1069547520
        assert await (await b.queue("respec", container="box")).size() == 0
        await b.reset(["box"])
        with pytest.raises(qs.NotFoundError):
            await held.dequeue(timeout=0)
        await b.fifo_queue("respec", 4, [np.float32], [[]], container="box")  # what a expects again
        await held.enqueue(2.5)
        assert float(await held.dequeue()) == 2.5


async def test_a_reset_reaches_compact_handles(local_server):
    async with qs.connect_async(local_server.target) as c:
        q = await c.fifo_queue("gone", 4, [np.float32], [[]], container="box")
        await q.enqueue(1.0)
        await c.reset(["box"])
        with pytest.raises(qs.NotFoundError):
            await q.enqueue(2.0)
        await c.fifo_queue("gone", 4, [np.float32], [[]], container="box")  # the same spec again
        await q.enqueue(3.0)  # the old handle reaches the new queue
        assert float(await q.dequeue()) == 3.0
        await c.reset(["box"])
        await c.fifo_queue("gone", 4, [np.int32], [[]], container="box")  # another element size
        with pytest.raises(qs.InvalidArgumentError, match="another spec"):
            await q.dequeue()
        assert c._fatal is None


def _compact_reply(sock) -> tuple[int, int, int, bytes]:
    data = b""
    while len(data) < PREFIX.size:
        data += sock.recv(65536)
    header_len, body_len = PREFIX.unpack_from(data)
    assert header_len == 0
    while len(data) < PREFIX.size + body_len:
        data += sock.recv(65536)
    body = data[PREFIX.size:]
    return (*COMPACT_REPLY.unpack_from(body), body[COMPACT_REPLY.size:])


def test_malformed_compact_frames_get_clear_errors(local_server):
    sock = _raw(local_server.target)
    sock.sendall(PREAMBLE + _frame(msgpack.packb({"i": 1, "o": "hello"})))
    assert "e" not in _read_frame(sock)
    sock.sendall(_frame(msgpack.packb({"i": 2, "o": "queue", "kind": "fifo", "n": "raw", "cap": 4,
                                       "spec": {"dtypes": ["float32"], "shapes": [[2]]}})))
    assert "e" not in _read_frame(sock)

    def compact(body: bytes) -> bytes:
        return PREFIX.pack(0, len(body)) + body

    cases = [
        (compact(b"\x01\x02"), 0, qs.InvalidArgumentError, "malformed compact frame"),
        (encode_compact_request(COMPACT_ENQUEUE, 3, 9, None, (), b"\x00" * 8), 3, qs.InvalidArgumentError,
         "no queue is bound to compact handle 9"),
        (encode_compact_request(7, 4, 1, None, ()), 4, qs.UnimplementedError, "unknown compact operation 7"),
        (compact(COMPACT_REQUEST.pack(COMPACT_DEQUEUE, 0, 3, 1, 5, math.nan)), 5, qs.InvalidArgumentError,
         "declares 3 acknowledgements"),
        (compact(COMPACT_REQUEST.pack(COMPACT_ENQUEUE, 4, 0, 1, 8, math.nan)), 8, qs.InvalidArgumentError,
         "unknown flags 0x4"),
        (compact(COMPACT_REQUEST.pack(COMPACT_ENQUEUE, 1, 0, 1, 9, math.nan)), 9, qs.InvalidArgumentError,
         "declares 0 acknowledgements and a stamp"),
        (encode_compact_request(COMPACT_ENQUEUE, 6, 1, None, [1], b"\x00" * 8), 6, qs.InvalidArgumentError,
         "no queue is bound to compact handle 1"),
    ]
    for frame, rid, error, message in cases:
        sock.sendall(frame)
        reply = _read_frame(sock)
        assert reply["i"] == rid and reply["e"][0] == error.code and message in reply["e"][1], reply
    spec = {"dtypes": ["float32"], "shapes": [[2]]}
    # A bind answers nothing; each call on the handle finds the queue, or says why it cannot.
    sock.sendall(_frame(msgpack.packb({"i": 0, "o": "bind", "fh": 2, "n": "missing", "spec": spec}))
                 + encode_compact_request(COMPACT_DEQUEUE, 7, 2, 0.0, ()))
    reply = _read_frame(sock)
    assert reply["i"] == 7 and reply["e"][0] == qs.NotFoundError.code and "missing" in reply["e"][1]
    sock.sendall(_frame(msgpack.packb({"i": 0, "o": "bind", "fh": 3, "n": "raw", "spec": {"dtypes": ["int32"],
                                                                                          "shapes": [[2]]}}))
                 + encode_compact_request(COMPACT_DEQUEUE, 11, 3, 0.0, ()))
    reply = _read_frame(sock)
    assert reply["i"] == 11 and reply["e"][0] == qs.InvalidArgumentError.code and "not the elements" in reply["e"][1]
    sock.sendall(_frame(msgpack.packb({"i": 0, "o": "bind", "fh": 1, "n": "raw", "spec": spec}))
                 + encode_compact_request(COMPACT_ENQUEUE, 8, 1, None, (), b"\x00" * 5))
    reply = _read_frame(sock)
    assert reply["i"] == 8 and reply["e"][0] == qs.InvalidArgumentError.code and "carries 5 bytes" in reply["e"][1]
    sock.sendall(encode_compact_request(COMPACT_ENQUEUE, 9, 1, None, (), np.float32([1, 2]).tobytes()))
    assert _compact_reply(sock)[:3] == (COMPACT_ENQUEUE, 9, 0)
    sock.sendall(encode_compact_request(COMPACT_DEQUEUE, 10, 1, None, ()))
    op, rid, delivery, payload = _compact_reply(sock)
    assert (op, rid) == (COMPACT_DEQUEUE, 10) and delivery > 0 and np.frombuffer(payload, np.float32).tolist() == [1, 2]
    sock.close()
    _still_serves(local_server.target)


def test_a_killed_connection_returns_a_compact_delivery(local_server):
    """At least once, compact frames included: a delivery not acknowledged goes back when the
    connection drops, and one acknowledged by the next compact dequeue does not."""
    sock = _raw(local_server.target)
    sock.sendall(PREAMBLE + _frame(msgpack.packb({"i": 1, "o": "hello"})))
    _read_frame(sock)
    with qs.connect(local_server.target) as c:
        q = c.fifo_queue("held", 4, [np.float32], [[]])
        q.enqueue_many(np.float32([1, 2, 3]))
        sock.sendall(_frame(msgpack.packb({"i": 0, "o": "bind", "fh": 1, "n": "held",
                                           "spec": {"dtypes": ["float32"], "shapes": [[]]}}))
                     + encode_compact_request(COMPACT_DEQUEUE, 2, 1, None, ()))
        first = _compact_reply(sock)[2]
        sock.sendall(encode_compact_request(COMPACT_DEQUEUE, 3, 1, None, [first]))  # acknowledges 1.0
        assert np.frombuffer(_compact_reply(sock)[3], np.float32).tolist() == [2.0]
        sock.close()  # 2.0 was never acknowledged
        deadline = time.monotonic() + 5
        while q.size() != 2:  # the server notices the closed connection on its own loop
            assert time.monotonic() < deadline, "the unacknowledged delivery did not come back"
            time.sleep(0.01)
        assert [float(q.dequeue()) for _ in range(2)] == [2.0, 3.0]
