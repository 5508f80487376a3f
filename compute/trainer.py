"""Trainer clients: data-parallel training against parameters held as variables on the ps tasks.

Three modes (the seed's section 3.4):

* ``local``: one process keeps its parameters on its own device; the input still comes from a queue
  (or from memory). The baseline for input-feeding measurements.
* ``async``: every replica pulls the parameters, computes gradients on its minibatch and pushes its
  own update (``assign_add`` of ``-lr * grad``, atomic on the ps). The staleness of each gradient
  (how many updates other replicas applied between this replica's pull and its push, read from a
  shared ``global_step`` variable) is measured, and a policy drops or scales stale gradients.
* ``sync``: TensorFlow's SyncReplicasOptimizer. Every variable has a conditional accumulator beside
  it on the ps; replicas push gradients tagged with the global step they were computed at, and the
  accumulators drop older ones. The chief (task 0) takes the average of ``aggregate`` gradients
  from every accumulator, applies it, advances the global step, and releases the replicas with
  tokens. With ``replicas > aggregate`` the extra replicas are spares: losing one does not stop
  training, and the slowest gradients of each step are simply dropped.

Coordination uses only queues and variables on the server, never sleeps: the chief signals "model
ready" by closing a queue (a dequeue on a closed, empty queue fails at once, so closing is a
broadcast), and any replica signals "stop" the same way on a second queue, when the data queue is
closed and drained or the step budget is spent.

Where the time goes: every step is split into the phases of :data:`queueserver.metrics.TRAINER_PHASES`
(``wait_data_s``: waiting for the minibatch; ``pull_params_s``: getting the parameters, in sync mode
waiting for the chief's token too; ``compute_s``: forward and backward, and in local mode the update;
``push_grads_s``: sending the update or the gradients). Every ``report_every_s`` seconds the trainer
reports them (seconds per step, averaged since its last report) with ``samples_per_s`` and ``step_s``
to the server (``Client.report``, role ``"trainer"``), whose status page stacks them; the run's
averages are in :class:`TrainResult` and the CLI's final JSON line.

Tokens: each replica has its own token queue (``<scope>/token_q/<task>``), and the chief enqueues one
token per replica per step: ``replicas`` tokens per step as in TensorFlow. One shared queue (as
TensorFlow has) lets a fast replica take a slow one's token and push two gradients for one step;
per-replica queues keep exactly one gradient per replica per step, which the equivalence of K
replicas with one big-batch process depends on. A dead replica's queue just fills with stale tokens,
which a restarted replica skips.

Example:
    >>> cfg = TrainConfig(target=server.target, queue="instances", model="softmax:20,3", steps=100)  # doctest: +SKIP
    >>> result = train(cfg)                                                                        # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import sys
import time
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

import numpy as np

import queueserver as qs
from queueserver.metrics import TRAINER_PHASES
from compute.backend import (
    TRANSFER_DTYPES, Backend, decode_transfer, encode_transfer, get_backend, transfer_marker, transfer_wire_dtype,
)
from compute.checkpoint import load_checkpoint, save_checkpoint
from compute.models import MLP, parse_model
from compute.optim import Optimizer, make_optimizer

__all__ = [
    "TrainConfig", "TrainResult", "Trainer", "train", "train_async", "ParameterStore", "StalenessPolicy",
    "ArraySource", "QueueSource", "Prefetcher", "Progress", "Stopper", "StepClock",
]

log = logging.getLogger("compute.trainer")

MODES = ("local", "async", "sync")


# ---------------------------------------------------------------- configuration
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
        sync_timeout: seconds the chief waits for gradients before checking whether to stop.
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
    sync_timeout: float = 5.0

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
            raise ValueError(f"--report-every-s must be >= 0 (0: never), got {self.report_every_s}")
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


@dataclass
class TrainResult:
    """What a trainer reports when it stops.

    Attributes:
        task: the trainer's task index.
        mode: local, async or sync.
        local_steps: steps this trainer computed (gradients it pushed, dropped ones included).
        start_step: the global step when it started (above 0 after a restore).
        global_step: the global step when it stopped.
        samples: examples it consumed.
        seconds: wall time of the training loop.
        final_loss: loss of its last minibatch.
        stop_reason: ``steps``, ``end_of_data`` or ``stopped`` (another replica asked).
        step_s: wall time per local step (``seconds / local_steps``).
        wait_data_s, pull_params_s, compute_s, push_grads_s: the step's split into phases, seconds
            per step averaged over the run (see :class:`StepClock`); the rest of ``step_s`` is
            bookkeeping (progress, checkpoints).
        staleness: async mode: how many gradients had each staleness.
        dropped: gradients dropped as too stale (by the policy in async mode, by the accumulators
            in sync mode as far as this replica can tell).
        params: the final parameters when this process owned them (local mode and the chief).
    """

    task: int
    mode: str
    local_steps: int = 0
    start_step: int = 0
    global_step: int = 0
    samples: int = 0
    seconds: float = 0.0
    final_loss: float = float("nan")
    stop_reason: str = ""
    step_s: float = 0.0
    wait_data_s: float = 0.0
    pull_params_s: float = 0.0
    compute_s: float = 0.0
    push_grads_s: float = 0.0
    staleness: dict[int, int] = field(default_factory=dict)
    dropped: int = 0
    params: "OrderedDict[str, np.ndarray] | None" = field(default=None, repr=False)

    @property
    def samples_per_s(self) -> float:
        """Throughput of the training loop."""
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict:
        """A JSON-friendly summary (no parameters)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "params"}
        out["samples_per_s"] = round(self.samples_per_s, 1)
        for key in ("step_s", *TRAINER_PHASES):
            out[key] = round(out[key], 6)
        out["staleness"] = {str(k): v for k, v in sorted(self.staleness.items())}
        return out

    def staleness_histogram(self, width: int = 40) -> str:
        """The staleness distribution as text bars, one line per staleness value."""
        if not self.staleness:
            return "(no staleness measured)"
        top = max(self.staleness.values())
        lines = []
        for k in sorted(self.staleness):
            n = self.staleness[k]
            lines.append(f"staleness {k:>3}: {'#' * max(1, round(width * n / top)):<{width}} {n}")
        return "\n".join(lines)


