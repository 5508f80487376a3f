"""What one connection may make the server hold (issue 15, part 4).

A consumer that pipelines dequeues and never reads its socket cost the server 1 GB: every request
already read was answered into the connection's output buffer. The server now answers no further
request of a connection whose replies are not being read (its output over the transport's
high-water mark) until they are, so the replies it holds for it are bounded.
"""

from __future__ import annotations

import socket

import msgpack
import numpy as np

import queueserver as qs
from queueserver.wire import PREFIX
from support import RawConnection

ELEMENT = 256 * 1024
COUNT = 64


def test_a_consumer_that_never_reads_is_not_answered_without_bound(local_server):
    with qs.connect(local_server.target) as c:
        q = c.fifo_queue("big", COUNT, [np.uint8], [[ELEMENT]])
        q.enqueue_many(np.ones((COUNT, ELEMENT), np.uint8))
        raw = RawConnection(local_server.target)
        try:
            raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            assert "e" not in raw.call({"i": 1, "o": "hello", "token": None, "client": "greedy"})[0]
            frames = b""
            for i in range(COUNT):  # every request in one write: the server reads them all at once
                header = msgpack.packb({"i": 10 + i, "o": "dequeue", "n": "big", "c": "", "md": "one", "t": 5})
                frames += PREFIX.pack(len(header), 0) + header
            raw.sock.sendall(frames)
            # The requests arrive in one read, which the server handles in one turn of its loop:
            # once it holds any batch for the client, that turn is over.
            held = 0
            while not held:
                held = next(cl["held"] for cl in c.status()["clients"] if cl["client"] == "greedy")
            # It answered what the sockets' buffers take, then stopped: most elements are still
            # queued (before: all 64 were taken at once, their 16 MiB held for a client that reads
            # nothing).
            assert held <= COUNT // 2 and q.size() >= COUNT // 2
            # Reading the replies lets it answer the rest, in order.
            ids = [raw.reply()[0]["i"] for _ in range(COUNT)]
            assert ids == list(range(10, 10 + COUNT))
            assert q.size() == 0
        finally:
            raw.close()


def test_an_idle_connection_is_closed_and_what_it_held_goes_back():
    server = qs.Server.create_local_server(idle_timeout_s=1.0)  # long enough for a loaded machine
    try:
        with qs.connect(server.target) as c:
            c.fifo_queue("held", 4, [np.int64], [[]]).enqueue_many(np.arange(3))
        # A call waiting on the queue is not idle, however long it waits.
        raw = RawConnection(server.target)
        assert "e" not in raw.call({"i": 1, "o": "hello", "token": None, "client": "idle"})[0]
        reply, _ = raw.call({"i": 2, "o": "dequeue", "n": "held", "c": "", "md": "many", "nn": 5, "t": 1.5})
        assert reply["e"][0] == qs.DeadlineExceededError.code  # waited 1.5 s, past the idle timeout
        reply, _ = raw.call({"i": 3, "o": "dequeue", "n": "held", "c": "", "md": "one", "t": 1})
        assert "d" in reply  # it holds element 0 now
        # Silent past the idle timeout: told why and closed; element 0 is back in front.
        reply, _ = raw.reply()
        assert reply["e"][0] == qs.UnavailableError.code and "idle timeout" in reply["e"][1]
        assert raw.sock.recv(1) == b""
        raw.close()
        with qs.connect(server.target) as c:
            assert c.queue("held").dequeue_many(3).tolist() == [0, 1, 2]
    finally:
        server.stop()


def test_the_idle_timeout_is_checked_and_zero_turns_it_off():
    import pytest

    assert qs.Server.create_local_server(idle_timeout_s=0).options.idle_timeout_s == 0
    with pytest.raises(qs.InvalidArgumentError, match="idle_timeout_s"):
        qs.Server.create_local_server(idle_timeout_s=-1)


def test_a_dequeue_far_past_the_capacity_is_bounded_by_the_largest_reply():
    """TensorFlow lets dequeue_many(n) ask for more than the capacity and holds what arrives until
    it has n: dequeue_many(10**6) on a capacity-4 queue grew the server without bound."""
    server = qs.Server.create_local_server(max_message_bytes=1 << 20)
    try:
        with qs.connect(server.target) as c:
            fixed = c.fifo_queue("fixed", 4, [np.float32], [[]])
            fixed.enqueue_many(np.arange(4, dtype=np.float32))
            import pytest

            with pytest.raises(qs.ResourceExhaustedError, match=r"dequeue_many\(1000000\).*4000000 bytes"):
                fixed.dequeue_many(10 ** 6, timeout=1)
            assert fixed.size() == 4  # refused before anything changed
            # Elements of unknown size: the call fails once what it holds outgrows a reply, and
            # gives it all back, in order.
            ragged = c.padding_fifo_queue("ragged", 4, [np.uint8], [[None]])
            with qs.connect(server.target) as producer:
                target = producer.queue("ragged")
                import threading

                def produce() -> None:
                    for i in range(11):  # the 11th takes the call past 1 MiB
                        target.enqueue(np.full(100 * 1024, i, np.uint8))

                feeder = threading.Thread(target=produce)
                feeder.start()
                with pytest.raises(qs.ResourceExhaustedError, match="over the largest message"):
                    ragged.dequeue_many(10 ** 6, timeout=30)
                feeder.join()
            firsts = [int(x[0]) for x in ragged.dequeue_many(ragged.size())]
            assert firsts == list(range(11))
    finally:
        server.stop()


def test_a_goodbye_is_answered_before_the_connection_closes(local_server):
    """Before: the server closed the connection before its reply to "bye" went out, so a client's
    close() could return before its acknowledgements were done (written, with --data-dir)."""
    raw = RawConnection(local_server.target)
    try:
        assert "e" not in raw.call({"i": 1, "o": "hello", "token": None, "client": "leaving"})[0]
        reply, _ = raw.call({"i": 2, "o": "bye"})
        assert reply == {"i": 2}
        assert raw.sock.recv(1) == b""  # and then closed
    finally:
        raw.close()
