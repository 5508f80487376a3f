"""W2 queue-small: one float32 scalar per enqueue call and per dequeue call, through a server process.

One producer process and one consumer process, each with one call in flight, beside the same-run
floor: a bare uvloop request/response server holding an asyncio.Queue, driven the same way. A third
line runs the same work with many calls in flight per client (pipelined over one connection): a
sliding window that starts a call whenever one of the ``--inflight`` outstanding calls completes.

The synchronous client (``queueserver.connect``, what TensorFlow-1-style scripts use) is measured
too, one call in flight, against its own floor: a blocking-socket client of the same bare server.

    python benchmarks/queue_small.py [--items 20000] [--inflight 64] [--repeat 3] [--only sync]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics

import numpy as np

from _common import ServerProc, machine_line, reqresp_process, run_async, run_roles, start_floor, table


def make_data(n: int) -> np.ndarray:
    """W2's data: rng.random(20000, float32)."""
    return np.random.default_rng(0).random(20_000, dtype=np.float32)[:n]


async def windowed(calls, inflight: int) -> list:
    """Run the calls with ``inflight`` of them outstanding at all times (a sliding window, as a
    loader keeps its connection busy), and return their results in order."""
    window: collections.deque = collections.deque()
    results = []
    start = asyncio.get_running_loop().create_task
    for call in calls:
        window.append(start(call))
        if len(window) >= inflight:
            results.append(await window.popleft())
    while window:
        results.append(await window.popleft())
    return results


def producer(ready, go, target: str, n: int, inflight: int):
    import queueserver as qs

    data = make_data(n)

    async def main():
        async with qs.connect_async(target, client_name="w2 producer") as c:
            q = await c.fifo_queue("w2", capacity=10_000, dtypes=[np.float32], shapes=[[]])
            ready.wait()
            go.wait()
            if inflight == 1:
                for v in data:
                    await q.enqueue(v)
            else:
                await windowed((q.enqueue(v) for v in data), inflight)
    run_async(main)
    return "producer", n


def consumer(ready, go, target: str, n: int, inflight: int):
    import queueserver as qs

    async def main():
        async with qs.connect_async(target, client_name="w2 consumer") as c:
            q = await c.fifo_queue("w2", capacity=10_000, dtypes=[np.float32], shapes=[[]])
            ready.wait()
            go.wait()
            total = 0.0
            if inflight == 1:
                for _ in range(n):
                    total += float(await q.dequeue())
            else:
                for got in await windowed((q.dequeue() for _ in range(n)), inflight):
                    total += float(got)
            return total
    return "consumer", run_async(main)


def sync_producer(ready, go, target: str, n: int):
    import queueserver as qs

    data = make_data(n)
    with qs.connect(target, client_name="w2 sync producer") as c:
        q = c.fifo_queue("w2", capacity=10_000, dtypes=[np.float32], shapes=[[]])
        ready.wait()
        go.wait()
        for v in data:
            q.enqueue(v)
    return "producer", n


def sync_consumer(ready, go, target: str, n: int):
    import queueserver as qs

    with qs.connect(target, client_name="w2 sync consumer") as c:
        q = c.fifo_queue("w2", capacity=10_000, dtypes=[np.float32], shapes=[[]])
        ready.wait()
        go.wait()
        total = 0.0
        for _ in range(n):
            total += float(q.dequeue())
    return "consumer", total


def _blocking_socket(port: int):
    import socket

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_exactly(sock, n: int) -> bytes:
    got = b""
    while len(got) < n:
        part = sock.recv(n - len(got))
        if not part:
            raise ConnectionError("the floor server closed the connection")
        got += part
    return got


def blocking_floor_producer(ready, go, port: int, n: int):
    data = make_data(n)
    sock = _blocking_socket(port)
    ready.wait()
    go.wait()
    for v in data:
        sock.sendall(b"E" + v.tobytes())
        _recv_exactly(sock, 5)
    sock.close()
    return "producer", n


