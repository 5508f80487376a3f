"""Data API benchmarks W6 and W7 (shared/WORKLOADS.md), each beside a same-run numpy floor.

    .venv/bin/python benchmarks/data_api.py [--repeats 3]

W6  from_tensor_slices(arange(1_000_000)).shuffle(10_000, seed=0).batch(256).map(lambda x: x * 2),
    iterate all; floor: a numpy permutation, then one gather and one multiply per batch.
W7  from_tensor_slices((X float32[100000, 784], y int32[100000])).batch(256).prefetch(2), first
    pass including construction; floors: the same batches sliced from the arrays in a loop (views,
    which is also what the pipeline yields: read-only views, no copy), and sliced + copied.

W3, W4, W5 (``--readers``, on by default): the file chains exactly as a user writes them, each beside
    a floor for that format in the same run (issue 13: chain >= 0.8x). The project has no reader
    of its own outside the user's path any more (read_csv_columns and read_tfrecord_examples run
    on the Data API's readers), so the floors are what is left when the project is taken away:
    TextLineDataset(p).skip(1).batch(1024).map(lambda s: decode_csv(s, defaults)) vs pyarrow's own
    CSV reader (pyarrow.csv.read_csv, 1 thread, types inferred, no checks);
    TFRecordDataset(p[, "GZIP"]).batch(1024).map(lambda s: parse_example(s, spec)) vs reading the
    file (inflating it with the same inflater, for GZIP) and one CRC32C over all of it;
    FixedLengthRecordDataset(p, 3073).batch(10000).map(lambda r: decode_raw(r, uint8)) vs
    FixedLengthRecordReader.read_chunk(10000) + decode_cifar10.

Figures are medians of ``--repeats`` runs; absolute numbers drift between machines, the ratio to
the floor measured in the same run is the comparable figure. TensorFlow 2.21 reference on this
kind of machine: W6 0.76M elements/s, W7 79k instances/s (first pass with construction).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.data import Dataset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readers  # noqa: E402  (benchmarks/readers.py: the workloads' data and the bare readers)

W6_N, W6_BUFFER, W6_BATCH = 1_000_000, 10_000, 256
W7_N, W7_BATCH = 100_000, 256


def w6_pipeline() -> float:
    t0 = time.perf_counter()
    ds = Dataset.from_tensor_slices(np.arange(W6_N)).shuffle(W6_BUFFER, seed=0).batch(W6_BATCH).map(lambda x: x * 2)
    n = 0
    for b in ds:
        n += len(b)
    assert n == W6_N
    return time.perf_counter() - t0


def w6_floor() -> float:
    t0 = time.perf_counter()
    data = np.arange(W6_N)
    perm = np.random.default_rng(0).permutation(W6_N)
    n = 0
    for i in range(0, W6_N, W6_BATCH):
        b = data[perm[i : i + W6_BATCH]] * 2
        n += len(b)
    assert n == W6_N
    return time.perf_counter() - t0


def w7_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((W7_N, 784), dtype=np.float32)
    y = rng.integers(0, 10, W7_N).astype(np.int32)
    return x, y


def w7_pipeline(x: np.ndarray, y: np.ndarray) -> float:
    t0 = time.perf_counter()
    ds = Dataset.from_tensor_slices((x, y)).batch(W7_BATCH).prefetch(2)
    n = 0
    for _bx, by in ds:
        n += len(by)
    assert n == W7_N
    return time.perf_counter() - t0


def w7_floor(x: np.ndarray, y: np.ndarray) -> float:
    t0 = time.perf_counter()
    n = 0
    for i in range(0, W7_N, W7_BATCH):
        _bx, by = x[i : i + W7_BATCH], y[i : i + W7_BATCH]
        n += len(by)
    assert n == W7_N
    return time.perf_counter() - t0


def w7_floor_copy(x: np.ndarray, y: np.ndarray) -> float:
    t0 = time.perf_counter()
    n = 0
    for i in range(0, W7_N, W7_BATCH):
        _bx, by = x[i : i + W7_BATCH].copy(), y[i : i + W7_BATCH].copy()
        n += len(by)
    assert n == W7_N
    return time.perf_counter() - t0


def median_time(fn, repeats: int, *args) -> float:
    return statistics.median(fn(*args) for _ in range(repeats))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def w3_floor(path: Path) -> int:
    """pyarrow's own CSV reader, one thread (types inferred, no checks): W3's floor."""
    import pyarrow.csv as pacsv

    return pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False)).num_rows


def w4_floor(path: Path, comp: str) -> int:
    """Read the file (inflate it with the project's inflater), one CRC32C over it: W4's floor."""
    from google_crc32c import value as crc

    from pipeline import inflate

    data = path.read_bytes()
    if comp:
        data = inflate.decompressobj(inflate.wbits_for(comp)).decompress(data)
    return crc(data)


def _workload_files() -> tuple[Path, Path, Path, Path]:
    """W3, W4, W4 GZIP and W5's files, generated (benchmarks/readers.py) if missing."""
    data = readers.DATA
    data.mkdir(parents=True, exist_ok=True)
    w3, w4, w4gz, w5 = data / "w3.csv", data / "w4.tfrecord", data / "w4.tfrecord.gz", data / "w5_cifar.bin"
    if not w3.exists():
        readers.gen_w3(w3, 500_000)
    if not (w4.exists() and w4gz.exists()):
        readers.gen_w4(w4, w4gz, 20_000)
    if not w5.exists():
        readers.gen_w5(w5, 50_000)
    return w3, w4, w4gz, w5


def reader_chains(repeats: int) -> list[tuple[str, int, float, float, str]]:
    """(name, records, chain seconds, floor seconds, floor) for W3, W4, W4 GZIP, W5."""
    from pipeline.csv import decode_csv, read_csv_columns
    from pipeline.data import CsvDataset, FixedLengthRecordDataset, TextLineDataset, TFRecordDataset
    from pipeline.fixed_length import FixedLengthRecordReader, decode_cifar10
    from pipeline.raw import decode_raw
    from pipeline.tfrecord import FixedLenFeature, parse_example

    w3, w4, w4gz, w5 = _workload_files()
    defaults = [[0.0]] * 10 + [[0]]
    spec = {"x": FixedLenFeature([784], np.float32), "y": FixedLenFeature([1], np.int64)}

    def w3_chain():
        for _ in TextLineDataset(str(w3)).skip(1).batch(1024).map(lambda s: decode_csv(s, defaults)):
            pass

    def w3_csv_dataset():
        for _ in CsvDataset(str(w3), defaults, header=True).batch(1024):
            pass

    def w4_chain(path, comp):
        for _ in TFRecordDataset(str(path), comp).batch(1024).map(lambda s: parse_example(s, spec)):
            pass

    def w5_chain():
        for r in FixedLengthRecordDataset(str(w5), 3073).batch(10000).map(lambda r: decode_raw(r, np.uint8)):
            r[:, 0], r[:, 1:].reshape(-1, 3, 32, 32)

    def w5_bare():
        with FixedLengthRecordReader(w5, record_bytes=3073) as r:
            while len(chunk := r.read_chunk(10000)):
                decode_cifar10(chunk)

    cases = [
        ("W3 TextLineDataset..map(decode_csv)", 500_000, w3_chain, lambda: w3_floor(w3), "pyarrow.csv.read_csv, 1 thread"),
        ("W3 read_csv_columns (the same path, whole file)", 500_000,
         lambda: read_csv_columns(w3, defaults, skip_header_lines=1), lambda: w3_floor(w3), "pyarrow.csv.read_csv, 1 thread"),
        ("W3 CsvDataset(header=True).batch(1024)", 500_000, w3_csv_dataset, lambda: w3_floor(w3),
         "pyarrow.csv.read_csv, 1 thread"),
        ("W4 TFRecordDataset..map(parse_example)", 20_000, lambda: w4_chain(w4, ""),
         lambda: w4_floor(w4, ""), "read + CRC32C of the file"),
        ("W4 GZIP, the same", 20_000, lambda: w4_chain(w4gz, "GZIP"),
         lambda: w4_floor(w4gz, "GZIP"), "read + inflate + CRC32C"),
        ("W5 FixedLengthRecordDataset..map(decode_raw)", 50_000, w5_chain, w5_bare,
         "FixedLengthRecordReader + decode_cifar10"),
    ]
    out = []
    for name, n, chain, bare, bare_name in cases:
        chain_t, bare_t = [], []
        for _ in range(repeats):  # alternated, so both see the same machine
            chain_t.append(_timed(chain))
            bare_t.append(_timed(bare))
        out.append((name, n, statistics.median(chain_t), statistics.median(bare_t), bare_name))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-readers", dest="readers", action="store_false",
                        help="skip the W3/W4/W5 file chains")
    args = parser.parse_args(argv)
    r = args.repeats

    x, y = w7_data()
    rows = []
    t6, f6 = median_time(w6_pipeline, r), median_time(w6_floor, r)
    rows.append(("W6 data-api (elements/s)", W6_N / t6, W6_N / f6, "numpy permutation + gather*2 per batch", 1.5e6))
    t7, f7, c7 = median_time(w7_pipeline, r, x, y), median_time(w7_floor, r, x, y), median_time(w7_floor_copy, r, x, y)
    rows.append(("W7 data-api-tensors (instances/s)", W7_N / t7, W7_N / f7, "numpy slice views per batch", 2.2e6))
    rows.append(("W7 vs copying floor", W7_N / t7, W7_N / c7, "numpy slice + copy per batch", 2.2e6))

    print(f"{'workload':38} {'pipeline':>14} {'floor':>14} {'ratio':>7}  {'target':>8}  floor is")
    for name, fig, floor, what, target in rows:
        ok = "ok" if fig >= target else "BELOW"
        print(f"{name:38} {fig:14,.0f} {floor:14,.0f} {fig / floor:7.2f}  {target:8.1e} {ok:5}  {what}")
    print("TensorFlow 2.21 reference (WORKLOADS.md): W6 0.76M elements/s, W7 79k instances/s first pass")
    if args.readers:
        print(f"\n{'file chain (records/s)':46} {'chain':>12} {'floor':>12} {'ratio':>6}  target  floor")
        for name, n, ct, bt, bare_name in reader_chains(r):
            ok = "ok" if bt / ct >= 0.8 else "BELOW"
            print(f"{name:46} {n / ct:12,.0f} {n / bt:12,.0f} {bt / ct:6.2f}  0.8 {ok:5} {bare_name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
