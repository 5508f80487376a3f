"""The loader client's engine: :func:`load_async` / :func:`load` read files into a shared queue.

They create or open the target queue, run concurrent readers (:mod:`.reading`) over the files
matching a glob, show progress on a stream (``_Progress``), report their figures to the server
every few seconds (``_Reporter``, role ``"loader"``) and close the queue at the end; interrupted,
they stop the readers and leave the queue open. :class:`LoadResult` says what was done.
"""

from __future__ import annotations

import asyncio
import glob as globlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence, TextIO

import queueserver as qs
from queueserver.cli_tools import bar_size
from queueserver import errors as qerrors

from pipeline.coordination import Coordinator, QueueRunner

from .formats import _Format
from .reading import LocalFilenameQueue, ReaderStats, auto_chunk_size, reader_runner

__all__ = ["LoadResult", "load", "load_async"]

log = logging.getLogger("pipeline.loader")

#: Seconds between the loader's reports to the server (``Client.report``).
DEFAULT_REPORT_EVERY_S = 2.0
#: Seconds an interrupted loader gives its readers to stop before withdrawing their calls. Each
#: reader waits for room in slices of ``_ENQUEUE_SLICE_S`` and stops at the end of one, so this
#: is a backstop, well under the second within which Ctrl-C ends the loader.
DEFAULT_INTERRUPT_GRACE_S = 0.5
_ENQUEUE_SLICE_S = 0.2


@dataclass
class LoadResult:
    """What :func:`load` did."""

    queue: str
    records: int
    files: int
    bad_records: int
    errors: list
    seconds: float
    closed: bool
    bytes: int = 0

    @property
    def records_per_second(self) -> float:
        """Throughput over the whole run."""
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_second(self) -> float:
        """Bytes enqueued per second over the whole run."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


class _Reporter:
    """Sends the loader's figures to the server every ``every`` seconds (``Client.report``).

    Figures (role ``loader``): ``records_per_s`` and ``bytes_per_s`` since the last report, and the
    totals so far: ``records``, ``bytes``, ``files`` and ``bad_records``. One small round trip
    per report; the server drops the report when the connection closes.
    """

    def __init__(self, client: Any, stats: ReaderStats, every: float) -> None:
        self.client, self.stats, self.every = client, stats, every

    def figures(self, dt: float, records: int, nbytes: int) -> dict[str, float]:
        st = self.stats
        dt = max(dt, 1e-9)
        return {"records_per_s": round((st.records - records) / dt, 3),
                "bytes_per_s": round((st.bytes - nbytes) / dt, 3),
                "records": st.records, "bytes": st.bytes, "files": st.files_done, "bad_records": st.bad_records}

    async def run(self) -> None:
        st = self.stats
        last, records, nbytes = time.monotonic(), st.records, st.bytes
        while True:
            await asyncio.sleep(self.every)  # the report period, not a wait for an event
            now = time.monotonic()
            figures = self.figures(now - last, records, nbytes)
            last, records, nbytes = now, st.records, st.bytes
            try:
                await self.client.report("loader", figures)
            except qerrors.QueueServerError as exc:  # an older server, or the connection is gone
                log.debug("loader report failed, not reporting any more: %s", exc)
                return


class _Progress:
    """The loader's progress bar (``tqdm``) on a terminal: files done (of the total, when known),
    records, records/s, records skipped, and whether readers wait for room in a full queue; ends
    on its final figures. On a stream that is not a
    terminal, one line with the same figures at the end."""

    def __init__(self, stats: ReaderStats, total_files: int | None, stream: TextIO | None) -> None:
        self.stats = stats
        self.total = total_files
        self.stream = stream
        self.start = time.monotonic()
        self.live = stream is not None and getattr(stream, "isatty", lambda: False)()
        self._bar: Any = None

    def figures(self) -> str:
        """Records, records/s and records skipped so far."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        bad = f", {self.stats.bad_records:,} skipped" if self.stats.bad_records else ""
        waiting = "queue full, waiting for room: " if self.stats.waiting else ""  # first: a narrow bar cuts the end
        return f"{waiting}{self.stats.records:,} records, {self.stats.records / elapsed:,.0f} records/s{bad}"

    def line(self) -> str:
        """The figures as one line of text, for a stream that is not a terminal."""
        files = f"{self.stats.files_done}/{self.total}" if self.total else str(self.stats.files_done)
        return f"{self.figures()}, files {files}"

    def _draw(self, refresh: bool) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc="loading", unit=" files", file=self.stream,
                             leave=True, **bar_size(self.stream), mininterval=0.2)
        self._bar.n = self.stats.files_done
        self._bar.set_postfix_str(self.figures(), refresh=refresh)

    async def run(self) -> None:
        if not self.live:
            return
        while True:
            self._draw(refresh=True)
            await asyncio.sleep(0.2)  # a redraw rate, not a wait for an event

    def finish(self) -> None:
        if self.stream is None:
            return
        if not self.live:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            return
        self._draw(refresh=False)  # tqdm's close draws the bar once more: with the final figures
        self._bar.close()
        self._bar = None


