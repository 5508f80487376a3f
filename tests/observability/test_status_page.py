"""The status page in a real headless Chromium, against a real ``queueserver serve`` process.

A loader thread and a trainer thread work through the server while the page refreshes itself; the
test reads the page's DOM over the DevTools protocol and compares what it shows with the server's
own state. Set ``QUEUESERVER_SCREENSHOT=/path/status.png`` to keep the screenshot (for the README);
otherwise it goes to pytest's tmp_path.

Skipped, with the reason, when no Chromium is installed (``apt-get install chromium``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import queueserver as qs
from queueserver.metrics import TRAINER_PHASES
from cdp_browser import CANDIDATES, Browser, find_chromium
from support import ServerProcess

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason=(
        f"no Chromium browser found (looked for $QUEUESERVER_CHROMIUM, {', '.join(CANDIDATES)}):"
        " install Debian's `chromium` package to run the status page test")),
]

TOKEN = "page-secret"
QUEUE = "examples"  # in container "train": the page shows the container and the name in their own columns
CAPACITY, BATCH, FEATURES = 600, 20, 16
SPEC = dict(dtypes=[np.float32, np.int32], shapes=[[FEATURES], []], container="train")

# What the page shows, read from its DOM: queue rows, client rows, variable rows.
READ_PAGE = """
(() => {
  const cells = row => Object.fromEntries([...row.querySelectorAll('[data-field]')]
      .map(td => [td.dataset.field, {text: td.textContent.trim(), value: td.dataset.value ?? null}]));
  return JSON.stringify({
    polls: Number(document.body.dataset.polls || 0),
    contentVisible: !document.getElementById('content').hidden,
    tasks: [...document.querySelectorAll('#tasks tbody tr')].map(r => ({task: r.dataset.key, ...cells(r)})),
    queues: [...document.querySelectorAll('#queues tbody tr')].map(r => ({
      ...cells(r), queue: r.dataset.queue, container: r.dataset.container, task: r.dataset.task,
      sparkPoints: Number(r.querySelector('svg.spark').dataset.points)})),
    clients: [...document.querySelectorAll('#clients tbody tr')].map(r => ({
      ...cells(r), client: r.dataset.client,
      figures: Object.fromEntries([...r.querySelectorAll('[data-figure]')].map(s => [s.dataset.figure, Number(s.dataset.value)])),
      phases: Object.fromEntries([...r.querySelectorAll('[data-phase]')].map(s => [s.dataset.phase, Number(s.dataset.share)]))})),
    variables: [...document.querySelectorAll('#variables tbody tr')].map(r => ({...cells(r),
      variable: r.dataset.variable, container: r.dataset.container})),
    accumulators: [...document.querySelectorAll('#accumulators tbody tr')].map(r => ({...cells(r),
      accumulator: r.dataset.accumulator, container: r.dataset.container})),
  });
})()
"""


async def read_page(browser: Browser) -> dict:
    return json.loads(await browser.evaluate(READ_PAGE))


class Workers:
    """A loader and a trainer, each a thread with its own synchronous client, reporting their figures."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.stop_training = threading.Event()   # the trainer stops consuming: the loader then fills the queue
        self.finish = threading.Event()          # both disconnect
        self.errors: list[BaseException] = []
        self.trainer_idle = threading.Event()
        self.threads = [threading.Thread(target=self._guard, args=(fn,), daemon=True)
                        for fn in (self._loader, self._trainer)]

    def start(self) -> "Workers":
        for t in self.threads:
            t.start()
        return self

    def _guard(self, fn) -> None:
        try:
            fn()
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)

    def _loader(self) -> None:
        rng = np.random.default_rng(0)
        x = rng.random((BATCH, FEATURES), dtype=np.float32)
        y = np.arange(BATCH, dtype=np.int32)
        with qs.connect(self.target, token=TOKEN, client_name="loader-0") as c:
            q = c.fifo_queue("examples", capacity=CAPACITY, **SPEC)
            sent, since = 0, time.monotonic()
            while not self.finish.is_set():
                try:
                    q.enqueue_many((x, y))  # blocks once the trainer stops and the queue is full
                except qs.CancelledError:
                    return  # the test closed the queue to let us go
                sent += BATCH
                now = time.monotonic()
                if now - since >= 0.25:
                    c.report("loader", {"records_per_s": sent / (now - since), "bytes_per_s": sent * 68 / (now - since)})
                    sent, since = 0, now
                self.finish.wait(0.01)  # a loader reading files: about 2,000 records/s

    def _trainer(self) -> None:
        with qs.connect(self.target, token=TOKEN, client_name="trainer-0") as c:
            q = c.fifo_queue("examples", capacity=CAPACITY, **SPEC)
            weights = c.variable("weights", np.zeros(64, np.float32), container="train")
            weights.initialize()
            phases = dict.fromkeys(TRAINER_PHASES, 0.0)
            steps, samples, since = 0, 0, time.monotonic()
            while not self.stop_training.is_set():
                t0 = time.monotonic()
                _, yb = q.dequeue_many(BATCH // 2)
                t1 = time.monotonic()
                weights.read()
                t2 = time.monotonic()
                self.stop_training.wait(0.004)  # "compute"
                t3 = time.monotonic()
                weights.assign_add(np.full(64, 0.01, np.float32))
                t4 = time.monotonic()
                for key, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    phases[key] += dt
                steps += 1
                samples += len(yb)
                if t4 - since >= 0.25:
                    c.report("trainer", {"samples_per_s": samples / (t4 - since), "step_s": (t4 - since) / steps,
                                         **{k: v / steps for k, v in phases.items()}})
                    phases = dict.fromkeys(phases, 0.0)
                    steps, samples, since = 0, 0, t4
            self.trainer_idle.set()
            self.finish.wait(60)  # stay connected: the page keeps showing our last report

    def stop(self) -> None:
        self.stop_training.set()
        self.finish.set()
        with qs.connect(self.target, token=TOKEN, client_name="test cleanup") as c:
            try:
                c.queue("examples", container="train").close(cancel_pending_enqueues=True)
            except qs.QueueServerError:
                pass
        for t in self.threads:
            t.join(10)


def screenshot_path(tmp_path: Path) -> Path:
    given = os.environ.get("QUEUESERVER_SCREENSHOT")
    return Path(given) if given else tmp_path / "status-page.png"


@pytest.fixture
async def browser(tmp_path):
    b = await Browser(CHROMIUM, tmp_path / "chromium-profile").start()
    yield b
    await b.close()


@pytest.fixture(scope="module")
def token_server():
    server = ServerProcess("--token", TOKEN)
    yield server
    server.stop()


def wait_until(predicate, timeout: float = 20.0, what: str = "condition"):
    """Poll the server's state (through a client) until ``predicate`` holds, within a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


async def test_page_shows_the_servers_live_state(token_server, browser, tmp_path):
    workers = Workers(token_server.target).start()
    try:
        with qs.connect(token_server.target, token=TOKEN, client_name="test observer") as c:
            wait_until(lambda: any(v["name"] == "weights" for v in c.status()["variables"]), what="the trainer's start")
            # The token in the address goes to sessionStorage (and out of the address bar).
            await browser.open(f"{token_server.target}/?token={TOKEN}")
            assert TOKEN not in await browser.evaluate("location.href")

            # Live: both workers run; rates, sparklines and the trainer's time split show up.
            live = json.loads(await browser.wait_for(f"""(() => {{
                const page = {READ_PAGE};
                const p = JSON.parse(page);
                const q = p.queues.find(q => q.queue === '{QUEUE}');
                const trainer = p.clients.find(c => c.role.text === 'trainer');
                const loader = p.clients.find(c => c.role.text === 'loader');
                return q && q.sparkPoints >= 6 && Number(q.enqueue_rate.value) > 0 && Number(q.dequeue_rate.value) > 0
                       && trainer && Object.keys(trainer.phases).length === 4 && loader ? page : null;
            }})()"""))
            queue = next(q for q in live["queues"] if q["queue"] == QUEUE)
            assert queue["task"] == "/job:localhost/task:0"
            assert queue["container"] == "train" and queue["name"]["text"] == QUEUE  # separate columns
            assert live["tasks"][0]["up"]["value"] == "true"
            trainer = next(cl for cl in live["clients"] if cl["role"]["text"] == "trainer")
            assert trainer["client"] == "trainer-0" and trainer["figures"]["samples_per_s"] > 0
            assert abs(sum(trainer["phases"].values()) - 1.0) < 0.01
            loader = next(cl for cl in live["clients"] if cl["role"]["text"] == "loader")
            assert loader["client"] == "loader-0" and loader["figures"]["records_per_s"] > 0
            shot = await browser.screenshot(screenshot_path(tmp_path))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

            # Quiet: the trainer stops, the loader fills the queue and blocks. Now the server's state
            # holds still and the page must show exactly it.
            workers.stop_training.set()
            assert workers.trainer_idle.wait(10)
            state = wait_until(lambda: (s := c.status()) and s["queues"][0]["waiting_enqueues"] == 1 and s,
                               what="the loader blocking on a full queue")
            polls = (await read_page(browser))["polls"]
            await browser.wait_for(f"Number(document.body.dataset.polls) >= {polls + 2}")
            page = await read_page(browser)

            q_state = next(q for q in state["queues"] if q["name"] == "examples")
            q_page = next(q for q in page["queues"] if q["queue"] == QUEUE)
            assert int(q_page["size"]["text"]) == q_state["size"] == CAPACITY
            assert int(q_page["capacity"]["text"]) == CAPACITY
            assert float(q_page["fraction_full"]["value"]) == q_state["fraction_full"] == 1.0
            assert int(q_page["enqueued"]["text"]) == q_state["enqueued"]
            assert int(q_page["dequeued"]["text"]) == q_state["dequeued"]
            assert q_page["waiting"]["text"] == "1/0"
            assert float(q_page["enqueue_rate"]["value"]) == 0 and float(q_page["dequeue_rate"]["value"]) == 0

            clients = {cl["client"]: cl for cl in state["clients"]}
            shown = {cl["client"]: cl for cl in page["clients"]}
            assert set(shown) == set(clients)  # the observer and the cleanup-free workers, all listed
            assert shown["loader-0"]["blocked"]["text"].startswith("enqueue train/examples")  # container/name
            assert shown["trainer-0"]["blocked"]["text"] == ""
            for name, role in (("loader-0", "loader"), ("trainer-0", "trainer")):
                report = clients[name]["report"]
                assert shown[name]["role"]["text"] == report["role"] == role
                figures = {k: v for k, v in report["figures"].items() if k not in TRAINER_PHASES}
                assert shown[name]["figures"] == pytest.approx(figures)
            split = clients["trainer-0"]["report"]["figures"]
            total = sum(split[k] for k in shown["trainer-0"]["phases"])
            for phase, share in shown["trainer-0"]["phases"].items():
                assert share == pytest.approx(split[phase] / total, abs=1e-4)

            v_state = next(v for v in state["variables"] if v["name"] == "weights")
            v_page = next(v for v in page["variables"] if v["variable"] == "weights")
            assert v_page["container"] == "train" and v_page["name"]["text"] == "weights"
            assert int(v_page["nbytes"]["text"]) == v_state["nbytes"] == 64 * 4
            assert int(v_page["reads"]["text"]) == v_state["reads"]
            assert int(v_page["updates"]["text"]) == v_state["updates"]
            assert float(v_page["updated_at"]["value"]) == pytest.approx(v_state["updated_at"])
            assert v_page["updated_at"]["text"].endswith("ago")
    finally:
        workers.stop()
    assert not workers.errors, workers.errors


async def test_page_asks_for_the_token_and_shows_nothing_without_it(token_server, browser):
    with qs.connect(token_server.target, token=TOKEN, client_name="setup") as c:
        c.fifo_queue("secret-queue", capacity=5, dtypes=[np.float32])
        await browser.open(token_server.target + "/")
        await browser.wait_for("!document.getElementById('login').hidden")
        page = await read_page(browser)
        assert not page["contentVisible"] and page["queues"] == []
        assert "secret-queue" not in await browser.evaluate("document.documentElement.outerHTML")

        # A wrong token is refused and nothing shows.
        submit = """(token => { document.getElementById('token').value = token;
                               document.getElementById('login').requestSubmit(); return true; })"""
        await browser.evaluate(f"{submit}('wrong')")
        await browser.wait_for("document.getElementById('login-error').textContent.includes('refused')")
        assert "secret-queue" not in await browser.evaluate("document.documentElement.outerHTML")
        assert await browser.evaluate("sessionStorage.getItem('queueserver-token')") is None

        # The right one shows the page, and stays for this tab's session.
        await browser.evaluate(f"{submit}('{TOKEN}')")
        await browser.wait_for("[...document.querySelectorAll('#queues tbody tr')]"
                               ".some(r => r.dataset.queue === 'secret-queue')")
        assert await browser.evaluate("document.getElementById('login').hidden")
        assert await browser.evaluate("sessionStorage.getItem('queueserver-token')") == TOKEN


async def test_page_lists_every_task_of_the_cluster_and_which_are_down(browser):
    from support import free_ports

    ps_port, worker_port = free_ports(2)
    spec = {"ps": [f"127.0.0.1:{ps_port}"], "worker": [f"127.0.0.1:{worker_port}"]}
    ps = qs.Server(spec, job_name="ps", task_index=0)
    worker = qs.Server(spec, job_name="worker", task_index=0)
    try:
        with qs.connect(worker.target, client_name="placer") as c:
            with c.device("/job:ps/task:0"):
                c.fifo_queue("on-ps", capacity=3, dtypes=[np.float32]).enqueue(1.0)
        await browser.open(worker.target + "/")
        rows = "[...document.querySelectorAll('#tasks tbody tr')].map(r => r.dataset.key + '=' + " \
               "r.querySelector('[data-field=up]').dataset.value).join(' ')"
        await browser.wait_for(f"{rows} === '/job:ps/task:0=true /job:worker/task:0=true'")
        queue = await browser.wait_for("(r => r && [r.dataset.task, r.querySelector('[data-field=size]').textContent])"
                                       "(document.querySelector('#queues tr[data-queue=\"on-ps\"]'))")
        assert queue == ["/job:ps/task:0", "1"]
        ps.stop()
        await browser.wait_for(f"{rows} === '/job:ps/task:0=false /job:worker/task:0=true'")
        assert await browser.evaluate("document.querySelectorAll('#queues tbody tr').length") == 0
    finally:
        worker.stop()
        ps.stop()


async def test_page_hides_internal_coord_resources_until_asked_and_lists_accumulators(browser):
    # Before: every trainer's coordination queues and accumulators (coord-<scope>) crowded the
    # tables, and a resource's container and name shared one column.
    server = qs.Server.create_local_server()
    try:
        with qs.connect(server.target, client_name="setup") as c:
            c.fifo_queue("rows", capacity=3, dtypes=[np.float32], container="exp")
            c.fifo_queue("mlp/ready_q", capacity=1, dtypes=[np.int64], container="coord-mlp")
            c.conditional_accumulator("w/grad_accum", [2], container="coord-mlp")
            c.conditional_accumulator("mine", [3], container="exp")
            await browser.open(server.target + "/")
            page = json.loads(await browser.wait_for(f"""(() => {{
                const p = JSON.parse({READ_PAGE}); return p.queues.length ? JSON.stringify(p) : null; }})()"""))
            assert [(q["container"], q["queue"]) for q in page["queues"]] == [("exp", "rows")]
            assert [(a["container"], a["accumulator"]) for a in page["accumulators"]] == [("exp", "mine")]
            note = await browser.evaluate("document.getElementById('queues-hidden').textContent")
            assert note.startswith("1 internal hidden")
            await browser.evaluate("document.getElementById('show-internal').click(), true")
            page = await read_page(browser)
            assert sorted((q["container"], q["queue"]) for q in page["queues"]) == [
                ("coord-mlp", "mlp/ready_q"), ("exp", "rows")]
            assert sorted(a["accumulator"] for a in page["accumulators"]) == ["mine", "w/grad_accum"]
            assert await browser.evaluate("document.getElementById('queues-hidden').hidden")
    finally:
        server.stop()
