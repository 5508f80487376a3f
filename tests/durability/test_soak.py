"""A soak: the daemon is killed (SIGKILL) three times while a producer and a consumer carry on
through each restart (they reconnect by themselves); every id arrives, none is lost, and the only
repeats are deliveries that were in flight at a kill (at least once)."""

from __future__ import annotations

import signal
import threading

import numpy as np
import pytest

import queueserver as qs
from support import ServerProcess, free_ports

TOTAL, BATCH_IN, BATCH_OUT, KILLS = 30_000, 50, 64, 3


@pytest.mark.slow
@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_three_kills_while_a_producer_and_a_consumer_carry_on(tmp_path, fsync):
    args = ("--port", str(free_ports(1)[0]), "--data-dir", str(tmp_path / "data"), "--fsync", fsync)
    server = ServerProcess(*args)
    target = server.target
    seen: list[int] = []
    errors: list[BaseException] = []
    milestones = [threading.Event() for _ in range(KILLS)]

    def produce() -> None:
        with qs.connect(target, operation_timeout=30, client_name="soak producer") as c:
            q = c.fifo_queue("ids", capacity=TOTAL, dtypes=[np.int64], shapes=[[]])
            for start in range(0, TOTAL, BATCH_IN):
                q.enqueue_many(np.arange(start, start + BATCH_IN))
            q.close()

    def consume() -> None:
        with qs.connect(target, operation_timeout=30, client_name="soak consumer") as c:
            q = c.fifo_queue("ids", capacity=TOTAL, dtypes=[np.int64], shapes=[[]])
            while True:
                try:
                    seen.extend(q.dequeue_up_to(BATCH_OUT).tolist())
                except qs.OutOfRangeError:
                    return
                for k, event in enumerate(milestones):
                    if len(seen) >= (k + 1) * TOTAL // (KILLS + 2):
                        event.set()

    def run(fn) -> threading.Thread:
        def guarded() -> None:
            try:
                fn()
            except BaseException as exc:  # reported below
                errors.append(exc)
        thread = threading.Thread(target=guarded)
        thread.start()
        return thread

    threads = [run(produce), run(consume)]
    try:
        for event in milestones:
            assert event.wait(60), "the streams stalled"
            server.stop(signal.SIGKILL)
            server = ServerProcess(*args)
        for thread in threads:
            thread.join(120)
        assert not any(t.is_alive() for t in threads), "a client did not finish"
        assert not errors, f"a client failed: {errors[0]!r}"
        assert set(seen) == set(range(TOTAL)), f"{TOTAL - len(set(seen))} id(s) lost"
        # Repeats come only from batches in flight or held at a kill: at most two per kill.
        assert len(seen) - TOTAL <= KILLS * 2 * BATCH_OUT, len(seen) - TOTAL
        with qs.connect(server.target) as c:
            assert c.fifo_queue("ids", capacity=TOTAL, dtypes=[np.int64], shapes=[[]]).size() == 0
    finally:
        server.stop()
