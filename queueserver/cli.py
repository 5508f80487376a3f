"""The ``queueserver`` command: run the daemon, look at a server, reset containers.

    queueserver [--log-format text|json] serve [--port 2222] [--host 127.0.0.1] [--token T] [--no-metrics]
    queueserver status TARGET
    queueserver reset TARGET --container NAME [--container NAME ...]
    queueserver serve --cluster cluster.json --job ps --task 0
    queueserver cluster up cluster.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Sequence

from queueserver._version import __version__
from queueserver.cli_tools import HelpFormatter, add_logging_options, add_queue_commands, format_status
from queueserver.cli_tools import logging_parents, resolve_logging
from queueserver.errors import QueueServerError
from queueserver.logs import set_default_task
from queueserver.resolvers import add_arguments as add_resolver_arguments
from queueserver.resolvers import resolve_serve_args
from queueserver.wire import DEFAULT_MAX_MESSAGE_BYTES


def _serve(args: argparse.Namespace) -> int:
    from queueserver.server import serve_forever

    from queueserver.options import ServerOptions, token_from_env

    fields = dict(token=token_from_env(args.token), max_message_bytes=args.max_message_bytes,
                  metrics=not args.no_metrics, data_dir=args.data_dir, fsync=args.fsync,
                  idle_timeout_s=args.idle_timeout)
    resolved = resolve_serve_args(args)  # --cluster-from, or TF_CONFIG when no --cluster/--job
    if resolved is not None:
        args.cluster, args.job, args.task = resolved.spec, resolved.job, resolved.task
    if args.cluster:
        from queueserver.cluster import ClusterSpec, server_task

        spec = ClusterSpec(args.cluster)
        # Server's rules: --job may be left out when the cluster has one job, --task when the job has one task.
        job, task = server_task(spec, args.job, args.task, names=("--job", "--task"))
        options = ServerOptions.for_task(spec, job, task, **fields)
        if args.host is not None:  # the spec's host unless --host says otherwise
            options = dataclasses.replace(options, host=args.host)
    else:
        options = ServerOptions(host=args.host or "127.0.0.1", port=args.port, **fields)
    set_default_task(f"/job:{options.job}/task:{options.index}")

    def ready(service) -> None:
        auth = "token required" if service.token else "no token"
        print(f"queueserver {service.task} serving on {service.target} ({auth}); Ctrl-C stops it", flush=True)

    serve_forever(options, on_ready=ready)
    return 0


_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"}


def _cluster_up(args: argparse.Namespace) -> int:
    import queue
    import signal
    import socket
    import subprocess
    import threading

    from queueserver.cluster import ClusterSpec

    spec = ClusterSpec(args.cluster_file)
    local = _LOCAL_HOSTS | {socket.gethostname(), socket.getfqdn()}
    tasks = [(job, i) for job in spec.jobs for i in spec.task_indices(job)
             if spec.task_address(job, i).rpartition(":")[0] in local]
    if not tasks:
        print(f"queueserver cluster up: no task of {args.cluster_file} has this machine's address", file=sys.stderr)
        return 2
    extra = ["--token", args.token] if args.token else []
    if args.no_metrics:
        extra.append("--no-metrics")
    procs = []
    for job, i in tasks:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "queueserver", "--log-level", args.log_level, "--log-format", args.log_format, "serve",
             "--cluster", str(args.cluster_file), "--job", job, "--task", str(i), *extra]))
    print(f"started {len(procs)} task(s): " + ", ".join(f"/job:{j}/task:{i}" for j, i in tasks)
          + "; Ctrl-C stops them all", flush=True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    # One waiter thread per task reports its exit: the first task to end on its own (a busy port,
    # a crash) ends the cluster, since a cluster missing a task cannot serve its resources.
    exits: queue.Queue[tuple[int, int]] = queue.Queue()
    for k, p in enumerate(procs):
        threading.Thread(target=lambda k=k, p=p: exits.put((k, p.wait())), daemon=True,
                         name=f"wait-task-{k}").start()
    first: tuple[int, int] | None = None
    try:
        first = exits.get()
    except KeyboardInterrupt:
        pass
    early = not stopping and first is not None
    stop()
    codes = [p.wait() for p in procs]
    if early and first is not None:
        (job, i), code = tasks[first[0]], first[1]
        others = len(procs) - 1
        print(f"queueserver cluster up: /job:{job}/task:{i} exited with status {code} (its error is above);"
              f" stopped the other {others} task(s)", file=sys.stderr)
        return 1
    failed = [f"/job:{j}/task:{i}" for (j, i), c in zip(tasks, codes) if c not in (0, -15)]
    if failed:
        print(f"queueserver cluster up: task(s) exited with errors: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    from queueserver.client import connect

    with connect(args.target, token=args.token, client_name="queueserver status") as c:
        status = c.status(cluster=args.cluster)
    if args.json:
        print(json.dumps(status, indent=2))
    elif args.cluster and "cluster" in status:
        for task in status["cluster"]:
            if task.get("up"):
                print(format_status(task, args.all))
            else:
                print(f"task {task['task']}  DOWN: {task['error']}")
            print()
    else:
        print(format_status(status, args.all))
    return 0


def _reset(args: argparse.Namespace) -> int:
    from queueserver.client import connect

    with connect(args.target, token=args.token, client_name="queueserver reset") as c:
        freed = c.reset(args.container)
    print(f"reset {', '.join(repr(c) for c in args.container)}: {freed} resource(s) freed")
    return 0


_EXAMPLES = {
    "queueserver": """\
