"""Cluster resolvers: TF_CONFIG, Slurm and Kubernetes names, as TensorFlow's resolvers read them
(the cases of TensorFlow's tfconfig/slurm resolver tests), and real daemons started from real
environment variables on loopback. The same resolvers across network hosts: test_netns.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import queueserver as qs
from queueserver import resolvers
from support import REPO, ServerProcess, free_ports


def serve_cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "queueserver", "--log-level", "WARNING", "serve", *extra]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "TF_CONFIG" and not k.startswith("SLURM_")}
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=REPO, env={**clean, **env})


def said(proc: ServerProcess, text: str, timeout: float = 10) -> bool:
    """Whether the server printed ``text`` (its output is drained by threads, so wait for it)."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in list(proc.output)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- TF_CONFIG -----------------------------------------------------------------------------------

def tf_config(cluster: dict, job: str | None = None, index: int = 0) -> dict[str, str]:
    config: dict = {"cluster": cluster}
    if job is not None:
        config["task"] = {"type": job, "index": index}
    return {"TF_CONFIG": json.dumps(config)}


def test_tf_config_gives_the_cluster_and_this_task():
    env = tf_config({"ps": ["h0:2222", "h1:2222"], "worker": ["w0:2222"]}, "ps", 1)
    found = resolvers.from_tf_config(env)
    assert (found.job, found.task, found.address) == ("ps", 1, "h1:2222")
    assert qs.ClusterSpec.from_tf_config(env) == qs.ClusterSpec({"ps": ["h0:2222", "h1:2222"], "worker": ["w0:2222"]})
    assert "this task /job:ps/task:1 at h1:2222; peers: /job:ps/task:0 h0:2222, /job:worker/task:0 w0:2222" \
        in found.describe()
    # As TFConfigClusterResolver: no "task" is no task; other keys are ignored.
    env = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["w0:1"]}, "rpc_layer": "grpc", "environment": "cloud"})}
    assert (resolvers.from_tf_config(env).job, resolvers.from_tf_config(env).task) == (None, None)


def test_tf_config_trainer_numbering_follows_tensorflow():
    cluster = {"chief": ["c:1"], "ps": ["p:1"], "worker": ["w0:1", "w1:1"]}
    assert resolvers.from_tf_config(tf_config(cluster, "chief", 0)).replica_index == 0
    assert resolvers.from_tf_config(tf_config(cluster, "worker", 1)).replica_index == 2
    assert resolvers.from_tf_config(tf_config({"worker": ["w0:1", "w1:1"]}, "worker", 1)).replica_index == 1


@pytest.mark.parametrize("env, message", [
    ({}, "TF_CONFIG: not set"),
    ({"TF_CONFIG": "{not json"}, "TF_CONFIG: not valid JSON"),
    ({"TF_CONFIG": "[1]"}, "TF_CONFIG: must be a JSON object"),
    ({"TF_CONFIG": '{"task": {"type": "ps"}}'}, "TF_CONFIG: has no \"cluster\""),
    (tf_config({"ps": ["h0:2222"]}, "ps", 3), "TF_CONFIG: task index 3 is out of range for job 'ps'"),
    (tf_config({"ps": ["h0:2222"]}, "worker", 0), "TF_CONFIG: job 'worker' is not in the cluster"),
    (tf_config({"ps": ["h0"]}, "ps", 0), "TF_CONFIG: /job:ps/task:0: address 'h0' needs host:port"),
])
def test_a_broken_tf_config_names_it(env, message):
    with pytest.raises(qs.InvalidArgumentError) as info:
        resolvers.from_tf_config(env)
    assert str(info.value).startswith(message)


