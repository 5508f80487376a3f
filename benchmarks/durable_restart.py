"""Restart with a full data directory: replay time against reading the log's bytes.

A ``queueserver serve --data-dir`` daemon is filled with about 1 GB of W1 batches (enqueue_many
of 256 x (784 float32 + int32)) and killed with SIGKILL. Then, on the files it left:

* reading: every file's bytes read into memory, as the replay reads them;
* replay: ``DurableLog.recover`` (read, check every record's CRC32C, rebuild the queue through
  the core), in this process;
* restart: a new daemon on the same directory, until it serves (its ``state_recovered`` line).

Both are measured with the files in the page cache (each is run after a first read), so the
figure compares the replay's own work with the cost of the bytes; a cold disk adds the same
read time to both.

    python benchmarks/durable_restart.py [--gb 1.0] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from _common import REPO, ServerProc, machine_line, run_async

BATCH, FEATURES = 256, 784


def wide_table(rows: list[tuple[str, ...]]) -> str:
    """``table`` for any number of columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def fill(target: str, batches: int) -> None:
    import queueserver as qs

    x = np.random.default_rng(0).random((BATCH, FEATURES), dtype=np.float32)
    y = np.arange(BATCH, dtype=np.int32)

    async def main() -> None:
        async with qs.connect_async(target, client_name="filler") as c:
            q = await c.fifo_queue("w1", capacity=batches * BATCH, dtypes=[np.float32, np.int32],
                                   shapes=[[FEATURES], []])
            window: set = set()
            for _ in range(batches):
                if len(window) >= 4:
                    _, window = await asyncio.wait(window, return_when=asyncio.FIRST_COMPLETED)
                window.add(asyncio.ensure_future(q.enqueue_many((x, y))))
            await asyncio.gather(*window)
    run_async(main)


def read_all(data: str) -> int:
    total = 0
    for name in sorted(os.listdir(data)):
        if name.endswith((".qlog", ".qsnap")):
            with open(os.path.join(data, name), "rb") as f:
                buf = bytearray(os.fstat(f.fileno()).st_size)
                f.readinto(buf)
                total += len(buf)
    return total


def replay(data: str) -> tuple[int, int]:
    from queueserver.core import ResourceManager
    from queueserver.core.stamps import Stamps
    from queueserver.durability import DurableLog

    res = ResourceManager()
    log = DurableLog(data)
    _, found = log.recover(res, Stamps())
    log.close()
    return found.records, res.get("", "w1").size()


def restart(data: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "queueserver", "--log-level", "INFO", "serve", "--port", "0",
                             "--data-dir", data], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    assert proc.stdout is not None
    for line in proc.stdout:
        if re.search(r"serving on", line) and "queueserver /job" in line:
            break
    elapsed = time.perf_counter() - t0
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="gigabytes to queue")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    batches = int(args.gb * 1e9 / (BATCH * (FEATURES * 4 + 4)))
    data = tempfile.mkdtemp(prefix="restart-data-", dir=args.data_root)
    try:
        server = ServerProc("--data-dir", data)
        t0 = time.perf_counter()
        fill(server.target, batches)
        fill_s = time.perf_counter() - t0
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(30)
        replay(data)  # the first start after the kill finishes what the kill interrupted (a compaction)
        size = read_all(data)  # and warms the page cache for both measures
        reads, replays, restarts = [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            read_all(data)
            reads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            records, elements = replay(data)
            replays.append(time.perf_counter() - t0)
            restarts.append(restart(data))
        assert elements == batches * BATCH, (elements, batches * BATCH)
        t_read, t_replay, t_restart = (statistics.median(v) for v in (reads, replays, restarts))
        print(f"{machine_line()}; {batches} batches of {BATCH} W1 elements queued ({size / 1e9:.2f} GB on disk,"
              f" {records} records), filled in {fill_s:.1f} s; median of {args.repeat}")
        print(wide_table([
            ("restart with a full data directory", "seconds", "GB/s", "vs reading"),
            ("reading the files' bytes", f"{t_read:.2f}", f"{size / 1e9 / t_read:.2f}", "1.00"),
            ("replay (DurableLog.recover)", f"{t_replay:.2f}", f"{size / 1e9 / t_replay:.2f}",
             f"{t_replay / t_read:.2f} (target <= 2)"),
            ("daemon restart until it serves", f"{t_restart:.2f}", "", f"{t_restart / t_read:.2f}"),
        ]))
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
