"""Clients across a daemon's restart: they reconnect by themselves and carry on; a retried
enqueue is applied once (its stamp is remembered, also across the restart); dequeues stay at
least once."""

from __future__ import annotations

import signal
import threading

import numpy as np
import pytest

import queueserver as qs
from support import RawConnection, ServerProcess, free_ports

QUEUE = {"o": "queue", "kind": "fifo", "n": "q", "c": "", "cap": 1000,
         "spec": {"dtypes": ["int64"], "shapes": [[]], "names": None}}


def _enqueue(conn: RawConnection, rid: int, ids: np.ndarray, stamp: list | None) -> dict:
    header = {"o": "enqueue", "i": rid, "n": "q", "c": "", "m": True, "a": [["<i8", [len(ids)]]]}
    if stamp is not None:
        header["st"] = stamp
    reply, _ = conn.call(header, ids.astype("<i8").tobytes())
    return reply


def _size(target: str) -> int:
    conn = RawConnection(target)
    try:
        reply, _ = conn.call({"o": "size", "i": 1, "n": "q", "c": ""})
        return reply["r"]
    finally:
        conn.close()


def test_a_repeated_stamped_enqueue_is_applied_once_even_after_a_restart(tmp_path):
    data = str(tmp_path / "data")
    server = ServerProcess("--data-dir", data)
    try:
        first = RawConnection(server.target)
        assert "e" not in first.call({**QUEUE, "i": 1})[0]
        assert "e" not in _enqueue(first, 2, np.arange(5), ["client-a", 1])
        first.close()  # as if its reply had been lost with the connection
        again = RawConnection(server.target)
        assert "e" not in _enqueue(again, 1, np.arange(5), ["client-a", 1])  # the retry: acknowledged, not applied
        assert "e" not in _enqueue(again, 2, np.arange(5), ["client-a", 2])  # a new call is applied
        assert "e" not in _enqueue(again, 3, np.arange(3), None)             # unstamped calls as before
        again.close()
        assert _size(server.target) == 13
        bad = RawConnection(server.target)
        reply = _enqueue(bad, 1, np.arange(2), ["", "x"])
        assert reply["e"][0] == 3 and "stamp" in reply["e"][1]  # InvalidArgument, naming the field
        bad.close()
    finally:
        server.stop(signal.SIGKILL)
    restarted = ServerProcess("--data-dir", data)
    try:
        conn = RawConnection(restarted.target)
        assert "e" not in _enqueue(conn, 1, np.arange(5), ["client-a", 2])  # remembered across the restart
        conn.close()
        assert _size(restarted.target) == 13
    finally:
        restarted.stop()


def _restart_mid_stream(tmp_path, work, progress: threading.Event) -> ServerProcess:
    """Run ``work(target)`` in a thread; SIGKILL the daemon once ``progress`` is set, start it
    again on the same port and data directory, and wait for ``work`` to finish."""
    port = free_ports(1)[0]
    args = ("--port", str(port), "--data-dir", str(tmp_path / "data"))
    server = ServerProcess(*args)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work(server.target)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert progress.wait(60), "no progress before the kill"
    server.stop(signal.SIGKILL)
    again = ServerProcess(*args)
    thread.join(60)
    assert not thread.is_alive(), "the client did not carry on after the restart"
    assert not errors, f"the client failed across the restart: {errors[0]!r}"
    return again


