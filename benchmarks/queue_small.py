"""W2 queue-small: one float32 scalar per enqueue call and per dequeue call, through a server process.

One producer process and one consumer process, each with one call in flight, beside the same-run
floor: a bare uvloop request/response server holding an asyncio.Queue, driven the same way. A third
line runs the same work with many calls in flight per client (pipelined over one connection): a
sliding window that starts a call whenever one of the ``--inflight`` outstanding calls completes.

    python benchmarks/queue_small.py [--items 20000] [--inflight 64] [--repeat 3]
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
    args = parser.parse_args()
    n = args.items
    expected = float(make_data(n).astype(np.float64).sum())

    ours, piped, floor = [], [], []
    for _ in range(args.repeat):
        for inflight, sink in ((1, ours), (args.inflight, piped)):
            server = ServerProc()
            try:
                elapsed, results = run_roles([(producer, (server.target, n, inflight)),
                                              (consumer, (server.target, n, inflight))])
                assert abs(dict(results)["consumer"] - expected) < 1e-3 * n, "consumer saw different values"
                sink.append(elapsed)
            finally:
                server.stop()
        proc, port = start_floor(reqresp_process)
        try:
            elapsed, _ = run_roles([(floor_producer, (port, n)), (floor_consumer, (port, n))])
            floor.append(elapsed)
        finally:
            proc.terminate()

    t_ours, t_piped, t_floor = (statistics.median(v) for v in (ours, piped, floor))
    rate = lambda t: f"{n / t:,.0f}"  # noqa: E731
    rows = [("W2 queue-small", "items/s", "ratio to floor"),
            ("queueserver, 1 call in flight per client", rate(t_ours), f"{t_floor / t_ours:.2f} (target >= 0.6)"),
            (f"queueserver, {args.inflight} calls in flight per client", rate(t_piped),
             f"{t_floor / t_piped:.2f} (target >= 3.0: 5x of 0.6)"),
            ("floor: bare uvloop req/resp + asyncio.Queue", rate(t_floor), "1.00")]
    print(f"{machine_line()}; {n} items, median of {args.repeat}")
    print(table(rows))


if __name__ == "__main__":
    main()
