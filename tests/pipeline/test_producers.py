"""The tf.train producers on a real embedded server: string_input_producer, batch, shuffle_batch, *_join."""

from __future__ import annotations

import doctest
import threading
from collections import Counter

import numpy as np
import pytest

import queueserver as qs

from pipeline import producers
from pipeline.coordination import Coordinator
from pipeline.data import Dataset
from pipeline.producers import (
    batch,
    batch_join,
    shuffle_batch,
    shuffle_batch_join,
    start_queue_runners,
    string_input_producer,
)


def run(producer, coord=None):
    """Start the producer, take everything, join; returns the batches."""
    coord = coord or Coordinator()
    threads = producer.start(coord)
    out = list(producer)
    coord.join_threads(threads, stop_grace_period_secs=5)
    return out


def test_string_input_producer_epochs_shuffle_and_close(client):
    names = ["a.csv", "b.csv", "c.csv", "d.csv"]
    files = string_input_producer(client, names, num_epochs=3, seed=1)
    got = [f.item() for f in run(files)]
    assert len(got) == 12
    epochs = [got[i:i + 4] for i in range(0, 12, 4)]
    assert all(sorted(e) == [n.encode() for n in names] for e in epochs)  # each epoch is a permutation
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled every epoch
    assert files.queue.is_closed()

    ordered = string_input_producer(client, names, num_epochs=1, shuffle=False)
    assert [f.item() for f in run(ordered)] == [n.encode() for n in names]


def test_string_input_producer_without_epochs_keeps_the_queue_full(client):
    files = string_input_producer(client, ["x"], capacity=4)
    coord = Coordinator()
    threads = files.start(coord)
    assert [files.dequeue().item() for _ in range(10)] == [b"x"] * 10  # more than the capacity
    coord.request_stop()
    coord.join_threads(threads, stop_grace_period_secs=5)
    assert files.queue.is_closed()  # the stop cancelled the runner's pending enqueue


def test_string_input_producer_validates(client):
    # TensorFlow's classes (ValueError at graph construction); a single name used to be iterated
    # into one "file" per character.
    with pytest.raises(ValueError, match="at least one file name"):
        string_input_producer(client, [])
    with pytest.raises(ValueError, match="num_epochs must be > 0"):
        string_input_producer(client, ["a"], num_epochs=0)
    with pytest.raises(ValueError, match=r"a single name 'data.csv': write \['data.csv'\]"):
        string_input_producer(client, "data.csv")
    with pytest.raises(TypeError, match="synchronous queueserver Client"):
        string_input_producer(object(), ["a"])


def test_batch_keeps_order_and_drops_or_keeps_the_final_partial_batch(client):
    pairs = [(np.float32(i), np.int32(i % 3)) for i in range(10)]
    full = run(batch(client, pairs, batch_size=4))
    assert [x.tolist() for x, _ in full] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert full[0][1].dtype == np.int32

    with_rest = run(batch(client, pairs, batch_size=4, allow_smaller_final_batch=True))
    assert [x.tolist() for x, _ in with_rest] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_batch_enqueue_many_from_a_generator_with_several_threads(client):
    def chunks():
        for start in range(0, 30, 6):
            yield np.arange(start, start + 6, dtype=np.int64).reshape(6, 1) * [1, -1], np.arange(start, start + 6)

    b = batch(client, chunks(), batch_size=8, num_threads=3, enqueue_many=True, capacity=16,
              allow_smaller_final_batch=True)
    assert b.queue.spec.shapes == ((2,), ())
    out = run(b)
    xs = np.concatenate([x for x, _ in out])
    ys = np.concatenate([y for _, y in out])
    assert sorted(ys.tolist()) == list(range(30))
    np.testing.assert_array_equal(xs[:, 0], ys)  # components stay together
    assert [len(y) for _, y in out][:3] == [8, 8, 8]


def test_shuffle_batch_mixes_and_loses_nothing(client):
    b = shuffle_batch(client, Dataset.range(200), batch_size=10, capacity=60, min_after_dequeue=40, seed=7,
                      allow_smaller_final_batch=True)
    out = np.concatenate(run(b)).tolist()
    assert sorted(out) == list(range(200))
    assert out != list(range(200))


def test_batches_larger_than_the_capacity_work_and_only_what_tensorflow_refuses_is_refused(client):
    # A dequeue_many takes elements as they come, so a batch may exceed the capacity (or the room
    # above min_after_dequeue): TensorFlow builds and serves these; they used to be refused.
    assert run(batch(client, [np.float32(7)] * 5, batch_size=5, capacity=2))[0].tolist() == [7] * 5
    shuffled = shuffle_batch(client, [np.float32(7)] * 20, batch_size=5, capacity=10, min_after_dequeue=8)
    assert [b.tolist() for b in run(shuffled)] == [[7] * 5] * 4
    with pytest.raises(ValueError, match="capacity 10 must be bigger than min_after_dequeue 10"):
        shuffle_batch(client, [1.0], batch_size=2, capacity=10, min_after_dequeue=10)
    with pytest.raises(ValueError, match="at least one input"):
        batch_join(client, [], batch_size=2)
    with pytest.raises(ValueError, match="enqueue_many=True needs batches"):
        batch(client, [np.float32(1)], batch_size=2, enqueue_many=True)