@pytest.mark.parametrize("batch", [100, 1], ids=["enqueue_many", "one_element"])
def test_a_producer_carries_on_across_a_restart_and_enqueues_every_id_exactly_once(tmp_path, batch):
    """With one-element enqueues too: those travel in compact frames, which carried no stamp, so
    one whose reply was lost could not be repeated and the producer failed with UnavailableError at
    the daemon's death; they are stamped now, like every enqueue."""
    total = 20_000 if batch > 1 else 3_000
    progress = threading.Event()

    def produce(target: str) -> None:
        with qs.connect(target, operation_timeout=30) as c:
            q = c.fifo_queue("ids", capacity=total, dtypes=[np.int64], shapes=[[]])
            for start in range(0, total, batch):
                if batch == 1:
                    q.enqueue(np.int64(start))
                else:
                    q.enqueue_many(np.arange(start, start + batch))
                if start >= total // 4:
                    progress.set()

    server = _restart_mid_stream(tmp_path, produce, progress)
    try:
        with qs.connect(server.target) as c:
            q = c.fifo_queue("ids", capacity=total, dtypes=[np.int64], shapes=[[]])
            assert q.dequeue_many(q.size()).tolist() == list(range(total))
    finally:
        server.stop()


def test_a_consumer_carries_on_across_a_restart_and_gets_every_id(tmp_path):
    total = 20_000
    seen: list[int] = []
    progress = threading.Event()

    def consume(target: str) -> None:
        with qs.connect(target, operation_timeout=30) as c:
            q = c.fifo_queue("ids", capacity=total, dtypes=[np.int64], shapes=[[]])
            q.enqueue_many(np.arange(total))
            q.close()  # closed is durable too: the last dequeue_up_to ends with OutOfRange after the restart
            while True:
                try:
                    seen.extend(q.dequeue_up_to(64).tolist())
                except qs.OutOfRangeError:
                    return
                if len(seen) >= total // 4:
                    progress.set()

    server = _restart_mid_stream(tmp_path, consume, progress)
    try:
        assert set(seen) == set(range(total))  # every id, some perhaps twice (at least once)
        assert len(seen) - total <= 2 * 64  # at most what was in flight when the daemon died
        with qs.connect(server.target) as c:
            assert c.fifo_queue("ids", capacity=total, dtypes=[np.int64], shapes=[[]]).size() == 0
    finally:
        server.stop()


def test_a_repeated_stamped_compact_enqueue_is_applied_once(local_server):
    from queueserver.wire import COMPACT_ENQUEUE, PREFIX, encode_compact_request

    def hello(conn: RawConnection, cid: str | None = "client-b") -> None:
        assert "e" not in conn.call({"o": "hello", "i": 1, "token": None, "client": "raw", "cid": cid})[0]
        conn.send({"o": "bind", "i": 0, "fh": 1, "n": "q", "c": "", "spec": QUEUE["spec"]})

    def enqueue(conn: RawConnection, rid: int, value: int, seq: int | None) -> dict:
        """The reply: ``{}`` for a compact one (header length 0: it worked), else its header."""
        conn.sock.sendall(encode_compact_request(COMPACT_ENQUEUE, rid, 1, None, (), np.int64(value).tobytes(), seq=seq))
        while len(conn._buffer) < PREFIX.size:
            conn._recv()
        if PREFIX.unpack_from(conn._buffer)[0] == 0:
            end = PREFIX.size + PREFIX.unpack_from(conn._buffer)[1]
            while len(conn._buffer) < end:
                conn._recv()
            conn._buffer = conn._buffer[end:]
            return {}
        return conn.reply()[0]

    first = RawConnection(local_server.target)
    assert "e" not in first.call({**QUEUE, "i": 1})[0]
    hello(first)
    assert "e" not in enqueue(first, 2, 7, seq=1)
    first.close()  # as if its reply had been lost with the connection
    again = RawConnection(local_server.target)
    hello(again)
    assert "e" not in enqueue(again, 2, 7, seq=1)  # the retry: acknowledged, not applied
    assert "e" not in enqueue(again, 3, 8, seq=2)
    assert "e" not in enqueue(again, 4, 9, seq=None)  # unstamped, as before
    again.close()
    assert _size(local_server.target) == 3
    anonymous = RawConnection(local_server.target)
    hello(anonymous, cid=None)
    reply = enqueue(anonymous, 2, 10, seq=1)
    assert reply["e"][0] == qs.InvalidArgumentError.code and "client id ('cid')" in reply["e"][1]
    anonymous.close()
    assert _size(local_server.target) == 3  # refused, nothing placed


