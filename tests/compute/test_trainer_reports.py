"""Trainers report samples/s and where each step's time goes to the server, and in their summary."""

from __future__ import annotations

import asyncio
import doctest
import json
import time

import numpy as np
import pytest

import queueserver as qs
from compute import trainer as trainer_module
from compute.cli import main
from compute.trainer import StepClock, TrainConfig, Trainer
from queueserver.metrics import TRAINER_PHASES

D, C, BATCH = 12, 3, 32
FIGURES = {"samples_per_s", "step_s", *TRAINER_PHASES}


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    return (rng.standard_normal((n, D)) + y[:, None]).astype(np.float32), y.astype(np.int64)


def cfg(target: str, **kw) -> TrainConfig:
    base = dict(target=target, model=f"mlp:{D},16,{C}", batch=BATCH, lr=0.1, progress=False, report_every_s=0.1)
    base.update(kw)
    return TrainConfig(**base)


def trainer_reports(status: dict) -> dict[str, dict]:
    """client name -> report of the clients that reported as trainers."""
    return {c["client"]: c["report"] for c in status["clients"]
            if c["report"] is not None and c["report"]["role"] == "trainer"}


async def poll(fetch, until, deadline_s: float = 5.0, what: str = "the condition"):
    """``await fetch()`` until ``until(value)`` holds (bounded); returns the value."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = await fetch()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {deadline_s} s; last: {value!r}")
        await asyncio.sleep(0.02)  # polling a remote status, bounded by the deadline


def test_step_clock_docstring_example():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(StepClock, "StepClock", globs={"StepClock": StepClock}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


@pytest.mark.parametrize("mode", ["async", "sync", "local"])
async def test_trainer_reports_samples_per_second_and_the_step_split(local_server, mode):
    target = local_server.target
    x, y = make_data(BATCH * 4)
    name = "trainer /job:worker/task:0"
    async with qs.connect_async(target, operation_timeout=10) as c:
        # A small queue fed in a loop: backpressure paces the feeder, the trainer keeps stepping.
        q = await c.fifo_queue(f"input_{mode}", 2 * BATCH, [np.float32, np.int64], [[D], []])
        feeding = asyncio.Event()
        feeding.set()

        async def feed() -> None:
            while feeding.is_set():
                await q.enqueue_many((x, y))

        feeder = asyncio.create_task(feed())
        trainer = Trainer(cfg(target, mode=mode, queue=f"input_{mode}", scope=f"m_{mode}"))
        run = asyncio.create_task(trainer.run())
        try:
            def stepping(status: dict) -> bool:
                if run.done():
                    return True
                report = trainer_reports(status).get(name)
                if report is None:
                    return False
                f = report["figures"]
                return f["samples_per_s"] > 0 and f["compute_s"] > 0 and f["wait_data_s"] > 0 and (
                    mode == "local" or f["push_grads_s"] > 0)

            status = await poll(c.status, stepping, what=f"a {mode} trainer's report of its steps")
            assert not run.done(), run.result()
            figures = trainer_reports(status)[name]["figures"]
            assert FIGURES <= set(figures)
            assert figures["local_steps"] > 0 and figures["global_step"] > 0 and np.isfinite(figures["loss"])
            assert sum(figures[p] for p in TRAINER_PHASES) <= figures["step_s"] + 1e-5
            if mode == "local":
                assert figures["pull_params_s"] == figures["push_grads_s"] == 0

            # A starving trainer shows the wait while it waits, before its step ends.
            feeding.clear()
            await asyncio.wait_for(feeder, 10)
            status = await poll(c.status, lambda s: run.done() or (
                (r := trainer_reports(s).get(name)) is not None and r["figures"]["samples_per_s"] == 0
                and r["figures"]["wait_data_s"] > 0.05), what="a starving trainer's report")
            assert not run.done(), run.result()

            await q.close()  # end of data: the trainer stops, and its report goes with its connection
            result = await asyncio.wait_for(run, 20)
            await poll(c.status, lambda s: name not in trainer_reports(s), what="the report going away")
        finally:
            feeding.clear()
            for task in (feeder, run):
                task.cancel()
    assert result.stop_reason == "end_of_data" and result.local_steps > 0
    summary = result.summary()
    assert {"step_s", *TRAINER_PHASES} <= set(summary)
    assert summary["compute_s"] > 0 and summary["wait_data_s"] > 0
    assert summary["step_s"] == pytest.approx(result.seconds / result.local_steps, rel=1e-3, abs=1e-6)
    assert sum(summary[p] for p in TRAINER_PHASES) <= summary["step_s"] + 1e-5
    if mode != "local":
        assert summary["push_grads_s"] > 0


def test_cli_final_json_line_has_the_step_split(local_server, capsys):
    x, y = make_data(BATCH * 3)
    with qs.connect(local_server.target, operation_timeout=10) as c:
        q = c.fifo_queue("cli_input", len(x), [np.float32, np.int64], [[D], []])
        q.enqueue_many((x, y))
        q.close()
    rc = main(["train", "--target", local_server.target, "--queue", "cli_input", "--model", f"mlp:{D},16,{C}",
               "--batch", str(BATCH), "--async", "--scope", "cli", "--no-progress", "--report-every-s", "0.1"])
    out = capsys.readouterr().out
    assert rc == 0
    done = [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]
    assert done["event"] == "done" and done["local_steps"] == 3
    assert {"step_s", *TRAINER_PHASES} <= set(done) and done["compute_s"] > 0 and done["push_grads_s"] > 0


def test_report_interval_is_validated():
    with pytest.raises(ValueError, match="--report-every must be >= 0 seconds"):
        cfg("127.0.0.1:1", report_every_s=-1)
    assert trainer_module.TrainConfig(model=f"mlp:{D},{C}", mode="local", report_every_s=0).report_every_s == 0
