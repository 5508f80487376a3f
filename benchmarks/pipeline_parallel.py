"""Pipeline-parallel training (model parallelism): K stage processes against one process.

The same model, data and minibatches, each configuration fed from its own queue on one
``queueserver serve`` process:

* one process, no pipeline: ``MLP.loss_and_grads`` and SGD on the minibatches already in memory
  (the floor: no queue, no parameter traffic);
* one stage (``--stages 1``): the pipeline's own code in one process (input from the queue, the
  parameters written through to the server every step);
* K = 2 and 4 stages as processes (``python -m compute train --stages K --stage i``), M micro-batches.

Each stage reports its idle fraction (1 - compute time / wall time of its steps): GPipe's bubble
plus the messages' and the parameters' traffic; printed beside the theoretical bubble
``(K - 1) / (M + K - 1)``. Every process computes on one thread (``OMP_NUM_THREADS=1``), so K stages
can use up to K cores: on a machine with fewer cores than stages, the stages share them.

    python benchmarks/pipeline_parallel.py [--model mlp:1024,1024,1024,1024,1024,10] [--batch 256]
                                           [--micro-batches 8] [--steps 20] [--stages 2 4]
                                           [--device cpu|gpu:0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from _common import REPO, ServerProc, machine_line

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def make_data(features: int, classes: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, n)
    centers = rng.standard_normal((classes, features)).astype(np.float32)
    return centers[y] + rng.standard_normal((n, features), dtype=np.float32), y.astype(np.int64)


def fill(target: str, name: str, x: np.ndarray, y: np.ndarray) -> None:
    import queueserver as qs

    with qs.connect(target) as c:
        q = c.fifo_queue(name, len(x), [np.float32, np.int64], [[x.shape[1]], []])
        for lo in range(0, len(x), 4096):
            q.enqueue_many((x[lo:lo + 4096], y[lo:lo + 4096]))
        q.close()


def one_process(args: argparse.Namespace) -> dict:
    """The floor, run in a child process on one thread: whole minibatches from memory."""
    from compute.backend import get_backend
    from compute.models import parse_model
    from compute.optim import SGD

    model = parse_model(args.model)
    backend = get_backend(args.device)
    x, y = make_data(model.sizes[0], model.sizes[-1], args.steps * args.batch)
    params = {k: backend.to_device(v) for k, v in model.init_params(0).items()}
    xs = [backend.to_device(x[s * args.batch:(s + 1) * args.batch]) for s in range(args.steps)]
    ys = [backend.to_device(y[s * args.batch:(s + 1) * args.batch]) for s in range(args.steps)]
    opt = SGD(0.05)
    backend.synchronize()
    t0 = time.perf_counter()
    for s in range(args.steps):
        _, grads = model.loss_and_grads(params, xs[s], ys[s])
        opt.apply(params, grads)
    backend.synchronize()
    seconds = time.perf_counter() - t0
    return {"samples": args.steps * args.batch, "seconds": seconds}


def run_stages(args: argparse.Namespace, target: str, queue: str, stages: int, micro: int) -> list[dict]:
    """K stage processes through the CLI, fed from ``queue``; their summaries, by stage."""
    cmd = [sys.executable, "-m", "compute", "train", "--target", target, "--queue", queue, "--model", args.model,
           "--batch", str(args.batch), "--lr", "0.05", "--stages", str(stages), "--micro-batches", str(micro),
           "--scope", f"bench{stages}x{micro}", "--steps", str(args.steps), "--device", args.device,
           "--stage-timeout", "300"]
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([*cmd, "--stage", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO, env=env) for i in range(stages)]
    summaries = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"a stage failed: {err}")
        summaries.append(next(json.loads(line) for line in out.splitlines() if '"event": "done"' in line))
    return summaries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mlp:1024,1024,1024,1024,1024,10")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--micro-batches", type=int, nargs="+", default=[8])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--stages", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration (the median is printed)")
    ap.add_argument("--one-process", action="store_true", help=argparse.SUPPRESS)  # the floor's child process
    args = ap.parse_args()
    if args.one_process:
        print(json.dumps(one_process(args)))
        return

    from compute.models import parse_model
    from compute.pipeline_parallel import split_layers, theoretical_bubble

    model = parse_model(args.model)
    print(f"# pipeline-parallel training, {args.model}, batch {args.batch}, {args.steps} steps, {args.device}"
          f" ({machine_line()}, one compute thread per process); each configuration run {args.repeat} times,"
          " each run right after the floor, medians")

    def floor_rate() -> float:
        child = subprocess.run([sys.executable, __file__, "--one-process", "--model", args.model, "--batch",
                                str(args.batch), "--steps", str(args.steps), "--device", args.device],
                               capture_output=True, text=True, check=True, env={**os.environ, **ONE_THREAD})
        floor = json.loads(child.stdout.splitlines()[-1])
        return floor["samples"] / floor["seconds"]

    server = ServerProc()
    try:
        x, y = make_data(model.sizes[0], model.sizes[-1], args.steps * args.batch)
        configs = [(1, args.micro_batches[0])] + [(k, m) for k in args.stages for m in args.micro_batches]
        for stages, micro in configs:
            runs = []
            for r in range(args.repeat):
                floor = floor_rate()  # the machine's pace drifts: each run is set against its own floor
                queue = f"pp_bench_{stages}x{micro}_{r}"
                fill(server.target, queue, x, y)
                summaries = run_stages(args, server.target, queue, stages, micro)
                rate = summaries[0]["samples"] / max(s["seconds"] for s in summaries)
                runs.append((rate / floor, rate, floor, summaries))
            runs.sort(key=lambda run: run[0])
            ratio, rate, floor, summaries = runs[len(runs) // 2]
            idle = ", ".join(f"{s['idle_fraction']:.0%}" for s in summaries)
            print(f"K={stages} M={micro} layers {split_layers(model.sizes, stages)}: {rate:,.0f} samples/s,"
                  f" {ratio:.2f}x one process ({floor:,.0f} samples/s; ratios {', '.join(f'{r[0]:.2f}' for r in runs)});"
                  f" idle per stage {idle}; theoretical bubble {theoretical_bubble(stages, micro):.0%}", flush=True)
            for s in summaries:  # where each stage's time went
                t = s["seconds"]
                print(f"    stage {s['stage']}: computing {s['busy_s'] / t:.0%}, waiting for other stages"
                      f"{' or input' if s['stage'] == 0 else ''} {s['wait_s'] / t:.0%}, waiting for its"
                      f" parameters to reach the ps {s['publish_s'] / t:.0%}, the rest (messages, bookkeeping)"
                      f" {1 - (s['busy_s'] + s['wait_s'] + s['publish_s']) / t:.0%}", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
