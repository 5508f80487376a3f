"""Model parallelism: a pipeline-parallel trainer (the seed's section 3.3, as GPipe schedules it).

The MLP's dense layers are split into ``K`` contiguous stages (:func:`split_layers`, balanced by
weight count); each stage is one process (or, embedded, one task with its own connection) on its
own device. A minibatch is cut into ``M`` micro-batches. Every step runs GPipe's synchronous
schedule: all forward micro-batches, stage ``i`` sending each output to stage ``i + 1`` through a
server queue, then all backward micro-batches, stage ``i + 1`` sending the gradient of its input
back to stage ``i`` as soon as it has it. The last stage takes the loss gradient of the whole
minibatch at once, and each stage takes its weights' gradients once per step, over the stacked
activations of every micro-batch (while the earlier stages drain): the update is exactly the
whole minibatch's, computed as one process computes it. Each stage applies its own update (SGD,
momentum or Nesterov) and writes its parameters to the ps in the background.

Stage 0 is the chief: it reads the minibatches from the input queue (a batch is acknowledged only
once its step is done), owns the global step, initialises or restores every stage's parameters (and
velocities) on the ps, and writes the one checkpoint of the whole model. At a checkpoint step (the
header of its messages says so) and at the end, every other stage confirms through the run's
``published`` queue once its update (and velocities) are on the ps; the chief reads the model after
every confirmation, so the checkpoint holds one step.

A run is a *generation*: the chief takes the next number from ``<scope>/pp/run`` and invites the
other stages through their ``<scope>/pp/ready/<i>`` queues; the run's queues live in a container of
their own (``pp-<scope>-<generation>``), reset by the next run's chief, so activations left queued
by a failed run never reach a later one. Every message also carries ``(generation, step,
micro-batch)``, and a receiver refuses any message that is not the exact one the schedule expects.

A stage that stops early is named by the others at once: each stage holds a taken, unacknowledged
token (its pid) from its ``alive`` queue, which the server gives back when the stage's connection
closes or its process dies; the other stages wait for that give-back. A stage that finishes
acknowledges its token. A stage that is alive but silent (hung, never started) is named when a wait
runs past ``stage_timeout``. A run starts from the checkpoint when there is one, else from the seed:
after a failure the ps may hold parameters of two different steps, so they are never trusted.

Example (embedded: every stage in this process, each with its own connection)::

    >>> cfg = PipelineConfig(target=server.target, queue="instances", model="mlp:784,256,256,10",
    ...                      stages=3, micro_batches=4, steps=100)              # doctest: +SKIP
    >>> results = train_pipeline(cfg)                                            # doctest: +SKIP
    >>> print(format_bubble_report(results))                                     # doctest: +SKIP

As processes: ``python -m compute train --target T --model mlp:784,256,256,10 --stages 3 --stage i
--micro-batches 4`` for each ``i`` (see :mod:`compute.cli`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Sequence

import numpy as np

import queueserver as qs
from compute.backend import get_backend
from compute.checkpoint import load_checkpoint, save_checkpoint
from compute.config import ps_task_count, server_address
from compute.inputs import QueueSource
from compute.models import MLP, parse_model, softmax_cross_entropy_with_grad
from compute.optim import Momentum, make_optimizer
from compute.parameters import placement_scope

__all__ = ["PipelineConfig", "StageResult", "PipelineStage", "split_layers", "theoretical_bubble",
           "train_pipeline", "train_pipeline_async", "format_bubble_report", "add_arguments",
           "config_from_args", "run_from_args"]

log = logging.getLogger("compute.pipeline_parallel")

DTYPES = ("float32", "float64")
# The int64 header of every message: generation, step, micro-batch, micro-batches in the step, the
# minibatch's size, and whether every stage must confirm its update on the ps (a checkpoint step).
_HEADER = 6
_END = -1        # the micro-batch number of the end-of-run message
_REASONS = ("steps", "end_of_data")


def split_layers(sizes: Sequence[int], stages: int) -> list[tuple[int, int]]:
    """Cut an MLP's dense layers into ``stages`` contiguous ranges of balanced cost.

    The cost of a layer is its weight count (its multiply-adds per example); the split minimises the
    largest stage's cost, since the slowest stage sets the pipeline's pace.

    Args:
        sizes: the MLP's layer widths (``[784, 1024, 10]``: two dense layers).
        stages: how many ranges.

    Returns:
        ``[(start, end), ...]``: stage ``i`` runs layers ``start..end-1``.

    Raises:
        ValueError: fewer layers than stages.

    Example:
        >>> split_layers([8, 100, 100, 100, 2], 2)
        [(0, 2), (2, 4)]
    """
    costs = [a * b + b for a, b in zip(sizes[:-1], sizes[1:])]
    n = len(costs)
    if not 1 <= stages <= n:
        raise ValueError(f"cannot split {n} layer(s) into {stages} stages: use 1 to {n} stages, or a deeper model")
    prefix = [0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    # best[k][j]: the smallest possible largest-stage cost for the first j layers in k stages.
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0
    for k in range(1, stages + 1):
        for j in range(k, n + 1):
            for s in range(k - 1, j):
                v = max(best[k - 1][s], prefix[j] - prefix[s])
                if v < best[k][j]:
                    best[k][j], cut[k][j] = v, s
    bounds, j = [], n
    for k in range(stages, 0, -1):
        bounds.append((cut[k][j], j))
        j = cut[k][j]
    return bounds[::-1]


def theoretical_bubble(stages: int, micro_batches: int) -> float:
    """GPipe's idle fraction of every stage with equal stage times: ``(K - 1) / (M + K - 1)``."""
    return (stages - 1) / (micro_batches + stages - 1)


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """One pipeline-parallel stage (or, with ``stage=None``, every stage embedded in this process).

    Attributes:
        target: the server (``host:port``); with ``cluster``, defaults to this task's address in it.
        token: the server's shared secret, if it has one.
        cluster: a ClusterSpec, its dict, or the path of its JSON file.
        job: this process's job in the cluster.
        task: this process's task index in the cluster (its address; stages are numbered apart).
        stages: ``K``, how many stages the model's layers are split into.
        stage: this process's stage, ``0..K-1`` (0 is the chief); None: run every stage here.
        micro_batches: ``M``, micro-batches per minibatch.
        queue: the input queue (``(features, label)`` elements), read by stage 0.
        container: the resource container of the model's variables.
        scope: the name prefix of the model's variables and the pipeline's queues (default: the
            model's name).
        ps_tasks: spread the variables over this many ps tasks (default: the cluster's ps job).
        model: an MLP spec, ``mlp:784,1024,1024,10``.
        batch: examples per minibatch (``dequeue_up_to``: the last one may be short).
        lr: the learning rate.
        optimizer: ``sgd``, ``momentum`` or ``nesterov``. Each stage keeps its own layers' velocities;
            at checkpoint steps they go to the ps beside the parameters (``<variable>/momentum``)
            and into the chief's checkpoint as slots.
        momentum: the momentum coefficient.
        seed: parameter initialisation seed.
        steps: stop at this global step (None: when the input queue is closed and drained).
        dtype: ``float32`` or ``float64``: the parameters, activations and gradients.
        device: ``cpu`` or ``gpu:N``.
        soft_placement: fall back to the CPU, with a warning, when the GPU is missing.
        checkpoint_dir: the chief saves the whole model here and every run restores it.
        checkpoint_every: global steps between checkpoints (and one more at the end).
        stage_timeout: seconds a stage waits for another stage's message (or to be invited to a
            run) before it fails naming that stage. It bounds stage 0's wait for input too.
        dequeue_timeout: seconds stage 0 waits for a minibatch (None: for ever).
        report_every: print a JSON line on stdout every this many steps (0: never).
    """

    target: str | None = None
    token: str | None = None
    cluster: Any = None
    job: str = "worker"
    task: int = 0
    stages: int = 2
    stage: int | None = None
    micro_batches: int = 4
    queue: str = "shared_instance_q"
    container: str = ""
    scope: str | None = None
    ps_tasks: int | None = None
    model: str = "mlp:784,1024,1024,10"
    batch: int = 256
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    seed: int = 0
    steps: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    soft_placement: bool = False
    checkpoint_dir: str | None = None
    checkpoint_every: int = 100
    stage_timeout: float = 60.0
    dequeue_timeout: float | None = None
    report_every: int = 0

    def __post_init__(self) -> None:
        # Everything is checked here, with the fix in the message, before any process connects.
        model = parse_model(self.model)
        if self.stages < 1:
            raise ValueError(f"--stages must be >= 1, got {self.stages}")
        split_layers(model.sizes, self.stages)
        if self.stage is not None and not 0 <= self.stage < self.stages:
            raise ValueError(f"--stage {self.stage} is outside 0..{self.stages - 1} (--stages {self.stages})")
        if self.micro_batches < 1:
            raise ValueError(f"--micro-batches must be >= 1, got {self.micro_batches}")
        if self.batch < self.micro_batches:
            raise ValueError(f"--batch {self.batch} is smaller than --micro-batches {self.micro_batches}:"
                             " every micro-batch needs at least one example")
        make_optimizer(self.optimizer, self.lr, self.momentum)  # its own checks, with the fix in the message
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not self.stage_timeout > 0:
            raise ValueError(f"--stage-timeout must be positive, got {self.stage_timeout}")
        if self.target is None and self.cluster is None:
            raise ValueError("a pipeline needs --target or --cluster: its stages talk through the server's queues")

    @property
    def model_scope(self) -> str:
        """The name prefix of the model's variables and queues."""
        return self.scope or parse_model(self.model).name


