"""How cost grows: W1 and W2 with 1-8 producer/consumer pairs and elements from 4 B to 4 MiB.

For every pair count and element size, two workloads through a server process, each beside its floor
measured in the same run, driven by the same number of processes with the same bytes:

* W1 style (bulk): each producer process ``enqueue_many``s batches, each consumer process
  ``dequeue_many``s them. Floor: one bare asyncio+uvloop relay process that forwards each producer's
  bytes (8-byte length frames) to its consumer.
* W2 style (small calls): one element per ``enqueue`` call and per ``dequeue`` call, one call in
  flight per process. Floor: one bare uvloop request/response process holding an asyncio.Queue per
  pair: an element's bytes per enqueue request and per dequeue reply, 5-byte acknowledgements.

Pair i has its own queue (FIFO, one float32[size / 4] component) on the one server; its producer
and consumer are separate processes, so 8 pairs are 16 client processes and the server (17 on the
machine). Elements per cell are the same for every pair count (split between the pairs), fewer for
big elements. A W1 batch is 256 elements, or fewer where that would pass 4 MiB.

Server CPU per element is the server (or floor) process's CPU time, all its threads, read just
before the clients start and after the last one finished, divided by the elements moved (each is
enqueued once and dequeued once): from /proc/PID/task/*/schedstat (nanoseconds), checked against
/proc/PID/stat's user+system ticks (which also count threads that ended meanwhile).

    python benchmarks/queue_scaling.py                   # the whole grid, about 6-10 minutes on 2 cores
    python benchmarks/queue_scaling.py --quick           # 1 and 2 pairs, 4 B and 64 KiB, a tenth of the work
    python benchmarks/queue_scaling.py --client sync     # the synchronous client (queueserver.connect)
    python benchmarks/queue_scaling.py --pairs 1,8 --sizes 4,4194304 --workloads W2 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from _common import CTX, FRAME, ServerProc, _role_main, machine_line, run_async

KIB, MIB = 1024, 1024 * 1024
SIZES = (4, 64, 4 * KIB, 64 * KIB, MIB, 4 * MIB)
PAIRS = (1, 2, 4, 8)
HELLO = struct.Struct("<cBI")  # floor hello: role (b"P"/b"C"), pair index, element bytes


def human(size: int) -> str:
    for unit, div in (("MiB", MIB), ("KiB", KIB)):
        if size >= div and size % div == 0:
            return f"{size // div} {unit}"
    return f"{size} B"


# ------------------------------------------------------------------ sizing of each cell
@dataclass(frozen=True)
class Cell:
    workload: str  # "W1" or "W2"
    pairs: int
    size: int  # bytes per element
    n: int  # elements per pair
    batch: int  # W1: elements per enqueue_many/dequeue_many call; W2: 1
    capacity: int  # per queue

    @property
    def total(self) -> int:
        return self.n * self.pairs


def make_cell(workload: str, pairs: int, size: int, scale: float) -> Cell:
    """Elements per pair such that every pair count moves the same total, about a second's work."""
    if workload == "W1":
        batch = max(1, min(256, 4 * MIB // size))
        total = int(min(1_000_000, 512 * MIB // size) * scale)
        capacity = min(10_000, max(4 * batch, 64 * MIB // size))
    else:
        batch = 1
        total = int(min(8_000, 256 * MIB // size) * scale)
        capacity = min(10_000, max(4, 64 * MIB // size))
    per_pair = max(batch, total // pairs // batch * batch)
    return Cell(workload, pairs, size, per_pair, batch, capacity)


def elements(size: int, count: int, seed: int) -> np.ndarray:
    """``count`` float32 elements of ``size`` bytes, as one [count, size / 4] array."""
    return np.random.default_rng(seed).random((count, size // 4), dtype=np.float32)


def pool_for(cell: Cell, pair: int) -> np.ndarray:
    """What a producer sends, cycled: two batches (W1) or up to 4 MiB of elements (W2)."""
    count = 2 * cell.batch if cell.workload == "W1" else max(1, min(cell.n, 4 * MIB // cell.size))
    return elements(cell.size, count, pair)


# ------------------------------------------------------------------ CPU time of a process
TICK = os.sysconf("SC_CLK_TCK")


def cpu_sample(pid: int) -> tuple[float, dict[str, int]]:
    """Process ``pid``'s CPU time two ways: user + system seconds of the whole process from
    /proc/PID/stat (clock-tick resolution, threads that exited included), and each live thread's
    nanoseconds on a CPU from /proc/PID/task/TID/schedstat (nanosecond resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rfind(")") + 2:].split()  # fields from the 3rd (state) on
    seconds = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: the 14th and 15th
    threads = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    threads[tid] = int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    except FileNotFoundError:
        pass
    return seconds, threads


def cpu_between(before: tuple[float, dict[str, int]], after: tuple[float, dict[str, int]]) -> float:
    """CPU seconds spent between two samples: the nanosecond figure, unless the tick figure says
    it missed something (a thread that ended in between) by more than the ticks' rounding."""
    ticks = after[0] - before[0]
    ns = sum(v - before[1].get(tid, 0) for tid, v in after[1].items()) / 1e9
    if not after[1] or ticks > ns * 1.05 + 2 / TICK:
        return ticks
    return ns


def run_measured(roles: list[tuple[Callable, tuple]], pid: int, timeout: float = 600) -> tuple[float, float, list]:
    """``_common.run_roles`` that also reads process ``pid``'s CPU time around the work: returns
    (seconds until all roles finished, CPU seconds ``pid`` spent meanwhile, results)."""
    go, results, ready = CTX.Event(), CTX.Queue(), CTX.Barrier(len(roles) + 1)
    procs = [CTX.Process(target=_role_main, args=(fn, ready, go, results, *args)) for fn, args in roles]
    for p in procs:
        p.start()
    try:
        ready.wait(timeout)
        cpu0 = cpu_sample(pid)
        start = time.monotonic()
        go.set()
        out = [results.get(timeout=timeout) for _ in procs]
        cpu1 = cpu_sample(pid)
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
    errors = [value for name, value, _ in out if name == "error"]
    if errors:
        raise RuntimeError(errors[0])
    elapsed = max(end for _, _, end in out) - start
    return elapsed, cpu_between(cpu0, cpu1), [(name, value) for name, value, _ in out]


# ------------------------------------------------------------------ the project's clients
def _queue_args(cell: Cell, pair: int) -> dict:
    return dict(name=f"scale{pair}", capacity=cell.capacity, dtypes=[np.float32], shapes=[[cell.size // 4]])


def producer(ready, go, target: str, cell: Cell, pair: int, client: str, inflight: int):
    import queueserver as qs

    pool = pool_for(cell, pair)
    calls = cell.n // cell.batch
    if cell.workload == "W1":
        values = [pool[i * cell.batch:(i + 1) * cell.batch] for i in range(2)]
    else:
        values = list(pool)
    if client == "sync":
        with qs.connect(target, client_name=f"scale producer {pair}") as c:
            q = c.fifo_queue(**_queue_args(cell, pair))
            put = q.enqueue_many if cell.workload == "W1" else q.enqueue
            ready.wait()
            go.wait()
            for i in range(calls):
                put(values[i % len(values)])
        return "producer", cell.n

    async def main():
        async with qs.connect_async(target, client_name=f"scale producer {pair}") as c:
            q = await c.fifo_queue(**_queue_args(cell, pair))
            put = q.enqueue_many if cell.workload == "W1" else q.enqueue
            ready.wait()
            go.wait()
            if cell.workload == "W2" or inflight == 1:
                for i in range(calls):
                    await put(values[i % len(values)])
                return
            window: set = set()
            for i in range(calls):  # W1: a window of enqueue_many calls in flight, as queue_bulk.py
                if len(window) >= inflight:
                    done, window = await asyncio.wait(window, return_when=asyncio.FIRST_COMPLETED)
                    for t in done:
                        t.result()
                window.add(asyncio.ensure_future(put(values[i % len(values)])))
            await asyncio.gather(*window)
    run_async(main)
    return "producer", cell.n


def consumer(ready, go, target: str, cell: Cell, pair: int, client: str):
    import queueserver as qs

    calls = cell.n // cell.batch
    if client == "sync":
        with qs.connect(target, client_name=f"scale consumer {pair}") as c:
            q = c.fifo_queue(**_queue_args(cell, pair))
            ready.wait()
            go.wait()
            count = 0
            for _ in range(calls):
                got = q.dequeue_many(cell.batch) if cell.workload == "W1" else q.dequeue()
                count += len(got) if cell.workload == "W1" else 1
        return "consumer", count

    async def main():
        async with qs.connect_async(target, client_name=f"scale consumer {pair}") as c:
            q = await c.fifo_queue(**_queue_args(cell, pair))
            ready.wait()
            go.wait()
            count = 0
            for _ in range(calls):
                if cell.workload == "W1":
                    count += len(await q.dequeue_many(cell.batch))
                else:
                    await q.dequeue()
                    count += 1
            return count
    return "consumer", run_async(main)


# ------------------------------------------------------------------ floors for any number of pairs
async def _relay_main(port_pipe) -> None:
    """A bare uvloop stream relay: producer i's bytes go to consumer i, for every pair."""
    pairs: dict[int, dict] = {}

    async def handle(reader, writer) -> None:
        role, pair, _ = HELLO.unpack(await reader.readexactly(HELLO.size))
        slot = pairs.setdefault(pair, {"ready": asyncio.Event()})
        slot[role] = writer
        if b"P" in slot and b"C" in slot:
            slot["ready"].set()
        await slot["ready"].wait()
        if role != b"P":
            return
        out = slot[b"C"]
        while True:
            data = await reader.read(1 << 20)
            if not data:
                break
            out.write(data)
            await out.drain()
        out.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_pipe.send(server.sockets[0].getsockname()[1])
    async with server:
        await asyncio.Event().wait()


async def _reqresp_main(port_pipe, size: int) -> None:
    """A bare uvloop request/response server with an asyncio.Queue per pair: ``E`` + an element's
    bytes in, ``O`` + 4 bytes back; ``D`` + 4 bytes in, ``V`` + the element's bytes back."""
    queues: dict[int, asyncio.Queue] = {}

    async def handle(reader, writer) -> None:
        _, pair, _ = HELLO.unpack(await reader.readexactly(HELLO.size))
        capacity = min(10_000, max(4, 64 * MIB // size))
        queue = queues.setdefault(pair, asyncio.Queue(maxsize=capacity))
        try:
            while True:
                op = await reader.readexactly(1)
                if op == b"E":
                    await queue.put(await reader.readexactly(size))
                    writer.write(b"O\x00\x00\x00\x00")
                else:
                    await reader.readexactly(4)
                    writer.writelines([b"V", await queue.get()])
        except asyncio.IncompleteReadError:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=stream_limit(size))
    port_pipe.send(server.sockets[0].getsockname()[1])
    async with server:
        await asyncio.Event().wait()


def stream_limit(size: int) -> int:
    """The floors' StreamReader buffer limit: room for two elements, so that reading a big one does
    not pause and resume the transport every 64 KiB (asyncio's default), which the server does not do."""
    return max(64 * KIB, 2 * size + 64)


def relay_floor_process(port_pipe) -> None:
    run_async(_relay_main, port_pipe)


def reqresp_floor_process(port_pipe, size: int) -> None:
    run_async(_reqresp_main, port_pipe, size)


def floor_producer(ready, go, port: int, cell: Cell, pair: int):
    pool = pool_for(cell, pair)
    calls = cell.n // cell.batch

    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HELLO.pack(b"P", pair, cell.size))
        if cell.workload == "W1":
            batches = [memoryview(pool[i * cell.batch:(i + 1) * cell.batch]).cast("B") for i in range(2)]
            ready.wait()
            go.wait()
            for i in range(calls):
                b = batches[i % 2]
                writer.writelines([FRAME.pack(len(b)), b])
                await writer.drain()
            writer.close()
            await writer.wait_closed()
            return
        values = [memoryview(v).cast("B") for v in pool]
        ready.wait()
        go.wait()
        for i in range(calls):
            writer.writelines([b"E", values[i % len(values)]])
            await reader.readexactly(5)
        writer.close()
    run_async(main)
    return "producer", cell.n


def floor_consumer(ready, go, port: int, cell: Cell, pair: int):
    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=stream_limit(cell.size))
        writer.write(HELLO.pack(b"C", pair, cell.size))
        await writer.drain()
        ready.wait()
        go.wait()
        if cell.workload == "W1":
            total = 0
            while True:
                data = await reader.read(1 << 20)
                if not data:
                    break
                total += len(data)
            frames = cell.n // cell.batch
            return (total - frames * FRAME.size) // cell.size
        count = 0
        for _ in range(cell.n):
            writer.write(b"D\x00\x00\x00\x00")
            await reader.readexactly(1 + cell.size)
            count += 1
        writer.close()
        return count
    return "consumer", run_async(main)


# ------------------------------------------------------------------ one cell
@dataclass
class Figure:
    seconds: float
    cpu: float  # CPU seconds of the server (or floor) process

    def rate(self, cell: Cell) -> float:
        return cell.total / self.seconds

    def cpu_us(self, cell: Cell) -> float:
        return self.cpu / cell.total * 1e6


def check(cell: Cell, results: list) -> None:
    got = sum(v for name, v in results if name == "consumer")
    assert got == cell.total, f"{cell}: consumers got {got} elements, expected {cell.total}"


def run_ours(cell: Cell, client: str, inflight: int) -> Figure:
    server = ServerProc()
    try:
        roles: list[tuple[Callable, tuple]] = []
        for pair in range(cell.pairs):
            roles.append((producer, (server.target, cell, pair, client, inflight)))
            roles.append((consumer, (server.target, cell, pair, client)))
        elapsed, cpu, results = run_measured(roles, server.proc.pid)
    finally:
        server.stop()
    check(cell, results)
    return Figure(elapsed, cpu)


def run_floor(cell: Cell) -> Figure:
    parent, child = CTX.Pipe()
    if cell.workload == "W1":
        proc = CTX.Process(target=relay_floor_process, args=(child,), daemon=True)
    else:
        proc = CTX.Process(target=reqresp_floor_process, args=(child, cell.size), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        roles: list[tuple[Callable, tuple]] = []
        for pair in range(cell.pairs):
            roles.append((floor_producer, (port, cell, pair)))
            roles.append((floor_consumer, (port, cell, pair)))
        assert proc.pid is not None
        elapsed, cpu, results = run_measured(roles, proc.pid)
    finally:
        proc.terminate()
        proc.join(10)
    check(cell, results)
    return Figure(elapsed, cpu)


def median_figure(figs: list[Figure]) -> Figure:
    return Figure(statistics.median(f.seconds for f in figs), statistics.median(f.cpu for f in figs))


# ------------------------------------------------------------------ output
def wide_table(rows: list[tuple[str, ...]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows)


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x < 1e3 else f"{x / 1e3:,.1f}k" if x < 1e6 else f"{x / 1e6:,.2f}M"


def fmt_mb(x: float) -> str:
    return f"{x:,.1f}" if x < 10 else f"{x:,.0f}"


def fmt_us(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 10 else f"{x:,.0f}"


HEADER = ("size", "pairs", "elements", "elements/s", "MB/s", "server CPU us/elem",
          "floor elements/s", "floor MB/s", "floor CPU us/elem", "vs floor", "CPU vs floor")


def row(cell: Cell, ours: Figure, floor: Figure) -> tuple[str, ...]:
    r_ours, r_floor = ours.rate(cell), floor.rate(cell)
    cpu_ours, cpu_floor = ours.cpu_us(cell), floor.cpu_us(cell)
    return (human(cell.size), str(cell.pairs), f"{cell.total:,}", fmt_rate(r_ours), fmt_mb(r_ours * cell.size / 1e6),
            fmt_us(cpu_ours), fmt_rate(r_floor), fmt_mb(r_floor * cell.size / 1e6), fmt_us(cpu_floor),
            f"{r_ours / r_floor:.2f}", f"{cpu_ours / cpu_floor:.1f}x" if cpu_floor > 0 else "-")


def parse_list(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip().upper()
        mult = MIB if part.endswith("M") or part.endswith("MIB") else KIB if part.endswith("K") or part.endswith("KIB") else 1
        out.append(int(part.rstrip("MIBK") or 0) * mult)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client", choices=("async", "sync"), default="async",
                        help="the project's client: queueserver.connect_async (default) or queueserver.connect")
    parser.add_argument("--workloads", default="W1,W2", help="comma-separated subset of W1,W2")
    parser.add_argument("--pairs", default=None, help="producer/consumer pair counts (default 1,2,4,8)")
    parser.add_argument("--sizes", default=None,
                        help="element sizes in bytes, K/M suffixes allowed, multiples of 4 (default 4,64,4K,64K,1M,4M)")
    parser.add_argument("--scale", type=float, default=None, help="multiply every cell's element count (default 1)")
    parser.add_argument("--inflight", type=int, default=2,
                        help="W1 with the asyncio client: enqueue_many calls each producer keeps in flight")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each cell (ours and floor alternate); medians")
    parser.add_argument("--quick", action="store_true", help="1 and 2 pairs, 4 B and 64 KiB, a tenth of the work")
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    args = parser.parse_args()
    workloads = [w.strip().upper() for w in args.workloads.split(",")]
    if not set(workloads) <= {"W1", "W2"}:
        parser.error("--workloads takes W1, W2 or both")
    pairs = [int(p) for p in args.pairs.split(",")] if args.pairs else ([1, 2] if args.quick else list(PAIRS))
    sizes = parse_list(args.sizes) if args.sizes else ([4, 64 * KIB] if args.quick else list(SIZES))
    if any(s <= 0 or s % 4 for s in sizes):
        parser.error("element sizes must be positive multiples of 4 bytes (float32 elements)")
    if any(p < 1 or p > 255 for p in pairs):
        parser.error("pair counts must be 1-255")
    scale = args.scale if args.scale is not None else (0.1 if args.quick else 1.0)

    started = time.monotonic()
    print(f"{machine_line()}; client {args.client}; "
          f"{time.strftime('%Y-%m-%d %H:%M', time.localtime())}; median of {args.repeat}", flush=True)
    for workload in workloads:
        rows: list[tuple[str, ...]] = [HEADER]
        for size in sizes:
            for n_pairs in pairs:
                cell = make_cell(workload, n_pairs, size, scale)
                ours, floor = [], []
                for _ in range(args.repeat):
                    ours.append(run_ours(cell, args.client, args.inflight))
                    floor.append(run_floor(cell))
                rows.append(row(cell, median_figure(ours), median_figure(floor)))
                print(f"  {workload} {human(size)} x{n_pairs}: " + ", ".join(
                    f"{h} {v}" for h, v in zip(HEADER[2:], rows[-1][2:])), file=sys.stderr, flush=True)
        style = ("enqueue_many/dequeue_many batches of up to 256 elements (4 MiB at most)"
                 + (f", {args.inflight} enqueue_many in flight" if args.client == "async" else "")
                 if workload == "W1" else "one element per enqueue and per dequeue call, one call in flight")
        floor_name = "bare uvloop relay" if workload == "W1" else "bare uvloop request/response + asyncio.Queue"
        print(f"\n{workload}: {style}; floor: {floor_name}")
        print(wide_table(rows, args.markdown), flush=True)
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