def test_join_sources_must_agree_as_tensorflow_checks(client):
    with pytest.raises(TypeError, match="consistent: float32 vs. int32"):
        batch_join(client, [[np.float32(1)], [np.int32(1)]], batch_size=2)
    with pytest.raises(ValueError, match="same keys"):
        batch_join(client, [[{"a": np.float32(1)}], [{"b": np.float32(1)}]], batch_size=2)
    with pytest.raises(ValueError, match=r"shapes \(2,\) and \(3,\) of component 0 are not compatible"):
        shuffle_batch_join(client, [[np.zeros(2, np.float32)], [np.zeros(3, np.float32)]], batch_size=2,
                           capacity=10, min_after_dequeue=1)
    # Dicts whose keys come in another order agree.
    both = batch_join(client, [[{"a": np.float32(1), "b": np.int32(2)}], [{"b": np.int32(4), "a": np.float32(3)}]],
                      batch_size=2)
    (got,) = run(both)
    assert sorted(got["a"].tolist()) == [1, 3] and sorted(got["b"].tolist()) == [2, 4]


def test_a_source_that_dequeues_from_a_queue_takes_its_spec_without_waiting(client):
    # TF1's layout builds everything, then starts the runners: a batch over another queue used to
    # wait in its constructor for that queue's first element, which nothing would ever enqueue.
    instances = client.fifo_queue("instances", capacity=10, dtypes=[np.float32, np.int32], shapes=[[2], []])
    built: list = []
    maker = threading.Thread(target=lambda: built.append(batch(client, instances.dequeue, batch_size=2)))
    maker.start()
    maker.join(10)
    assert built, "batch() waited for the queue's first element"
    (batches,) = built
    with pytest.raises(TypeError, match=r"list of producers or runners, got one Producer"):
        start_queue_runners(batches, Coordinator())
    coord = Coordinator()
    threads = start_queue_runners([batches], coord)
    instances.enqueue_many((np.arange(8, dtype=np.float32).reshape(4, 2), np.arange(4, dtype=np.int32)))
    instances.close()
    got = list(batches)
    coord.join(threads, stop_grace_period_secs=5)
    assert [x.tolist() for x, _ in got] == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]


def test_batch_join_reads_every_source_and_closes_after_the_last(client):
    a = ({"x": np.full(3, i, np.float32), "label": b"a"} for i in range(7))
    bb = ({"x": np.full(3, -i, np.float32), "label": b"b"} for i in range(1, 5))
    j = batch_join(client, [a, bb], batch_size=3, allow_smaller_final_batch=True)
    out = run(j)
    assert all(isinstance(x, dict) for x in out)  # named components
    labels = Counter(l for d in out for l in d["label"].tolist())
    assert labels == {b"a": 7, b"b": 4}
    assert sorted(v for d in out for v in d["x"][:, 0].tolist()) == sorted(list(range(7)) + [-1, -2, -3, -4])


def test_shuffle_batch_join_with_async_and_function_sources(client):
    async def agen():
        for i in range(50):
            yield np.int32(i)

    counter = iter(range(50, 80))

    def fn():
        return np.int32(next(counter))  # StopIteration ends the source

    j = shuffle_batch_join(client, [agen(), fn], batch_size=16, capacity=40, min_after_dequeue=10, seed=3,
                           dtypes=[np.int32], shapes=[[]], allow_smaller_final_batch=True)
    out = np.concatenate(run(j)).tolist()
    assert sorted(out) == list(range(80))


def test_dynamic_pad_pads_variable_lengths(client):
    seqs = [np.arange(n, dtype=np.int64) + 1 for n in (1, 3, 2)]
    b = batch(client, seqs, batch_size=3, dynamic_pad=True)
    (out,) = run(b)
    assert out.tolist() == [[1, 0, 0], [1, 2, 3], [1, 2, 0]]


def test_source_error_reaches_the_coordinator_and_consumers_do_not_hang(client):
    def bad():
        for i in range(3):
            yield np.float32(i)
        raise OSError("part-2.csv: disk read failed")

    b = batch(client, bad(), batch_size=2, dtypes=[np.float32], shapes=[[]])
    coord = Coordinator()
    threads = b.start(coord)
    got = []
    with coord.stop_on_exception():  # the queue gets closed: OutOfRange ends this loop
        while True:
            got.append(b.dequeue().tolist())
    with pytest.raises(OSError, match="disk read failed"):  # the original error, from the source
        coord.join_threads(threads, stop_grace_period_secs=5)
    assert got in ([], [[0.0, 1.0]])


