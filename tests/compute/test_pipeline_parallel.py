"""The pipeline-parallel trainer: layer ranges, GPipe's schedule against one process, failures, restarts.

Every case trains against a real server (embedded, or ``queueserver serve`` in its own process) and
compares with one process computing the whole minibatch's gradient, in float64.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import queueserver as qs
from compute.checkpoint import load_checkpoint
from compute.models import parse_model, softmax_cross_entropy_with_grad
from compute.optim import make_optimizer
from compute.pipeline_parallel import (
    PipelineConfig, PipelineStage, format_bubble_report, split_layers, theoretical_bubble, train_pipeline,
)

REPO = Path(__file__).resolve().parents[2]
D, C = 12, 3
MODEL = f"mlp:{D},16,16,8,{C}"  # four dense layers: up to four stages


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).standard_normal((C, D)) * 2
    y = rng.integers(0, C, n)
    return (centers[y] + rng.standard_normal((n, D))).astype(np.float32), y.astype(np.int64)


def fill(target: str, name: str, x: np.ndarray, y: np.ndarray, close: bool = True) -> None:
    with qs.connect(target) as c:
        q = c.fifo_queue(name, 10_000, [np.float32, np.int64], [[D], []])
        q.enqueue_many((x, y))
        if close:
            q.close()


def one_process(x: np.ndarray, y: np.ndarray, batch: int, steps: int, lr: float = 0.2, seed: int = 0,
                optimizer: str = "sgd") -> dict:
    """The reference: one process, whole minibatches (the last one short), float64."""
    model = parse_model(MODEL)
    params = model.init_params(seed, np.float64)
    opt = make_optimizer(optimizer, lr)
    for s in range(steps):
        xb, yb = x[s * batch:(s + 1) * batch].astype(np.float64), y[s * batch:(s + 1) * batch]
        _, grads = model.loss_and_grads(params, xb, yb)
        opt.apply(params, grads)
    return params


def config(target: str | None, **kw) -> PipelineConfig:
    base = dict(target=target, model=MODEL, batch=30, lr=0.2, dtype="float64", stage_timeout=20.0)
    base.update(kw)
    return PipelineConfig(**base)


def assert_same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5, err_msg=name)


# ---------------------------------------------------------------- pieces
def test_split_layers_balances_weights_and_refuses_more_stages_than_layers():
    assert split_layers([8, 100, 100, 100, 2], 2) == [(0, 2), (2, 4)]
    assert split_layers([1024, 1024, 1024, 1024, 1024, 10], 4) == [(0, 1), (1, 2), (2, 3), (3, 5)]
    assert split_layers([4, 3], 1) == [(0, 1)]
    with pytest.raises(ValueError, match="cannot split 2 layer"):
        split_layers([4, 5, 3], 3)
    assert theoretical_bubble(4, 8) == pytest.approx(3 / 11)


def test_layer_ranges_chained_give_the_whole_models_gradients_exactly():
    model = parse_model(MODEL)
    params = model.init_params(3, np.float64)
    x, y = make_data(10)
    x = x.astype(np.float64)
    loss, grads = model.loss_and_grads(params, x, y)
    h, acts1 = model.forward_range(params, x, 0, 1)
    logits, acts2 = model.forward_range(params, h, 1, 4)
    loss2, dlogits = softmax_cross_entropy_with_grad(logits, y)
    g2, g_in = model.backward_range(params, acts2, dlogits, 1, 4)
    g1, none = model.backward_range(params, acts1, g_in, 0, 1, input_grad=False)
    assert loss2 == loss and none is None and list(g1) == model.layer_names(0, 1)
    for name, g in {**g1, **g2}.items():
        np.testing.assert_array_equal(g, grads[name], err_msg=name)  # the same operations, bit for bit
    with pytest.raises(ValueError, match="not a non-empty range"):
        model.forward_range(params, x, 2, 2)


@pytest.mark.parametrize("kw, match", [
    (dict(stages=5), "cannot split 4 layer"),
    (dict(stages=2, stage=2), "--stage 2 is outside 0..1"),
    (dict(micro_batches=0), "--micro-batches must be >= 1"),
    (dict(batch=3, micro_batches=4), "--batch 3 is smaller than --micro-batches 4"),
    (dict(optimizer="adam"), "unknown optimizer 'adam'"),
    (dict(dtype="float16"), "--dtype must be one of"),
    (dict(stage_timeout=0), "--stage-timeout must be positive"),
    (dict(target=None), "needs --target or --cluster"),
])
def test_config_is_validated_with_the_fix_in_the_message(kw, match):
    with pytest.raises(ValueError, match=match):
        config(**{"target": "127.0.0.1:1", **kw})


def test_cli_refuses_a_bad_pipeline_before_connecting():
    p = subprocess.run([sys.executable, "-m", "compute", "train", "--target", "127.0.0.1:1", "--model", "mlp:4,3",
                        "--stages", "2"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 2 and "cannot split 1 layer(s) into 2 stages" in p.stderr


# ---------------------------------------------------------------- K stages equal one process
@pytest.mark.parametrize("stages, micro_batches", [(2, 4), (3, 3)])
def test_k_stages_train_to_the_parameters_of_one_process(local_server, stages, micro_batches):
    # 7 minibatches of 30 and a short one of 12: uneven micro-batches, and a short last step.
    x, y = make_data(7 * 30 + 12, seed=stages)
    fill(local_server.target, "pp_in", x, y)
    results = train_pipeline(config(local_server.target, queue="pp_in", stages=stages, micro_batches=micro_batches,
                                    scope=f"pp{stages}"))
    assert [r.stage for r in results] == list(range(stages))
    assert all(r.global_step == 8 and r.stop_reason == "end_of_data" for r in results)
    chief = results[0]
    assert chief.samples == len(x) and chief.generation == 1
    want = one_process(x, y, 30, 8)
    assert_same(chief.model_params, want)
    # Each stage holds exactly its own layers, and the ps holds what the stages hold.
    for r in results:
        assert_same(r.params, {k: want[k] for k in parse_model(MODEL).layer_names(*r.layers)})
    with qs.connect(local_server.target) as c:
        w0 = c.variable(f"pp{stages}/w0", np.zeros((D, 16))).read()
        assert int(c.variable(f"pp{stages}/global_step", np.int64(0)).read()) == 8
    np.testing.assert_array_equal(w0, chief.model_params["mlp/w0"])
    # The loss the last stage computed reached the chief: the last minibatch's mean loss.
    model = parse_model(MODEL)
    before = one_process(x, y, 30, 7)
    expected_loss, _ = model.loss_and_grads(before, x[210:].astype(np.float64), y[210:])
    assert chief.final_loss == pytest.approx(expected_loss, rel=1e-9)
    # The bubble report: every stage measured, beside GPipe's (K-1)/(M+K-1).
    report = format_bubble_report(results)
    assert report.count("idle") == stages and f"{theoretical_bubble(stages, micro_batches):.1%}" in report
    assert all(0 < r.busy_s < r.seconds and 0 < r.idle_fraction < 1 for r in results)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_a_step_budget_and_a_restart_from_the_checkpoint_continue_exactly(local_server, tmp_path, optimizer):
    x, y = make_data(10 * 30)
    queue, scope = f"pp_ck_{optimizer}", f"ck_{optimizer}"
    fill(local_server.target, queue, x, y, close=False)
    common = dict(queue=queue, stages=3, scope=scope, checkpoint_dir=str(tmp_path), optimizer=optimizer)
    first = train_pipeline(config(local_server.target, steps=4, checkpoint_every=3, **common))
    assert first[0].global_step == 4 and first[0].stop_reason == "steps"
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.global_step == 4  # the last one, at the end
    # Momentum: every stage's velocities are in the one checkpoint, as slots.
    assert sorted(ckpt.slots) == ([] if optimizer == "sgd" else sorted(f"momentum:{k}" for k in ckpt.params))
    second = train_pipeline(config(local_server.target, steps=7, **common))
    assert (second[0].start_step, second[0].global_step, second[0].generation) == (4, 7, 2)
    assert_same(second[0].model_params, one_process(x, y, 30, 7, optimizer=optimizer))
    # On a fresh server, the whole model (and its velocities) come back from the checkpoint.
    fresh = qs.Server.create_local_server()
    try:
        fill(fresh.target, queue, x[7 * 30:], y[7 * 30:], close=False)
        third = train_pipeline(config(fresh.target, steps=9, **common))
        assert (third[0].start_step, third[0].global_step) == (7, 9)
        assert_same(third[0].model_params, one_process(x, y, 30, 9, optimizer=optimizer))
    finally:
        fresh.stop()


# ---------------------------------------------------------------- failures
def test_a_stage_that_never_starts_is_named_by_the_deadline(local_server):
    x, y = make_data(90)
    fill(local_server.target, "pp_missing", x, y)
    cfg = config(local_server.target, queue="pp_missing", stages=3, scope="missing", stage_timeout=1.0)

    async def two_of_three():
        stages = [PipelineStage(PipelineConfig(**{**cfg.__dict__, "stage": i})) for i in (0, 1)]
        return await asyncio.gather(*(s.run() for s in stages), return_exceptions=True)

    t0 = time.monotonic()
    chief, middle = asyncio.run(asyncio.wait_for(two_of_three(), 30))
    assert time.monotonic() - t0 < 10
    # Whichever stage's deadline comes first, both name stage 2, which never joined; the other
    # stage learns at once that the first stopped, and why.
    for err in (chief, middle):
        assert isinstance(err, (qs.DeadlineExceededError, qs.UnavailableError)) and err.details["stage"] == 2, err
        assert "stage 2 has not joined run 1" in str(err)
    assert isinstance(chief, qs.DeadlineExceededError) or isinstance(middle, qs.DeadlineExceededError)
    # The chief's minibatch went back to the queue.
    with qs.connect(local_server.target) as c:
        assert c.queue("pp_missing").size() == 90


def test_a_message_of_another_step_is_refused_not_trained_on(local_server):
    """Activations are matched to (run, step, micro-batch): a queued one of another step is refused."""
    x, y = make_data(60)
    fill(local_server.target, "pp_stale", x, y)
    cfg = config(local_server.target, queue="pp_stale", stages=2, scope="stale")

    async def main():
        async with qs.connect_async(local_server.target) as c:
            # Plant, in the run's forward queue, a message for step 1 ahead of step 0's, as a stage
            # that ran ahead would have left it.
            run = await c.variable("stale/pp/run", np.int64(0))
            await run.initialize()
            q = await c.fifo_queue("stale/pp/fwd/0", 8, [np.int64, np.float64, np.int64], container="pp-stale-1")
            await q.enqueue((np.array([1, 1, 0, 1, 30], np.int64), np.zeros((30, 16)), np.zeros(30, np.int64)))
        stages = [PipelineStage(PipelineConfig(**{**cfg.__dict__, "stage": i})) for i in (0, 1)]
        return await asyncio.gather(*(s.run() for s in stages), return_exceptions=True)

    chief, second = asyncio.run(asyncio.wait_for(main(), 30))
    assert isinstance(second, qs.DataLossError)
    assert "expected activations of run 1 step 0 micro-batch 0 from stage 0, got run 1 step 1" in str(second)
    assert isinstance(chief, qs.UnavailableError) and chief.details["stage"] == 1


# ---------------------------------------------------------------- real processes
def stage_process(target: str, stage: int, ckpt: Path, *extra: str, queue: str = "pp_proc",
                  scope: str = "proc") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "compute", "train", "--target", target, "--model", MODEL, "--queue", queue,
           "--scope", scope, "--batch", "30", "--lr", "0.2", "--dtype", "float64", "--stages", "3", "--stage",
           str(stage), "--micro-batches", "3", "--checkpoint-dir", str(ckpt), "--checkpoint-every", "1",
           "--stage-timeout", "60", "--print-every", "1", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})


def finish_all(procs: list) -> list[tuple[str, str]]:
    """Wait for every stage process (killing any left when one fails); each must exit 0."""
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    return outs


def done_line(out: str) -> dict:
    return next(json.loads(line) for line in out.splitlines() if '"event": "done"' in line)


@pytest.mark.slow
def test_a_killed_stage_stops_the_others_naming_it_and_a_restart_continues(server_process, tmp_path):
    target = server_process.target
    x, y = make_data(12 * 30, seed=7)
    fill(target, "pp_proc", x[:5 * 30], y[:5 * 30], close=False)  # five steps' worth, then the chief waits
    procs = [stage_process(target, i, tmp_path) for i in range(3)]
    try:
        for line in procs[1].stdout:  # stage 1 has finished step 5: everyone is waiting for input
            if json.loads(line).get("global_step") == 5:
                break
        procs[1].send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        for i in (0, 2):
            out, err = procs[i].communicate(timeout=60)
            assert procs[i].returncode == 1, err
            assert "UnavailableError: stage 1 of 3 (pid" in err and "stopped before the end of run 1" in err, err
        # Named by the server's give-back of its token, long before the 60 s deadline.
        assert time.monotonic() - t0 < 30
        assert procs[1].wait(10) == -signal.SIGKILL
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert load_checkpoint(tmp_path).global_step == 5
    # The rest of the data, then every stage again: the run continues from the checkpoint.
    fill(target, "pp_proc", x[5 * 30:], y[5 * 30:], close=True)
    procs = [stage_process(target, i, tmp_path) for i in range(3)]
    outs = finish_all(procs)
    summaries = [done_line(out) for out, _ in outs]
    assert all((s["start_step"], s["global_step"], s["generation"]) == (5, 12, 2) for s in summaries)
    assert "GPipe bubble (K-1)/(M+K-1) = 40.0% with M=3" in outs[0][1]
    want = one_process(x, y, 30, 12)
    with qs.connect(target) as c:
        got = {name: c.variable(f"proc/{name.split('/')[1]}", np.zeros(want[name].shape)).read() for name in want}
    assert_same(got, want)
    assert_same(load_checkpoint(tmp_path).params, want)


@pytest.mark.slow
def test_a_stage_killed_mid_step_and_a_restart_lose_and_repeat_nothing(server_process, tmp_path):
    """Killed while micro-batches are in flight: the others stop naming it, the chief's minibatch
    goes back, and the restarted run ends exactly where one process does on the same batches."""
    target, n = server_process.target, 150
    x, y = make_data(n * 30, seed=11)
    fill(target, "pp_mid", x, y, close=True)
    procs = [stage_process(target, i, tmp_path, queue="pp_mid", scope="mid") for i in range(3)]
    try:
        for line in procs[2].stdout:
            if json.loads(line).get("global_step") == 3:
                break
        procs[2].send_signal(signal.SIGKILL)
        for i in (0, 1):
            _, err = procs[i].communicate(timeout=60)
            assert procs[i].returncode == 1 and "stage 2 of 3 (pid" in err, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    stopped_at = load_checkpoint(tmp_path).global_step
    assert 3 <= stopped_at < n
    with qs.connect(target) as c:  # every minibatch not checkpointed is back in the queue
        assert c.queue("pp_mid").size() == (n - stopped_at) * 30
    procs = [stage_process(target, i, tmp_path, queue="pp_mid", scope="mid") for i in range(3)]
    outs = finish_all(procs)
    chief = done_line(outs[0][0])
    assert (chief["start_step"], chief["global_step"], chief["generation"]) == (stopped_at, n, 2)
    assert_same(load_checkpoint(tmp_path).params, one_process(x, y, 30, n))


@pytest.mark.slow
def test_the_example_trains_the_digits_in_three_stages():
    p = subprocess.run([sys.executable, "examples/pipeline_parallel.py"], capture_output=True, text=True, cwd=REPO,
                       timeout=110, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr
    accuracy = float(p.stdout.split("held-out test accuracy: ")[1].split()[0])
    assert accuracy >= 0.93 and p.stdout.count("GPipe bubble (K-1)/(M+K-1) = 33.3% with M=4") == 3


def test_cli_without_stage_runs_every_stage_in_one_process(server_process):
    x, y = make_data(4 * 30)
    fill(server_process.target, "pp_cli_all", x, y)
    p = subprocess.run([sys.executable, "-m", "compute", "train", "--target", server_process.target, "--model", MODEL,
                        "--queue", "pp_cli_all", "--scope", "cliall", "--batch", "30", "--lr", "0.2", "--dtype",
                        "float64", "--stages", "2", "--micro-batches", "3"],
                       capture_output=True, text=True, cwd=REPO, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr
    done = [json.loads(line) for line in p.stdout.splitlines()]
    assert [(d["event"], d["stage"], d["global_step"], d["stop_reason"]) for d in done] == [
        ("done", 0, 4, "end_of_data"), ("done", 1, 4, "end_of_data")]
    assert p.stderr.count("GPipe bubble (K-1)/(M+K-1) = 25.0% with M=3") == 2
    with qs.connect(server_process.target) as c:
        w3 = c.variable("cliall/w3", np.zeros((8, C))).read()
    np.testing.assert_allclose(w3, one_process(x, y, 30, 4)["mlp/w3"], rtol=1e-5, atol=1e-5)


def test_a_newer_run_replaces_an_older_one_whose_stages_stop_saying_so(local_server):
    with qs.connect(local_server.target) as c:  # no data yet: the old run's chief waits for input
        c.fifo_queue("pp_repl", 100, [np.float32, np.int64], [[D], []])
    cfg = config(local_server.target, queue="pp_repl", stages=2, scope="repl")

    async def main():
        old = [asyncio.ensure_future(PipelineStage(PipelineConfig(**{**cfg.__dict__, "stage": i})).run())
               for i in (0, 1)]
        async with qs.connect_async(local_server.target) as c:
            for i in (0, 1):  # both old stages have joined run 1 (each closes its queue when it has)
                q = await c.fifo_queue(f"repl/pp/registered/{i}", 1, [np.int64], [[]], container="pp-repl-1")
                with pytest.raises(qs.OutOfRangeError):
                    await q.dequeue(timeout=20)
        # Stage 0 started again: a new run, with nothing to train (steps=0), and no stage 1 in it.
        new = PipelineStage(PipelineConfig(**{**cfg.__dict__, "stage": 0, "steps": 0, "stage_timeout": 1.0}))
        outcomes = await asyncio.gather(*old, new.run(), return_exceptions=True)
        return outcomes

    old0, old1, new0 = asyncio.run(asyncio.wait_for(main(), 30))
    for err in (old0, old1):
        assert isinstance(err, qs.CancelledError), err
        assert "run 1 of this pipeline was replaced by a newer run" in str(err)
    assert isinstance(new0, qs.DeadlineExceededError) and "stage 1 has not joined run 2" in str(new0)
