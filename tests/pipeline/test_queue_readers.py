"""TensorFlow 1's queue-fed readers (``reader.read(filename_queue)``), as the seed and TF's
reader_ops_test.py use them, on a real embedded server."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import queueserver as qs
from pipeline import (
    Coordinator,
    FixedLengthRecordReader,
    QueueRunner,
    TextLineReader,
    TFRecordReader,
    TFRecordWriter,
    decode_csv,
    string_input_producer,
)
from pipeline.queue_readers import QueueFedReader


def names_queue(client, paths, name="files"):
    """A closed string queue holding ``paths`` (the seed's filename_queue after its close)."""
    q = client.fifo_queue(name, capacity=10, dtypes=["string"], shapes=[[]])
    for p in paths:
        q.enqueue(str(p))
    q.close()
    return q


def line_text(f, j):
    return f"{f}: {j}".encode()


@pytest.fixture
def text_files(tmp_path):
    """TF's reader test files: two files of five lines, the second with CRLF ends, no final newline."""
    paths = []
    for i in range(2):
        path = tmp_path / f"text_line.{i}.txt"
        end = b"\r\n" if i == 1 else b"\n"
        path.write_bytes(end.join(line_text(i, j) for j in range(5)) + (end if i == 0 else b""))
        paths.append(path)
    return paths


def test_text_line_reader_reads_every_line_of_every_file_with_tensorflows_keys(client, text_files):
    reader = TextLineReader()
    assert isinstance(reader, QueueFedReader)
    queue = names_queue(client, text_files)
    for i, path in enumerate(text_files):
        for j in range(5):
            key, value = reader.read(queue)
            assert (key, value) == (f"{path}:{j + 1}".encode(), line_text(i, j))
    with pytest.raises(qs.OutOfRangeError):
        reader.read(queue)
    assert reader.num_records_produced() == 10
    assert reader.num_work_units_completed() == 2


def test_skip_header_lines_counts_the_header_in_the_keys(client, text_files):
    reader = TextLineReader(skip_header_lines=1)
    queue = names_queue(client, text_files)
    got = [reader.read(queue) for _ in range(8)]
    assert [k for k, _ in got[:4]] == [f"{text_files[0]}:{j}".encode() for j in range(2, 6)]
    assert [v for _, v in got] == [line_text(i, j) for i in range(2) for j in range(1, 5)]
    with pytest.raises(qs.OutOfRangeError):
        reader.read(queue)


def test_read_up_to_never_mixes_two_files_and_resets(client, tmp_path):
    paths = []
    for i, n in enumerate([7, 0, 2]):  # an empty file is skipped
        path = tmp_path / f"f{i}.txt"
        path.write_bytes(b"".join(b"%d-%d\n" % (i, j) for j in range(n)))
        paths.append(path)
    reader = TextLineReader()
    queue = names_queue(client, paths)
    sizes = []
    with pytest.raises(qs.OutOfRangeError):
        while True:
            keys, values = reader.read_up_to(queue, 3)
            assert keys.dtype == object and len(keys) == len(values)
            sizes.append(len(values))
    assert sizes == [3, 3, 1, 2]
    assert reader.num_records_produced() == 9 and reader.num_work_units_completed() == 3
    reader.reset()
    assert reader.num_records_produced() == 0 and reader.num_work_units_completed() == 0
    with pytest.raises(qs.InvalidArgumentError, match="num_records must be >= 1"):
        reader.read_up_to(queue, 0)


def test_fixed_length_record_reader_with_header_footer_and_gzip(client, tmp_path):
    paths = []
    for i in range(2):
        body = b"".join(bytes([i * 10 + j]) * 3 for j in range(4))
        data = b"HH" + body + b"FOOT"
        path = tmp_path / f"fixed.{i}.bin"
        path.write_bytes(gzip.compress(data) if i == 1 else data)
        paths.append(path)
    plain = FixedLengthRecordReader(record_bytes=3, header_bytes=2, footer_bytes=4)
    plain_files = names_queue(client, paths[:1], "plain")
    got = [plain.read(plain_files) for _ in range(4)]
    assert got == [(f"{paths[0]}:{j}".encode(), bytes([j]) * 3) for j in range(4)]
    zipped = FixedLengthRecordReader(record_bytes=3, header_bytes=2, footer_bytes=4, encoding="GZIP")
    keys, values = zipped.read_up_to(names_queue(client, paths[1:], "zipped"), 10)
    assert keys.tolist() == [f"{paths[1]}:{j}".encode() for j in range(4)]
    assert values.tolist() == [bytes([10 + j]) * 3 for j in range(4)]


def test_tfrecord_reader_keys_are_record_offsets(client, tmp_path):
    records = [b"a" * 5, b"", b"ccc"]
    path = tmp_path / "r.tfrecord"
    with TFRecordWriter(str(path), compression_type="GZIP") as w:
        for r in records:
            w.write(r)
    reader = TFRecordReader(options="GZIP")
    queue = names_queue(client, [path])
    got = [reader.read(queue) for _ in records]
    assert got == [(f"{path}:{o}".encode(), r) for o, r in zip([0, 21, 37], records)]
    with pytest.raises(qs.OutOfRangeError):
        reader.read(queue)


def test_a_reader_refuses_what_is_not_a_queue_of_names(client):
    with pytest.raises(TypeError, match="queue of file names"):
        TextLineReader().read(["a.txt"])
    numbers = client.fifo_queue("numbers", capacity=2, dtypes=[np.int32], shapes=[[]])
    numbers.enqueue(np.int32(3))
    with pytest.raises(qs.InvalidArgumentError, match="not a file name"):
        TextLineReader().read(numbers)


def test_the_seeds_readers_fill_a_queue_from_several_files_at_once(client, tmp_path):
    # Section 2.7.3: several readers, each with its own TextLineReader, read different files of
    # one filename queue and push decoded instances; the runner closes the instance queue.
    paths = []
    for i in range(3):
        path = tmp_path / f"part-{i}.csv"
        path.write_text("x1, x2 , target\n" + "".join(f"{i}.{j}, {j}., {j % 2}\n" for j in range(4)))
        paths.append(path)
    files = string_input_producer(client, [str(p) for p in paths], num_epochs=1, shuffle=False)
    instances = client.random_shuffle_queue("instances", capacity=20, min_after_dequeue=2,
                                            dtypes=[np.float32, np.int32], shapes=[[2], []])

    def read_and_push_instance():
        reader = TextLineReader(skip_header_lines=1)

        def op():
            _, value = reader.read(files)
            x1, x2, target = decode_csv(value, record_defaults=[[-1.], [-1.], [-1]])
            instances.enqueue((np.stack([x1, x2]), target))
        return op

    coord = Coordinator()
    threads = files.start(coord) + QueueRunner(instances, [read_and_push_instance() for _ in range(3)]).create_threads(coord)
    got = []
    with pytest.raises(qs.OutOfRangeError):
        while True:
            x, y = instances.dequeue_up_to(5)
            got += [(round(float(a), 1), int(t)) for a, t in zip(x[:, 0], y)]
    coord.request_stop()
    coord.join(threads, stop_grace_period_secs=10)
    assert sorted(got) == sorted((round(i + j / 10, 1), j % 2) for i in range(3) for j in range(4))
