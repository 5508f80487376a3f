"""Data API benchmarks W6 and W7 (shared/WORKLOADS.md), each beside a same-run numpy floor.

    .venv/bin/python benchmarks/data_api.py [--repeats 3]

W6  from_tensor_slices(arange(1_000_000)).shuffle(10_000, seed=0).batch(256).map(lambda x: x * 2),
    iterate all; floor: a numpy permutation, then one gather and one multiply per batch.
W7  from_tensor_slices((X float32[100000, 784], y int32[100000])).batch(256).prefetch(2), first
    pass including construction; floors: the same batches sliced from the arrays in a loop (views,
    which is also what the pipeline yields: read-only views, no copy), and sliced + copied.

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
