"""Cluster specs: jobs, tasks and their addresses (as ``tf.train.ClusterSpec``).

A ClusterSpec answers jobs, task counts and addresses, and lets ``Server`` bind its task's
address; placement (:mod:`queueserver.routing`) and forwarding (:mod:`queueserver.forwarding`)
build on it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping

from queueserver.errors import InvalidArgumentError, InvalidValueError


class ClusterSpec:
    """Jobs and the addresses of their tasks.

    Args:
        cluster: ``{"ps": ["127.0.0.1:2221", ...], "worker": [...]}``, another ClusterSpec, or the
            path of a JSON file holding such a dict. A job may also map task indices to addresses
            (a *sparse* job, ``{"ps": {1: "h1:2222", 2: "h2:2222"}}``; JSON's string keys are read
            as integers), as ``tf.train.ClusterSpec`` allows.

    Raises:
        TypeError: ``cluster`` is not a dict (or ClusterSpec, or a file's path), or a job's tasks
            are neither a list nor a dict of index -> address (as TensorFlow).
        InvalidArgumentError: a file that cannot be read, an address without ``:port``.

    Example:
        >>> spec = ClusterSpec({"ps": ["127.0.0.1:2221"], "worker": ["127.0.0.1:2222", "127.0.0.1:2223"]})
        >>> spec.jobs, spec.num_tasks("worker"), spec.task_address("worker", 1)
        (['ps', 'worker'], 2, '127.0.0.1:2223')
    """

    def __init__(self, cluster: Any) -> None:
        self._jobs: dict[str, dict[int, str]] = {}
        if isinstance(cluster, ClusterSpec):
            self._jobs = {job: dict(tasks) for job, tasks in cluster._jobs.items()}
            return
        if isinstance(cluster, (str, os.PathLike)):
            try:
                with open(cluster) as f:
                    cluster = json.load(f)
            except (OSError, ValueError) as exc:
                raise InvalidArgumentError(f"cannot read cluster spec {cluster}: {exc}") from exc
        if not isinstance(cluster, Mapping):
            raise TypeError("`cluster` must be a dictionary mapping one or more job names to lists of network"
                            f" addresses (or a dict of task index -> address), got {type(cluster).__name__}")
        for job, tasks in cluster.items():
            if isinstance(tasks, Mapping):
                try:
                    entries = {int(k): str(v) for k, v in tasks.items()}
                except (TypeError, ValueError):
                    raise TypeError(f"The tasks for job {job!r} must be a list or a dictionary from integers"
                                    f" to strings, got keys {list(tasks)}") from None
            elif isinstance(tasks, (list, tuple)):
                entries = {i: str(a) for i, a in enumerate(tasks)}
            else:
                raise TypeError(f"The tasks for job {job!r} must be a list or a dictionary from integers to"
                                f" strings, got {type(tasks).__name__}")
            for i, address in entries.items():
                if ":" not in address:
                    raise InvalidArgumentError(f"/job:{job}/task:{i}: address {address!r} needs host:port")
            self._jobs[str(job)] = dict(sorted(entries.items()))

    @classmethod
    def from_tf_config(cls, environ: Mapping[str, str] | None = None) -> "ClusterSpec":
        """The cluster of the ``TF_CONFIG`` environment variable, as Kubeflow's TFJob sets it.

        This task's job and index are :func:`queueserver.resolvers.from_tf_config`'s.

        Raises:
            InvalidArgumentError: ``TF_CONFIG`` is unset or malformed, naming what to fix.

        Example:
            >>> ClusterSpec.from_tf_config({"TF_CONFIG": '{"cluster": {"ps": ["h0:2222"]}}'})
            ClusterSpec({'ps': ['h0:2222']})
        """
        from queueserver.resolvers import from_tf_config  # the resolvers build on this module

        return from_tf_config(environ).spec

    @property
    def jobs(self) -> list[str]:
        """Job names, sorted."""
        return sorted(self._jobs)

    def num_tasks(self, job_name: str) -> int:
        """How many tasks ``job_name`` has.

        Raises:
            InvalidValueError: no such job (a ValueError, as TensorFlow's).
        """
        return len(self._job(job_name))

    def task_indices(self, job_name: str) -> list[int]:
        """The task indices of ``job_name``, sorted."""
        return list(self._job(job_name))

    def task_address(self, job_name: str, task_index: int) -> str:
        """``host:port`` of one task.

        Raises:
            InvalidValueError: no such job, or no such task in it (a ValueError, as TensorFlow's).
        """
        tasks = self._job(job_name)
        if task_index not in tasks:
            raise InvalidValueError(f"no task {task_index!r} in job {job_name!r} (it has {list(tasks)})")
        return tasks[task_index]

    def job_tasks(self, job_name: str) -> list[str | None]:
        """Addresses of a job's tasks, indexed by task: a sparse job has ``None`` where it has no
        task (``{1: a, 3: b}`` gives ``[None, a, None, b]``), as TensorFlow's."""
        tasks = self._job(job_name)
        return [tasks.get(i) for i in range(max(tasks) + 1)] if tasks else []

    def as_dict(self) -> dict:
        """The spec as plain data, as TensorFlow's: a job whose indices are ``0..n-1`` as a list of
        addresses, any other (sparse) job as a dict of task index -> address; ``ClusterSpec(spec.as_dict())``
        is ``spec``. A server sends its clients this form in its hello (``client.cluster``)."""
        out: dict[str, Any] = {}
        for job in self.jobs:
            tasks = self._jobs[job]
            dense = bool(tasks) and max(tasks) + 1 == len(tasks)
            out[job] = list(tasks.values()) if dense else dict(tasks)
        return out

    def _job(self, job_name: str) -> dict[int, str]:
        if job_name not in self._jobs:
            raise InvalidValueError(f"no job {job_name!r} in this cluster (jobs: {self.jobs})")
        return self._jobs[job_name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClusterSpec) and other._jobs == self._jobs

    __hash__ = None  # type: ignore[assignment]  # mutable-looking and compared by value, as TensorFlow's

    def __repr__(self) -> str:
        return f"ClusterSpec({self.as_dict()!r})"


def server_task(spec: ClusterSpec, job_name: str | None, task_index: int | None, *,
                names: tuple[str, str] = ("job_name", "task_index")) -> tuple[str, int]:
    """The task a cluster server runs, by ``tf.distribute.Server``'s rules: no ``job_name`` is the
    spec's only job; no ``task_index`` is the job's only task. ``names`` are the two arguments as
    the caller spells them (the CLI's ``--job`` and ``--task``), for the errors.

    Raises:
        InvalidValueError: no job named and several jobs, or no index and several tasks (TensorFlow's
            ValueError "Must specify an explicit ..."), or a job or task the spec does not have.
    """
    if job_name is None:
        if len(spec.jobs) != 1:
            raise InvalidValueError(f"Must specify an explicit `{names[0]}`: the cluster has jobs {spec.jobs}")
        job_name = spec.jobs[0]
    if task_index is None:
        indices = spec.task_indices(job_name)
        if len(indices) != 1:
            raise InvalidValueError(f"Must specify an explicit `{names[1]}`: job {job_name!r} has tasks {indices}")
        task_index = indices[0]
    spec.task_address(job_name, task_index)  # raises, naming the job or task, if absent
    return job_name, task_index


class DeviceSpec:
    """A (possibly partial) device name like ``/job:ps/task:1`` or ``/job:worker/task:0/device:CPU:0``.

    Only the job and the task place resources; a device type (``/cpu:0``, ``/gpu:1``,
    ``/device:GPU:0``) is accepted and kept for display, as TensorFlow's names carry it.
    ``DeviceSpec(job="ps", task=1)`` may be given to ``client.device(...)`` as TensorFlow's is.
    """

    __slots__ = ("job", "task", "device_type", "device_index")

    def __init__(self, job: str | None = None, task: int | None = None, *, device_type: str | None = None,
                 device_index: int | None = None) -> None:
        self.job, self.task = job, task
        self.device_type, self.device_index = device_type, device_index

    @classmethod
    def parse(cls, name: "str | DeviceSpec | None") -> "DeviceSpec":
        """Parse a name as ``tf.DeviceSpec.from_string`` does: parts in any order, ``""`` or
        ``None`` the empty spec; ``replica:`` is accepted and ignored (replicas are tasks here).

        Raises:
            InvalidValueError: an unknown part, a task that is not a number, or two device types
                (a ValueError, as TensorFlow's).
        """
        if isinstance(name, DeviceSpec):
            return name.merged_with(cls())  # a copy
        spec = cls()
        if not name:
            return spec
        for part in str(name).split("/"):
            if not part:
                continue
            y = part.split(":")
            key = y[0]
            if len(y) == 2 and key == "job" and y[1]:
                spec.job = y[1]
            elif len(y) == 2 and key == "task":
                if not y[1].isdigit():
                    raise InvalidValueError(f"cannot parse device name {name!r}: task {y[1]!r} is not a number")
                spec.task = int(y[1])
            elif len(y) == 2 and key == "replica":
                pass  # replicas are tasks here
            elif (len(y) in (1, 2) and key.upper() in _DEVICE_TYPES) or (len(y) == 3 and key == "device" and y[1]):
                if spec.device_type is not None:
                    raise InvalidValueError(f"Multiple device types are not allowed while parsing the device spec:"
                                            f" {name!r}")
                kind, index = (key.upper(), y[1] if len(y) == 2 else "*") if len(y) < 3 else (y[1], y[2])
                if index != "*" and not index.isdigit():
                    raise InvalidValueError(f"cannot parse device name {name!r}: device index {index!r}")
                spec.device_type, spec.device_index = kind, None if index == "*" else int(index)
            else:
                raise InvalidValueError(f"cannot parse device name {name!r}: unknown part {part!r} (expected"
                                        " /job:NAME/task:N[/device:CPU:0])")
        return spec

    from_string = parse  # TensorFlow's spelling

    def merged_with(self, inner: "DeviceSpec") -> "DeviceSpec":
        """Inner scopes override the fields they set, as nested ``tf.device`` blocks do."""
        kind = inner.device_type is not None
        return DeviceSpec(inner.job if inner.job is not None else self.job,
                          inner.task if inner.task is not None else self.task,
                          device_type=inner.device_type if kind else self.device_type,
                          device_index=inner.device_index if kind else self.device_index)

    def to_string(self) -> str:
        """The name, with only the fields that are set (TensorFlow's canonical form)."""
        out = ""
        if self.job is not None:
            out += f"/job:{self.job}"
        if self.task is not None:
            out += f"/task:{self.task}"
        if self.device_type is not None:
            out += f"/device:{self.device_type}:{'*' if self.device_index is None else self.device_index}"
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeviceSpec) and other.to_string() == self.to_string()

    def __hash__(self) -> int:
        return hash(self.to_string())

    def __repr__(self) -> str:
        return f"DeviceSpec({self.to_string()!r})"


_DEVICE_TYPES = frozenset({"CPU", "GPU", "TPU", "CUSTOM", "EPU"})


def task_name(job: str, index: int) -> str:
    """``/job:JOB/task:INDEX``."""
    return f"/job:{job}/task:{index}"


class ResourceInfo:
    """What a placement function sees of the resource being created (TensorFlow passes its
    functions the ``Operation``; this is the part of it that exists here).

    Attributes:
        type: the resource type, e.g. ``"Variable"``, ``"ConditionalAccumulator"``, ``"FIFOQueue"``
            (``op.type`` in TensorFlow).
        name: the name it is shared under (``op.name``).
        container: its container.
        device: the device the ``client.device`` blocks inside this function's block gave it so far
            (``op.device``), ``""`` when none did.
    """

    __slots__ = ("type", "name", "container", "device")

    def __init__(self, type: str, name: str, container: str = "", device: str = "") -> None:  # noqa: A002
        self.type, self.name, self.container, self.device = type, name, container, device

    def __repr__(self) -> str:
        return f"ResourceInfo(type={self.type!r}, name={self.name!r}, device={self.device!r})"


#: The resource types ``replica_device_setter`` puts on the ps tasks by default: TensorFlow's
#: ``STANDARD_PS_OPS`` that exist here (variables, and ConditionalAccumulator, whose op
#: ResourceConditionalAccumulator is in it; SparseConditionalAccumulator is not, so it stays on
#: the workers, as in TensorFlow).
STANDARD_PS_OPS = ("Variable", "ConditionalAccumulator")

# TensorFlow op types in a ps_ops list, as this project's resource types.
_TF_OP_TYPES = {"VariableV2": "Variable", "VarHandleOp": "Variable", "AutoReloadVariable": "Variable",
                "ResourceConditionalAccumulator": "ConditionalAccumulator"}


def replica_device_setter(ps_tasks: int = 0, ps_device: str = "/job:ps", worker_device: str = "/job:worker",
                          merge_devices: bool = True, cluster: Any = None, ps_ops: Any = None,
                          ps_strategy: Callable[[ResourceInfo], int] | None = None):
    """A placement function that spreads variables round-robin over the ps tasks, as
    ``tf.train.replica_device_setter`` does (same arguments).

    Resources of the ``ps_ops`` types (variables and conditional accumulators by default) go to
    ``ps_device``, with the task ``ps_strategy`` picks (round-robin over the ps tasks by default),
    unless a ``client.device`` block inside this one already named another job; every other
    resource goes to ``worker_device``. Fields set by inner blocks are kept (``merge_devices``;
    with ``merge_devices=False`` a resource an inner block placed at all is left as it is).

    Args:
        ps_tasks: how many ps tasks; ignored when ``cluster`` is given.
        ps_device: the job (or partial name) of the parameter servers; ``""``: none.
        worker_device: where other resources go; ``""``: nowhere in particular.
        merge_devices: merge with the inner blocks' fields rather than keep their device whole.
        cluster: a ClusterSpec (or dict): ``ps_tasks`` is the size of its ps job.
        ps_ops: the resource types placed on the ps tasks (TensorFlow op types ``VariableV2``,
            ``VarHandleOp``, ``ResourceConditionalAccumulator`` name this project's too); default
            :data:`STANDARD_PS_OPS`.
        ps_strategy: a callable given each ps resource's :class:`ResourceInfo` (TensorFlow gives
            the ``Operation``: ``type``, ``name`` and ``device`` are here too) that returns its ps
            task index; called only when the ps task is chosen (the resource's job is unset or
            the ps job).

    Returns:
        The placement function, or ``None`` (a no-op: ``client.device(None)``) when the cluster
        has no ps job or ``ps_tasks`` is 0, as TensorFlow's.

    Raises:
        TypeError: ``ps_strategy`` is not callable, or ``cluster`` is not a dict or ClusterSpec.

    Example:
        >>> setter = replica_device_setter(ps_tasks=2)
        >>> [setter(ResourceInfo("Variable", f"v{i}")) for i in range(3)]
        ['/job:ps/task:0', '/job:ps/task:1', '/job:ps/task:0']
        >>> setter(ResourceInfo("FIFOQueue", "q"))
        '/job:worker'
    """
    if cluster is not None:
        spec = cluster if isinstance(cluster, ClusterSpec) else ClusterSpec(cluster)
        ps_job = DeviceSpec.parse(ps_device).job
        if ps_job not in spec.jobs:
            return None
        ps_tasks = spec.num_tasks(ps_job)
    if not ps_tasks:
        return None
    if ps_strategy is None:
        ps_strategy = _RoundRobin(ps_tasks)
    if not callable(ps_strategy):
        raise TypeError("ps_strategy must be callable")
    types = frozenset(_TF_OP_TYPES.get(t, t) for t in (STANDARD_PS_OPS if ps_ops is None else ps_ops))
    ps_spec, worker_spec = DeviceSpec.parse(ps_device), DeviceSpec.parse(worker_device)

    def place(resource: ResourceInfo) -> str:
        if not merge_devices and resource.device:
            return resource.device
        current = DeviceSpec.parse(resource.device)
        if ps_device and resource.type in types:
            base = ps_spec
            if ps_spec.job and current.job in (None, ps_spec.job):
                base = base.merged_with(DeviceSpec(task=int(ps_strategy(resource))))
            return base.merged_with(current).to_string()
        return worker_spec.merged_with(current).to_string()

    place.__name__ = f"replica_device_setter(ps_tasks={ps_tasks})"
    return place


class _RoundRobin:
    """The default ps strategy: task 0, 1, ..., ``n - 1``, 0, ... in turn."""

    def __init__(self, n: int) -> None:
        self.n, self.next = n, 0

    def __call__(self, resource: ResourceInfo) -> int:
        task, self.next = self.next, (self.next + 1) % self.n
        return task
