"""Structured event logs: one line per significant event, as text for people or JSON for machines.

The server logs events, never calls: a server start or stop, a client connecting or leaving, a
queue created, closed or reset, an error. Every event line carries the task that logged it, an
event name and a few fields, so ``queueserver --log-format json serve`` gives one JSON object per
line::

    {"ts": "2024-05-01T12:00:00.123+00:00", "level": "INFO", "task": "/job:ps/task:0",
     "event": "queue_created", "message": "...", "fields": {"queue": "train/examples", ...}}

Use :func:`event` to log one; :func:`configure` installs the handler for the command line.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import Any, TextIO

log = logging.getLogger("queueserver")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Control characters (newlines, terminal escapes) a client could put in a name or client string.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``, ``\\x0a``): a name a client chose can
    neither forge a log line nor drive the terminal that shows it."""
    return text.translate(_CONTROL)


class TextFormatter(logging.Formatter):
    """The text log format, one line per record whatever the record's strings hold."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.exc_info:  # a traceback keeps its own lines; only the message is escaped
            first, _, rest = line.partition("\n")
            return printable(first) + "\n" + rest
        return printable(line)


def event(level: int, task: str, name: str, message: str, *, exc_info: bool = False, **fields: Any) -> None:
    """Log one event of ``task``: ``name`` is its machine-readable kind, ``fields`` its details.

    The text format shows ``message`` prefixed with the task; the JSON format keeps each part apart.
    """
    if not log.isEnabledFor(level):
        return
    log.log(level, "%s: %s", task, message, exc_info=exc_info,
            extra={"qs_task": task, "qs_event": name, "qs_fields": fields, "qs_message": message})


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, task, event, message, fields (and exc when raised).

    Records that did not come from :func:`event` (another library's, or a plain ``log.info``) get
    ``event: "log"`` and the task given to the formatter, so every line parses the same way.
    """

    def __init__(self, default_task: str | None = None) -> None:
        super().__init__()
        self.default_task = default_task

    def format(self, record: logging.LogRecord) -> str:
        task = getattr(record, "qs_task", None) or self.default_task
        fields = getattr(record, "qs_fields", None)
        # The text form of an event is "task: message"; JSON keeps the task in its own key.
        message = getattr(record, "qs_message", None)
        if message is None:
            message = record.getMessage()
        out = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "task": task,
            "event": getattr(record, "qs_event", "log"),
            "logger": record.name,
            "message": message,
            "fields": fields or {},
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def set_default_task(task: str) -> None:
    """Name ``task`` on JSON lines that did not come from :func:`event` (a process serving one task)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonFormatter):
            handler.formatter.default_task = task


def configure(level: str = "INFO", fmt: str = "text", *, stream: TextIO | None = None) -> None:
    """Install the command line's log handler on the root logger: ``fmt`` is ``"text"`` or ``"json"``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
