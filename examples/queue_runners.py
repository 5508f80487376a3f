"""The seed's "Readers - the old way" and "Queue runners and coordinators" notebook cells.

A filename queue feeds CSV readers; they push ``(features, target)`` instances into a shared
RandomShuffleQueue; a training loop pulls mini-batches with ``dequeue_up_to(2)`` until the queue is
closed and drained. Shuffled, so the order of the instances varies from run to run:

    $ python examples/queue_runners.py            # an embedded server
    $ python examples/queue_runners.py 127.0.0.1:2222
    No more files to read
    [array([[ 4.,  5.],
           [ 1., -1.]], dtype=float32), array([1, 0], dtype=int32)]
    [array([[7., 8.]], dtype=float32), array([0], dtype=int32)]
    No more training instances
    ...
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading

import numpy as np

import queueserver as qs
from pipeline.coordination import Coordinator, QueueRunner
from pipeline.csv import decode_csv
from pipeline.loader import csv_reader_runner
from pipeline.producers import shuffle_batch, string_input_producer
from pipeline.textline import TextLineReader

RECORD_DEFAULTS = [[-1.], [-1.], [-1]]


def write_test_csv(directory: str) -> str:
    """The notebook's my_test.csv (cell 12)."""
    path = os.path.join(directory, "my_test.csv")
    with open(path, "w") as f:
        f.write("x1, x2 , target\n")
        f.write("1.,, 0\n")
        f.write("4., 5. , 1\n")
        f.write("7., 8. , 0\n")
    return path


def make_queues(c: qs.Client, tag: str):
    """The cell's filename queue and shared instance queue (fresh names for each cell)."""
    filename_queue = c.fifo_queue(f"filename_queue_{tag}", capacity=10, dtypes=[str], shapes=[()])
    instance_queue = c.random_shuffle_queue(
        f"shared_instance_q_{tag}", capacity=10, min_after_dequeue=2,
        dtypes=[np.float32, np.int32], shapes=[[2], []])
    return filename_queue, instance_queue


def read_and_push_instance(filename_queue: qs.Queue, instance_queue: qs.Queue):
    """One TextLineReader and its enqueue op, as the seed's function of the same name.

    Each call reads one line (opening the next file from the filename queue when needed), decodes
    it and enqueues one instance; ``OutOfRangeError`` when the filename queue is closed and empty.
    """
    state: dict = {"reader": None}
    lock = threading.Lock()  # TensorFlow's reader ops serialise their reads the same way

    def enqueue_instance() -> None:
        with lock:
            while True:
                if state["reader"] is None:
                    name = filename_queue.dequeue().item()
                    state["reader"] = TextLineReader(name.decode(), skip_header_lines=1)
                lines = state["reader"].read_chunk(1)
                if lines:
                    break
                state["reader"].close()
                state["reader"] = None
        x1, x2, target = decode_csv(lines[0], record_defaults=RECORD_DEFAULTS)
        instance_queue.enqueue((np.stack([x1, x2]), target))

    return enqueue_instance


def print_minibatches(instance_queue: qs.Queue) -> None:
    """The training side: mini-batches of up to 2 until the queue is closed and drained."""
    try:
        while True:
            print(list(instance_queue.dequeue_up_to(2)))
    except qs.OutOfRangeError:
        print("No more training instances")


def main(target: str | None = None) -> None:
    server = None
    if target is None:
        server = qs.Server.create_local_server()
        target = server.target
    with tempfile.TemporaryDirectory() as tmp, qs.connect(target) as c:
        csv_path = write_test_csv(tmp)

        print("# Readers - the old way")
        filename_queue, instance_queue = make_queues(c, "old_way")
        enqueue_instance = read_and_push_instance(filename_queue, instance_queue)
        filename_queue.enqueue(csv_path)
        filename_queue.close()
        try:
            while True:
                enqueue_instance()
        except qs.OutOfRangeError:
            print("No more files to read")
        instance_queue.close()
        print_minibatches(instance_queue)

        print("# Queue runners and coordinators: five threads, one reader")
        filename_queue, instance_queue = make_queues(c, "runner")
        enqueue_instance = read_and_push_instance(filename_queue, instance_queue)
        queue_runner = QueueRunner(instance_queue, [enqueue_instance] * 5)
        coord = Coordinator()
        filename_queue.enqueue(csv_path)
        filename_queue.close()
        enqueue_threads = queue_runner.create_threads(coord, start=True)
        print_minibatches(instance_queue)
        coord.join_threads(enqueue_threads)

        print("# Five readers, reading different files at the same time (figure 12-10)")
        filename_queue, instance_queue = make_queues(c, "readers")
        queue_runner = csv_reader_runner(filename_queue, instance_queue, RECORD_DEFAULTS, num_readers=5)
        filename_queue.enqueue(csv_path)
        filename_queue.close()
        coord = Coordinator()
        enqueue_threads = queue_runner.create_threads(coord, start=True)
        print_minibatches(instance_queue)
        coord.join_threads(enqueue_threads)

        print("# Other convenience functions: string_input_producer and shuffle_batch")
        coord = Coordinator()
        files = string_input_producer(c, [csv_path], num_epochs=2, seed=42)
        _, instance_queue = make_queues(c, "producers")
        readers = csv_reader_runner(files.queue, instance_queue, RECORD_DEFAULTS, num_readers=2)
        # The source is the instance queue itself: the batch queue takes its types and shapes from
        # it, without waiting for a first instance (the readers are not started yet).
        batches = shuffle_batch(c, instance_queue.dequeue, batch_size=2, capacity=10, min_after_dequeue=2,
                                seed=42, allow_smaller_final_batch=True)
        threads = files.start(coord) + readers.create_threads(coord) + batches.start(coord)
        for features, targets in batches:
            print([features, targets])
        print("No more training instances")
        coord.request_stop()
        coord.join(threads)  # TensorFlow's spelling: blocks in a script
    if server is not None:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
