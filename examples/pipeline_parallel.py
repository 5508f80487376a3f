"""Model parallelism (the seed's section 3.3): the digits MLP split into 3 pipeline stages.

1. An embedded local server; the UCI digits shipped in examples/data/ (CC BY 4.0) split into a
   training and a test set; 12 shuffled epochs of the training set in one queue, closed.
2. The MLP 64-64-64-10's three dense layers, one per stage; each stage its own connection (as it
   would be its own process: ``python -m compute train --stages 3 --stage i``). Stage 0 reads
   minibatches of 64, cuts each into 4 micro-batches and sends their activations to stage 1, which
   sends its own to stage 2; the gradients come back the same way (GPipe's schedule).
3. The whole model, read back from the server, scored on the held-out test set; each stage's idle
   fraction beside GPipe's bubble.

    python examples/pipeline_parallel.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import queueserver as qs  # noqa: E402
from compute.models import accuracy, parse_model  # noqa: E402
from compute.pipeline_parallel import PipelineConfig, format_bubble_report, train_pipeline  # noqa: E402
from examples.demo import CLASSES, PIXELS, load_digits  # noqa: E402

EPOCHS = 12
MODEL = f"mlp:{PIXELS},64,64,{CLASSES}"


def main() -> int:
    x, y = load_digits()
    order = np.random.default_rng(0).permutation(len(y))
    test, train = order[:300], order[300:]
    rng = np.random.default_rng(1)
    epochs = np.concatenate([rng.permutation(train) for _ in range(EPOCHS)])
    server = qs.Server.create_local_server()
    try:
        with qs.connect(server.target) as c:
            q = c.fifo_queue("digits", len(epochs), [np.float32, np.int64], [[PIXELS], []])
            q.enqueue_many((x[epochs], y[epochs]))
            q.close()
        t0 = time.perf_counter()
        results = train_pipeline(PipelineConfig(target=server.target, queue="digits", model=MODEL, stages=3,
                                                micro_batches=4, batch=64, lr=0.1))
        seconds = time.perf_counter() - t0
    finally:
        server.stop()
    chief = results[0]
    logits = parse_model(MODEL).forward(chief.model_params, x[test])
    print(f"3 stages trained {chief.global_step} steps ({chief.samples:,} samples) in {seconds:.1f} s;"
          f" final loss {chief.final_loss:.3f}")
    print(format_bubble_report(results))
    print(f"held-out test accuracy: {accuracy(logits, y[test]):.3f} on {len(test)} digits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
