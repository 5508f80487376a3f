"""TFRecordDataset in block mode reads ahead: the next read (framing, CRC checks, inflating) runs on
the read-ahead worker while the current read's batches are parsed, and ``parse_example`` parses a
read's records once (batches are rows of it). Batches, errors (at their position, after the same
batches), iterator states (taken at any point, also while a read is in flight) and ``close`` are
exactly those of reading in turn and of the unfused chain."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
import zlib

import numpy as np
import pytest

from pipeline import blocks
from pipeline.data import TFRecordDataset
from pipeline.data import files as data_files
from pipeline.tfrecord import FixedLenFeature, TFRecordReader, TFRecordWriter, encode_example, parse_example
from queueserver.errors import DataLossError
from test_record_blocks import _batches_until, _check_everywhere, _same, _unfused  # same folder: pytest puts it on sys.path

SPEC = {"x": FixedLenFeature([5], np.float32), "y": FixedLenFeature([1], np.int64)}


def _write(path, n, comp="", mixed=True, seed=3):
    rng = np.random.default_rng(seed)
    with TFRecordWriter(path, comp) as w:
        for i in range(n):
            feats = {"x": rng.random(5).astype(np.float32), "y": [i]}
            if mixed and i % 397 == 200:
                feats["y"] = [10**12 + i]  # another length: the read's run breaks there
            w.write(encode_example(feats))
    return str(path)


def _make(paths, comp, batch, drop=False):
    def make():
        ds = TFRecordDataset(paths, comp).batch(batch, drop_remainder=drop)
        return ds.map(lambda s: parse_example(s, SPEC))

    return make


def _in_turn(make, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(data_files, "TFRECORD_READ_AHEAD", False)
        return list(make())


@pytest.fixture
def worker_reads(monkeypatch):
    """The reads made on the read-ahead worker thread (and small reads, so there are many)."""
    monkeypatch.setattr(data_files, "_TFRECORD_BLOCK_BYTES", 4000)
    seen = []
    real = data_files.TFRecordDataset._read_block

    def spy(self, reader, n, *rest):
        seen.append(threading.current_thread().name.startswith("read-ahead"))
        return real(self, reader, n, *rest)

    monkeypatch.setattr(data_files.TFRecordDataset, "_read_block", spy)
    return seen


def _slow_worker_reads(monkeypatch, seconds: float) -> threading.Event:
    """Make each read on the read-ahead worker take ``seconds`` longer; the Event is set when one
    starts."""
    real = data_files.TFRecordDataset._read_block
    started = threading.Event()

    def slow_read(self, reader, n, *rest):
        if threading.current_thread().name.startswith("read-ahead"):
            started.set()
            time.sleep(seconds)
        return real(self, reader, n, *rest)

    monkeypatch.setattr(data_files.TFRecordDataset, "_read_block", slow_read)
    return started


@pytest.mark.parametrize("comp", ["", "GZIP", "ZLIB"])
@pytest.mark.parametrize("batch,drop", [(1, False), (30, False), (64, True), (1000, False)])
def test_read_ahead_equals_in_turn_and_unfused(tmp_path, monkeypatch, worker_reads, comp, batch, drop):
    paths = [_write(tmp_path / f"r{k}.tfrecord", n, comp, seed=k) for k, n in enumerate((1500, 0, 230))]
    make = _make(paths, comp, batch, drop)
    want = _unfused(make, monkeypatch)
    _same(_in_turn(make, monkeypatch), want)
    worker_reads.clear()
    _same(list(make()), want)
    assert any(worker_reads)  # reads were made on the worker
    if not comp:
        assert sum(worker_reads) >= 10


@pytest.mark.parametrize("comp", ["", "GZIP"])
def test_read_ahead_states_restore_from_every_batch(tmp_path, monkeypatch, worker_reads, comp):
    paths = [_write(tmp_path / f"r{k}.tfrecord", n, comp, seed=k) for k, n in enumerate((700, 0, 130))]
    _check_everywhere(_make(paths, comp, 23), monkeypatch)
    assert any(worker_reads)


def test_a_state_taken_while_a_read_is_in_flight_restores_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(data_files, "_TFRECORD_BLOCK_BYTES", 4000)
    paths = [_write(tmp_path / f"r{k}.tfrecord", n, seed=k) for k, n in enumerate((900, 300))]
    make = _make(paths, "", 17)
    want = _unfused(make, monkeypatch)
    slow = _slow_worker_reads(monkeypatch, 0.02)  # the state below is taken while a read is in flight
    for k in (0, 1, 2, 5, 6, 13, 40, 52, len(want) - 1, len(want)):
        it = make().iterator()
        for _ in range(k):
            next(it)
        state = json.loads(json.dumps(it.get_state()))
        rest = list(it)  # the iterator goes on from there too
        _same(rest, want[k:])
        _same(list(make().iterator(state=state)), want[k:])
        it = make().iterator()
        for _ in range(k):
            next(it)
        it.set_state(state)  # restoring waits for the read in flight, then reads from the state
        _same(list(it), want[k:])
    assert slow.is_set()


def test_close_waits_for_the_read_in_flight(tmp_path, monkeypatch):
    monkeypatch.setattr(data_files, "_TFRECORD_BLOCK_BYTES", 4000)
    path = _write(tmp_path / "r.tfrecord", 600)
    real = data_files.TFRecordDataset._read_block
    done = []

    def slow_read(self, reader, n, *rest):
        if threading.current_thread().name.startswith("read-ahead"):
            time.sleep(0.05)
            out = real(self, reader, n, *rest)
            done.append(1)
            return out
        return real(self, reader, n, *rest)

    monkeypatch.setattr(data_files.TFRecordDataset, "_read_block", slow_read)
    it = _make([path], "", 10)().iterator()
    next(it)
    it.close()
    assert done == [1]  # the worker was done with the reader before it was closed


def _bad_files(tmp_path):
    raw = open(_write(tmp_path / "good.tfrecord", 3000, mixed=False), "rb").read()
    stride = len(raw) // 3000
    crc_at = 2400 * stride + 30  # a data byte of record 2,400: met by a read made ahead
    return {
        "crc": ("", raw[:crc_at] + bytes([raw[crc_at] ^ 1]) + raw[crc_at + 1 :]),
        "header_crc": ("", raw[: 2000 * stride + 3] + bytes([raw[2000 * stride + 3] ^ 1]) + raw[2000 * stride + 4 :]),
        "truncated": ("", raw[: 2700 * stride + 20]),
        "crc_gzip": ("GZIP", gzip.compress(raw[:crc_at] + bytes([raw[crc_at] ^ 1]) + raw[crc_at + 1 :])),
        "truncated_zlib": ("ZLIB", zlib.compress(raw[: 2700 * stride + 20])),
        "gzip_stream": ("GZIP", gzip.compress(raw)[:-2000]),
        "gzip_garbage": ("GZIP", (lambda p: p[:-3000] + b"\xff" * 64 + p[-2936:])(gzip.compress(raw, 1))),
    }


@pytest.mark.parametrize("name", ["crc", "header_crc", "truncated", "crc_gzip", "truncated_zlib", "gzip_stream",
                                  "gzip_garbage"])
def test_errors_met_by_a_read_made_ahead_come_at_their_position(tmp_path, monkeypatch, worker_reads, name):
    comp, data = _bad_files(tmp_path)[name]
    p = tmp_path / f"{name}.rec"
    p.write_bytes(data)
    good = _write(tmp_path / "after.tfrecord", 50, seed=9)

    def run(paths):
        ds = TFRecordDataset(paths, comp if paths[0] == str(p) else "").batch(64)
        got, error = _batches_until(ds.map(lambda s: parse_example(s, SPEC)), DataLossError)
        return got, str(error)

    with monkeypatch.context() as m:
        m.setattr(blocks, "ENABLED", False)
        want = run([str(p)])
    in_turn = None
    with monkeypatch.context() as m:
        m.setattr(data_files, "TFRECORD_READ_AHEAD", False)
        in_turn = run([str(p)])
    worker_reads.clear()
    got = run([str(p)])
    assert got[1] == want[1] == in_turn[1], name
    _same(got[0], want[0])
    _same(in_turn[0], want[0])
    if name != "gzip_garbage":  # (broken deflate data in a small file: the first inflate fails)
        assert sum(len(b["y"]) for b in got[0]) >= 1500, name  # the batches before the bad record
        assert any(worker_reads), name

    # ignore_errors() goes on with the next file, as the unfused chain does.
    def skipping():
        ds = TFRecordDataset([str(p), good], comp).ignore_errors().batch(64)
        return ds.map(lambda s: parse_example(s, SPEC))

    if not comp:
        _same(list(skipping()), _unfused(skipping, monkeypatch))


def test_reader_on_error_skip_counts_the_same_with_blocks(tmp_path):
    """read_block (what the worker calls) skips and counts bad records as read_chunk does."""
    comp, data = _bad_files(tmp_path)["crc"]
    p = tmp_path / "bad.rec"
    p.write_bytes(data)
    with TFRecordReader(p, on_error="skip") as r:
        want = list(r)
        want_bad = r.bad_records
    with TFRecordReader(p, on_error="skip") as r:
        got = []
        while len(b := r.read_block(10**6, max_bytes=4000)):
            got += b.materialize().tolist()
        assert got == want and r.bad_records == want_bad == 1


def test_batches_are_rows_of_one_parse_per_read(tmp_path, monkeypatch):
    """A read's records are parsed once (the batches are its rows); a spec with a default, a
    read of several runs or a batch across two reads is parsed batch by batch, with equal values."""
    monkeypatch.setattr(data_files, "_TFRECORD_BLOCK_BYTES", 20000)
    path = _write(tmp_path / "r.tfrecord", 1000, mixed=False)
    calls = []
    from pipeline.tfrecord import example

    real = example._parse_rows_fast
    monkeypatch.setattr(example, "_parse_rows_fast", lambda rows, *a: calls.append(len(rows)) or real(rows, *a))
    want = _unfused(_make([path], "", 40), monkeypatch)
    calls.clear()
    got = list(_make([path], "", 40)())
    _same(got, want)
    # Reads of 324 records (two runs: y's varint grows at 128), then 316 and 320 (to whole batches
    # of the file: 640 and 960) and 40: the first is parsed batch by batch, the next two once each.
    assert sorted(c for c in calls if c > 40) == [316, 320] and len(calls) < len(want)
    spec = dict(SPEC, z=FixedLenFeature([1], np.int64, default_value=[4]))
    calls.clear()

    def with_default():
        return TFRecordDataset(path).batch(40).map(lambda s: parse_example(s, spec))

    _same(list(with_default()), _unfused(with_default, monkeypatch))
    assert max(calls) <= 40


def test_read_ahead_in_a_forked_child(tmp_path, monkeypatch):
    """The worker is per process: a forked child reads ahead on its own worker thread."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    monkeypatch.setattr(data_files, "_TFRECORD_BLOCK_BYTES", 4000)
    path = _write(tmp_path / "r.tfrecord", 800)
    make = _make([path], "", 50)
    want = list(make())  # the parent's worker exists now
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = 0
        try:
            got = list(make())
            ok = int(len(got) == len(want) and all(np.array_equal(a["x"], b["x"]) for a, b in zip(got, want)))
        finally:
            os.write(w, bytes([ok]))
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"\x01"
    os.waitpid(pid, 0)