@dataclass
class StageResult:
    """What one stage reports when it stops.

    Attributes:
        stage: the stage's index; stages: ``K``; micro_batches: ``M``.
        layers: the dense layers it ran, ``(start, end)``.
        generation: the run's number (see the module's docstring).
        start_step: the global step the run started at (above 0 after a restore).
        global_step: the global step it stopped at.
        samples: examples it trained on.
        seconds: the wall time of its steps (from its first wait in the first step to the end).
        busy_s: of which computing (forward, backward, the update).
        wait_s: of which waiting for another stage's messages (and, stage 0, for input).
        publish_s: of which waiting for the updated parameters to reach the ps (the write runs in
            the background, beside the next step's forward passes).
        final_loss: the last step's minibatch loss (computed by the last stage, passed back).
        stop_reason: ``steps`` or ``end_of_data``.
        params: this stage's parameters (host arrays).
        model_params: the whole model, read from the ps at the end (the chief only).
    """

    stage: int
    stages: int
    micro_batches: int
    layers: tuple[int, int]
    generation: int = 0
    start_step: int = 0
    global_step: int = 0
    samples: int = 0
    seconds: float = 0.0
    busy_s: float = 0.0
    wait_s: float = 0.0
    publish_s: float = 0.0
    final_loss: float = float("nan")
    stop_reason: str = ""
    params: "OrderedDict[str, np.ndarray]" = field(default_factory=OrderedDict, repr=False)
    model_params: "OrderedDict[str, np.ndarray] | None" = field(default=None, repr=False)

    @property
    def idle_fraction(self) -> float:
        """The share of the stage's time it was not computing: the pipeline bubble, plus the
        messages' and the parameters' traffic and any wait for input."""
        return 1.0 - self.busy_s / self.seconds if self.seconds > 0 else float("nan")

    @property
    def theoretical_bubble(self) -> float:
        """``(K - 1) / (M + K - 1)``."""
        return theoretical_bubble(self.stages, self.micro_batches)

    def summary(self) -> dict[str, Any]:
        """The JSON-ready figures (no arrays)."""
        return {"stage": self.stage, "stages": self.stages, "micro_batches": self.micro_batches,
                "layers": list(self.layers), "generation": self.generation, "start_step": self.start_step,
                "global_step": self.global_step, "samples": self.samples, "seconds": round(self.seconds, 4),
                "busy_s": round(self.busy_s, 4), "wait_s": round(self.wait_s, 4),
                "publish_s": round(self.publish_s, 4), "idle_fraction": round(self.idle_fraction, 4),
                "theoretical_bubble": round(self.theoretical_bubble, 4),
                "final_loss": None if np.isnan(self.final_loss) else self.final_loss,
                "stop_reason": self.stop_reason}


def format_bubble_report(results: Sequence[StageResult]) -> str:
    """One line per stage: its layers, its idle fraction beside GPipe's theoretical bubble."""
    lines = []
    for r in sorted(results, key=lambda r: r.stage):
        lines.append(f"stage {r.stage}/{r.stages} layers {r.layers[0]}..{r.layers[1] - 1}: idle {r.idle_fraction:.1%}"
                     f" of {r.seconds:.2f} s (computing {r.busy_s:.2f} s, waiting for other stages {r.wait_s:.2f} s,"
                     f" writing parameters {r.publish_s:.2f} s); GPipe bubble (K-1)/(M+K-1) ="
                     f" {r.theoretical_bubble:.1%} with M={r.micro_batches}")
    return "\n".join(lines)


