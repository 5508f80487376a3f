"""The notebook's five-task cluster on loopback: placement, sharding, shared resources, failures."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import queueserver as qs
from support import REPO, crash_connection

PS0, PS1 = "/job:ps/task:0", "/job:ps/task:1"
W0, W1, W2 = "/job:worker/task:0", "/job:worker/task:1", "/job:worker/task:2"


@pytest.fixture
def sess(cluster):
    with qs.connect(cluster.target(PS0), operation_timeout=10) as c:
        yield c
        c.reset(["", "exp"])


def test_cluster_spec_answers_jobs_tasks_and_addresses(cluster):
    spec = qs.ClusterSpec(str(cluster.path))
    assert spec.jobs == ["ps", "worker"] and spec.num_tasks("worker") == 3
    assert spec.task_address("ps", 1) == cluster.spec["ps"][1]
    with pytest.raises(qs.InvalidArgumentError, match="no task 7"):
        spec.task_address("worker", 7)


def test_simple_client_init_on_one_task_then_another_sees_it(cluster):
    script = REPO / "examples" / "simple_client.py"

    def run(target, *args):
        return subprocess.run([sys.executable, str(script), target, *args], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert run(cluster.target(W0), "init") == "1.0"
    assert run(cluster.target(W1)) == "2.0"
    with qs.connect(cluster.target(W2)) as c:
        c.reset([""])


def test_pinning_follows_tensorflow_partial_name_rules(sess):
    with sess.device("/job:ps"):
        a = sess.variable("a", 1.0)
    with sess.device("/job:worker/task:1"):
        q = sess.fifo_queue("b_q", capacity=2, dtypes=[np.float32], shapes=[[]])
    c = sess.variable("c", 0.0)
    assert (a.device, q.device, c.device) == (PS0, W1, PS0)  # no job: the task the client talks to
    a.initialize()
    q.enqueue(a.read() + 2)   # b = a + 2 on a worker
    c.assign(a.read() + q.dequeue())
    assert c.read() == 4.0    # the notebook prints 4.0


def test_replica_device_setter_round_robin_and_nested_scopes(sess):
    with sess.device(qs.replica_device_setter(ps_tasks=2, ps_device="/job:ps", worker_device="/job:worker")):
        vs = [sess.variable(f"v{i}", float(i)) for i in range(1, 6)]
        q = sess.fifo_queue("s", capacity=1, dtypes=[np.float32], shapes=[[]])
        with sess.device("/task:1"):
            p1 = sess.fifo_queue("p1", capacity=1, dtypes=[np.float32], shapes=[[]])
            with sess.device("/cpu:0"):
                p2 = sess.fifo_queue("p2", capacity=1, dtypes=[np.float32], shapes=[[]])
    assert [v.device for v in vs] == [PS0, PS1, PS0, PS1, PS0]
    assert (q.device, p1.device, p2.device) == (W0, W1, W1)


def test_missing_task_fails_unless_soft_placement(cluster, sess):
    with pytest.raises(qs.InvalidArgumentError, match="/job:ps/task:5: no such task"):
        with sess.device("/job:ps/task:5"):
            sess.variable("nowhere", 1.0)
    with qs.connect(cluster.target(W2), allow_soft_placement=True) as soft:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with soft.device("/job:ps/task:5"):
                v = soft.variable("soft", 1.0)
        assert v.device == W2
        assert any("soft placement" in str(w.message) for w in caught)


def test_log_device_placement_prints_each_resource(cluster, capfd):
    with qs.connect(cluster.target(W0), log_device_placement=True) as c:
        with c.device(qs.replica_device_setter(ps_tasks=2)):
            c.variable("logged_a", 1.0)
            c.variable("logged_b", 1.0)
        c.reset([""])
    err = capfd.readouterr().err
    assert f"Variable logged_a: {PS0}" in err and f"Variable logged_b: {PS1}" in err


@pytest.mark.parametrize("route_direct", [True, False])
def test_shared_queue_across_servers(cluster, route_direct):
    with qs.connect(cluster.target(PS0), route_direct=route_direct) as loader, \
            qs.connect(cluster.target(W2), route_direct=route_direct) as trainer:
        with loader.device("/job:ps/task:1"):
            q = loader.fifo_queue("shared_instance_q", capacity=100, dtypes=[np.float32, np.int32],
                                  shapes=[[2], []])
        q.enqueue_many((np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10, dtype=np.int32)))
        q.close()
        tq = trainer.fifo_queue("shared_instance_q", capacity=100, dtypes=[np.float32, np.int32], shapes=[[2], []])
        assert tq.device == PS1
        got = []
        while True:
            try:
                got += tq.dequeue_up_to(4)[1].tolist()
            except qs.OutOfRangeError:
                break
        assert got == list(range(10))
        trainer.reset([""])


def test_forwarded_dequeue_from_a_dead_client_loses_nothing(cluster):
    with qs.connect(cluster.target(W0)) as owner:
        with owner.device(PS1):
            q = owner.fifo_queue("fwd", capacity=100, dtypes=[np.int64], shapes=[[]])
        q.enqueue_many(np.arange(6))
        consumer = qs.connect(cluster.target(W1), route_direct=False)  # through W1, which forwards to PS1
        cq = consumer.fifo_queue("fwd", capacity=100, dtypes=[np.int64], shapes=[[]])
        assert cq.dequeue_many(3).tolist() == [0, 1, 2]
        crash_connection(consumer)
        deadline = time.monotonic() + 5
        while q.size() != 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert q.dequeue_many(6).tolist() == [0, 1, 2, 3, 4, 5]
        owner.reset([""])


def test_reset_reaches_every_task_and_status_shows_the_cluster(cluster, sess):
    with sess.device(qs.replica_device_setter(ps_tasks=2)):
        vs = [sess.variable(f"x{i}", 0.0, container="exp") for i in range(2)]
        q = sess.fifo_queue("exp_q", capacity=1, dtypes=[np.float32], shapes=[[]], container="exp")
    with qs.connect(cluster.target(W2)) as other:
        status = other.status(cluster=True)
        assert [t["task"] for t in status["cluster"]] == [PS0, PS1, W0, W1, W2]
        assert all(t["up"] for t in status["cluster"])
        assert other.reset(["exp"]) == 3
    for handle in (*vs, q):
        with pytest.raises(qs.NotFoundError):
            handle.read() if hasattr(handle, "read") else handle.size()
    out = subprocess.run([sys.executable, "-m", "queueserver", "status", "--cluster", cluster.target(W0)],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count("task /job:") == 5


def test_a_down_task_fails_its_calls_and_comes_back(cluster):
    with qs.connect(cluster.target(W0), operation_timeout=10, route_direct=False) as c:
        with c.device(PS1):
            v = c.variable("on_ps1", 1.0)
        with c.device(W1):
            w = c.variable("on_w1", 1.0)
        w.initialize()
        cluster.procs[PS1].stop()
        start = time.monotonic()
        with pytest.raises(qs.UnavailableError, match="/job:ps/task:1"):
            v.initialize()
        assert time.monotonic() - start < 5  # bounded retry, not a hang
        assert w.assign_add(1.0) == 2.0      # calls homed elsewhere keep working
        cluster.start("ps", 1)
        with c.device(PS1):
            again = c.variable("on_ps1_again", 3.0)
        again.initialize()
        assert again.read() == 3.0
        c.reset([""])


def test_cluster_up_starts_every_local_task_and_stops_them_together(tmp_path):
    import json
    import signal

    from support import free_ports

    ports = free_ports(3)
    spec = {"ps": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{ports[1]}", f"127.0.0.1:{ports[2]}"]}
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, "-m", "queueserver", "--log-level", "WARNING", "cluster", "up",
                             str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert "started 3 task(s)" in proc.stdout.readline()
        for address in spec["ps"] + spec["worker"]:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with qs.connect(address) as c:
                        assert c.status()["task"] in ("/job:ps/task:0", "/job:worker/task:0", "/job:worker/task:1")
                    break
                except qs.UnavailableError:
                    assert time.monotonic() < deadline, f"{address} never came up"
                    time.sleep(0.05)
        with qs.connect(spec["worker"][1]) as c:
            with c.device("/job:ps/task:0"):
                v = c.variable("up", 1.0)
            assert v.device == "/job:ps/task:0"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
