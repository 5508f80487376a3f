"""No reply leaves the server before the records of the changes it reports are written: an
embedded server whose log writer is held up holds the enqueue's acknowledgement until it writes."""

from __future__ import annotations

import threading

import numpy as np

import queueserver as qs
from queueserver import Server


def test_an_enqueue_is_acknowledged_only_once_its_record_is_written(tmp_path):
    server = Server.create_local_server(data_dir=str(tmp_path), fsync="no")
    try:
        with qs.connect(server.target) as c:
            q = c.fifo_queue("q", capacity=10, dtypes=[np.int64], shapes=[[]])
            log = server.service.durable
            acknowledged = threading.Event()

            def enqueue() -> None:
                q.enqueue_many(np.arange(3))
                acknowledged.set()

            thread = threading.Thread(target=enqueue)
            with log._lock:  # the writer stops between writing a batch and reporting it
                thread.start()
                assert not acknowledged.wait(0.5), "acknowledged before the writer wrote the record"
            assert acknowledged.wait(10)
            thread.join(10)
            assert q.size() == 3
    finally:
        server.stop()
