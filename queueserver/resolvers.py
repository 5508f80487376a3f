"""Cluster resolvers: the cluster, and this task's place in it, from the engine that started it.

Three engines start a TensorFlow 1 ps/worker cluster, and each leaves what a task needs in its
environment (facts from TensorFlow's ``tf.distribute.cluster_resolver``; the code is ours):

- ``TF_CONFIG`` (Kubeflow's TFJob, TF1 estimators): ``{"cluster": {"ps": [...], ...},
  "task": {"type": "ps", "index": 1}}`` (:func:`from_tf_config`).
- Slurm (``srun``): the step's nodes (``SLURM_STEP_NODELIST``, hostlist expressions such as
  ``node[01-03,7]``), how many tasks run on each (``SLURM_STEP_TASKS_PER_NODE``, such as
  ``2(x3),1``), the step's task count (``SLURM_STEP_NUM_TASKS``) and this process's rank
  (``SLURM_PROCID``). With the job sizes (``ps=2,worker=3``) and a port base, tasks are assigned
  as TensorFlow's ``SlurmClusterResolver`` assigns them (:func:`from_slurm`).
- Kubernetes without API access: one StatefulSet per job behind a headless Service of the same
  name gives task ``i`` of job ``ps`` the stable name ``qs-ps-i.qs-ps.NAMESPACE.svc``; the spec
  follows from the replica counts, this task from the pod's hostname (:func:`from_kubernetes`).

Each returns a :class:`Resolution`. :func:`add_arguments` and :func:`resolve_serve_args` are the
``queueserver serve`` hooks (``--cluster-from``), :func:`tf_config_task` the loader's and
:func:`trainer_args_from_tf_config` the trainer's. A misconfigured environment fails with one line that names the variable to fix
(:class:`~queueserver.errors.InvalidArgumentError`); the command-line hooks print it and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from typing import Mapping, NoReturn

from queueserver.cluster import ClusterSpec, task_name
from queueserver.errors import InvalidArgumentError

__all__ = ["Resolution", "from_tf_config", "from_slurm", "from_kubernetes", "expand_hostlist",
           "expand_tasks_per_node", "parse_jobs", "check_names", "add_arguments", "resolve_serve_args",
           "tf_config_task", "trainer_args_from_tf_config", "kubernetes_name", "DEFAULT_PORT_BASE",
           "KUBERNETES_PREFIX"]

DEFAULT_PORT_BASE = 2222  # TensorFlow's Slurm resolver starts at 8888; 2222 is this project's port
KUBERNETES_PREFIX = "qs"  # StatefulSet and Service names: qs-ps, qs-worker (deploy/kubernetes/)
# The jobs a TF1 trainer treats as the chief's (TF_CONFIG ``chief`` or ``master``, task 0).
_CHIEF_JOBS = ("chief", "master")
_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True)
class Resolution:
    """A resolved cluster and this task's place in it.

    Attributes:
        spec: every job's task addresses.
        job, task: this task (``None`` when the environment names no task, e.g. a TF_CONFIG
            without ``"task"``).
        source: the engine: ``"TF_CONFIG"``, ``"slurm"`` or ``"kubernetes"``.
        fix: what to change when an address is wrong (named in error messages).
    """

    spec: ClusterSpec
    job: str | None
    task: int | None
    source: str
    fix: str

    @property
    def address(self) -> str | None:
        """This task's ``host:port``, or ``None`` when no task is named."""
        if self.job is None or self.task is None:
            return None
        return self.spec.task_address(self.job, self.task)

    @property
    def replica_index(self) -> int | None:
        """This task's index among the trainers, as TensorFlow counts it (``id_in_cluster``): a
        ``chief`` (or ``master``) task is 0 and ``worker`` ``i`` is ``i + 1``; without a chief job,
        worker ``i`` is ``i``. Other jobs keep their own index."""
        if self.task is None:
            return None
        if self.job == "worker":
            return self.task + sum(self.spec.num_tasks(j) for j in _CHIEF_JOBS if j in self.spec.jobs)
        return self.task

    def describe(self) -> str:
        """One line for the start of a run: the engine, this task and its peers."""
        me = task_name(self.job, self.task) if self.job is not None and self.task is not None else None
        peers = [f"{task_name(j, i)} {self.spec.task_address(j, i)}" for j in self.spec.jobs
                 for i in self.spec.task_indices(j) if (j, i) != (self.job, self.task)]
        head = f"this task {me} at {self.address}" if me else "no task of its own"
        return f"cluster from {self.source}: {head}; peers: {', '.join(peers) or 'none'}"


