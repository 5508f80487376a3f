"""Cluster specs: jobs, tasks and their addresses (as ``tf.train.ClusterSpec``).

Placement, forwarding and cluster-wide containers build on this (see the cluster issue); for now a
ClusterSpec answers jobs, task counts and addresses, and lets ``Server`` bind its task's address.
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
