"""Races and limits found in review: each of these lost data, leaked, or hung before its fix."""

from __future__ import annotations

import asyncio
import socket
import time

import msgpack
import numpy as np
import pytest

import queueserver as qs
from queueserver.client import AsyncClient
from queueserver.wire import PREAMBLE, PREFIX


@pytest.mark.parametrize("compact", [True, False], ids=["compact frames", "msgpack frames"])
async def test_a_dequeue_cancelled_as_its_reply_lands_gives_the_batch_back(local_server, compact):
    # Fixed-size elements travel in compact frames; variable-size ones in msgpack frames.
    shape, value = ([], 42.0) if compact else ([None], [42.0])
    prod = await AsyncClient(local_server.target).open()
    cons = await AsyncClient(local_server.target).open()
    try:
        qp = await prod.fifo_queue("race", capacity=10, dtypes=[np.float32], shapes=[shape])
        qc = await cons.queue("race")
        task = asyncio.ensure_future(qc.dequeue())
        while not (await prod.status())["queues"][0]["waiting_dequeues"]:
            await asyncio.sleep(0.01)
        deliver, deliver_compact = cons._on_frame, cons._on_compact

        def deliver_then_cancel(header, body):  # the caller gives up in the very turn the reply arrives
            deliver(header, body)
            if "d" in header:
                task.cancel()

        def deliver_compact_then_cancel(body):
            deliver_compact(body)
            task.cancel()

        cons._protocol.reader._on_frame = deliver_then_cancel
        cons._protocol.reader._on_compact = deliver_compact_then_cancel
        await qp.enqueue(value)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (qc._compact > 0) == compact
        await cons.close()  # a clean goodbye acknowledges what the client holds: nothing, here
        deadline = time.monotonic() + 5
        while await qp.size() != 1:
            assert time.monotonic() < deadline, "the cancelled delivery was lost"
            await asyncio.sleep(0.01)
        assert np.asarray(await qp.dequeue()).reshape(-1).tolist() == [42.0]
    finally:
        await prod.close()
        await cons.close()


def test_a_server_over_its_limit_closes_the_connection_and_stops_buffering():
    server = qs.Server.create_local_server(max_message_bytes=1 << 20)
    try:
        with qs.connect(server.target) as c:
            c.fifo_queue("q", capacity=1, dtypes=[np.float32], shapes=[[]])
        sock = socket.create_connection((server.service.host, server.service.port), timeout=5)

        def frame(h):
            hb = msgpack.packb(h)
            return PREFIX.pack(len(hb), 0) + hb

        sock.sendall(PREAMBLE + frame({"i": 1, "o": "hello"}) + frame({"i": 2, "o": "dequeue", "n": "q", "md": "one"}))
        sock.sendall(PREFIX.pack(10, 1 << 30))  # over the limit while a dequeue is pending
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        assert b"over the limit" in data  # told why, then closed despite the pending call
        sock.close()
        with qs.connect(server.target) as c:
            assert c.fifo_queue("q", capacity=1, dtypes=[np.float32], shapes=[[]]).size() == 0
    finally:
        server.stop()


async def test_a_connection_over_its_pending_enqueue_budget_can_still_dequeue(local_server):
    local_server.service.pending_bytes_limit = 1000
    c = await AsyncClient(local_server.target).open()
    try:
        q = await c.fifo_queue("budget", capacity=1, dtypes=[np.uint8], shapes=[[800]])
        x = np.zeros(800, np.uint8)
        await q.enqueue(x)                                      # the queue is full now
        blocked = [asyncio.ensure_future(q.enqueue(x)) for _ in range(2)]  # 1,600 bytes waiting
        while (await c.status())["queues"][0]["waiting_enqueues"] < 2:
            await asyncio.sleep(0.01)
        with pytest.raises(qs.ResourceExhaustedError, match="already wait for room"):
            await q.enqueue(x)
        for _ in range(3):                                      # the same connection drains them
            assert (await asyncio.wait_for(q.dequeue(), 5)).shape == (800,)
        await asyncio.gather(*blocked)
    finally:
        await c.close()


@pytest.mark.parametrize("timeout", [None, 5.0])
async def test_a_cancelled_forwarded_enqueue_is_withdrawn_on_the_home_task(cluster, timeout):
    home, via = cluster.target("/job:ps/task:1"), cluster.target("/job:worker/task:0")
    owner = await AsyncClient(home).open()
    client = await AsyncClient(via, route_direct=False).open()
    try:
        name = f"fwd_cancel_{timeout}"
        with owner.device("/job:ps/task:1"):
            q = await owner.fifo_queue(name, capacity=1, dtypes=[np.float32], shapes=[[]])
        await q.enqueue(1.0)                                    # full
        fq = await client.fifo_queue(name, capacity=1, dtypes=[np.float32], shapes=[[]])
        task = asyncio.ensure_future(fq.enqueue(2.0, timeout=timeout))  # forwarded, blocks on the home task
        while not (await owner.status())["queues"][0]["waiting_enqueues"]:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 5
        while (await owner.status())["queues"][0]["waiting_enqueues"]:
            assert time.monotonic() < deadline, "the forwarded enqueue still waits on the home task"
            await asyncio.sleep(0.01)
        assert float(await q.dequeue()) == 1.0
        assert await q.size() == 0                              # 2.0 was never placed
        await owner.reset([""])
    finally:
        await client.close()
        await owner.close()


async def test_a_cancelled_forwarded_call_leaves_nothing_pending_on_the_client(cluster):
    home, via = cluster.target("/job:ps/task:0"), cluster.target("/job:worker/task:1")
    owner = await AsyncClient(home).open()
    client = await AsyncClient(via, route_direct=False).open()
    try:
        with owner.device("/job:ps/task:0"):
            await owner.fifo_queue("leak", capacity=1, dtypes=[np.float32], shapes=[[]])
        q = await client.fifo_queue("leak", capacity=1, dtypes=[np.float32], shapes=[[]])
        task = asyncio.ensure_future(q.dequeue())  # waits on ps:0, through worker:1
        while not (await owner.status())["queues"][0]["waiting_dequeues"]:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 5
        while client._pending or client._dequeue_routes:
            assert time.monotonic() < deadline, f"left pending: {client._pending}"
            await asyncio.sleep(0.01)
        await owner.reset([""])
    finally:
        await client.close()
        await owner.close()