def _fail(variable: str, message: str) -> NoReturn:
    raise InvalidArgumentError(f"{variable}: {message}")


def _spec(cluster: object, variable: str) -> ClusterSpec:
    try:
        return ClusterSpec(cluster)
    except InvalidArgumentError as exc:
        _fail(variable, str(exc))


def _check_task(spec: ClusterSpec, job: str, task: int, variable: str, fix: str) -> None:
    if job not in spec.jobs:
        _fail(variable, f"job {job!r} is not in the cluster (jobs: {', '.join(spec.jobs)}); {fix}")
    if task not in spec.task_indices(job):
        _fail(variable, f"task index {task} is out of range for job {job!r}, which has "
                        f"{spec.num_tasks(job)} task(s); {fix}")


def from_tf_config(environ: Mapping[str, str] | None = None) -> Resolution:
    """The cluster and this task from ``TF_CONFIG``, as ``TFConfigClusterResolver`` reads it.

    ``{"cluster": {"ps": ["ps0:2222", "ps1:2222"], "worker": [...]}, "task": {"type": "ps",
    "index": 1}}``; ``"task"`` may be absent (then ``job`` and ``task`` are ``None``), other keys
    (``rpc_layer``, ``environment``, ``session_master``) are ignored.

    Args:
        environ: the environment to read (default ``os.environ``).

    Raises:
        InvalidArgumentError: ``TF_CONFIG`` is unset, not JSON, has no cluster, or names a task
            that is not in it; the message starts with ``TF_CONFIG``.

    Example:
        >>> env = {"TF_CONFIG": '{"cluster": {"ps": ["h0:2222", "h1:2222"]}, "task": {"type": "ps", "index": 1}}'}
        >>> r = from_tf_config(env)
        >>> r.job, r.task, r.address
        ('ps', 1, 'h1:2222')
    """
    env = os.environ if environ is None else environ
    raw = env.get("TF_CONFIG")
    if not raw:
        _fail("TF_CONFIG", "not set: set it to {\"cluster\": {...}, \"task\": {\"type\": ..., \"index\": N}}")
    try:
        config = json.loads(raw)
    except ValueError as exc:
        _fail("TF_CONFIG", f"not valid JSON ({exc})")
    if not isinstance(config, dict):
        _fail("TF_CONFIG", "must be a JSON object with \"cluster\" and \"task\"")
    if not config.get("cluster"):
        _fail("TF_CONFIG", "has no \"cluster\" (a map of job names to lists of host:port addresses)")
    spec = _spec(config["cluster"], "TF_CONFIG")
    task = config.get("task") or {}
    if not isinstance(task, dict):
        _fail("TF_CONFIG", f"\"task\" must be an object like {{\"type\": \"ps\", \"index\": 0}}, got {task!r}")
    job = task.get("type")
    if job is None:
        return Resolution(spec, None, None, "TF_CONFIG", "fix TF_CONFIG's \"cluster\"")
    try:
        index = int(task.get("index", 0))
    except (TypeError, ValueError):
        _fail("TF_CONFIG", f"task index {task.get('index')!r} is not an integer")
    fix = "fix TF_CONFIG's \"task\" or \"cluster\""
    _check_task(spec, str(job), index, "TF_CONFIG", fix)
    return Resolution(spec, str(job), index, "TF_CONFIG", "fix TF_CONFIG's \"cluster\"")


_HOSTLIST_PART = re.compile(r"([^,\[\]]*)(?:\[([^\]]+)\])?([^,\[\]]*)$")


