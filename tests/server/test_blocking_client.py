"""The synchronous client does its socket I/O on the calling thread (queueserver/blocking.py):
threads sharing one client, a thread blocked in a call while others go on, Ctrl-C from a real
signal, a server that stops answering."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import queueserver as qs
from support import REPO


def _wait_for(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_a_synchronous_client_starts_no_thread(local_server):
    before = threading.active_count()
    with qs.connect(local_server.target) as c:
        q = c.fifo_queue("nothread", capacity=10, dtypes=[np.float32], shapes=[[]])
        q.enqueue(1.0)
        assert threading.active_count() == before
        assert float(q.dequeue()) == 1.0


@pytest.mark.parametrize("shape", [[], [None]], ids=["compact frames", "msgpack frames"])
def test_threads_sharing_one_client_move_every_element_exactly_once(local_server, shape):
    producers, consumers, per_producer = 4, 4, 300
    with qs.connect(local_server.target, operation_timeout=30) as c:
        make = c.fifo_queue if not shape else c.padding_fifo_queue  # variable size: no compact frames
        q = make("shared", capacity=50, dtypes=[np.int64], shapes=[shape])
        got: list[list[int]] = [[] for _ in range(consumers)]
        errors: list[BaseException] = []

        def produce(k: int) -> None:
            try:
                values = np.arange(per_producer) + 1000 * k
                for i in range(0, per_producer, 30):  # one element at a time, then a batch
                    for v in values[i:i + 15]:
                        q.enqueue(v if not shape else np.array([v]))
                    batch = values[i + 15:i + 30]
                    q.enqueue_many(batch if not shape else batch[:, None])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def consume(k: int) -> None:
            try:
                while True:
                    try:
                        out = q.dequeue() if k % 2 else q.dequeue_up_to(7)
                    except qs.OutOfRangeError:
                        return
                    got[k].extend(np.asarray(out).reshape(-1).tolist())
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=consume, args=(k,)) for k in range(consumers)]
        threads += [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
        for t in threads:
            t.start()
        for t in threads[consumers:]:
            t.join(60)
        q.close()
        for t in threads[:consumers]:
            t.join(60)
        assert not errors, errors
        everything = collections.Counter(v for part in got for v in part)
        expected = collections.Counter(int(v) + 1000 * k for k in range(producers) for v in range(per_producer))
        assert everything == expected
        assert all(got), "a consumer thread got nothing: the replies were not shared out"


def test_a_thread_blocked_in_a_call_does_not_hold_up_the_others(local_server):
    with qs.connect(local_server.target, operation_timeout=20) as c:
        slow = c.fifo_queue("slow", capacity=10, dtypes=[np.int64], shapes=[[]])
        v = c.variable("counter", np.zeros(2, np.float32))
        v.initialize()
        result = {}
        waiter = threading.Thread(target=lambda: result.setdefault("value", int(slow.dequeue())))
        waiter.start()
        with qs.connect(local_server.target) as watcher:
            _wait_for(lambda: watcher.status()["queues"][0]["waiting_dequeues"] == 1, "the dequeue to wait")
        # The waiting thread reads the socket; this thread's replies must still reach it at once.
        for _ in range(200):
            v.assign_add(np.ones(2, np.float32))
        assert v.read().tolist() == [200.0, 200.0]
        assert waiter.is_alive()
        slow.enqueue(7)
        waiter.join(10)
        assert result == {"value": 7}


INTERRUPTED = r"""
import sys, numpy as np, queueserver as qs
c = qs.connect(sys.argv[1])
q = c.fifo_queue("ctrlc", capacity=10, dtypes=[np.int64], shapes=[[]])
print("waiting", flush=True)
try:
    q.dequeue()
except KeyboardInterrupt:
    print("interrupted", flush=True)