async def test_async_consumer_and_start_queue_runners(client):
    files = string_input_producer(client, ["f1", "f2"], num_epochs=2, shuffle=False)
    b = batch(client, Dataset.range(5), batch_size=2, allow_smaller_final_batch=True)
    coord = Coordinator()
    threads = start_queue_runners([files, b.runner], coord)
    names = [f.item() async for f in files]
    batches = [x.tolist() async for x in b]
    assert names == [b"f1", b"f2", b"f1", b"f2"]
    assert batches == [[0, 1], [2, 3], [4]]
    coord.join_threads(threads, stop_grace_period_secs=5)


def test_docstring_examples():
    assert doctest.testmod(producers, optionflags=doctest.ELLIPSIS).failed == 0


def test_tf1_layout_builds_everything_before_the_runners_start(client, tmp_path):
    # filename producer -> queue-fed reader -> decode -> shuffle_batch, then start_queue_runners:
    # the batch's spec comes from the reader's first value, which needs the file name producer
    # running; building used to wait for it in shuffle_batch() for ever.
    from pipeline import TextLineReader, decode_csv

    paths = []
    for i in range(2):
        path = tmp_path / f"part-{i}.csv"
        path.write_text("x, y\n" + "".join(f"{i * 10 + j}., {j}\n" for j in range(5)))
        paths.append(str(path))
    files = string_input_producer(client, paths, num_epochs=1, shuffle=False)
    reader = TextLineReader(skip_header_lines=1)

    def read_instance():
        _, line = reader.read(files)
        x, y = decode_csv(line, record_defaults=[[0.], [0]])
        return x, y

    built: list = []
    maker = threading.Thread(target=lambda: built.append(
        shuffle_batch(client, read_instance, batch_size=3, capacity=8, min_after_dequeue=2, seed=1,
                      allow_smaller_final_batch=True)))
    maker.start()
    maker.join(10)
    assert built, "shuffle_batch() waited for a first value that only the runners can produce"
    (batches,) = built
    assert batches.name.startswith("shuffle_batch_")
    coord = Coordinator()
    threads = start_queue_runners([files, batches], coord)
    got = list(batches)
    coord.join(threads, stop_grace_period_secs=10)
    xs = sorted(float(v) for x, _ in got for v in x)
    assert xs == sorted(float(i * 10 + j) for i in range(2) for j in range(5))
    assert batches.queue.dtypes == (np.dtype(np.float32), np.dtype(np.int32))


def test_a_lazily_made_queue_reports_what_its_first_values_get_wrong(client):
    # A function source that ends at once: consumers hear OutOfRange, not a wait for ever.
    def nothing():
        raise qs.OutOfRangeError("no input")

    empty = batch(client, nothing, batch_size=2)
    with pytest.raises(qs.DeadlineExceededError, match="are its runners started"):
        empty.dequeue(timeout=0.05)  # a dequeue's timeout holds while the queue is not made yet
    coord = Coordinator()
    threads = empty.start(coord)
    with pytest.raises(qs.OutOfRangeError, match="ended before giving a value"):
        empty.dequeue()
    coord.join(threads, stop_grace_period_secs=5)

    # Function sources of a join are checked on their first values, as lists are at build.
    floats, ints = iter([np.float32(1)] * 3), iter([np.int32(1)] * 3)
    mixed = batch_join(client, [lambda: next(floats), lambda: next(ints)], batch_size=2)
    coord = Coordinator()
    threads = mixed.start(coord)
    with pytest.raises(TypeError, match="consistent"):
        list(mixed)
        coord.join(threads, stop_grace_period_secs=5)


def test_a_producer_over_a_producer_not_yet_running_is_built_at_once(client):
    # The upstream producer's queue is made only when its runner takes a first value: building a
    # batch over its batches used to wait in the constructor for a first batch.
    values = iter(np.arange(6, dtype=np.float32))
    upstream = batch(client, lambda: next(values), batch_size=2)
    built: list = []
    maker = threading.Thread(target=lambda: built.append(batch(client, upstream, batch_size=3, enqueue_many=True)))
    maker.start()
    maker.join(10)
    assert built, "batch() waited for the upstream producer's queue"
    coord = Coordinator()
    threads = start_queue_runners([upstream, built[0]], coord)
    got = [b.tolist() for b in built[0]]
    coord.join(threads, stop_grace_period_secs=10)
    assert got == [[0, 1, 2], [3, 4, 5]]
