"""Cluster specs: jobs, tasks and their addresses (as ``tf.train.ClusterSpec``).

A ClusterSpec answers jobs, task counts and addresses, and lets ``Server`` bind its task's
address; placement (:mod:`queueserver.routing`) and forwarding (:mod:`queueserver.forwarding`)
build on it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from queueserver.errors import InvalidArgumentError


class ClusterSpec:
    """Jobs and the addresses of their tasks.

    Args:
        cluster: ``{"ps": ["127.0.0.1:2221", ...], "worker": [...]}``, another ClusterSpec, or the
            path of a JSON file holding such a dict. A job may also map task indices to addresses.

    Example:
        >>> spec = ClusterSpec({"ps": ["127.0.0.1:2221"], "worker": ["127.0.0.1:2222", "127.0.0.1:2223"]})
        >>> spec.jobs, spec.num_tasks("worker"), spec.task_address("worker", 1)
        (['ps', 'worker'], 2, '127.0.0.1:2223')
    """

    def __init__(self, cluster: Any) -> None:
        if isinstance(cluster, ClusterSpec):
            cluster = cluster.as_dict()
        elif isinstance(cluster, (str, os.PathLike)):
            try:
                with open(cluster) as f:
                    cluster = json.load(f)
            except (OSError, ValueError) as exc:
                raise InvalidArgumentError(f"cannot read cluster spec {cluster}: {exc}") from exc
        if not isinstance(cluster, Mapping) or not cluster:
            raise InvalidArgumentError("a cluster spec maps job names to lists of task addresses")
        self._jobs: dict[str, dict[int, str]] = {}
        for job, tasks in cluster.items():
            if isinstance(tasks, Mapping):
                entries = {int(k): str(v) for k, v in tasks.items()}
            elif isinstance(tasks, (list, tuple)):
                entries = {i: str(a) for i, a in enumerate(tasks)}
            else:
                raise InvalidArgumentError(f"job {job!r}: tasks must be a list of 'host:port' addresses")
            for i, address in entries.items():
                if ":" not in address:
                    raise InvalidArgumentError(f"/job:{job}/task:{i}: address {address!r} needs host:port")
            self._jobs[str(job)] = entries

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
        """How many tasks ``job_name`` has."""
        return len(self._job(job_name))

    def task_indices(self, job_name: str) -> list[int]:
        """The task indices of ``job_name``, sorted."""
        return sorted(self._job(job_name))

    def task_address(self, job_name: str, task_index: int) -> str:
        """``host:port`` of one task."""
        tasks = self._job(job_name)
        if task_index not in tasks:
            raise InvalidArgumentError(f"no task {task_index} in job {job_name!r} (it has {sorted(tasks)})")
        return tasks[task_index]

    def job_tasks(self, job_name: str) -> list[str]:
        """Addresses of a job's tasks, in index order."""
        tasks = self._job(job_name)
        return [tasks[i] for i in sorted(tasks)]

    def as_dict(self) -> dict:
        """The spec as plain data."""
        return {job: self.job_tasks(job) for job in self.jobs}

    def _job(self, job_name: str) -> dict[int, str]:
        if job_name not in self._jobs:
            raise InvalidArgumentError(f"no job {job_name!r} in this cluster (jobs: {self.jobs})")
        return self._jobs[job_name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClusterSpec) and other.as_dict() == self.as_dict()

    def __repr__(self) -> str:
        return f"ClusterSpec({self.as_dict()!r})"


