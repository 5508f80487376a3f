"""Reader benchmarks: W3 (CSV), W4 (TFRecord, plain and GZIP) and W5 (fixed-length CIFAR).

Generates the data of /work/shared/WORKLOADS.md exactly (numpy.random.default_rng(0), one generator
per workload) into benchmarks/data/, checks the files' sha256 against golden.json's
meta.data_checksums, then measures each reader pipeline beside a floor measured in the same run:

* W3: read_csv_columns(path, skip_header_lines=1) -> 11 numpy columns (compared with the generated
  values), also with pyarrow's use_threads=True, and the way a line-based
  user reads it: TextLineReader(skip_header_lines=1).read_chunk(8192) -> decode_csv. Floors:
  pyarrow.csv.read_csv(path, use_threads=False) (the issue's yardstick: target >= 0.45x of it and
  >= 1.45M rows/s) and reading the file + splitting it into lines (no parsing at all).
* W4: read_tfrecord_examples(path, spec) (both CRCs of every record checked) -> x float32[n, 784],
  y int64[n, 1], compared with the generated arrays; and the record-stream way,
  TFRecordReader.read_chunk(1024) -> parse_example. Floor: reading the file and one CRC32C over
  all of it (decompressing it with zlib first for GZIP).
* W5: FixedLengthRecordReader.read_chunk(10000) -> decode_cifar10 -> labels, uint8[n, 3, 32, 32].
  Floor: numpy.fromfile + reshape.

Each workload also times the Data API chain exactly as a user writes it and prints its ratio to the
project's bare reader of that format, measured in the same run (issue 13's target: >= 0.8x):
``TextLineDataset(p).skip(1).batch(1024).map(lambda s: decode_csv(s, defaults))`` and
``CsvDataset(p, defaults, header=True).batch(1024)`` against ``read_csv_columns``;
``TFRecordDataset(p[, "GZIP"]).batch(1024).map(lambda s: parse_example(s, spec))`` against
``read_tfrecord_examples``; ``FixedLengthRecordDataset(p, 3073).batch(10000).map(lambda r:
decode_raw(r, tf.uint8))`` against ``FixedLengthRecordReader`` + ``decode_cifar10``. A chain's time
is its batches as the user receives them, each kept (as the bare readers' whole arrays are); the
check of their values joins them afterwards, untimed.

Each figure is the median of 5 runs (files are in the page cache after the first). ``--quick``
uses a tenth of each workload (checksums then cannot match and are not checked).

With ``--tensorflow PYTHON`` (a Python that has ``tensorflow-cpu``, installed outside the project),
TensorFlow's own pipeline for each workload (benchmarks/tf_reference.py) is timed in the same run,
three fresh processes each, and the project's figures are also given as a ratio to it: the
targets are stated against TensorFlow, and its figures in WORKLOADS.md drift with the machine.

Usage: .venv/bin/python benchmarks/readers.py [--quick] [--only W3,W4,W5] [--tensorflow PYTHON]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.csv import decode_csv, read_csv_columns  # noqa: E402
from pipeline.data import CsvDataset, FixedLengthRecordDataset, TextLineDataset, TFRecordDataset  # noqa: E402
from pipeline.raw import decode_raw  # noqa: E402
from pipeline.fixed_length import FixedLengthRecordReader, decode_cifar10  # noqa: E402
from pipeline.textline import TextLineReader  # noqa: E402
from pipeline.tfrecord import (  # noqa: E402
    FixedLenFeature,
    TFRecordReader,
    TFRecordWriter,
    encode_example,
    parse_example,
    read_tfrecord_examples,
)

DATA = ROOT / "benchmarks" / "data"
GOLDEN = ROOT.parent / "shared" / "fixtures" / "golden.json"
# The targets: W3 2x TensorFlow's batched decode_csv (727k rows/s), W4 1.5x TensorFlow's
# first pass (188k records/s), GZIP TensorFlow's 73k records/s; W5 TensorFlow's 297k records/s.
TARGETS = {"W3": 1.45e6, "W4": 282e3, "W4-GZIP": 73e3, "W5": 297e3}
# TensorFlow's own figures in WORKLOADS.md (records/s), to turn each target into a multiple of it.
TF_REFERENCE = {"W3": 727e3, "W4": 188e3, "W4-GZIP": 73e3, "W5": 297e3}
W3_PYARROW_RATIO = 0.45  # and W3 at least this fraction of pyarrow's single-threaded reader
CHAIN_RATIO = 0.8  # issue 13: each Data API chain at least this fraction of the bare reader (same run)
# Issue 13: each Data API chain at least this multiple of TensorFlow 2.21 timed in the same run.
CHAIN_TF_TARGETS = {"W3": 3.0, "W4": 2.5, "W4-GZIP": 1.5, "W5": 5.0}


def chain_line(label: str, n: int, nbytes: int, secs: float, bare: tuple[str, float],
               vs_tf: tuple[str, float, float] | None = None, workload: str = "") -> None:
    """A Data API chain's figure, its ratio to the project's bare reader timed in the same run and,
    with ``--tensorflow``, its multiple of TensorFlow's same-run figure."""
    name, bare_secs = bare
    r = bare_secs / secs
    line(label, n, nbytes, secs)
    tf = ""
    if vs_tf is not None:
        need = CHAIN_TF_TARGETS[workload]
        m = vs_tf[1] / secs
        tf = f"; {m:.2f}x {vs_tf[0]} (target {need}x: {'MEETS' if m >= need else 'below'})"
    print(f"  {'':<42} = {r:.2f}x {name} (target {CHAIN_RATIO}x: {'MEETS' if r >= CHAIN_RATIO else 'below'}){tf}")


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
TENSORFLOW: str | None = None  # --tensorflow: a Python with TensorFlow installed


