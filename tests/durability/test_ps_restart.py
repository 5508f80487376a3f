"""A ps task with a data directory, killed (SIGKILL) and started again, comes back with its
variables; a client of the cluster carries on without reconnecting by hand, whether it calls the
ps task directly or through the worker task, which forwards."""

from __future__ import annotations

import json
import signal
import sys

import numpy as np
import pytest

import queueserver as qs
from support import ServerProcess, free_ports


@pytest.mark.parametrize("route_direct", [True, False], ids=["direct", "forwarded"])
def test_a_killed_ps_task_with_a_data_dir_comes_back_with_its_variables(tmp_path, route_direct):
    ports = free_ports(2)
    spec = {"ps": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{ports[1]}"]}
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(spec))

    def task(job: str, *extra: str) -> ServerProcess:
        return ServerProcess(cmd=[sys.executable, "-m", "queueserver", "--log-level", "WARNING", "serve",
                                  "--cluster", str(path), "--job", job, "--task", "0", *extra])

    ps = task("ps", "--data-dir", str(tmp_path / "ps-data"))
    worker = task("worker")
    try:
        with qs.connect(worker.target, operation_timeout=30, route_direct=route_direct) as c:
            with c.device("/job:ps/task:0"):
                w = c.variable("weights", np.zeros((2, 3), np.float32))
            w.initialize()
            w.assign_add(np.full((2, 3), 1.5, np.float32))
            ps.stop(signal.SIGKILL)
            ps = task("ps", "--data-dir", str(tmp_path / "ps-data"))
            np.testing.assert_array_equal(w.read(), np.full((2, 3), 1.5, np.float32))
            w.assign_add(np.ones((2, 3), np.float32))
            np.testing.assert_array_equal(w.read(), np.full((2, 3), 2.5, np.float32))
    finally:
        worker.stop()
        ps.stop()
