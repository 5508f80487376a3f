"""The trainer CLI as users run it: real processes against a real server process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import queueserver as qs
from compute import backend

REPO = Path(__file__).resolve().parents[2]
D, C = 12, 3


def trainer(target: str, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "compute", "train", "--target", target, "--model", f"mlp:{D},16,{C}",
           "--batch", "32", "--no-progress", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def fill(target: str, name: str, n: int, close: bool) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, C, n)
    x = (np.random.default_rng(9).standard_normal((C, D))[y] * 2 + rng.standard_normal((n, D))).astype(np.float32)
    with qs.connect(target) as c:
        q = c.fifo_queue(name, n, [np.float32, np.int64], [[D], []])
        q.enqueue_many((x, y))
        if close:
            q.close()


def done_line(out: str) -> dict:
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return next(l for l in lines if l.get("event") == "done")


@pytest.mark.slow
def test_killing_a_spare_replica_does_not_stop_sync_training(server_process):
    target, steps = server_process.target, 40
    fill(target, "kill_q", 20_000, close=False)
    common = ["--queue", "kill_q", "--sync", "--replicas", "3", "--aggregate", "2", "--steps", str(steps),
              "--scope", "killtest"]
    procs = [trainer(target, *common, "--task", str(i), "--print-every", "1") for i in range(3)]
    try:
        # Follow the chief's step reports; kill replica 2 once training is well under way.
        for line in procs[0].stdout:
            event = json.loads(line)
            if event.get("event") == "step" and event["global_step"] >= 5:
                procs[2].send_signal(signal.SIGKILL)
                break
        out, err = procs[0].communicate(timeout=60)
        assert procs[0].returncode == 0, err
        summary = done_line(out)
        assert summary["global_step"] == steps and summary["stop_reason"] == "steps"
        out1, err1 = procs[1].communicate(timeout=30)
        assert procs[1].returncode == 0, err1
        assert procs[2].wait(10) == -signal.SIGKILL
        with qs.connect(target) as c:
            assert int(c.variable("killtest/global_step", np.int64(0)).read()) == steps
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_cli_trains_until_the_queue_is_drained(server_process, tmp_path):
    fill(server_process.target, "cli_q", 640, close=True)
    p = trainer(server_process.target, "--queue", "cli_q", "--async", "--scope", "cli",
                "--checkpoint-dir", str(tmp_path), "--staleness-policy", "drop:3")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    summary = done_line(out)
    assert summary["stop_reason"] == "end_of_data" and summary["samples"] == 640 and summary["global_step"] == 20
    assert "staleness   0" in err  # the distribution, printed at the end
    assert (tmp_path / "checkpoint.npz").exists()


@pytest.mark.parametrize("args, message", [
    (["--sync", "--replicas", "2", "--aggregate", "3"], "aggregate 3"),
    (["--model", "cnn:1"], "bad model spec"),
    (["--transfer-dtype", "int8"], "invalid choice"),
])
def test_cli_rejects_bad_configuration(args, message):
    p = trainer("127.0.0.1:1", *args)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2 and message in err


@pytest.mark.skipif(backend.cupy_available(), reason="a usable GPU is present")
def test_cli_gpu_without_one(server_process):
    fill(server_process.target, "gpu_q", 64, close=True)
    p = trainer(server_process.target, "--queue", "gpu_q", "--local", "--device", "gpu:0")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2 and "gpu:0 was requested" in err and "--soft-placement" in err
    p = trainer(server_process.target, "--queue", "gpu_q", "--local", "--device", "gpu:0", "--soft-placement")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and "running on the CPU" in err and done_line(out)["samples"] == 64


def _queue_size(target: str, name: str) -> int:
    """The queue's size once the server has seen every trainer connection go (a dropped one
    returns what it held when the server notices, a moment after the process exits)."""
    with qs.connect(target) as c:
        deadline = time.monotonic() + 10
        while any(cl["client"].startswith("trainer") for cl in c.status()["clients"]):
            assert time.monotonic() < deadline, "the server still lists a trainer connection"
            time.sleep(0.01)
        return c.queue(name).size()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["--async", "--local", "--sync"])
def test_a_trainer_stopped_by_its_step_budget_leaves_every_untrained_batch_queued(server_process, mode):
    # Before: the batch fetched ahead of the last step was acknowledged by the clean close: taken
    # and never trained (704 samples taken for 640 trained).
    name = f"steps_q{mode.strip('-')}"
    fill(server_process.target, name, 1000, close=False)
    p = trainer(server_process.target, "--queue", name, mode, "--steps", "10", "--scope", f"steps{mode.strip('-')}")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    summary = done_line(out)
    assert summary["stop_reason"] == "steps" and summary["samples"] == 320
    assert _queue_size(server_process.target, name) == 1000 - 320


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_trainer_interrupted_mid_run_leaves_every_untrained_batch_queued(server_process, sig):
    name = f"interrupted_q{int(sig)}"
    n = 20_000
    fill(server_process.target, name, n, close=False)
    p = trainer(server_process.target, "--queue", name, "--async", "--scope", f"interrupted{int(sig)}",
                "--print-every", "1")
    trained = 0
    for line in p.stdout:
        event = json.loads(line)
        if event.get("event") == "step":
            trained = event["samples"]
            if event["global_step"] >= 5:
                p.send_signal(sig)
                break
    rest, _ = p.communicate(timeout=30)
    for line in rest.splitlines():  # steps it finished before the signal reached it
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "step":
            trained = event["samples"]
    left = _queue_size(server_process.target, name)
    # Nothing lost: every sample was trained or is back in the queue. A step that finished after
    # its report may be trained and given back both (at least once): at most one batch more.
    assert n <= left + trained <= n + 32, (left, trained)


def test_a_run_with_nothing_to_do_prints_valid_json(server_process):
    # Before: the done line said "final_loss": NaN, which JSON parsers refuse.
    with qs.connect(server_process.target) as c:
        c.fifo_queue("empty_q", 10, [np.float32, np.int64], [[D], []]).close()
    p = trainer(server_process.target, "--queue", "empty_q", "--async", "--scope", "empty")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    done = [json.loads(line, parse_constant=refuse) for line in out.splitlines() if line.startswith("{")][-1]
    assert done["event"] == "done" and done["samples"] == 0 and done["final_loss"] is None
    # ... and says so (before: a silent exit 0 that read like a success)
    assert "compute train: nothing to do: queue 'empty_q' is closed and empty" in err


def test_a_rerun_past_its_steps_says_that_steps_is_a_global_step(server_process):
    fill(server_process.target, "global_q", 640, close=False)
    p = trainer(server_process.target, "--queue", "global_q", "--async", "--scope", "global", "--steps", "10")
    assert p.communicate(timeout=60) and p.returncode == 0
    p = trainer(server_process.target, "--queue", "global_q", "--async", "--scope", "global", "--steps", "5")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and done_line(out)["local_steps"] == 0
    assert "nothing to do: the model is already at global step 10, at or past --steps 5 (a global step" in err


def test_a_rerun_just_works_after_a_failed_or_interrupted_chief(server_process):
    # Before: the first run closed the model's ready_q and failed; every later run then died with
    # "CancelledError: Queue 'coord-.../ready_q' is already closed" until a manual reset.
    target = server_process.target
    p = trainer(target, "--queue", "rerun_q", "--async", "--scope", "rerun", "--steps", "3")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "start the loaders first" in err
    fill(target, "rerun_q", 5000, close=False)
    p = trainer(target, "--queue", "rerun_q", "--async", "--scope", "rerun", "--print-every", "1")
    for line in p.stdout:  # interrupted in the middle of training
        if json.loads(line).get("event") == "step":
            p.send_signal(signal.SIGINT)
            break
    p.communicate(timeout=30)
    p = trainer(target, "--queue", "rerun_q", "--async", "--scope", "rerun", "--steps", "5")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert done_line(out)["global_step"] == 5


@pytest.mark.parametrize("mode", ["--async", "--sync"])
def test_a_second_chief_is_refused_while_the_first_lives_and_a_rerun_after_it_died_works(server_process, mode):
    # Before: a second chief of the same model reset the first one's coordination queues under it
    # and both trained as chief. Now the second is refused, and once the first is killed a rerun works.
    target, queue, scope = server_process.target, f"chief_q{mode}", f"onechief{mode.strip('-')}"
    fill(target, queue, 5000, close=False)
    first = trainer(target, "--queue", queue, mode, "--scope", scope, "--print-every", "1")
    try:
        for line in first.stdout:  # training: the first chief holds the model
            if json.loads(line).get("event") == "step":
                break
        second = trainer(target, "--queue", queue, mode, "--scope", scope, "--steps", "3")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1, err
        assert "AlreadyExistsError" in err and f"chief (task 0) of model scope '{scope}' is already running" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert first.poll() is None  # the first chief was not disturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    with qs.connect(target) as c:  # the rerun trains on what is left, to the end of the data
        left = c.queue(queue)
        before = left.size()
        left.close()
    rerun = trainer(target, "--queue", queue, mode, "--scope", scope)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert done_line(out)["samples"] == before and _queue_size(target, queue) == 0


def test_a_model_that_does_not_fit_the_queue_fails_before_creating_anything(server_process):
    target = server_process.target
    fill(target, "fit_q", 200, close=False)
    cmd = [sys.executable, "-m", "compute", "train", "--target", target, "--model", f"mlp:{D + 1},16,{C}",
           "--queue", "fit_q", "--async", "--scope", "misfit", "--no-progress"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 1 and f"holds features of {D} values" in p.stderr and f"takes {D + 1}" in p.stderr
    assert "Traceback" not in p.stderr
    with qs.connect(target) as c:
        assert not any(v["name"].startswith("misfit/") for v in c.status()["variables"])


def test_labels_out_of_range_fail_clearly_and_the_batch_goes_back(server_process):
    target = server_process.target
    fill(target, "labels_q", 64, close=False)  # labels 0..2
    cmd = [sys.executable, "-m", "compute", "train", "--target", target, "--model", f"mlp:{D},16,2",
           "--queue", "labels_q", "--async", "--scope", "twoclass", "--no-progress", "--batch", "32"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 1 and "holds label 2, but the model has 2 classes" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert _queue_size(target, "labels_q") == 64


def test_a_queue_in_another_container_is_named(server_process):
    target = server_process.target
    with qs.connect(target) as c:
        c.fifo_queue("boxed_q", 10, [np.float32, np.int64], [[D], []], container="exp")
    p = trainer(target, "--queue", "boxed_q", "--async", "--scope", "boxed")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "is not in container '' (--container)" in err and "exists in 'exp'" in err
    assert "--container exp" in err


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
                         ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_say_what_was_done_and_lose_nothing(server_process, tmp_path, sig, code, word):
    name = f"said_q{int(sig)}"
    n = 20_000
    fill(server_process.target, name, n, close=False)
    p = trainer(server_process.target, "--queue", name, "--async", "--scope", f"said{int(sig)}", "--print-every", "1",
                "--checkpoint-dir", str(tmp_path), "--checkpoint-every", "2")
    for line in p.stdout:
        event = json.loads(line)
        if event.get("event") == "step" and event["global_step"] >= 4:
            p.send_signal(sig)
            break
    out, err = p.communicate(timeout=30)
    assert p.returncode == code, err
    said = next(line for line in err.splitlines() if line.startswith(word))
    trained = int(re.search(r"([\d,]+) samples trained", said).group(1).replace(",", ""))
    assert "went back to the queue" in said and "last checkpoint: global step" in said
    left = _queue_size(server_process.target, name)
    assert n <= left + trained <= n + 32, (left, trained)


def test_the_progress_bar_says_it_waits_for_data_and_ends_on_the_final_figures(server_process):
    # Before: a hand-drawn bar that froze silently on an empty queue and could end before the last step.
    import threading

    target = server_process.target
    fill(target, "bar_q", 320, close=False)  # 10 steps of 32, then the queue is empty and open
    cmd = [sys.executable, "-m", "compute", "train", "--target", target, "--model", f"mlp:{D},16,{C}",
           "--batch", "32", "--progress", "--queue", "bar_q", "--async", "--scope", "bar", "--steps", "15"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    err = bytearray()
    waits = threading.Event()

    def read() -> None:
        while chunk := p.stderr.read1(4096):
            err.extend(chunk)
            if b"waiting for data: queue 'bar_q' is empty" in err:
                waits.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert waits.wait(30), bytes(err).decode(errors="replace")
        fill(target, "bar_q", 320, close=False)  # data again: the trainer goes on to its 15 steps
        out = p.stdout.read()  # (not communicate(): the reader thread owns stderr)
        p.wait(timeout=60)
        reader.join(10)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, bytes(err).decode(errors="replace")
    done = done_line(out.decode())
    last = [d for d in bytes(err).decode().replace("\r", "\n").splitlines() if "step" in d][-1]
    assert "15/15" in last and f"{done['samples_per_s']:,.0f} samples/s" in last, last
    assert f"loss {done['final_loss']:.4f}" in last


@pytest.mark.slow
def test_wrong_order_then_ctrl_c_then_a_rerun_trains_every_loaded_sample_once(server_process, tmp_path):
    # The "done when": the trainer before the loader fails and says what to do; the
    # loader then fills the queue; a trainer interrupted by Ctrl-C gives back what it did not
    # train; its rerun trains the rest to the end of the data. Every loaded sample is trained once
    # (at most one batch twice: a step finishing as the signal lands is trained, then given back).
    target, n = server_process.target, 3000
    rng = np.random.default_rng(5)
    y = rng.integers(0, C, n)
    x = np.random.default_rng(9).standard_normal((C, D))[y] * 2 + rng.standard_normal((n, D))
    path = tmp_path / "train.csv"
    path.write_text("".join(",".join(f"{v:.4f}" for v in row) + f",{label}\n" for row, label in zip(x, y)))

    early = trainer(target, "--queue", "e2e_q", "--async", "--scope", "e2e")
    _, err = early.communicate(timeout=60)
    assert early.returncode == 1 and "start the loaders first" in err

    load = subprocess.run([sys.executable, "-m", "pipeline", "load", "--target", target, "--queue", "e2e_q",
                           "--format", "csv", "--files", str(path), "--record-defaults", f"float32*{D},int64"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert load.returncode == 0 and f"loaded {n:,} records" in load.stderr, load.stderr

    first = trainer(target, "--queue", "e2e_q", "--async", "--scope", "e2e", "--print-every", "1")
    for line in first.stdout:
        if json.loads(line).get("event") == "step" and json.loads(line)["global_step"] >= 5:
            first.send_signal(signal.SIGINT)
            break
    _, err = first.communicate(timeout=30)
    assert first.returncode == 130, err
    trained_first = int(re.search(r"([\d,]+) samples trained", err).group(1).replace(",", ""))

    rerun = trainer(target, "--queue", "e2e_q", "--async", "--scope", "e2e")
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    done = done_line(out)
    assert done["start_step"] >= 5 and done["final_loss"] is not None  # it continued the same model
    assert n <= trained_first + done["samples"] <= n + 32, (trained_first, done["samples"])
    assert _queue_size(target, "e2e_q") == 0
