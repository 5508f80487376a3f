"""What ``queueserver status`` prints, and the ``queueserver queue ...`` commands.

``status`` shows one table per kind of resource, with the container and the name in separate
columns, then the connected clients with what they wait on and their latest report. Internal
resources (containers named ``coord-*`` or ``*-coord-*``: the trainers' coordination queues and
accumulators) are hidden unless ``--all`` is given; the tables say how many were hidden.

``queue create|close|delete|peek|list`` act on one queue (or list them), so a user can look at a queue,
close it, delete it, or create one by hand, without resetting a whole container.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Sequence

import numpy as np

from queueserver.errors import AlreadyExistsError, DeadlineExceededError, InvalidArgumentError, NotFoundError
from queueserver.logs import printable

__all__ = ["HelpFormatter", "add_logging_options", "add_queue_commands", "bar_size", "format_status", "is_internal",
           "logging_parents", "resolve_logging"]


# --------------------------------------------------------------------------- one convention for the CLIs
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` as every CLI of the project writes it: descriptions and epilogs (the examples)
    kept as written, and each option's default shown unless its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if ("default" in text or not action.option_strings or action.nargs == 0 or default is None
                or default is argparse.SUPPRESS or isinstance(default, list)):
            return text
        return f"{text} (default: {default!r})" if default == "" else f"{text} (default: %(default)s)"


def bar_size(stream: Any) -> dict:
    """tqdm's size options for a bar drawn on ``stream`` (the loader's and the trainer's): follow the terminal's size, or 100 columns and 24 lines where it has
    none (a pipe, or a pseudo-terminal whose size was never set, where tqdm would draw nothing)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        size = os.terminal_size((0, 0))
    return {"dynamic_ncols": True} if size.columns > 0 and size.lines > 0 else {"ncols": 100, "nrows": 24}


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a log level: use one of {', '.join(LOG_LEVELS)}")
    return level


def add_logging_options(parser: argparse.ArgumentParser, default: object, default_level: str = "INFO") -> None:
    """``--log-level`` and ``--log-format``; ``default`` is ``None`` on the top parser and
    ``argparse.SUPPRESS`` on a subcommand's, so a value given before the subcommand is kept when
    none is given after it."""
    parser.add_argument("--log-level", type=_log_level, default=default,
                        help=f"logging level: {', '.join(LOG_LEVELS)} (default {default_level})")
    parser.add_argument("--log-format", choices=("text", "json"), default=default,
                        help="text lines for people (default) or one JSON object per line"
                             " (ts, level, task, event, message, fields) for machines")


def logging_parents(default_level: str = "INFO") -> list[argparse.ArgumentParser]:
    """The parents= list that gives a subcommand the logging options (see :func:`add_logging_options`)."""
    after = argparse.ArgumentParser(add_help=False)
    add_logging_options(after, argparse.SUPPRESS, default_level)
    return [after]


def resolve_logging(args: argparse.Namespace, default_level: str = "INFO") -> None:
    """Fill in the logging options' defaults and configure logging from them."""
    from queueserver.logs import configure

    args.log_level, args.log_format = args.log_level or default_level, args.log_format or "text"
    configure(args.log_level, args.log_format)


