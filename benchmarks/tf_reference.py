"""TensorFlow's own figure for a reader workload, run by a Python that has TensorFlow installed.

The project never imports TensorFlow. To compare against it in the same run, install
``tensorflow-cpu`` into a scratch virtual environment outside the project and pass its Python to
``benchmarks/readers.py --tensorflow /path/to/venv/bin/python``, which runs this script once per
measurement, each in a fresh process, and prints TensorFlow's rate beside the project's.

The pipelines are the ones a TensorFlow user writes for these files:

* W3: ``TextLineDataset(path).skip(1).batch(1024).map(decode_csv)``
* W4, W4-GZIP: ``TFRecordDataset(path, compression_type).batch(1024).map(parse_example)``
* W5: ``FixedLengthRecordDataset(path, 3073).batch(10000).map(decode_raw)`` split into label and image

What is timed: building the pipeline and one full pass over the file, values reaching numpy (a first
pass: nothing is cached between passes). Before that, the same pipeline is built and run for one
batch (``--no-warmup`` skips this), so the figure does not carry TensorFlow's once-per-process
start-up: the first ``tf.data`` pipeline and the first traced ``map`` function of a process cost
about 0.05-0.1 s, which is half of W4's whole pass on a 2-core machine and would flatter every ratio
against TensorFlow. The file itself is in the page cache either way (the caller has just read it).

Usage: PYTHON_WITH_TF benchmarks/tf_reference.py [--no-warmup] W4-GZIP benchmarks/data/w4.tfrecord.gz
Prints one JSON object: {"records": n, "seconds": s, "version": tf.__version__, "warmup": bool}.
"""

from __future__ import annotations

import argparse
import json
import os
import time

WORKLOADS = ("W3", "W4", "W4-GZIP", "W5")


def build(tf, workload: str, path: str):
    """The user's pipeline for ``workload`` and the index of a component that has one row per record."""
    if workload == "W3":
        defaults = [[0.0]] * 10 + [[0]]
        ds = tf.data.TextLineDataset(path).skip(1).batch(1024).map(lambda s: tf.io.decode_csv(s, defaults))
        return ds, 0
    if workload in ("W4", "W4-GZIP"):
        spec = {"x": tf.io.FixedLenFeature([784], tf.float32), "y": tf.io.FixedLenFeature([1], tf.int64)}
        comp = "GZIP" if workload == "W4-GZIP" else ""
        ds = tf.data.TFRecordDataset(path, compression_type=comp).batch(1024)
        return ds.map(lambda s: tf.io.parse_example(s, spec)), "x"
    if workload == "W5":
        def split(raw):
            rec = tf.io.decode_raw(raw, tf.uint8)
            return rec[:, 0], tf.reshape(rec[:, 1:], [-1, 3, 32, 32])

        return tf.data.FixedLengthRecordDataset(path, 3073).batch(10000).map(split), 0
    raise SystemExit(f"unknown workload {workload!r}: expected one of {', '.join(WORKLOADS)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=WORKLOADS)
    ap.add_argument("path")
    ap.add_argument("--no-warmup", action="store_true",
                    help="time the process's first pipeline, TensorFlow's start-up included")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if not args.no_warmup:
        ds, _ = build(tf, args.workload, args.path)
        for batch in ds.take(1):
            batch = tf.nest.map_structure(lambda t: t.numpy(), batch)
    start = time.perf_counter()
    ds, first = build(tf, args.workload, args.path)
    n = 0
    for batch in ds:
        n += int(batch[first].numpy().shape[0])  # .numpy(): the values reach numpy, as ours do
    print(json.dumps({"records": n, "seconds": time.perf_counter() - start, "version": tf.__version__,
                      "warmup": not args.no_warmup}))


if __name__ == "__main__":
    main()
