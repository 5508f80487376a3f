"""``queueserver queue ...`` and what ``queueserver status`` shows, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import queueserver as qs


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "queueserver", *args], capture_output=True, text=True, timeout=60)


def test_one_queue_is_peeked_closed_listed_and_created_without_resetting_its_container(server_process):
    # Before: there was no way to act on one queue; only `reset --container` (every resource in it).
    target = server_process.target
    with qs.connect(target) as c:
        q = c.fifo_queue("work", 10, [np.float32, np.int64], [[2], []], container="jobs")
        keep = c.variable("kept", 1.0, container="jobs")
        keep.initialize()
        q.enqueue_many((np.arange(6, dtype=np.float32).reshape(3, 2), np.arange(3)))

        peek = run_cli("queue", "peek", target, "work", "--container", "jobs", "-n", "2")
        assert peek.returncode == 0, peek.stderr
        assert "(float32[2], int64[]), 3 element(s), open" in peek.stdout
        assert "[0] [0., 1.]  0" in peek.stdout and "[1] [2., 3.]  1" in peek.stdout and "... 1 more" in peek.stdout
        assert q.size() == 3  # peeking consumed nothing
        x, _ = q.dequeue_many(1)
        assert x.tolist() == [[0.0, 1.0]]  # and kept the order

        closed = run_cli("queue", "close", target, "work", "--container", "jobs")
        assert closed.returncode == 0 and "closed: 2 element(s) left" in closed.stdout
        assert q.is_closed()

        listed = run_cli("queue", "list", target, "--container", "jobs")
        assert listed.returncode == 0, listed.stderr
        row = next((line for line in listed.stdout.splitlines() if " work " in line), listed.stdout)
        assert row.split()[:7] == ["jobs", "work", "FIFOQueue", "2", "10", "closed", "(float32[2],"]

        again = run_cli("queue", "create", target, "work", "--container", "jobs", "--dtypes", "float32,int64")
        assert again.returncode == 1 and "AlreadyExistsError" in again.stderr and "already exists" in again.stderr
        assert "Traceback" not in again.stderr

        made = run_cli("queue", "create", target, "other", "--container", "jobs", "--dtypes", "float32,int64",
                       "--shapes", "[[2], []]", "--capacity", "5", "--type", "random_shuffle",
                       "--min-after-dequeue", "1", "--seed", "3")
        assert made.returncode == 0, made.stderr
        other = c.queue("other", container="jobs")
        assert other.spec.describe() == "(float32[2], int64[])"
        (info,) = [x for x in c.status()["queues"] if x["name"] == "other"]
        assert info["type"] == "RandomShuffleQueue" and info["capacity"] == 5
        assert keep.read() == 1.0  # nothing else in the container was touched

        bad = run_cli("queue", "create", target, "x", "--dtypes", "float32", "--shapes", "[2]")
        assert bad.returncode == 1 and "--shapes '[2]'" in bad.stderr
        missing = run_cli("queue", "close", target, "nope")
        assert missing.returncode == 1 and missing.stderr.startswith("queueserver queue close: NotFoundError")

        # A random-shuffle queue keeping min_after_dequeue elements while open cannot lend any.
        kept = c.random_shuffle_queue("kept_back", 10, 5, [np.float32], [[]], container="jobs")
        kept.enqueue_many(np.arange(3, dtype=np.float32))
        shy = run_cli("queue", "peek", target, "kept_back", "--container", "jobs")
        assert shy.returncode == 0 and "3 element(s), open  (its elements cannot be taken now" in shy.stdout
        assert kept.size() == 3


def test_status_hides_internal_coord_resources_and_lists_accumulators_and_clients(server_process):
    target = server_process.target
    with qs.connect(target, client_name="watcher") as c:
        c.fifo_queue("visible_q", 4, [np.float32], container="exp9")
        c.fifo_queue("mlp/ready_q", 1, [np.int64], [[]], container="coord-mlp")
        c.conditional_accumulator("w/grad_accum", [2], container="coord-mlp")
        c.conditional_accumulator("acc9", [3], container="exp9")
        c.report("loader", {"records_per_s": 12.5})
        out = run_cli("status", target).stdout
        assert " visible_q " in out and "mlp/ready_q" not in out and "w/grad_accum" not in out
        assert "internal hidden, --all shows them" in out
        acc_row = next(line for line in out.splitlines() if " acc9 " in line)
        assert acc_row.split()[:4] == ["exp9", "acc9", "float32", "[3]"]
        client_row = next(line for line in out.splitlines() if line.strip().startswith("watcher"))
        assert "loader: records_per_s 12.5" in client_row
        everything = run_cli("status", target, "--all").stdout
        assert "mlp/ready_q" in everything and "w/grad_accum" in everything
        assert json.loads(run_cli("queue", "list", target, "--json", "--all").stdout)


@pytest.mark.parametrize("command", ["create", "close", "peek", "list"])
def test_queue_commands_explain_themselves_with_examples_and_defaults(command):
    out = run_cli("queue", command, "--help").stdout
    assert "examples:" in out and "--token" in out and "queueserver queue" in out
    if command == "create":
        assert "(default: 1000)" in out and "(default: fifo)" in out


def test_a_queue_is_deleted_alone_and_its_name_can_be_made_again(server_process):
    # Before: there was no per-queue delete; a closed queue was replaced by resetting its container.
    import threading

    target = server_process.target
    with qs.connect(target) as c:
        q = c.fifo_queue("old", 10, [np.int64], [[]], container="deletions")
        keep = c.fifo_queue("kept_queue", 10, [np.int64], [[]], container="deletions")
        keep.enqueue(7)
        q.enqueue_many(np.arange(3))
        q.close()
        waiter = c.fifo_queue("waited_on", 10, [np.int64], [[]], container="deletions")
        failed: list = []

        def wait() -> None:
            try:
                waiter.dequeue(timeout=30)
            except qs.QueueServerError as exc:
                failed.append(exc)

        blocked = threading.Thread(target=wait)
        blocked.start()
        while not any(b for cl in c.status()["clients"] for b in cl["blocked"]):
            pass  # until the dequeue waits on the server
        out = run_cli("queue", "delete", target, "waited_on", "--container", "deletions")
        assert out.returncode == 0, out.stderr
        blocked.join()
        assert isinstance(failed[0], qs.CancelledError) and "deleted" in str(failed[0])

        out = run_cli("queue", "delete", target, "old", "--container", "deletions")
        assert out.returncode == 0 and "deleted: 3 element(s) dropped" in out.stdout
        with pytest.raises(qs.NotFoundError):
            q.size()
        again = c.fifo_queue("old", 5, [np.float32], [[2]], container="deletions")  # a new spec is fine now
        assert again.size() == 0 and not again.is_closed()
        assert keep.dequeue() == 7  # the rest of the container is untouched

        missing = run_cli("queue", "delete", target, "nothing", "--container", "deletions")
        assert missing.returncode != 0 and "NotFoundError" in missing.stderr and "Traceback" not in missing.stderr
        c.reset(["deletions"])
