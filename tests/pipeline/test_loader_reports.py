"""The loader reports its figures to the server, and Ctrl-C stops it without closing the shared queue."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import queueserver as qs
from pipeline.loader import CsvFormat, TextFormat, load_async
from support import REPO

ROWS = 2000      # records per file
BATCH = 100      # records per enqueue_many
REC_BYTES = 12   # float32[2] + int32


def write_csv(path) -> None:
    path.write_text("x1,x2,target\n" + "".join(f"{i}.,{-i}.,{i % 3}\n" for i in range(ROWS)))


def loader_reports(status: dict) -> dict[str, dict]:
    """client name -> report of the clients that reported as loaders."""
    return {c["client"]: c["report"] for c in status["clients"]
            if c["report"] is not None and c["report"]["role"] == "loader"}


async def poll(fetch, until, deadline_s: float = 5.0, what: str = "the condition"):
    """``await fetch()`` until ``until(value)`` holds (bounded); returns the value."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = await fetch()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {deadline_s} s; last: {value!r}")
        await asyncio.sleep(0.02)  # polling a remote status, bounded by the deadline


# --------------------------------------------------------------------------- reports
async def test_loader_reports_records_and_bytes_per_second_and_totals(local_server, tmp_path):
    write_csv(tmp_path / "a.csv")
    fmt = CsvFormat([[0.], [0.], [0]], skip_header_lines=1)
    name = f"loader rows pid {os.getpid()}"
    load = asyncio.create_task(load_async(
        local_server.target, "rows", fmt, str(tmp_path / "a.csv"), readers=2, batch=BATCH, num_epochs=None,
        capacity=1_000_000, report_every_s=0.1))
    try:
        async with qs.connect_async(local_server.target, operation_timeout=10) as c:
            status = await poll(c.status, lambda s: load.done() or (
                (r := loader_reports(s).get(name)) is not None and r["figures"]["records_per_s"] > 0),
                what="a loader report with records/s")
            assert not load.done(), load.result()
            figures = loader_reports(status)[name]["figures"]
            assert {"records_per_s", "bytes_per_s", "records", "bytes", "files", "bad_records"} <= set(figures)
            assert figures["records"] > 0 and figures["bad_records"] == 0
            assert figures["bytes"] == REC_BYTES * figures["records"]
            assert figures["bytes_per_s"] == pytest.approx(REC_BYTES * figures["records_per_s"], rel=1e-3)

            # /metrics shows the same figures under the loader's name.
            metrics = await asyncio.to_thread(_get, local_server, "/metrics")
            assert f'queueserver_client_report{{client="{name}",figure="records_per_s",role="loader"}}' in metrics

            # Cancelling the loader (what Ctrl-C does under asyncio.run) leaves the queue open.
            load.cancel()
            with pytest.raises(asyncio.CancelledError):
                await load
            q = await c.queue("rows")
            assert not await q.is_closed()
            # Its connection is gone, and its report with it.
            await poll(c.status, lambda s: name not in loader_reports(s), what="the loader's report going away")
            # Whole chunks only: every enqueue_many landed whole (the queue had room).
            assert await q.size() % BATCH == 0
    finally:
        load.cancel()


async def test_loader_names_its_connection_and_reporting_can_be_turned_off(local_server, tmp_path):
    (tmp_path / "t.txt").write_text("alpha\nbeta\n")
    async with qs.connect_async(local_server.target, operation_timeout=10) as c:
        q = await c.fifo_queue("lines", 2, [str], [[]])  # full after one pass: the loader waits in enqueue
        load = asyncio.create_task(load_async(local_server.target, "lines", TextFormat(), str(tmp_path / "t.txt"),
                                              num_epochs=2, report_every_s=0, client_name="loader lines #7"))
        try:
            status = await poll(c.status, lambda s: any(
                cl["client"] == "loader lines #7" and cl["blocked"] for cl in s["clients"]),
                what="the named loader waiting for room")
            (me,) = [cl for cl in status["clients"] if cl["client"] == "loader lines #7"]
            assert me["report"] is None  # report_every_s=0: no reports
            assert await q.dequeue_many(2) is not None  # room: the loader finishes its second pass
            result = await asyncio.wait_for(load, 10)
        finally:
            load.cancel()
        assert result.records == 4 and result.bytes == len(b"alphabeta") * 2 and result.closed
        assert result.bytes_per_second > 0


