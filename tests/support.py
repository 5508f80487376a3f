"""Test support: TensorFlow's golden outputs and a real server process."""

from __future__ import annotations

import collections
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
# TensorFlow's own outputs and files it wrote, kept in the repository (see fixtures/README.md): a
# clone runs every test on its own, and a missing fixture is a failure, never a skip.
FIXTURES = REPO / "tests" / "fixtures"
GOLDEN_PATH = FIXTURES / "golden.json"
TF_WRITTEN = FIXTURES / "tf_written"


@functools.lru_cache(maxsize=1)
def golden_file() -> dict:
    """golden.json, parsed once per process."""
    with open(GOLDEN_PATH) as f:
        return json.load(f)


def load_golden() -> dict:
    """Golden cases by name."""
    return {case["name"]: case for case in golden_file()["cases"]}


class ServerProcess:
    """``queueserver serve`` in a child process, as a user runs it.

    Its output is drained by two threads into ``output`` (its last lines), so a chatty server
    never blocks on a full pipe.
    """

    def __init__(self, *extra: str, env: dict | None = None, cmd: list[str] | None = None) -> None:
        cmd = cmd or [sys.executable, "-m", "queueserver", "--log-level", "WARNING", "serve", "--port", "0", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        line = self.proc.stdout.readline()
        match = re.search(r"serving on (\S+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"server did not start ({' '.join(cmd[3:])}): {line!r} {self.proc.stderr.read()}")
        self.target = match.group(1)
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream) -> None:
        for line in stream:
            self.output.append(line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)



def golden_steps(case: dict) -> list[dict]:
    """The steps of a queue case."""
    return case["result"]["steps"]


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that were free a moment ago."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ClusterProcesses:
    """The notebook's five-task cluster (2 ps, 3 workers), one ``queueserver serve`` process per task."""

    def __init__(self, tmp_dir: Path) -> None:
        ports = free_ports(5)
        self.spec = {"ps": [f"127.0.0.1:{p}" for p in ports[:2]],
                     "worker": [f"127.0.0.1:{p}" for p in ports[2:]]}
        self.path = tmp_dir / "cluster.json"
        self.path.write_text(json.dumps(self.spec))
        self.procs: dict[str, ServerProcess] = {}
        for job, addresses in self.spec.items():
            for i in range(len(addresses)):
                self.start(job, i)

    def start(self, job: str, index: int) -> "ServerProcess":
        proc = ServerProcess(cmd=[sys.executable, "-m", "queueserver", "--log-level", "WARNING", "serve",
                                  "--cluster", str(self.path), "--job", job, "--task", str(index)])
        self.procs[f"/job:{job}/task:{index}"] = proc
        return proc

    def target(self, task: str) -> str:
        return self.procs[task].target

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


class RawConnection:
    """A data-plane connection that sends hand-made msgpack frames: what a client we did not write
    (or a hostile one) can send, past every check of our own clients."""

    def __init__(self, target: str) -> None:
        import socket

        from queueserver.wire import PREAMBLE

        host, port = target.removeprefix("http://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.sendall(PREAMBLE)
        self._buffer = b""

    def send(self, header: dict, body: bytes = b"") -> None:
        import msgpack

        from queueserver.wire import PREFIX

        packed = msgpack.packb(header)
        self.sock.sendall(PREFIX.pack(len(packed), len(body)) + packed + body)

    def reply(self) -> tuple[dict, bytes]:
        """The next frame: its header and its raw body."""
        import msgpack

        from queueserver.wire import PREFIX

        while len(self._buffer) < PREFIX.size:
            self._recv()
        header_len, body_len = PREFIX.unpack_from(self._buffer)
        end = PREFIX.size + header_len + body_len
        while len(self._buffer) < end:
            self._recv()
        frame, self._buffer = self._buffer[:end], self._buffer[end:]
        return msgpack.unpackb(frame[PREFIX.size:PREFIX.size + header_len]), frame[PREFIX.size + header_len:]

    def call(self, header: dict, body: bytes = b"") -> tuple[dict, bytes]:
        self.send(header, body)
        return self.reply()

    def _recv(self) -> None:
        chunk = self.sock.recv(1 << 20)
        assert chunk, "the server closed the connection"
        self._buffer += chunk

    def close(self) -> None:
        self.sock.close()


def run_counting_turns(server, coro) -> tuple:
    """Run ``coro`` on ``server``'s event loop; return its result and how many turns the loop gave
    other work meanwhile (a coroutine stepping once per turn counts them): what shows that
    building something big does not hold the loop, without timing anything."""
    import asyncio

    async def main() -> tuple:
        turns = 0
        done = asyncio.Event()

        async def count() -> None:
            nonlocal turns
            while not done.is_set():
                turns += 1
                await asyncio.sleep(0)

        counter = asyncio.ensure_future(count())
        try:
            return await coro, turns
        finally:
            done.set()
            await counter

    return server._loop_thread.run(main())


def crash_connection(client) -> None:
    """Drop a client's connection as a killed process would: no goodbye, nothing acknowledged (the
    server gives back what it held). ``client``: a synchronous or an asyncio client."""
    blocking = getattr(client, "_async", None)
    if blocking is not None:
        blocking._break()
    else:
        client._protocol.transport.abort()