def expand_files(patterns: str | Sequence[str]) -> list[str]:
    """Sorted paths matching one or more globs (``**`` allowed).

    Raises:
        NotFoundError: nothing matches, naming the patterns.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [os.fspath(patterns)]
    paths = sorted({p for pat in patterns for p in globlib.glob(os.fspath(pat), recursive=True) if os.path.isfile(p)})
    if not paths:
        raise qerrors.NotFoundError(f"no file matches {', '.join(map(str, patterns))}")
    return paths


async def _open_or_create(client: Any, name: str, fmt: _Format, *, container: str, capacity: int,
                          queue_type: str, min_after_dequeue: int, seed: int | None) -> Any:
    try:
        return await client.queue(name, container=container)
    except qerrors.NotFoundError:
        pass
    spec = fmt.default_spec()
    if queue_type == "fifo":
        return await client.fifo_queue(name, capacity, spec.dtypes, spec.shapes, container=container)
    if queue_type == "random_shuffle":
        return await client.random_shuffle_queue(name, capacity, min_after_dequeue, spec.dtypes, spec.shapes,
                                                 seed=seed, container=container)
    raise qerrors.InvalidArgumentError(f"queue type must be 'fifo' or 'random_shuffle', not {queue_type!r}")


async def load_async(
    target: str,
    queue: str,
    fmt: _Format,
    files: str | Sequence[str],
    *,
    readers: int = 4,
    batch: int | None = None,
    num_epochs: int | None = 1,
    shuffle_files: bool = False,
    seed: int | None = None,
    close: bool = True,
    token: str | None = None,
    container: str = "",
    capacity: int = 10_000,
    queue_type: str = "fifo",
    min_after_dequeue: int = 0,
    progress: TextIO | None = None,
    report_every_s: float = DEFAULT_REPORT_EVERY_S,
    client_name: str | None = None,
    interrupt_grace_s: float = DEFAULT_INTERRUPT_GRACE_S,
) -> LoadResult:
    """Read files into a shared queue with concurrent readers; the loader client's engine.

    Opens the queue ``queue`` on the server (or creates it with ``fmt``'s default spec), reads the
    files with ``readers`` concurrent readers, ``batch`` records per ``enqueue_many``, and closes the
    queue at the end (``close=True``) so consumers see ``OutOfRangeError`` once it is drained. If
    loading fails, the error is raised and the queue is left open: closing it would tell the
    consumers that the data ended cleanly.

    Interrupted (Ctrl-C under :func:`load`, or this coroutine cancelled), the loader stops its
    readers and leaves the queue open for its other loaders and consumers: a reader waiting for
    room waits in slices of 0.2 s and stops at the end of the current one, keeping (and counting)
    the records it placed; one still busy after ``interrupt_grace_s`` seconds is withdrawn (no
    call is left pending on the server), and the cancellation (Ctrl-C: ``KeyboardInterrupt``)
    propagates. The records reported are the records in the queue.

    Args:
        target: the server address.
        queue: the queue's name.
        fmt: the files' format.
        files: a glob or a list of globs.
        readers: concurrent readers.
        batch: records per decode and ``enqueue_many`` (``None``: about 1 MiB of elements each,
            :func:`auto_chunk_size` of the queue's spec).
        num_epochs: passes over the files (``None``: for ever).
        shuffle_files: shuffle the file order every epoch.
        seed: the file shuffle seed (and a created random-shuffle queue's seed).
        close: close the queue when done.
        token: the server's shared secret.
        container: the queue's container.
        capacity: capacity of a created queue.
        queue_type: ``"fifo"`` or ``"random_shuffle"`` for a created queue.
        min_after_dequeue: for a created random-shuffle queue.
        progress: a stream for the progress bar and the summary (``None``: silent).
        report_every_s: seconds between reports of the loader's figures to the server (role
            ``"loader"``: ``records_per_s``, ``bytes_per_s``, ``records``, ``bytes``, ``files``,
            ``bad_records``); 0 disables them.
        client_name: the connection's name in the server's status and logs (default
            ``"loader <queue> pid <pid>"``).
        interrupt_grace_s: when interrupted, how long the readers may take to stop by themselves.

    Returns:
        A :class:`LoadResult`.

    Raises:
        NotFoundError: no file matches.
        InvalidArgumentError, DataLossError: a bad record (with ``on_error="raise"``), naming the
            file and line or record; or a queue that cannot hold the records.

    Example:
        >>> asyncio.run(load_async(server.target, "rows", CsvFormat([[0.], [0]], 1), "data/*.csv"))  # doctest: +SKIP
        LoadResult(queue='rows', records=500000, ...)
    """
    if num_epochs is not None and num_epochs < 1:
        raise qerrors.InvalidArgumentError(f"num_epochs must be >= 1 or None (for ever), got {num_epochs}")
    try:
        paths = expand_files(files)
    except qerrors.NotFoundError as exc:
        exc.details["queue_reached"] = False
        raise
    start = time.monotonic()
    name = client_name or f"loader {container + '/' if container else ''}{queue} pid {os.getpid()}"
    try:
        client = await qs.connect_async(target, token=token, client_name=name)
    except qerrors.QueueServerError as exc:
        exc.details["queue_reached"] = False  # no queue was touched: the CLI says no more than this error
        raise
    async with client:
        q = await _open_or_create(client, queue, fmt, container=container, capacity=capacity,
                                  queue_type=queue_type, min_after_dequeue=min_after_dequeue, seed=seed)
        names = LocalFilenameQueue(paths, num_epochs=num_epochs, shuffle=shuffle_files, seed=seed)
        stats = ReaderStats()
        runner = reader_runner(names, q, fmt, num_readers=readers,
                               chunk_size=batch if batch is not None else auto_chunk_size(q.spec), stats=stats,
                               name=f"load:{queue}", closed_is_an_error=True, enqueue_slice_s=_ENQUEUE_SLICE_S)
        # A failed load leaves the queue open: closing it would tell consumers the data ended
        # cleanly when part of it was never loaded. Only a finished load closes it (close=True).
        runner.cancel_op = _keep_open
        if not close:
            runner.close_op = _keep_open
        total = len(paths) * num_epochs if num_epochs is not None else None
        bar = _Progress(stats, total, progress)
        helpers = [asyncio.create_task(bar.run(), name=f"load:{queue}:progress")]
        if report_every_s and report_every_s > 0:
            helpers.append(asyncio.create_task(_Reporter(client, stats, report_every_s).run(),
                                               name=f"load:{queue}:report"))
        coord = Coordinator()
        for op in runner.enqueue_ops:
            op.should_stop = coord.should_stop  # type: ignore[attr-defined]  # reader ops have it
        tasks: list = []
        interrupted = False
        try:
            tasks = runner.create_tasks(coord)
            try:
                await coord.join(tasks, stop_grace_period_secs=10.0)
            except qerrors.CancelledError as exc:  # our enqueue found the queue closed
                raise qerrors.CancelledError(
                    f"queue '{queue}' was closed by another client while this loader ran: it enqueued"
                    f" {stats.records:,} records and finished {stats.files_done} of its {len(paths)} file(s);"
                    " the rest was not loaded (to share a queue, run its loaders with --no-close and close"
                    f" it after the last one). The server said: {exc}", loaded=stats.records) from exc
        except asyncio.CancelledError:
            interrupted = True
            await _stop_readers(runner, coord, tasks, interrupt_grace_s)
            raise
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            bar.finish()
            if interrupted and progress is not None:
                progress.write(f"interrupted: the readers stopped after {stats.records:,} records; "
                               f"queue '{queue}' left open\n")
                progress.flush()
        closed = close
    seconds = time.monotonic() - start
    result = LoadResult(queue, stats.records, stats.files_done, stats.bad_records, stats.errors, seconds, closed,
                        stats.bytes)
    if progress is not None and stats.bad_records:
        progress.write(f"skipped {stats.bad_records:,} bad record(s):\n")
        for message in stats.errors[:10]:
            progress.write(f"  {message}\n")
        if stats.bad_records > 10:
            progress.write(f"  ... and {stats.bad_records - 10:,} more\n")
        progress.flush()
    return result


async def _keep_open() -> None:
    """A close/cancel op that leaves the queue open."""
    return None


async def _stop_readers(runner: QueueRunner, coord: Coordinator, tasks: list, grace: float) -> None:
    """Stop an interrupted loader's readers without closing or cancelling their queue.

    Each reader finishes the chunk it is on (its ``enqueue_many`` lands whole if the queue has
    room within ``grace`` seconds); then the stragglers are cancelled, which withdraws their calls
    on the server. Runs inside a task being cancelled: a second Ctrl-C ends it at once.
    """
    runner.close_op = runner.cancel_op = _keep_open  # the queue is shared: leave it open
    coord.request_stop()
    pending = {t for t in tasks if not t.done()}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=max(0.0, grace))
    for t in pending:
        t.cancel()
    if pending:  # let the cancelled calls send their withdrawals before the connection closes
        await asyncio.wait(pending, timeout=5.0)


def load(*args: Any, **kwargs: Any) -> LoadResult:
    """The blocking :func:`load_async` (for scripts without an event loop).

    Example:
        >>> load(server.target, "rows", CsvFormat([[0.], [0]], 1), "data/*.csv").records  # doctest: +SKIP
        500000
    """
    return asyncio.run(load_async(*args, **kwargs))
