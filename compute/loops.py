"""The training loops: one template, :class:`StepLoop`, and what each mode's step does.

The template owns what every mode shares: the :class:`~compute.inputs.Prefetcher`, the step clock,
the stop reasons (``steps``, ``end_of_data``, ``stopped``) and the shutdown. A batch is acknowledged
only once its step's update is done, and whatever ends the loop (the step budget, the end of the
data, another replica's stop, an error, Ctrl-C) the batches it did not train on go back to the queue.
A mode subclasses it and says what happens before a batch, in a step, and after the loop:

* :class:`LocalLoop`: the parameters live on this process's device; the update is part of the step.
* :class:`AsyncReplicaLoop`: compute on the last pushed parameters, measure the gradient's staleness,
  push an update (or drop it, by the staleness policy).
* :class:`SyncReplicaLoop`: wait for the chief's token, compute at the global step, push the gradient
  to the accumulators; the chief also runs :meth:`SyncReplicaLoop._chief_loop`, which takes the
  averages, applies them and releases the replicas.

Tokens (sync mode): each replica has its own token queue (``<scope>/token_q/<task>``), and the chief
enqueues one token per replica per step: ``replicas`` tokens per step as in TensorFlow. One shared
queue (as TensorFlow has) lets a fast replica take a slow one's token and push two gradients for one
step; per-replica queues keep exactly one gradient per replica per step, which the equivalence of K
replicas with one big-batch process depends on. A dead replica's queue just fills with stale tokens,
which a restarted replica skips.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any, Awaitable

import numpy as np

import queueserver as qs
from compute.inputs import Prefetcher
from compute.parameters import ParameterStore
from compute.stopping import Stopped, Stopper

if TYPE_CHECKING:  # the trainer builds the loops: importing it here at run time would be a cycle
    from compute.trainer import Trainer

__all__ = ["StepLoop", "LocalLoop", "AsyncReplicaLoop", "SyncReplicaLoop"]


class StepLoop:
    """One trainer's training loop: set up, step until something stops it, shut down, finish.

    Subclasses fill in the hooks; each step is ``before_batch`` (True: the step budget is spent),
    the minibatch (``wait_data_s``), ``step`` (compute and update), the step's accounting, the
    batch's acknowledgement, and ``trained``.

    Args:
        trainer: the trainer whose configuration, model, backend and result the loop uses.
        source: where minibatches come from (see :class:`~compute.inputs.Prefetcher`).
        stopper: the cluster-wide stop flag (distributed modes): waits for data race it, and the
            end of the data raises it.
    """

    #: At the step budget, ask the other replicas to stop too.
    stop_all_at_budget = False

    def __init__(self, trainer: Trainer, source: Any, stopper: Stopper | None = None) -> None:
        self.trainer, self.source, self.stopper = trainer, source, stopper

    async def run(self) -> None:
        """Train until the step budget is spent, the data runs out, or another replica says stop."""
        t = self.trainer
        await self.setup()
        prefetch = Prefetcher(self.source, t.backend, t._copy)
        clock = t.clock
        start = time.perf_counter()
        clock.start()
        try:
            await self._steps(prefetch)
        finally:
            clock.enter(None)
            await prefetch.cancel()  # gives back the batches not trained on, whatever stopped the loop
            await self.shutdown()
        self.settle()
        t.telemetry.finish(time.perf_counter() - start)
        await self.finish()

    async def _steps(self, prefetch: Prefetcher) -> None:
        t = self.trainer
        result, clock = t.result, t.clock
        while True:
            self.check()
            try:
                if await self.before_batch():
                    result.stop_reason = "steps"
                    if self.stop_all_at_budget:
                        await self.request_stop()
                    return
                clock.enter("wait_data_s")
                x, y, n = await self.race(prefetch.next())
            except qs.OutOfRangeError:
                result.stop_reason = "end_of_data"
                await self.request_stop()
                return
            except Stopped:
                result.stop_reason = "stopped"
                return
            global_step, loss = await self.step(x, y, n)
            t.telemetry.after_step(global_step, loss, n)
            prefetch.trained()  # its update is done: acknowledge the batch
            self.trained(global_step)

    # ----- coordination (a no-op without a stopper)
    async def race(self, aw: Awaitable[Any]) -> Any:
        """Await ``aw`` unless the stop flag comes first (raises :class:`~compute.stopping.Stopped`)."""
        if self.stopper is None:
            return await aw
        return await self.stopper.race(aw)

    async def request_stop(self) -> None:
        """Ask every replica to stop."""
        if self.stopper is not None:
            await self.stopper.request_stop()

    # ----- the hooks
    async def setup(self) -> None:
        """Before the clock starts."""

    def check(self) -> None:
        """Before each step, outside the stop handling: raise what a helper task failed with."""

    async def before_batch(self) -> bool:
        """Before each minibatch; True when the step budget is spent (the stop reason is ``steps``).

        May raise ``OutOfRangeError`` or :class:`~compute.stopping.Stopped` like the wait for data.
        """
        return self.trainer._done()

    async def step(self, x: Any, y: Any, n: int) -> tuple[int, float]:
        """Compute and apply one step on the minibatch ``(x, y)`` of ``n`` examples; returns the
        global step it left the model at and its loss."""
        raise NotImplementedError

    def trained(self, global_step: int) -> None:
        """After the step's accounting and acknowledgement (checkpoints)."""

    async def shutdown(self) -> None:
        """When the loop ends, however it ends, after the untrained batches went back."""

    def settle(self) -> None:
        """After the loop, before its time is taken."""

    async def finish(self) -> None:
        """After the loop's time is taken."""


