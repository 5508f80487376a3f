"""The trainer client's command line.

    python -m compute train --target 127.0.0.1:2222 --queue shared_instance_q --model mlp:784,1024,1024,10 \\
        --sync --replicas 3 --aggregate 2 --task 0 --device gpu:0 --gpu-memory-fraction 0.4

    python -m compute train --cluster cluster.json --job worker --task 1 --async --staleness-policy drop:4

The run's summary is printed on stdout as one JSON line (with the step time and its split:
``step_s``, ``wait_data_s``, ``pull_params_s``, ``compute_s``, ``push_grads_s``, seconds per step);
the progress bar goes to stderr. Every ``--report-every`` seconds the trainer reports the same
figures to the server, whose status page shows where each trainer's time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any, Sequence

from queueserver._version import __version__
import queueserver as qs
from compute.backend import TRANSFER_DTYPES, DevicePlacementError
from compute import pipeline_parallel
from compute.trainer import TrainConfig, Trainer
from queueserver.cli_tools import HelpFormatter, add_logging_options, logging_parents, resolve_logging
from queueserver.resolvers import trainer_args_from_tf_config

__all__ = ["main", "build_parser", "config_from_args"]

_EXAMPLES = """\
examples:
  python -m compute train --target 127.0.0.1:2222 --queue shared_instance_q --model mlp:784,256,10 --async
  python -m compute train --cluster cluster.json --job worker --task 0 --queue shared_instance_q \\
      --model mlp:784,1024,1024,10 --sync --replicas 3 --aggregate 2 --checkpoint-dir ckpt
  python -m compute train --target 127.0.0.1:2222 --local --steps 100 --print-every 10 --device gpu:0