# ---------------------------------------------------------------- staleness policy
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


# ---------------------------------------------------------------- input
def _split_element(batch: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from a dequeued batch: a tuple of two components or a dict with x/y (image/label)."""
    if isinstance(batch, dict):
        for xk, yk in (("x", "y"), ("image", "label"), ("features", "label")):
            if xk in batch and yk in batch:
                return batch[xk], batch[yk]
        raise ValueError(f"cannot find features and labels among the queue's components {sorted(batch)}")
    if isinstance(batch, tuple) and len(batch) == 2:
        return batch
    raise ValueError("the input queue's elements must be (features, label) pairs")


class QueueSource:
    """Minibatches from a shared queue with ``dequeue_up_to`` (the last one may be short).

    Args:
        queue: an :class:`queueserver.AsyncQueue`.
        batch: examples per minibatch.
        timeout: seconds to wait for a minibatch (None: forever).
    """

    def __init__(self, queue: Any, batch: int, timeout: float | None = None) -> None:
        self.queue, self.batch, self.timeout = queue, batch, timeout

    async def next(self) -> tuple[np.ndarray, np.ndarray, Any]:
        """The next minibatch as float32 features ``(n, d)`` and integer labels ``(n,)``, and its
        delivery: the batch stays held on the server until the trainer has trained on it and
        acknowledges it (``delivery.ack()``); one it never trains on goes back to the queue.

        Raises:
            queueserver.OutOfRangeError: the queue is closed and drained.
        """
        delivery = await self.queue.take(self.batch, up_to=True, timeout=self.timeout)
        try:
            x, y = _split_element(delivery.value)
        except BaseException:
            await delivery.give_back()
            raise
        return np.asarray(x, np.float32).reshape(len(x), -1), np.asarray(y).reshape(-1), delivery


class ArraySource:
    """Minibatches sliced from arrays already in memory (the baseline for queue feeding).

    Args:
        x: features, one row per example.
        y: labels.
        batch: examples per minibatch.
        epochs: passes over the data before OutOfRangeError (None: for ever).
    """

    def __init__(self, x: Any, y: Any, batch: int, epochs: int | None = 1) -> None:
        if len(x) != len(y) or len(x) == 0:
            raise ValueError("x and y need the same, non-zero, number of rows")
        self.x, self.y, self.batch, self.epochs = x, y, batch, epochs
        self._pos, self._epoch = 0, 0

    async def next(self) -> tuple[Any, Any]:
        """The next slice (views, no copy).

        Raises:
            queueserver.OutOfRangeError: after ``epochs`` passes.
        """
        if self._pos >= len(self.x):
            self._pos, self._epoch = 0, self._epoch + 1
        if self.epochs is not None and self._epoch >= self.epochs:
            raise qs.OutOfRangeError("ArraySource: all epochs consumed")
        sl = slice(self._pos, self._pos + self.batch)
        self._pos += self.batch
        return self.x[sl], self.y[sl]


class Prefetcher:
    """Fetches minibatch ``k + 1`` (and copies it to the device) while step ``k`` computes, and
    owns what the batches' deliveries become: the loop calls :meth:`trained` once a step's update
    is done, which acknowledges that batch; :meth:`cancel` gives back the batch being trained and
    the one fetched ahead, so a trainer stopped by anything (its step budget, Ctrl-C, SIGTERM, an
    error) leaves every batch it did not train on in the queue. (SIGKILL: the server does it.)

    The dequeue is I/O on the event loop; the host-to-device copy runs on ``copy_executor`` so it
    overlaps the compute thread too.

    Args:
        source: anything with ``async next() -> (x, y)`` or ``(x, y, delivery)``, where a
            delivery has ``async ack()`` and ``async give_back()`` (see :class:`QueueSource`).
        backend: where the batch should end up.
        copy_executor: the thread that runs host-to-device copies.
    """

    def __init__(self, source: Any, backend: Backend, copy_executor: ThreadPoolExecutor) -> None:
        self.source, self.backend, self.executor = source, backend, copy_executor
        self._task: asyncio.Task | None = None
        self._current: Any = None              # the delivery of the batch being trained on
        self._acks: set[asyncio.Task] = set()  # acknowledgements on their way

    async def _fetch(self) -> tuple[Any, Any, int, Any]:
        x, y, *rest = await self.source.next()
        delivery = rest[0] if rest else None
        try:
            if self.backend.is_gpu and type(x).__module__.startswith("numpy"):
                loop = asyncio.get_running_loop()
                x, y = await loop.run_in_executor(
                    self.executor, lambda: (self.backend.to_device(x, np.float32), self.backend.to_device(y)))
        except BaseException:
            if delivery is not None:
                await delivery.give_back()
            raise
        return x, y, len(y), delivery

    def start(self) -> None:
        """Begin fetching the next minibatch in the background."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._fetch())

    async def next(self) -> tuple[Any, Any, int]:
        """The prefetched minibatch ``(x, y, n)``; starts fetching the one after.

        Raises:
            queueserver.OutOfRangeError: the source is exhausted.
        """
        if self._current is not None:
            raise RuntimeError("Prefetcher.next() before the last batch was marked trained()")
        self.start()
        task, self._task = self._task, None
        x, y, n, self._current = await task
        self.start()
        return x, y, n

    def trained(self) -> None:
        """The current batch's step is done: acknowledge it (in the background, in order)."""
        delivery, self._current = self._current, None
        if delivery is not None:
            ack = asyncio.ensure_future(delivery.ack())
            self._acks.add(ack)
            ack.add_done_callback(self._acks.discard)

    async def cancel(self) -> None:
        """Give back the batch being trained and withdraw (or give back) the one fetched ahead;
        wait for the acknowledgements on their way."""
        task, self._task = self._task, None
        current, self._current = self._current, None
        to_give_back = []
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                fetched = await task  # finished before the cancel: it holds a batch
                if fetched[3] is not None:
                    to_give_back.append(fetched[3])
        if current is not None:
            to_give_back.append(current)
        # Each goes back to the queue's front: the one fetched ahead first, so the batch being
        # trained on ends up before it, in the order they were taken.
        for delivery in to_give_back:
            with contextlib.suppress(qs.QueueServerError):
                await delivery.give_back()
        if self._acks:
            await asyncio.gather(*self._acks, return_exceptions=True)


# ---------------------------------------------------------------- where the time goes
class StepClock:
    """Splits a trainer's steps into phases (``TRAINER_PHASES``) and averages them per step.

    The loop calls :meth:`enter` when it moves to another phase (``None``: bookkeeping, counted in
    no phase) and :meth:`step_done` at the end of each step. :meth:`take_window` returns the
    figures since its last call; the phase in progress then is counted up to now, so a trainer stuck
    waiting for data shows that wait even before its step ends. Over a window without a finished
    step, the step in progress counts as one.

    Args:
        clock: the time source (``time.perf_counter``).

    Example:
        >>> t = iter([0.0, 1.0, 1.5, 3.5, 4.0, 4.0]).__next__
        >>> c = StepClock(clock=t); c.start()          # 0.0
        >>> c.enter("wait_data_s")                     # 1.0: bookkeeping until now
        >>> c.enter("compute_s")                       # 1.5: waited 0.5 s for data
        >>> c.step_done(32)                            # 3.5: computed 2.0 s
        >>> f = c.take_window()                        # 4.0: one step of 4.0 s
        >>> f["samples_per_s"], f["step_s"], f["wait_data_s"], f["compute_s"]
        (8.0, 4.0, 0.5, 2.0)
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.total = dict.fromkeys(TRAINER_PHASES, 0.0)
        self.window = dict.fromkeys(TRAINER_PHASES, 0.0)
        self.phase: str | None = None
        self.since = 0.0
        self.window_start = 0.0
        self.window_steps = self.window_samples = 0
        self.started = False

    def start(self) -> None:
        """The training loop begins: open the first window."""
        self.started = True
        self.phase = None
        self.since = self.window_start = self.clock()

    def _count(self, now: float) -> None:
        if self.phase is not None:
            dt = now - self.since
            self.total[self.phase] += dt
            self.window[self.phase] += dt
        self.since = now

    def enter(self, phase: str | None) -> None:
        """Move to ``phase`` (one of ``TRAINER_PHASES``, or ``None`` for bookkeeping)."""
        self._count(self.clock())
        self.phase = phase

    def step_done(self, samples: int) -> None:
        """One step ended, on ``samples`` examples."""
        self.enter(None)
        self.window_steps += 1
        self.window_samples += samples

    def take_window(self) -> dict[str, float]:
        """``samples_per_s``, ``step_s`` and the phases in seconds per step since the last call."""
        now = self.clock()
        self._count(now)
        wall = max(now - self.window_start, 1e-9)
        per = max(self.window_steps, 1)
        out = {"samples_per_s": round(self.window_samples / wall, 3), "step_s": round(wall / per, 6)}
        out.update((p, round(v / per, 6)) for p, v in self.window.items())
        self.window = dict.fromkeys(TRAINER_PHASES, 0.0)
        self.window_start, self.window_steps, self.window_samples = now, 0, 0
        return out

    def averages(self, steps: int) -> dict[str, float]:
        """Each phase's seconds per step over the whole run of ``steps`` steps."""
        self._count(self.clock())
        return {p: v / steps if steps else 0.0 for p, v in self.total.items()}


# ---------------------------------------------------------------- progress
class Progress:
    """A one-line progress bar on stderr: step, loss and samples/s, redrawn at most 10 times a second.

    Args:
        total: the global step to reach (None: unknown, no bar drawn).
        enabled: draw at all (None: when the stream is a terminal).
        stream: where to draw.
        label: a prefix, such as the task.
    """

    def __init__(self, total: int | None, enabled: bool | None = None, stream: Any = None, label: str = "") -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.label = total, label
        self._last = 0.0
        self._start = time.perf_counter()
        self._drawn = False

    def update(self, step: int, loss: float, samples: int, force: bool = False) -> None:
        """Redraw with the latest figures (throttled unless ``force``)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        rate = samples / max(now - self._start, 1e-9)
        if self.total:
            done = min(step / self.total, 1.0)
            bar = f"[{'#' * int(done * 24):<24}] {step}/{self.total}"
        else:
            bar = f"step {step}"
        self.stream.write(f"\r{self.label}{bar} loss {loss:.4f} {rate:,.0f} samples/s ")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the line."""
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------- coordination
class Stopped(Exception):
    """Raised inside a trainer's loop when another replica asked everyone to stop."""


class Stopper:
    """A cluster-wide stop flag: a queue nobody enqueues to; closing it wakes every watcher.

    Args:
        open_queue: opens (gets or creates) the stop queue; called again if a restarted chief
            resets the coordination container under a watcher.
    """

    def __init__(self, open_queue: Callable[[], Awaitable[Any]]) -> None:
        self._open = open_queue
        self.queue: Any = None
        self.stopping = asyncio.Event()
        self._watch: asyncio.Task | None = None

    async def start(self) -> "Stopper":
        """Open the queue and start watching it."""
        self.queue = await self._open()
        self._watch = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        while True:
            try:
                await self.queue.dequeue(timeout=None)  # nobody enqueues: returns only by OutOfRange
            except qs.OutOfRangeError:
                break  # closed: the stop signal
            except (qs.CancelledError, qs.NotFoundError):
                self.queue = await self._open()  # the container was reset: watch the new queue
            except qs.UnavailableError:
                break  # the server is gone: nothing more to coordinate
        self.stopping.set()

    async def request_stop(self) -> None:
        """Ask every replica to stop (idempotent)."""
        with contextlib.suppress(qs.QueueServerError):
            await self.queue.close()
        self.stopping.set()

    async def race(self, aw: Awaitable) -> Any:
        """Await ``aw`` unless the stop flag comes first.

        Raises:
            Stopped: the flag came first (``aw`` is cancelled).
        """
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise Stopped()

    async def close(self) -> None:
        """Stop watching."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(BaseException):
                await self._watch


# ---------------------------------------------------------------- parameters on the ps
class ParameterStore:
    """The model's parameters as server variables, one per named array, placed round robin on the ps.

    Pulls and pushes of all variables go out together (pipelined on the one connection). With a
    half-precision ``transfer_dtype`` the chief keeps a second, encoded copy of each variable
    (``<name>/<dtype>``) that replicas pull, which halves the pull bytes; pushes (gradients to the
    accumulators, updates to the variables) travel in the transfer dtype too, bfloat16 as marked
    uint16 bit patterns, and the ps widens them to float32 on arrival
    (:mod:`queueserver.core.wire_dtypes`): half the bytes, float32 sums.

    Args:
        client: an AsyncClient.
        names_shapes: parameter name -> shape, in order.
        transfer_dtype: ``float32``, ``bfloat16`` or ``float16``.
        container: the resource container.
        ps_tasks: spread the variables over this many ps tasks (None or 0: wherever the client is).
    """

    def __init__(self, client: Any, names_shapes: Mapping[str, tuple], transfer_dtype: str = "float32",
                 container: str = "", ps_tasks: int | None = None) -> None:
        self.client = client
        self.shapes = OrderedDict(names_shapes)
        self.transfer_dtype = transfer_dtype
        self.container = container
        self.ps_tasks = ps_tasks
        self.vars: OrderedDict[str, Any] = OrderedDict()
        self.wire_vars: OrderedDict[str, Any] = OrderedDict()

    #: The accumulators' dtype, whatever the transfer dtype: narrow pushes are widened on arrival,
    #: so they sum in float32 and the chief takes float32 averages with no cast on either side.
    accumulator_dtype = np.dtype(np.float32)

    @property
    def push_wire_dtype(self) -> np.dtype:
        """The NumPy dtype that carries gradients and updates on the wire (bfloat16: uint16)."""
        return transfer_wire_dtype(self.transfer_dtype)

    def placement(self) -> Any:
        """A context placing new resources round robin over the ps tasks (when the client can)."""
        return placement_scope(self.client, self.ps_tasks)

    async def create(self) -> None:
        """Get or create the variables (zeros until someone initialises them)."""
        with self.placement():
            for name, shape in self.shapes.items():
                self.vars[name] = await self.client.variable(name, np.zeros(shape, np.float32),
                                                             container=self.container)
        if self.transfer_dtype != "float32":
            wire = transfer_wire_dtype(self.transfer_dtype)
            for name, shape in self.shapes.items():
                with device_scope(self.client, self.vars[name], self.ps_tasks):
                    self.wire_vars[name] = await self.client.variable(
                        f"{name}/{self.transfer_dtype}", np.zeros(shape, wire), container=self.container)

    async def is_initialized(self) -> bool:
        """Whether every variable holds a value."""
        flags = await asyncio.gather(*(v.is_initialized() for v in self.vars.values()))
        return all(flags)

    async def publish(self, params: Mapping[str, np.ndarray]) -> None:
        """Assign every variable (and its encoded copy) from host arrays: the chief's write."""
        calls = [self.vars[k].assign(np.asarray(v, np.float32)) for k, v in params.items()]
        calls += [self.wire_vars[k].assign(encode_transfer(params[k], self.transfer_dtype))
                  for k in self.wire_vars]
        await asyncio.gather(*calls)

    async def pull(self, wire: bool = True) -> "OrderedDict[str, np.ndarray]":
        """Read every parameter as float32 host arrays (through the encoded copies when ``wire``)."""
        if wire and self.wire_vars:
            raw = await asyncio.gather(*(v.read() for v in self.wire_vars.values()))
            return OrderedDict((k, decode_transfer(r, self.transfer_dtype)) for k, r in zip(self.wire_vars, raw))
        raw = await asyncio.gather(*(v.read() for v in self.vars.values()))
        return OrderedDict(zip(self.vars, raw))

    async def push_delta(self, delta: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
        """Add ``delta`` (host arrays, float32 or already in the transfer dtype's wire form) to every
        variable atomically, sent in the transfer dtype.

        Returns the new values, float32 (the next pull, free).
        """
        marker = transfer_marker(self.transfer_dtype)
        new = await asyncio.gather(*(
            self.vars[k].assign_add(encode_transfer(d, self.transfer_dtype), wire_dtype=marker)
            for k, d in delta.items()))
        return OrderedDict(zip(delta, new))

    async def push_grads(self, accs: Mapping[str, Any], grads: Mapping[str, np.ndarray],
                         local_step: int) -> list[bool]:
        """Apply one gradient per variable to its accumulator, sent in the transfer dtype (host arrays,
        float32 or already in the wire form: see :func:`~compute.backend.encode_transfer`).

        Returns each accumulator's answer: False where the gradient was stale and dropped.
        """
        marker = transfer_marker(self.transfer_dtype)
        return list(await asyncio.gather(*(
            accs[k].apply_grad(encode_transfer(g, self.transfer_dtype), local_step, wire_dtype=marker)
            for k, g in grads.items())))


def placement_scope(client: Any, ps_tasks: int | None) -> Any:
    """``client.device(replica_device_setter(ps_tasks=N))`` when the cluster API is there, else nothing.

    Round-robin placement needs the queue server's cluster support (``client.device`` and
    ``queueserver.replica_device_setter``); on a single server everything lives on it.
    """
    setter = getattr(qs, "replica_device_setter", None)
    device = getattr(client, "device", None)
    if ps_tasks and setter is not None and device is not None:
        return device(setter(ps_tasks=ps_tasks))
    return contextlib.nullcontext()


def device_scope(client: Any, resource: Any, ps_tasks: int | None) -> Any:
    """Place new resources beside ``resource`` (an accumulator beside its variable) in a cluster."""
    where = getattr(resource, "device", None)
    device = getattr(client, "device", None)
    if ps_tasks and where and device is not None:
        return device(where)
    return contextlib.nullcontext()


# ---------------------------------------------------------------- the trainer
class Trainer:
    """One trainer process's loop. Build it with a :class:`TrainConfig`, then ``await run()``.

    Args:
        config: the configuration.
        source: where minibatches come from (default: the config's queue on the server).
        client: an open AsyncClient to use (default: connect to the config's target).
    """

    def __init__(self, config: TrainConfig, source: Any = None, client: Any = None) -> None:
        self.cfg = config
        self.model: MLP = parse_model(config.model)
        self.scope = config.scope or self.model.name
        self.backend = get_backend(config.device, config.soft_placement, config.gpu_memory_fraction)
        self.optimizer: Optimizer = make_optimizer(config.optimizer, config.lr, config.momentum)
        self.policy = StalenessPolicy.parse(config.staleness_policy)
        self._source = source
        self._client = client
        self._own_client = client is None
        self._compute = ThreadPoolExecutor(1, thread_name_prefix="compute")
        self._copy = ThreadPoolExecutor(1, thread_name_prefix="h2d")
        self.result = TrainResult(task=config.task, mode=config.mode)
        self.clock = StepClock()
        self.progress = Progress(config.steps, config.progress, label=f"[{config.job}:{config.task}] ")

    # ----- plumbing
    def _target(self) -> str | None:
        if self.cfg.target:
            return self.cfg.target
        if self.cfg.cluster is not None:
            spec = qs.ClusterSpec(self.cfg.cluster)
            return spec.task_address(self.cfg.job, self.cfg.task)
        return None

    def _ps_tasks(self) -> int | None:
        if self.cfg.ps_tasks is not None:
            return self.cfg.ps_tasks
        if self.cfg.cluster is not None:
            spec = qs.ClusterSpec(self.cfg.cluster)
            if "ps" in spec.jobs:
                return spec.num_tasks("ps")
        return None

    def _name(self, suffix: str) -> str:
        return f"{self.scope}/{suffix}"

    @property
    def _coord_container(self) -> str:
        # Coordination queues and accumulators live apart from the variables so that a restarted
        # chief can reset them (a closed stop queue cannot be reopened) without touching the model.
        return f"{self.cfg.container}-coord-{self.scope}" if self.cfg.container else f"coord-{self.scope}"

    async def _run_compute(self, fn: Callable, *args: Any) -> Any:
        # NumPy's matrix products release the GIL, so the event loop keeps receiving the next
        # minibatch and serving the chief's aggregation while this thread computes.
        return await asyncio.get_running_loop().run_in_executor(self._compute, fn, *args)

    def _grads(self, params: Mapping[str, Any], x: Any, y: Any) -> tuple[float, dict]:
        return self.model.loss_and_grads(params, x, y)

    def _to_device_params(self, params: Mapping[str, np.ndarray]) -> "OrderedDict[str, Any]":
        return OrderedDict((k, self.backend.to_device(v, np.float32)) for k, v in params.items())

    def _host_params(self, params: Mapping[str, Any]) -> "OrderedDict[str, np.ndarray]":
        return OrderedDict((k, self.backend.to_host(v)) for k, v in params.items())

    def _host_wire(self, arrays: Mapping[str, Any]) -> "OrderedDict[str, np.ndarray]":
        """Device arrays on the host in the transfer dtype's wire form, encoded before the copy: on a
        GPU the device rounds, and the copy carries half the bytes of float32."""
        dt = self.cfg.transfer_dtype
        return OrderedDict((k, self.backend.to_host(encode_transfer(v, dt))) for k, v in arrays.items())

    def _report(self, **fields: Any) -> None:
        print(json.dumps({"task": self.cfg.task, **fields}), flush=True)

    def _after_step(self, global_step: int, loss: float, n: int) -> None:
        self.clock.step_done(n)
        r = self.result
        r.local_steps += 1
        r.samples += n
        r.final_loss = loss
        r.global_step = global_step
        self.progress.update(global_step, loss, r.samples)
        if self.cfg.report_every and r.local_steps % self.cfg.report_every == 0:
            self._report(event="step", global_step=global_step, loss=round(loss, 6), samples=r.samples)

    def _done(self) -> bool:
        return self.cfg.steps is not None and self.result.global_step >= self.cfg.steps

    def _checkpoint(self, params: Mapping[str, Any], global_step: int, final: bool = False) -> None:
        if not self.cfg.checkpoint_dir or not self.cfg.is_chief:
            return
        if final or global_step % max(self.cfg.checkpoint_every, 1) == 0:
            save_checkpoint(self.cfg.checkpoint_dir, self._host_params(params), global_step,
                            self.optimizer.state_dict())

    def _initial_params(self) -> tuple["OrderedDict[str, np.ndarray]", int]:
        """From the checkpoint when there is one, else freshly initialised from the seed."""
        if self.cfg.checkpoint_dir:
            ckpt = load_checkpoint(self.cfg.checkpoint_dir)
            if ckpt is not None:
                expected = {k: v.shape for k, v in self.model.init_params(self.cfg.seed).items()}
                got = {k: v.shape for k, v in ckpt.params.items()}
                if expected != got:
                    raise ValueError(f"the checkpoint in {self.cfg.checkpoint_dir} holds {got}, "
                                     f"but model {self.cfg.model} needs {expected}")
                self.optimizer.load_state_dict(ckpt.slots)
                log.info("restored global step %d from %s", ckpt.global_step, self.cfg.checkpoint_dir)
                return ckpt.params, ckpt.global_step
        return self.model.init_params(self.cfg.seed), 0

    def _finish_times(self) -> None:
        """The run's step time and its split, into the result (at the end of the training loop)."""
        r = self.result
        self.clock.enter(None)
        r.step_s = r.seconds / r.local_steps if r.local_steps else 0.0
        for phase, value in self.clock.averages(r.local_steps).items():
            setattr(r, phase, value)

    def report_figures(self) -> dict[str, float]:
        """What the trainer reports to the server now: the window's figures and where it stands."""
        figures: dict[str, float] = self.clock.take_window()
        r = self.result
        figures.update(global_step=r.global_step, local_steps=r.local_steps, samples=r.samples)
        if math.isfinite(r.final_loss):
            figures["loss"] = round(float(r.final_loss), 6)
        return figures

    async def _report_loop(self, client: Any) -> None:
        """Every ``report_every_s`` seconds, report role ``trainer`` to the server (one round trip)."""
        while True:
            await asyncio.sleep(self.cfg.report_every_s)  # the report period, not a wait for an event
            if not self.clock.started:
                continue  # still setting up: no step to account for yet
            try:
                await client.report("trainer", self.report_figures())
            except qs.QueueServerError as exc:  # an older server, or the connection is gone
                log.debug("trainer report failed, not reporting any more: %s", exc)
                return

    @contextlib.asynccontextmanager
    async def _reporting(self, client: Any):
        """Report to ``client``'s server in the background while the block runs."""
        task = None
        if client is not None and self.cfg.report_every_s > 0 and hasattr(client, "report"):
            task = asyncio.ensure_future(self._report_loop(client))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    # ----- entry point
    async def run(self) -> TrainResult:
        """Train until the step budget is spent, the data runs out, or another replica says stop."""
        try:
            if self.cfg.mode == "local":
                await self._run_local()
            else:
                await self._run_distributed()
        finally:
            self.progress.close()
            self._compute.shutdown(wait=False)
            self._copy.shutdown(wait=False)
        return self.result

    async def _open_source(self, client: Any) -> Any:
        if self._source is not None:
            return self._source
        try:
            queue = await client.queue(self.cfg.queue, container=self.cfg.container)
        except qs.NotFoundError:
            raise qs.NotFoundError(f"input queue {self.cfg.queue!r} does not exist on {self._target()}: "
                                   "start the loaders first (or check --queue)") from None
        return QueueSource(queue, self.cfg.batch, self.cfg.dequeue_timeout)

    @contextlib.asynccontextmanager
    async def _connection(self):
        if self._client is not None:
            yield self._client
            return
        target = self._target()
        if target is None:
            yield None
            return
        client = await qs.connect_async(target, client_name=f"trainer /job:{self.cfg.job}/task:{self.cfg.task}")
        try:
            yield client
        finally:
            await client.close()

    # ----- local mode
    async def _run_local(self) -> None:
        async with self._connection() as client, self._reporting(client):
            source = await self._open_source(client) if client is not None or self._source else None
            if source is None:
                raise ValueError("local mode needs a data source: --target with --queue, or an ArraySource")
            params_host, step = self._initial_params()
            params = self._to_device_params(params_host)
            self.result.start_step = self.result.global_step = step
            prefetch = Prefetcher(source, self.backend, self._copy)
            clock = self.clock
            start = time.perf_counter()
            clock.start()
            try:
                while not self._done():
                    clock.enter("wait_data_s")
                    try:
                        x, y, n = await prefetch.next()
                    except qs.OutOfRangeError:
                        self.result.stop_reason = "end_of_data"
                        break

                    def step_fn(x=x, y=y) -> float:
                        loss, grads = self._grads(params, x, y)
                        self.optimizer.apply(params, grads)
                        return loss

                    clock.enter("compute_s")
                    loss = await self._run_compute(step_fn)
                    step += 1
                    self._after_step(step, loss, n)
                    prefetch.trained()
                    self._checkpoint(params, step)
                else:
                    self.result.stop_reason = "steps"
            finally:
                clock.enter(None)
                await prefetch.cancel()
            self.backend.synchronize()
            self.result.seconds = time.perf_counter() - start
            self._finish_times()
            self._checkpoint(params, step, final=True)
            self.result.params = self._host_params(params)

    # ----- distributed modes
    async def _run_distributed(self) -> None:
        cfg = self.cfg
        async with self._connection() as client, self._reporting(client):
            shapes = OrderedDict((k, v.shape) for k, v in self.model.init_params(cfg.seed).items())
            store = ParameterStore(client, shapes, cfg.transfer_dtype, cfg.container, self._ps_tasks())
            cc = self._coord_container

            def open_q(suffix: str) -> Awaitable[Any]:
                return client.fifo_queue(self._name(suffix), 1, [np.int64], [[]], container=cc)

            if cfg.is_chief:
                if await (await open_q("stop_q")).is_closed():
                    # Left over from an earlier run on this live server: a closed queue cannot be
                    # reopened, so free the coordination container (the model's variables stay).
                    await client.reset([cc])
            else:
                await self._wait_ready(open_q)
            with store.placement():
                global_step = await client.variable(self._name("global_step"), np.int64(0),
                                                    container=cfg.container)
            await store.create()
            stopper = await Stopper(lambda: open_q("stop_q")).start()
            try:
                accs = await self._accumulators(client, store, cc) if cfg.mode == "sync" else None
                if cfg.is_chief:
                    await self._chief_init(store, global_step, accs)
                    await (await open_q("ready_q")).close()  # broadcast: the model is ready
                source = await self._open_source(client)
                if cfg.mode == "async":
                    await self._run_async_replica(store, global_step, source, stopper)
                else:
                    await self._run_sync_replica(client, store, global_step, accs, source, stopper, cc)
            finally:
                await stopper.close()

    async def _wait_ready(self, open_q: Callable[[str], Awaitable[Any]]) -> None:
        """Block until the chief closes the ready queue (TensorFlow's wait-for-model-ready)."""
        while True:
            try:
                await (await open_q("ready_q")).dequeue(timeout=None)
            except qs.OutOfRangeError:
                return  # closed by the chief
            except (qs.CancelledError, qs.NotFoundError):
                continue  # the chief reset the coordination container: wait on the new queue

    async def _accumulators(self, client: Any, store: ParameterStore, container: str) -> "OrderedDict[str, Any]":
        make = getattr(client, "conditional_accumulator", None)
        if make is None:
            raise RuntimeError("sync mode needs the queue server's conditional accumulators "
                               "(client.conditional_accumulator), which this queueserver lacks")
        accs: OrderedDict[str, Any] = OrderedDict()
        for name, shape in store.shapes.items():
            # float32 whatever the transfer dtype: pushes travel narrow (store.push_grads) and the
            # ps widens them on arrival, so only the bytes shrink, not the sums' precision.
            with device_scope(client, store.vars[name], store.ps_tasks):
                accs[name] = await make(f"{name}/grad_accum", list(shape), store.accumulator_dtype,
                                        container=container)
        return accs

    async def _chief_init(self, store: ParameterStore, global_step: Any, accs: Any) -> None:
        """Initialise the model on the ps unless it already holds one (a restarted chief)."""
        if await store.is_initialized() and await global_step.is_initialized():
            step = int(await global_step.read())
            params = await store.pull(wire=False)
            log.info("the ps already holds the model at global step %d: continuing from it", step)
            if store.wire_vars:
                await store.publish(params)
        else:
            params, step = self._initial_params()
            await store.publish(params)
            await global_step.assign(np.int64(step))
        self.result.start_step = self.result.global_step = step
        if accs:
            await asyncio.gather(*(a.set_global_step(step) for a in accs.values()))

    # ----- async replicas
    async def _run_async_replica(self, store: ParameterStore, global_step: Any, source: Any,
                                 stopper: Stopper) -> None:
        cfg = self.cfg
        staleness: Counter = Counter()
        prefetch = Prefetcher(source, self.backend, self._copy)
        params_host = await store.pull(wire=False)  # float32: the echo of each push is the next pull
        pulled_at = int(await global_step.read())
        self.result.start_step = self.result.global_step = pulled_at
        clock = self.clock
        start = time.perf_counter()
        clock.start()
        try:
            while True:
                if self._done():
                    self.result.stop_reason = "steps"
                    await stopper.request_stop()
                    break
                clock.enter("wait_data_s")
                try:
                    x, y, n = await stopper.race(prefetch.next())
                except qs.OutOfRangeError:
                    self.result.stop_reason = "end_of_data"
                    await stopper.request_stop()
                    break
                except Stopped:
                    self.result.stop_reason = "stopped"
                    break
                # The pull is the echo of the last push (free); what is left of it is the copy
                # of the parameters to the device.
                clock.enter("pull_params_s")
                params = self._to_device_params(params_host)

                def step_fn(params=params, x=x, y=y) -> tuple[float, dict]:
                    loss, grads = self._grads(params, x, y)
                    return loss, grads

                clock.enter("compute_s")
                loss, grads = await self._run_compute(step_fn)
                clock.enter("push_grads_s")
                now = int(await global_step.read())
                stale = now - pulled_at
                staleness[stale] += 1
                factor = self.policy.scale(stale)
                if factor is None:  # too stale: drop it, and pull fresh parameters
                    self.result.dropped += 1
                    clock.enter("pull_params_s")
                    params_host = await store.pull(wire=False)
                    pulled_at = now
                    self._after_step(now, loss, n)
                    prefetch.trained()  # its gradient was computed, and dropped by the staleness rule
                    continue
                delta = self.optimizer.delta(grads, factor)
                params_host = await store.push_delta(self._host_wire(delta))
                pulled_at = int(await global_step.assign_add(np.int64(1)))
                self._after_step(pulled_at, loss, n)
                prefetch.trained()
                self._checkpoint(params_host, pulled_at)
        finally:
            clock.enter(None)
            await prefetch.cancel()
        self.result.seconds = time.perf_counter() - start
        self._finish_times()
        self.result.staleness = dict(staleness)
        if cfg.is_chief:
            params_host = await store.pull(wire=False)
            self.result.global_step = int(await global_step.read())
            self._checkpoint(params_host, self.result.global_step, final=True)
            self.result.params = params_host

    # ----- sync replicas
    async def _run_sync_replica(self, client: Any, store: ParameterStore, global_step: Any, accs: Any,
                                source: Any, stopper: Stopper, cc: str) -> None:
        cfg = self.cfg
        tokens = [await client.fifo_queue(self._name(f"token_q/{i}"), 1 << 20, [np.int64], [[]], container=cc)
                  for i in range(cfg.replicas)]
        my_tokens = tokens[cfg.task]
        chief_task = None
        if cfg.is_chief:
            chief_task = asyncio.ensure_future(self._chief_loop(store, global_step, accs, tokens, stopper))
        prefetch = Prefetcher(source, self.backend, self._copy)
        last_pushed = -1
        clock = self.clock
        start = time.perf_counter()
        clock.start()
        try:
            while True:
                if chief_task is not None and chief_task.done():
                    chief_task.result()  # surface the chief loop's error, if it failed
                try:
                    # Wait for a token newer than the last step we pushed for (skipping stale ones
                    # left by a dead incarnation of this replica), then read the step we compute at.
                    # Waiting for the token is waiting for the chief's update: part of the pull.
                    clock.enter("pull_params_s")
                    if last_pushed >= 0:
                        while int(await stopper.race(my_tokens.dequeue(timeout=None))) <= last_pushed:
                            pass
                    local_step = int(await global_step.read())
                    if cfg.steps is not None and local_step >= cfg.steps:
                        self.result.global_step = local_step
                        self.result.stop_reason = "steps"
                        break
                    clock.enter("wait_data_s")
                    x, y, n = await stopper.race(prefetch.next())
                except qs.OutOfRangeError:
                    self.result.stop_reason = "end_of_data"
                    await stopper.request_stop()
                    break
                except Stopped:
                    self.result.stop_reason = "stopped"
                    break
                clock.enter("pull_params_s")
                params = self._to_device_params(await store.pull())
                clock.enter("compute_s")
                loss, grads = await self._run_compute(self._grads, params, x, y)
                clock.enter("push_grads_s")
                applied = await store.push_grads(accs, self._host_wire(grads), local_step)
                if not all(applied):
                    self.result.dropped += 1
                last_pushed = local_step
                self._after_step(local_step, loss, n)
                prefetch.trained()
        finally:
            clock.enter(None)
            await prefetch.cancel()
            if chief_task is not None:
                await stopper.request_stop()
                try:
                    await chief_task
                except Stopped:
                    pass
                if chief_task.done() and not chief_task.cancelled() and chief_task.exception() is None:
                    final_params, final_step = chief_task.result()
                    self.result.params, self.result.global_step = final_params, final_step
        self.result.seconds = time.perf_counter() - start
        self._finish_times()

    async def _chief_loop(self, store: ParameterStore, global_step: Any, accs: Any, tokens: list,
                          stopper: Stopper) -> tuple["OrderedDict[str, np.ndarray]", int]:
        """Take ``aggregate`` averaged gradients per variable, apply, advance the step, release tokens."""
        cfg = self.cfg
        params = await store.pull(wire=False)  # the chief's master copy, float32
        step = int(await global_step.read())
        n = cfg.replicas_to_aggregate
        try:
            while cfg.steps is None or step < cfg.steps:
                try:
                    avgs = await stopper.race(asyncio.gather(*(a.take_grad(n) for a in accs.values())))
                except Stopped:
                    break
                grads = OrderedDict((k, np.asarray(g, np.float32)) for k, g in zip(accs, avgs))
                self.optimizer.apply(params, grads)
                await store.publish(params)
                step = int(await global_step.assign_add(np.int64(1)))
                await asyncio.gather(*(t.enqueue(np.int64(step)) for t in tokens))
                self._checkpoint(params, step)
        finally:
            self._checkpoint(params, step, final=True)
        if cfg.steps is not None and step >= cfg.steps:
            await stopper.request_stop()
        return params, step


def train_async(config: TrainConfig, source: Any = None, client: Any = None) -> Awaitable[TrainResult]:
    """``await train_async(config)``: build a :class:`Trainer` and run it on the current event loop."""
    return Trainer(config, source=source, client=client).run()


def train(config: TrainConfig, source: Any = None) -> TrainResult:
    """Run one trainer to the end on a fresh event loop (for scripts and the CLI).

    Args:
        config: the configuration.
        source: a minibatch source instead of the config's queue (e.g. an :class:`ArraySource`).

    Returns:
        The trainer's :class:`TrainResult`.
    """
    return asyncio.run(Trainer(config, source=source).run())