def _split_hostlist(text: str) -> list[str]:
    """Split at the commas outside brackets: ``n[1-2],m5`` -> ``n[1-2]``, ``m5``."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "[":
            if depth:
                raise ValueError("nested '['")
            depth = 1
        elif ch == "]":
            if not depth:
                raise ValueError("']' without '['")
            depth = 0
        elif ch == "," and not depth:
            if not current:
                raise ValueError("empty host name")
            parts.append(current)
            current = ""
            continue
        current += ch
    if depth:
        raise ValueError("'[' without ']'")
    if current:
        parts.append(current)
    return parts


def expand_hostlist(text: str) -> list[str]:
    """The host names of a Slurm hostlist expression, in order, duplicates kept.

    Ranges keep their zero padding (``n[01-03]`` is ``n01 n02 n03``), as Slurm writes them.

    Raises:
        InvalidArgumentError: a malformed expression, naming it.

    Example:
        >>> expand_hostlist("n[1-2],m5,o[3-4,6,007-009]")
        ['n1', 'n2', 'm5', 'o3', 'o4', 'o6', 'o007', 'o008', 'o009']
    """
    hosts: list[str] = []
    try:
        for part in _split_hostlist(text.strip()):
            match = _HOSTLIST_PART.match(part)
            if match is None:
                raise ValueError(f"cannot read {part!r}")
            prefix, ranges, suffix = match.groups()
            if ranges is None:
                hosts.append(prefix)
                continue
            for item in ranges.split(","):
                low, _, high = item.partition("-")
                high = high or low
                if not (low.isdigit() and high.isdigit()) or int(high) < int(low):
                    raise ValueError(f"bad range {item!r} in {part!r}")
                width = len(low) if low.startswith("0") else 0
                hosts.extend(f"{prefix}{i:0{width}d}{suffix}" for i in range(int(low), int(high) + 1))
    except ValueError as exc:
        raise InvalidArgumentError(f"hostlist {text!r} is malformed: {exc}") from None
    if not hosts:
        raise InvalidArgumentError(f"hostlist {text!r} names no host")
    return hosts


def expand_tasks_per_node(text: str) -> list[int]:
    """Slurm's tasks-per-node list: ``3(x2),2,1`` is ``[3, 3, 2, 1]``.

    Raises:
        InvalidArgumentError: a malformed list.

    Example:
        >>> expand_tasks_per_node("3(x2),2,11(x2)")
        [3, 3, 2, 11, 11]
    """
    out: list[int] = []
    for part in text.strip().split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if match is None:
            raise InvalidArgumentError(f"tasks-per-node list {text!r} is malformed at {part!r}: expected N or N(xK)")
        out += [int(match.group(1))] * int(match.group(2) or 1)
    return out


def parse_jobs(text: str) -> dict[str, int]:
    """``--jobs ps=2,worker=3`` as ``{"ps": 2, "worker": 3}``.

    Raises:
        InvalidArgumentError: a malformed entry or a count below 1.
    """
    jobs: dict[str, int] = {}
    for entry in text.split(","):
        name, eq, count = entry.strip().partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or not count.strip().isdigit():
            raise InvalidArgumentError(f"--jobs {text!r}: expected JOB=N entries such as ps=2,worker=3, got {entry!r}")
        if name in jobs or int(count) < 1:
            raise InvalidArgumentError(f"--jobs {text!r}: job {name!r} is repeated or has fewer than 1 task")
        jobs[name] = int(count)
    return jobs


def _int_var(env: Mapping[str, str], name: str) -> int:
    value = env.get(name)
    if value is None:
        _fail(name, "not set: not running inside a Slurm job step (start the tasks with srun)")
    try:
        return int(value)
    except ValueError:
        _fail(name, f"{value!r} is not an integer")


def from_slurm(jobs: Mapping[str, int] | None = None, *, port_base: int = DEFAULT_PORT_BASE,
               tasks_per_node: int | None = None, environ: Mapping[str, str] | None = None) -> Resolution:
    """The cluster and this task inside a Slurm job step, as TensorFlow's ``SlurmClusterResolver``
    assigns them.

    Each node of ``SLURM_STEP_NODELIST`` runs as many tasks as ``SLURM_STEP_TASKS_PER_NODE`` (or
    ``tasks_per_node``) says, on ports ``port_base``, ``port_base + 1``, ...; the nodes are taken
    in sorted name order, the jobs in sorted name order, and each job takes the next tasks in
    that order; this process is the task whose rank is ``SLURM_PROCID``.

    Args:
        jobs: job name to task count (default: every task a ``worker``); they must add up to
            ``SLURM_STEP_NUM_TASKS``.
        port_base: the first port on each node.
        tasks_per_node: tasks on every node (default: ``SLURM_STEP_TASKS_PER_NODE``).
        environ: the environment to read (default ``os.environ``).

    Raises:
        InvalidArgumentError: a missing or malformed variable, or counts that disagree; the
            message starts with the variable (or option) to fix.

    Example:
        >>> env = {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "3", "SLURM_STEP_NODELIST": "n[1-3]",
        ...        "SLURM_STEP_TASKS_PER_NODE": "1(x3)"}
        >>> r = from_slurm({"ps": 1, "worker": 2}, environ=env)
        >>> r.spec.as_dict(), r.job, r.task
        ({'ps': ['n1:2222'], 'worker': ['n2:2222', 'n3:2222']}, 'worker', 0)
    """
    env = os.environ if environ is None else environ
    rank = _int_var(env, "SLURM_PROCID")
    num_tasks = _int_var(env, "SLURM_STEP_NUM_TASKS")
    if "SLURM_STEP_NODELIST" not in env:
        _fail("SLURM_STEP_NODELIST", "not set: not running inside a Slurm job step (start the tasks with srun)")
    try:
        hosts = expand_hostlist(env["SLURM_STEP_NODELIST"])
    except InvalidArgumentError as exc:
        _fail("SLURM_STEP_NODELIST", str(exc))
    if tasks_per_node is not None:
        if tasks_per_node < 1:
            _fail("--tasks-per-node", f"must be at least 1, got {tasks_per_node}")
        counts = [tasks_per_node] * len(hosts)
    else:
        if "SLURM_STEP_TASKS_PER_NODE" not in env:
            _fail("SLURM_STEP_TASKS_PER_NODE", "not set: set it (or pass --tasks-per-node)")
        try:
            counts = expand_tasks_per_node(env["SLURM_STEP_TASKS_PER_NODE"])
        except InvalidArgumentError as exc:
            _fail("SLURM_STEP_TASKS_PER_NODE", str(exc))
        if len(counts) != len(hosts):
            _fail("SLURM_STEP_TASKS_PER_NODE", f"gives {len(counts)} node(s) but SLURM_STEP_NODELIST has {len(hosts)}")
    per_host = dict(zip(hosts, counts))  # as TensorFlow: a node named twice counts once
    addresses = [f"{host}:{port_base + k}" for host, n in sorted(per_host.items()) for k in range(n)]
    if len(addresses) != num_tasks:
        _fail("SLURM_STEP_TASKS_PER_NODE", f"places {len(addresses)} task(s) on {', '.join(sorted(per_host))} but "
                                           f"SLURM_STEP_NUM_TASKS is {num_tasks}")
    jobs = dict(jobs) if jobs else {"worker": num_tasks}
    if sum(jobs.values()) != num_tasks:
        asked = ",".join(f"{j}={n}" for j, n in jobs.items())
        _fail("--jobs", f"{asked} asks for {sum(jobs.values())} task(s) but the Slurm step has {num_tasks} "
                        f"(SLURM_STEP_NUM_TASKS): start it with srun --ntasks={sum(jobs.values())}")
    if not 0 <= rank < num_tasks:
        _fail("SLURM_PROCID", f"rank {rank} is out of range: the step has {num_tasks} task(s)")
    cluster: dict[str, list[str]] = {}
    own: tuple[str, int] = ("", 0)
    start = 0
    for job in sorted(jobs):
        cluster[job] = addresses[start:start + jobs[job]]
        if start <= rank < start + jobs[job]:
            own = (job, rank - start)
        start += jobs[job]
    return Resolution(ClusterSpec(cluster), own[0], own[1], "slurm",
                      "check SLURM_STEP_NODELIST (the step's nodes must resolve from every node)")


def kubernetes_name(job: str, index: int, namespace: str, prefix: str = KUBERNETES_PREFIX) -> str:
    """A task's stable DNS name: pod ``PREFIX-JOB-INDEX`` of the StatefulSet ``PREFIX-JOB``, behind
    the headless Service of the same name: ``qs-ps-1.qs-ps.NAMESPACE.svc``."""
    return f"{prefix}-{job}-{index}.{prefix}-{job}.{namespace}.svc"


def from_kubernetes(jobs: Mapping[str, int], *, port: int = DEFAULT_PORT_BASE, namespace: str | None = None,
                    prefix: str = KUBERNETES_PREFIX, hostname: str | None = None,
                    environ: Mapping[str, str] | None = None) -> Resolution:
    """The cluster of StatefulSets ``PREFIX-JOB`` (one per job, each behind a headless Service of
    the same name) and this task from the pod's hostname, with no Kubernetes API access.

    Args:
        jobs: job name to replica count (the StatefulSets' ``replicas``).
        port: the port every task listens on (each pod has its own address).
        namespace: the pods' namespace (default: ``POD_NAMESPACE``, else the service account's).
        prefix: the StatefulSets' name prefix.
        hostname: the pod's name (default: ``HOSTNAME``, which Kubernetes sets, else the host name).
        environ: the environment to read (default ``os.environ``).

    Raises:
        InvalidArgumentError: no namespace, or a hostname that is not one of the StatefulSets'
            pods; the message starts with the variable to fix.

    Example:
        >>> r = from_kubernetes({"ps": 2, "worker": 3}, namespace="ml", hostname="qs-ps-1")
        >>> r.job, r.task, r.address
        ('ps', 1, 'qs-ps-1.qs-ps.ml.svc:2222')
    """
    env = os.environ if environ is None else environ
    if namespace is None:
        namespace = env.get("POD_NAMESPACE")
    if namespace is None and os.path.exists(_NAMESPACE_FILE):
        with open(_NAMESPACE_FILE) as f:
            namespace = f.read().strip()
    if not namespace:
        _fail("POD_NAMESPACE", "not set: give the pod its namespace (env valueFrom fieldRef metadata.namespace) "
                               "or pass --namespace")
    if hostname is None:
        hostname = env.get("HOSTNAME") or socket.gethostname()
    spec = ClusterSpec({job: [f"{kubernetes_name(job, i, namespace, prefix)}:{port}" for i in range(n)]
                        for job, n in jobs.items()})
    pod = hostname.split(".")[0]
    for job in jobs:
        head = f"{prefix}-{job}-"
        if pod.startswith(head) and pod[len(head):].isdigit():
            index = int(pod[len(head):])
            _check_task(spec, job, index, "HOSTNAME",
                        f"the StatefulSet {prefix}-{job} has more replicas than --jobs gives it: raise both together")
            return Resolution(spec, job, index, "kubernetes",
                              f"check POD_NAMESPACE ({namespace}), the headless Services {prefix}-JOB "
                              f"(publishNotReadyAddresses: true) and --jobs against the StatefulSets' replicas")
    expected = " or ".join(f"{prefix}-{job}-N" for job in jobs)
    _fail("HOSTNAME", f"{hostname!r} is not a task's pod: expected {expected} (a pod of the StatefulSets "
                      f"{', '.join(f'{prefix}-{j}' for j in jobs)})")


def check_names(resolution: Resolution, timeout_s: float = 0.0) -> None:
    """Wait until every task's host name resolves, at most ``timeout_s`` seconds.

    On Kubernetes a peer's name appears once its pod is scheduled; a name that never resolves is a
    misconfiguration, reported naming what to fix.

    Raises:
        InvalidArgumentError: a name that did not resolve by the deadline.
    """
    deadline = time.monotonic() + timeout_s
    pending = {f"{task_name(j, i)} {resolution.spec.task_address(j, i)}": resolution.spec.task_address(j, i)
               for j in resolution.spec.jobs for i in resolution.spec.task_indices(j)}
    told = False
    while True:
        for label, address in list(pending.items()):
            host = address.rpartition(":")[0].strip("[]")
            try:
                socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
                del pending[label]
            except (socket.gaierror, UnicodeError):
                pass
        if not pending:
            return
        if time.monotonic() >= deadline:
            first = next(iter(pending))
            _fail(resolution.source, f"{first} does not resolve"
                                      f"{f' after {timeout_s:g} s' if timeout_s else ''}"
                                      f"{f' (and {len(pending) - 1} more)' if len(pending) > 1 else ''}; "
                                      f"{resolution.fix}")
        if not told:
            print(f"waiting up to {timeout_s:g} s for {len(pending)} task name(s) to resolve: "
                  f"{', '.join(pending)}", file=sys.stderr, flush=True)
            told = True
        time.sleep(0.5)


ENGINES = ("tf_config", "slurm", "kubernetes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The resolver options of ``queueserver serve``: ``--cluster-from``, ``--jobs``,
    ``--port-base``, ``--tasks-per-node``, ``--namespace``, ``--name-prefix``, ``--resolve-timeout``."""
    g = parser.add_argument_group(
        "cluster from the environment",
        "With no --cluster and no --job, TF_CONFIG is read when it is set (Kubeflow's TFJob sets it).")
    g.add_argument("--cluster-from", choices=ENGINES,
                   help="resolve the cluster and this task from TF_CONFIG, a Slurm step or Kubernetes StatefulSets")
    g.add_argument("--jobs", metavar="JOB=N,...", help="slurm, kubernetes: task count of each job, e.g. ps=2,worker=3")
    g.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE, metavar="N",
                   help=f"slurm: first port on each node; kubernetes: every task's port (default {DEFAULT_PORT_BASE})")
    g.add_argument("--tasks-per-node", type=int, metavar="N",
                   help="slurm: tasks on every node (default: SLURM_STEP_TASKS_PER_NODE)")
    g.add_argument("--namespace", help="kubernetes: the pods' namespace (default: POD_NAMESPACE)")
    g.add_argument("--name-prefix", default=KUBERNETES_PREFIX,
                   help=f"kubernetes: StatefulSet and Service names are PREFIX-JOB (default {KUBERNETES_PREFIX})")
    g.add_argument("--resolve-timeout", type=float, metavar="S",
                   help="seconds to wait for every task's host name to resolve (default 120 on kubernetes, else 0)")


