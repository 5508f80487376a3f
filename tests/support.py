"""Test support: TensorFlow's golden outputs and a real server process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GOLDEN_PATH = SHARED / "fixtures" / "golden.json"


def load_golden() -> dict:
    """Golden cases by name (``shared/`` sits beside the repository, as in CI)."""
    if not GOLDEN_PATH.exists():
        pytest.skip(f"TensorFlow's golden outputs are not at {GOLDEN_PATH}")
    with open(GOLDEN_PATH) as f:
        return {case["name"]: case for case in json.load(f)["cases"]}


class ServerProcess:
    """``queueserver serve`` in a child process, as a user runs it."""

    def __init__(self, *extra: str, env: dict | None = None) -> None:
        cmd = [sys.executable, "-m", "queueserver", "--log-level", "WARNING", "serve", "--port", "0", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        line = self.proc.stdout.readline()
        match = re.search(r"serving on (\S+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()}")
        self.target = match.group(1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)



def golden_steps(case: dict) -> list[dict]:
    """The steps of a queue case."""
    return case["result"]["steps"]