def _get(server, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(server.target + path, timeout=10) as r:
        return r.read().decode()


# --------------------------------------------------------------------------- Ctrl-C
def _default_sigint() -> None:
    # A harness may start us with SIGINT ignored (background jobs); the child must see Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("capacity", [1_000_000, 300], ids=["room", "full"])
def test_ctrl_c_stops_the_readers_and_leaves_the_queue_usable(server_process, tmp_path, capacity):
    write_csv(tmp_path / "a.csv")
    queue = f"ctrlc_{capacity}"
    cmd = [sys.executable, "-m", "pipeline", "load", "--target", server_process.target, "--queue", queue,
           "--format", "csv", "--files", str(tmp_path / "a.csv"), "--skip-header-lines", "1",
           "--record-defaults", "float32*2,int32", "--readers", "2", "--batch", str(BATCH),
           "--capacity", str(capacity), "--num-epochs", "0", "--report-every", "0.1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    try:
        with qs.connect(server_process.target, operation_timeout=10) as c:
            deadline = time.monotonic() + 10
            while True:  # until the loader is running, its records in the queue and its report in
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the loader did not start filling the queue"
                status = c.status()
                sizes = {q["name"]: q["size"] for q in status["queues"]}
                if sizes.get(queue, 0) > 0 and any(name.startswith(f"loader {queue} pid ")
                                                   for name in loader_reports(status)):
                    break
                time.sleep(0.02)  # polling another process, bounded by the deadline
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=15)
            assert proc.returncode == 130, err
            assert "interrupted" in err and f"queue '{queue}' left open" in err
            assert "Traceback" not in err

            q = c.queue(queue)
            assert not q.is_closed()  # neither closed nor cancelled: other loaders and consumers go on
            (info,) = [s for s in c.status()["queues"] if s["name"] == queue]
            assert info["waiting_enqueues"] == 0  # nothing of the loader is left pending on the server
            size = q.size()
            if capacity > 1000:  # room for every chunk: each landed whole, and the loader counted it
                stopped_after = int(re.search(r"stopped after ([\d,]+) records", err).group(1).replace(",", ""))
                assert size == stopped_after and size % BATCH == 0
            x, y = q.dequeue_many(3)
            assert x.dtype == np.float32 and x.shape == (3, 2) and y.dtype == np.int32
            q.enqueue_many(([[1.0, 2.0]], [7]))
            assert q.size() == size - 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_on_a_full_queue_exits_within_a_second_and_reports_the_records_enqueued(server_process, tmp_path):
    # Before: the readers waiting for room got 2 s of grace, then were withdrawn; what a withdrawn
    # enqueue_many had placed stayed in the queue but was not counted in "stopped after N records".
    write_csv(tmp_path / "a.csv")
    queue = "ctrlc_exact"
    cmd = [sys.executable, "-m", "pipeline", "load", "--target", server_process.target, "--queue", queue,
           "--format", "csv", "--files", str(tmp_path / "a.csv"), "--skip-header-lines", "1",
           "--record-defaults", "float32*2,int32", "--readers", "3", "--batch", "64",
           "--capacity", "250", "--num-epochs", "0", "--report-every", "0"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    try:
        with qs.connect(server_process.target, operation_timeout=10) as c:
            deadline = time.monotonic() + 20
            while True:  # until the queue is full and the readers wait for room, mid-chunk
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the loader did not fill the queue"
                info = [q for q in c.status()["queues"] if q["name"] == queue]
                if info and info[0]["size"] == 250 and info[0]["waiting_enqueues"] > 0:
                    break
                time.sleep(0.02)  # polling another process, bounded by the deadline
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=15)
            exit_s = time.monotonic() - sent
            err = proc.stderr.read()
            assert proc.returncode == 130, err
            stopped_after = int(re.search(r"stopped after ([\d,]+) records", err).group(1).replace(",", ""))
            assert stopped_after == c.queue(queue).size() == 250, err  # 250 is not a multiple of 64
            assert exit_s < 1.0, f"the loader took {exit_s:.2f} s to exit after Ctrl-C"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_loader_whose_queue_is_closed_by_someone_else_fails_and_says_what_it_did_not_load(server_process,
                                                                                               tmp_path):
    # Before: the readers stopped quietly at the closed queue and the loader exited 0 with a
    # success summary, having loaded only part of its files.
    rows = "\n".join(f"{i}.0,{i}.5,{i % 3}" for i in range(400))
    (tmp_path / "part.csv").write_text("a,b,label\n" + rows + "\n")
    queue = "closed_under_me"
    with qs.connect(server_process.target) as c:
        c.reset([""])
        q = c.fifo_queue(queue, 20, [np.float32, np.float32, np.int32], [[], [], []])
        cmd = [sys.executable, "-m", "pipeline", "load", "--target", server_process.target, "--queue", queue,
               "--format", "csv", "--files", str(tmp_path / "part.csv"), "--skip-header-lines", "1",
               "--record-defaults", "float32*2,int32", "--batch", "10", "--report-every", "0"]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while q.size() < 20:  # full: the loader now waits for room
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
                time.sleep(0.01)
            q.close()  # someone else closes the queue; a consumer drains it
            with pytest.raises(qs.OutOfRangeError):
                while True:  # the loader's pending enqueue lands (closing does not cancel it), then ends
                    q.dequeue_up_to(100, timeout=10)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1, err
        assert "was closed by another client" in err and "the rest was not loaded" in err
        assert "loaded 400 records" not in err
        c.reset([""])


def test_the_progress_bar_on_a_terminal_ends_on_the_final_figures(server_process, tmp_path):
    # Before: a hand-drawn bar; now tqdm's, with files done of the total, records and records/s.
    import pty

    for i in range(3):
        write_csv(tmp_path / f"part{i}.csv")
    master, slave = pty.openpty()  # the loader draws its bar only on a terminal
    cmd = [sys.executable, "-m", "pipeline", "load", "--target", server_process.target, "--queue", "bar_rows",
           "--format", "csv", "--files", str(tmp_path / "part*.csv"), "--skip-header-lines", "1",
           "--record-defaults", "float32*2,int32", "--readers", "2", "--batch", str(BATCH), "--report-every", "0"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = bytearray()
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the loader exited and closed its end
            break
        if not chunk:
            break
        seen.extend(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace").replace("\r", "\n")
    bars = [line for line in text.splitlines() if line.startswith("loading:")]
    assert bars, text
    summary = next(line for line in text.splitlines() if line.startswith("loaded "))
    assert f"loaded {3 * ROWS:,} records from 3 file(s)" in summary
    assert "3/3" in bars[-1] and f"{3 * ROWS:,} records" in bars[-1], bars[-1]


def test_the_progress_bar_says_when_the_readers_wait_for_room(server_process, tmp_path):
    import pty

    write_csv(tmp_path / "a.csv")
    master, slave = pty.openpty()
    cmd = [sys.executable, "-m", "pipeline", "load", "--target", server_process.target, "--queue", "full_bar",
           "--format", "csv", "--files", str(tmp_path / "a.csv"), "--skip-header-lines", "1",
           "--record-defaults", "float32*2,int32", "--batch", str(BATCH), "--capacity", "150", "--report-every", "0"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=slave, preexec_fn=_default_sigint)
    os.close(slave)
    seen = bytearray()
    try:
        deadline = time.monotonic() + 30
        while b"queue full, waiting for room: 150 records" not in seen:  # nobody consumes: the queue fills
            assert time.monotonic() < deadline and proc.poll() is None, seen.decode(errors="replace")
            seen.extend(os.read(master, 4096))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