examples:
  queueserver serve --port 2222                                  # one server on this machine
  queueserver cluster up cluster.json                            # every local task of a cluster
  queueserver status http://127.0.0.1:2222                       # what it holds, who is connected
  queueserver queue peek http://127.0.0.1:2222 shared_instance_q
  queueserver --log-format json serve --port 2222
every command that talks to a server takes --token (default: $QUEUESERVER_TOKEN).""",
    "serve": """\
examples:
  queueserver serve --port 2222
  queueserver serve --host 0.0.0.0 --port 2222 --token "$(cat token.txt)"    # reachable from other hosts
  queueserver serve --cluster cluster.json --job ps --task 0                  # one task of a cluster
  queueserver serve --port 2222 --data-dir /var/lib/queueserver               # survives its own restart""",
    "status": """\
examples:
  queueserver status http://127.0.0.1:2222
  queueserver status http://127.0.0.1:2222 --all --cluster      # every task, internal coord-* included
  queueserver status http://127.0.0.1:2222 --json""",
    "reset": """\
examples:
  queueserver reset http://127.0.0.1:2222 --container my_problem_1
  queueserver reset http://127.0.0.1:2222 --container coord-mlp   # a model's coordination queues""",
    "up": """\
examples:
  queueserver cluster up cluster.json
  queueserver cluster up cluster.json --token secret    # every task requires the token""",
}


