"""The seed's examples run as scripts, as a user runs them."""

from __future__ import annotations

import subprocess
import sys

from support import REPO


def run_example(name: str, timeout: float = 120) -> str:
    out = subprocess.run([sys.executable, str(REPO / "examples" / name)], capture_output=True, text=True,
                         timeout=timeout, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_queue_runner_notebook_cells_print_every_instance_then_stop():
    out = run_example("queue_runners.py")
    assert out.count("No more training instances") == 4
    for row in ("[ 1., -1.]", "[ 4.,  5.]", "[ 7.,  8.]"):
        assert row in out.replace("[4., 5.]", "[ 4.,  5.]").replace("[7., 8.]", "[ 7.,  8.]")
