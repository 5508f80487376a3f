"""W8: the seed's input pipeline end to end, as a user runs it (shared/WORKLOADS.md).

W3's rows split into 4 CSV shards (each with the header); a ``queueserver serve`` daemon holds a
RandomShuffleQueue (capacity 10,000, min_after_dequeue 2,000, float32[10] + int32, seed 1); the
loader CLI (``python -m pipeline load``, 2 readers) reads the shards into it and closes it at the
end; one consumer process dequeues ``dequeue_up_to(256)`` with the synchronous client until
OutOfRangeError. The clock runs from the loader's start to the consumer's last dequeue. Beside it,
the same run's floor: W3's bare reader (``read_csv_columns``, 1 thread) over the same shards.
TensorFlow's references on this machine (WORKLOADS.md): TF1 in one process 178k rows/s; its
distributed form 23-47k rows/s.

A second line times the loader CLI alone into a FIFOQueue that holds every row (the issue's
"loader CLI into a queue, 2 readers >= 0.7x the bare reader"): by the loader's own clock (from
its first read to the queue's close, as it reports) and by the wall clock of the whole command
(Python's start-up and imports included).

    python benchmarks/pipeline_e2e.py [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

from _common import CTX, REPO, ServerProc, machine_line

DATA = REPO / "benchmarks" / "data"
QUEUE = "w8_rows"


def _shards(quick: bool) -> list[str]:
    """W3's file (made by benchmarks/readers.py) cut into 4 shards, each with the header."""
    source = DATA / ("w3_quick.csv" if quick else "w3.csv")
    if not source.exists():
        subprocess.run([sys.executable, "benchmarks/readers.py", "--only", "W3"] + (["--quick"] if quick else []),
                       cwd=REPO, check=True, capture_output=True)
    lines = source.read_bytes().split(b"\n")
    header, rows = lines[0], [r for r in lines[1:] if r]
    paths = []
    for k in range(4):
        path = DATA / f"w8{'_quick' if quick else ''}_{k}.csv"
        part = rows[k::4]
        if not path.exists():
            path.write_bytes(header + b"\n" + b"\n".join(part) + b"\n")
        paths.append(str(path))
    return paths


def _consume(target: str, out) -> None:
    """The consumer process: dequeue_up_to(256) until the queue is closed and drained."""
    import queueserver as qs

    rows = 0
    with qs.connect(target) as c:
        q = c.random_shuffle_queue(QUEUE, 10_000, 2_000, [np.float32, np.int32], [[10], []], seed=1)
        out.send("ready")
        while True:
            try:
                x, _ = q.dequeue_up_to(256)
            except qs.OutOfRangeError:
                break
            rows += len(x)
    out.send((rows, time.monotonic()))


def _one_run(paths: list[str]) -> tuple[int, float]:
    server = ServerProc()
    try:
        receive, send = CTX.Pipe(duplex=False)
        consumer = CTX.Process(target=_consume, args=(server.target, send))
        consumer.start()
        assert receive.recv() == "ready"
        start = time.monotonic()
        loader = subprocess.run(
            [sys.executable, "-m", "pipeline", "load", "--target", server.target, "--queue", QUEUE,
             "--format", "csv", "--skip-header-lines", "1", "--record-defaults", "float32*10,int32",
             "--readers", "2", "--quiet", *[arg for p in paths for arg in ("--files", p)]],
            cwd=REPO, capture_output=True, text=True)
        if loader.returncode != 0:
            raise RuntimeError(f"the loader failed: {loader.stderr.strip()}")
        rows, end = receive.recv()
        consumer.join()
        return rows, end - start
    finally:
        server.stop()


def _loader_alone(paths: list[str], rows: int) -> tuple[float, float]:
    """The loader CLI into a FIFOQueue big enough for every row: (its reported rows/s, wall rows/s)."""
    import re

    server = ServerProc()
    try:
        start = time.monotonic()
        loader = subprocess.run(
            [sys.executable, "-m", "pipeline", "load", "--target", server.target, "--queue", "alone",
             "--queue-type", "fifo", "--capacity", str(rows + 1), "--format", "csv", "--skip-header-lines", "1",
             "--record-defaults", "float32*10,int32", "--readers", "2",
             *[arg for p in paths for arg in ("--files", p)]],
            cwd=REPO, capture_output=True, text=True)
        wall = time.monotonic() - start
        if loader.returncode != 0:
            raise RuntimeError(f"the loader failed: {loader.stderr.strip()}")
        match = re.search(r"loaded ([\d,]+) records .* \(([\d,]+) records/s\)", loader.stderr)
        if match is None or int(match.group(1).replace(",", "")) != rows:
            raise RuntimeError(f"the loader did not report loading {rows} records: {loader.stderr.strip()[-300:]}")
        return float(match.group(2).replace(",", "")), rows / wall
    finally:
        server.stop()


def _floor(paths: list[str]) -> tuple[int, float]:
    from pipeline.csv import read_csv_columns

    start = time.monotonic()
    rows = 0
    for path in paths:
        cols = read_csv_columns(path, [[0.0]] * 10 + [[0]], skip_header_lines=1)
        rows += len(cols[0])
    return rows, time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="W3's quick tenth instead of its 500,000 rows")
    args = ap.parse_args()
    print(machine_line())
    paths = _shards(args.quick)
    e2e, floor, alone, alone_wall = [], [], [], []
    for _ in range(args.repeat):  # alternating, so both see the same machine
        rows, seconds = _floor(paths)
        floor.append(rows / seconds)
        got, seconds = _one_run(paths)
        if got != rows:
            raise RuntimeError(f"the consumer got {got} rows of {rows}")
        e2e.append(got / seconds)
        reported, wall = _loader_alone(paths, rows)
        alone.append(reported)
        alone_wall.append(wall)
    m, f = statistics.median(e2e), statistics.median(floor)
    print(f"W8 end to end (loader CLI, 2 readers -> daemon -> sync consumer): {m / 1e3:,.0f}k rows/s"
          f"  (runs: {', '.join(f'{r / 1e3:,.0f}k' for r in e2e)})")
    print(f"floor: W3's bare reader (read_csv_columns, 1 thread) on the shards: {f / 1e3:,.0f}k rows/s;"
          f" ratio {m / f:.2f}")
    print(f"TensorFlow 1 on this machine (WORKLOADS.md): 178k rows/s in one process -> {m / 178e3:.2f}x;"
          f" distributed 23-47k rows/s -> {m / 47e3:.1f}-{m / 23e3:.1f}x (targets: >= 2x and >= 8x)")
    a, w = statistics.median(alone), statistics.median(alone_wall)
    print(f"loader CLI alone into a queue (2 readers): {a / 1e3:,.0f}k rows/s by its own clock, ratio {a / f:.2f}"
          f" to the bare reader (target >= 0.7; runs: {', '.join(f'{r / f:.2f}' for r in alone)});"
          f" {w / 1e3:,.0f}k rows/s by the wall clock of the command (start-up included), ratio {w / f:.2f}")


if __name__ == "__main__":
    main()
