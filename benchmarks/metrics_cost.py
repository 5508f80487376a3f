"""What metrics cost the data path: W1 (and optionally W2) with metrics on and scraped vs metrics off.

Each repeat runs the workload twice through fresh ``queueserver serve`` processes, in alternating
order: once with metrics on while this process scrapes ``/metrics`` and the status page's
``/status?cluster=1`` every second (as Prometheus and an open status page would), once with
``--no-metrics`` and nothing scraping. The issue's budget: metrics on within 5% of metrics off.

On a 2-core machine three busy processes make single runs vary by +-30%, far more than what is being
measured, so the verdict uses the median of the paired on/off ratios, and the table also gives the
server process's CPU time per run (user + system, from /proc), which varies much less.

    python benchmarks/metrics_cost.py [--instances 100000] [--repeat 5] [--w2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import urllib.request

import queue_bulk
import queue_small
from _common import ServerProc, machine_line, run_roles, table


class Scraper:
    """Fetches /metrics and /status?cluster=1 every ``interval`` seconds in a thread until stopped."""

    def __init__(self, target: str, interval: float = 1.0) -> None:
        self.target, self.interval = target, interval
        self.stop_event = threading.Event()
        self.scrapes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Scraper":
        self.thread.start()
        return self

    def _run(self) -> None:
        while True:
            for path in ("/metrics", "/status?cluster=1"):
                with urllib.request.urlopen(self.target + path, timeout=10) as r:
                    r.read()
            self.scrapes += 1
            if self.stop_event.wait(self.interval):
                return

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(metrics: bool, roles_for, check=None) -> tuple[float, float, int]:
    """One run: (seconds, server CPU seconds during it, scrapes during it)."""
    server = ServerProc(*([] if metrics else ["--no-metrics"]))
    try:
        roles = roles_for(server.target)
        cpu0 = cpu_seconds(server.proc.pid)
        scrapes = 0
        if metrics:
            with Scraper(server.target) as scraper:
                elapsed, results = run_roles(roles)
            scrapes = scraper.scrapes
        else:
            elapsed, results = run_roles(roles)
        cpu = cpu_seconds(server.proc.pid) - cpu0
        if check is not None:
            check(dict(results))
        return elapsed, cpu, scrapes
    finally:
        server.stop()


def micro_costs() -> list[tuple[str, str, str]]:
    """The two costs metrics add, measured in this process: per call, and per scrape."""
    import asyncio
    import timeit
    from time import perf_counter

    import numpy as np

    from queueserver.metrics import render
    from queueserver.server import QueueService

    async def measure() -> tuple[float, float]:
        svc = QueueService()
        q = svc.resources.queue("fifo", "w1", capacity=10_000, dtypes=[np.float32, np.int32], shapes=[[784], []])
        q.enqueue((np.zeros((256, 784), np.float32), np.zeros(256, np.int32)), many=True)
        stats = svc.call_stats
        for op in ("hello", "queue", "enqueue", "dequeue", "close", "bye", "status"):
            stats.observe(op, "ok", perf_counter())
        per_call = min(timeit.repeat(lambda: stats.observe("enqueue", "ok", perf_counter()), number=100_000,
                                     repeat=3)) / 100_000
        per_scrape = min(timeit.repeat(lambda: (render(svc), svc.status()), number=100,
                                       repeat=3)) / 100
        return per_call, per_scrape

    per_call, per_scrape = asyncio.run(measure())
    return [("per-call accounting (server)", f"{per_call * 1e6:.2f} us", "CallStats.observe: clock read, count, bucket"),
            ("one scrape (server, W1's queue)", f"{per_scrape * 1e3:.2f} ms",
             "render /metrics + build /status, HTTP handling not included")]


def compare(name: str, unit: str, amount: float, run, repeat: int) -> list[tuple[str, str, str]]:
    """Paired runs in alternating order; rows for the table."""
    runs: dict[bool, list] = {True: [], False: []}
    pair_ratios = []
    for i in range(repeat):
        order = (True, False) if i % 2 == 0 else (False, True)  # alternate: drift hits both alike
        for metrics in order:
            runs[metrics].append(run(metrics))
        pair_ratios.append(runs[False][-1][0] / runs[True][-1][0])  # throughput on / throughput off
    rows = []
    for metrics, label in ((False, "metrics off"), (True, "metrics on, scraped every 1 s")):
        times = [r[0] for r in runs[metrics]]
        cpu = statistics.median(r[1] for r in runs[metrics])
        detail = f"server CPU {cpu * 1000:,.0f} ms/run; runs {', '.join(f'{amount / t:,.0f}' for t in times)}"
        if metrics:
            scrapes = [r[2] for r in runs[metrics]]
            detail += f"; {min(scrapes)}-{max(scrapes)} scrapes/run"
        rows.append((f"{name}: {label}", f"{amount / statistics.median(times):,.0f} {unit}", detail))
    ratio = statistics.median(pair_ratios)
    cpu_ratio = statistics.median(r[1] for r in runs[True]) / statistics.median(r[1] for r in runs[False])
    verdict = "within the 5% budget" if ratio >= 0.95 else "OVER the 5% budget"
    rows.append((f"{name}: on / off throughput", f"{ratio:.3f}",
                 f"{verdict} (median of {repeat} paired ratios); server CPU on/off {cpu_ratio:.3f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=100_000, help="W1 instances per run")
    parser.add_argument("--inflight", type=int, default=2, help="W1 enqueue_many calls in flight")
    parser.add_argument("--repeat", type=int, default=9, help="paired runs; medians are reported")
    parser.add_argument("--w2", action="store_true", help="also run W2 (20,000 single-scalar calls each way)")
    parser.add_argument("--items", type=int, default=20_000, help="W2 items per run")
    args = parser.parse_args()

    n = args.instances
    x, y = queue_bulk.make_data(n)
    payload_mb = (x.nbytes + y.nbytes) / 1e6
    expected = (n, int(y.sum()))
    del x, y
    rows = [("workload", "throughput", "detail")]

    def w1_roles(target: str) -> list:
        return [(queue_bulk.producer, (target, n, args.inflight)), (queue_bulk.consumer, (target, n))]

    def w1_check(results: dict) -> None:
        assert results["consumer"] == expected, f"consumer got {results['consumer']}, expected {expected}"

    def w2_roles(target: str) -> list:  # one call in flight per client: the per-call cost shows most here
        return [(queue_small.producer, (target, args.items, 1)), (queue_small.consumer, (target, args.items, 1))]

    rows += compare("W1", "MB/s", payload_mb, lambda m: run_once(m, w1_roles, w1_check), args.repeat)
    if args.w2:
        rows += compare("W2", "items/s", args.items, lambda m: run_once(m, w2_roles), args.repeat)
    rows += micro_costs()
    print(f"{machine_line()}; W1 {n} instances ({payload_mb:.0f} MB); {args.repeat} paired runs")
    print(table(rows))


if __name__ == "__main__":
    main()
