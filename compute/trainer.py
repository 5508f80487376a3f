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
import json
import logging
import math
import time
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Mapping

import numpy as np

import queueserver as qs
from compute.backend import encode_transfer, get_backend
from compute.checkpoint import load_checkpoint, save_checkpoint
from compute.config import StalenessPolicy, TrainConfig
from compute.inputs import ArraySource, Prefetcher, QueueSource
from compute.models import MLP, parse_model
from compute.optim import Optimizer, make_optimizer
from compute.parameters import ParameterStore, device_scope
from compute.stopping import Stopped, Stopper
from compute.telemetry import Progress, StepClock, TrainResult

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