def is_internal(container: str) -> bool:
    """Whether a container holds a trainer's coordination resources (``coord-<scope>`` or
    ``<container>-coord-<scope>``, and the chief's lock beside it), hidden by default."""
    return container.startswith("coord-") or "-coord-" in container


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> list[str]:
    """Rows under a header, each column as wide as its widest cell; ``right``: right-aligned columns."""
    cells = [[printable(str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]

    def line(row: Sequence[str]) -> str:
        return "  " + "  ".join(c.rjust(w) if i in right else c.ljust(w)
                                for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    return [line(list(header))] + [line(r) for r in cells]


def _container(name: str) -> str:
    return name if name else "''"


def _visible(entries: list[dict], show_all: bool) -> tuple[list[dict], int]:
    shown = [e for e in entries if show_all or not is_internal(e["container"])]
    return shown, len(entries) - len(shown)


def _heading(what: str, shown: list, hidden: int, status: dict) -> str:
    extra = f"; {hidden} internal hidden, --all shows them" if hidden else ""
    omitted = status.get("omitted", {}).get(what, 0)
    if omitted:  # a big server's status lists a bounded number (see queueserver.status)
        extra += f"; {omitted} more not listed, of {status['totals'][what]}"
    return f"{what} ({len(shown)}{extra}):"


def queue_rows(queues: list[dict]) -> list[str]:
    """The queue table: container, name, type, size, capacity, closed, spec."""
    rows = [(_container(q["container"]), q["name"], q["type"], q["size"], q["capacity"],
             "closed" if q["closed"] else "open", q["spec"]) for q in queues]
    return _table(("container", "name", "type", "size", "capacity", "state", "spec"), rows, right=(3, 4))


def _blocked(client: dict) -> str:
    waits = [f"{b['op']} {b['queue']} x{b['count']} for {b['for_s']:g} s" if b["queue"] else b["op"]
             for b in client.get("blocked", [])]
    return "; ".join(waits) or "-"


def _report(client: dict) -> str:
    report = client.get("report")
    if not report:
        return "-"
    figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, (int, float)) else f"{k} {v}"
                        for k, v in (report.get("figures") or {}).items())
    return f"{report.get('role', '?')}: {figures} ({report.get('age_s', 0):g} s ago)"


def format_status(status: dict, show_all: bool = False) -> str:
    """``queueserver status``'s text for one task: queues, variables, accumulators, clients.

    Args:
        status: one task's status (``Client.status()``).
        show_all: show the internal ``coord-*`` resources too.
    """
    lines = [f"task {status['task']}  version {status['version']}  up {status['uptime_s']} s"
             f"  connections {status['connections']}"]
    queues, hidden = _visible(status.get("queues", []), show_all)
    lines.append(_heading("queues", queues, hidden, status))
    if queues:
        lines += queue_rows(queues)
    variables, hidden = _visible(status.get("variables", []), show_all)
    lines.append(_heading("variables", variables, hidden, status))
    if variables:
        lines += _table(("container", "name", "dtype", "shape", "state"),
                        [(_container(v["container"]), v["name"], v["dtype"], str(list(v["shape"])),
                          "initialized" if v["initialized"] else "uninitialized") for v in variables])
    accumulators, hidden = _visible(status.get("accumulators", []), show_all)
    lines.append(_heading("accumulators", accumulators, hidden, status))
    if accumulators:
        lines += _table(("container", "name", "dtype", "shape", "global_step", "accumulated"),
                        [(_container(a["container"]), a["name"], a["dtype"], str(list(a["shape"])),
                          a["global_step"], a["accumulated"]) for a in accumulators], right=(4, 5))
    clients = status.get("clients", [])
    lines.append(f"clients ({len(clients)}):")
    if clients:
        lines += _table(("client", "peer", "connected_s", "held", "waiting on", "report"),
                        [(c["client"] or "-", c["peer"], c["connected_s"], c["held"], _blocked(c), _report(c))
                         for c in clients], right=(2, 3))
    return "\n".join(lines)


# --------------------------------------------------------------------------- queue commands
_QUEUE_TYPES = ("fifo", "random_shuffle", "padding_fifo", "priority")


def _shapes(text: str | None) -> list | None:
    if text is None:
        return None
    try:
        shapes = json.loads(text)
    except ValueError:
        shapes = None
    if not isinstance(shapes, list) or not all(isinstance(s, list) for s in shapes):
        raise InvalidArgumentError(f"--shapes {text!r}: give one JSON list per component, e.g. '[[784], []]'")
    return shapes


def _connect(args: argparse.Namespace) -> Any:
    from queueserver.client import connect

    return connect(args.target, token=args.token, client_name=f"queueserver queue {args.queue_command}")


def _create(args: argparse.Namespace) -> int:
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not dtypes:
        raise InvalidArgumentError("--dtypes is empty: give one dtype per component, e.g. float32,int64")
    shapes = _shapes(args.shapes)
    with _connect(args) as c:
        try:
            existing = c.queue(args.name, container=args.container)
        except NotFoundError:
            existing = None
        if existing is not None:
            closed = "closed" if existing.is_closed() else "open"
            raise AlreadyExistsError(
                f"queue '{printable(args.name)}' already exists in container {_container(args.container)}"
                f" ({closed}, {existing.size()} element(s), {existing.spec.describe()})")
        common = dict(names=None, container=args.container)
        if args.type == "random_shuffle":
            q = c.random_shuffle_queue(args.name, args.capacity, args.min_after_dequeue, dtypes, shapes,
                                       seed=args.seed, **common)
        else:
            make = {"fifo": c.fifo_queue, "padding_fifo": c.padding_fifo_queue, "priority": c.priority_queue}
            q = make[args.type](args.name, args.capacity, dtypes, shapes, **common)
    print(f"created queue '{printable(args.name)}' in container {_container(args.container)}:"
          f" {args.type}, capacity {args.capacity}, {q.spec.describe()}")
    return 0


def _close(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        q = c.queue(args.name, container=args.container)
        was_closed = q.is_closed()
        q.close(cancel_pending_enqueues=args.cancel_pending_enqueues)
        left = q.size()
    state = "was already closed" if was_closed else "closed"
    print(f"queue '{printable(args.name)}' in container {_container(args.container)} {state}:"
          f" {left} element(s) left for its consumers, then they get OutOfRangeError")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        dropped = c.queue(args.name, container=args.container).delete()
    print(f"queue '{printable(args.name)}' in container {_container(args.container)} deleted:"
          f" {dropped} element(s) dropped; the name can be created again")
    return 0


def _peek(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise InvalidArgumentError(f"-n must be >= 1, got {args.n}")
    with _connect(args) as c:
        q = c.queue(args.name, container=args.container)
        size, closed = q.size(), q.is_closed()
        values: list = []
        k = min(args.n, size)
        note = ""
        if k:
            # Taken, shown and given back to the front, in order: nothing is consumed, and if this
            # process died in between the server would give them back too.
            try:
                delivery = q.take(k, timeout=0)
            except DeadlineExceededError:  # e.g. a random-shuffle queue keeping min_after_dequeue
                delivery, note = None, "  (its elements cannot be taken now, so none are shown)"
            if delivery is not None:
                try:
                    values = [np.asarray(v) for v in (delivery.value if isinstance(delivery.value, (list, tuple))
                                                      else [delivery.value])]
                finally:
                    delivery.give_back()
    print(f"queue '{printable(args.name)}' in container {_container(args.container)}: {q.spec.describe()},"
          f" {size} element(s), {'closed' if closed else 'open'}{note}")
    with np.printoptions(threshold=20, edgeitems=3, linewidth=120):
        for i in range(len(values[0]) if values else 0):
            print(f"  [{i}] " + "  ".join(printable(np.array2string(comp[i], separator=", ")) for comp in values))
    if size > len(values[0] if values else []):
        print(f"  ... {size - (len(values[0]) if values else 0)} more")
    return 0


def _list(args: argparse.Namespace) -> int:
    with _connect(args) as c:
        status = c.status()
    queues = status["queues"]
    if args.container is not None:
        queues = [q for q in queues if q["container"] == args.container]
    shown, hidden = _visible(queues, args.all or (args.container is not None and is_internal(args.container)))
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    print(_heading("queues", shown, hidden, status))
    if shown:
        print("\n".join(queue_rows(shown)))
    return 0


_EXAMPLES = """\
examples:
  queueserver queue list http://127.0.0.1:2222
  queueserver queue peek http://127.0.0.1:2222 shared_instance_q -n 3
  queueserver queue close http://127.0.0.1:2222 shared_instance_q        # consumers drain it, then stop
  queueserver queue delete http://127.0.0.1:2222 shared_instance_q       # drop it and what it holds
  queueserver queue create http://127.0.0.1:2222 rows --dtypes float32,int32 --shapes '[[2], []]' \\
      --capacity 10000 --type random_shuffle --min-after-dequeue 1000
"""


def add_queue_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``queue create|close|delete|peek|list`` to the ``queueserver`` subcommands ``sub``."""
    queue = sub.add_parser("queue", help="create, close, delete, peek at or list queues", parents=parents,
                           formatter_class=HelpFormatter, epilog=_EXAMPLES,
                           description="Act on one queue of a server, without resetting its container.")
    qsub = queue.add_subparsers(dest="queue_command", required=True)
    fmt = HelpFormatter

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = qsub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", parents=parents,
                            formatter_class=fmt, epilog=_EXAMPLES)
        p.add_argument("target", help="server address, e.g. http://127.0.0.1:2222")
        if name != "list":
            p.add_argument("name", help="the queue's name")
            p.add_argument("--container", default="", help="the queue's resource container")
        p.add_argument("--token", default=None, help="the server's token (default: $QUEUESERVER_TOKEN)")
        return p

    p = command("create", "create a queue (refused if one of that name exists)")
    p.add_argument("--type", choices=_QUEUE_TYPES, default="fifo", help="queue type")
    p.add_argument("--capacity", type=int, default=1000, help="most elements held")
    p.add_argument("--dtypes", required=True, help="one dtype per component, e.g. float32,int64")
    p.add_argument("--shapes", help="one shape per component as JSON, e.g. '[[784], []]' (default: any shape)")
    p.add_argument("--min-after-dequeue", type=int, default=0, help="random_shuffle: elements kept while open")
    p.add_argument("--seed", type=int, default=None, help="random_shuffle: the shuffle's seed")
    p.set_defaults(func=_create)

    p = command("close", "close a queue: its consumers drain it, then get OutOfRangeError")
    p.add_argument("--cancel-pending-enqueues", action="store_true",
                   help="fail the enqueues waiting for room (CancelledError) instead of letting them land")
    p.set_defaults(func=_close)

    p = command("delete", "delete a queue: its elements are dropped, calls waiting on it fail with"
                          " CancelledError, and the name can be created again")
    p.set_defaults(func=_delete)

    p = command("peek", "show a queue's first elements without consuming them")
    p.add_argument("-n", type=int, default=5, help="elements to show")
    p.set_defaults(func=_peek)

    p = command("list", "list the queues of a server, container and name in separate columns")
    p.add_argument("--container", default=None, help="only this container's queues (default: all)")
    p.add_argument("--all", action="store_true", help="show internal coord-* queues too")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_list)
