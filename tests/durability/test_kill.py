"""Kill the daemon (SIGKILL) in the middle of producer, consumer, variable and accumulator streams, start it
again on the same data directory, and count every id: nothing acknowledged is lost, nothing is
enqueued twice, acknowledged deliveries do not come back; in each fsync mode. The clients here do not
reconnect: each stops at the kill, with what it was told (test_reconnect.py carries on across it)."""

from __future__ import annotations

import signal
import threading

import numpy as np
import pytest

import queueserver as qs
from queueserver.errors import QueueServerError
from support import ServerProcess

BATCH_IN, BATCH_OUT, CAPACITY = 64, 50, 20_000
PRODUCERS = 2
SPAN = 10_000_000  # producer p enqueues ids p*SPAN, p*SPAN+1, ...


class Books:
    """What the clients were told: acknowledged, and sent but not known to have been applied."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enqueued: list[int] = []     # enqueue_many calls that returned
        self.unsure_in: list[int] = []    # the call in flight when the server died
        self.consumed: list[int] = []     # received, and acknowledged by a later dequeue that returned
        self.unsure_out: list[int] = []   # received, acknowledgement not confirmed
        self.counted = 0                  # assign_add(1) calls that returned
        self.counting = False             # one was in flight when the server died
        self.applied = 0                  # apply_grad(ones) calls that returned
        self.applying = False
        self.progress = threading.Event()


def _producer(target: str, p: int, books: Books) -> None:
    with qs.connect(target, operation_timeout=30, reconnect=False, client_name=f"producer {p}") as c:
        q = c.fifo_queue("ids", capacity=CAPACITY, dtypes=[np.int64], shapes=[[]])
        i = p * SPAN
        while True:
            ids = np.arange(i, i + BATCH_IN, dtype=np.int64)
            try:
                q.enqueue_many(ids)
            except QueueServerError:
                books.unsure_in.extend(ids.tolist())
                return
            with books.lock:
                books.enqueued.extend(ids.tolist())
            i += BATCH_IN


def _consumer(target: str, books: Books) -> None:
    with qs.connect(target, operation_timeout=30, reconnect=False, client_name="consumer") as c:
        q = c.fifo_queue("ids", capacity=CAPACITY, dtypes=[np.int64], shapes=[[]])
        last: list[int] | None = None
        while True:
            try:
                got = q.dequeue_many(BATCH_OUT).tolist()  # acknowledges `last` on the server
            except QueueServerError:
                if last:
                    books.unsure_out.extend(last)
                return
            with books.lock:
                if last:
                    books.consumed.extend(last)
                if len(books.consumed) >= 3000 and books.counted >= 50 and books.applied >= 50:
                    books.progress.set()
            last = got


def _counter(target: str, books: Books) -> None:
    with qs.connect(target, operation_timeout=30, reconnect=False, client_name="counter") as c:
        v = c.variable("count", np.zeros((), np.int64))
        v.initialize()
        while True:
            books.counting = True
            try:
                v.assign_add(np.ones((), np.int64))
            except QueueServerError:
                return
            books.counted += 1
            books.counting = False


def _applier(target: str, books: Books) -> None:
    with qs.connect(target, operation_timeout=30, reconnect=False, client_name="applier") as c:
        acc = c.conditional_accumulator("grads", [4])
        while True:
            books.applying = True
            try:
                acc.apply_grad(np.ones(4, np.float32), local_step=0)
            except QueueServerError:
                return
            books.applied += 1
            books.applying = False


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_sigkill_mid_stream_loses_nothing_acknowledged_and_duplicates_nothing(tmp_path, fsync):
    data = str(tmp_path / "data")
    server = ServerProcess("--data-dir", data, "--fsync", fsync)
    books = Books()
    with qs.connect(server.target) as c:  # created before the streams, so they agree on it
        c.fifo_queue("ids", capacity=CAPACITY, dtypes=[np.int64], shapes=[[]])
        c.variable("count", np.zeros((), np.int64)).initialize()
        c.conditional_accumulator("grads", [4])
    threads = [threading.Thread(target=_producer, args=(server.target, p, books)) for p in range(PRODUCERS)]
    threads += [threading.Thread(target=_consumer, args=(server.target, books)),
                threading.Thread(target=_counter, args=(server.target, books)),
                threading.Thread(target=_applier, args=(server.target, books))]
    for t in threads:
        t.start()
    try:
        assert books.progress.wait(60), "the streams made no progress"
        server.stop(signal.SIGKILL)
    finally:
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads), "a client hung after the server died"

    again = ServerProcess("--data-dir", data, "--fsync", fsync)
    try:
        with qs.connect(again.target, operation_timeout=30) as c:
            q = c.fifo_queue("ids", capacity=CAPACITY, dtypes=[np.int64], shapes=[[]])
            left = q.dequeue_many(q.size()).tolist() if q.size() else []
            count = int(c.variable("count", np.zeros((), np.int64)).read())
            acc = c.conditional_accumulator("grads", [4])
            applied = acc.num_accumulated()
            average = acc.take_grad(applied)
    finally:
        again.stop()

    enqueued, consumed = set(books.enqueued), set(books.consumed)
    assert len(left) == len(set(left)), "an id is in the queue twice"
    assert len(books.consumed) == len(consumed), "an id was delivered twice"
    assert not consumed & set(left), "an acknowledged delivery came back"
    lost = enqueued - consumed - set(books.unsure_out) - set(left)
    assert not lost, f"{len(lost)} acknowledged id(s) lost, e.g. {sorted(lost)[:5]}"
    invented = set(left) - enqueued - set(books.unsure_in)
    assert not invented, f"ids nobody enqueued: {sorted(invented)[:5]}"
    for p in range(PRODUCERS):  # held batches went back to the front, in order: each producer's ids in order
        mine = [i for i in left if i // SPAN == p]
        assert mine == sorted(mine)
    assert count in (books.counted, books.counted + int(books.counting)), (count, books.counted)
    assert applied in (books.applied, books.applied + int(books.applying)), (applied, books.applied)
    np.testing.assert_array_equal(average, np.ones(4, np.float32))  # the sum came back with its count


def test_a_deleted_queue_stays_deleted_after_a_restart(tmp_path):
    import signal

    data = str(tmp_path / "data")
    server = ServerProcess("--data-dir", data)
    try:
        with qs.connect(server.target) as c:
            gone = c.fifo_queue("gone", 10, [np.int64], [[]])
            gone.enqueue_many(np.arange(4))
            held = gone.take(2)  # taken and not acknowledged when the queue is deleted
            kept = c.fifo_queue("kept", 10, [np.int64], [[]])
            kept.enqueue_many(np.arange(3))
            assert gone.delete() == 2
            c.fifo_queue("gone", 10, [np.int64], [[]]).enqueue(99)  # the name, made again
            del held
    finally:
        server.stop(signal.SIGKILL)
    again = ServerProcess("--data-dir", data)
    try:
        with qs.connect(again.target) as c:
            assert c.queue("gone").dequeue_many(1).tolist() == [99]
            assert c.queue("kept").dequeue_many(3).tolist() == [0, 1, 2]
    finally:
        again.stop()