def test_a_call_still_open_keeps_its_stamp_through_many_others_and_a_restart(tmp_path):
    """Before: past 2,048 newer stamps of the same client, an enqueue still waiting for room lost
    its stamp (live and in the replay), and its retry placed every element again."""

    def enqueue(conn: RawConnection, rid: int, name: str, ids: list, stamp: list, t: float | None = None) -> None:
        header = {"o": "enqueue", "i": rid, "n": name, "c": "", "m": True, "a": [["<i8", [len(ids)]]], "st": stamp}
        if t is not None:
            header["t"] = t
        conn.send(header, np.asarray(ids, "<i8").tobytes())

    data = str(tmp_path / "data")
    server = ServerProcess("--data-dir", data)
    try:
        c = RawConnection(server.target)
        assert "e" not in c.call({**QUEUE, "n": "slow", "cap": 4, "i": 1})[0]
        assert "e" not in c.call({**QUEUE, "n": "fast", "cap": 100_000, "i": 2})[0]
        enqueue(c, 4, "slow", [100, 101], ["client-a", 1, 1])
        assert "e" not in c.reply()[0]
        waiting = RawConnection(server.target)
        enqueue(waiting, 1, "slow", [0, 1, 2, 3, 4], ["client-a", 2, 2])  # places 0, 1, then waits
        for seq in range(3, 3 + 2100):  # the same client goes on elsewhere; call 2 is still open
            enqueue(c, 10 + seq, "fast", [seq], ["client-a", seq, 2])
            assert "e" not in c.reply()[0]
        waiting.close()  # its reply is lost
        c.call({"o": "ping", "i": 9})  # every change before it is written (the reply gate)
    finally:
        server.stop(signal.SIGKILL)
    again = ServerProcess("--data-dir", data)
    try:
        d = RawConnection(again.target)
        reply, body = d.call({"o": "dequeue", "i": 1, "n": "slow", "c": "", "md": "many", "nn": 4})
        assert np.frombuffer(body, "<i8").tolist() == [100, 101, 0, 1]
        d.call({"o": "ack", "i": 2, "k": [reply["d"]]})
        enqueue(d, 3, "slow", [0, 1, 2, 3, 4], ["client-a", 2, 2], t=5)  # the retry
        assert "e" not in d.reply()[0]
        reply, body = d.call({"o": "dequeue", "i": 4, "n": "slow", "c": "", "md": "many", "nn": 3})
        assert np.frombuffer(body, "<i8").tolist() == [2, 3, 4]  # the rest, once
        assert _size_of(again.target, "slow") == 0
        d.close()
    finally:
        again.stop()


def _size_of(target: str, name: str) -> int:
    conn = RawConnection(target)
    try:
        return conn.call({"o": "size", "i": 1, "n": name, "c": ""})[0]["r"]
    finally:
        conn.close()


def test_writes_that_could_undo_another_clients_update_are_not_repeated():
    """A review's case: A's assign(1.0) reached the server, its connection was cut, B's
    assign_add(5) was acknowledged as 6.0, and A's repeated assign put 1.0 back. Reads are
    repeated; writes other than stamped enqueues are not (the caller is told and decides)."""
    from queueserver import protocol as P
    from queueserver.channel import Channel

    channel = Channel("127.0.0.1:1")
    channel.reconnect_s = 10.0
    channel._opened = True
    for action in ("assign", "initialize", "scatter_update", "assign_add", "scatter_add"):
        assert not channel._may_repeat({"o": P.OP_VAR, "v": action}), action
    for action in ("read", "gather", "is_initialized"):
        assert channel._may_repeat({"o": P.OP_VAR, "v": action}), action
    assert channel._may_repeat({"o": P.OP_ENQUEUE})