sys.stdin.readline()  # the parent enqueued one element meanwhile
print("after", int(q.dequeue(timeout=5)), flush=True)
c.close()
"""


def test_ctrl_c_in_a_blocked_dequeue_withdraws_it_and_the_client_goes_on(server_process):
    child = subprocess.Popen([sys.executable, "-c", INTERRUPTED, server_process.target], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout.readline().strip() == "waiting"
        with qs.connect(server_process.target) as c:
            q = c.fifo_queue("ctrlc", capacity=10, dtypes=[np.int64], shapes=[[]])
            _wait_for(lambda: c.status()["queues"][0]["waiting_dequeues"] == 1, "the child's dequeue")
            child.send_signal(signal.SIGINT)
            assert child.stdout.readline().strip() == "interrupted"
            _wait_for(lambda: c.status()["queues"][0]["waiting_dequeues"] == 0, "the withdrawal")
            q.enqueue(42)
            assert q.size() == 1  # the withdrawn dequeue did not take it
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "after 42"
        assert child.wait(10) == 0
    finally:
        child.kill()
        child.wait()


def test_a_server_that_stops_answering_fails_the_call_by_its_deadline(server_process):
    with qs.connect(server_process.target, operation_timeout=0.5, reconnect=False) as c:
        v = c.variable("hung", np.zeros(1, np.float32))
        v.initialize()
        os.kill(server_process.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(qs.DeadlineExceededError, match="no reply from"):
                v.read()
            assert time.monotonic() - started < 0.5 + 3.0 + 2.0
        finally:
            os.kill(server_process.proc.pid, signal.SIGCONT)
        assert v.read().tolist() == [0.0]


def test_a_write_to_a_server_that_takes_nothing_ends_by_its_deadline(server_process):
    # Before: a large frame's write had no deadline: with the server stopped it waited for ever,
    # and every other thread's call waited behind it.
    with qs.connect(server_process.target, operation_timeout=1.0, reconnect=False) as c:
        q = c.fifo_queue("big", capacity=2, dtypes=[np.float32], shapes=[[16 << 20]])
        os.kill(server_process.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises((qs.DeadlineExceededError, qs.UnavailableError)):
                q.enqueue(np.zeros(16 << 20, np.float32))
            assert time.monotonic() - started < 1.0 + 3.0 + 2.0
        finally:
            os.kill(server_process.proc.pid, signal.SIGCONT)


def test_a_late_reply_left_unread_does_not_block_the_next_large_write(server_process):
    # A dequeue gives up (its deadline); its 64 MiB reply arrives afterwards and nobody reads it,
    # so the server stops reading this client; the same thread's next large enqueue must read it
    # (and give the batch back) instead of waiting for ever.
    big = 16 << 20  # float32s: 64 MiB
    with qs.connect(server_process.target, operation_timeout=20) as producer:
        producer.fifo_queue("late", capacity=3, dtypes=[np.float32], shapes=[[big]]).enqueue(np.ones(big, np.float32))
    with qs.connect(server_process.target, operation_timeout=20) as c:
        q = c.fifo_queue("late", capacity=3, dtypes=[np.float32], shapes=[[big]])
        os.kill(server_process.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(qs.DeadlineExceededError):
                q.dequeue(timeout=0.1)  # the client stops waiting 3.1 s later; the server is stopped
        finally:
            os.kill(server_process.proc.pid, signal.SIGCONT)
        started = time.monotonic()
        q.enqueue(np.full(big, 2.0, np.float32))
        assert time.monotonic() - started < 15
        _wait_for(lambda: q.size() == 2, "the late batch to go back")
        assert float(q.dequeue()[0]) == 1.0 and float(q.dequeue()[0]) == 2.0


def test_closing_a_client_stops_a_thread_that_is_reconnecting(tmp_path):
    from support import ServerProcess

    server = ServerProcess()
    c = qs.connect(server.target, operation_timeout=60)
    v = c.variable("v", np.zeros(1, np.float32))
    v.initialize()
    server.stop()  # gone for good: the next call reconnects (with backoff) for up to 60 s
    outcome = {}

    def read():
        started = time.monotonic()
        try:
            v.read()
            outcome["got"] = "a value"
        except BaseException as exc:  # noqa: BLE001 - the test looks at what the thread got
            outcome["got"] = type(exc).__name__
        outcome["after"] = time.monotonic() - started

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)  # let it reach the backoff; a deadline, not a synchronisation: the check is below
    c.close()
    reader.join(5)
    assert not reader.is_alive(), "close() left a thread reconnecting"
    assert outcome["got"] in ("CancelledError", "FailedPreconditionError", "UnavailableError")
    assert c._async._sock is None


SIGINT_STRESS = r"""
import collections, os, random, signal, sys, threading, time
import numpy as np, queueserver as qs

server = qs.Server.create_local_server()
total, duration = 60_000, float(sys.argv[1])
with qs.connect(server.target, operation_timeout=10) as p:
    q = p.fifo_queue("q", capacity=total, dtypes=[np.int64], shapes=[[]])
    q.enqueue_many(np.arange(total))
c = qs.connect(server.target, operation_timeout=10)
q = c.queue("q")

def on_sigint(signum, frame):
    # Only inside the client's own code: an interruption in this script's lines between a call's
    # return and the counting below would be this script dropping what it was given.
    if frame is not None and "/queueserver/" in frame.f_code.co_filename:
        raise KeyboardInterrupt

signal.signal(signal.SIGINT, on_sigint)
stop = time.monotonic() + duration

def pester():
    while time.monotonic() < stop:
        time.sleep(random.uniform(0.0002, 0.002))
        os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=pester, daemon=True).start()
got, interrupts, k = collections.Counter(), 0, 0
while time.monotonic() < stop + 0.3:
    try:
        k += 1
        if k % 2:
            v = q.dequeue(timeout=1)
            got[int(v)] += 1
        else:
            v = q.dequeue_up_to(3, timeout=1)
            got.update(int(x) for x in v)
    except KeyboardInterrupt:
        interrupts += 1
    except qs.DeadlineExceededError:
        break
signal.signal(signal.SIGINT, signal.SIG_IGN)
c.close()
with qs.connect(server.target, operation_timeout=10) as c2:
    q2 = c2.queue("q")
    left = set(int(x) for x in q2.dequeue_many(q2.size())) if q2.size() else set()
missing = [i for i in range(total) if i not in got and i not in left]
print(interrupts, len(got), len(missing))
"""


def test_random_ctrl_c_while_consuming_loses_nothing():
    # Real SIGINTs at random moments into a thread consuming with the synchronous client (compact
    # and msgpack frames): every element was received by the caller or is still in the queue.
    out = subprocess.run([sys.executable, "-c", SIGINT_STRESS, "3"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    interrupts, received, missing = map(int, out.stdout.split())
    assert interrupts > 50 and received > 0
    assert missing == 0
