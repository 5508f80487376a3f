"""The durable log on disk: segments, snapshots, the writer thread and recovery.

A data directory holds numbered segments and at most one snapshot (plus a ``lock`` file)::

    log-000000000007.qlog     records appended since snapshot 6, in order
    snap-000000000006.qsnap   the state after every segment up to 6, as records

* The loop only encodes a record's header and hands it to :meth:`DurableLog.append`; a writer
  thread frames, checksums and writes whatever is pending in one ``writev`` (group commit) and
  reports how many records are written (``everysec``, ``no``). A syncer thread syncs: with
  ``always`` after every write, reporting what is then on disk while the writer goes on writing
  (group commit, pipelined); with ``everysec`` once a second, so a slow disk never holds up the
  writer (Redis's AOF does the same); closed segments in every mode. The server sends no reply before the records of the changes it reports
  are written: a killed daemon loses nothing it acknowledged; a power failure loses at most the
  last second (``everysec``), nothing (``always``), or what the OS had not written (``no``).
* A segment is closed (synced) at ``segment_bytes``; when the segments since the snapshot outgrow
  the snapshot (and ``compact_bytes``), a compaction thread replays the snapshot and the closed
  segments into a fresh state and writes it as the new snapshot, then deletes what it covers:
  replay reads at most about twice the state.
* :meth:`DurableLog.recover` replays the snapshot and the segments after it. A torn or corrupt
  record (a crash in the middle of a write, a bad disk) ends the replay: the good prefix is kept,
  the rest is moved to ``damaged/`` and reported in the server's log, never used.

The clock is injectable (``everysec`` decides by it), so the sync policy is tested without waiting.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import mmap
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from queueserver.core import ResourceManager
from queueserver.core.stamps import Stamps
from queueserver.durability.records import MAGIC, Damage, encode, frame, scan
from queueserver.durability.state import Replay, snapshot
from queueserver.errors import DataLossError, FailedPreconditionError, InvalidArgumentError
from queueserver.logs import event

FSYNC_MODES = ("always", "everysec", "no")
SEGMENT_BYTES = 64 * 1024 * 1024
# everysec: how far a sync may fall behind (a stalled disk) before replies wait for it.
EVERYSEC_MAX_LAG_S = 2.0
COMPACT_BYTES = 256 * 1024 * 1024
SWITCH_INTERVAL_S = 0.0005
_IOV_MAX = 512  # buffers per writev (Linux allows 1024)
_SEGMENT = re.compile(r"log-(\d{12})\.qlog$")
_SNAPSHOT = re.compile(r"snap-(\d{12})\.qsnap$")


def check_fsync(mode: str) -> str:
    """``mode`` if it is an fsync mode.

    Raises:
        InvalidArgumentError: it is not one of ``always``, ``everysec``, ``no``.
    """
    if mode not in FSYNC_MODES:
        raise InvalidArgumentError(f"fsync must be one of {', '.join(FSYNC_MODES)}, got {mode!r}")
    return mode


class Recovery(NamedTuple):
    """What a start found in its data directory."""

    records: int
    bytes: int
    seconds: float
    damage: list[str]   # one line per damaged file: where, why, how many bytes were set aside
    held: int           # batches taken and not acknowledged, returned to their queues


def _read(path: Path) -> Any:
    """A file's bytes, mapped read-only: records are checked and replayed as views of the page
    cache, with no copy (and no zero-filled buffer to copy into). The mapping outlives the file's
    deletion by a compaction; nothing here ever truncates a file below what a view covers."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _fsync_path(path: Path) -> None:
    """fsync a file or a directory (its entries: a rename or a new file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _writev(fd: int, buffers: list) -> None:
    """Write every buffer, in order (``writev`` may write less than asked)."""
    i = 0
    while i < len(buffers):
        chunk = buffers[i: i + _IOV_MAX]
        want = sum(len(b) for b in chunk)
        done = os.writev(fd, chunk)
        if done == want:
            i += len(chunk)
            continue
        # A short write: skip what went out and write the rest of the chunk again.
        rest: list = []
        for b in chunk:
            if done >= len(b):
                done -= len(b)
            else:
                rest.append(memoryview(b)[done:] if done else b)
                done = 0
        buffers = rest + buffers[i + len(chunk):]
        i = 0


class DurableLog:
    """The log of one data directory.

    Args:
        directory: the data directory (created if missing).
        fsync: ``always``, ``everysec`` or ``no`` (see the module notes).
        task: the server's task name, for its log lines.
        clock: monotonic seconds; ``everysec`` syncs when a second has passed by it.
        segment_bytes: a segment is closed past this size.
        compact_bytes: segments since the snapshot past this size (and the snapshot's) are compacted.
    """

    def __init__(self, directory: str | os.PathLike, fsync: str = "everysec", *, task: str = "",
                 clock: Callable[[], float] = time.monotonic, segment_bytes: int = SEGMENT_BYTES,
                 compact_bytes: int = COMPACT_BYTES) -> None:
        self.dir = Path(directory)
        self.mode = check_fsync(fsync)
        self.task = task
        self.clock = clock
        self.segment_bytes = segment_bytes
        self.compact_bytes = compact_bytes
        self.appended = 0     # records handed to append() (the loop's count)
        self.failed: BaseException | None = None
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._writer: threading.Thread | None = None
        self._compactor: threading.Thread | None = None
        self._lock = threading.Lock()  # the byte counts the writer and the compactor share
        self._lock_fd: int | None = None
        self._fd = -1
        self._segment = 0             # number of the segment being written
        self._segment_size = 0
        self._snapshot: tuple[int, int] | None = None  # (number, bytes) of the snapshot
        self._since_snapshot = 0      # bytes in segments after the snapshot
        self._written = self._synced = 0
        self._sync_asked = 0          # records written when the last sync was asked for
        self._last_sync = 0.0
        self._sync_jobs: collections.deque = collections.deque()  # (fd, records, close) for the syncer
        self._sync_wake = threading.Event()
        self._sync_stop = False
        self._syncer: threading.Thread | None = None
        self._synced_cond = threading.Condition()
        self._sync_pending_since: float | None = None  # when the oldest sync not yet done was asked
        self.appended_bytes = 0  # (the event loop's thread) payload bytes handed to append
        self.written_bytes = 0   # (the writer's thread) payload bytes of the records written
        self._on_progress: Callable[[int], None] = lambda n: None
        self._on_failure: Callable[[BaseException], None] = lambda exc: None

    # ----- files
    def _segments(self) -> list[tuple[int, Path]]:
        return sorted((int(m.group(1)), p) for p in self.dir.iterdir() if (m := _SEGMENT.match(p.name)))

    def _snapshots(self) -> list[tuple[int, Path]]:
        return sorted((int(m.group(1)), p) for p in self.dir.iterdir() if (m := _SNAPSHOT.match(p.name)))

    def _lock_dir(self) -> None:
        if self.dir.exists() and not self.dir.is_dir():
            raise FailedPreconditionError(f"the data directory {self.dir} is a file, not a directory")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FailedPreconditionError(f"cannot use the data directory {self.dir}: {exc.strerror or exc}") from None
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise FailedPreconditionError(
                f"the data directory {self.dir} is in use by another server (its lock file is held)") from None
        self._lock_fd = fd

    # ----- recovery
    def recover(self, resources: ResourceManager, stamps: Stamps) -> tuple[Replay, Recovery]:
        """Lock the directory and replay it into ``resources`` and ``stamps`` (both empty).

        Raises:
            FailedPreconditionError: another server holds the directory, or it cannot be used.
            DataLossError: the snapshot is damaged (the data before it is gone: move it aside to
                start from the segments after it, knowing what is lost), or a record contradicts
                the state.
        """
        t0 = time.perf_counter()
        self._lock_dir()
        for tmp in self.dir.glob("snap-*.tmp"):  # a compaction that did not finish
            tmp.unlink()
        replay = Replay(resources, stamps)
        damage: list[str] = []
        total = 0
        snapshots = self._snapshots()
        first = 0
        if snapshots:
            number, path = snapshots[-1]
            buf = _read(path)
            total += len(buf)
            bad = self._replay_file(buf, replay)
            if bad is not None:
                raise DataLossError(f"the snapshot {path} is damaged at byte {bad.offset} ({bad.reason}); move it"
                                    " aside to start from the log segments after it (the state it held is lost)")
            self._snapshot = (number, len(buf))
            first = number + 1
            for _, old_path in snapshots[:-1]:  # a compaction stopped before removing these
                old_path.unlink(missing_ok=True)
        segments = [(n, p) for n, p in self._segments() if n >= first]
        for n, p in self._segments():
            if n < first:
                p.unlink(missing_ok=True)  # covered by the snapshot
        last = max([n for n, _ in segments] + [first - 1, 0])
        for i, (_, path) in enumerate(segments):
            buf = _read(path)
            bad = self._replay_file(buf, replay)
            good = len(buf) if bad is None else bad.offset
            total += good
            self._since_snapshot += good
            if bad is not None:
                damage.append(self._set_aside(path, buf, bad, [p for _, p in segments[i + 1:]]))
                break
        self._segment = last + 1
        held = replay.held()
        seconds = time.perf_counter() - t0
        return replay, Recovery(replay.records, total, seconds, damage, len(held))

    @staticmethod
    def _replay_file(buf: Any, replay: Replay) -> Damage | None:
        if buf[: len(MAGIC)] != MAGIC:
            return Damage(0, "not a queueserver log file (no magic line)" if len(buf) >= len(MAGIC)
                          else "a torn file header")
        for item in scan(buf, len(MAGIC)):
            if isinstance(item, Damage):
                return item
            header, arrays, _ = item
            replay.apply(header, arrays)
        return None

    def _set_aside(self, path: Path, buf: Any, bad: Damage, later: list[Path]) -> str:
        """Move a damaged segment's tail and every later segment to ``damaged/``; returns the report."""
        aside = self.dir / "damaged"
        aside.mkdir(exist_ok=True)
        tail = aside / f"{path.name}.from-{bad.offset}"
        tail.write_bytes(bytes(buf[bad.offset:]))
        _fsync_path(tail)
        # Later segments first, then the damaged one cut: a crash in between must not leave a cut
        # segment followed by later ones, which a next start would replay across the gap unawares.
        moved = 0
        for p in later:
            moved += p.stat().st_size
            p.rename(aside / p.name)
        _fsync_path(aside)
        _fsync_path(self.dir)
        if bad.offset:
            os.truncate(path, bad.offset)  # the good prefix stays, and is what a later start replays
            _fsync_path(path)  # or a power loss could bring the torn tail back
        else:
            path.unlink()
        lost = len(buf) - bad.offset + moved
        report = (f"{path.name} at byte {bad.offset}: {bad.reason}; the {len(buf) - bad.offset} byte(s) from there"
                  f"{f' and {len(later)} later segment(s) ({moved} bytes)' if later else ''} were set aside in {aside},"
                  " unused")
        torn_tail = not later and bad.reason.startswith("a torn")
        event(logging.WARNING if torn_tail else logging.ERROR, self.task, "log_damaged",
              f"durable log: {report}" + (" (a crash in the middle of a write)" if torn_tail else ""),
              file=str(path), offset=bad.offset, reason=bad.reason, bytes_set_aside=lost)
        _fsync_path(self.dir)
        return report

    # ----- writing
    def start(self, on_progress: Callable[[int], None], on_failure: Callable[[BaseException], None]) -> None:
        """Open a new segment and start the writer thread. ``on_progress(n)`` is called from it
        when the first ``n`` records appended are written (or, ``always``, on disk);
        ``on_failure(exc)`` once if writing fails."""
        self._on_progress, self._on_failure = on_progress, on_failure
        # Replies wait for the writer: when it has written, it needs the GIL back at once, not
        # after the loop's default 5 ms slice (W1's enqueues took 0.43x of the in-memory rate).
        if sys.getswitchinterval() > SWITCH_INTERVAL_S:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._open_segment()
        self._last_sync = self.clock()
        self._writer = threading.Thread(target=self._run, name="queueserver-log-writer", daemon=True)
        self._syncer = threading.Thread(target=self._sync_run, name="queueserver-log-syncer", daemon=True)
        self._writer.start()
        self._syncer.start()

    def _open_segment(self) -> None:
        path = self.dir / f"log-{self._segment:012d}.qlog"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        os.write(self._fd, MAGIC)
        self._segment_size = len(MAGIC)
        _fsync_path(self.dir)

    def append(self, header: dict, arrays: Sequence[np.ndarray] = ()) -> None:
        """Queue one record (from the event loop): the header is encoded now, the arrays are kept
        as they are (they must not change: the core never changes a stored array in place)."""
        item = encode(header, arrays)
        self._queue.append(item)
        self.appended += 1
        self.appended_bytes += len(item[0]) + item[2]
        self._wake.set()

    @property
    def backlog_bytes(self) -> int:
        """Bytes appended and not yet written (each counter is written by one thread only)."""
        return self.appended_bytes - self.written_bytes

    def _run(self) -> None:
        try:
            while True:
                timeout = None
                if self.mode == "everysec" and self._written > self._sync_asked:
                    timeout = max(0.0, self._last_sync + 1.0 - self.clock())
                if not self._queue and not self._stopping:
                    self._wake.wait(timeout)
                self._wake.clear()
                items = []
                queue = self._queue
                while queue:
                    items.append(queue.popleft())
                if items:
                    self._write(items)
                    if self.mode == "always":
                        # Group commit, pipelined: the syncer syncs everything written so far (and
                        # reports it) while this thread writes what arrives meanwhile.
                        self._ask_sync(close=False)
                    else:
                        if self.mode == "everysec":
                            self._wait_for_stalled_sync()
                        self._on_progress(self._written)
                if self.mode == "everysec" and self._written > self._sync_asked \
                        and self.clock() - self._last_sync >= 1.0:
                    self._ask_sync(close=False)
                if self._segment_size >= self.segment_bytes:
                    self._roll()
                if self._stopping and not self._queue:
                    self._ask_sync(close=True)
                    self._fd = -1
                    return
        except BaseException as exc:  # a full or failing disk: nothing more can be promised
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.failed is not None:
            return
        self.failed = exc
        event(logging.CRITICAL, self.task, "log_failed",
              f"durable log: writing to {self.dir} failed ({exc}); changes are no longer acknowledged",
              exc_info=True, directory=str(self.dir))
        self._on_failure(exc)

    def _write(self, items: list) -> None:
        buffers: list = []
        size = 0
        payload = 0
        for head, arrays, body_len in items:
            rec = frame(head, arrays, body_len)
            buffers.extend(rec.buffers)
            size += rec.nbytes
            payload += len(head) + body_len
        _writev(self._fd, buffers)
        self.written_bytes += payload
        self._segment_size += size
        with self._lock:
            self._since_snapshot += size
        self._written += len(items)

    def _ask_sync(self, close: bool) -> None:
        """Have the syncer thread sync (and with ``close``, close) the segment being written, up to
        what is written now. A sync takes as long as the disk needs; the writer, and the replies
        waiting for it, go on meanwhile (``always`` syncs in the writer: its replies wait for it)."""
        self._sync_asked = self._written
        self._last_sync = self.clock()
        with self._synced_cond:
            if self._sync_pending_since is None:
                self._sync_pending_since = self._last_sync
        self._sync_jobs.append((self._fd, self._written, close))
        self._sync_wake.set()

    def _sync_run(self) -> None:
        try:
            while True:
                if not self._sync_jobs:
                    if self._sync_stop:
                        return
                    self._sync_wake.wait()
                self._sync_wake.clear()
                while self._sync_jobs:
                    fd, count, close = self._sync_jobs.popleft()
                    if not close and self._sync_jobs and self._sync_jobs[0][0] == fd:
                        continue  # a later sync of the same segment covers this one (one sync for both)
                    if self.mode != "no" or close:  # "no" leaves it to the OS, but a closed segment is synced
                        os.fdatasync(fd)
                    if close:
                        os.close(fd)
                    self._set_synced(count)
                    if self.mode == "always":
                        self._on_progress(count)
        except BaseException as exc:
            self._fail(exc)

    def _set_synced(self, count: int) -> None:
        with self._synced_cond:
            self._synced = max(self._synced, count)
            if self._synced >= self._sync_asked:
                self._sync_pending_since = None
            self._synced_cond.notify_all()

    def _wait_for_stalled_sync(self) -> None:
        """``everysec``: while a sync asked more than EVERYSEC_MAX_LAG_S ago has not finished (a
        stalled disk), report nothing more as written, so replies wait and the loss a power failure
        can cause stays bounded (Redis holds its writes the same way)."""
        with self._synced_cond:
            while (self._sync_pending_since is not None and self.failed is None and not self._stopping
                   and self.clock() - self._sync_pending_since > EVERYSEC_MAX_LAG_S):
                self._synced_cond.wait(0.05)

    def wait_synced(self, count: int, timeout: float | None = None) -> bool:
        """Wait until the first ``count`` records are on disk; False if ``timeout`` passed first."""
        with self._synced_cond:
            return self._synced_cond.wait_for(lambda: self._synced >= count, timeout)

    def _roll(self) -> None:
        """Hand the segment to the syncer (synced and closed, whatever the mode: only the last one
        can be torn) and open the next."""
        self._ask_sync(close=True)
        closed = self._segment
        self._segment += 1
        self._open_segment()
        with self._lock:
            due = self._since_snapshot > max(self.compact_bytes, self._snapshot[1] if self._snapshot else 0)
        if due and (self._compactor is None or not self._compactor.is_alive()):
            self._compactor = threading.Thread(target=self.compact, args=(closed,), name="queueserver-log-compactor",
                                               daemon=True)
            self._compactor.start()

    def compact(self, upto: int) -> None:
        """Write the state after segment ``upto`` as the snapshot, and delete what it covers."""
        t0 = time.perf_counter()
        try:
            replay = Replay(ResourceManager(), Stamps())
            covered = 0
            files = []
            snapshots = self._snapshots()
            if snapshots:
                files.append(snapshots[-1][1])
            start = snapshots[-1][0] + 1 if snapshots else 0
            files += [p for n, p in self._segments() if start <= n <= upto]
            for path in files:
                buf = _read(path)
                if path.suffix == ".qlog":
                    covered += len(buf)
                bad = self._replay_file(buf, replay)
                if bad is not None:
                    raise DataLossError(f"{path} is damaged at byte {bad.offset}: {bad.reason}")
            tmp = self.dir / f"snap-{upto:012d}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            size = len(MAGIC)
            try:
                os.write(fd, MAGIC)
                for header, arrays in snapshot(replay.resources, replay.stamps, replay.held(), replay.next_tid):
                    rec = frame(*encode(header, arrays))
                    _writev(fd, rec.buffers)
                    size += rec.nbytes
                os.fsync(fd)
            finally:
                os.close(fd)
            final = self.dir / f"snap-{upto:012d}.qsnap"
            os.replace(tmp, final)
            _fsync_path(self.dir)
            for path in files:
                if path != final:
                    path.unlink(missing_ok=True)
            with self._lock:
                self._snapshot = (upto, size)
                self._since_snapshot -= covered
            event(logging.INFO, self.task, "log_compacted",
                  f"durable log: snapshot {final.name} ({size} bytes) replaces {covered} bytes of log"
                  f" in {time.perf_counter() - t0:.2f} s", snapshot=final.name, bytes=size, covered=covered)
        except Exception as exc:
            event(logging.ERROR, self.task, "log_compaction_failed",
                  f"durable log: compaction failed ({exc}); the log keeps growing until the next one",
                  exc_info=True)

    def close(self) -> None:
        """Write and sync everything appended, stop the threads, release the directory."""
        self._stopping = True
        self._wake.set()
        if self._writer is not None:
            self._writer.join()
        self._sync_stop = True
        self._sync_wake.set()
        if self._syncer is not None:
            self._syncer.join()
        if self._compactor is not None:
            self._compactor.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def segment(self) -> int:
        """The number of the segment being written."""
        return self._segment

    def describe(self) -> dict[str, Any]:
        """A status summary."""
        return {"directory": str(self.dir), "fsync": self.mode, "segment": self._segment,
                "appended": self.appended, "written": self._written, "synced": self._synced,
                "since_snapshot_bytes": self._since_snapshot,
                "snapshot_bytes": self._snapshot[1] if self._snapshot else 0}