task 0 is the chief: it initialises the model (or restores --checkpoint-dir) and checkpoints; one
chief per model (--scope) runs at a time. exit status: 0 done; 1 a runtime error; 2 bad usage or
configuration; 130 Ctrl-C; 143 SIGTERM."""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m compute`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m compute", description="Trainer clients for the queue server.",
                                     formatter_class=HelpFormatter, epilog=_EXAMPLES)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_logging_options(parser, None, "WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model on minibatches from a shared queue",
                       parents=logging_parents("WARNING"), formatter_class=HelpFormatter, epilog=_EXAMPLES,
                       description="Train a model on minibatches dequeued from a shared queue, with its parameters"
                                   " on the server (or the cluster's ps tasks). Prints one JSON line at the end;"
                                   " the progress bar goes to stderr. Ctrl-C and SIGTERM stop it cleanly: the"
                                   " batches not trained go back to the queue.")
    where = t.add_argument_group("where")
    where.add_argument("--target", help="server address host:port (default: this task's address in --cluster)")
    where.add_argument("--cluster", help="cluster spec JSON file")
    where.add_argument("--job", default="worker", help="this trainer's job (default worker)")
    where.add_argument("--task", type=int, default=0, help="this trainer's task index; 0 is the chief")
    where.add_argument("--token", default=None, help="the server's shared secret (default: $QUEUESERVER_TOKEN)")
    where.add_argument("--queue", default="shared_instance_q", help="input queue name")
    where.add_argument("--container", default="", help="resource container of the model's variables")
    where.add_argument("--scope", help="name prefix of the model's variables (default: the model's name)")
    where.add_argument("--ps-tasks", type=int, help="spread variables over this many ps tasks (default: the cluster's)")
    m = t.add_argument_group("model and optimizer")
    m.add_argument("--model", default="mlp:784,1024,1024,10", help="mlp:784,1024,10 or softmax:784,10")
    m.add_argument("--batch", type=int, default=256, help="minibatch size (default 256)")
    m.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    m.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "nesterov"], help="update rule")
    m.add_argument("--momentum", type=float, default=0.9, help="momentum coefficient (momentum, nesterov)")
    m.add_argument("--seed", type=int, default=0, help="parameter initialisation seed")
    m.add_argument("--steps", type=int, help="stop at this global step, counted over every run of the model (a"
                                             " rerun continues from where the last one stopped; default: when the"
                                             " queue is closed and drained)")
    mode = t.add_argument_group("replication")
    excl = mode.add_mutually_exclusive_group()
    excl.add_argument("--sync", dest="mode", action="store_const", const="sync", help="synchronous updates")
    excl.add_argument("--async", dest="mode", action="store_const", const="async", help="asynchronous updates (default)")
    excl.add_argument("--local", dest="mode", action="store_const", const="local",
                      help="one process, parameters on its own device")
    mode.add_argument("--replicas", type=int, default=1, help="total number of replicas")
    mode.add_argument("--aggregate", type=int, help="gradients averaged per step in sync mode (default: all)")
    mode.add_argument("--staleness-policy", default="none", help="async: none, drop:K or scale")
    mode.add_argument("--transfer-dtype", default="float32", choices=TRANSFER_DTYPES,
                      help="dtype of parameter traffic")
    # Accepted so that old command lines still parse, and ignored: the chief waits for gradients
    # racing the stop flag, with no timeout. Never shown in --help.
    mode.add_argument("--sync-timeout", type=float, default=5.0, help=argparse.SUPPRESS)
    dev = t.add_argument_group("device")
    dev.add_argument("--device", default="cpu", help="cpu or gpu:N")
    dev.add_argument("--soft-placement", action="store_true", help="fall back to the CPU when the GPU is missing")
    dev.add_argument("--gpu-memory-fraction", type=float, help="cap the GPU memory pool at this fraction")
    out = t.add_argument_group("output")
    out.add_argument("--checkpoint-dir", help="save and restore parameters here")
    out.add_argument("--checkpoint-every", type=int, default=100, help="global steps between checkpoints")
    out.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show the bar")
    out.add_argument("--no-progress", dest="progress", action="store_false", help="never show the bar")
    # --report-every is seconds in every CLI of the project (the loader's too): how often the
    # figures go to the server. Step lines on stdout are --print-every; --report-every-s is its
    # old spelling, still accepted.
    out.add_argument("--report-every-s", dest="report_every_s", type=float, default=2.0, help=argparse.SUPPRESS)
    out.add_argument("--report-every", dest="report_every_s", type=float, default=2.0,
                     metavar="S", help="seconds between reports of samples/s and the step's split (waiting for"
                                       " data, pulling parameters, computing, pushing gradients) to the server's"
                                       " status page (default 2; 0: never)")
    out.add_argument("--print-every", dest="report_every", type=int, default=0, metavar="N",
                     help="print a JSON line on stdout every N local steps (default 0: never)")
    out.add_argument("--dequeue-timeout", type=float, help="seconds to wait for a minibatch")
    pipeline_parallel.add_arguments(t)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A :class:`TrainConfig` from parsed ``train`` arguments."""
    return TrainConfig(
        target=args.target, cluster=args.cluster, job=args.job, task=args.task, queue=args.queue,
        model=args.model, mode=args.mode or "async", replicas=args.replicas, aggregate=args.aggregate,
        device=args.device, soft_placement=args.soft_placement, gpu_memory_fraction=args.gpu_memory_fraction,
        batch=args.batch, lr=args.lr, optimizer=args.optimizer, momentum=args.momentum, steps=args.steps,
        checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every,
        transfer_dtype=args.transfer_dtype, staleness_policy=args.staleness_policy, seed=args.seed,
        scope=args.scope, container=args.container, ps_tasks=args.ps_tasks, progress=args.progress,
        report_every=args.report_every, token=args.token,
        report_every_s=args.report_every_s, dequeue_timeout=args.dequeue_timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad usage or configuration, 1 runtime error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_logging(args, "WARNING")
    trainer_args_from_tf_config(args, "python -m compute train")  # under a TFJob, no --cluster/--target needed
    if args.stages is not None:  # model parallelism: this process is one stage of a pipeline
        return pipeline_parallel.run_from_args(args)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    trainer: Trainer | None = None
    terminated = []

    def on_sigterm(signum: int, frame: object) -> None:  # stop as Ctrl-C does: batches go back, say what was done
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        trainer = Trainer(config)
        result = asyncio.run(trainer.run())
    except (DevicePlacementError, ValueError) as exc:
        print(f"compute train: {exc}", file=sys.stderr)
        return 2
    except qs.QueueServerError as exc:  # the same prefix as `queueserver` and `python -m pipeline` errors
        print(f"compute train: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if trainer is None:
            return 143 if terminated else 130
        r = trainer.result
        print(f"{'terminated' if terminated else 'interrupted'}: {r.local_steps} step(s) in this run (global step"
              f" {r.global_step}), {r.samples:,} samples trained; the batches not trained went back to the"
              f" queue{_last_checkpoint(config.checkpoint_dir)}", file=sys.stderr, flush=True)
        return 143 if terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps({"event": "done", **result.summary()}, allow_nan=False), flush=True)
    if result.staleness:
        print(result.staleness_histogram(), file=sys.stderr)
    if result.local_steps == 0:
        print(f"compute train: {_nothing_done(result, config)}", file=sys.stderr)
    return 0


def _nothing_done(result: Any, config: TrainConfig) -> str:
    """Why a run that finished cleanly trained no step: said, so that it is not taken for a success."""
    if result.stop_reason == "steps":
        return (f"nothing to do: the model is already at global step {result.global_step}, at or past --steps"
                f" {config.steps} (a global step, counted over every run of this model: raise it to train more)")
    if result.stop_reason == "end_of_data":
        return f"nothing to do: queue '{config.queue}' is closed and empty (load data into it first)"
    return "nothing to do: another replica had already stopped the training"


def _last_checkpoint(directory: str | None) -> str:
    if not directory:
        return ""
    from compute.checkpoint import load_checkpoint

    ckpt = load_checkpoint(directory)
    return f"; last checkpoint: global step {ckpt.global_step} in {directory}" if ckpt else f"; no checkpoint in {directory}"


if __name__ == "__main__":
    raise SystemExit(main())
