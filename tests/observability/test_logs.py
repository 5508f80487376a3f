"""Event logs of a real ``queueserver serve`` process: one line per event, JSON with --log-format json."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

import queueserver as qs

TASK = "/job:localhost/task:0"


class LoggingServer:
    """``queueserver --log-format FMT serve`` with its stderr read line by line as it comes."""

    def __init__(self, fmt: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "queueserver", "--log-level", "INFO", "--log-format", fmt, "serve", "--port", "0",
             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"serving on (\S+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()}")
        self.target = match.group(1)
        self.lines: list[str] = []
        self._new: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self._new.put(line.rstrip("\n"))
        self._new.put(None)

    def wait_for(self, pattern: str, timeout: float = 10.0) -> str:
        """The first line (already seen or still to come) that contains ``pattern``."""
        for line in self.lines:
            if pattern in line:
                return line
        while True:
            line = self._new.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"the server exited without logging {pattern!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if pattern in line:
                return line

    def stop(self) -> list[str]:
        """SIGTERM, then every line it logged."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(10) == 0
        self._reader.join(10)
        while True:
            try:
                line = self._new.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return self.lines


def test_json_logs_one_object_per_event():
    server = LoggingServer("json", "--token", "tok")
    try:
        with qs.connect(server.target, token="tok", client_name="log test") as c:
            q = c.fifo_queue("examples", capacity=4, dtypes=[np.float32], container="exp")
            c.fifo_queue("examples", capacity=4, dtypes=[np.float32], container="exp")  # opened: not created again
            for _ in range(50):  # calls are not events: none of these is logged
                q.enqueue(1.0)
                q.dequeue()
            q.close()
            c.variable("w", np.zeros(3, np.float32), container="exp")
            c.reset(["exp"])
        server.wait_for('"client_disconnected"')
        with pytest.raises(qs.UnauthenticatedError):
            qs.connect(server.target, token="wrong", client_name="intruder").close()
        server.wait_for('"auth_failed"')
    finally:
        lines = server.stop()

    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for r in records:
        assert set(r) >= {"ts", "level", "task", "event", "message", "fields"}
        assert r["task"] == TASK
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", r["ts"])
    events = [r["event"] for r in records]
    assert events == ["server_started", "client_connected", "queue_created", "queue_closed", "variable_created",
                      "containers_reset", "client_disconnected", "auth_failed", "signal_received",
                      "server_stopping", "server_stopped"], events
    by_event = {r["event"]: r for r in records}
    assert by_event["server_started"]["fields"]["address"] == server.target
    assert by_event["server_started"]["fields"]["token"] is True
    assert by_event["client_connected"]["fields"]["client"] == "log test"
    assert by_event["queue_created"]["fields"] | {"spec": None} == {
        "queue": "exp/examples", "type": "FIFOQueue", "capacity": 4, "spec": None, "client": "log test"}
    assert by_event["queue_closed"]["fields"]["queue"] == "exp/examples"
    assert by_event["containers_reset"]["fields"] == {"containers": ["exp"], "freed": 2}
    assert by_event["client_disconnected"]["fields"]["clean"] is True
    assert by_event["auth_failed"]["level"] == "WARNING" and by_event["auth_failed"]["fields"]["client"] == "intruder"
    assert "log test" in by_event["client_connected"]["message"]


def test_text_logs_name_the_task():
    server = LoggingServer("text")
    try:
        with qs.connect(server.target, client_name="text test") as c:
            c.fifo_queue("q", capacity=2, dtypes=[np.float32])
        server.wait_for("disconnected")
    finally:
        lines = server.stop()
    created = next(line for line in lines if "FIFOQueue q created" in line)
    assert f"INFO queueserver: {TASK}: FIFOQueue q created by text test" in created
    assert any(f"{TASK}: stopped" in line for line in lines)
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])
