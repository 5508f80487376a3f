"""CPU per one-element call, each side alone and warm: what W2's interpreted work costs.

W2 (benchmarks/queue_small.py) runs three processes on two cores, so its ratio is the ratio of
total CPU per element, and its figures swing with the machine. This measures each side's CPU per
call in one process, with nothing to wait for, so that a change to the per-call path can be seen:

* the synchronous client (``queueserver.connect``): compact enqueue and dequeue calls answered at
  once by an in-process peer on a socketpair; floor: the same peer driven by bare ``send``/``recv``;
* the asyncio client, one call in flight and a window of 64: replies fed back on the next turn of
  the loop; floor: the peer's own work;
* the server: a connection (``DataConnection``, fake transport) fed windows of 64 compact enqueues
  and 64 dequeues; floor: the frame reader alone on the same bytes.

Each figure is the best of ``--repeat`` passes of thread CPU time. The clients connect to a real
server first (hello, queue, compact handle), then their socket or transport is swapped for the
peer's.

    python benchmarks/call_cost.py [--calls 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import select
import socket
import struct
import time

import numpy as np

from _common import ServerProc, machine_line, table
import queueserver as qs
from queueserver import protocol as P
from queueserver.connection import DataConnection
from queueserver.core.specs import ComponentSpec
from queueserver.service import QueueService
from queueserver.wire import COMPACT_REPLY, COMPACT_REQUEST, PREFIX, FrameReader, encode_frame

STAMPED_ENQUEUE = struct.Struct("<IQBBHIQdQQ")  # prefix, request, stamp (what the clients send)
DEQUEUE = struct.Struct("<IQBBHIQd")
ELEMENT = np.float32(0.5).tobytes()


def reply_to(request: memoryview, delivery: int) -> tuple[bytes, int]:
    """The compact reply to one compact request, and the request's length."""
    header_len, body_len = PREFIX.unpack_from(request)
    op, _, _, _, rid, _ = COMPACT_REQUEST.unpack_from(request, PREFIX.size)
    if op == 1:
        reply = PREFIX.pack(0, COMPACT_REPLY.size) + COMPACT_REPLY.pack(1, rid, 0)
    else:
        reply = PREFIX.pack(0, COMPACT_REPLY.size + 4) + COMPACT_REPLY.pack(2, rid, delivery) + ELEMENT
    return reply, PREFIX.size + header_len + body_len


class _PeerSocket(socket.socket):
    """The client's end of a socketpair whose every send is answered at once by the other end."""

    peer: socket.socket
    deliveries = 0

    def send(self, data, *args):  # type: ignore[override]
        sent = super().send(data, *args)
        request = self.peer.recv(1 << 16)
        _PeerSocket.deliveries += 1
        self.peer.send(reply_to(memoryview(request), _PeerSocket.deliveries)[0])
        return sent


def best(fn, n: int, repeat: int) -> float:
    """Least thread CPU per call over ``repeat`` passes of ``fn`` (which makes ``n`` calls), in us."""
    times = []
    for _ in range(repeat):
        t0 = time.thread_time()
        fn()
        times.append((time.thread_time() - t0) / n * 1e6)
    return min(times)


def sync_client(target: str, n: int, repeat: int) -> list[tuple[str, str, str]]:
    data = np.random.default_rng(0).random(n, dtype=np.float32)
    with qs.connect(target, client_name="call cost") as client:
        q = client.fifo_queue("call_cost", 10**7, [np.float32], [[]])
        q.enqueue(data[0]), q.dequeue()
        conn = client._async
        real_sock, real_poller = conn._sock, conn._poller
        ours, theirs = socket.socketpair()
        sock = _PeerSocket(fileno=ours.detach())
        sock.peer = theirs
        conn._sock, conn._poller = sock, select.poll()
        conn._poller.register(sock, select.POLLIN)
        try:
            request = STAMPED_ENQUEUE.pack(0, 44, 1, 1, 0, 1, 1, float("nan"), 1, 1) + ELEMENT

            def floor() -> None:
                for _ in range(n):
                    sock.send(request)
                    sock.recv(64)

            base = best(floor, n, repeat)
            enqueue = best(lambda: [q.enqueue(v) for v in data], n, repeat)
            dequeue = best(lambda: [q.dequeue() for _ in range(n)], n, repeat)
        finally:
            conn._sock, conn._poller = real_sock, real_poller
            sock.close(), theirs.close()
    return [("synchronous client: enqueue", f"{enqueue:.2f}", f"{enqueue - base:.2f}"),
            ("synchronous client: dequeue", f"{dequeue:.2f}", f"{dequeue - base:.2f}"),
            ("  floor: the peer driven by bare send/recv", f"{base:.2f}", "0")]


