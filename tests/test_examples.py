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


def test_make_demo_trains_the_digits_to_95_percent_on_a_local_cluster():
    out = run_example("demo.py", timeout=180)
    accuracy = float(out.split("held-out test accuracy: ")[1].split()[0])
    assert accuracy >= 0.95, out
    assert "/job:ps/task:1: 2 variable(s)" in out  # parameters sharded over both ps tasks