def blocking_floor_consumer(ready, go, port: int, n: int):
    sock = _blocking_socket(port)
    ready.wait()
    go.wait()
    total = 0.0
    for _ in range(n):
        sock.sendall(b"D\x00\x00\x00\x00")
        total += float(np.frombuffer(_recv_exactly(sock, 5)[1:], np.float32)[0])
    sock.close()
    return "consumer", total


def floor_producer(ready, go, port: int, n: int):
    data = make_data(n)

    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ready.wait()
        go.wait()
        for v in data:
            writer.write(b"E" + v.tobytes())
            await reader.readexactly(5)
        writer.close()
    run_async(main)
    return "producer", n


def floor_consumer(ready, go, port: int, n: int):
    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ready.wait()
        go.wait()
        total = 0.0
        for _ in range(n):
            writer.write(b"D\x00\x00\x00\x00")
            total += float(np.frombuffer((await reader.readexactly(5))[1:], np.float32)[0])
        writer.close()
        return total
    return "consumer", run_async(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--inflight", type=int, default=64, help="calls in flight per client in the pipelined run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["async", "sync"], default=None,
                        help="measure only the asyncio client's lines or only the synchronous client's")
    args = parser.parse_args()
    n = args.items
    expected = float(make_data(n).astype(np.float64).sum())

    def run_server(roles) -> float:
        server = ServerProc()
        try:
            elapsed, results = run_roles([(fn, (server.target, *extra)) for fn, extra in roles])
            assert abs(dict(results)["consumer"] - expected) < 1e-3 * n, "consumer saw different values"
            return elapsed
        finally:
            server.stop()

    def run_floor(producer_fn, consumer_fn) -> float:
        proc, port = start_floor(reqresp_process)
        try:
            elapsed, results = run_roles([(producer_fn, (port, n)), (consumer_fn, (port, n))])
            assert abs(dict(results)["consumer"] - expected) < 1e-3 * n, "the floor saw different values"
            return elapsed
        finally:
            proc.terminate()

    times: dict[str, list[float]] = {"ours": [], "piped": [], "floor": [], "sync": [], "sync_floor": []}
    for _ in range(args.repeat):
        if args.only != "sync":
            times["ours"].append(run_server([(producer, (n, 1)), (consumer, (n, 1))]))
            times["piped"].append(run_server([(producer, (n, args.inflight)), (consumer, (n, args.inflight))]))
            times["floor"].append(run_floor(floor_producer, floor_consumer))
        if args.only != "async":
            times["sync"].append(run_server([(sync_producer, (n,)), (sync_consumer, (n,))]))
            times["sync_floor"].append(run_floor(blocking_floor_producer, blocking_floor_consumer))

    med = {k: statistics.median(v) for k, v in times.items() if v}
    rate = lambda t: f"{n / t:,.0f}"  # noqa: E731
    each = lambda key, floor: ", ".join(f"{f / t:.2f}" for t, f in zip(times[key], times[floor]))  # noqa: E731
    rows = [("W2 queue-small", "items/s", "ratio to floor (each run)")]
    if "ours" in med:
        rows += [("asyncio client, 1 call in flight per client", rate(med["ours"]),
                  f"{med['floor'] / med['ours']:.2f} ({each('ours', 'floor')}; target >= 0.6)"),
                 (f"asyncio client, {args.inflight} calls in flight per client", rate(med["piped"]),
                  f"{med['floor'] / med['piped']:.2f} ({each('piped', 'floor')}; target >= 3.0)"),
                 ("floor: bare uvloop req/resp + asyncio.Queue, asyncio clients", rate(med["floor"]), "1.00")]
    if "sync" in med:
        rows += [("synchronous client (queueserver.connect), 1 call in flight", rate(med["sync"]),
                  f"{med['sync_floor'] / med['sync']:.2f} ({each('sync', 'sync_floor')}; target >= 0.6)"),
                 ("floor: the same bare server, blocking-socket clients", rate(med["sync_floor"]), "1.00")]
    print(f"{machine_line()}; {n} items, median of {args.repeat}")
    print(table(rows))


if __name__ == "__main__":
    main()
