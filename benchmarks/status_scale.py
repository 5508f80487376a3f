"""What observing a big server costs its clients: /metrics, /status and `queueserver status` with
10k queues and 100k variables, while a client measures how long its small calls stall.

A ``queueserver serve`` process is filled with ``--queues`` queues and ``--variables`` variables
(async client, many calls in flight). Then a prober thread makes one ``size()`` call after another
and records each one's latency, while this process fetches each endpoint ``--repeat`` times. The
figures: each endpoint's time and size, and the prober's worst and 99th-percentile latency during
the scrapes beside its median with nothing scraping (the floor). The issue's budget: data-plane
calls never blocked for more than a few ms.

    python benchmarks/status_scale.py [--queues 10000] [--variables 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
import urllib.request

import numpy as np

from _common import CTX, ServerProc, machine_line


async def _fill(target: str, queues: int, variables: int) -> None:
    import queueserver as qs

    async with qs.connect_async(target) as c:
        sem = asyncio.Semaphore(256)

        async def make(kind: str, i: int) -> None:
            async with sem:
                if kind == "q":
                    await c.fifo_queue(f"q{i}", capacity=8, dtypes=[np.float32], shapes=[[4]])
                else:
                    v = await c.variable(f"v{i}", np.zeros(4, np.float32))
                    await v.initialize()

        await asyncio.gather(*(make("q", i) for i in range(queues)))
        await asyncio.gather(*(make("v", i) for i in range(variables)))


def _probe(target: str, stop, out) -> None:
    """In its own process (so this one's HTTP reads do not slow it): one ``size()`` call after
    another until ``stop`` is set; sends back ``(monotonic end time, latency)`` of each."""
    import queueserver as qs

    with qs.connect(target) as client:
        queue = client.fifo_queue("probe", capacity=8, dtypes=[np.float32], shapes=[[4]])
        seen = []
        while not stop.is_set():
            t0 = time.monotonic()
            queue.size()
            t1 = time.monotonic()
            seen.append((t1, t1 - t0))
    out.send(seen)


class Prober:
    """A process making small calls; latencies are looked up afterwards by time window."""

    def __init__(self, target: str) -> None:
        self.stop = CTX.Event()
        self.receive, send = CTX.Pipe(duplex=False)
        self.process = CTX.Process(target=_probe, args=(target, self.stop, send), daemon=True)
        self.process.start()
        self.windows: list[tuple[float, float]] = []

    def window(self, seconds: float | None = None, action=None) -> int:
        """Run ``action()`` (or sleep ``seconds``); returns the window's index."""
        t0 = time.monotonic()
        if action is not None:
            action()
        else:
            time.sleep(seconds or 0)
        self.windows.append((t0, time.monotonic()))
        return len(self.windows) - 1

    def finish(self) -> list[list[float]]:
        """The latencies seen in each window, in window order."""
        self.stop.set()
        seen = self.receive.recv()
        self.process.join()
        return [[lat for end, lat in seen if t0 <= end <= t1] for t0, t1 in self.windows]


def _fetch(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        body = r.read()
    return time.perf_counter() - t0, len(body)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queues", type=int, default=10_000)
    ap.add_argument("--variables", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(machine_line())
    server = ServerProc()
    try:
        t0 = time.perf_counter()
        asyncio.run(_fill(server.target, args.queues, args.variables))
        print(f"filled {args.queues} queues and {args.variables} variables in {time.perf_counter() - t0:.1f} s")
        base = "http://" + server.target.split("://")[-1]
        prober = Prober(server.target)
        time.sleep(2.0)  # connected and calling
        idle = prober.window(2.0)
        plan = []
        for path in ("/metrics", "/status", "/status?cluster=1"):
            for _ in range(args.repeat):
                fetched: list[tuple[float, int]] = []
                index = prober.window(action=functools.partial(lambda url, into: into.append(_fetch(url)),
                                                               base + path, fetched))
                plan.append((path, index, fetched[0]))
        windows = prober.finish()
        floor = windows[idle]
        print(f"prober floor (nothing scraping): median {statistics.median(floor) * 1e3:.2f} ms, "
              f"worst {max(floor) * 1e3:.1f} ms, {len(floor)} calls")
        rows = [("endpoint", "time per fetch (s)", "bytes", "prober worst / p99 (ms)")]
        for path in dict.fromkeys(p for p, _, _ in plan):
            mine = [(windows[i], f) for p, i, f in plan if p == path]
            seen = sorted(lat for w, _ in mine for lat in w)
            p99 = seen[max(int(len(seen) * 0.99) - 1, 0)] if seen else float("nan")
            rows.append((path, f"{statistics.median(f[0] for _, f in mine):.2f}", f"{mine[-1][1][1]:,}",
                         f"{seen[-1] * 1e3:.1f} / {p99 * 1e3:.1f}" if seen else "-"))
        print(_table(rows))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