def test_the_worker_parses_the_next_read_as_the_last_one_was(tmp_path, monkeypatch):
    """Once a batch was parsed as rows of its read, the worker parses each next read the same
    way before its batches are asked for; the batches are those of the unfused chain."""
    from pipeline.tfrecord import example

    monkeypatch.setattr(data_files, "_TFRECORD_BLOCK_BYTES", 20000)
    paths = [_write(tmp_path / f"r{k}.tfrecord", n, mixed=False, seed=k) for k, n in enumerate((2000, 900))]
    where = []
    real = example._parse_rows_fast

    def spy(rows, *a):
        where.append((len(rows), threading.current_thread().name.startswith("read-ahead")))
        return real(rows, *a)

    monkeypatch.setattr(example, "_parse_rows_fast", spy)
    make = _make(paths, "", 50)
    want = _unfused(make, monkeypatch)
    where.clear()
    _same(list(make()), want)
    ahead = [n for n, on_worker in where if on_worker]
    assert len(ahead) >= 3 and all(n > 50 for n in ahead)
    # A spec the read's parse does not cover: nothing is parsed ahead.
    spec = dict(SPEC, z=FixedLenFeature([1], np.int64, default_value=[4]))
    where.clear()

    def with_default():
        return TFRecordDataset(paths).batch(50).map(lambda s: parse_example(s, spec))

    _same(list(with_default()), _unfused(with_default, monkeypatch))
    assert not any(on_worker for _, on_worker in where)


