"""W1 queue-bulk: producer enqueue_many(256) -> server FIFOQueue(10,000) -> consumer dequeue_many(256).

Three processes, as WORKLOADS.md specifies, beside the same-run floor: the same bytes relayed
through a bare asyncio+uvloop stream relay process. Also reports the server's peak memory against
the budget (3x the bytes a full queue holds, plus 100 MB).

    python benchmarks/queue_bulk.py [--instances 100000] [--inflight 2] [--repeat 3]
    python benchmarks/queue_bulk.py --durable   # also with --data-dir: --fsync everysec and always
    python benchmarks/queue_bulk.py --sync      # also with the synchronous client at both ends

With ``--durable``, every repeat also runs the same workload against a server with a data
directory (in a fresh temporary directory each time), with ``--fsync everysec`` (the default) and
``--fsync always``, and reports each against the in-memory server of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile

import numpy as np

from _common import (FRAME, ServerProc, machine_line, relay_process, run_async, run_roles, start_floor, table)

BATCH, CAPACITY, FEATURES = 256, 10_000, 784


def wide_table(rows: list[tuple[str, ...]]) -> str:
    """``table`` for any number of columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def make_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """W1's data: x = rng.random((n, 784), float32), y = rng.integers(0, 10, n) as int32."""
    rng = np.random.default_rng(0)
    x = rng.random((100_000, FEATURES), dtype=np.float32)[:n]
    y = rng.integers(0, 10, 100_000).astype(np.int32)[:n]
    return x, y


def producer(ready, go, target: str, n: int, inflight: int, device: str = "", route_direct: bool = True):
    import queueserver as qs

    x, y = make_data(n)

    async def main():
        async with qs.connect_async(target, client_name="w1 producer", route_direct=route_direct) as c:
            with c.device(device):
                q = await c.fifo_queue("w1", capacity=CAPACITY, dtypes=[np.float32, np.int32],
                                       shapes=[[FEATURES], []])
            ready.wait()
            go.wait()
            window: set = set()
            for start in range(0, n, BATCH):
                if len(window) >= inflight:
                    done, window = await asyncio.wait(window, return_when=asyncio.FIRST_COMPLETED)
                    for t in done:
                        t.result()
                window.add(asyncio.ensure_future(q.enqueue_many((x[start:start + BATCH], y[start:start + BATCH]))))
            await asyncio.gather(*window)
            await q.close()
    run_async(main)
    return "producer", n


def consumer(ready, go, target: str, n: int, device: str = ""):
    import queueserver as qs

    async def main():
        async with qs.connect_async(target, client_name="w1 consumer") as c:
            with c.device(device):
                q = await c.fifo_queue("w1", capacity=CAPACITY, dtypes=[np.float32, np.int32],
                                       shapes=[[FEATURES], []])
            ready.wait()
            go.wait()
            count, label_sum = 0, 0
            while True:
                try:
                    xb, yb = await (q.dequeue_many(BATCH) if n - count >= BATCH else q.dequeue_up_to(BATCH))
                except qs.OutOfRangeError:
                    break
                count += len(yb)
                label_sum += int(yb.sum())
            return count, label_sum
    return "consumer", run_async(main)


def sync_producer(ready, go, target: str, n: int):
    """W1's producer as a TensorFlow-1-style script writes it: the synchronous client, one call at a time."""
    import queueserver as qs

    x, y = make_data(n)
    with qs.connect(target, client_name="w1 sync producer") as c:
        q = c.fifo_queue("w1", capacity=CAPACITY, dtypes=[np.float32, np.int32], shapes=[[FEATURES], []])
        ready.wait()
        go.wait()
        for start in range(0, n, BATCH):
            q.enqueue_many((x[start:start + BATCH], y[start:start + BATCH]))
        q.close()
    return "producer", n


def sync_consumer(ready, go, target: str, n: int):
    """W1's consumer with the synchronous client."""
    import queueserver as qs

    with qs.connect(target, client_name="w1 sync consumer") as c:
        q = c.fifo_queue("w1", capacity=CAPACITY, dtypes=[np.float32, np.int32], shapes=[[FEATURES], []])
        ready.wait()
        go.wait()
        count, label_sum = 0, 0
        while True:
            try:
                xb, yb = q.dequeue_many(BATCH) if n - count >= BATCH else q.dequeue_up_to(BATCH)
            except qs.OutOfRangeError:
                break
            count += len(yb)
            label_sum += int(yb.sum())
    return "consumer", (count, label_sum)


def relay_producer(ready, go, port: int, n: int):
    x, y = make_data(n)

    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"P")
        ready.wait()
        go.wait()
        for start in range(0, n, BATCH):
            xb, yb = x[start:start + BATCH], y[start:start + BATCH]
            writer.writelines([FRAME.pack(xb.nbytes + yb.nbytes), memoryview(xb).cast("B"), memoryview(yb).cast("B")])
            await writer.drain()
        writer.close()
        await writer.wait_closed()
    run_async(main)
    return "producer", n


