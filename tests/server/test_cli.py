"""The ``queueserver`` command as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import queueserver as qs
from support import ServerProcess


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "queueserver", *args], capture_output=True, text=True, timeout=60)


def test_help_explains_every_command():
    out = run_cli("--help").stdout
    for command in ("serve", "status", "reset"):
        assert command in out
    serve_help = run_cli("serve", "--help").stdout
    assert "127.0.0.1" in serve_help and "--token" in serve_help and "--max-message-bytes" in serve_help


def test_status_and_reset_commands():
    server = ServerProcess()
    try:
        with qs.connect(server.target) as c:
            q = c.fifo_queue("instances", capacity=10, dtypes=[np.float32], shapes=[[2]], container="exp1")
            q.enqueue_many(np.zeros((3, 2), np.float32))
            c.variable("x", 0.0)
            status = run_cli("status", server.target)
            assert status.returncode == 0, status.stderr
            row = next(line for line in status.stdout.splitlines() if " instances " in line)
            assert row.split()[:5] == ["exp1", "instances", "FIFOQueue", "3", "10"]  # container, name: two columns
            assert "uninitialized" in status.stdout
            reset = run_cli("reset", server.target, "--container", "exp1")
            assert "1 resource(s) freed" in reset.stdout
            with pytest.raises(qs.NotFoundError):
                q.size()
    finally:
        assert server.stop() == 0


def test_sigterm_stops_cleanly_and_tells_waiting_callers():
    server = ServerProcess()
    errors = []

    def blocked_consumer():
        with qs.connect(server.target) as c:
            q = c.fifo_queue("q", capacity=1, dtypes=[np.float32], shapes=[[]])
            ready.set()
            try:
                q.dequeue()
            except qs.QueueServerError as exc:
                errors.append(exc)

    ready = threading.Event()
    thread = threading.Thread(target=blocked_consumer)
    thread.start()
    assert ready.wait(10)
    with qs.connect(server.target) as c:  # make sure the dequeue is waiting on the server
        while not c.status()["queues"][0]["waiting_dequeues"]:
            pass
    assert server.stop(signal.SIGTERM) == 0
    thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], qs.UnavailableError)
    assert "shutting down" in str(errors[0])


def test_port_in_use_is_a_clear_error():
    server = ServerProcess()
    try:
        port = server.target.rsplit(":", 1)[1]
        out = subprocess.run([sys.executable, "-m", "queueserver", "serve", "--port", port],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and "in use" in out.stderr
        assert "Traceback" not in out.stderr  # one line that says what is wrong
        assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("queueserver serve: ")
    finally:
        server.stop()


@pytest.mark.parametrize("args, code, message", [
    (["status", "foo:bar"], 1, "target 'foo:bar' needs a host and a port"),
    (["--log-level", "LOUD", "serve", "--port", "0"], 2, "'LOUD' is not a log level"),
    (["serve", "--log-level", "LOUD", "--port", "0"], 2, "'LOUD' is not a log level"),
    (["serve", "--job", "ps", "--port", "0"], 2, "serve --job needs --cluster"),
])
def test_mistakes_get_one_line_errors_without_tracebacks(args, code, message):
    out = run_cli(*args)
    assert out.returncode == code and message in out.stderr and "Traceback" not in out.stderr


def test_serve_needs_task_only_when_the_job_has_several(tmp_path):
    from support import free_ports

    a, b, c = (f"127.0.0.1:{p}" for p in free_ports(3))
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"ps": [a], "worker": [b, c]}))
    out = run_cli("serve", "--cluster", str(path), "--job", "worker")  # before: served task 0, silently
    assert out.returncode == 1 and "Must specify an explicit `--task`: job 'worker' has tasks [0, 1]" in out.stderr
    out = run_cli("serve", "--cluster", str(path))
    assert out.returncode == 1 and "Must specify an explicit `--job`" in out.stderr
    server = ServerProcess(cmd=[sys.executable, "-m", "queueserver", "--log-level", "WARNING", "serve",
                                "--cluster", str(path), "--job", "ps"])  # one task: no --task needed
    try:
        with qs.connect(server.target) as client:
            assert client.task == "/job:ps/task:0"
    finally:
        server.stop()


def test_log_options_are_accepted_after_the_subcommand_and_a_public_bind_without_token_warns():
    proc = subprocess.Popen([sys.executable, "-m", "queueserver", "serve", "--port", "0", "--host", "0.0.0.0",
                             "--log-level", "warning", "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "serving on" in proc.stdout.readline()
        warning = proc.stderr.readline()
        assert json.loads(warning)["event"] == "no_token" and "without a token" in warning
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


def test_names_are_escaped_in_text_logs_and_the_status_table():
    # Before: a client could forge log lines and drive the operator's terminal with a queue name.
    evil = "evil\n2026-01-01 00:00:00,000 INFO queueserver: forged\x1b[2J"
    server = ServerProcess(cmd=[sys.executable, "-m", "queueserver", "--log-level", "INFO", "serve", "--port", "0"])
    try:
        with qs.connect(server.target, client_name="bad\nclient") as c:
            c.fifo_queue(evil, 2, [np.float32], [[]])
            status = run_cli("status", server.target)
        assert status.returncode == 0 and "\x1b" not in status.stdout
        assert "evil\\x0a2026-01-01" in status.stdout and "forged" in status.stdout
        assert not any(line.startswith("2026-01-01") for line in status.stdout.splitlines())
    finally:
        server.stop()
    deadline = time.monotonic() + 10
    while not any("queue_created" in line or "created by" in line for line in server.output):
        assert time.monotonic() < deadline, list(server.output)
        time.sleep(0.01)
    logged = "".join(server.output)
    assert "\x1b" not in logged and "evil\\x0a" in logged
    assert not any(line.startswith("2026-01-01") for line in logged.splitlines())


def test_wrong_tokens_are_logged_once_per_burst_and_a_guessing_connection_is_closed():
    from support import RawConnection

    server = ServerProcess(cmd=[sys.executable, "-m", "queueserver", "--log-level", "WARNING", "serve", "--port", "0",
                                "--token", "right"])
    try:
        raw = RawConnection(server.target)
        for attempt in range(3):
            reply, _ = raw.call({"i": attempt + 1, "o": "hello", "token": f"guess{attempt}", "client": "x"})
            assert reply["e"][0] == qs.UnauthenticatedError.code
        assert raw.sock.recv(1) == b""  # three wrong tokens: the connection is closed
        raw.close()
        for _ in range(5):  # more guesses from the same host, on new connections, within the window
            with pytest.raises(qs.UnauthenticatedError):
                qs.connect(server.target, token="wrong")
        with qs.connect(server.target, token="right") as c:  # the right token still gets in
            assert c.status()["task"]
    finally:
        server.stop()
    logged = "".join(server.output)
    assert logged.count("wrong or missing token") == 1, logged


@pytest.mark.parametrize("module", ["queueserver", "pipeline", "compute"])
def test_every_cli_says_its_version(module):
    out = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().endswith(qs.__version__)


def test_cluster_up_with_a_busy_port_stops_the_tasks_it_started_and_fails(tmp_path):
    # Before: the task on the busy port died, and `cluster up` waited for ever on the others.
    import socket

    from support import free_ports

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    (free,) = free_ports(1)
    spec = {"ps": [f"127.0.0.1:{busy.getsockname()[1]}"], "worker": [f"127.0.0.1:{free}"]}
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(spec))
    try:
        proc = subprocess.run([sys.executable, "-m", "queueserver", "--log-level", "WARNING", "cluster", "up",
                               str(path)], capture_output=True, text=True, timeout=60)
    finally:
        busy.close()
    assert proc.returncode == 1, proc.stderr
    assert "/job:ps/task:0 exited with status 1" in proc.stderr and "stopped the other 1 task(s)" in proc.stderr
    assert "Traceback" not in proc.stderr
    with socket.socket() as s:  # the worker it started is gone: its port is free again (no listener on it)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (only a live listener can refuse the bind)
        s.bind(("127.0.0.1", free))
        s.listen()
