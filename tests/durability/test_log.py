"""The durable log as pure components: records and checksums, recording and replay through the
core, snapshots, and the files (torn and corrupt tails, the fsync policy, compaction)."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from queueserver.core import ResourceManager
from queueserver.core.stamps import Stamps
from queueserver.durability import DurableLog, Recorder, Replay, snapshot
from queueserver.durability.records import MAGIC, Damage, crc32c, record_bytes, scan
from queueserver.errors import DataLossError, FailedPreconditionError, InvalidArgumentError


# ----- records
def test_records_round_trip_with_arrays_and_strings():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    s = np.array([b"a", b"bc"], dtype=object)
    buf = MAGIC + record_bytes({"k": "e", "c": "", "n": "q"}, (x, s)) + record_bytes({"k": "x", "c": "", "n": "q"})
    items = list(scan(bytearray(buf), len(MAGIC)))
    assert [h["k"] for h, _, _ in items] == ["e", "x"]
    arrays = items[0][1]
    np.testing.assert_array_equal(arrays[0], x)
    assert list(arrays[1]) == [b"a", b"bc"]
    assert items[-1][2] == len(buf)


def test_crc32c_matches_the_c_extension():
    from google_crc32c.cext import value

    data = os.urandom(100_000)
    assert crc32c([data[:10], memoryview(data)[10:]]) == value(data)


@pytest.mark.parametrize("cut", [1, 7, 9, 30])
def test_a_torn_record_ends_the_scan_after_the_good_prefix(cut):
    first = record_bytes({"k": "x", "c": "", "n": "a"})
    second = record_bytes({"k": "e", "c": "", "n": "q"}, (np.arange(10),))
    buf = bytearray(first + second[:cut])
    items = list(scan(buf))
    assert items[0][0]["n"] == "a"
    assert isinstance(items[1], Damage) and items[1].offset == len(first) and "torn" in items[1].reason


def test_a_flipped_bit_is_caught_by_the_checksum():
    first = record_bytes({"k": "x", "c": "", "n": "a"})
    second = bytearray(record_bytes({"k": "e", "c": "", "n": "q"}, (np.arange(10),)))
    second[-3] ^= 0x10
    items = list(scan(bytearray(first + second + first)))
    assert len(items) == 2 and isinstance(items[1], Damage)
    assert items[1].offset == len(first) and "checksum" in items[1].reason


# ----- recording and replay through the core
def _recorded() -> tuple[ResourceManager, list]:
    records: list = []
    res = ResourceManager()
    res.attach(Recorder(lambda h, a: records.append((dict(h), [np.array(x, copy=True) for x in a]))))
    return res, records


def _replayed(records: list) -> Replay:
    replay = Replay(ResourceManager(), Stamps())
    for h, arrays in records:
        replay.apply(dict(h), arrays)
    return replay


def _contents(q) -> list:
    return [c.tolist() for batch in q._store.contents() for c in batch]


def test_replay_rebuilds_queues_held_batches_variables_and_accumulators():
    async def main():
        res, records = _recorded()
        q = res.queue("fifo", "q", capacity=100, dtypes=[np.int64], shapes=[[]])
        q.enqueue((np.arange(10),), many=True)
        a1 = q.dequeue(3, mode="many")             # taken and acknowledged below
        a2 = q.dequeue(2, mode="many")             # taken, never acknowledged: held
        a3 = q.dequeue(2, mode="many")             # taken and given back
        q.return_elements(a3.taken)
        res.recorder.acked(a1.taken)
        p = res.queue("priority", "p", capacity=10, dtypes=[np.float32], shapes=[[]], container="box")
        p.enqueue((np.array([5, 1, 3]), np.array([0.5, 0.1, 0.3], np.float32)), many=True)
        p.dequeue()
        s = res.queue("random_shuffle", "s", capacity=50, dtypes=[np.int32], shapes=[[2]], seed=3)
        s.enqueue((np.arange(40, dtype=np.int32).reshape(20, 2),), many=True)
        s.dequeue(5, mode="many")
        s.close()
        v = res.variable("v", np.zeros(3))
        v.initialize()
        v.assign_add(np.ones(3))
        acc = res.accumulator("g", [2])
        acc.apply_grad(np.array([1.0, 2.0], np.float32), 0)
        acc.apply_grad(np.array([3.0, 4.0], np.float32), 0)
        await acc.take_grad(2)
        acc.apply_grad(np.array([5.0, 5.0], np.float32), 1)
        return res, records, a2

    res, records, a2 = asyncio.run(main())
    replay = _replayed(records)
    back = replay.resources
    for container, name, live in res.items():
        again = back.get(container, name)
        if hasattr(live, "_store"):
            assert _contents(again) == _contents(live), name
            assert again.closed == live.closed
    held = replay.held()
    assert [q.name for _, q, _ in held] == ["q", "box/p", "s"]
    assert [c.tolist() for c in held[0][2]] == [c.tolist() for c in a2.taken[0]]
    np.testing.assert_array_equal(back.get("", "v").read(), [1.0, 1.0, 1.0])
    acc = back.get("", "g")
    assert (acc.global_step, acc.count) == (1, 1)
    np.testing.assert_array_equal(acc._sum, [5.0, 5.0])


def test_a_snapshot_replays_to_the_same_state_and_keeps_held_batches_held():
    res, records = _recorded()
    q = res.queue("fifo", "q", capacity=100, dtypes=[np.int64], shapes=[[]])
    q.enqueue((np.arange(8),), many=True)
    q.dequeue(2, mode="many")
    q.dequeue()
    stamps = Stamps()
    stamps.get("client-a", 7).placed = 8
    first = _replayed(records)
    snap = [(dict(h), list(a)) for h, a in snapshot(first.resources, stamps, first.held(), first.next_tid)]
    second = _replayed(snap)
    assert _contents(second.resources.get("", "q")) == [[3, 4, 5, 6, 7]]
    assert [[c.tolist() for c in b] for _, _, b in second.held()] == [[[0, 1]], [[2]]]
    assert second.next_tid == first.next_tid
    assert second.stamps.get("client-a", 7).placed == 8


def test_a_retried_stamped_enqueue_places_only_what_earlier_tries_did_not():
    res, records = _recorded()
    stamps = Stamps()
    q = res.queue("fifo", "q", capacity=4, dtypes=[np.int64], shapes=[[]])
    first = q.enqueue((np.arange(6),), many=True, stamp=stamps.get("c1", 1), timeout=0)
    assert first.error is not None and stamps.get("c1", 1).placed == 4  # 4 fit, then it timed out
    q.dequeue(4, mode="many")
    again = q.enqueue((np.arange(6),), many=True, stamp=stamps.get("c1", 1))
    assert again.done and again.error is None
    assert _contents(q) == [[4, 5]]
    done = q.enqueue((np.arange(6),), many=True, stamp=stamps.get("c1", 1))  # a third try: nothing left
    assert done.done and _contents(q) == [[4, 5]]
    replay = _replayed(records)
    assert replay.stamps.get("c1", 1).placed == 6


def test_a_record_that_contradicts_the_state_is_data_loss():
    replay = Replay(ResourceManager(), Stamps())
    with pytest.raises(DataLossError, match="never created"):
        replay.apply({"k": "e", "c": "", "n": "nope"}, [np.arange(3)])
    with pytest.raises(DataLossError, match="unknown kind"):
        replay.apply({"k": "??"}, [])


# ----- the files
def _log(tmp_path, **kw) -> DurableLog:
    return DurableLog(tmp_path, kw.pop("fsync", "always"), **kw)


def _run(log: DurableLog, changes) -> None:
    """Start ``log`` on a fresh state, make ``changes(resources)``, and close it (all written)."""
    res = ResourceManager()
    replay, _ = log.recover(res, Stamps())
    res.attach(Recorder(log.append, replay.next_tid))
    log.start(lambda n: None, lambda exc: None)
    changes(res)
    log.close()


def _recover(tmp_path, **kw):
    res = ResourceManager()
    log = _log(tmp_path, **kw)
    replay, found = log.recover(res, Stamps())
    log.close()
    return res, replay, found


def _fill(res: ResourceManager) -> None:
    q = res.queue("fifo", "q", capacity=1000, dtypes=[np.int64], shapes=[[]])
    for i in range(10):
        q.enqueue((np.arange(i * 10, i * 10 + 10),), many=True)


def test_a_torn_tail_is_cut_off_reported_and_set_aside(tmp_path, caplog):
    _run(_log(tmp_path), _fill)
    (segment,) = sorted(tmp_path.glob("log-*.qlog"))
    size = segment.stat().st_size
    os.truncate(segment, size - 5)  # the last record, torn mid-write
    res, _, found = _recover(tmp_path)
    assert _contents(res.get("", "q")) == [[i * 10 + j for j in range(10)] for i in range(9)]
    assert len(found.damage) == 1 and "torn" in found.damage[0]
    assert "log_damaged" in caplog.text or "torn" in caplog.text
    assert (tmp_path / "damaged").is_dir() and any((tmp_path / "damaged").iterdir())
    res, _, found = _recover(tmp_path)  # the cut is kept: a second start finds a clean log
    assert found.damage == [] and res.get("", "q")._store.size == 90


def test_corruption_in_the_middle_keeps_the_prefix_and_sets_aside_everything_after(tmp_path):
    _run(_log(tmp_path), _fill)
    _run(_log(tmp_path), lambda res: res.get("", "q").enqueue((np.arange(100, 110),), many=True))
    first, second = sorted(tmp_path.glob("log-*.qlog"))
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(data)
    res, _, found = _recover(tmp_path)
    assert 0 < res.get("", "q")._store.size < 100
    assert "checksum" in found.damage[0] and "1 later segment" in found.damage[0]
    assert not second.exists() and (tmp_path / "damaged" / second.name).exists()


def test_the_data_directory_is_locked_by_one_server(tmp_path):
    log = _log(tmp_path)
    log.recover(ResourceManager(), Stamps())
    with pytest.raises(FailedPreconditionError, match="in use by another server"):
        _log(tmp_path).recover(ResourceManager(), Stamps())
    log.close()


def test_a_data_directory_that_is_a_file_is_refused_naming_it(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(FailedPreconditionError, match="is a file, not a directory"):
        _log(tmp_path / "f").recover(ResourceManager(), Stamps())


def test_fsync_mode_is_checked():
    with pytest.raises(InvalidArgumentError, match="fsync must be one of"):
        DurableLog("/tmp/unused", "sometimes")


def test_everysec_syncs_when_a_second_has_passed_on_its_clock(tmp_path):
    import threading

    now = [100.0]
    progress = threading.Semaphore(0)
    log = DurableLog(tmp_path, "everysec", clock=lambda: now[0])
    res = ResourceManager()
    log.recover(res, Stamps())
    res.attach(Recorder(log.append))
    log.start(lambda n: progress.release(), lambda exc: None)
    _fill(res)
    while log.describe()["written"] < 11:
        assert progress.acquire(timeout=10)
    assert not log.wait_synced(1, timeout=0.2)  # written to the OS, not synced: the clock has not moved
    now[0] += 1.0
    res.get("", "q").close()  # any record wakes the writer, which finds the second has passed
    assert log.wait_synced(12, timeout=10)
    log.close()


def test_compaction_writes_a_snapshot_that_replaces_the_segments(tmp_path):
    def churn(res: ResourceManager) -> None:
        q = res.queue("fifo", "q", capacity=100_000, dtypes=[np.float64], shapes=[[64]])
        for i in range(400):
            q.enqueue((np.full((8, 64), float(i)),), many=True)
            if i % 2:
                res.recorder.acked(q.dequeue(8, mode="many").taken)
        held = q.dequeue(4, mode="many")
        assert held.done

    log = _log(tmp_path, segment_bytes=64 * 1024, compact_bytes=128 * 1024)
    _run(log, churn)
    assert list(tmp_path.glob("snap-*.qsnap")), "no snapshot was written"
    res, replay, _ = _recover(tmp_path)
    q = res.get("", "q")
    assert q._store.size == 200 * 8 - 4 and len(replay.held()) == 1
    firsts = [c[0, 0] for (c,) in q._store.contents()]
    assert firsts == sorted(firsts)  # still in order


def test_everysec_holds_replies_while_a_sync_is_more_than_two_seconds_late(tmp_path, monkeypatch):
    """A review's case: with a disk whose flush took 4 s, thousands of records were reported as
    written (so their replies went out) with none on disk: everysec's window had no bound. Now,
    once a sync is 2 s late on the log's clock, nothing more is reported until it finishes."""
    import threading

    import queueserver.durability.log as log_module

    disk_done = threading.Event()
    real_sync = log_module.os.fdatasync

    def stalled(fd: int) -> None:
        disk_done.wait(30)
        real_sync(fd)

    monkeypatch.setattr(log_module.os, "fdatasync", stalled)
    now = [100.0]
    reported = [0]
    progress = threading.Semaphore(0)

    def on_progress(n: int) -> None:
        reported[0] = n
        progress.release()

    log = DurableLog(tmp_path, "everysec", clock=lambda: now[0])
    res = ResourceManager()
    log.recover(res, Stamps())
    res.attach(Recorder(log.append))
    log.start(on_progress, lambda exc: None)
    q = res.queue("fifo", "q", capacity=1000, dtypes=[np.int64], shapes=[[]])
    assert progress.acquire(timeout=10)
    now[0] += 1.0  # a second later: the writer asks for a sync, which stalls
    q.enqueue((np.arange(2),), many=True)
    assert progress.acquire(timeout=10)
    now[0] += 2.5  # the sync is now 2.5 s late
    before = reported[0]
    q.enqueue((np.arange(2),), many=True)
    assert not progress.acquire(timeout=0.5) and reported[0] == before  # held, not reported
    disk_done.set()  # the disk catches up
    assert progress.acquire(timeout=10) and reported[0] > before
    log.close()