def relay_consumer(ready, go, port: int, n: int):
    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"C")
        await writer.drain()
        ready.wait()
        go.wait()
        total = 0
        while True:
            data = await reader.read(1 << 20)
            if not data:
                break
            total += len(data)
        return total
    return "consumer", run_async(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--inflight", type=int, default=2, help="enqueue_many calls the producer keeps in flight")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the median is reported")
    parser.add_argument("--durable", action="store_true",
                        help="also run with --data-dir (--fsync everysec and always) and compare")
    parser.add_argument("--data-root", default=None, help="where --durable makes its data directories")
    parser.add_argument("--sync", action="store_true",
                        help="also run with the synchronous client (queueserver.connect) at both ends")
    args = parser.parse_args()
    n = args.instances
    x, y = make_data(n)
    payload_mb = (x.nbytes + y.nbytes) / 1e6
    expected_sum = int(y.sum())
    del x, y

    ours, floor, peaks, synced = [], [], [], []
    durable: dict[str, list[float]] = {"everysec": [], "always": []}
    for _ in range(args.repeat):
        for mode in durable if args.durable else ():
            data = tempfile.mkdtemp(prefix="w1-data-", dir=args.data_root)
            server = ServerProc("--data-dir", data, "--fsync", mode)
            try:
                elapsed, results = run_roles([(producer, (server.target, n, args.inflight)),
                                              (consumer, (server.target, n))])
                assert dict(results)["consumer"] == (n, expected_sum)
                durable[mode].append(elapsed)
            finally:
                server.stop()
                shutil.rmtree(data, ignore_errors=True)
        if args.sync:
            server = ServerProc()
            try:
                elapsed, results = run_roles([(sync_producer, (server.target, n)), (sync_consumer, (server.target, n))])
                assert dict(results)["consumer"] == (n, expected_sum)
                synced.append(elapsed)
            finally:
                server.stop()
        server = ServerProc()
        try:
            elapsed, results = run_roles([(producer, (server.target, n, args.inflight)),
                                          (consumer, (server.target, n))])
            got = dict(results)["consumer"]
            assert got == (n, expected_sum), f"consumer got {got}, expected {(n, expected_sum)}"
            ours.append(elapsed)
            peaks.append(server.peak_rss_mb())
        finally:
            server.stop()
        proc, port = start_floor(relay_process)
        try:
            elapsed, results = run_roles([(relay_producer, (port, n)), (relay_consumer, (port, n))])
            floor.append(elapsed)
        finally:
            proc.terminate()

    t_ours, t_floor = statistics.median(ours), statistics.median(floor)
    full_queue_mb = CAPACITY * (FEATURES * 4 + 4) / 1e6
    budget = 3 * full_queue_mb + 100
    rows = [("W1 queue-bulk", "MB/s", "instances/s"),
            ("queueserver (3 processes)", f"{payload_mb / t_ours:,.0f}", f"{n / t_ours:,.0f}"),
            ("floor: bare uvloop relay", f"{payload_mb / t_floor:,.0f}", f"{n / t_floor:,.0f}"),
            ("ratio to floor (target >= 0.65)", f"{t_floor / t_ours:.2f}", "")]
    if synced:
        t_sync = statistics.median(synced)
        rows += [("synchronous client at both ends", f"{payload_mb / t_sync:,.0f}", f"{n / t_sync:,.0f}"),
                 ("its ratio to floor (target >= 0.65)",
                  f"{t_floor / t_sync:.2f} (" + ", ".join(f"{f / t:.2f}" for t, f in zip(synced, floor)) + ")", "")]
    print(f"{machine_line()}; {n} instances, {payload_mb:.0f} MB, median of {args.repeat}")
    print(table(rows))
    print(f"server peak RSS {max(peaks):.0f} MB (budget {budget:.0f} MB = 3 x {full_queue_mb:.1f} MB full queue + 100 MB)")
    if args.durable:
        drows: list[tuple[str, ...]] = [("W1 with --data-dir", "MB/s", "instances/s", "vs in memory")]
        drows.append(("in memory (same run)", f"{payload_mb / t_ours:,.0f}", f"{n / t_ours:,.0f}", "1.00"))
        for mode, times in durable.items():
            t = statistics.median(times)
            target = " (target >= 0.5)" if mode == "everysec" else ""
            drows.append((f"--fsync {mode}", f"{payload_mb / t:,.0f}", f"{n / t:,.0f}", f"{t_ours / t:.2f}{target}"))
        print(wide_table(drows))


if __name__ == "__main__":
    main()
