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


def test_sparse_cluster_spec_keeps_its_task_indices():
    # TensorFlow: as_dict() gives a sparse job as {index: address}, job_tasks() has None holes,
    # and a copy or a round trip keeps the indices (before: both renumbered the tasks from 0).
    spec = qs.ClusterSpec({"ps": ["p0:1", "p1:1"], "sparse": {0: "s0:1", 3: "s3:1"}})
    assert spec.as_dict() == {"ps": ["p0:1", "p1:1"], "sparse": {0: "s0:1", 3: "s3:1"}}
    assert spec.job_tasks("sparse") == ["s0:1", None, None, "s3:1"]
    assert spec.task_indices("sparse") == [0, 3] and spec.num_tasks("sparse") == 2
    for copy in (qs.ClusterSpec(spec), qs.ClusterSpec(spec.as_dict())):
        assert copy == spec and copy.task_address("sparse", 3) == "s3:1"
    assert qs.ClusterSpec({"w": {1: "a:1"}}) != qs.ClusterSpec({"w": {0: "a:1"}})
    assert qs.ClusterSpec({"w": {0: "a:1"}}) == qs.ClusterSpec({"w": ["a:1"]})
    assert qs.ClusterSpec({"w": {"1": "a:1"}}).task_indices("w") == [1]  # JSON's string keys
    assert qs.ClusterSpec({}).jobs == []


def test_cluster_spec_misuse_raises_tensorflows_value_and_type_errors():
    spec = qs.ClusterSpec({"ps": ["p0:1"], "sparse": {0: "s0:1", 3: "s3:1"}})
    for call in (lambda: spec.num_tasks("nope"), lambda: spec.task_indices("nope"), lambda: spec.job_tasks("nope"),
                 lambda: spec.task_address("nope", 0), lambda: spec.task_address("sparse", 2)):
        with pytest.raises(ValueError) as caught:  # TensorFlow's ValueError ...
            call()
        assert isinstance(caught.value, qs.InvalidArgumentError)  # ... and still this project's error
    with pytest.raises(TypeError, match="must be a dictionary"):
        qs.ClusterSpec(["a:1"])
    with pytest.raises(TypeError, match="The tasks for job 'job' must be a list or a dictionary"):
        qs.ClusterSpec({"job": "a:1"})


def test_a_sparse_cluster_routes_each_task_to_its_own_address(tmp_path):
    # Before: the hello sent the sparse job as a list, so the client linked /job:ps/task:1 to task
    # 2's address and /job:ps/task:2 raised IndexError.
    import json

    from support import ServerProcess, free_ports

    ports = free_ports(3)
    spec = {"ps": {"1": f"127.0.0.1:{ports[0]}", "2": f"127.0.0.1:{ports[1]}"}, "worker": [f"127.0.0.1:{ports[2]}"]}
    path = tmp_path / "sparse.json"
    path.write_text(json.dumps(spec))
    procs = [ServerProcess(cmd=[sys.executable, "-m", "queueserver", "--log-level", "WARNING", "serve",
                                "--cluster", str(path), "--job", job, "--task", str(i)])
             for job, i in (("ps", 1), ("ps", 2), ("worker", 0))]
    try:
        with qs.connect(spec["worker"][0], operation_timeout=10) as c:
            assert c._async.cluster["ps"] == {1: spec["ps"]["1"], 2: spec["ps"]["2"]}
            for i in (1, 2):
                with c.device(f"/job:ps/task:{i}"):
                    v = c.variable(f"sparse_v{i}", float(i))
                v.initialize()
                assert v.device == f"/job:ps/task:{i}" and v.read() == float(i)
                assert v._async.conn.label == f"task /job:ps/task:{i} at {spec['ps'][str(i)]}"
            p = c.partitioned_variable("sparse_table", [4, 2], num_shards=2)  # its shards: over the ps tasks
            assert [s.device for s in p._async.shards] == ["/job:ps/task:1", "/job:ps/task:2"]
            homes = {t["task"]: sorted(v["name"] for v in t.get("variables", []))
                     for t in c.status(cluster=True)["cluster"]}
            assert homes["/job:ps/task:1"] == ["sparse_table/part_0", "sparse_v1"]
            assert homes["/job:ps/task:2"] == ["sparse_table/part_1", "sparse_v2"]
            c.reset([""])
    finally:
        for proc in procs:
            proc.stop()


