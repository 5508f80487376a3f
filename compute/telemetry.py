"""Where a trainer's time goes, and what it says about it.

Every step is split into the phases of :data:`queueserver.metrics.TRAINER_PHASES`
(``wait_data_s``: waiting for the minibatch; ``pull_params_s``: getting the parameters, in sync mode
waiting for the chief's token too; ``compute_s``: forward and backward, and in local mode the update;
``push_grads_s``: sending the update or the gradients) by a :class:`StepClock`. Every
``report_every_s`` seconds the trainer reports them (seconds per step, averaged since its last
report) with ``samples_per_s`` and ``step_s`` to the server (``Client.report``, role ``"trainer"``),
whose status page stacks them; the run's averages are in :class:`TrainResult` and the CLI's final
JSON line. :class:`Progress` draws the progress bar on stderr; :class:`Telemetry` holds the three
for one trainer, accounts for each step, and runs the reports.
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
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import numpy as np

import queueserver as qs
from queueserver.cli_tools import bar_size
from queueserver.metrics import TRAINER_PHASES

__all__ = ["TrainResult", "StepClock", "Progress", "Telemetry"]

log = logging.getLogger("compute.trainer")  # the trainer's logger, as before the split


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
        # Valid JSON: a figure that is not a number (no step ran, a loss that diverged) is null.
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in out.items()}

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
    """The trainer's progress bar on stderr (``tqdm``): step (of the target global step, when
    there is one), loss and samples/s, redrawn at most 10 times a second; ends on its final figures.

    While the input queue is empty and open the bar says that it waits for data (:meth:`waiting`),
    until the next step clears it.

    Args:
        total: the global step to reach (None: unknown, no bar drawn, a step counter instead).
        enabled: draw at all (None: when the stream is a terminal).
        stream: where to draw.
        label: a prefix, such as the task.
    """

    def __init__(self, total: int | None, enabled: bool | None = None, stream: Any = None, label: str = "") -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.label = total, label
        self._start = time.perf_counter()
        self._bar: Any = None
        self._figures: tuple[int, float, int] | None = None
        #: The run's samples/s as its summary says it (set at the end), so the bar ends on it.
        self.final_rate: float | None = None

    def _ensure_bar(self) -> Any:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.label.strip() or None, unit="step", file=self.stream,
                             mininterval=0.1, leave=True, **bar_size(self.stream), smoothing=0.1)
        return self._bar

    def _postfix(self, step: int, loss: float, samples: int) -> str:
        rate = self.final_rate if self.final_rate is not None else samples / max(time.perf_counter() - self._start, 1e-9)
        return f"loss {loss:.4f}, {rate:,.0f} samples/s"

    def update(self, step: int, loss: float, samples: int, force: bool = False) -> None:
        """Move to global step ``step`` with the latest figures (redrawn at most 10 times a second
        unless ``force``)."""
        if not self.enabled:
            return
        self._figures = (step, loss, samples)
        bar = self._ensure_bar()
        bar.n = step
        bar.set_postfix_str(self._postfix(step, loss, samples), refresh=False)
        if force:
            bar.refresh()
        else:
            bar.update(0)  # redraws when mininterval has passed

    def waiting(self, queue: str) -> None:
        """Say that the trainer waits for data: its input queue is empty (and open)."""
        if not self.enabled:
            return
        bar = self._ensure_bar()
        bar.set_postfix_str(f"waiting for data: queue '{queue}' is empty", refresh=True)

    def close(self) -> None:
        """Draw the final figures and end the line."""
        if self._bar is None:
            return
        if self._figures is not None:  # tqdm's close draws the bar once more: with these figures
            step, loss, samples = self._figures
            self._bar.n = step
            self._bar.set_postfix_str(self._postfix(step, loss, samples), refresh=False)
        self._bar.close()
        self._bar = None


class Telemetry:
    """One trainer's accounting: its :class:`TrainResult`, :class:`StepClock` and :class:`Progress`,
    the JSON lines it prints every ``report_every`` steps, and its reports to the server.

    Args:
        result: the result to fill in.
        steps: the global step to reach, for the progress bar (None: unknown).
        progress: draw the progress bar (None: when stderr is a terminal).
        label: the progress bar's prefix.
        report_every: print a JSON line on stdout every this many local steps (0: never).
        report_every_s: seconds between reports to the server (0: never).
    """

    def __init__(self, result: TrainResult, *, steps: int | None = None, progress: bool | None = None,
                 label: str = "", report_every: int = 0, report_every_s: float = 0.0) -> None:
        self.result = result
        self.clock = StepClock()
        self.progress = Progress(steps, progress, label=label)
        self.report_every = report_every
        self.report_every_s = report_every_s

    def print_line(self, **fields: Any) -> None:
        """One JSON line on stdout, tagged with the trainer's task."""
        clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in fields.items()}
        print(json.dumps({"task": self.result.task, **clean}, allow_nan=False), flush=True)

    def after_step(self, global_step: int, loss: float, n: int) -> None:
        """Account for one step on ``n`` examples that left the model at ``global_step``."""
        self.clock.step_done(n)
        r = self.result
        r.local_steps += 1
        r.samples += n
        r.final_loss = loss
        r.global_step = global_step
        self.progress.update(global_step, loss, r.samples)
        if self.report_every and r.local_steps % self.report_every == 0:
            self.print_line(event="step", global_step=global_step, loss=round(loss, 6), samples=r.samples)

    def finish(self, seconds: float) -> None:
        """The training loop ran ``seconds``: its step time and split, into the result."""
        r = self.result
        r.seconds = seconds
        self.clock.enter(None)
        r.step_s = r.seconds / r.local_steps if r.local_steps else 0.0
        self.progress.final_rate = round(r.samples_per_s, 1)  # as the summary rounds it
        for phase, value in self.clock.averages(r.local_steps).items():
            setattr(r, phase, value)

    def figures(self) -> dict[str, float]:
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
            await asyncio.sleep(self.report_every_s)  # the report period, not a wait for an event
            if not self.clock.started:
                continue  # still setting up: no step to account for yet
            try:
                await client.report("trainer", self.figures())
            except qs.QueueServerError as exc:  # an older server, or the connection is gone
                log.debug("trainer report failed, not reporting any more: %s", exc)
                return

    @contextlib.asynccontextmanager
    async def reporting(self, client: Any) -> AsyncIterator[None]:
        """Report to ``client``'s server in the background while the block runs."""
        task = None
        if client is not None and self.report_every_s > 0:
            task = asyncio.ensure_future(self._report_loop(client))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