def tensorflow_time(workload: str, path: Path, n: int, runs: int = 3) -> tuple[float, str] | None:
    """TensorFlow's median seconds for ``workload`` on ``path`` (fresh process per run), or None."""
    if not TENSORFLOW:
        return None
    times, version = [], ""
    for _ in range(runs):
        out = subprocess.run([TENSORFLOW, str(ROOT / "benchmarks" / "tf_reference.py"), workload, str(path)],
                             capture_output=True, text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["records"] == n, f"TensorFlow read {got['records']} records, expected {n}"
        times.append(got["seconds"])
        version = got["version"]
    return statistics.median(times), version


def tensorflow_line(workload: str, path: Path, n: int, nbytes: int) -> tuple[str, float, float] | None:
    """Print TensorFlow's same-run figure; returns a ``ratio_to`` for the project's lines."""
    got = tensorflow_time(workload, path, n)
    if got is None:
        return None
    secs, version = got
    line(f"TensorFlow {version} (same run, first pass)", n, nbytes, secs)
    need = TARGETS[workload] / TF_REFERENCE[workload]  # the target's multiple of TensorFlow
    return (f"TensorFlow {version}", secs, round(need, 2))


def median_time(fn, runs: int = 5) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def line(
    label: str, n: int, nbytes: int, secs: float, floor: float | None = None, target: float | None = None,
    ratio_to: tuple[str, float, float] | None = None, also: tuple[str, float, float] | None = None,
) -> None:
    rate = n / secs
    extra = ""
    if floor:
        extra += f"  ({floor / secs * 100:5.1f}% of the floor's speed)"
    for vs in (ratio_to, also):
        if vs:
            name, other, need = vs
            r = other / secs
            extra += f"  {r:.2f}x {name} (target {need}x: {'MEETS' if r >= need else 'below'})"
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

    def pyarrow_floor():
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False)).num_rows

    def columns():
        return read_csv_columns(path, defaults, skip_header_lines=1)

    def columns_threads():
        return read_csv_columns(path, defaults, skip_header_lines=1, use_threads=True)

    def pipeline():
        n = 0
        with TextLineReader(path, skip_header_lines=1) as r:
            while lines := r.read_chunk(8192):
                cols = decode_csv(lines, defaults)
                n += len(cols[0])
        return n

    def pipeline_2threads():
        # The Data API runs decoding in worker threads; pyarrow and numpy release the GIL, so two
        # decoders overlap on the machine's two cores.
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
    try:
        pt, n = median_time(pyarrow_floor)
        assert n == rows, n
        line("floor: pyarrow read_csv, 1 thread", rows, size, pt)
        vs = ("pyarrow", pt, W3_PYARROW_RATIO)
    except ImportError:
        print("  (pyarrow not installed: no pyarrow floor; decode_csv uses its numpy path)")
        vs = None
    vs_tf = tensorflow_line("W3", path, rows, size)
    t0, cols = median_time(columns)
    assert len(cols[0]) == rows, len(cols[0])
    rng = np.random.default_rng(0)  # the generated values, to check what is read
    x = rng.standard_normal((500000, 10))[:rows]
    empty = (rng.random((500000, 10)) < 0.02)[:rows]
    target = rng.integers(0, 10, 500000)[:rows]
    want = np.where(empty, 0.0, np.round(x, 6)).astype(np.float32)
    assert all(np.array_equal(cols[j], want[:, j]) for j in range(10)), "W3 values differ"
    assert cols[10].dtype == np.int32 and np.array_equal(cols[10], target), "W3 targets differ"
    line("read_csv_columns (1 thread)", rows, size, t0, ft, TARGETS["W3"], vs, vs_tf)
    t1, cols2 = median_time(columns_threads)
    assert all(np.array_equal(a, b) for a, b in zip(cols, cols2))
    line("read_csv_columns (use_threads=True)", rows, size, t1, ft, TARGETS["W3"], vs, vs_tf)
    t, n = median_time(pipeline)
    assert n == rows, n
    line("TextLineReader + decode_csv (1 thread)", rows, size, t, ft, TARGETS["W3"], vs, vs_tf)
    t2, n = median_time(pipeline_2threads)
    assert n == rows, n
    line("TextLineReader + decode_csv (2 threads)", rows, size, t2, ft, TARGETS["W3"], vs, vs_tf)
    w3_chains(path, defaults, cols, rows, size, t0, vs_tf)


