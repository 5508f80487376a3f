"""TensorFlow's own figure for a reader workload, run by a Python that has TensorFlow installed.

The project never imports TensorFlow. To compare against it in the same run, install
``tensorflow-cpu`` into a scratch virtual environment outside the project and pass its Python to
``benchmarks/readers.py --tensorflow /path/to/venv/bin/python``, which runs this script once per
measurement, each in a fresh process (a first pass, as WORKLOADS.md's TensorFlow figures are), and
prints TensorFlow's rate beside the project's.

The pipelines are the ones a TensorFlow user writes for these files:

* W3: ``TextLineDataset(path).skip(1).batch(1024).map(decode_csv)``
* W4, W4-GZIP: ``TFRecordDataset(path, compression_type).batch(1024).map(parse_example)``
* W5: ``FixedLengthRecordDataset(path, 3073).batch(10000).map(decode_raw)`` split into label and image

Usage: PYTHON_WITH_TF benchmarks/tf_reference.py W4-GZIP benchmarks/data/w4.tfrecord.gz
Prints one JSON object: {"records": n, "seconds": s, "version": tf.__version__}.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    workload, path = sys.argv[1], sys.argv[2]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    start = time.perf_counter()
    if workload == "W3":
        defaults = [[0.0]] * 10 + [[0]]
        ds = tf.data.TextLineDataset(path).skip(1).batch(1024).map(lambda s: tf.io.decode_csv(s, defaults))
        first = 0
    elif workload in ("W4", "W4-GZIP"):
        spec = {"x": tf.io.FixedLenFeature([784], tf.float32), "y": tf.io.FixedLenFeature([1], tf.int64)}
        comp = "GZIP" if workload == "W4-GZIP" else ""
        ds = tf.data.TFRecordDataset(path, compression_type=comp).batch(1024)
        ds = ds.map(lambda s: tf.io.parse_example(s, spec))
        first = "x"
    elif workload == "W5":
        def split(raw):
            rec = tf.io.decode_raw(raw, tf.uint8)
            return rec[:, 0], tf.reshape(rec[:, 1:], [-1, 3, 32, 32])

        ds = tf.data.FixedLengthRecordDataset(path, 3073).batch(10000).map(split)
        first = 0
    else:
        raise SystemExit(f"unknown workload {workload!r}: expected W3, W4, W4-GZIP or W5")
    n = 0
    for batch in ds:
        n += int(batch[first].numpy().shape[0])  # .numpy(): the values reach numpy, as ours do
    print(json.dumps({"records": n, "seconds": time.perf_counter() - start, "version": tf.__version__}))


if __name__ == "__main__":
    main()
