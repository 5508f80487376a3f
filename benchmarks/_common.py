"""Shared pieces of the queue benchmarks: server processes, the bare floors, process roles, output."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CTX = mp.get_context("spawn")


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed, as the server and the floors use."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


def run_async(coro_fn: Callable, *args: Any) -> Any:
    loop = new_loop()
    try:
        return loop.run_until_complete(coro_fn(*args))
    finally:
        loop.close()


class ServerProc:
    """``queueserver serve`` in its own process; reports its peak resident memory."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "queueserver", "--log-level", "WARNING", "serve", "--port", "0", *extra],
            stdout=subprocess.PIPE, text=True, cwd=REPO)
        line = self.proc.stdout.readline()
        match = re.search(r"serving on (\S+)", line)
        if not match:
            raise RuntimeError(f"server did not start: {line!r}")
        self.target = match.group(1)

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_roles(roles: list[tuple[Callable, tuple]], *, timeout: float = 600) -> tuple[float, list]:
    """Start one process per role, release them together, return (seconds until all finished, results).

    Each role is ``fn(go_event, result_queue, *args)``; it connects and prepares, waits on
    ``go_event``, does its work, and puts ``(name, value)`` on the queue.
    """
    go = CTX.Event()
    results = CTX.Queue()
    ready = CTX.Barrier(len(roles) + 1)
    procs = [CTX.Process(target=_role_main, args=(fn, ready, go, results, *args)) for fn, args in roles]
    for p in procs:
        p.start()
    ready.wait(timeout)
    start = time.monotonic()
    go.set()
    out = [results.get(timeout=timeout) for _ in procs]
    elapsed = max(end for _, _, end in out) - start
    for p in procs:
        p.join(30)
    errors = [value for name, value, _ in out if name == "error"]
    if errors:
        raise RuntimeError(errors[0])
    return elapsed, [(name, value) for name, value, _ in out]


def _role_main(fn: Callable, ready, go, results, *args: Any) -> None:
    try:
        name, value = fn(ready, go, *args)
        results.put((name, value, time.monotonic()))
    except BaseException as exc:  # report, so the parent does not hang
        import traceback

        results.put(("error", f"{fn.__name__}: {traceback.format_exc()}", time.monotonic()))
        raise SystemExit(1) from exc


# ------------------------------------------------------------------ bare floors
async def _relay_main(port_pipe) -> None:
    """A bare asyncio stream relay: bytes from the first connection go to the second."""
    conns: list = []
    both = asyncio.Event()

    roles: dict = {}

    async def handle(reader, writer) -> None:
        role = await reader.readexactly(1)  # b"P" producer, b"C" consumer
        roles[role] = (reader, writer)
        conns.append(role)
        if len(roles) == 2:
            both.set()
        await both.wait()
        if role != b"P":
            return
        out = roles[b"C"][1]
        while True:
            data = await reader.read(1 << 20)
            if not data:
                break
            out.write(data)
            await out.drain()
        out.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_pipe.send(server.sockets[0].getsockname()[1])
    async with server:
        await both.wait()
        while not roles[b"C"][1].is_closing():
            await asyncio.sleep(0.05)


def relay_process(port_pipe) -> None:
    """Entry point of the relay floor's process."""
    run_async(_relay_main, port_pipe)


async def _reqresp_main(port_pipe) -> None:
    """A bare request/response server holding an asyncio.Queue: 5-byte requests, 5-byte replies."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=10_000)

    async def handle(reader, writer) -> None:
        try:
            while True:
                req = await reader.readexactly(5)
                if req[:1] == b"E":
                    await queue.put(req[1:])
                    writer.write(b"O\x00\x00\x00\x00")
                else:
                    writer.write(b"V" + await queue.get())
        except asyncio.IncompleteReadError:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_pipe.send(server.sockets[0].getsockname()[1])
    async with server:
        await asyncio.Event().wait()


def reqresp_process(port_pipe) -> None:
    """Entry point of the request/response floor's process."""
    run_async(_reqresp_main, port_pipe)


def start_floor(target: Callable) -> tuple[Any, int]:
    """Start a floor server process; returns (process, port)."""
    parent, child = CTX.Pipe()
    proc = CTX.Process(target=target, args=(child,), daemon=True)
    proc.start()
    return proc, parent.recv()


FRAME = struct.Struct("<Q")


def table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def machine_line() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