def test_reads_grow_and_end_at_whole_batches(tmp_path, monkeypatch):
    """A file's first read is short, each next one about as long as the file so far (up to the
    largest) and, with records of one size, ends at a whole batch of the file; the batches and
    states are the same whatever the reads."""
    monkeypatch.setattr(data_files, "_TFRECORD_FIRST_BYTES", 2000)
    monkeypatch.setattr(data_files, "_TFRECORD_BLOCK_BYTES", 16000)
    path = _write(tmp_path / "r.tfrecord", 1500, mixed=False)
    reads = []
    real = TFRecordReader.read_block

    def spy(self, n, max_bytes=16 << 20):
        block = real(self, n, max_bytes)
        reads.append((self.get_state()["records"], max_bytes))
        return block

    monkeypatch.setattr(TFRecordReader, "read_block", spy)
    make = _make([path], "", 37)
    _same(list(make()), _unfused(make, monkeypatch))
    ends = [e for e, _ in reads]
    sizes = [b for _, b in reads]
    assert sizes[0] == 2000 and max(sizes) <= 20000 and sizes[3] > 2 * sizes[1]
    assert all(e % 37 == 0 for e in ends[1:-2]) and ends[-1] == 1500  # (the last reads end the file)
    _check_everywhere(make, monkeypatch)


