"""At-least-once delivery with real processes: a consumer killed with SIGKILL loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import queueserver as qs
from support import crash_connection

CONSUMER = r"""
import sys, numpy as np, queueserver as qs
target, out_path, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
with qs.connect(target) as c, open(out_path, "a") as out:
    q = c.fifo_queue("work", capacity=100000, dtypes=[np.int64], shapes=[[]])
    while True:
        try:
            # One element per call travels in compact frames; batches in msgpack frames.
            batch = q.dequeue_up_to(batch_size) if batch_size > 1 else np.atleast_1d(q.dequeue())
        except qs.OutOfRangeError:
            break
        out.write(" ".join(map(str, batch.tolist())) + "\n")
        out.flush()
"""

N = 5000

TASKS_CONSUMER = r"""
import asyncio, sys, numpy as np, queueserver as qs
target, out_path, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def consume(q, out, work_s):
    while True:
        try:
            batch = await q.dequeue_up_to(batch_size)
        except qs.OutOfRangeError:
            return
        await asyncio.sleep(work_s)  # the work: a sibling task dequeues meanwhile
        out.write(" ".join(map(str, batch.tolist())) + "\n")
        out.flush()

async def main():
    async with await qs.connect_async(target) as c:
        q = await c.fifo_queue("work", capacity=100000, dtypes=[np.int64], shapes=[[]])
        with open(out_path, "a") as out:
            # Work of different lengths, so the tasks fall out of step.
            await asyncio.gather(*(consume(q, out, 0.003 * (i + 1)) for i in range(4)))

asyncio.run(main())
"""


def _lines(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("batch", [50, 1], ids=["dequeue_up_to(50)", "dequeue()"])
def test_consumer_killed_with_sigkill_loses_nothing(server_process, tmp_path, batch):
    with qs.connect(server_process.target) as c:
        c.reset([""])  # the module's server: start from an empty container
        q = c.fifo_queue("work", capacity=100000, dtypes=[np.int64], shapes=[[]])
        q.enqueue_many(np.arange(N, dtype=np.int64))
        q.close()
        out = tmp_path / "seen.txt"
        # The last consumer drains what is left, including every batch a killed consumer held.
        kills = _kill_consumers(server_process.target, CONSUMER, out, batch, (3, 20, 45))
        seen = Counter(int(v) for line in out.read_text().splitlines() for v in line.split())
        assert set(seen) == set(range(N)), f"lost {N - len(seen)} elements"
        repeated = sum(count - 1 for count in seen.values())
        assert repeated <= kills * batch  # at most the one batch each killed consumer held
        assert q.size() == 0
        c.reset([""])


def _kill_consumers(target: str, script: str, out: Path, batch: int, thresholds: tuple) -> int:
    """Start a consumer per threshold and SIGKILL it once ``out`` has that many lines; then drain."""
    for threshold in thresholds:
        proc = subprocess.Popen([sys.executable, "-c", script, target, str(out), str(batch)],
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 60
        while _lines(out) < threshold and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run([sys.executable, "-c", script, target, str(out), str(batch)], check=True, timeout=120)
    return len(thresholds)


@pytest.mark.slow
def test_tasks_sharing_a_connection_killed_with_sigkill_lose_nothing(server_process, tmp_path):
    # Four tasks consume over one asyncio connection: a dequeue acknowledges only what its own
    # task received, so a batch a sibling is still working on is never acknowledged for it.
    batch = 20
    with qs.connect(server_process.target) as c:
        c.reset([""])
        q = c.fifo_queue("work", capacity=100000, dtypes=[np.int64], shapes=[[]])
        q.enqueue_many(np.arange(N, dtype=np.int64))
        q.close()
        out = tmp_path / "seen.txt"
        kills = _kill_consumers(server_process.target, TASKS_CONSUMER, out, batch, (5, 30, 60))
        seen = Counter(int(v) for line in out.read_text().splitlines() for v in line.split())
        assert set(seen) == set(range(N)), f"lost {N - len(seen)} elements"
        assert sum(count - 1 for count in seen.values()) <= kills * 4 * batch  # what the four tasks held
        assert q.size() == 0
        c.reset([""])


def test_unacknowledged_batch_returns_to_the_front_in_order(server_process):
    with qs.connect(server_process.target) as producer:
        q = producer.fifo_queue("ordered", capacity=100, dtypes=[np.int64], shapes=[[]])
        q.enqueue_many(np.arange(10))
        consumer = qs.connect(server_process.target)
        cq = consumer.fifo_queue("ordered", capacity=100, dtypes=[np.int64], shapes=[[]])
        assert cq.dequeue_many(3).tolist() == [0, 1, 2]  # acknowledged by the next dequeue
        assert cq.dequeue_many(3).tolist() == [3, 4, 5]  # held: never acknowledged
        crash_connection(consumer)
        deadline = time.monotonic() + 5
        while q.size() != 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert q.dequeue_many(7).tolist() == [3, 4, 5, 6, 7, 8, 9]
        producer.reset([""])


def test_explicit_ack_and_clean_close_do_not_redeliver(server_process):
    with qs.connect(server_process.target) as producer:
        q = producer.fifo_queue("acked", capacity=100, dtypes=[np.int64], shapes=[[]])
        q.enqueue_many(np.arange(6))
        with qs.connect(server_process.target) as consumer:
            cq = consumer.fifo_queue("acked", capacity=100, dtypes=[np.int64], shapes=[[]])
            assert cq.dequeue_many(3).tolist() == [0, 1, 2]
            cq.ack()
            assert cq.dequeue_many(3).tolist() == [3, 4, 5]
        # A clean close acknowledged the last batch: nothing comes back.
        assert q.size() == 0
        producer.reset([""])


EXITING_CONSUMER = r"""
import sys, numpy as np, queueserver as qs
c = qs.connect(sys.argv[1])  # no with-block, no close(): the interpreter simply exits
q = c.fifo_queue("exiting", capacity=100, dtypes=[np.int64], shapes=[[]])
print(q.dequeue_many(3).tolist(), flush=True)
"""


def test_a_client_left_open_at_a_normal_exit_acknowledges_what_it_received(server_process):
    # Before: the process exited without a goodbye, so the server gave the batch to the next
    # consumer again, as if the consumer had crashed.
    with qs.connect(server_process.target) as c:
        c.reset([""])
        q = c.fifo_queue("exiting", capacity=100, dtypes=[np.int64], shapes=[[]])
        q.enqueue_many(np.arange(6))
        out = subprocess.run([sys.executable, "-c", EXITING_CONSUMER, server_process.target],
                             capture_output=True, text=True, timeout=60, check=True)
        assert out.stdout.strip() == "[0, 1, 2]"
        assert q.size() == 3 and q.dequeue_many(3, timeout=5).tolist() == [3, 4, 5]
        assert q.size() == 0
        c.reset([""])