def test_a_crash_while_setting_damage_aside_does_not_splice_the_history(tmp_path, monkeypatch):
    """A review's case: recovery cut the damaged segment first and moved the later ones after; a
    crash in between left a cut segment followed by later ones, which the next start replayed
    across the gap with no damage reported (elements enqueued and acknowledged went missing)."""
    import pathlib

    import threading

    written = threading.Semaphore(0)
    log = _log(tmp_path, fsync="no", segment_bytes=4096, compact_bytes=1 << 30)
    res = ResourceManager()
    replay, _ = log.recover(res, Stamps())
    res.attach(Recorder(log.append, replay.next_tid))
    log.start(lambda n: written.release(), lambda exc: None)
    q = res.queue("fifo", "q", capacity=1000, dtypes=[np.int64], shapes=[[100]])
    for i in range(40):  # one write each (the writer reports each), so segments roll as they fill
        q.enqueue((np.full((1, 100), i),), many=True)
        assert written.acquire(timeout=10)
    for _ in range(30):
        res.recorder.acked(q.dequeue(1, mode="many").taken)
        assert written.acquire(timeout=10)
    log.close()
    segments = sorted(tmp_path.glob("log-*.qlog"))
    assert len(segments) > 3
    data = bytearray(segments[1].read_bytes())
    data[len(data) // 2] ^= 0xFF  # a bad sector inside an early segment
    segments[1].write_bytes(bytes(data))

    def power_lost(self, target):
        raise SystemExit("power lost while setting the damage aside")

    monkeypatch.setattr(pathlib.Path, "rename", power_lost)
    log = _log(tmp_path, fsync="no")
    with pytest.raises(SystemExit):
        log.recover(ResourceManager(), Stamps())
    os.close(log._lock_fd)
    monkeypatch.undo()
    res, _, found = _recover(tmp_path, fsync="no")
    assert found.damage  # the damage is still seen and reported, not skipped over
    assert segments[2].name not in {p.name for p in tmp_path.glob("log-*.qlog")}  # later ones set aside


def _through_a_snapshot(res: ResourceManager) -> tuple[ResourceManager, int]:
    """A fresh state rebuilt from ``res``'s snapshot records, and how many records it took."""
    again = ResourceManager()
    replay = Replay(again, Stamps())
    records = list(snapshot(res, Stamps(), [], 1))
    for header, arrays in records:
        replay.apply(header, list(arrays))
    return again, len(records)


def test_a_priority_queue_of_elements_of_different_shapes_can_be_snapshotted():
    # Before: its elements were joined into one record, which failed (ValueError) for elements of
    # different shapes: compaction failed at every try, and the segments piled up.
    res = ResourceManager()
    q = res.queue("priority", "p", capacity=10, dtypes=[np.float32])
    for priority, width in ((3, 1), (1, 4), (2, 2)):
        q.enqueue((np.array([priority]), np.zeros((1, width), np.float32)), many=True)
    again, _ = _through_a_snapshot(res)
    widths = [batch[1].shape[1] for batch in again.get("", "p")._store.contents()]
    assert widths == [4, 2, 1]  # priorities 1, 2, 3


def test_a_big_queue_is_snapshotted_in_records_of_bounded_size(monkeypatch):
    # Before: a shuffle queue's whole buffer was one record; past 1 GiB it could not be written.
    import queueserver.durability.state as state

    monkeypatch.setattr(state, "SNAPSHOT_RECORD_BYTES", 1000)
    res = ResourceManager()
    q = res.queue("random_shuffle", "s", capacity=1000, min_after_dequeue=0, seed=1, dtypes=[np.int64],
                  shapes=[[4]])
    q.enqueue((np.arange(400).reshape(100, 4),), many=True)
    again, records = _through_a_snapshot(res)
    assert records > 4  # 3,200 bytes of elements in pieces of at most 1,000
    (before,), (after,) = (np.concatenate([b[0] for b in r.get("", "s")._store.contents()])[None]
                           for r in (res, again))
    assert before.tolist() == after.tolist()  # the same rows, in the same order


def test_a_server_whose_log_failed_refuses_changes_before_making_them(tmp_path):
    """A review's case: after the writer failed, every change was still applied in memory and
    queued for a writer that would never write it (memory without bound), while its caller was cut
    off and made it again elsewhere. Now changes are refused, naming the failure, and nothing changes."""
    import queueserver as qs

    server = qs.Server.create_local_server(data_dir=str(tmp_path / "data"))
    try:
        with qs.connect(server.target, reconnect=False) as c:
            q = c.fifo_queue("q", capacity=10, dtypes=[np.int64], shapes=[[]])
            q.enqueue_many(np.arange(3))
            server.service.durable._fail(OSError(28, "No space left on device"))  # as the writer thread reports it

            async def failure_handled() -> bool:  # queued after the failure's own callback: runs after it
                return server.service.log_failed

            # Without this wait, a call could reach the server before the loop learnt of the failure:
            # accepted, its reply waiting for the log, its connection then dropped (a race of the test).
            assert server._loop_thread.run(failure_handled())
            with pytest.raises(qs.UnavailableError, match="durable log failed.*No space left"):
                q.enqueue_many(np.arange(3))
            with pytest.raises(qs.UnavailableError, match="durable log failed"):
                q.enqueue(7)  # the compact path too
            assert q.size() == 3  # reads still answered; nothing changed
            assert c.status()["totals"]["queues"] == 1
    finally:
        server.stop()


def test_clients_are_not_read_while_the_log_writer_is_far_behind(tmp_path, monkeypatch):
    """A review's case: the queue between the event loop and the log's writer had no bound, so a
    disk slower than the clients let what they sent wait in memory without limit. Past a backlog
    the server stops reading its connections until the writer catches up."""
    import threading

    import msgpack

    import queueserver as qs
    import queueserver.service as service_module
    from queueserver.wire import PREFIX
    from support import RawConnection

    monkeypatch.setattr(service_module, "LOG_BACKLOG_BYTES", 4 * 1024 * 1024)
    server = qs.Server.create_local_server(data_dir=str(tmp_path / "data"))
    try:
        durable = server.service.durable
        raw = RawConnection(server.target)
        assert "e" not in raw.call({"o": "queue", "i": 1, "kind": "fifo", "n": "q", "c": "", "cap": 1000,
                                    "spec": {"dtypes": ["uint8"], "shapes": [[1 << 20]], "names": None}})[0]
        disk = threading.Event()
        real_write = durable._write

        def slow_disk(items: list) -> None:
            disk.wait(30)
            real_write(items)

        durable._write = slow_disk  # from now on the disk is slower than the client
        body = bytes(1 << 20)
        frames = b"".join(PREFIX.pack(len(h), len(body)) + h + body for h in (
            msgpack.packb({"o": "enqueue", "i": 10 + i, "n": "q", "c": "", "a": [["|u1", [1 << 20]]]})
            for i in range(64)))
        sender = threading.Thread(target=raw.sock.sendall, args=(frames,))
        sender.start()
        sender.join(2.0)
        assert sender.is_alive()  # the server stopped reading: 64 MiB cannot all be sent
        assert durable.backlog_bytes < 16 * 1024 * 1024
        disk.set()  # the disk catches up: the rest is read, written and answered
        sender.join(30)
        assert not sender.is_alive()
        assert all("e" not in raw.reply()[0] for _ in range(64))
        raw.close()
    finally:
        server.stop()


def test_a_message_limit_the_log_could_not_hold_is_refused_at_start(tmp_path):
    # A review's case: with --max-message-bytes above what a log record holds (1 GiB), one large
    # enqueue made the writer fail, and the server stopped acknowledging anything.
    import queueserver as qs

    with pytest.raises(qs.InvalidArgumentError, match="with a data directory, max_message_bytes"):
        qs.Server.create_local_server(data_dir=str(tmp_path / "data"), max_message_bytes=2 << 30)
    qs.Server.create_local_server(max_message_bytes=2 << 30).stop()  # in memory: fine
