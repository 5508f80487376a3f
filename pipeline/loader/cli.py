"""The loader's command line: ``python -m pipeline load ...`` (:func:`main`, :func:`build_parser`).

:func:`parse_record_defaults` parses ``--record-defaults``; the chosen format is built from the
arguments and handed to :func:`~pipeline.loader.loading.load`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import numpy as np

from queueserver._version import __version__
from queueserver import errors as qerrors
from queueserver.cli_tools import HelpFormatter, add_logging_options, logging_parents, resolve_logging
from queueserver.resolvers import tf_config_task

from .formats import CsvFormat, FixedLengthFormat, TextFormat, TFRecordFormat, _Format, parse_features
from .loading import DEFAULT_REPORT_EVERY_S, load

__all__ = ["build_parser", "main", "parse_record_defaults"]


_DTYPES = {"float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64}


def parse_record_defaults(text: str) -> list[Any]:
    """Parse the CLI's ``--record-defaults`` into ``decode_csv`` record defaults.

    Comma-separated entries, each optionally repeated with ``*N``:

    * a number: ``-1.`` (a float32 column defaulting to -1) or ``0`` (int32);
    * ``TYPE`` (``float32``, ``float64``, ``int32``, ``int64``, ``string``): defaults to 0 / empty;
    * ``TYPE=VALUE``: that default; ``TYPE!``: a required column (an empty field is an error).

    Args:
        text: e.g. ``"float32*10,int32"`` or ``"-1.,-1.,-1"``.

    Returns:
        The record defaults.

    Raises:
        InvalidArgumentError: a malformed entry.

    Example:
        >>> [d.dtype.name for d in parse_record_defaults("float32*2,int64=7")]
        ['float32', 'float32', 'int64']
    """
    out: list[Any] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            raise qerrors.InvalidArgumentError(f"--record-defaults {text!r}: empty entry")
        count = 1
        if "*" in entry:
            entry, _, times = entry.rpartition("*")
            try:
                count = int(times)
            except ValueError:
                raise qerrors.InvalidArgumentError(f"--record-defaults entry {raw!r}: repeat count must be an integer") from None
        name, eq, value = entry.partition("=")
        required = name.endswith("!")
        name = name.rstrip("!")
        if name == "string":
            default: Any = np.array([], object) if required else np.array([value.encode()], object)
        elif name in _DTYPES:
            dtype = _DTYPES[name]
            try:
                default = np.array([], dtype) if required else np.array([dtype(value) if eq and value else 0], dtype)
            except ValueError:
                raise qerrors.InvalidArgumentError(f"--record-defaults entry {raw!r}: {value!r} is not a {name}") from None
        else:
            try:
                number = float(entry) if any(ch in entry for ch in ".eEn") else int(entry)
            except ValueError:
                raise qerrors.InvalidArgumentError(
                    f"--record-defaults entry {raw!r}: expected a number, TYPE, TYPE=VALUE or TYPE! "
                    f"with TYPE one of float32, float64, int32, int64, string") from None
            default = np.array([number], np.float32 if isinstance(number, float) else np.int32)
        out += [default] * count
    return out


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m pipeline`` argument parser (subcommand ``load``)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Input pipelines for queueserver: load files into a shared queue.",
        formatter_class=HelpFormatter,
        epilog=("examples:\n"
                "  python -m pipeline load --target 127.0.0.1:2222 --queue rows --format csv \\\n"
                "      --files 'data/*.csv' --skip-header-lines 1 --record-defaults 'float32*10,int32'\n"
                "  python -m pipeline load --help        # every option, with more examples"),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_logging_options(parser, None, "WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "load",
        help="read files into a shared queue with concurrent readers",
        parents=logging_parents("WARNING"),
        formatter_class=HelpFormatter,
        description=(
            "Read files into the shared queue NAME on the server at T, with N concurrent readers,\n"
            "enqueueing decoded records with enqueue_many (a full queue makes readers wait).\n"
            "If the queue exists its spec decides the element layout; otherwise it is created from\n"
            "the format. At the end the queue is closed (unless --no-close), so consumers get\n"
            "OutOfRangeError once it is drained. Progress goes to stderr."
        ),
        epilog=(
            "CSV columns fill the queue's components in order: a scalar component takes one column,\n"
            "a [k] component the next k columns. A created CSV queue is (features[n-1], target) by\n"
            "default (--layout).\n\n"
            "examples:\n"
            "  python -m pipeline load --target 127.0.0.1:2222 --queue rows --format csv \\\n"
            "      --files 'data/*.csv' --skip-header-lines 1 --record-defaults 'float32*10,int32'\n"
            "  python -m pipeline load --target 127.0.0.1:2222 --queue mnist --format tfrecord \\\n"
            "      --files 'mnist-*.tfrecord' --features x:float32:784,y:int64:1 --readers 4\n"
            "  python -m pipeline load --target 127.0.0.1:2222 --queue cifar --format fixed \\\n"
            "      --files 'cifar/data_batch_*.bin' --record-bytes 3073\n\n"
            "Every --report-every seconds the loader reports its records/s and bytes/s to the server\n"
            "(the status page and /metrics show them). Ctrl-C stops the readers and leaves the queue\n"
            "open (not closed, not cancelled) for its other loaders and consumers.\n\n"
            "exit status: 0 loaded; 1 an error (the message names the file and line or record); 2 bad usage;\n"
            "130 interrupted (Ctrl-C)"
        ),
    )
    p.add_argument("--target", help="the queue server, e.g. 127.0.0.1:2222 or http://host:port "
                                    "(default: this task's address in TF_CONFIG, when it is set)")
    p.add_argument("--queue", required=True, metavar="NAME", help="the queue to fill (opened, or created)")
    p.add_argument("--container", default="", help="the queue's resource container (default: none)")
    p.add_argument("--format", required=True, choices=["csv", "fixed", "tfrecord", "text"],
                   help="file format: csv (decode_csv), fixed (fixed-length records), tfrecord, text (lines)")
    p.add_argument("--files", required=True, action="append", metavar="GLOB",
                   help="files to read (a glob; repeat the option for several)")
    g = p.add_argument_group("csv and text")
    g.add_argument("--record-defaults", metavar="SPEC",
                   help="csv column types and defaults: comma-separated numbers (-1., 0), TYPE, TYPE=VALUE "
                        "or TYPE! (required), each optionally *N; TYPE is float32, float64, int32, int64 or "
                        "string. Default: derived from an existing queue's spec")
    g.add_argument("--skip-header-lines", type=int, default=0, metavar="N", help="header lines per file (default 0)")
    g.add_argument("--field-delim", default=",", help="csv delimiter (default ',')")
    g.add_argument("--layout", default="features-target", choices=["features-target", "columns", "stacked"],
                   help="spec of a created csv queue (default features-target)")
    g = p.add_argument_group("fixed-length records")
    g.add_argument("--record-bytes", type=int, metavar="N", help="bytes per record (required for --format fixed)")
    g.add_argument("--header-bytes", type=int, default=0, metavar="N", help="bytes to skip at the start of each file")
    g.add_argument("--footer-bytes", type=int, default=0, metavar="N", help="bytes to ignore at the end of each file")
    g = p.add_argument_group("tfrecord")
    g.add_argument("--features", metavar="SPEC",
                   help="parse tf.train.Example records: name:dtype[:size] entries, e.g. x:float32:784,y:int64:1 "
                        "(dtype float32, int64 or string); without it each record's bytes are enqueued")
    g = p.add_argument_group("reading")
    g.add_argument("--compression", default="", type=str.upper, choices=["", "GZIP", "ZLIB"],
                   help="compressed input (GZIP or ZLIB)")
    g.add_argument("--readers", type=int, default=4, metavar="N", help="concurrent readers (default 4)")
    g.add_argument("--batch", type=int, default=None, metavar="N",
                   help="records per decode and enqueue_many (default: about 1 MiB of elements per call, "
                        "64 to 65,536 records: 23,831 rows of float32[10] + int32)")
    g.add_argument("--num-epochs", type=int, default=1, metavar="N",
                   help="passes over the files (default 1; 0: for ever, until Ctrl-C)")
    g.add_argument("--shuffle-files", action="store_true", help="shuffle the file order every epoch")
    g.add_argument("--seed", type=int, help="seed of --shuffle-files (and of a created random-shuffle queue)")
    g.add_argument("--on-error", default="raise", choices=["raise", "skip"],
                   help="bad records: raise (stop, the default) or skip (count and report them at the end)")
    g = p.add_argument_group("the queue")
    g.add_argument("--close", dest="close", action="store_true", default=True,
                   help="close the queue when done (the default)")
    g.add_argument("--no-close", dest="close", action="store_false",
                   help="leave the queue open (e.g. other loaders feed it too)")
    g.add_argument("--capacity", type=int, default=10_000, metavar="N", help="capacity of a created queue (default 10000)")
    g.add_argument("--queue-type", default="fifo", choices=["fifo", "random_shuffle"], help="type of a created queue")
    g.add_argument("--min-after-dequeue", type=int, default=0, metavar="N", help="for a created random_shuffle queue")
    g.add_argument("--token", default=None, help="the server's shared secret (default: $QUEUESERVER_TOKEN)")
    g.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    g.add_argument("--report-every", type=float, default=DEFAULT_REPORT_EVERY_S, metavar="S",
                   help=f"seconds between reports of records/s and bytes/s to the server "
                        f"(default {DEFAULT_REPORT_EVERY_S:g}; 0: never)")
    g.add_argument("--client-name", metavar="NAME",
                   help="this loader's name on the server's status page (default: 'loader QUEUE pid PID')")
    return parser


def _format_from_args(args: argparse.Namespace) -> _Format:
    if args.format == "csv":
        defaults = parse_record_defaults(args.record_defaults) if args.record_defaults else None
        return CsvFormat(defaults, args.skip_header_lines, args.field_delim, args.compression, args.on_error, args.layout)
    if args.format == "text":
        return TextFormat(args.skip_header_lines, args.compression, args.on_error)
    if args.format == "fixed":
        if not args.record_bytes:
            raise qerrors.InvalidArgumentError("--format fixed needs --record-bytes")
        return FixedLengthFormat(args.record_bytes, args.header_bytes, args.footer_bytes, args.compression, args.on_error)
    features = parse_features(args.features) if args.features else None
    return TFRecordFormat(features, args.compression, args.on_error)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m pipeline ...``; returns the exit status.

    Example:
        >>> main(["load", "--target", t, "--queue", "q", "--format", "text", "--files", "*.txt"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_logging(args, "WARNING")
    stream = None if args.quiet else sys.stderr
    if args.num_epochs < 0:
        parser.error(f"--num-epochs must be >= 0 (0: for ever), got {args.num_epochs}")
    if args.report_every < 0:
        parser.error(f"--report-every must be >= 0 (0: never), got {args.report_every}")
    if args.target is None:  # under a TFJob: the server of this task, from TF_CONFIG
        found = tf_config_task("pipeline load")
        args.target = found.address if found else parser.error("--target is required (or set TF_CONFIG)")
    try:
        fmt = _format_from_args(args)
        result = load(args.target, args.queue, fmt, args.files, readers=args.readers, batch=args.batch,
                      num_epochs=args.num_epochs or None, shuffle_files=args.shuffle_files, seed=args.seed,
                      close=args.close, token=args.token, container=args.container, capacity=args.capacity,
                      queue_type=args.queue_type, min_after_dequeue=args.min_after_dequeue, progress=stream,
                      report_every_s=args.report_every, client_name=args.client_name)
    except qerrors.QueueServerError as exc:
        print(f"pipeline load: {type(exc).__name__}: {exc}", file=sys.stderr)
        # (a cancelled load's queue was closed by another; an unreachable server's was never touched)
        if not isinstance(exc, qerrors.CancelledError) and exc.details.get("queue_reached", True):
            print(f"pipeline load: queue '{args.queue}' left open: it was not closed as a clean end of data",
                  file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pipeline load: interrupted: the readers stopped; queue '{args.queue}' left open "
              f"(not closed) for its other loaders and consumers", file=sys.stderr)
        return 130
    if stream is not None:
        state = "closed" if result.closed else "left open"
        stream.write(f"loaded {result.records:,} records from {result.files} file(s) into queue "
                     f"'{args.queue}' in {result.seconds:.2f} s ({result.records_per_second:,.0f} records/s); "
                     f"queue {state}\n")
    return 0
