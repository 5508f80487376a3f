"""`make demo`: the whole system on one machine, with no configuration.

1. An embedded local cluster like the seed's: 2 ps tasks and 3 worker tasks, each a queue server
   in this process, on free loopback ports.
2. The UCI handwritten digits shipped in examples/data/ (1,797 8x8 images; CC BY 4.0) split into a
   training and a test set; the training set written as 2 CSV shards and 2 TFRecord shards.
3. Two loader clients, one per format, reading the shards for several epochs into one shared
   RandomShuffleQueue on a worker task, with backpressure; the queue is closed when both are done.
4. Three trainers running synchronous data-parallel SGD (SyncReplicasOptimizer-style: 3 replicas,
   2 gradients aggregated per step), with the MLP's parameters sharded round-robin over the ps
   tasks. They stop when the queue is closed and drained.
5. The chief's final parameters scored on the held-out test set.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import queueserver as qs
from compute.models import accuracy, parse_model
from compute.trainer import TrainConfig, train_async
from pipeline.loader import CsvFormat, TFRecordFormat, load_async
from pipeline.tfrecord import FixedLenFeature, TFRecordWriter, encode_example

DATA = Path(__file__).resolve().parent / "data" / "digits.csv.gz"
PIXELS, CLASSES = 64, 10
EPOCHS = 30          # passes each loader makes over its shards
MODEL = f"mlp:{PIXELS},64,{CLASSES}"
QUEUE = "shared_instance_q"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(DATA, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return table[:, :PIXELS] / 16.0, table[:, PIXELS].astype(np.int64)


def write_shards(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Half of the training set as two CSV shards, the other half as two TFRecord shards."""
    parts = np.array_split(np.arange(len(y)), 4)
    for k, rows in enumerate(parts[:2]):
        header = ",".join([f"p{i}" for i in range(PIXELS)] + ["label"])
        lines = [",".join(f"{v:.4f}" for v in x[r]) + f",{y[r]}" for r in rows]
        (folder / f"digits-{k}.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    for k, rows in enumerate(parts[2:]):
        with TFRecordWriter(str(folder / f"digits-{k}.tfrecord")) as w:
            for r in rows:
                w.write(encode_example({"x": x[r], "y": np.array([y[r]], np.int64)}))


async def run(cluster: dict, folder: Path, x_test: np.ndarray, y_test: np.ndarray) -> None:
    loader_target = cluster["worker"][0]
    async with qs.connect_async(loader_target, client_name="demo") as c:
        with c.device("/job:worker/task:0"):
            q = await c.random_shuffle_queue(QUEUE, capacity=4_000, min_after_dequeue=1_000,
                                             dtypes=[np.float32, np.int64], shapes=[[PIXELS], []], seed=0)
        print(f"queue {QUEUE} on {q.device}; loading {EPOCHS} epochs of CSV and TFRecord shards", flush=True)

        csv = CsvFormat([[0.0]] * PIXELS + [np.array([0], np.int64)], skip_header_lines=1)
        tfrecord = TFRecordFormat({"x": FixedLenFeature([PIXELS], np.float32), "y": FixedLenFeature([], np.int64)})

        async def loaders() -> None:
            results = await asyncio.gather(
                load_async(loader_target, QUEUE, csv, str(folder / "*.csv"), readers=2, batch=128,
                           num_epochs=EPOCHS, close=False),
                load_async(loader_target, QUEUE, tfrecord, str(folder / "*.tfrecord"), readers=2, batch=128,
                           num_epochs=EPOCHS, close=False))
            await q.close()  # both loaders are done: the trainers drain the queue, then stop
            print(f"loaders done: {sum(r.records for r in results):,} records", flush=True)

        configs = [TrainConfig(cluster=cluster, job="worker", task=i, queue=QUEUE, model=MODEL, mode="sync",
                               replicas=3, aggregate=2, batch=32, lr=0.3, progress=None if i == 0 else False, seed=0,
                               scope="digits") for i in range(3)]
        start = time.perf_counter()
        _, *results = await asyncio.gather(loaders(), *(train_async(cfg) for cfg in configs))
        chief = results[0]
        print(f"trained {chief.global_step} synchronous steps in {time.perf_counter() - start:.1f} s; "
              f"samples per trainer: {[r.samples for r in results]}", flush=True)
        model = parse_model(MODEL)
        logits = model.forward(chief.params, x_test)
        print(f"held-out test accuracy: {accuracy(logits, y_test):.3f} on {len(y_test)} digits", flush=True)
        status = await c.status(cluster=True)
        for task in status["cluster"]:
            names = [v["name"] for v in task.get("variables", [])]
            print(f"  {task['task']}: {len(names)} variable(s) {names[:4]}{'...' if len(names) > 4 else ''}")


def main() -> int:
    x, y = load_digits()
    order = np.random.default_rng(0).permutation(len(y))
    test, train = order[:360], order[360:]
    ports = free_ports(5)
    cluster = {"ps": [f"127.0.0.1:{p}" for p in ports[:2]], "worker": [f"127.0.0.1:{p}" for p in ports[2:]]}
    servers = [qs.Server(cluster, job_name=job, task_index=i)
               for job in ("ps", "worker") for i in range(len(cluster[job]))]
    print(f"local cluster: {cluster}", flush=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            write_shards(Path(tmp), x[train], y[train])
            asyncio.run(run(cluster, Path(tmp), x[test], y[test]))
    finally:
        for s in servers:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
