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

Where the time goes (the step's phases, reported to the server and in :class:`TrainResult`) is
:mod:`compute.telemetry`'s; the loops themselves, one template and each mode's step, the sync
mode's tokens and the chief's aggregation, are in :mod:`compute.loops`. This module holds the
:class:`Trainer` (configuration to connection, setup of the model on the ps, then the mode's loop)
and :func:`train`, and re-exports the names it always had: :class:`TrainConfig`,
:class:`StalenessPolicy` (:mod:`compute.config`), :class:`QueueSource`, :class:`ArraySource`,
:class:`Prefetcher` (:mod:`compute.inputs`), :class:`TrainResult`, :class:`StepClock`,
:class:`Progress` (:mod:`compute.telemetry`), :class:`Stopper` (:mod:`compute.stopping`) and
:class:`ParameterStore` (:mod:`compute.parameters`).

Example:
    >>> cfg = TrainConfig(target=server.target, queue="instances", model="softmax:20,3", steps=100)  # doctest: +SKIP
    >>> result = train(cfg)                                                                        # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Mapping

import numpy as np

import queueserver as qs
from compute.backend import encode_transfer, get_backend
from compute.checkpoint import load_checkpoint, save_checkpoint
from compute.config import StalenessPolicy, TrainConfig, ps_task_count, server_address
from compute.inputs import ArraySource, Prefetcher, QueueSource
from compute.loops import AsyncReplicaLoop, LocalLoop, SyncReplicaLoop
from compute.models import MLP, parse_model
from compute.optim import Optimizer, make_optimizer
from compute.parameters import ParameterStore, device_scope
from compute.stopping import Stopper
from compute.telemetry import Progress, StepClock, Telemetry, TrainResult

__all__ = [
    "TrainConfig", "TrainResult", "Trainer", "train", "train_async", "ParameterStore", "StalenessPolicy",
    "ArraySource", "QueueSource", "Prefetcher", "Progress", "Stopper", "StepClock",
]

log = logging.getLogger("compute.trainer")


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
        self._compute = ThreadPoolExecutor(1, thread_name_prefix="compute")
        self._copy = ThreadPoolExecutor(1, thread_name_prefix="h2d")
        self.telemetry = Telemetry(TrainResult(task=config.task, mode=config.mode), steps=config.steps,
                                   progress=config.progress, label=f"[{config.job}:{config.task}] ",
                                   report_every=config.report_every, report_every_s=config.report_every_s)
        self.result, self.clock, self.progress = self.telemetry.result, self.telemetry.clock, self.telemetry.progress

    # ----- plumbing
    def _target(self) -> str | None:
        return server_address(self.cfg.target, self.cfg.cluster, self.cfg.job, self.cfg.task)

    def _ps_tasks(self) -> int | None:
        return ps_task_count(self.cfg.ps_tasks, self.cfg.cluster)

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

    def report_figures(self) -> dict[str, float]:
        """What the trainer reports to the server now: the window's figures and where it stands."""
        return self.telemetry.figures()

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
            elsewhere = sorted(q["container"] for q in (await client.status())["queues"]
                               if q["name"] == self.cfg.queue and q["container"] != self.cfg.container)
            if elsewhere:
                raise qs.NotFoundError(
                    f"input queue {self.cfg.queue!r} is not in container {self.cfg.container!r} (--container) on"
                    f" {self._target()}, but it exists in {', '.join(repr(c) for c in elsewhere)}: pass"
                    f" --container {elsewhere[0] or chr(39) * 2}") from None
            raise qs.NotFoundError(f"input queue {self.cfg.queue!r} does not exist in container {self.cfg.container!r}"
                                   f" on {self._target()}: start the loaders first (or check --queue and"
                                   " --container)") from None
        self._check_queue_fits_the_model(queue)
        return QueueSource(queue, self.cfg.batch, self.cfg.dequeue_timeout, classes=self.model.sizes[-1],
                           on_wait=self.progress.waiting)

    def _check_queue_fits_the_model(self, queue: Any) -> None:
        """Refuse, before any variable is made, a queue whose elements the model cannot take."""
        spec = queue.spec
        if len(spec.dtypes) != 2:
            raise qs.InvalidArgumentError(
                f"queue '{queue.name}' holds {spec.describe()}: a trainer needs (features, label) pairs")
        if spec.shapes is None or None in spec.shapes[0]:
            return  # features of unknown size: each batch is checked by the model
        width = int(np.prod(spec.shapes[0]))
        if width != self.model.sizes[0]:
            raise qs.InvalidArgumentError(
                f"queue '{queue.name}' holds features of {width} values ({spec.describe()}), but model"
                f" {self.cfg.model} takes {self.model.sizes[0]}: check --model or --queue")

    @contextlib.asynccontextmanager
    async def _connection(self):
        if self._client is not None:
            yield self._client
            return
        target = self._target()
        if target is None:
            yield None
            return
        client = await qs.connect_async(target, token=self.cfg.token,
                                        client_name=f"trainer /job:{self.cfg.job}/task:{self.cfg.task}")
        try:
            yield client
        finally:
            await client.close()

    # ----- local mode
    async def _run_local(self) -> None:
        async with self._connection() as client, self.telemetry.reporting(client):
            source = await self._open_source(client) if client is not None or self._source else None
            if source is None:
                raise ValueError("local mode needs a data source: --target with --queue, or an ArraySource")
            await LocalLoop(self, source).run()

    # ----- distributed modes
    async def _run_distributed(self) -> None:
        cfg = self.cfg
        async with self._connection() as client, self.telemetry.reporting(client):
            shapes = OrderedDict((k, v.shape) for k, v in self.model.init_params(cfg.seed).items())
            # The input first: a wrong --queue fails here, before any variable or coordination
            # queue is created or closed.
            source = await self._open_source(client)
            store = ParameterStore(client, shapes, cfg.transfer_dtype, cfg.container, self._ps_tasks(), self.scope)
            cc = self._coord_container

            def open_q(suffix: str) -> Awaitable[Any]:
                return client.fifo_queue(self._name(suffix), 1, [np.int64], [[]], container=cc)

            chief_lock = await self._claim_chief(client) if cfg.is_chief else None
            try:
                await self._setup_and_train(client, source, store, open_q)
            finally:
                if chief_lock is not None:  # the next chief may start now (a crash gives it back too)
                    with contextlib.suppress(qs.QueueServerError):
                        await chief_lock.give_back()

    async def _setup_and_train(self, client: Any, source: Any, store: ParameterStore,
                               open_q: Callable[[str], Awaitable[Any]]) -> None:
        """Reset stale coordination (chief) or wait for the model (replica), then run the mode's loop."""
        cfg, cc = self.cfg, self._coord_container
        if cfg.is_chief:
            if await (await open_q("stop_q")).is_closed() or await (await open_q("ready_q")).is_closed():
                # Left over from an earlier run on this live server (finished, failed or
                # interrupted): a closed queue cannot be reopened, so free the coordination
                # container (the model's variables stay, and the chief continues from them).
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
            if accs is None:  # async mode
                await AsyncReplicaLoop(self, source, stopper, store, global_step).run()
            else:
                await SyncReplicaLoop(self, source, stopper, client, store, global_step, accs, cc).run()
        finally:
            await stopper.close()

    #: Seconds a chief waits for the chief lock: long enough for the server to notice that the
    #: previous chief died (its token comes back when its connection drops), short enough to
    #: refuse a second live chief promptly.
    CHIEF_CLAIM_TIMEOUT_S = 2.0

    @property
    def _chief_lock_container(self) -> str:
        # Apart from the coordination container, which the chief resets after claiming the lock.
        return f"{self._coord_container}-chief"

    async def _claim_chief(self, client: Any) -> Any:
        """Take the model's chief token, held on the server while this chief's connection lives.

        The token is an element of a one-slot queue, taken and never acknowledged: a clean end
        gives it back, and a chief that dies (even by SIGKILL) loses its connection, so the server
        puts the token back for the next one. Exactly one token is ever minted: the only enqueue
        that succeeds into a second one-slot queue, never dequeued, is the minter's.

        Raises:
            AlreadyExistsError: another chief of this model holds the token.
        """
        lc = self._chief_lock_container
        minted = await client.fifo_queue(self._name("chief_minted"), 1, [np.int64], [[]], container=lc)
        lock = await client.fifo_queue(self._name("chief_lock"), 1, [np.int64], [[]], container=lc)
        try:
            await minted.enqueue(np.int64(1), timeout=0)
        except qs.DeadlineExceededError:
            pass  # minted by an earlier chief
        else:
            await lock.enqueue(np.int64(1), timeout=0)
        try:
            return await lock.take(timeout=self.CHIEF_CLAIM_TIMEOUT_S)
        except qs.DeadlineExceededError:
            raise qs.AlreadyExistsError(
                f"a chief (task 0) of model scope {self.scope!r} is already running on {self._target() or 'this server'}:"
                f" stop it first, or start this trainer as a replica (--task 1, ...) or with another"
                f" --scope") from None

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
        accs: OrderedDict[str, Any] = OrderedDict()
        for name, shape in store.shapes.items():
            # float32 whatever the transfer dtype: pushes travel narrow (store.push_grads) and the
            # ps widens them on arrival, so only the bytes shrink, not the sums' precision.
            with device_scope(client, store.vars[name], store.ps_tasks):
                accs[name] = await client.conditional_accumulator(f"{store.variable_name(name)}/grad_accum", list(shape),
                                                                  store.accumulator_dtype, container=container)
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