class _PeerTransport:
    """Stands in for the asyncio client's transport: each write is answered on the next turn."""

    def __init__(self, protocol, loop) -> None:
        self.protocol, self.loop, self.deliveries = protocol, loop, 0

    def _answer(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self.deliveries += 1
            reply, used = reply_to(view, self.deliveries)
            self.protocol.get_buffer(-1)[: len(reply)] = reply
            self.protocol.buffer_updated(len(reply))
            view = view[used:]

    def write(self, data) -> None:
        self.loop.call_soon(self._answer, bytes(data))

    def writelines(self, buffers) -> None:
        self.loop.call_soon(self._answer, b"".join(buffers))

    def is_closing(self) -> bool:
        return False


def asyncio_client(target: str, n: int, repeat: int) -> list[tuple[str, str, str]]:
    from queue_small import windowed

    async def main() -> list[tuple[str, str, str]]:
        data = np.random.default_rng(0).random(n, dtype=np.float32)
        async with qs.connect_async(target, client_name="call cost") as client:
            q = await client.fifo_queue("call_cost", 10**7, [np.float32], [[]])
            await q.enqueue(data[0]), await q.dequeue()
            protocol = client._protocol
            real = protocol.transport
            peer = protocol.transport = _PeerTransport(protocol, asyncio.get_running_loop())
            rows = []
            try:
                for inflight in (1, 64):
                    times: dict[str, list[float]] = {"enqueue": [], "dequeue": []}
                    for _ in range(repeat):
                        t0 = time.thread_time()
                        if inflight == 1:
                            for v in data:
                                await q.enqueue(v)
                        else:
                            await windowed((q.enqueue(v) for v in data), inflight)
                        t1 = time.thread_time()
                        if inflight == 1:
                            for _ in range(n):
                                await q.dequeue()
                        else:
                            await windowed((q.dequeue() for _ in range(n)), inflight)
                        times["enqueue"].append((t1 - t0) / n * 1e6)
                        times["dequeue"].append((time.thread_time() - t1) / n * 1e6)
                    for op in ("enqueue", "dequeue"):
                        rows.append((f"asyncio client, {inflight} in flight: {op}", f"{min(times[op]):.2f}", ""))
                unanswered = STAMPED_ENQUEUE.pack(0, 44, 1, 1, 0, 1, 0, float("nan"), 1, 1) + ELEMENT  # request 0
                t0 = time.thread_time()
                for _ in range(n):
                    peer._answer(unanswered)
                rows.append(("  floor: the peer's own work per call", f"{(time.thread_time() - t0) / n * 1e6:.2f}", ""))
            finally:
                protocol.transport = real
            return rows

    import uvloop

    return uvloop.run(main())


class _NullTransport:
    def write(self, data) -> None:
        pass

    def writelines(self, buffers) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def feed(receiver, data: bytes) -> None:
    """Hand ``data`` to a buffered protocol (or frame reader) as the transport would."""
    view = memoryview(data)
    while view:
        buf = receiver.get_buffer(-1)
        k = min(len(buf), len(view))
        buf[:k] = view[:k]
        receiver.buffer_updated(k)
        view = view[k:]


def server(n: int, repeat: int) -> list[tuple[str, str, str]]:
    window = 64
    rounds = max(1, n // (2 * window))

    async def main() -> list[tuple[str, str, str]]:
        conn = DataConnection(QueueService())
        conn.connection_made(_NullTransport())  # type: ignore[arg-type]
        spec = ComponentSpec([np.float32], [[]]).to_wire()
        for header in ({**P.hello(None, "call cost", "0123456789abcdef"), "i": 1},
                       {**P.create_queue("fifo", 10**7, spec), "n": "call_cost", "c": "", "i": 2},
                       {**P.bind(1, "call_cost", "", spec), "i": 0}):
            feed(conn, b"".join(bytes(f) for f in encode_frame(header)))
        rid = seq = 10
        passes = []
        for _ in range(repeat):
            batches = []
            for _ in range(rounds):
                enqueues, dequeues = [], []
                for _ in range(window):
                    rid, seq = rid + 1, seq + 1
                    enqueues.append(STAMPED_ENQUEUE.pack(0, 44, 1, 1, 0, 1, rid, float("nan"), seq,
                                                         max(11, seq - window + 1)) + ELEMENT)
                for _ in range(window):
                    rid += 1
                    dequeues.append(DEQUEUE.pack(0, 24, 2, 0, 0, 1, rid, float("nan")))
                batches.append(b"".join(enqueues) + b"".join(dequeues))
            t0 = time.thread_time()
            for data in batches:
                feed(conn, data)
            passes.append((time.thread_time() - t0) / (2 * window * rounds) * 1e6)
        reader = FrameReader(lambda *a: None, lambda *a: None, lambda *a: None, on_compact=lambda body: None)
        t0 = time.thread_time()
        for data in batches:
            feed(reader, data)
        base = (time.thread_time() - t0) / (2 * window * rounds) * 1e6
        return [("server: one compact call (windows of 64 enqueues, then 64 dequeues)", f"{min(passes):.2f}",
                 f"{min(passes) - base:.2f}"),
                ("  floor: the frame reader alone on the same bytes", f"{base:.2f}", "0")]

    import uvloop

    return uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = [("CPU per call, warm, one process", "us", "above the floor")]
    srv = ServerProc()
    try:
        rows += sync_client(srv.target, args.calls, args.repeat)
        rows += asyncio_client(srv.target, args.calls, args.repeat)
    finally:
        srv.stop()
    rows += server(args.calls, args.repeat)
    print(f"{machine_line()}; best of {args.repeat} passes of {args.calls} calls")
    print(table(rows))


if __name__ == "__main__":
    main()