def _exit(prog: str, exc: InvalidArgumentError) -> NoReturn:
    print(f"{prog}: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def resolve_serve_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Resolution | None:
    """The cluster and task ``queueserver serve`` should run, from ``--cluster-from`` or, with no
    ``--cluster`` and no ``--job``, from ``TF_CONFIG`` when it is set; ``None`` for a lone server.

    The resolution is printed (stderr) and every name checked; a misconfigured environment
    prints one line naming the variable to fix and exits with status 2.
    """
    env = os.environ if environ is None else environ
    engine = args.cluster_from
    if engine is None:
        if args.cluster or args.job is not None or not env.get("TF_CONFIG"):
            return None
        engine = "tf_config"
    try:
        if args.cluster or args.job is not None:
            raise InvalidArgumentError(f"--cluster-from {engine}: resolves the cluster and this task itself; "
                                       f"drop --cluster and --job")
        if engine == "tf_config":
            found = from_tf_config(env)
            if found.job is None:
                _fail("TF_CONFIG", "has no \"task\": add {\"type\": JOB, \"index\": N} for the task this server runs")
        else:
            if not args.jobs and engine == "kubernetes":
                raise InvalidArgumentError("--jobs: --cluster-from kubernetes needs the replica counts, "
                                           "e.g. --jobs ps=2,worker=3")
            jobs = parse_jobs(args.jobs) if args.jobs else None
            if engine == "slurm":
                found = from_slurm(jobs, port_base=args.port_base, tasks_per_node=args.tasks_per_node, environ=env)
            else:
                assert jobs is not None
                found = from_kubernetes(jobs, port=args.port_base, namespace=args.namespace,
                                        prefix=args.name_prefix, environ=env)
        print(found.describe(), file=sys.stderr, flush=True)
        timeout = args.resolve_timeout if args.resolve_timeout is not None else (120.0 if engine == "kubernetes" else 0.0)
        check_names(found, timeout)
    except InvalidArgumentError as exc:
        _exit("queueserver serve", exc)
    return found


def tf_config_task(prog: str, environ: Mapping[str, str] | None = None) -> Resolution | None:
    """The task of ``TF_CONFIG`` for a client CLI (the loader, the trainer), printed on stderr;
    ``None`` when ``TF_CONFIG`` is not set. A ``TF_CONFIG`` without a task, or with a broken one,
    prints one line naming it and exits with status 2."""
    env = os.environ if environ is None else environ
    if not env.get("TF_CONFIG"):
        return None
    try:
        found = from_tf_config(env)
        if found.job is None:
            _fail("TF_CONFIG", "has no \"task\": add {\"type\": JOB, \"index\": N}, or pass --target")
    except InvalidArgumentError as exc:
        _exit(prog, exc)
    print(found.describe(), file=sys.stderr, flush=True)
    return found


def trainer_args_from_tf_config(args: argparse.Namespace, prog: str,
                                environ: Mapping[str, str] | None = None) -> None:
    """The trainer CLI's hook: with no ``--cluster`` and no ``--target``, fill ``args.cluster``,
    ``args.job``, ``args.target`` (this task's address) and ``args.task`` from ``TF_CONFIG`` when it
    is set. ``args.task`` counts trainers as TensorFlow does (:attr:`Resolution.replica_index`: a
    ``chief`` is trainer 0, worker ``i`` follows it), so task 0 is the chief either way."""
    if args.cluster is not None or args.target is not None:
        return
    found = tf_config_task(prog, environ)
    if found is not None:
        args.cluster, args.job, args.target = found.spec.as_dict(), found.job, found.address
        args.task = found.replica_index
