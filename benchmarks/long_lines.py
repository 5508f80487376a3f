"""How reading grows with the length of one line: a file holding a single line of N MiB, read through
``TextLineDataset`` (as users write it), beside reading the file's bytes in one go (the floor).

Each measurement runs in a fresh process, which reports its wall time and its peak resident memory
above what it held before reading. The target (issue: the user's path is the fast path): time
proportional to the line's size, peak memory under 2x the line, for a 256 MiB line.

    python benchmarks/long_lines.py [--mib 16 64 256] [--gzip]
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys

from _common import REPO, machine_line

DATA = REPO / "benchmarks" / "data"

_MEASURE = r"""
import sys, time
path, how, compression = sys.argv[1], sys.argv[2], sys.argv[3]
if how == "dataset":
    from pipeline.data import TextLineDataset


def rss_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (a child inherits its parent's at fork)
before = rss_kib("VmRSS:")
t0 = time.perf_counter()
if how == "dataset":
    lines = list(TextLineDataset(path, compression_type=compression))
    size = sum(len(line) for line in lines)
else:
    with open(path, "rb") as f:
        size = len(f.read())
seconds = time.perf_counter() - t0
print(seconds, (rss_kib("VmHWM:") - before) * 1024, size)
"""


def _one_line_file(mib: int, compressed: bool) -> tuple[str, int]:
    DATA.mkdir(parents=True, exist_ok=True)
    line = b"0123456789abcdef" * (mib * 1024 * 1024 // 16)
    path = DATA / (f"one_line_{mib}mib.txt" + (".gz" if compressed else ""))
    if not path.exists():
        path.write_bytes(gzip.compress(line + b"\n", 1) if compressed else line + b"\n")
    return str(path), len(line)


def _measure(path: str, how: str, compression: str) -> tuple[float, int, int]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, path, how, compression], capture_output=True,
                         text=True, check=True, cwd=REPO)
    seconds, peak, size = out.stdout.split()
    return float(seconds), int(peak), int(size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--gzip", action="store_true", help="the file GZIP-compressed (the floor reads its bytes)")
    args = ap.parse_args()
    print(machine_line())
    print(f"{'line':>9}  {'TextLineDataset s':>17}  {'MiB/s':>7}  {'peak / line':>11}  {'floor s':>8}  {'floor MiB/s':>11}")
    for mib in args.mib:
        path, length = _one_line_file(mib, args.gzip)
        seconds, peak, size = _measure(path, "dataset", "GZIP" if args.gzip else "")
        assert size == length, (size, length)
        floor_s, _, _ = _measure(path, "floor", "")
        print(f"{mib:>5} MiB  {seconds:>17.2f}  {mib / seconds:>7.0f}  {peak / length:>11.2f}  {floor_s:>8.2f}"
              f"  {mib / floor_s:>11.0f}")


if __name__ == "__main__":
    main()
