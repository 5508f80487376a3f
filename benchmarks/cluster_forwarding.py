"""W1 through a cluster: the producer talks to a task that does not host the queue.

A two-task cluster (ps:0 hosts the queue, worker:0 does not). Three ways, in one run:
  direct     producer connected to ps:0 itself;
  forwarded  producer connected to worker:0 with route_direct=False: worker:0 forwards every call;
  routed     producer connected to worker:0 with the default route_direct=True: the client learns
             the queue's home from worker:0 and sends the data straight to ps:0.
Target: forwarded >= 0.70x direct.

    python benchmarks/cluster_forwarding.py [--instances 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, machine_line, run_roles, table
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
    times: dict[str, list[float]] = {"direct": [], "forwarded": [], "routed": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for mode in times:
                procs, targets = start_cluster(Path(tmp))
                try:
                    producer_target = targets["ps"] if mode == "direct" else targets["worker"]
                    elapsed, results = run_roles([
                        (producer, (producer_target, n, args.inflight, PS0, mode != "forwarded")),
                        (consumer, (targets["ps"], n, PS0))])
                    assert dict(results)["consumer"][0] == n
                    times[mode].append(elapsed)
                finally:
                    for p in procs:
                        p.terminate()
                        p.wait(10)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [("W1 through a cluster", "MB/s", "ratio to direct")]
    for mode, label in (("direct", "direct: producer on the queue's task"),
                        ("forwarded", "forwarded: through another task (target >= 0.70)"),
                        ("routed", "routed: client goes to the home task itself")):
        rows.append((label, f"{payload_mb / med[mode]:,.0f}", f"{med['direct'] / med[mode]:.2f}"))
    print(f"{machine_line()}; {n} instances, {payload_mb:.0f} MB, median of {args.repeat}")
    print(table(rows))


if __name__ == "__main__":
    main()
