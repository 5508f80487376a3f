"""Prometheus metrics of one server, read from its live state when scraped.

The data path only bumps plain counters (the queues' ``stats``, a connection's byte counts, and
:class:`CallStats`, one dict update and one bucket increment per call); everything else (queue
sizes, blocked seconds, connected clients, client reports) is read from the core when
``GET /metrics`` asks: the server's own figures by :class:`ServiceCollector`, a custom collector on
a per-server ``CollectorRegistry``, and the resources' by :class:`ResourceRows`, a slice per turn
of the event loop, written out in a thread (:func:`scrape`). Nothing here runs between scrapes.

Families (all prefixed ``queueserver_``):

* per queue, labels ``container``, ``name``, ``type``: ``queue_size``, ``queue_capacity``,
  ``queue_fraction_full`` (TensorFlow's ``fraction_of_N_full``), ``queue_closed``,
  ``queue_waiting_enqueues``, ``queue_waiting_dequeues``, and counters
  ``queue_enqueued_elements_total``, ``queue_dequeued_elements_total``, ``queue_returned_elements_total``,
  ``queue_enqueued_bytes_total``, ``queue_dequeued_bytes_total``,
  ``queue_enqueue_blocked_seconds_total`` (producers waiting for room: the consumers are slow) and
  ``queue_dequeue_blocked_seconds_total`` (consumers starving: the input is slow);
* per variable, labels ``container``, ``name``: ``variable_reads_total``, ``variable_updates_total``,
  ``variable_bytes``, ``variable_read_bytes_total``, ``variable_updated_bytes_total``,
  ``variable_last_update_timestamp_seconds``;
* per accumulator: ``accumulator_accumulated``, ``accumulator_global_step``,
  ``accumulator_gradients_total{outcome=applied|dropped_stale|taken}``;
* per server: ``info{task,version}``, ``start_time_seconds``, ``connected_clients``,
  ``calls_total{op,outcome}`` (outcome ``ok`` or the error class), ``call_duration_seconds{op}``
  (a histogram, from the request's arrival to its reply, blocking included),
  ``received_bytes_total``, ``sent_bytes_total``, ``forwarded_calls_total{task}``;
* per reporting client, labels ``client``, ``role``: ``client_report{figure}`` (the latest figures a
  loader or trainer sent with ``report()``) and ``client_report_age_seconds``.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from itertools import islice
from time import perf_counter
from typing import TYPE_CHECKING, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from prometheus_client.registry import Collector

from queueserver._version import __version__
from queueserver.errors import FailedPreconditionError

if TYPE_CHECKING:  # pragma: no cover
    from queueserver.service import QueueService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Upper bounds of the call latency buckets, in seconds: from a pipelined small call (~100 us) to a
# dequeue that blocked for a while.
LATENCY_BUCKETS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# How many resources a scrape reads per turn of the event loop (about a millisecond's work).
SCRAPE_SLICE = 1000

# A trainer's step split into phases, in seconds per step: the status page stacks them in this order.
TRAINER_PHASES = ("wait_data_s", "pull_params_s", "compute_s", "push_grads_s")


class CallStats:
    """Per-call accounting of one server: outcome counts, latency histograms, bytes, forwards.

    :meth:`observe` is the only per-call cost: a ``perf_counter`` read, two dict lookups and two
    increments. The histograms are plain lists (bucket counts, then the sum) rather than
    ``prometheus_client.Histogram`` objects, which take a lock per observation.
    """

    __slots__ = ("outcomes", "latency", "bytes_in_closed", "bytes_out_closed", "forwarded")

    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, str], int] = {}
        self.latency: dict[str, list] = {}       # op -> [count per bucket ..., count over the last, sum]
        self.bytes_in_closed = 0                  # bytes of connections that have gone away
        self.bytes_out_closed = 0
        self.forwarded: dict[str, int] = {}       # destination task -> calls forwarded there

    def observe(self, op: str, outcome: str, t0: float) -> None:
        """Count one finished call of ``op`` that arrived at ``perf_counter()`` time ``t0``."""
        dt = perf_counter() - t0
        key = (op, outcome)
        outcomes = self.outcomes
        outcomes[key] = outcomes.get(key, 0) + 1
        h = self.latency.get(op)
        if h is None:
            h = self.latency[op] = [0] * (len(LATENCY_BUCKETS) + 1) + [0.0]
        h[bisect_left(LATENCY_BUCKETS, dt)] += 1
        h[-1] += dt

    def forward(self, task: str) -> None:
        """Count one call forwarded to ``task``."""
        self.forwarded[task] = self.forwarded.get(task, 0) + 1


class ResourceRows:
    """The figures of every queue, variable and accumulator, copied out of the live state.

    Reading them is cheap per resource but not for 100k of them, so :meth:`read` is a generator
    that pauses every :data:`SCRAPE_SLICE` resources: :func:`scrape` gives the event loop a turn at
    each pause, and writes the text (the costly part) in a thread. The figures are kept as columns
    (one list per figure) and the text written directly, not through ``prometheus_client`` objects:
    a container object per resource (a million sample objects for 100k resources) set off the
    garbage collector's full passes, which paused every thread of the server for most of a second.
    """

    def __init__(self) -> None:
        self.queue_labels: list[str] = []
        self.queue_columns: list[list] = [[] for _ in _QUEUE_FAMILIES]
        self.variable_labels: list[str] = []
        self.variable_columns: list[list] = [[] for _ in _VARIABLE_FAMILIES]
        self.accumulators: list[tuple[str, int, int, dict]] = []  # few: one per synchronous model

    def read(self, svc: "QueueService") -> Iterator[None]:
        from queueserver.core import ConditionalAccumulatorBase, QueueBase, Variable

        # Copies of the names (cheap, in C, and no object per resource for the garbage collector
        # to track): resources created or freed between slices must not break the iteration.
        for container in list(svc.resources.containers):
            resources = svc.resources.containers.get(container, {})
            where = f"container={_label(container)},name="
            for i, name in enumerate(list(resources), 1):
                res = resources.get(name)
                if isinstance(res, QueueBase):
                    st = res.stats
                    size = res._store.size
                    self.queue_labels.append(f"{where}{_label(name)},type={_label(res.type_name)}")
                    for column, value in zip(self.queue_columns, (
                            size, res.capacity, size / res.capacity, int(res.closed), len(res._enqueues),
                            len(res._dequeues), st["enqueued"], st["dequeued"], st["returned"],
                            st["enqueued_bytes"], st["dequeued_bytes"], *res.blocked_seconds())):
                        column.append(value)
                elif isinstance(res, Variable):
                    nbytes = res.initial_value.nbytes  # fixed: a variable never changes dtype or shape
                    reads, updates = res.stats["reads"], res.stats["updates"]
                    self.variable_labels.append(where + _label(name))
                    for column, value in zip(self.variable_columns, (
                            reads, updates, nbytes, reads * nbytes, updates * nbytes, res.updated_at)):
                        column.append(value)
                elif isinstance(res, ConditionalAccumulatorBase):
                    self.accumulators.append((where + _label(name), res.count, res.global_step, dict(res.stats)))
                if i % SCRAPE_SLICE == 0:
                    yield

    def text(self) -> list[bytes]:
        """The per-resource families in Prometheus text format, in pieces of about
        :data:`SCRAPE_SLICE` lines (joining 50 MB in one go held every thread for tens of ms)."""
        out: list[bytes] = []
        for (key, kind, doc), column in zip(_QUEUE_FAMILIES, self.queue_columns):
            _family(out, f"queueserver_queue_{key}", kind, doc, zip(self.queue_labels, column))
        for (key, kind, doc), column in zip(_VARIABLE_FAMILIES, self.variable_columns):
            _family(out, f"queueserver_variable_{key}", kind, doc,
                    ((labels, v) for labels, v in zip(self.variable_labels, column) if v is not None))
        accs = self.accumulators
        _family(out, "queueserver_accumulator_accumulated", "gauge", "Gradients accumulated now.",
                ((a[0], a[1]) for a in accs))
        _family(out, "queueserver_accumulator_global_step", "gauge", "The accumulator's global step.",
                ((a[0], a[2]) for a in accs))
        _family(out, "queueserver_accumulator_gradients", "counter", "Gradients by what became of them.",
                ((f"{a[0]},outcome={_label(outcome)}", n) for a in accs for outcome, n in a[3].items()))
        return out


# Per queue, in the order ResourceRows.read takes the figures: (name, kind, help).
_QUEUE_FAMILIES = (
    ("size", "gauge", "Elements in the queue."),
    ("capacity", "gauge", "The queue's capacity."),
    ("fraction_full", "gauge", "size / capacity (TensorFlow's fraction_of_N_full)."),
    ("closed", "gauge", "1 once the queue is closed."),
    ("waiting_enqueues", "gauge", "Enqueue calls waiting for room now."),
    ("waiting_dequeues", "gauge", "Dequeue calls waiting for elements now."),
    ("enqueued_elements", "counter", "Elements enqueued."),
    ("dequeued_elements", "counter", "Elements delivered by dequeues."),
    ("returned_elements", "counter", "Delivered elements put back because their client went away unacknowledged."),
    ("enqueued_bytes", "counter", "Array bytes enqueued."),
    ("dequeued_bytes", "counter", "Array bytes delivered by dequeues."),
    ("enqueue_blocked_seconds", "counter", "Seconds enqueue calls spent waiting for room (consumers too slow)."),
    ("dequeue_blocked_seconds", "counter", "Seconds dequeue calls spent waiting for elements (input too slow)."),
)

# Per variable, likewise (the last update is left out for a variable never updated).
_VARIABLE_FAMILIES = (
    ("reads", "counter", "Variable reads."),
    ("updates", "counter", "Variable updates (initialize, assign, assign_add, assign_sub)."),
    ("bytes", "gauge", "Size of the variable's value."),
    ("read_bytes", "counter", "Bytes read from the variable."),
    ("updated_bytes", "counter", "Bytes written to the variable."),
    ("last_update_timestamp_seconds", "gauge", "Unix time of the variable's last update."),
)


def _label(value: str) -> str:
    """A label value, quoted and escaped as the text format wants."""
    return '"' + value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') + '"'


def _family(out: list[bytes], name: str, kind: str, doc: str, samples: Iterator[tuple[str, float]]) -> None:
    """One family in the text format (counters' samples end in ``_total``, as prometheus_client writes them)."""
    if kind == "counter":
        name += "_total"
    out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n".encode())
    while True:
        lines = [f"{name}{{{labels}}} {floatToGoString(value)}\n" for labels, value in islice(samples, SCRAPE_SLICE)]
        if not lines:
            return
        out.append("".join(lines).encode())


class ServiceCollector(Collector):
    """Yields a :class:`~queueserver.server.QueueService`'s own figures and its clients' reports
    (small: read in one go at scrape time); the per-resource families are :class:`ResourceRows`'."""

    def __init__(self, service: "QueueService") -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        yield from self._server(self.service)
        yield from self._reports(self.service)

    # ----- server
    def _server(self, svc: "QueueService") -> Iterator[Metric]:
        info = GaugeMetricFamily("queueserver_info", "This server's task and version (always 1).",
                                 labels=["task", "version"])
        info.add_metric([svc.task, __version__], 1)
        yield info
        yield GaugeMetricFamily("queueserver_start_time_seconds", "When this server started, Unix time.",
                                value=svc.started)
        yield GaugeMetricFamily("queueserver_connected_clients",
                                "Open data-plane connections (clients, and other tasks forwarding here).",
                                value=len(svc.connections))
        stats = svc.call_stats
        if stats is None:
            return
        calls = CounterMetricFamily("queueserver_calls", "Data-plane calls by operation and outcome.",
                                    labels=["op", "outcome"])
        for (op, outcome), n in sorted(stats.outcomes.items()):
            calls.add_metric([op, outcome], n)
        yield calls
        latency = HistogramMetricFamily(
            "queueserver_call_duration_seconds",
            "Seconds from a call's arrival to its reply (time blocked in a queue included).", labels=["op"])
        for op, h in sorted(stats.latency.items()):
            cumulative, buckets = 0, []
            for bound, n in zip(LATENCY_BUCKETS, h):
                cumulative += n
                buckets.append((_le(bound), cumulative))
            cumulative += h[len(LATENCY_BUCKETS)]
            buckets.append(("+Inf", cumulative))
            latency.add_metric([op], buckets, sum_value=h[-1])
        yield latency
        bytes_in = stats.bytes_in_closed + sum(c.bytes_in for c in svc.connections)
        bytes_out = stats.bytes_out_closed + sum(c.bytes_out for c in svc.connections)
        yield CounterMetricFamily("queueserver_received_bytes", "Data-plane bytes received.", value=bytes_in)
        yield CounterMetricFamily("queueserver_sent_bytes", "Data-plane bytes sent.", value=bytes_out)
        forwarded = CounterMetricFamily("queueserver_forwarded_calls",
                                        "Calls this task forwarded to the task owning the resource.",
                                        labels=["task"])
        for task, n in sorted(stats.forwarded.items()):
            forwarded.add_metric([task], n)
        yield forwarded

    # ----- what clients report about themselves
    def _reports(self, svc: "QueueService") -> Iterator[Metric]:
        figures = GaugeMetricFamily("queueserver_client_report",
                                    "The latest figures a client reported (records/s, samples/s, step phases...).",
                                    labels=["client", "role", "figure"])
        ages = GaugeMetricFamily("queueserver_client_report_age_seconds", "Seconds since the client's last report.",
                                 labels=["client", "role"])
        now = time.time()
        for report in svc.live_reports():
            for key, value in report["figures"].items():
                figures.add_metric([report["client"], report["role"], key], value)
            ages.add_metric([report["client"], report["role"]], now - report["ts"])
        yield figures
        yield ages


def _le(bound: float) -> str:
    return repr(float(bound))


def make_registry(service: "QueueService") -> CollectorRegistry:
    """A registry of its own for ``service`` (not the process-global one: embedded servers may be many)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service))
    return registry


def _live(service: "QueueService") -> bytes:
    if service.metrics_registry is None:
        raise FailedPreconditionError("metrics are off on this server (it runs with --no-metrics)")
    return generate_latest(service.metrics_registry)


def render(service: "QueueService") -> bytes:
    """The server's metrics in Prometheus text format, read and rendered now, in one go."""
    rows = ResourceRows()
    for _ in rows.read(service):
        pass
    return b"".join([_live(service), *rows.text()])


async def scrape(service: "QueueService") -> list[bytes]:
    """``GET /metrics`` without holding up the data plane: the resources are read a slice of
    :data:`SCRAPE_SLICE` per turn of the event loop and written out in a worker thread (with 10k
    queues and 100k variables, rendering in one go took 5.8 s, and every call on the server waited).

    Returns the text in pieces, to be sent one after another."""
    live = _live(service)
    rows = ResourceRows()
    for _ in rows.read(service):
        await asyncio.sleep(0)
    return [live, *await asyncio.get_running_loop().run_in_executor(None, rows.text)]
