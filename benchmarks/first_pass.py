"""The first pass over a file in a fresh process, beside the second pass in the same process: what
a Data API chain pays for having no memory to reuse yet.

A fresh process (a script's first epoch, a loader's start) faults in every buffer the reading path
allocates page by page, and buffers of a few MiB that are freed go back to the system and are
faulted in again. Buffers the API never hands out (the text segments' read buffer, TFRecord's
memory map) are reused; what a first pass faults in beyond them is its outputs and the
libraries' own first allocations (pyarrow's pool), and the second pass (the floor, measured in
the same process) reuses what the first freed. The chain keeps its outputs, as a user
collecting an epoch does; each figure is the median of ``--repeat`` fresh processes. Page faults
are counted as 4 KiB each, which understates numpy's large arrays (numpy asks for huge pages:
one fault may bring in 2 MiB).

    python benchmarks/first_pass.py [--repeat 3] [--only W3,W4,W5]

Needs the workload files of benchmarks/readers.py (run it once first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _common import REPO, machine_line, table

DATA = REPO / "benchmarks" / "data"

_MEASURE = r"""
import json, resource, sys, time
import numpy as np
workload, path = sys.argv[1], sys.argv[2]
if workload == "W3":
    from pipeline.csv import decode_csv
    from pipeline.data import TextLineDataset
    defaults = [[0.0]] * 10 + [[0]]
    run = lambda: TextLineDataset(path).skip(1).batch(1024).map(lambda s: decode_csv(s, defaults))
elif workload == "W4":
    from pipeline.data import TFRecordDataset
    from pipeline.tfrecord import FixedLenFeature, parse_example
    spec = {"x": FixedLenFeature([784], np.float32), "y": FixedLenFeature([1], np.int64)}
    run = lambda: TFRecordDataset(path).batch(1024).map(lambda s: parse_example(s, spec))
elif workload == "W5":
    from pipeline.data import FixedLengthRecordDataset
    from pipeline.raw import decode_raw
    run = lambda: FixedLengthRecordDataset(path, 3073).batch(10000).map(lambda r: decode_raw(r, np.uint8))


def leaves(x):
    if isinstance(x, dict):
        return [a for v in x.values() for a in leaves(v)]
    if isinstance(x, (list, tuple)):
        return [a for v in x for a in leaves(v)]
    return [x]


import pyarrow.csv  # noqa: F401  # imported lazily by the CSV path: its code's pages are not the pass's
passes = []
for _ in range(2):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    kept = list(run())
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    passes.append((seconds, (r1.ru_minflt - r0.ru_minflt) * 4096))
    out_bytes = sum(a.nbytes for b in kept for a in leaves(b) if hasattr(a, "nbytes"))
    del kept
print(json.dumps({"first_s": passes[0][0], "first_faults": passes[0][1], "second_s": passes[1][0],
                  "second_faults": passes[1][1], "out_bytes": out_bytes}))
"""

FILES = {"W3": "w3.csv", "W4": "w4.tfrecord", "W5": "w5_cifar.bin"}


def measure(workload: str, path: str, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", _MEASURE, workload, path], capture_output=True, text=True,
                             check=True, cwd=REPO)
        runs.append(json.loads(out.stdout))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="W3,W4,W5")
    args = parser.parse_args()
    mb = lambda b: f"{b / 1e6:,.0f} MB"  # noqa: E731
    rows = [("Data API chain, fresh process", "seconds", "faulted in (outputs kept: size)")]
    for workload in args.only.split(","):
        path = DATA / FILES[workload]
        if not path.exists():
            sys.exit(f"{path} is missing: run benchmarks/readers.py once to generate it")
        got = measure(workload, str(path), args.repeat)
        name = f"{workload} ({path.name}, {mb(path.stat().st_size)})"
        rows.append((f"{name}: first pass", f"{got['first_s']:.3f}",
                     f"{mb(got['first_faults'])} (outputs {mb(got['out_bytes'])})"))
        rows.append((f"{name}: second pass (floor)", f"{got['second_s']:.3f}",
                     f"{mb(got['second_faults'])}; first/second {got['first_s'] / got['second_s']:.2f}x"))
    print(f"{machine_line()}; median of {args.repeat} fresh processes")
    print(table(rows))


if __name__ == "__main__":
    main()