def build_parser() -> argparse.ArgumentParser:
    """The command line, for ``--help`` and for tests."""
    parser = argparse.ArgumentParser(
        prog="queueserver", formatter_class=HelpFormatter, epilog=_EXAMPLES["queueserver"],
        description="A queue server with shared named queues and resource containers (TensorFlow 1 style).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_logging_options(parser, None)
    sub = parser.add_subparsers(dest="command", required=True)
    # After the subcommand too (SUPPRESS keeps a value given before it when none is given after).
    (logging_after,) = logging_parents()

    serve = sub.add_parser("serve", help="run the server daemon until SIGINT/SIGTERM", parents=[logging_after],
                           formatter_class=HelpFormatter, epilog=_EXAMPLES["serve"],
                           description="Run a queue server. Binds loopback unless --host says otherwise.")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only;"
                                      " in a cluster, this task's host in the spec)")
    serve.add_argument("--port", type=int, default=2222, help="port to bind (default 2222; 0 picks a free one)")
    serve.add_argument("--token", default=None,
                       help="shared secret every client must present (default: $QUEUESERVER_TOKEN, else none)")
    serve.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                       help="largest message accepted, in bytes (default 256 MiB)")
    serve.add_argument("--cluster", help="cluster spec JSON file: serve one of its tasks")
    serve.add_argument("--job", help="with --cluster: this task's job name (needed when the cluster has several jobs)")
    serve.add_argument("--task", type=int, default=None,
                       help="with --cluster: this task's index (needed when the job has several tasks)")
    serve.add_argument("--idle-timeout", type=float, default=3600.0, metavar="SECONDS",
                       help="close a connection that sends nothing this long while none of its calls waits (what"
                            " it held goes back to its queues; default 3600; 0: never)")
    serve.add_argument("--no-metrics", action="store_true",
                       help="keep no per-call statistics and serve no /metrics (the status page still works)")
    serve.add_argument("--data-dir", default=None,
                       help="keep queues, held deliveries, variables and accumulators in this directory, so they"
                            " survive the server's death (default: in memory only)")
    serve.add_argument("--fsync", choices=("always", "everysec", "no"), default="everysec",
                       help="with --data-dir: sync each change to disk before acknowledging it (always), at least"
                            " once a second (everysec, the default), or when the OS does (no)")
    add_resolver_arguments(serve)
    serve.set_defaults(func=_serve)

    status = sub.add_parser("status", help="show a server's queues, variables, accumulators and clients",
                            parents=[logging_after], formatter_class=HelpFormatter, epilog=_EXAMPLES["status"],
                            description="Show a server's queues, variables, accumulators and clients. Internal"
                                        " coord-* resources (the trainers' coordination) are hidden unless --all.")
    status.add_argument("target", help="server address, e.g. http://127.0.0.1:2222")
    status.add_argument("--token", default=None, help="the server's token (default: $QUEUESERVER_TOKEN)")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument("--cluster", action="store_true", help="show every task of the server's cluster")
    status.add_argument("--all", action="store_true", help="show internal coord-* resources too")
    status.set_defaults(func=_status)

    reset = sub.add_parser("reset", help="free every resource in the given containers", parents=[logging_after],
                           formatter_class=HelpFormatter, epilog=_EXAMPLES["reset"],
                           description="Free every resource (queues, variables, accumulators) in the given"
                                       " containers; to act on one queue, see `queueserver queue`.")
    reset.add_argument("target", help="server address, e.g. http://127.0.0.1:2222")
    reset.add_argument("--container", action="append", required=True,
                       help="container to reset (repeat for several; '' is the default container)")
    reset.add_argument("--token", default=None, help="the server's token (default: $QUEUESERVER_TOKEN)")
    reset.set_defaults(func=_reset)
    add_queue_commands(sub, [logging_after])
    cluster = sub.add_parser("cluster", help="cluster helpers", formatter_class=HelpFormatter, epilog=_EXAMPLES["up"])
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True)
    up = cluster_sub.add_parser("up", help="start every task of a cluster spec whose host is this machine",
                                parents=[logging_after], formatter_class=HelpFormatter, epilog=_EXAMPLES["up"],
                                description="Start one `queueserver serve` per local task of CLUSTER_FILE"
                                            " (for development); Ctrl-C stops them all.")
    up.add_argument("cluster_file", help='cluster spec JSON, e.g. {"ps": ["127.0.0.1:2221"], "worker": [...]}')
    up.add_argument("--token", default=None, help="shared secret for every task (default: $QUEUESERVER_TOKEN)")
    up.add_argument("--no-metrics", action="store_true", help="start every task with --no-metrics")
    up.set_defaults(func=_cluster_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``queueserver`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and args.job is not None and not args.cluster:
        parser.error("serve --job needs --cluster (the cluster spec that names the job's tasks)")
    resolve_logging(args)
    try:
        return args.func(args)
    except QueueServerError as exc:
        command = " ".join(filter(None, (args.command, getattr(args, "queue_command", None),
                                         getattr(args, "cluster_command", None))))
        print(f"queueserver {command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
