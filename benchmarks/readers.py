"""Reader benchmarks: W3 (CSV), W4 (TFRecord, plain and GZIP) and W5 (fixed-length CIFAR).

Generates the data of /work/shared/WORKLOADS.md exactly (numpy.random.default_rng(0), one generator
per workload) into benchmarks/data/, checks the files' sha256 against golden.json's
meta.data_checksums, then measures each reader pipeline beside a floor measured in the same run:

* W3: TextLineReader(skip_header_lines=1).read_chunk(8192) -> decode_csv -> 11 numpy columns.
  Floor: reading the file and splitting it into lines (no parsing at all).
* W4: TFRecordReader.read_chunk(1024) (both CRCs checked) -> parse_example -> x float32[n, 784],
  y int64[n, 1]. Floor: reading the file and one CRC32C over all of it (decompressing for GZIP).
* W5: FixedLengthRecordReader.read_chunk(10000) -> decode_cifar10 -> labels, uint8[n, 3, 32, 32].
  Floor: numpy.fromfile + reshape.

Each figure is the median of 3 runs (files are in the page cache after the first). ``--quick``
uses a tenth of each workload (checksums then cannot match and are not checked).

Usage: .venv/bin/python benchmarks/readers.py [--quick] [--only W3,W4,W5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.csv import decode_csv  # noqa: E402
from pipeline.fixed_length import FixedLengthRecordReader, decode_cifar10  # noqa: E402
from pipeline.textline import TextLineReader  # noqa: E402
from pipeline.tfrecord import FixedLenFeature, TFRecordReader, TFRecordWriter, encode_example, parse_example  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
GOLDEN = ROOT.parent / "shared" / "fixtures" / "golden.json"
TARGETS = {"W3": 727e3, "W4": 188e3, "W4-GZIP": 73e3, "W5": 297e3}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def checksums() -> dict:
    try:
        return json.loads(GOLDEN.read_text())["meta"]["data_checksums"]
    except OSError:
        return {}


def report_checksum(path: Path, name: str, quick: bool) -> None:
    if quick:
        print(f"  {path.name}: {path.stat().st_size:,} bytes (quick subset: checksum not compared)")
        return
    want = checksums().get(name)
    got = sha256(path)
    status = "n/a" if want is None else ("MATCHES" if got == want["sha256"] else "DIFFERS")
    print(f"  {path.name}: {path.stat().st_size:,} bytes, sha256 {got[:16]}... reference: {status}")


# -- data generation (WORKLOADS.md) --------------------------------------------------------------
def gen_w3(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500000, 10))
    empty = rng.random((500000, 10)) < 0.02
    target = rng.integers(0, 10, 500000)
    with open(path, "w", newline="\n") as f:
        f.write(",".join([f"x{i}" for i in range(10)] + ["target"]) + "\n")
        for i in range(rows):
            xi, ei = x[i], empty[i]
            f.write(",".join("" if ei[j] else "%.6f" % xi[j] for j in range(10)) + ",%d\n" % target[i])


def gen_w4(plain: Path, gz: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((20000, 784), np.float32)
    y = rng.integers(0, 10, (20000, 1))
    with TFRecordWriter(plain) as w1, TFRecordWriter(gz, "GZIP") as w2:
        for i in range(n):
            rec = encode_example({"x": x[i], "y": y[i]})
            w1.write(rec)
            w2.write(rec)


def gen_w5(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, (50000, 1), np.uint8)
    pixels = rng.integers(0, 256, (50000, 3072), np.uint8)
    np.concatenate([labels, pixels], axis=1)[:n].tofile(path)


# -- measurement ---------------------------------------------------------------------------------
def median_time(fn, runs: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def line(label: str, n: int, nbytes: int, secs: float, floor: float | None = None, target: float | None = None) -> None:
    rate = n / secs
    extra = ""
    if floor:
        extra += f"  ({floor / secs * 100:5.1f}% of the floor's speed)"
    if target:
        extra += f"  target {target / 1e3:.0f}k/s: {'BEATS' if rate > target else 'below'}"
    print(f"  {label:<42} {rate / 1e3:9.1f}k rec/s {nbytes / secs / 1e6:9.1f} MB/s{extra}")


def bench_w3(quick: bool) -> None:
    rows = 50_000 if quick else 500_000
    path = DATA / ("w3_quick.csv" if quick else "w3.csv")
    if not path.exists():
        gen_w3(path, rows)
    print(f"W3 csv: {rows:,} rows")
    report_checksum(path, "w3.csv", quick)
    size = path.stat().st_size
    defaults = [[0.0]] * 10 + [[0]]

    def floor():
        with open(path, "rb") as f:
            return len(f.read().split(b"\n"))

    def pipeline():
        n = 0
        with TextLineReader(path, skip_header_lines=1) as r:
            while lines := r.read_chunk(8192):
                cols = decode_csv(lines, defaults)
                n += len(cols[0])
        return n

    def pipeline_2threads():
        # The Data API runs decoding in worker threads; numpy releases the GIL inside each op,
        # so two decoders overlap on the machine's two cores.
        n = 0
        with TextLineReader(path, skip_header_lines=1) as r, ThreadPoolExecutor(2) as pool:
            futures = []
            while lines := r.read_chunk(8192):
                futures.append(pool.submit(decode_csv, lines, defaults))
                if len(futures) > 4:
                    n += len(futures.pop(0).result()[0])
            n += sum(len(f.result()[0]) for f in futures)
        return n

    ft, _ = median_time(floor)
    line("floor: read + split lines", rows, size, ft)
    t, n = median_time(pipeline)
    assert n == rows, n
    line("TextLineReader + decode_csv (1 thread)", rows, size, t, ft, TARGETS["W3"])
    t2, n = median_time(pipeline_2threads)
    assert n == rows, n
    line("TextLineReader + decode_csv (2 threads)", rows, size, t2, ft, TARGETS["W3"])


def bench_w4(quick: bool) -> None:
    n = 2_000 if quick else 20_000
    plain = DATA / ("w4_quick.tfrecord" if quick else "w4.tfrecord")
    gz = DATA / ("w4_quick.tfrecord.gz" if quick else "w4.tfrecord.gz")
    if not plain.exists() or not gz.exists():
        gen_w4(plain, gz, n)
    print(f"W4 tfrecord: {n:,} records")
    report_checksum(plain, "w4.tfrecord", quick)
    report_checksum(gz, "w4.tfrecord.gz", quick)
    spec = {"x": FixedLenFeature([784], np.float32), "y": FixedLenFeature([1], np.int64)}
    from google_crc32c import value as crc

    for label, path, comp in (("", plain, ""), ("GZIP ", gz, "GZIP")):
        size = plain.stat().st_size  # MB/s counted on the uncompressed records

        def floor():
            data = path.read_bytes()
            if comp:
                data = zlib.decompress(data, 31)
            return crc(data)

        def pipeline():
            count = 0
            with TFRecordReader(path, compression_type=comp) as r:
                while recs := r.read_chunk(1024):
                    out = parse_example(recs, spec)
                    count += out["x"].shape[0]
            return count

        ft, _ = median_time(floor)
        line(f"floor: {label}read + CRC32C of the file", n, size, ft)
        t, count = median_time(pipeline)
        assert count == n, count
        line(f"TFRecordReader {label}+ parse_example", n, size, t, ft, TARGETS["W4-GZIP" if comp else "W4"])


def bench_w5(quick: bool) -> None:
    n = 5_000 if quick else 50_000
    path = DATA / ("w5_quick.bin" if quick else "w5_cifar.bin")
    if not path.exists():
        gen_w5(path, n)
    print(f"W5 fixed-length CIFAR: {n:,} records")
    report_checksum(path, "w5_cifar.bin", quick)
    size = path.stat().st_size

    def floor():
        a = np.fromfile(path, np.uint8).reshape(-1, 3073)
        return a[:, 0], a[:, 1:].reshape(-1, 3, 32, 32)

    def pipeline():
        count = 0
        with FixedLengthRecordReader(path, record_bytes=3073) as r:
            while len(chunk := r.read_chunk(10000)):
                labels, images = decode_cifar10(chunk)
                count += len(labels)
        return count

    ft, _ = median_time(floor)
    line("floor: numpy.fromfile + reshape", n, size, ft)
    t, count = median_time(pipeline)
    assert count == n
    line("FixedLengthRecordReader + decode_cifar10", n, size, t, ft, TARGETS["W5"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of each workload")
    ap.add_argument("--only", default="W3,W4,W5", help="comma-separated subset of W3,W4,W5")
    args = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    which = {w.strip().upper() for w in args.only.split(",")}
    for name, fn in (("W3", bench_w3), ("W4", bench_w4), ("W5", bench_w5)):
        if name in which:
            fn(args.quick)


if __name__ == "__main__":
    main()
