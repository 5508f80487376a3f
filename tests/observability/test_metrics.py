"""``GET /metrics`` parsed by prometheus_client's own parser, against a real server's state."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import queueserver as qs
from support import ServerProcess, free_ports

FEATURES = 4
ROW_BYTES = FEATURES * 4 + 4  # float32[4] + int32


def http_get(url: str, headers: dict | None = None) -> tuple[int, str, dict]:
    """(status, body, headers) of a GET, error statuses included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def scrape(target: str, **headers: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of ``/metrics``, keyed by (sample name, labels)."""
    status, body, hdrs = http_get(target + "/metrics", headers)
    assert status == 200, body
    assert hdrs["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: dict, metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def test_queue_variable_and_server_metrics_match_the_servers_state(local_server):
    target = local_server.target
    q_labels = dict(container="exp", name="examples", type="FIFOQueue")
    with qs.connect(target, client_name="metrics test") as c:
        q = c.fifo_queue("examples", capacity=10, dtypes=[np.float32, np.int32], shapes=[[FEATURES], []],
                         container="exp")
        x, y = np.ones((6, FEATURES), np.float32), np.arange(6, dtype=np.int32)
        q.enqueue_many((x, y))
        q.dequeue_many(2)
        started = time.monotonic()
        with pytest.raises(qs.DeadlineExceededError):  # only 4 left: this dequeue waits, then times out
            q.dequeue_many(5, timeout=0.3)
        dequeue_waited = time.monotonic() - started  # what the server counts lies within this
        q.enqueue_many((x[:6], y[:6]))
        started = time.monotonic()
        with pytest.raises(qs.DeadlineExceededError):  # full: this enqueue waits for room, then times out
            q.enqueue((x[0], y[0]), timeout=0.2)
        enqueue_waited = time.monotonic() - started
        v = c.variable("weights", np.zeros(32, np.float32), container="exp")
        v.initialize()
        v.assign_add(np.ones(32, np.float32))
        v.read()
        c.report("trainer", {"samples_per_s": np.float32(250.0), "step_s": 0.04, "wait_data_s": 0.01,
                             "pull_params_s": 0.005, "compute_s": 0.02, "push_grads_s": 0.005})

        state = c.status()
        m = scrape(target)
        queue = next(e for e in state["queues"] if e["name"] == "examples")
        assert value(m, "queueserver_queue_size", **q_labels) == queue["size"] == 10
        assert value(m, "queueserver_queue_capacity", **q_labels) == 10
        assert value(m, "queueserver_queue_fraction_full", **q_labels) == queue["fraction_full"] == 1.0
        assert value(m, "queueserver_queue_enqueued_elements_total", **q_labels) == queue["enqueued"] == 12
        assert value(m, "queueserver_queue_dequeued_elements_total", **q_labels) == queue["dequeued"] == 2
        assert value(m, "queueserver_queue_enqueued_bytes_total", **q_labels) == 12 * ROW_BYTES
        assert value(m, "queueserver_queue_dequeued_bytes_total", **q_labels) == 2 * ROW_BYTES
        assert 0.3 <= value(m, "queueserver_queue_dequeue_blocked_seconds_total", **q_labels) <= dequeue_waited
        assert 0.2 <= value(m, "queueserver_queue_enqueue_blocked_seconds_total", **q_labels) <= enqueue_waited
        assert value(m, "queueserver_queue_closed", **q_labels) == 0
        assert value(m, "queueserver_queue_waiting_dequeues", **q_labels) == 0

        v_labels = dict(container="exp", name="weights")
        variable = next(e for e in state["variables"] if e["name"] == "weights")
        assert value(m, "queueserver_variable_reads_total", **v_labels) == variable["reads"] == 1
        assert value(m, "queueserver_variable_updates_total", **v_labels) == variable["updates"] == 2
        assert value(m, "queueserver_variable_bytes", **v_labels) == 128
        assert value(m, "queueserver_variable_read_bytes_total", **v_labels) == 128
        assert value(m, "queueserver_variable_updated_bytes_total", **v_labels) == 256
        assert value(m, "queueserver_variable_last_update_timestamp_seconds", **v_labels) == pytest.approx(
            variable["updated_at"])

        assert value(m, "queueserver_connected_clients") == 1
        assert value(m, "queueserver_calls_total", op="dequeue", outcome="ok") == 1
        assert value(m, "queueserver_calls_total", op="dequeue", outcome="DeadlineExceededError") == 1
        assert value(m, "queueserver_calls_total", op="enqueue", outcome="ok") == 2
        assert value(m, "queueserver_calls_total", op="enqueue", outcome="DeadlineExceededError") == 1
        # The histogram saw both dequeues; the timed-out one took longer than 0.25 s.
        assert value(m, "queueserver_call_duration_seconds_count", op="dequeue") == 2
        assert value(m, "queueserver_call_duration_seconds_bucket", op="dequeue", le="0.25") == 1
        assert value(m, "queueserver_call_duration_seconds_bucket", op="dequeue", le="+Inf") == 2
        assert value(m, "queueserver_call_duration_seconds_sum", op="dequeue") >= 0.3
        assert value(m, "queueserver_received_bytes_total") > 13 * ROW_BYTES
        assert value(m, "queueserver_sent_bytes_total") > 2 * ROW_BYTES
        # The scrape came after the status call, which it counts too.
        assert value(m, "queueserver_received_bytes_total") >= state["bytes_in"] > 13 * ROW_BYTES

        r_labels = dict(client="metrics test", role="trainer")
        assert value(m, "queueserver_client_report", figure="samples_per_s", **r_labels) == 250.0
        assert value(m, "queueserver_client_report", figure="compute_s", **r_labels) == 0.02
        assert value(m, "queueserver_client_report_age_seconds", **r_labels) < 5
        assert value(m, "queueserver_info", task="/job:localhost/task:0", version=qs.__version__) == 1

        q.close(cancel_pending_enqueues=True)
        assert value(scrape(target), "queueserver_queue_closed", **q_labels) == 1

    # The client has gone: its report goes with it, its bytes stay counted.
    m = scrape(target)
    assert not [k for k in m if k[0] == "queueserver_client_report"]
    assert value(m, "queueserver_connected_clients") == 0
    assert value(m, "queueserver_received_bytes_total") > 13 * ROW_BYTES


async def test_a_wait_in_progress_counts_as_blocked_time(local_server):
    labels = dict(container="", name="empty", type="FIFOQueue")
    async with qs.connect_async(local_server.target, client_name="starving trainer") as c:
        q = await c.fifo_queue("empty", capacity=4, dtypes=[np.float32])
        waiting = asyncio.ensure_future(q.dequeue(timeout=30))
        await asyncio.sleep(0)  # let the dequeue go out
        state = await c.status()
        while not state["queues"][0]["waiting_dequeues"]:
            state = await c.status()
        first = await asyncio.to_thread(scrape, local_server.target)
        assert value(first, "queueserver_queue_waiting_dequeues", **labels) == 1
        blocked = [c for c in state["clients"] if c["client"] == "starving trainer"][0]["blocked"]
        assert blocked[0]["op"] == "dequeue" and blocked[0]["queue"] == "empty"
        await asyncio.sleep(0.2)  # blocked time grows while the trainer starves
        second = await asyncio.to_thread(scrape, local_server.target)
        grown = (value(second, "queueserver_queue_dequeue_blocked_seconds_total", **labels)
                 - value(first, "queueserver_queue_dequeue_blocked_seconds_total", **labels))
        assert grown >= 0.19
        await q.enqueue(1.0)
        assert await waiting == 1.0
        third = await asyncio.to_thread(scrape, local_server.target)
        assert value(third, "queueserver_queue_dequeue_blocked_seconds_total", **labels) >= value(
            second, "queueserver_queue_dequeue_blocked_seconds_total", **labels)
        assert value(third, "queueserver_queue_waiting_dequeues", **labels) == 0


def test_token_gates_metrics_status_and_the_pages_data():
    server = qs.Server.create_local_server(token="s3cret")
    try:
        with qs.connect(server.target, token="s3cret") as c:
            c.fifo_queue("private-queue", capacity=2, dtypes=[np.float32])
            for path in ("/metrics", "/status", "/status?cluster=1"):
                status, body, headers = http_get(server.target + path)
                assert status == 401 and "private-queue" not in body
                assert headers.get("WWW-Authenticate", "").startswith("Bearer")
                assert http_get(server.target + path, {"Authorization": "Bearer wrong"})[0] == 401
            m = scrape(server.target, Authorization="Bearer s3cret")
            assert value(m, "queueserver_queue_size", container="", name="private-queue", type="FIFOQueue") == 0
            status, body, _ = http_get(server.target + "/metrics?token=s3cret")
            assert status == 200 and "private-queue" in body
            status, body, _ = http_get(server.target + "/status?cluster=1", {"Authorization": "Bearer s3cret"})
            assert status == 200 and json.loads(body)["cluster"][0]["queues"][0]["name"] == "private-queue"
            # The page itself holds no data: it loads, and asks for the token before showing anything.
            status, body, headers = http_get(server.target + "/")
            assert status == 200 and headers["Content-Type"].startswith("text/html")
            assert "private-queue" not in body and 'id="login"' in body
            assert http_get(server.target + "/static/status.js")[0] == 200
            # A client asking "/" for JSON gets the status, as before the page existed, token included.
            assert http_get(server.target + "/", {"Accept": "application/json"})[0] == 401
            status, body, _ = http_get(server.target + "/", {"Accept": "application/json",
                                                             "Authorization": "Bearer s3cret"})
            assert status == 200 and json.loads(body)["queues"][0]["name"] == "private-queue"
    finally:
        server.stop()


def test_metrics_can_be_switched_off():
    server = ServerProcess("--no-metrics")
    try:
        status, body, _ = http_get(server.target + "/metrics")
        assert status == 404 and "--no-metrics" in body
        with qs.connect(server.target) as c:
            q = c.fifo_queue("q", capacity=4, dtypes=[np.float32])
            q.enqueue(1.0)
            state = c.status()
            assert state["metrics"] is False and state["queues"][0]["enqueued"] == 1 and "bytes_in" not in state
        assert http_get(server.target + "/")[0] == 200
    finally:
        assert server.stop() == 0


def test_forwarded_calls_are_counted_per_destination_task():
    ps_port, worker_port = free_ports(2)
    spec = {"ps": [f"127.0.0.1:{ps_port}"], "worker": [f"127.0.0.1:{worker_port}"]}
    ps = qs.Server(spec, job_name="ps", task_index=0)
    worker = qs.Server(spec, job_name="worker", task_index=0)
    try:
        with qs.connect(worker.target, route_direct=False, client_name="forwarded client") as c:
            with c.device("/job:ps/task:0"):
                q = c.fifo_queue("on-ps", capacity=8, dtypes=[np.float32])
            q.enqueue_many(np.arange(3, dtype=np.float32))
            assert q.dequeue() == 0.0
            m = scrape(worker.target)
            # create + enqueue + dequeue went to the ps (directory calls are counted separately).
            assert value(m, "queueserver_forwarded_calls_total", task="/job:ps/task:0") >= 3
            assert value(m, "queueserver_calls_total", op="enqueue", outcome="ok") == 1
            on_ps = scrape(ps.target)
            assert value(on_ps, "queueserver_queue_size", container="", name="on-ps", type="FIFOQueue") == 2
            assert ("queueserver_queue_size", frozenset(dict(container="", name="on-ps", type="FIFOQueue").items())) \
                not in m
            status, body, _ = http_get(worker.target + "/status?cluster=1")
            tasks = {t["task"]: t for t in json.loads(body)["cluster"]}
            assert tasks["/job:ps/task:0"]["up"] and tasks["/job:ps/task:0"]["queues"][0]["name"] == "on-ps"
            assert tasks["/job:worker/task:0"]["up"]
        ps.stop()
        status, body, _ = http_get(worker.target + "/status?cluster=1")
        tasks = {t["task"]: t for t in json.loads(body)["cluster"]}
        assert tasks["/job:ps/task:0"]["up"] is False and tasks["/job:ps/task:0"]["error"]
    finally:
        worker.stop()
        ps.stop()


def test_reports_are_checked_and_go_stale(local_server):
    with qs.connect(local_server.target, client_name="loader-7") as c:
        with pytest.raises(qs.InvalidArgumentError):
            c.report("loader", {"records_per_s": float("nan")})
        with pytest.raises(qs.InvalidArgumentError):
            c.report("loader", {"records_per_s": "fast"})
        with pytest.raises(qs.InvalidArgumentError):
            c.report("loader", {f"f{i}": 1 for i in range(65)})
        c.report("loader", {"records_per_s": 1200, "bytes_per_s": 3.5e6})
        (me,) = [cl for cl in c.status()["clients"] if cl["client"] == "loader-7"]
        assert me["report"]["role"] == "loader" and me["report"]["figures"] == {"records_per_s": 1200,
                                                                               "bytes_per_s": 3.5e6}
        local_server.service.report_ttl = 0.0  # every report is now stale
        (me,) = [cl for cl in c.status()["clients"] if cl["client"] == "loader-7"]
        assert me["report"] is None
        assert not [k for k in scrape(local_server.target) if k[0] == "queueserver_client_report"]
