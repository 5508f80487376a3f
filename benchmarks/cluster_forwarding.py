"""W1 through a cluster: the producer talks to a task that does not host the queue.

A two-task cluster (ps:0 hosts the queue, worker:0 does not). Three ways, in one run:
  direct     producer connected to ps:0 itself;
  forwarded  producer connected to worker:0 with route_direct=False: worker:0 forwards every call;
  routed     producer connected to worker:0 with the default route_direct=True: the client learns
             the queue's home from worker:0 and sends the data straight to ps:0;
  proxied    producer connected to ps:0 through a bare uvloop byte proxy (a fourth process that
             copies every byte both ways and does nothing else): the cheapest a forwarding hop
             can be, the floor of "forwarded" on this machine.
Target: forwarded >= 0.70x direct. The proxied line says how much of the gap is the extra hop
itself (each byte read and written once more, by one more process, on the same cores).

    python benchmarks/cluster_forwarding.py [--instances 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import CTX, REPO, machine_line, run_async, run_roles, table
from queue_bulk import consumer, make_data, producer

PS0, W0 = "/job:ps/task:0", "/job:worker/task:0"


def start_cluster(tmp: Path) -> tuple[list, dict]:
    import socket

    ports = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    spec = {"ps": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{ports[1]}"]}
    path = tmp / "cluster.json"
    path.write_text(json.dumps(spec))
    procs, targets = [], {}
    for job in ("ps", "worker"):
        p = subprocess.Popen([sys.executable, "-m", "queueserver", "--log-level", "WARNING", "serve",
                              "--cluster", str(path), "--job", job, "--task", "0"],
                             stdout=subprocess.PIPE, text=True, cwd=REPO)
        targets[job] = re.search(r"serving on (\S+)", p.stdout.readline()).group(1)
        procs.append(p)
    return procs, targets


class _Pipe(asyncio.Protocol):
    """One direction's reader of the byte proxy: what it reads, the other side writes; it stops
    reading while that side's transport has too much unsent (so the proxy holds a bounded amount)."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.other: "_Pipe | None" = None
        self.early: list = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.other is None or self.other.transport is None:
            self.early.append(data)
        else:
            self.other.transport.write(data)

    def pause_writing(self) -> None:  # our transport is full: the other side stops reading
        if self.other is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None:
            self.other.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()


async def _proxy_main(port_pipe, upstream: int) -> None:
    loop = asyncio.get_running_loop()

    def accepted() -> _Pipe:
        client = _Pipe()

        async def link() -> None:
            _, home = await loop.create_connection(_Pipe, "127.0.0.1", upstream)
            client.other, home.other = home, client
            for data in client.early:
                home.transport.write(data)
            client.early = []

        loop.create_task(link())
        return client

    server = await loop.create_server(accepted, "127.0.0.1", 0)
    port_pipe.send(server.sockets[0].getsockname()[1])
    async with server:
        await asyncio.Event().wait()


def proxy_process(port_pipe, upstream: int) -> None:
    """Entry point of the byte proxy's process (the "proxied" floor)."""
    run_async(_proxy_main, port_pipe, upstream)


def start_proxy(upstream: int) -> tuple[Any, int]:
    parent, child = CTX.Pipe()
    proc = CTX.Process(target=proxy_process, args=(child, upstream), daemon=True)
    proc.start()
    return proc, parent.recv()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--inflight", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.instances
    x, y = make_data(n)
    payload_mb = (x.nbytes + y.nbytes) / 1e6
    del x, y
    times: dict[str, list[float]] = {"direct": [], "forwarded": [], "routed": [], "proxied": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for mode in times:
                procs, targets = start_cluster(Path(tmp))
                try:
                    producer_target = targets["ps"] if mode == "direct" else targets["worker"]
                    if mode == "proxied":
                        proxy, port = start_proxy(int(targets["ps"].rsplit(":", 1)[1]))
                        procs.append(proxy)
                        producer_target = f"127.0.0.1:{port}"
                    elapsed, results = run_roles([
                        (producer, (producer_target, n, args.inflight, PS0, mode != "forwarded")),
                        (consumer, (targets["ps"], n, PS0))])
                    assert dict(results)["consumer"][0] == n
                    times[mode].append(elapsed)
                finally:
                    for p in procs:
                        p.terminate()
                        p.wait(10) if isinstance(p, subprocess.Popen) else p.join(10)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [("W1 through a cluster", "MB/s", "ratio to direct")]
    for mode, label in (("direct", "direct: producer on the queue's task"),
                        ("forwarded", "forwarded: through another task (target >= 0.70)"),
                        ("routed", "routed: client goes to the home task itself"),
                        ("proxied", "proxied: direct through a bare byte proxy (floor)")):
        each = ", ".join(f"{d / t:.2f}" for d, t in zip(times["direct"], times[mode]))
        rows.append((label, f"{payload_mb / med[mode]:,.0f}", f"{med['direct'] / med[mode]:.2f} ({each})"))
    rows.append(("forwarded against the proxied floor", "", f"{med['proxied'] / med['forwarded']:.2f} ("
                 + ", ".join(f"{p / f:.2f}" for p, f in zip(times["proxied"], times["forwarded"])) + ")"))
    print(f"{machine_line()}; {n} instances, {payload_mb:.0f} MB, median of {args.repeat}")
    print(table(rows))


if __name__ == "__main__":
    main()
