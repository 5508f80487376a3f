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