def test_daemons_and_clients_started_with_only_tf_config_form_the_cluster(tmp_path):
    ports = free_ports(3)
    cluster = {"ps": [f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"], "worker": [f"127.0.0.1:{ports[2]}"]}
    procs = [ServerProcess(cmd=serve_cmd(), env=tf_config(cluster, job, i))
             for job, i in (("ps", 0), ("ps", 1), ("worker", 0))]
    try:
        assert [p.target for p in procs] == [f"http://{a}" for a in cluster["ps"] + cluster["worker"]]
        with qs.connect(cluster["worker"][0], operation_timeout=10) as c:
            assert [t["task"] for t in c.status(cluster=True)["cluster"]] == \
                ["/job:ps/task:0", "/job:ps/task:1", "/job:worker/task:0"]
        assert said(procs[1], "cluster from TF_CONFIG: this task /job:ps/task:1 at " + cluster["ps"][1])
        # The loader with no --target loads into this task's server (TF_CONFIG's worker 0).
        (tmp_path / "a.txt").write_text("x\ny\nz\n")
        load = run_cli([sys.executable, "-m", "pipeline", "load", "--queue", "tfc_lines", "--format", "text",
                        "--files", str(tmp_path / "a.txt"), "--quiet"], tf_config(cluster, "worker", 0))
        assert load.returncode == 0, load.stderr
        assert "cluster from TF_CONFIG: this task /job:worker/task:0" in load.stderr
        with qs.connect(cluster["ps"][0], operation_timeout=10) as c:
            q = c.fifo_queue("tfc_lines", capacity=10_000, dtypes=[object], shapes=[[]])
            assert q.device == "/job:worker/task:0" and q.size() == 3
            c.reset([""])
    finally:
        for p in procs:
            p.stop()


def test_trainer_cli_reads_tf_config(tmp_path):
    # One worker of TF_CONFIG (trainer 0, the chief) trains from a queue on its own task.
    ports = free_ports(2)
    cluster = {"ps": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{ports[1]}"]}
    procs = [ServerProcess(cmd=serve_cmd(), env=tf_config(cluster, job, 0)) for job in ("ps", "worker")]
    try:
        import numpy as np

        with qs.connect(cluster["worker"][0], operation_timeout=10) as c:
            q = c.fifo_queue("tfc_train", capacity=1000, dtypes=[np.float32, np.int64], shapes=[[4], []])
            q.enqueue_many((np.ones((64, 4), np.float32), np.zeros(64, np.int64)))
            q.close()
        out = run_cli([sys.executable, "-m", "compute", "train", "--queue", "tfc_train", "--model", "softmax:4,2",
                       "--batch", "16", "--no-progress", "--scope", "tfc"], tf_config(cluster, "worker", 0))
        assert out.returncode == 0, out.stderr
        assert "this task /job:worker/task:0" in out.stderr
        assert json.loads(out.stdout.splitlines()[-1])["samples"] == 64
        with qs.connect(cluster["ps"][0], operation_timeout=10) as c:
            homes = {t["task"]: [v["name"] for v in t.get("variables", [])] for t in c.status(cluster=True)["cluster"]}
            assert any("tfc" in name for name in homes["/job:ps/task:0"])  # parameters sharded over TF_CONFIG's ps
            c.reset([""])
    finally:
        for p in procs:
            p.stop()


@pytest.mark.parametrize("cmd", [
    serve_cmd(),
    [sys.executable, "-m", "pipeline", "load", "--queue", "q", "--format", "text", "--files", "x"],
    [sys.executable, "-m", "compute", "train", "--queue", "q"],
])
def test_each_cli_fails_at_start_with_one_line_naming_tf_config(cmd):
    out = run_cli(cmd, tf_config({"ps": ["127.0.0.1:1"]}, "ps", 4))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert "TF_CONFIG: task index 4 is out of range for job 'ps'" in out.stderr


def test_serve_with_an_unresolvable_peer_fails_at_start_naming_tf_config():
    port = free_ports(1)[0]
    env = tf_config({"ps": [f"127.0.0.1:{port}"], "worker": ["no-such-host.invalid:2222"]}, "ps", 0)
    out = run_cli(serve_cmd(), env)
    assert out.returncode == 2
    assert "queueserver serve: TF_CONFIG: /job:worker/task:0 no-such-host.invalid:2222 does not resolve" in out.stderr


# -- Slurm ---------------------------------------------------------------------------------------

def test_expand_hostlist_as_tensorflow():
    assert resolvers.expand_hostlist("n1") == ["n1"]
    assert resolvers.expand_hostlist("n[1,3]") == ["n1", "n3"]
    assert resolvers.expand_hostlist("n[1-3]") == ["n1", "n2", "n3"]
    assert resolvers.expand_hostlist("n[1-2],m5,o[3-4,6,7-9]") == ["n1", "n2", "m5", "o3", "o4", "o6", "o7", "o8", "o9"]
    assert resolvers.expand_hostlist("n[0001-0003],m5,o[009-011]") == \
        ["n0001", "n0002", "n0003", "m5", "o009", "o010", "o011"]
    assert resolvers.expand_hostlist("node[01-03,7]") == ["node01", "node02", "node03", "node7"]
    assert resolvers.expand_hostlist("rack[1-2]-ib") == ["rack1-ib", "rack2-ib"]
    for bad in ("n[1-", "n[3-1]", "n[a-b]", "n[[1]]", ",n1"):
        with pytest.raises(qs.InvalidArgumentError, match="hostlist"):
            resolvers.expand_hostlist(bad)


def test_expand_tasks_per_node_as_tensorflow():
    assert resolvers.expand_tasks_per_node("2") == [2]
    assert resolvers.expand_tasks_per_node("2,1,3") == [2, 1, 3]
    assert resolvers.expand_tasks_per_node("3(x2),2,1") == [3, 3, 2, 1]
    assert resolvers.expand_tasks_per_node("3(x2),2,11(x4)") == [3, 3, 2, 11, 11, 11, 11]
    assert resolvers.expand_tasks_per_node("13(x10)") == [13] * 10
    with pytest.raises(qs.InvalidArgumentError, match="malformed"):
        resolvers.expand_tasks_per_node("2(3)")


def slurm_env(rank: int, ntasks: int, nodelist: str, per_node: str | None) -> dict[str, str]:
    env = {"SLURM_PROCID": str(rank), "SLURM_STEP_NUM_TASKS": str(ntasks), "SLURM_STEP_NODELIST": nodelist}
    if per_node is not None:
        env["SLURM_STEP_TASKS_PER_NODE"] = per_node
    return env


def test_slurm_assignment_is_tensorflows():
    # TensorFlow's testSimpleSuccessfulRetrieval and testMultiTaskPerNodeRetrieval, with port base 8888.
    env = slurm_env(0, 3, "t02n13,t02n41,t02n43", None)
    found = resolvers.from_slurm({"ps": 1, "worker": 2}, port_base=8888, tasks_per_node=1, environ=env)
    assert found.spec.as_dict() == {"ps": ["t02n13:8888"], "worker": ["t02n41:8888", "t02n43:8888"]}
    env = slurm_env(1, 5, "t02n13,t02n41,t02n43", "2(x2),1")
    found = resolvers.from_slurm({"ps": 1, "worker": 4}, port_base=8888, environ=env)
    assert found.spec.as_dict() == {"ps": ["t02n13:8888"], "worker": ["t02n13:8889", "t02n41:8888", "t02n41:8889",
                                                                     "t02n43:8888"]}
    assert (found.job, found.task) == ("worker", 0)
    # Default: every task a worker; nodes in sorted name order; port base 2222.
    found = resolvers.from_slurm(environ=slurm_env(2, 3, "b,a,c", "1(x3)"))
    assert found.spec.as_dict() == {"worker": ["a:2222", "b:2222", "c:2222"]} and found.task == 2


@pytest.mark.parametrize("env, jobs, message", [
    ({}, None, "SLURM_PROCID: not set"),
    (slurm_env(0, 3, "n[1-3]", "1(x3)") | {"SLURM_PROCID": "x"}, None, "SLURM_PROCID: 'x' is not an integer"),
    (slurm_env(3, 3, "n[1-3]", "1(x3)"), None, "SLURM_PROCID: rank 3 is out of range"),
    (slurm_env(0, 3, "n[1-", "1(x3)"), None, "SLURM_STEP_NODELIST: hostlist 'n[1-' is malformed"),
    (slurm_env(0, 3, "n[1-3]", None), None, "SLURM_STEP_TASKS_PER_NODE: not set"),
    (slurm_env(0, 3, "n[1-3]", "1(x2)"), None, "SLURM_STEP_TASKS_PER_NODE: gives 2 node(s)"),
    (slurm_env(0, 4, "n[1-3]", "1(x3)"), None, "SLURM_STEP_TASKS_PER_NODE: places 3 task(s)"),
    (slurm_env(0, 3, "n[1-3]", "1(x3)"), {"ps": 2, "worker": 3}, "--jobs: ps=2,worker=3 asks for 5 task(s)"),
])
def test_a_broken_slurm_step_names_the_variable(env, jobs, message):
    with pytest.raises(qs.InvalidArgumentError) as info:
        resolvers.from_slurm(jobs, environ=env)
    assert str(info.value).startswith(message)


def test_parse_jobs():
    assert resolvers.parse_jobs("ps=2,worker=3") == {"ps": 2, "worker": 3}
    for bad in ("ps", "ps=0", "ps=2,ps=1", "ps=x", "=2"):
        with pytest.raises(qs.InvalidArgumentError, match="--jobs"):
            resolvers.parse_jobs(bad)


def free_port_run(n: int) -> int:
    """A base port whose next ``n`` ports were all free a moment ago."""
    import socket

    for base in free_ports(8):
        if base + n > 65535:
            continue
        socks = []
        try:
            for k in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def test_slurm_step_of_real_daemons_on_two_loopback_nodes():
    # Two "nodes" (127.0.0.1 and 127.0.0.2 are both this machine's loopback), two tasks each: the
    # step's ranks 0..3 become ps:0, ps:1 (node .1), worker:0, worker:1 (node .2), as TensorFlow assigns.
    base = free_port_run(2)
    procs = [ServerProcess(cmd=serve_cmd("--cluster-from", "slurm", "--jobs", "ps=2,worker=2", "--port-base", str(base)),
                           env=slurm_env(rank, 4, "127.0.0.[1-2]", "2(x2)")) for rank in range(4)]
    try:
        assert [p.target for p in procs] == [f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}",
                                             f"http://127.0.0.2:{base}", f"http://127.0.0.2:{base + 1}"]
        with qs.connect(procs[3].target, operation_timeout=10) as c:
            assert [t["task"] for t in c.status(cluster=True)["cluster"]] == \
                ["/job:ps/task:0", "/job:ps/task:1", "/job:worker/task:0", "/job:worker/task:1"]
            with c.device("/job:ps/task:1"):
                v = c.variable("slurm_v", 2.0)
            v.initialize()
            assert v.read() == 2.0
            c.reset([""])
        assert said(procs[2], f"cluster from slurm: this task /job:worker/task:0 at 127.0.0.2:{base}")
    finally:
        for p in procs:
            p.stop()


def test_serve_from_a_broken_slurm_step_fails_with_one_line():
    out = run_cli(serve_cmd("--cluster-from", "slurm", "--jobs", "ps=2,worker=3"), slurm_env(0, 4, "n[1-4]", "1(x4)"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "--jobs: ps=2,worker=3 asks for 5 task(s) but the Slurm step has 4 (SLURM_STEP_NUM_TASKS)" in out.stderr


# -- Kubernetes ----------------------------------------------------------------------------------

def test_kubernetes_names_from_replica_counts_and_the_pod_hostname():
    found = resolvers.from_kubernetes({"ps": 2, "worker": 3}, namespace="ml", environ={"HOSTNAME": "qs-worker-2"})
    assert found.spec.as_dict() == {
        "ps": ["qs-ps-0.qs-ps.ml.svc:2222", "qs-ps-1.qs-ps.ml.svc:2222"],
        "worker": [f"qs-worker-{i}.qs-worker.ml.svc:2222" for i in range(3)]}
    assert (found.job, found.task) == ("worker", 2)
    found = resolvers.from_kubernetes({"ps": 1}, port=7000, environ={"HOSTNAME": "qs-ps-0", "POD_NAMESPACE": "a"})
    assert found.address == "qs-ps-0.qs-ps.a.svc:7000"


@pytest.mark.parametrize("env, message", [
    ({"HOSTNAME": "qs-ps-0"}, "POD_NAMESPACE: not set"),
    ({"HOSTNAME": "qs-ps-2", "POD_NAMESPACE": "ml"}, "HOSTNAME: task index 2 is out of range for job 'ps'"),
    ({"HOSTNAME": "loader-x7b2", "POD_NAMESPACE": "ml"}, "HOSTNAME: 'loader-x7b2' is not a task's pod"),
])
def test_a_broken_kubernetes_pod_names_the_variable(env, message):
    if "POD_NAMESPACE" not in env and os.path.exists(resolvers._NAMESPACE_FILE):
        pytest.skip("running in a Kubernetes pod: the service account names the namespace")
    with pytest.raises(qs.InvalidArgumentError) as info:
        resolvers.from_kubernetes({"ps": 2, "worker": 1}, environ=env)
    assert str(info.value).startswith(message)


def test_serve_cluster_from_kubernetes_needs_jobs():
    out = run_cli(serve_cmd("--cluster-from", "kubernetes"), {"HOSTNAME": "qs-ps-0", "POD_NAMESPACE": "ml"})
    assert out.returncode == 2 and "--jobs: --cluster-from kubernetes needs the replica counts" in out.stderr


# -- bind addresses ------------------------------------------------------------------------------

def test_a_task_binds_its_host_from_the_spec_unless_host_says_otherwise():
    port = free_ports(1)[0]
    env = tf_config({"ps": [f"127.0.0.2:{port}"]}, "ps", 0)
    spec_host = ServerProcess(cmd=serve_cmd(), env=env)
    try:
        assert spec_host.target == f"http://127.0.0.2:{port}"   # the spec's host, not 0.0.0.0 or 127.0.0.1
    finally:
        spec_host.stop()
    given = ServerProcess(cmd=serve_cmd("--host", "127.0.0.3"), env=env)
    try:
        assert given.target == f"http://127.0.0.3:{port}"       # --host wins; the port is still the spec's
    finally:
        given.stop()