def w3_chains(path: Path, defaults: list, cols: list, rows: int, size: int, bare_secs: float,
              vs_tf: tuple[str, float, float] | None = None) -> None:
    """The Data API exactly as a user writes it, against the bare reader (read_csv_columns)."""

    # Timed: the batches as the user receives (and keeps) them. Joining them into whole columns
    # only serves the check below, so it is not timed (a user of batches never does it).
    def chain():
        ds = TextLineDataset(str(path)).skip(1).batch(1024).map(lambda s: decode_csv(s, defaults))
        return [batch for batch in ds]

    def csv_dataset():
        return [batch for batch in CsvDataset(str(path), defaults, header=True).batch(1024)]

    for label, fn in (("TextLineDataset.skip.batch.map(decode_csv)", chain), ("CsvDataset(header).batch(1024)", csv_dataset)):
        tc, batches = median_time(fn)
        got = [np.concatenate([b[j] for b in batches]) for j in range(11)]
        assert all(np.array_equal(a, b) for a, b in zip(got, cols)), f"{label}: values differ"
        chain_line(label, rows, size, tc, ("read_csv_columns", bare_secs), vs_tf, "W3")


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

    rng = np.random.default_rng(0)  # the generated arrays, to check what is read
    want_x = rng.random((20000, 784), np.float32)[:n]
    want_y = rng.integers(0, 10, (20000, 1))[:n]

    for label, path, comp in (("", plain, ""), ("GZIP ", gz, "GZIP")):
        size = plain.stat().st_size  # MB/s counted on the uncompressed records

        def floor(path=path, comp=comp):
            data = path.read_bytes()
            if comp:
                data = zlib.decompress(data, 31)
            return crc(data)

        def arrays(path=path, comp=comp):
            return read_tfrecord_examples(path, spec, compression_type=comp)

        def pipeline(path=path, comp=comp):
            count = 0
            with TFRecordReader(path, compression_type=comp) as r:
                while recs := r.read_chunk(1024):
                    out = parse_example(recs, spec)
                    count += out["x"].shape[0]
            return count

        workload = "W4-GZIP" if comp else "W4"
        target = TARGETS[workload]
        ft, _ = median_time(floor)
        line(f"floor: {label}read + CRC32C of the file", n, size, ft)
        vs_tf = tensorflow_line(workload, path, n, size)
        t0, out = median_time(arrays)
        assert np.array_equal(out["x"], want_x) and np.array_equal(out["y"], want_y), "W4 arrays differ"
        line(f"read_tfrecord_examples {label}".rstrip(), n, size, t0, ft, target, vs_tf)
        t, count = median_time(pipeline)
        assert count == n, count
        line(f"TFRecordReader {label}+ parse_example", n, size, t, ft, target, vs_tf)

        def chain(path=path, comp=comp):  # the Data API exactly as a user writes it; batches kept, as received
            return [out for out in TFRecordDataset(str(path), comp).batch(1024).map(lambda s: parse_example(s, spec))]

        tc, got = median_time(chain)
        cx, cy = np.concatenate([g["x"] for g in got]), np.concatenate([g["y"] for g in got])  # for the check only
        assert np.array_equal(cx, want_x) and np.array_equal(cy, want_y), "W4 chain values differ"
        chain_line(f"TFRecordDataset {label}.batch.map(parse_example)", n, size, tc,
                   ("read_tfrecord_examples", t0), vs_tf, workload)


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
    vs_tf = tensorflow_line("W5", path, n, size)
    t, count = median_time(pipeline)
    assert count == n
    line("FixedLengthRecordReader + decode_cifar10", n, size, t, ft, TARGETS["W5"], vs_tf)

    want = np.fromfile(path, np.uint8).reshape(-1, 3073)

    def chain():  # the Data API exactly as a user writes it, then label + uint8[3, 32, 32] as views
        count, first, last = 0, None, None
        for r in FixedLengthRecordDataset(str(path), 3073).batch(10000).map(lambda r: decode_raw(r, np.uint8)):
            labels, images = r[:, 0], r[:, 1:].reshape(-1, 3, 32, 32)
            first = (labels, images) if first is None else first
            last = r
            count += len(labels)
        return count, first, last

    tc, (count, first, last) = median_time(chain)
    assert count == n and np.array_equal(first[0], want[: len(first[0]), 0]) and np.array_equal(last, want[-len(last):])
    chain_line("FixedLengthRecordDataset.batch.map(decode_raw)", n, size, tc,
               ("FixedLengthRecordReader + decode_cifar10", t), vs_tf, "W5")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of each workload")
    ap.add_argument("--only", default="W3,W4,W5", help="comma-separated subset of W3,W4,W5")
    ap.add_argument("--tensorflow", metavar="PYTHON",
                    help="a Python with tensorflow-cpu installed: time TensorFlow's pipeline in the same run")
    args = ap.parse_args()
    global TENSORFLOW
    TENSORFLOW = args.tensorflow
    DATA.mkdir(parents=True, exist_ok=True)
    which = {w.strip().upper() for w in args.only.split(",")}
    for name, fn in (("W3", bench_w3), ("W4", bench_w4), ("W5", bench_w5)):
        if name in which:
            fn(args.quick)


if __name__ == "__main__":
    main()