class LocalLoop(StepLoop):
    """Local mode: the parameters live on this process's device; the update is part of the step."""

    def __init__(self, trainer: Trainer, source: Any) -> None:
        super().__init__(trainer, source)
        self.params: OrderedDict[str, Any] = OrderedDict()
        self.global_step = 0

    async def setup(self) -> None:
        t = self.trainer
        params_host, self.global_step = t._initial_params()
        self.params = t._to_device_params(params_host)
        t.result.start_step = t.result.global_step = self.global_step

    async def step(self, x: Any, y: Any, n: int) -> tuple[int, float]:
        t, params = self.trainer, self.params

        def step_fn() -> float:
            loss, grads = t._grads(params, x, y)
            t.optimizer.apply(params, grads)
            return loss

        t.clock.enter("compute_s")
        loss = await t._run_compute(step_fn)
        self.global_step += 1
        return self.global_step, loss

    def trained(self, global_step: int) -> None:
        self.trainer._checkpoint(self.params, global_step)

    def settle(self) -> None:
        self.trainer.backend.synchronize()  # the device's queue is part of the loop's time

    async def finish(self) -> None:
        t = self.trainer
        t._checkpoint(self.params, self.global_step, final=True)
        t.result.params = t._host_params(self.params)


class AsyncReplicaLoop(StepLoop):
    """Async mode: compute on the parameters of the last push, push an update (``assign_add``) unless
    the staleness policy drops the gradient, and count each gradient's staleness.

    Args:
        trainer, source, stopper: as for :class:`StepLoop`.
        store: the parameters on the ps.
        global_step: the shared ``global_step`` variable.
    """

    stop_all_at_budget = True

    def __init__(self, trainer: Trainer, source: Any, stopper: Stopper, store: ParameterStore,
                 global_step: Any) -> None:
        super().__init__(trainer, source, stopper)
        self.store, self.global_step = store, global_step
        self.staleness: Counter[int] = Counter()
        self.params_host: OrderedDict[str, np.ndarray] = OrderedDict()
        self.pulled_at = 0
        self.applied = False  # whether the last step's update was pushed (not dropped)

    async def setup(self) -> None:
        self.params_host = await self.store.pull(wire=False)  # float32: the echo of each push is the next pull
        self.pulled_at = int(await self.global_step.read())
        result = self.trainer.result
        result.start_step = result.global_step = self.pulled_at

    async def step(self, x: Any, y: Any, n: int) -> tuple[int, float]:
        t, clock = self.trainer, self.trainer.clock
        self.applied = False
        # The pull is the echo of the last push (free); what is left of it is the copy of the
        # parameters to the device.
        clock.enter("pull_params_s")
        params = t._to_device_params(self.params_host)
        clock.enter("compute_s")
        loss, grads = await t._run_compute(t._grads, params, x, y)
        clock.enter("push_grads_s")
        now = int(await self.global_step.read())
        stale = now - self.pulled_at
        self.staleness[stale] += 1
        factor = t.policy.scale(stale)
        if factor is None:  # too stale: drop it, and pull fresh parameters
            t.result.dropped += 1
            clock.enter("pull_params_s")
            self.params_host = await self.store.pull(wire=False)
            self.pulled_at = now
            return now, loss  # its batch is acknowledged all the same: the gradient was computed
        delta = t.optimizer.delta(grads, factor)
        self.params_host = await self.store.push_delta(t._host_wire(delta))
        self.pulled_at = int(await self.global_step.assign_add(np.int64(1)))
        self.applied = True
        return self.pulled_at, loss

    def trained(self, global_step: int) -> None:
        if self.applied:
            self.trainer._checkpoint(self.params_host, global_step)

    async def finish(self) -> None:
        t = self.trainer
        t.result.staleness = dict(self.staleness)
        if t.cfg.is_chief:
            params_host = await self.store.pull(wire=False)
            t.result.global_step = int(await self.global_step.read())
            t._checkpoint(params_host, t.result.global_step, final=True)
            t.result.params = params_host