def test_replica_device_setter_places_as_tensorflow(sess, cluster):
    # TensorFlow asks the round robin only when the resource's job is unset or the ps job, and its
    # STANDARD_PS_OPS holds ResourceConditionalAccumulator (not SparseConditionalAccumulator).
    with sess.device(qs.replica_device_setter(ps_tasks=2)):
        a1 = sess.variable("rds_a1", 0.0)
        with sess.device("/job:worker/task:0"):
            a2 = sess.variable("rds_a2", 0.0)  # another job: uses no round-robin slot
        acc = sess.conditional_accumulator("rds_acc", shape=[])
        sparse = sess.sparse_conditional_accumulator("rds_sparse", shape=[3, 2])
        a3 = sess.variable("rds_a3", 0.0)
    assert [a1.device, a2.device, acc.device, sparse.device, a3.device] == [PS0, W0, PS1, W0, PS0]
    with sess.device(qs.replica_device_setter(ps_tasks=1, cluster=cluster.spec)):  # cluster= wins
        assert [sess.variable(f"rds_c{i}", 0.0).device for i in range(2)] == [PS0, PS1]
    seen = []

    def strategy(resource):
        seen.append((resource.type, resource.name, resource.device))
        return 1

    with sess.device(qs.replica_device_setter(ps_tasks=2, ps_strategy=strategy)):
        assert [sess.variable(f"rds_s{i}", 0.0).device for i in range(2)] == [PS1, PS1]
        with sess.device("/job:ps"):
            assert sess.conditional_accumulator("rds_s_acc", shape=[]).device == PS1
    assert seen == [("Variable", "rds_s0", ""), ("Variable", "rds_s1", ""), ("ConditionalAccumulator", "rds_s_acc", "/job:ps")]
    with pytest.raises(TypeError, match="ps_strategy must be callable"):
        qs.replica_device_setter(ps_tasks=2, ps_strategy=1)


def test_replica_device_setter_merge_devices_and_its_no_op_cases():
    from queueserver.cluster import ResourceInfo

    inner = ResourceInfo("Variable", "v", device="/task:1")
    assert qs.replica_device_setter(ps_tasks=2)(inner) == "/job:ps/task:1"
    assert qs.replica_device_setter(ps_tasks=2, merge_devices=False)(inner) == "/task:1"
    assert qs.replica_device_setter(ps_tasks=2, ps_ops=["VariableV2"])(ResourceInfo("Variable", "v")) == "/job:ps/task:0"
    # TensorFlow returns None (no placement) without ps tasks; device(None) takes it.
    assert qs.replica_device_setter(cluster={"worker": ["h:1"]}) is None
    assert qs.replica_device_setter(ps_tasks=0) is None and qs.replica_device_setter() is None


def test_device_none_clears_the_enclosing_blocks(sess):
    with sess.device("/job:ps/task:1"):
        with sess.device(None):
            cleared = sess.variable("dev_none", 0.0)
            with sess.device("/job:worker/task:2"):
                inner = sess.variable("dev_none_inner", 0.0)
        with sess.device(qs.replica_device_setter(ps_tasks=0)):  # None too
            no_op = sess.variable("dev_none_setter", 0.0)
        kept = sess.variable("dev_none_after", 0.0)
    assert (cleared.device, inner.device, no_op.device, kept.device) == (PS0, W2, PS0, PS1)


def test_device_names_parse_as_tensorflows_device_spec(sess):
    parse = qs.DeviceSpec.from_string
    assert parse("/device:CPU:0/job:ps/task:1").to_string() == "/job:ps/task:1/device:CPU:0"
    assert parse("/task:1/job:ps").to_string() == "/job:ps/task:1"
    assert parse("/cpu").to_string() == "/device:CPU:*" and parse("/GPU:0").to_string() == "/device:GPU:0"
    for bad, message in (("/cpu:0/gpu:0", "Multiple device types"), ("/JOB:ps", "unknown part"),
                         ("/job:ps/task:x", "task 'x' is not a number")):
        with pytest.raises(ValueError, match=message):
            parse(bad)
    with sess.device("/device:CPU:0/job:worker/task:1"):
        any_order = sess.variable("dev_order", 0.0)
    with sess.device(qs.DeviceSpec(job="worker", task=2)):
        spec_object = sess.variable("dev_spec_object", 0.0)
    assert (any_order.device, spec_object.device) == (W1, W2)