class DeviceSpec:
    """A (possibly partial) task name like ``/job:ps/task:1`` or ``/job:worker/task:0/cpu:0``.

    Only the job and the task place resources; a trailing device part (``/cpu:0``, ``/gpu:1``,
    ``/device:GPU:0``) is accepted and kept for display, as TensorFlow's names carry it.
    """

    __slots__ = ("job", "task", "device")

    def __init__(self, job: str | None = None, task: int | None = None, device: str | None = None) -> None:
        self.job, self.task, self.device = job, task, device

    @classmethod
    def parse(cls, name: str | None) -> "DeviceSpec":
        """Parse a name; ``""`` or ``None`` is the empty spec.

        Raises:
            InvalidArgumentError: a part is not ``job:``, ``replica:``, ``task:`` or a device.
        """
        spec = cls()
        if not name:
            return spec
        parts = [p for p in str(name).split("/") if p]
        i = 0
        while i < len(parts):
            key, _, value = parts[i].partition(":")
            low = key.lower()
            if low == "job" and value:
                spec.job = value
            elif low == "task" and value.isdigit():
                spec.task = int(value)
            elif low == "replica" and value.isdigit():
                pass  # replicas are tasks here
            elif low == "device" and value:
                spec.device = "/".join(parts[i:])
                break
            elif low in ("cpu", "gpu") and (value.isdigit() or value == "*"):
                spec.device = parts[i]
            else:
                raise InvalidArgumentError(
                    f"cannot parse device name {name!r}: expected /job:NAME/task:N[/cpu:0|/gpu:N]")
            i += 1
        return spec

    def merged_with(self, inner: "DeviceSpec") -> "DeviceSpec":
        """Inner scopes override the fields they set, as nested ``tf.device`` blocks do."""
        return DeviceSpec(inner.job if inner.job is not None else self.job,
                          inner.task if inner.task is not None else self.task,
                          inner.device if inner.device is not None else self.device)

    def to_string(self) -> str:
        """The name, with only the fields that are set."""
        out = ""
        if self.job is not None:
            out += f"/job:{self.job}"
        if self.task is not None:
            out += f"/task:{self.task}"
        if self.device is not None:
            out += f"/{self.device}"
        return out

    def __repr__(self) -> str:
        return f"DeviceSpec({self.to_string()!r})"


def task_name(job: str, index: int) -> str:
    """``/job:JOB/task:INDEX``."""
    return f"/job:{job}/task:{index}"


class ResourceInfo:
    """What a placement function sees of the resource being created."""

    __slots__ = ("type", "name", "container")

    def __init__(self, type: str, name: str, container: str = "") -> None:  # noqa: A002
        self.type, self.name, self.container = type, name, container

    def __repr__(self) -> str:
        return f"ResourceInfo(type={self.type!r}, name={self.name!r})"


def replica_device_setter(ps_tasks: int | None = None, ps_device: str = "/job:ps",
                          worker_device: str = "/job:worker", cluster: Any = None,
                          ps_ops: tuple = ("Variable",)):
    """A placement function that spreads variables round-robin over the ps tasks.

    Variables go to ``ps_device/task:0``, ``task:1``, ... in turn; every other resource goes to
    ``worker_device``, as ``tf.train.replica_device_setter`` does.

    Args:
        ps_tasks: how many ps tasks; or give ``cluster`` and it is the size of its "ps" job.
        ps_device: the job (or partial name) of the parameter servers.
        worker_device: where non-variable resources go.
        cluster: a ClusterSpec (or dict) to count the ps tasks from.
        ps_ops: the resource types placed on the ps tasks.

    Example:
        >>> setter = replica_device_setter(ps_tasks=2)
        >>> [setter(ResourceInfo("Variable", f"v{i}")) for i in range(3)]
        ['/job:ps/task:0', '/job:ps/task:1', '/job:ps/task:0']
        >>> setter(ResourceInfo("FIFOQueue", "q"))
        '/job:worker'
    """
    if ps_tasks is None:
        if cluster is None:
            raise InvalidArgumentError("replica_device_setter needs ps_tasks or cluster")
        spec = cluster if isinstance(cluster, ClusterSpec) else ClusterSpec(cluster)
        ps_job = DeviceSpec.parse(ps_device).job or "ps"
        ps_tasks = spec.num_tasks(ps_job)
    if ps_tasks < 1:
        raise InvalidArgumentError("replica_device_setter needs at least one ps task")
    counter = {"next": 0}
    base = DeviceSpec.parse(ps_device)

    def place(resource: ResourceInfo) -> str:
        if resource.type not in ps_ops:
            return worker_device
        task = counter["next"] % ps_tasks
        counter["next"] += 1
        return base.merged_with(DeviceSpec(task=task)).to_string()

    place.__name__ = f"replica_device_setter(ps_tasks={ps_tasks})"
    return place
