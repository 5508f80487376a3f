"""A trainer's configuration: :class:`TrainConfig` (the CLI's flags, validated when built) and the
async mode's :class:`StalenessPolicy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compute.backend import TRANSFER_DTYPES
from compute.models import parse_model
from queueserver.cluster import ClusterSpec

__all__ = ["MODES", "TrainConfig", "StalenessPolicy", "server_address", "ps_task_count"]

MODES = ("local", "async", "sync")


def server_address(target: str | None, cluster: Any, job: str, task: int) -> str | None:
    """The server a trainer talks to: ``target``, else its own task's address in ``cluster``."""
    if target:
        return target
    if cluster is not None:
        return ClusterSpec(cluster).task_address(job, task)
    return None


def ps_task_count(ps_tasks: int | None, cluster: Any) -> int | None:
    """How many ps tasks the parameters are spread over: ``ps_tasks``, else the cluster's ps job."""
    if ps_tasks is not None:
        return ps_tasks
    if cluster is not None:
        spec = ClusterSpec(cluster)
        if "ps" in spec.jobs:
            return spec.num_tasks("ps")
    return None


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything one trainer process needs (the CLI's flags, one field each).

    Attributes:
        target: the server to talk to (``host:port``); with ``cluster`` set, defaults to this task's
            own address in it.
        cluster: a ClusterSpec, its dict, or the path of its JSON file.
        job: this trainer's job name in the cluster.
        task: this trainer's task index (task 0 is the chief).
        queue: the name of the input queue (elements ``(x, y)``, or a dict with ``x`` and ``y``).
        model: ``mlp:784,1024,1024,10`` or ``softmax:784,10``.
        mode: ``local``, ``async`` or ``sync``.
        replicas: total number of replicas (``total_num_replicas``).
        aggregate: gradients averaged per step in sync mode (``replicas_to_aggregate``); default all.
        device: ``cpu`` or ``gpu:N``.
        soft_placement: fall back to the CPU, with a warning, when the GPU is missing.
        gpu_memory_fraction: cap on the CuPy memory pool, as a fraction of the GPU's memory.
        batch: minibatch size (``dequeue_up_to``).
        lr: learning rate.
        optimizer: ``sgd``, ``momentum`` or ``nesterov``.
        momentum: the momentum coefficient.
        steps: stop at this global step (None: when the queue is closed and drained).
        checkpoint_dir: save and restore parameters here.
        checkpoint_every: global steps between checkpoints (and one more at the end).
        transfer_dtype: ``float32``, ``bfloat16`` or ``float16`` for parameter traffic.
        staleness_policy: ``none``, ``drop:K`` or ``scale`` (async mode).
        seed: parameter initialisation seed.
        scope: namespace of this model's variables and queues (default: the model's name).
        container: the resource container everything lives in.
        ps_tasks: parameter server tasks to spread variables over (default: the cluster's ps job).
        progress: show a progress bar on stderr (None: when stderr is a terminal).
        report_every: print a JSON line on stdout every this many local steps (0: never).
        report_every_s: seconds between reports of this trainer's figures (samples/s, step time and
            its split into phases) to the server, shown on its status page (0: never).
        dequeue_timeout: seconds to wait for one minibatch before failing (None: forever).
        token: the server's shared secret (None: ``$QUEUESERVER_TOKEN``, else none).
    """

    target: str | None = None
    cluster: Any = None
    job: str = "worker"
    task: int = 0
    queue: str = "shared_instance_q"
    model: str = "mlp:784,1024,1024,10"
    mode: str = "async"
    replicas: int = 1
    aggregate: int | None = None
    device: str = "cpu"
    soft_placement: bool = False
    gpu_memory_fraction: float | None = None
    batch: int = 256
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    steps: int | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 100
    transfer_dtype: str = "float32"
    staleness_policy: str = "none"
    seed: int = 0
    scope: str | None = None
    container: str = ""
    ps_tasks: int | None = None
    progress: bool | None = None
    report_every: int = 0
    report_every_s: float = 2.0
    dequeue_timeout: float | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        # Validate everything here, with the fix in the message, rather than deep inside a run.
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.replicas < 1:
            raise ValueError(f"--replicas must be >= 1, got {self.replicas}")
        if not 0 <= self.task < max(self.replicas, 1) and self.mode != "local":
            raise ValueError(f"--task {self.task} is outside 0..{self.replicas - 1}: raise --replicas")
        agg = self.aggregate
        if agg is not None and not 1 <= agg <= self.replicas:
            raise ValueError(f"--aggregate {agg} must be between 1 and --replicas {self.replicas}")
        if self.batch < 1:
            raise ValueError(f"--batch must be >= 1, got {self.batch}")
        if not self.report_every_s >= 0:
            raise ValueError(f"--report-every must be >= 0 seconds (0: never), got {self.report_every_s}")
        if self.transfer_dtype not in TRANSFER_DTYPES:
            raise ValueError(f"--transfer-dtype must be one of {TRANSFER_DTYPES}, got {self.transfer_dtype!r}")
        StalenessPolicy.parse(self.staleness_policy)
        parse_model(self.model)
        if self.mode != "local" and self.target is None and self.cluster is None:
            raise ValueError(f"mode {self.mode!r} needs --target or --cluster")

    @property
    def is_chief(self) -> bool:
        """Task 0 initialises, aggregates (sync) and checkpoints."""
        return self.task == 0

    @property
    def replicas_to_aggregate(self) -> int:
        """``aggregate``, defaulting to every replica."""
        return self.aggregate if self.aggregate is not None else self.replicas


@dataclass(frozen=True)
class StalenessPolicy:
    """What to do with a stale gradient in async mode (the seed's 3.4.2 remedies).

    Attributes:
        kind: ``none`` (apply every gradient), ``drop`` (drop those staler than ``max_staleness``),
            or ``scale`` (multiply the learning rate by ``1 / (1 + staleness)``).
        max_staleness: the drop threshold.
    """

    kind: str = "none"
    max_staleness: int = 0

    @classmethod
    def parse(cls, text: str) -> "StalenessPolicy":
        """``"none"``, ``"drop:K"`` or ``"scale"``.

        Raises:
            ValueError: anything else.
        """
        kind, _, arg = text.partition(":")
        if kind == "none" and not arg:
            return cls("none")
        if kind == "scale" and not arg:
            return cls("scale")
        if kind == "drop" and arg.isdigit():
            return cls("drop", int(arg))
        raise ValueError(f"bad staleness policy {text!r}: use none, drop:K or scale")

    def scale(self, staleness: int) -> float | None:
        """The learning-rate factor for a gradient this stale, or None to drop it."""
        if self.kind == "drop" and staleness > self.max_staleness:
            return None
        if self.kind == "scale":
            return 1.0 / (1.0 + staleness)
        return 1.0
