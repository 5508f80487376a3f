"""The cluster's name directory under task failures (issue 15, part 2).

Every name has one home; the directory that records it is spread over the tasks. A dead task may
affect only the resources homed on it, and a task that restarts must not let an existing name get
a second home.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import queueserver as qs
from queueserver.cluster import ClusterSpec
from queueserver.routing import Placement

PS0, PS1 = "/job:ps/task:0", "/job:ps/task:1"
W0, W1, W2 = "/job:worker/task:0", "/job:worker/task:1", "/job:worker/task:2"


def name_recorded_on(cluster, task: str, prefix: str) -> str:
    """A fresh name whose directory entry lives on ``task`` (the first task asked about it)."""
    placement = Placement(ClusterSpec(cluster.spec), "ps", 0)
    for i in range(10_000):
        name = f"{prefix}_{i}_{time.monotonic_ns()}"
        if placement.directory_task("", name) == task:
            return name
    raise AssertionError(f"no name hashes to {task}")


class Tasks:
    """Stops and starts the shared cluster's tasks; whatever a test leaves stopped is started after it."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.stopped: set[tuple[str, int]] = set()

    def stop(self, job: str, index: int) -> None:
        self.cluster.procs[f"/job:{job}/task:{index}"].stop()
        self.stopped.add((job, index))

    def start(self, job: str, index: int) -> None:
        self.cluster.start(job, index)
        self.stopped.discard((job, index))


@pytest.fixture
def tasks(cluster):
    t = Tasks(cluster)
    yield t
    for job, index in sorted(t.stopped):
        t.start(job, index)
    with qs.connect(cluster.target(PS0), operation_timeout=10) as c:
        c.reset([""])


def test_a_dead_directory_task_does_not_hide_names_homed_elsewhere(cluster, tasks):
    existing = name_recorded_on(cluster, PS1, "existing")
    fresh = name_recorded_on(cluster, PS1, "fresh")
    with qs.connect(cluster.target(W0), operation_timeout=10, route_direct=False) as c:
        with c.device(W1):
            v = c.variable(existing, 5.0)
        v.initialize()
    tasks.stop("ps", 1)
    start = time.monotonic()
    # W2 never saw either name: it must find the existing one and create the fresh one without
    # the task holding their directory entries.
    with qs.connect(cluster.target(W2), operation_timeout=10, route_direct=False) as c:
        found = c.variable(existing, 0.0)
        assert found.device == W1
        assert found.read() == 5.0
        with c.device(W1):
            made = c.variable(fresh, 7.0)
        made.initialize()
        assert made.read() == 7.0
        with c.device(W0):
            q = c.fifo_queue(fresh + "_q", capacity=4, dtypes=[np.int64], shapes=[[]])
        q.enqueue(3)
        assert q.dequeue() == 3
    assert time.monotonic() - start < 8  # bounded tries of the dead task, not a hang


def test_a_restarted_directory_task_does_not_give_a_name_a_second_home(cluster, tasks):
    name = name_recorded_on(cluster, PS0, "d0")
    with qs.connect(cluster.target(W0), operation_timeout=10, route_direct=False) as c:
        with c.device(PS1):
            v = c.variable(name, 100.0)
        v.initialize()
    tasks.stop("ps", 0)
    tasks.start("ps", 0)  # back, with an empty directory
    with qs.connect(cluster.target(W2), operation_timeout=10, route_direct=False) as c:
        with c.device(W1):  # a different placement must still find the one that exists
            again = c.variable(name, 0.0)
        assert again.device == PS1
        assert again.read() == 100.0
    with qs.connect(cluster.target(PS0), operation_timeout=10) as c:
        assert c.variable(name, 0.0).read() == 100.0


def test_a_name_nobody_holds_is_not_found_even_with_a_task_down(cluster, tasks):
    name = name_recorded_on(cluster, PS1, "nowhere")
    tasks.stop("ps", 1)
    with qs.connect(cluster.target(W2), operation_timeout=10, route_direct=False) as c:
        with pytest.raises(qs.UnavailableError, match=r"/job:ps/task:1 at 127\.0\.0\.1:\d+"):
            c.queue(name)


def test_a_hung_task_delays_names_homed_elsewhere_by_seconds_not_minutes(cluster, tasks):
    import os
    import signal

    fresh = name_recorded_on(cluster, PS1, "hung")
    pid = cluster.procs[PS1].proc.pid
    os.kill(pid, signal.SIGSTOP)  # accepts connections (the kernel does), answers nothing
    try:
        start = time.monotonic()
        with qs.connect(cluster.target(W2), operation_timeout=10, route_direct=False) as c:
            with c.device(W1):
                made = c.variable(fresh, 7.0)
            made.initialize()
            assert made.read() == 7.0
        assert time.monotonic() - start < 8
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("route_direct", [False, True], ids=["forwarded", "direct"])
def test_every_call_to_a_hung_task_ends_by_its_deadline_naming_the_task(cluster, tasks, route_direct):
    import os
    import signal

    from queueserver.channel import TIMEOUT_GRACE_S
    from queueserver.forwarding import FORWARD_GRACE_S

    grace = TIMEOUT_GRACE_S if route_direct else FORWARD_GRACE_S
    with qs.connect(cluster.target(W0), operation_timeout=2, route_direct=route_direct) as c:
        with c.device(PS1):
            v = c.variable(name_recorded_on(cluster, PS0, "hung_v"), 1.0)
            q = c.fifo_queue(name_recorded_on(cluster, PS0, "hung_q"), capacity=4, dtypes=[np.int64], shapes=[[]])
        v.initialize()
        pid = cluster.procs[PS1].proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            for call, limit in ((v.read, 2 + grace), (lambda: q.dequeue(timeout=1), 1 + grace)):
                start = time.monotonic()
                with pytest.raises(qs.DeadlineExceededError, match=r"task /job:ps/task:1 at 127\.0\.0\.1:\d+"):
                    call()
                assert time.monotonic() - start < limit + 1.0
        finally:
            os.kill(pid, signal.SIGCONT)
        assert v.read() == 1.0  # back: the same link works again
