"""One convention across ``queueserver``, ``python -m pipeline`` and ``python -m compute``.

Each CLI, run as a process: an examples section in every ``--help``, defaults shown, ``--token``
on every command that talks to a server, ``--report-every`` in seconds, ``--log-level`` and
``--log-format`` after the subcommand, and errors as one line ``<cli> <command>: <Error>: ...``.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from support import REPO

HELPS = [("queueserver",), ("queueserver", "serve"), ("queueserver", "status"), ("queueserver", "reset"),
         ("queueserver", "queue"), ("queueserver", "queue", "list"), ("queueserver", "cluster", "up"),
         ("pipeline",), ("pipeline", "load"), ("compute",), ("compute", "train")]
CLIENT_COMMANDS = [("queueserver", "status"), ("queueserver", "reset"), ("queueserver", "queue", "peek"),
                   ("queueserver", "cluster", "up"), ("pipeline", "load"), ("compute", "train")]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.mark.parametrize("command", HELPS, ids=" ".join)
def test_every_help_has_examples(command):
    # Before: only `pipeline load --help` had examples.
    out = run(*command, "--help")
    assert out.returncode == 0 and "examples:" in out.stdout, out.stdout


@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=" ".join)
def test_every_client_command_takes_a_token(command):
    # Before: `python -m compute train` had no --token.
    out = run(*command, "--help").stdout
    assert "--token" in out and "QUEUESERVER_TOKEN" in out


def test_defaults_are_shown_and_report_every_means_seconds_everywhere():
    train = " ".join(run("compute", "train", "--help").stdout.split())
    for shown in ("(default: sgd)", "(default: 0.9)", "(default: 1)", "(default: float32)", "(default: cpu)"):
        assert shown in train  # before: --optimizer, --momentum, --replicas ... said nothing
    load = " ".join(run("pipeline", "load", "--help").stdout.split())
    for text in (train, load):
        (report,) = re.findall(r"--report-every[^-]*? S (seconds between reports[^(]*)", text)
        assert report.startswith("seconds between reports")
    assert "--print-every N print a JSON line on stdout every N local steps" in train


@pytest.mark.parametrize("command, prefix", [
    (("queueserver", "status", "127.0.0.1:1"), "queueserver status"),
    (("pipeline", "load", "--target", "127.0.0.1:1", "--queue", "q", "--format", "text", "--files", "README.md"),
     "pipeline load"),
    (("compute", "train", "--target", "127.0.0.1:1", "--async", "--model", "softmax:4,2", "--no-progress"),
     "compute train"),
], ids=["queueserver", "pipeline", "compute"])
def test_log_options_after_the_subcommand_and_one_error_prefix(command, prefix):
    # Before: compute and pipeline refused --log-format; compute printed "error: ...".
    out = run(*command, "--log-level", "ERROR", "--log-format", "json")
    assert out.returncode == 1
    first = out.stderr.splitlines()[0]
    assert re.match(rf"{prefix}: UnavailableError: cannot connect to 127\.0\.0\.1:1", first), out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1  # (no "queue left open" either)