class _Sender:
    """Sends one direction's messages in order, in the background, so a stage computes its next
    micro-batch while the last one travels. A failed send is raised by the next :meth:`send` or
    :meth:`flush`."""

    def __init__(self, queue: Any, timeout: float, on_deadline: Callable[[], Awaitable[BaseException]]) -> None:
        self.queue, self.timeout, self.on_deadline = queue, timeout, on_deadline
        self.pending: asyncio.Queue[Any] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            value = await self.pending.get()
            if value is None:
                return
            try:
                await self.queue.enqueue(value, timeout=self.timeout)
            except qs.DeadlineExceededError:
                raise await self.on_deadline() from None

    def check(self) -> None:
        """Raise what the background sends failed with, if they did."""
        if self.task.done() and not self.task.cancelled() and self.task.exception() is not None:
            raise self.task.exception()  # type: ignore[misc]

    def send(self, value: Any) -> None:
        """Queue a message (an element of the queue) for sending."""
        self.check()
        self.pending.put_nowait(value)

    async def flush(self) -> None:
        """Wait until every queued message is on the server."""
        self.pending.put_nowait(None)
        await asyncio.shield(self.task)

    async def cancel(self) -> None:
        """Stop sending (on the way out after a failure)."""
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


class PipelineStage:
    """One stage of a pipeline-parallel trainer. Build it with a :class:`PipelineConfig` whose
    ``stage`` is set, then ``await run()``.

    Args:
        config: the configuration.
        client: an open AsyncClient to use (default: connect to the config's target). Stages run in
            one process need a connection each: a stage's liveness is its connection's.
        source: stage 0's minibatch source instead of the input queue (e.g. an
            :class:`~compute.inputs.ArraySource`).
    """

    def __init__(self, config: PipelineConfig, client: Any = None, source: Any = None) -> None:
        if config.stage is None:
            raise ValueError("PipelineStage needs config.stage; train_pipeline runs every stage")
        self.cfg = config
        self.model: MLP = parse_model(config.model)
        self.bounds = split_layers(self.model.sizes, config.stages)
        self.index = config.stage
        self.first, self.last = self.index == 0, self.index == config.stages - 1
        self.layers = self.bounds[self.index]
        self.names = self.model.layer_names(*self.layers)
        self.scope = config.model_scope
        self.dtype = np.dtype(config.dtype)
        self.backend = get_backend(config.device, config.soft_placement)
        self.optimizer = make_optimizer(config.optimizer, config.lr, config.momentum)
        self._slotted = isinstance(self.optimizer, Momentum)  # velocities to checkpoint
        self.result = StageResult(stage=self.index, stages=config.stages, micro_batches=config.micro_batches,
                                  layers=self.layers)
        self._client, self._source = client, source
        self._compute = ThreadPoolExecutor(1, thread_name_prefix=f"stage{self.index}")
        self.params: OrderedDict[str, Any] = OrderedDict()
        self.generation = 0
        self._queues: dict[str, Any] = {}
        self._watchers: list[asyncio.Task] = []
        self._senders: list[_Sender] = []
        self._token: Any = None
        self._delivery: Any = None
        self._dead: asyncio.Future[None] | None = None
        self.client: Any = None
        # Set when the run starts: the ps variables (this stage's; the chief's: every stage's), the
        # queues to and from the neighbours, and the chief's input, global step and micro-batches.
        self._own_vars: OrderedDict[str, Any] = OrderedDict()
        self._all_vars: OrderedDict[str, Any] = OrderedDict()
        self._fwd_in: Any = None
        self._bwd_in: Any = None
        self._fwd_out: _Sender | None = None
        self._bwd_out: _Sender | None = None
        self._input: Any = None
        self._global_step: Any = None
        self._micro: list[tuple[np.ndarray, np.ndarray]] = []
        self._batch_n = 0
        self._sync = False  # this step's parameters must be confirmed on the ps (a checkpoint step)
        self._publishing: asyncio.Future | None = None  # the write of the last update to the ps
        self._own_slot_vars: OrderedDict[str, Any] = OrderedDict()  # velocities on the ps (momentum)
        self._all_slot_vars: OrderedDict[str, Any] = OrderedDict()

    # ---------------------------------------------------------------- names and resources
    def _var_name(self, name: str) -> str:
        return f"{self.scope}/{name.split('/', 1)[-1]}"

    def _container_of(self, generation: int) -> str:
        base = f"pp-{self.scope}-{generation}"
        return f"{self.cfg.container}-{base}" if self.cfg.container else base

    @property
    def _run_container(self) -> str:
        return self._container_of(self.generation)

    async def _q(self, name: str, capacity: int, dtypes: list, shapes: Any = None) -> Any:
        """A queue of this run (in the run's container), opened once."""
        q = self._queues.get(name)
        if q is None:
            q = await self.client.fifo_queue(f"{self.scope}/pp/{name}", capacity, dtypes, shapes,
                                             container=self._run_container)
            self._queues[name] = q
        return q

    async def _fwd_q(self, boundary: int) -> Any:
        # (header, activations, labels): shapes vary with the micro-batch, so none are fixed.
        return await self._q(f"fwd/{boundary}", 2 * self.cfg.micro_batches, [np.int64, self.dtype, np.int64])

    async def _bwd_q(self, boundary: int) -> Any:
        # (header, gradient of the activations, the minibatch's loss)
        return await self._q(f"bwd/{boundary}", 2 * self.cfg.micro_batches, [np.int64, self.dtype, np.float64])

    async def _token_q(self, kind: str, stage: int) -> Any:
        return await self._q(f"{kind}/{stage}", 1, [np.int64], [[]])

    def _target(self) -> str:
        address = server_address(self.cfg.target, self.cfg.cluster, self.cfg.job, self.cfg.task)
        assert address is not None  # PipelineConfig refuses neither a target nor a cluster
        return address

    def _ps_tasks(self) -> int | None:
        return ps_task_count(self.cfg.ps_tasks, self.cfg.cluster)

    async def _variables(self, names: Sequence[str]) -> "OrderedDict[str, Any]":
        """Get or create the ps variables of these parameters, placed round robin on the ps."""
        sizes = self.model.sizes
        shapes: dict[str, tuple[int, ...]] = {}
        for i in range(self.model.num_layers):
            shapes[f"{self.model.name}/w{i}"] = (sizes[i], sizes[i + 1])
            shapes[f"{self.model.name}/b{i}"] = (sizes[i + 1],)
        out: OrderedDict[str, Any] = OrderedDict()
        with placement_scope(self.client, self._ps_tasks()):
            for name in names:
                out[name] = await self.client.variable(self._var_name(name), np.zeros(shapes[name], self.dtype),
                                                       container=self.cfg.container)
        return out

    async def _slot_variables(self, names: Sequence[str]) -> "OrderedDict[str, Any]":
        """The ps variables of these parameters' velocities (``<variable>/momentum``)."""
        params = await self._variables(names)
        out: OrderedDict[str, Any] = OrderedDict()
        with placement_scope(self.client, self._ps_tasks()):
            for name, var in params.items():
                out[name] = await self.client.variable(f"{self._var_name(name)}/momentum",
                                                       np.zeros(var.shape, self.dtype), container=self.cfg.container)
        return out

    def _load_slots(self, slots: "dict[str, np.ndarray]") -> None:
        self.optimizer.load_state_dict({f"momentum:{k}": np.asarray(slots[k], self.dtype) for k in self.names})

    async def _counter(self, name: str) -> Any:
        """An int64 variable of the model's (``<scope>/<name>``), outliving runs."""
        return await self.client.variable(f"{self.scope}/{name}", np.int64(0), container=self.cfg.container)

    # ---------------------------------------------------------------- entry point
    async def run(self) -> StageResult:
        """Join (stage 0: start) a run, train until the step budget or the input's end, and stop.

        Raises:
            queueserver.UnavailableError: another stage stopped first (it is named, ``details["stage"]``).
            queueserver.DeadlineExceededError: another stage sent nothing within ``stage_timeout``
                (named likewise: not started, stopped, or alive but silent).
            queueserver.CancelledError: a newer run of the same pipeline replaced this one.
        """
        self._dead = asyncio.get_running_loop().create_future()
        try:
            async with self._connection() as client:
                self.client = client
                try:
                    await (self._start_run() if self.first else self._join_run())
                    await self._register()
                    await self._train()
                    for s in self._senders:
                        await self._race(s.flush())
                    await self._finish()
                except Exception as exc:
                    if self._token is not None:
                        await self._leave_cause(exc)
                        # Given back now, not when the connection closes: a client passed in may
                        # outlive this stage.
                        with contextlib.suppress(qs.QueueServerError):
                            await self._token.give_back()
                        self._token = None
                    raise
                finally:
                    await self._cleanup()
        finally:
            self._compute.shutdown(wait=False)
            if self._dead.done() and not self._dead.cancelled():
                self._dead.exception()  # retrieved: asyncio would warn about it otherwise
            self._dead.cancel()
        return self.result

    @contextlib.asynccontextmanager
    async def _connection(self) -> Any:
        if self._client is not None:
            yield self._client
            return
        client = await qs.connect_async(self._target(), token=self.cfg.token,
                                        client_name=f"pipeline stage {self.index}/{self.cfg.stages}")
        try:
            yield client
        finally:
            await client.close()

    async def _cleanup(self) -> None:
        if self._publishing is not None:
            self._publishing.cancel()
            with contextlib.suppress(BaseException):
                await self._publishing
        for w in self._watchers:
            w.cancel()
        for s in self._senders:
            await s.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        if self._delivery is not None:  # the minibatch of an unfinished step goes back to the queue
            with contextlib.suppress(qs.QueueServerError):
                await self._delivery.give_back()
            self._delivery = None

    # ---------------------------------------------------------------- starting and joining a run
    async def _start_run(self) -> None:
        """The chief: a new generation, the model on the ps (restored or fresh), the invitations."""
        cfg, client = self.cfg, self.client
        self._input = await self._open_source()  # a wrong --queue fails before anything changes
        run = await self._counter("pp/run")
        if not await run.is_initialized():
            await run.initialize()
        self.generation = int(await run.assign_add(np.int64(1)))
        if self.generation > 1:
            # The previous run's queues: whatever it left queued is dropped, and any of its stages
            # still waiting is told a newer run replaced it.
            await client.reset([self._container_of(self.generation - 1)])
        invitations = [await self._ready_q(i) for i in range(1, cfg.stages)]
        for q in invitations:  # invitations to runs that never happened
            n = await q.size()
            if n:
                await q.dequeue_many(n)
                await q.ack()
        all_vars = await self._variables(self.model.layer_names(0, self.model.num_layers))
        params, step, slots = self._initial_params()
        await asyncio.gather(*(all_vars[k].assign(np.asarray(v, self.dtype)) for k, v in params.items()))
        if self._slotted:
            # Every stage's velocities, restored or zero (a zero velocity acts as none): the ps may
            # hold an earlier run's.
            self._all_slot_vars = await self._slot_variables(list(params))
            slots = {k: slots.get(k, np.zeros_like(v)) for k, v in params.items()}
            await asyncio.gather(*(var.assign(np.asarray(slots[k], self.dtype))
                                   for k, var in self._all_slot_vars.items()))
            self._own_slot_vars = OrderedDict((k, self._all_slot_vars[k]) for k in self.names)
            self._load_slots(slots)
        self._all_vars = all_vars
        self._own_vars = OrderedDict((k, all_vars[k]) for k in self.names)
        self._global_step = await self._counter("global_step")
        await self._global_step.assign(np.int64(step))
        self.params = OrderedDict((k, self.backend.to_device(np.asarray(params[k], self.dtype))) for k in self.names)
        self._set_start(step)
        for q in invitations:
            await q.enqueue(np.array([self.generation, step], np.int64))
        log.info("stage 0 started run %d at global step %d", self.generation, step)

    async def _ready_q(self, stage: int) -> Any:
        return await self.client.fifo_queue(f"{self.scope}/pp/ready/{stage}", 64, [np.int64], [[2]],
                                            container=self.cfg.container)

    def _initial_params(self) -> tuple["OrderedDict[str, np.ndarray]", int, dict[str, np.ndarray]]:
        """The whole model, its global step and its velocities by parameter name: from the
        checkpoint, else fresh from the seed."""
        fresh = self.model.init_params(self.cfg.seed, self.dtype)
        if self.cfg.checkpoint_dir:
            ckpt = load_checkpoint(self.cfg.checkpoint_dir)
            if ckpt is not None:
                expected = {k: v.shape for k, v in fresh.items()}
                got = {k: v.shape for k, v in ckpt.params.items()}
                if expected != got:
                    raise ValueError(f"the checkpoint in {self.cfg.checkpoint_dir} holds {got}, but model"
                                     f" {self.cfg.model} needs {expected}")
                log.info("restored global step %d from %s", ckpt.global_step, self.cfg.checkpoint_dir)
                slots = {k[len("momentum:"):]: v for k, v in ckpt.slots.items() if k.startswith("momentum:")}
                params = OrderedDict((k, v.astype(self.dtype)) for k, v in ckpt.params.items())
                return params, ckpt.global_step, slots
        return fresh, 0, {}

    def _set_start(self, step: int) -> None:
        self.result.generation = self.generation
        self.result.start_step = self.result.global_step = step

    async def _open_source(self) -> Any:
        if self._source is not None:
            return self._source
        try:
            queue = await self.client.queue(self.cfg.queue, container=self.cfg.container)
        except qs.NotFoundError:
            raise qs.NotFoundError(f"input queue {self.cfg.queue!r} does not exist in container"
                                   f" {self.cfg.container!r} on {self._target()}: start the loaders first"
                                   " (or check --queue and --container)") from None
        return QueueSource(queue, self.cfg.batch, self.cfg.dequeue_timeout, classes=self.model.sizes[-1])

    async def _join_run(self) -> None:
        """Any other stage: wait for the chief's invitation, then pull this stage's parameters."""
        cfg = self.cfg
        ready = await self._ready_q(self.index)
        run = await self._counter("pp/run")
        while True:
            try:
                invitation = await ready.dequeue(timeout=cfg.stage_timeout)
            except qs.DeadlineExceededError:
                raise qs.DeadlineExceededError(
                    f"stage {self.index}: stage 0 (the chief) started no run within {cfg.stage_timeout:g} s"
                    " (--stage-timeout): start stage 0 with the same --target, --scope and --container", stage=0) from None
            await ready.ack()
            generation, step = (int(v) for v in invitation)
            current = int(await run.read()) if await run.is_initialized() else 0
            if generation >= current:
                break
            log.info("stage %d skipped an invitation to run %d (the current run is %d)", self.index, generation, current)
        self.generation = generation
        self._own_vars = await self._variables(self.names)
        values = await asyncio.gather(*(v.read() for v in self._own_vars.values()))
        self.params = OrderedDict((k, self.backend.to_device(np.asarray(v, self.dtype)))
                                  for k, v in zip(self.names, values))
        if self._slotted:
            self._own_slot_vars = await self._slot_variables(self.names)
            slot_values = await asyncio.gather(*(v.read() for v in self._own_slot_vars.values()))
            self._load_slots(dict(zip(self.names, slot_values)))
        self._set_start(step)

    async def _register(self) -> None:
        """Hold this stage's token (given back by the server if this stage goes away), then watch
        every other stage's."""
        registered = await self._token_q("registered", self.index)
        if await registered.is_closed():
            raise qs.AlreadyExistsError(f"stage {self.index} of run {self.generation} is already running in"
                                        " another process: start each --stage once", stage=self.index)
        alive = await self._token_q("alive", self.index)
        await alive.enqueue(np.int64(os.getpid()))
        self._token = await alive.take(timeout=self.cfg.stage_timeout)
        await registered.close()  # only now may the others watch the token: they cannot take it from us
        self._watchers = [asyncio.ensure_future(self._watch(j)) for j in range(self.cfg.stages) if j != self.index]

    async def _watch(self, stage: int) -> None:
        exc: BaseException
        try:
            registered = await self._token_q("registered", stage)
            with contextlib.suppress(qs.OutOfRangeError):
                while True:  # nobody enqueues: returns only when the stage has registered (closed it)
                    await registered.dequeue(timeout=None)
            token = await (await self._token_q("alive", stage)).take(timeout=None)
            pid = int(token.value)
            with contextlib.suppress(qs.QueueServerError):
                await token.give_back()  # for the other stages' watchers
            culprit, why = await self._cause(stage)
            exc = qs.UnavailableError(
                f"stage {stage} of {self.cfg.stages} (pid {pid}) stopped before the end of run {self.generation}"
                f" ({why}); stage {self.index} stops at global step {self.result.global_step}", stage=culprit)
        except (qs.CancelledError, qs.NotFoundError):
            exc = self._replaced()
        except qs.QueueServerError as e:
            exc = e
        if self._dead is not None and not self._dead.done():
            self._dead.set_exception(exc)

    async def _cause_q(self, stage: int) -> Any:
        return await self._q(f"cause/{stage}", 1, [np.int64, object], [[], []])

    async def _leave_cause(self, exc: BaseException) -> None:
        """A failing stage says why, and which stage is at fault, before its connection closes (and
        its token goes back), so the others stop with the cause rather than an echo of it."""
        culprit = getattr(exc, "details", {}).get("stage", self.index)
        with contextlib.suppress(Exception):
            await (await self._cause_q(self.index)).enqueue((np.int64(culprit), f"{type(exc).__name__}: {exc}"),
                                                              timeout=1.0)

    async def _cause(self, stage: int) -> tuple[int, str]:
        """What a stopped stage left (see :meth:`_leave_cause`): the stage at fault and why; without
        one (killed), the stage itself."""
        with contextlib.suppress(qs.QueueServerError):
            # Taken and given back, like the token, for the other stages' watchers; a short wait
            # covers a watcher elsewhere holding it for that moment.
            cause = await (await self._cause_q(stage)).take(timeout=1.0)
            with contextlib.suppress(qs.QueueServerError):
                await cause.give_back()
            culprit, text = cause.value
            if isinstance(text, np.ndarray):
                text = text.item()
            return int(culprit), "it failed: " + (text.decode() if isinstance(text, bytes) else str(text))
        return stage, "its process died, or its connection was lost: see its own output"

    async def _race(self, aw: Awaitable[Any]) -> Any:
        """Await ``aw`` unless another stage stops first (then raise the error naming it)."""
        assert self._dead is not None
        task = asyncio.ensure_future(aw)
        try:
            await asyncio.wait({task, self._dead}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        self._dead.result()  # raises the watcher's error
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- messages
    async def _peer_state(self, stage: int) -> tuple[int, str]:
        """How bad another stage's state is (2 not joined, 1 stopped, 0 running) and its description."""
        with contextlib.suppress(qs.QueueServerError):
            if not await (await self._token_q("registered", stage)).is_closed():
                return 2, (f"has not joined run {self.generation} (is it running, with the same --stages, --scope"
                           " and --container?)")
            if await (await self._token_q("alive", stage)).size():
                return 1, "has stopped (its process died or failed)"
            return 0, ("is running but sent nothing (waiting for input, or slow: raise --stage-timeout above the"
                       " longest step)")
        return 0, "is in an unknown state (the server did not answer)"

    async def _deadline(self, stage: int, what: str) -> BaseException:
        """The error of a wait for ``stage`` past the deadline. It names the stage at fault, which is
        not always the one waited for: a stage waiting on a missing stage is silent too."""
        states = {j: await self._peer_state(j) for j in range(self.cfg.stages) if j != self.index}
        culprit = max(states, key=lambda j: (states[j][0], j == stage))
        blame = "" if culprit == stage else f"; stage {culprit} {states[culprit][1]}"
        return qs.DeadlineExceededError(
            f"stage {self.index}: {what} stage {stage} within {self.cfg.stage_timeout:g} s (--stage-timeout):"
            f" stage {stage} {states[stage][1]}{blame}", stage=culprit)

    def _replaced(self) -> qs.CancelledError:
        """The error of a stage whose run's queues a newer run's chief reset."""
        return qs.CancelledError(f"run {self.generation} of this pipeline was replaced by a newer run (stage 0 was"
                                 f" started again; its queues were reset): stage {self.index} stops; start it again"
                                 " to join the new run", stage=self.index)

    async def _recv(self, queue: Any, peer: int, kind: str, step: int, mb: int | None) -> tuple:
        """The next message from ``peer``, which must be ``(generation, step, mb)`` (any micro-batch
        number, the end of the run included, when ``mb`` is None)."""
        for s in self._senders:
            s.check()
        t0 = time.perf_counter()
        try:
            msg = await self._race(queue.dequeue(timeout=self.cfg.stage_timeout))
        except qs.DeadlineExceededError:
            raise await self._deadline(peer, f"no {kind} for step {step} micro-batch {mb or 0} from") from None
        except (qs.CancelledError, qs.NotFoundError):
            raise self._replaced() from None
        self.result.wait_s += time.perf_counter() - t0
        header = [int(v) for v in msg[0]]
        want_mb = header[2] if mb is None and header[2] in (0, _END) else mb
        if len(header) != _HEADER or header[:3] != [self.generation, step, want_mb]:
            # The schedule admits exactly one next message; anything else would train on the wrong data.
            raise qs.DataLossError(
                f"stage {self.index} expected {kind} of run {self.generation} step {step} micro-batch"
                f" {'0' if mb is None else mb} from stage {peer}, got run {header[0]} step {header[1]}"
                f" micro-batch {header[2]}: refusing to mix steps", sender=peer)
        return header, msg[1], msg[2]

    def _header(self, step: int, mb: int, n_mb: int, batch_n: int) -> np.ndarray:
        return np.array([self.generation, step, mb, n_mb, batch_n, int(self._sync)], np.int64)

    def _sender(self, queue: Any, peer: int, kind: str) -> _Sender:
        async def on_deadline() -> BaseException:
            return await self._deadline(peer, f"could not hand {kind} (its queue stayed full) to")
        s = _Sender(queue, self.cfg.stage_timeout, on_deadline)
        self._senders.append(s)
        return s

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        # NumPy's products release the GIL: the event loop keeps sending and receiving meanwhile.
        def timed() -> Any:
            t0 = time.perf_counter()
            out = fn(*args)
            self.backend.synchronize()
            return out, time.perf_counter() - t0
        out, seconds = await asyncio.get_running_loop().run_in_executor(self._compute, timed)
        self.result.busy_s += seconds
        return out

    # ---------------------------------------------------------------- the schedule
    async def _train(self) -> None:
        """GPipe's schedule, step after step, until stage 0 says the run ends."""
        i = self.index
        self._fwd_in = None if self.first else await self._fwd_q(i - 1)
        self._bwd_in = None if self.last else await self._bwd_q(i)
        self._fwd_out = None if self.last else self._sender(await self._fwd_q(i), i + 1, "activations")
        self._bwd_out = None if self.first else self._sender(await self._bwd_q(i - 1), i - 1, "gradients")
        step = self.result.start_step
        start = time.perf_counter()
        while True:
            begun = await self._begin_step(step)
            if begun is None:
                break
            n_mb, batch_n, first_msg = begun
            caches, last_out = await self._forward(step, n_mb, batch_n, first_msg)
            loss = await self._backward(step, n_mb, batch_n, caches, last_out)
            step += 1
            r = self.result
            r.global_step, r.final_loss, r.samples = step, loss, r.samples + batch_n
            r.seconds = time.perf_counter() - start
            if self.first:
                await self._end_step(step)
            if self.cfg.report_every and (step - r.start_step) % self.cfg.report_every == 0:
                print(json.dumps({"event": "step", "stage": i, "global_step": step, "loss": loss}), flush=True)
        self.result.seconds = time.perf_counter() - start

    async def _begin_step(self, step: int) -> tuple[int, int, Any] | None:
        """The step's micro-batch count, minibatch size and (after stage 0) its first message; None
        when the run ends (the end is passed on down the pipeline)."""
        if self.first:
            reason = await self._next_minibatch(step)
            if reason is None:
                every = self.cfg.checkpoint_every
                self._sync = bool(self.cfg.checkpoint_dir) and (step + 1) % max(every, 1) == 0
                return len(self._micro), self._batch_n, None
            self._sync = True
            end: tuple = (self._header(step, _END, _REASONS.index(reason), 0), np.zeros((0, 0), self.dtype),
                          np.zeros(0, np.int64))
        else:
            assert self._fwd_in is not None
            end = header, act, labels = await self._recv(self._fwd_in, self.index - 1, "activations", step, None)
            self._sync = bool(header[5])
            if header[2] != _END:
                return header[3], header[4], (act, labels)
            reason = _REASONS[header[3]]
            await self._confirm(step)  # the end: the chief reads the whole model once all confirmed
        if self._fwd_out is not None:
            self._fwd_out.send(end)
        self.result.stop_reason = reason
        return None

    async def _forward(self, step: int, n_mb: int, batch_n: int, first_msg: Any) -> tuple[list, list]:
        """Every micro-batch's forward pass; returns the activations kept for the backward passes
        and (the last stage) the logits with their labels."""
        caches: list[Any] = []
        outputs: list[tuple[Any, Any]] = []
        for m in range(n_mb):
            if self.first:
                x, y = self._micro[m]
            elif m == 0:
                x, y = first_msg
            else:
                assert self._fwd_in is not None
                _, x, y = await self._recv(self._fwd_in, self.index - 1, "activations", step, m)
            x = self.backend.to_device(x, self.dtype)
            out, acts = await self._in_thread(self.model.forward_range, self.params, x, *self.layers)
            caches.append(acts)
            if self.last:
                outputs.append((out, y))
            else:
                assert self._fwd_out is not None
                self._fwd_out.send((self._header(step, m, n_mb, batch_n), self.backend.to_host(out), np.asarray(y)))
        return caches, outputs

    def _loss_grads(self, outputs: list[tuple[Any, Any]]) -> tuple[float, list[Any]]:
        """The last stage: the minibatch's mean loss and its logits' gradient, computed on the whole
        minibatch at once (as one process does), cut back into the micro-batches."""
        xp = self.backend.xp
        logits = xp.concatenate([lg for lg, _ in outputs])
        y = self.backend.to_device(np.concatenate([np.asarray(y) for _, y in outputs]))
        loss, grad = softmax_cross_entropy_with_grad(logits, y)
        cuts = np.cumsum([lg.shape[0] for lg, _ in outputs])[:-1]
        return loss, xp.split(grad, cuts.tolist())

    async def _backward(self, step: int, n_mb: int, batch_n: int, caches: list, outputs: list) -> float:
        """Every micro-batch's backward pass, the last first; the update; returns the step's loss."""
        loss = float("nan")
        if self.last:
            loss, dlogits = await self._in_thread(self._loss_grads, outputs)
        deltas: list[Any] = [None] * n_mb
        for m in reversed(range(n_mb)):
            if self.last:
                g_out = dlogits[m]
            else:
                assert self._bwd_in is not None
                _, g_host, loss_arr = await self._recv(self._bwd_in, self.index + 1, "gradients", step, m)
                loss = float(np.asarray(loss_arr).reshape(-1)[0])
                g_out = self.backend.to_device(g_host, self.dtype)
            deltas[m], g_in = await self._in_thread(self.model.backward_deltas, self.params, caches[m], g_out,
                                                    *self.layers, not self.first)
            if self._bwd_out is not None:  # the previous stage's backward pass can go on at once
                self._bwd_out.send((self._header(step, m, n_mb, batch_n), self.backend.to_host(g_in),
                                    np.array([loss], np.float64)))
        # The weights' gradients of the whole minibatch in one product per layer (the same sums as
        # one process computes), while the earlier stages drain their own backward passes.
        grads = await self._in_thread(self._minibatch_grads, caches, deltas)
        await self._update(grads)
        if not self.first and self._sync:
            await self._confirm(step + 1)
        return loss

    def _minibatch_grads(self, caches: list, deltas: list) -> "OrderedDict[str, Any]":
        """Stack the micro-batches' activations and deltas (in micro-batch order: the minibatch's
        rows) and take the weights' gradients of the whole minibatch."""
        xp = self.backend.xp
        n_layers = self.layers[1] - self.layers[0]
        acts = [xp.concatenate([c[j] for c in caches]) for j in range(n_layers)]
        ds = [xp.concatenate([d[j] for d in deltas]) for j in range(n_layers)]
        return self.model.weight_grads(acts, ds, *self.layers)

    async def _confirm(self, step: int) -> None:
        """Tell the chief this stage's parameters for ``step`` are on the ps (checkpoint steps, the end)."""
        await self._published()
        if self._slotted:  # the velocities too, for the chief's checkpoint
            state = self.optimizer.state_dict()
            await self._race(asyncio.gather(*(var.assign(state[f"momentum:{k}"])
                                              for k, var in self._own_slot_vars.items())))
        await self._race((await self._published_q()).enqueue(np.int64(step), timeout=self.cfg.stage_timeout))

    async def _published_q(self) -> Any:
        return await self._q("published", self.cfg.stages, [np.int64], [[]])

    async def _all_confirmed(self, step: int) -> None:
        """The chief: wait until every other stage has confirmed its parameters for ``step``."""
        if self.cfg.stages == 1:
            return
        q = await self._published_q()
        t0 = time.perf_counter()
        try:
            got = await self._race(q.dequeue_many(self.cfg.stages - 1, timeout=self.cfg.stage_timeout))
        except qs.DeadlineExceededError:
            raise await self._deadline(self.cfg.stages - 1, f"not every stage confirmed its update of step {step}:"
                                       " waited for") from None
        self.result.wait_s += time.perf_counter() - t0
        if sorted(int(v) for v in got) != [step] * (self.cfg.stages - 1):
            raise qs.DataLossError(f"stage 0 expected every stage to confirm step {step}, got {sorted(got)}")

    async def _next_minibatch(self, step: int) -> str | None:
        """Stage 0: take the step's minibatch and cut it into micro-batches (None), or say why the
        run ends (``steps``, ``end_of_data``)."""
        if self.cfg.steps is not None and step >= self.cfg.steps:
            return "steps"
        t0 = time.perf_counter()
        try:
            x, y, *rest = await self._race(self._input.next())
        except qs.OutOfRangeError:
            return "end_of_data"
        self.result.wait_s += time.perf_counter() - t0
        self._delivery = rest[0] if rest else None
        y = np.asarray(y).reshape(-1)
        x = np.asarray(x).reshape(len(y), -1)
        n_mb = min(self.cfg.micro_batches, len(y))
        self._micro = list(zip(np.array_split(x, n_mb), np.array_split(y, n_mb)))
        self._batch_n = len(y)
        return None

    async def _update(self, grads: "OrderedDict[str, Any]") -> None:
        """Apply this stage's summed gradients, then write its parameters through to the ps, in the
        background: the write overlaps the next step's forward passes, and ends before the next
        update changes the arrays it sends (or before a confirmation says it is done)."""
        await self._published()
        await self._in_thread(self.optimizer.apply, self.params, grads)
        host = [self.backend.to_host(self.params[k]) for k in self.names]
        self._publishing = asyncio.ensure_future(
            asyncio.gather(*(v.assign(h) for v, h in zip(self._own_vars.values(), host))))

    async def _published(self) -> None:
        """Wait until the last write of this stage's parameters is on the ps."""
        task, self._publishing = self._publishing, None
        if task is not None:
            t0 = time.perf_counter()
            await self._race(task)
            self.result.publish_s += time.perf_counter() - t0

    async def _end_step(self, step: int) -> None:
        """The chief, once every stage has updated: the global step, the checkpoint, the batch's ack."""
        await self._race(self._global_step.assign(np.int64(step)))
        if self._sync and self.cfg.checkpoint_dir:
            await self._all_confirmed(step)
            save_checkpoint(self.cfg.checkpoint_dir, await self._model_params(), step, await self._model_slots())
        if self._delivery is not None:
            delivery, self._delivery = self._delivery, None
            await delivery.ack()

    async def _model_slots(self) -> dict[str, np.ndarray]:
        """The whole model's velocities as checkpoint slots: this stage's from memory, the others'
        from the ps (confirmed by then). Empty for plain SGD."""
        if not self._slotted:
            return {}
        slots = self.optimizer.state_dict()
        others = [k for k in self._all_slot_vars if k not in self.params]
        values = await self._race(asyncio.gather(*(self._all_slot_vars[k].read() for k in others)))
        slots.update({f"momentum:{k}": v for k, v in zip(others, values)})
        return slots

    async def _model_params(self) -> "OrderedDict[str, np.ndarray]":
        """The whole model: this stage's parameters from memory, the others' from the ps."""
        others = [k for k in self._all_vars if k not in self.params]
        values = await self._race(asyncio.gather(*(self._all_vars[k].read() for k in others)))
        read = dict(zip(others, values))
        return OrderedDict((k, self.backend.to_host(self.params[k]) if k in self.params else read[k])
                           for k in self._all_vars)

    async def _finish(self) -> None:
        await self._published()
        self.result.params = OrderedDict((k, self.backend.to_host(v)) for k, v in self.params.items())
        if self.first:
            await self._all_confirmed(self.result.global_step)
            self.result.model_params = await self._model_params()
            if self.cfg.checkpoint_dir and self.result.global_step > self.result.start_step:
                save_checkpoint(self.cfg.checkpoint_dir, self.result.model_params, self.result.global_step,
                                await self._model_slots())
        if self._token is not None:
            await self._token.ack()  # a clean finish: the other stages' watchers must not fire
            self._token = None


async def train_pipeline_async(config: PipelineConfig, source: Any = None) -> list[StageResult]:
    """Run every stage of ``config`` in this process (each with its own connection); returns their
    results by stage.

    Args:
        config: the configuration (its ``stage`` is ignored).
        source: stage 0's minibatch source instead of the input queue.

    Raises:
        The first stage's error that is not merely another stage having stopped (the root cause).
    """
    stages = [PipelineStage(replace(config, stage=i), source=source if i == 0 else None)
              for i in range(config.stages)]
    outcomes = await asyncio.gather(*(s.run() for s in stages), return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        # A stage that failed makes the others fail naming it: report the cause, not the echoes.
        causes = [e for e in errors if not isinstance(e, (qs.UnavailableError, qs.CancelledError))]
        raise (causes or errors)[0]
    return [o for o in outcomes if isinstance(o, StageResult)]


def train_pipeline(config: PipelineConfig, source: Any = None) -> list[StageResult]:
    """:func:`train_pipeline_async` on a fresh event loop (for scripts, tests and the demo)."""
    return asyncio.run(train_pipeline_async(config, source))


# ---------------------------------------------------------------- the command line (python -m compute train)
def add_arguments(parser: Any) -> None:
    """Add the pipeline's options to the ``train`` parser."""
    g = parser.add_argument_group("model parallelism (pipeline)")
    g.add_argument("--stages", type=int, help="split the model's layers into K pipeline stages")
    g.add_argument("--stage", type=int, help="this process's stage, 0..K-1 (default: every stage in this process)")
    g.add_argument("--micro-batches", type=int, default=4, help="micro-batches per minibatch (default 4)")
    g.add_argument("--stage-timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for another stage before failing, naming it (default 60)")
    g.add_argument("--dtype", default="float32", choices=DTYPES, help="parameters and activations (default float32)")


def config_from_args(args: Any) -> PipelineConfig:
    """A :class:`PipelineConfig` from parsed ``train`` arguments (with :func:`add_arguments`'s)."""
    return PipelineConfig(
        target=args.target, token=getattr(args, "token", None), cluster=args.cluster, job=args.job, task=args.task, stages=args.stages, stage=args.stage,
        micro_batches=args.micro_batches, queue=args.queue, container=args.container, scope=args.scope,
        ps_tasks=args.ps_tasks, model=args.model, batch=args.batch, lr=args.lr, optimizer=args.optimizer, momentum=args.momentum,
        seed=args.seed, steps=args.steps, dtype=args.dtype, device=args.device, soft_placement=args.soft_placement,
        checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every,
        stage_timeout=args.stage_timeout, dequeue_timeout=args.dequeue_timeout, report_every=args.report_every)


def run_from_args(args: Any) -> int:
    """Run one stage (``--stage``) or every stage; print each stage's summary as a JSON line on
    stdout and the bubble report on stderr. Returns the exit status (0 ok, 2 bad configuration,
    1 runtime error naming the stage at fault, 130/143 interrupted)."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"compute train: {exc}", file=sys.stderr)
        return 2
    terminated: list[int] = []

    def on_sigterm(signum: int, frame: object) -> None:  # as Ctrl-C: the unfinished step's batch goes back
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        if config.stage is None:
            results = train_pipeline(config)
        else:
            results = [asyncio.run(PipelineStage(config).run())]
    except ValueError as exc:
        print(f"compute train: {exc}", file=sys.stderr)
        return 2
    except qs.QueueServerError as exc:
        print(f"compute train: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{'terminated' if terminated else 'interrupted'}: the minibatch of the unfinished step went back"
              " to the queue; the other stages stop, naming this one", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    for r in results:
        print(json.dumps({"event": "done", **r.summary()}, allow_nan=False), flush=True)
    print(format_bubble_report(results), file=sys.stderr)
    return 0