class SyncReplicaLoop(StepLoop):
    """Sync mode: wait for the chief's token, compute at the global step, push the gradient to the
    accumulators. The chief (task 0) also runs :meth:`_chief_loop` beside its own replica loop.

    Args:
        trainer, source, stopper: as for :class:`StepLoop`.
        client: the AsyncClient (the token queues).
        store: the parameters on the ps.
        global_step: the shared ``global_step`` variable.
        accs: the conditional accumulators, by parameter name.
        container: the coordination container of the token queues.
    """

    def __init__(self, trainer: Trainer, source: Any, stopper: Stopper, client: Any, store: ParameterStore,
                 global_step: Any, accs: OrderedDict[str, Any], container: str) -> None:
        super().__init__(trainer, source, stopper)
        self.client, self.store, self.global_step = client, store, global_step
        self.accs, self.container = accs, container
        self.tokens: list[Any] = []
        self.chief_task: asyncio.Future[tuple[OrderedDict[str, np.ndarray], int]] | None = None
        self.last_pushed = -1  # the global step of the last gradient this replica pushed
        self.local_step = 0    # the global step the current step computes at

    async def setup(self) -> None:
        t = self.trainer
        self.tokens = [await self.client.fifo_queue(t._name(f"token_q/{i}"), 1 << 20, [np.int64], [[]],
                                                    container=self.container)
                       for i in range(t.cfg.replicas)]
        if t.cfg.is_chief:
            self.chief_task = asyncio.ensure_future(self._chief_loop())

    def check(self) -> None:
        if self.chief_task is not None and self.chief_task.done():
            self.chief_task.result()  # surface the chief loop's error, if it failed

    async def before_batch(self) -> bool:
        t = self.trainer
        # Wait for a token newer than the last step we pushed for (skipping stale ones left by a dead
        # incarnation of this replica), then read the step we compute at. Waiting for the token is
        # waiting for the chief's update: part of the pull.
        t.clock.enter("pull_params_s")
        my_tokens = self.tokens[t.cfg.task]
        if self.last_pushed >= 0:
            while int(await self.race(my_tokens.dequeue(timeout=None))) <= self.last_pushed:
                pass
        self.local_step = int(await self.global_step.read())
        if t.cfg.steps is not None and self.local_step >= t.cfg.steps:
            t.result.global_step = self.local_step
            return True
        return False

    async def step(self, x: Any, y: Any, n: int) -> tuple[int, float]:
        t, clock = self.trainer, self.trainer.clock
        clock.enter("pull_params_s")
        params = t._to_device_params(await self.store.pull())
        clock.enter("compute_s")
        loss, grads = await t._run_compute(t._grads, params, x, y)
        clock.enter("push_grads_s")
        applied = await self.store.push_grads(self.accs, t._host_wire(grads), self.local_step)
        if not all(applied):
            t.result.dropped += 1
        self.last_pushed = self.local_step
        return self.local_step, loss

    async def shutdown(self) -> None:
        chief = self.chief_task
        if chief is None:
            return
        await self.request_stop()
        try:
            await chief
        except Stopped:
            pass
        if chief.done() and not chief.cancelled() and chief.exception() is None:
            result = self.trainer.result
            result.params, result.global_step = chief.result()

    async def _chief_loop(self) -> tuple[OrderedDict[str, np.ndarray], int]:
        """Take ``aggregate`` averaged gradients per variable, apply, advance the step, release tokens."""
        t, store, accs = self.trainer, self.store, self.accs
        cfg = t.cfg
        params = await store.pull(wire=False)  # the chief's master copy, float32
        step = int(await self.global_step.read())
        n = cfg.replicas_to_aggregate
        try:
            while cfg.steps is None or step < cfg.steps:
                try:
                    avgs = await self.race(asyncio.gather(*(a.take_grad(n) for a in accs.values())))
                except Stopped:
                    break
                grads = OrderedDict((k, np.asarray(g, np.float32)) for k, g in zip(accs, avgs))
                t.optimizer.apply(params, grads)
                await store.publish(params)
                step = int(await self.global_step.assign_add(np.int64(1)))
                await asyncio.gather(*(q.enqueue(np.int64(step)) for q in self.tokens))
                t._checkpoint(params, step)
        finally:
            t._checkpoint(params, step, final=True)
        if cfg.steps is not None and step >= cfg.steps:
            await self.request_stop()
        return params, step