@pytest.mark.parametrize("comp", ["", "GZIP"])
def test_a_read_in_flight_at_a_fork_is_made_again_in_the_child(tmp_path, monkeypatch, comp):
    """The parent's worker thread is not in a forked child: a read it had in flight at the fork
    never ends there, so the child reopens the file at the state before it and reads it itself."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    monkeypatch.setattr(data_files, "_TFRECORD_BLOCK_BYTES", 4000)
    path = _write(tmp_path / "r.tfrecord", 800, comp)
    make = _make([path], comp, 50)
    want = _unfused(make, monkeypatch)
    started = _slow_worker_reads(monkeypatch, 0.5)  # in flight at the fork
    it = make().iterator()
    first = next(it)
    assert started.wait(5)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = 0
        try:
            signal_alarm = getattr(__import__("signal"), "alarm", None)
            if signal_alarm:
                signal_alarm(20)  # never hang the suite
            rest = list(it)
            ok = int(len(rest) == len(want) - 1 and all(
                np.array_equal(a["x"], b["x"]) and np.array_equal(a["y"], b["y"]) for a, b in zip(rest, want[1:])))
        finally:
            os.write(w, bytes([ok]))
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.waitpid(pid, 0)
    _same(first, want[0])
    _same(list(it), want[1:])  # the parent goes on with its own read
    assert got == b"\x01"
