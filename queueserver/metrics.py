"""Prometheus metrics of one server, read from its live state when scraped.

The data path only bumps plain counters (the queues' ``stats``, a connection's byte counts, and
:class:`CallStats`, one dict update and one bucket increment per call); everything else (queue
sizes, blocked seconds, connected clients, client reports) is read from the core when
``GET /metrics`` asks, by :class:`ServiceCollector`, a custom collector on a per-server
``CollectorRegistry``. Nothing here runs between scrapes.

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

import time
from bisect import bisect_left
from time import perf_counter
from typing import TYPE_CHECKING, Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from queueserver._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from queueserver.service import QueueService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Upper bounds of the call latency buckets, in seconds: from a pipelined small call (~100 us) to a
# dequeue that blocked for a while.
LATENCY_BUCKETS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

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


class ServiceCollector(Collector):
    """Reads a :class:`~queueserver.server.QueueService` at scrape time and yields its metric families."""

    def __init__(self, service: "QueueService") -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        svc = self.service
        yield from self._server(svc)
        yield from self._resources(svc)
        yield from self._reports(svc)

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

    # ----- queues, variables, accumulators
    def _resources(self, svc: "QueueService") -> Iterator[Metric]:
        from queueserver.core import ConditionalAccumulator, QueueBase, Variable

        qlabels = ["container", "name", "type"]
        q: dict[str, Any] = {key: GaugeMetricFamily(f"queueserver_queue_{key}", doc, labels=qlabels) for key, doc in (
            ("size", "Elements in the queue."),
            ("capacity", "The queue's capacity."),
            ("fraction_full", "size / capacity (TensorFlow's fraction_of_N_full)."),
            ("closed", "1 once the queue is closed."),
            ("waiting_enqueues", "Enqueue calls waiting for room now."),
            ("waiting_dequeues", "Dequeue calls waiting for elements now."),
        )}
        qc: dict[str, Any] = {key: CounterMetricFamily(f"queueserver_queue_{key}", doc, labels=qlabels) for key, doc in (
            ("enqueued_elements", "Elements enqueued."),
            ("dequeued_elements", "Elements delivered by dequeues."),
            ("returned_elements", "Delivered elements put back because their client went away unacknowledged."),
            ("enqueued_bytes", "Array bytes enqueued."),
            ("dequeued_bytes", "Array bytes delivered by dequeues."),
            ("enqueue_blocked_seconds", "Seconds enqueue calls spent waiting for room (consumers too slow)."),
            ("dequeue_blocked_seconds", "Seconds dequeue calls spent waiting for elements (input too slow)."),
        )}
        vlabels = ["container", "name"]
        v: dict[str, Any] = {
            "reads": CounterMetricFamily("queueserver_variable_reads", "Variable reads.", labels=vlabels),
            "updates": CounterMetricFamily("queueserver_variable_updates",
                                           "Variable updates (initialize, assign, assign_add, assign_sub).",
                                           labels=vlabels),
            "bytes": GaugeMetricFamily("queueserver_variable_bytes", "Size of the variable's value.", labels=vlabels),
            "read_bytes": CounterMetricFamily("queueserver_variable_read_bytes", "Bytes read from the variable.",
                                              labels=vlabels),
            "updated_bytes": CounterMetricFamily("queueserver_variable_updated_bytes",
                                                 "Bytes written to the variable.", labels=vlabels),
            "updated": GaugeMetricFamily("queueserver_variable_last_update_timestamp_seconds",
                                         "Unix time of the variable's last update.", labels=vlabels),
        }
        alabels = ["container", "name"]
        acc_n = GaugeMetricFamily("queueserver_accumulator_accumulated", "Gradients accumulated now.", labels=alabels)
        acc_step = GaugeMetricFamily("queueserver_accumulator_global_step", "The accumulator's global step.",
                                     labels=alabels)
        acc_grads = CounterMetricFamily("queueserver_accumulator_gradients", "Gradients by what became of them.",
                                        labels=alabels + ["outcome"])
        for container, name, res in svc.resources.items():
            if isinstance(res, QueueBase):
                labels = [container, name, res.type_name]
                size = res._store.size
                st = res.stats
                enq_blocked, deq_blocked = res.blocked_seconds()
                for key, value in (("size", size), ("capacity", res.capacity), ("fraction_full", size / res.capacity),
                                   ("closed", int(res.closed)), ("waiting_enqueues", len(res._enqueues)),
                                   ("waiting_dequeues", len(res._dequeues))):
                    q[key].add_metric(labels, value)
                for key, value in (("enqueued_elements", st["enqueued"]), ("dequeued_elements", st["dequeued"]),
                                   ("returned_elements", st["returned"]), ("enqueued_bytes", st["enqueued_bytes"]),
                                   ("dequeued_bytes", st["dequeued_bytes"]),
                                   ("enqueue_blocked_seconds", enq_blocked),
                                   ("dequeue_blocked_seconds", deq_blocked)):
                    qc[key].add_metric(labels, value)
            elif isinstance(res, Variable):
                labels = [container, name]
                nbytes = res.initial_value.nbytes  # fixed: a variable never changes dtype or shape
                v["reads"].add_metric(labels, res.stats["reads"])
                v["updates"].add_metric(labels, res.stats["updates"])
                v["bytes"].add_metric(labels, nbytes)
                v["read_bytes"].add_metric(labels, res.stats["reads"] * nbytes)
                v["updated_bytes"].add_metric(labels, res.stats["updates"] * nbytes)
                if res.updated_at is not None:
                    v["updated"].add_metric(labels, res.updated_at)
            elif isinstance(res, ConditionalAccumulator):
                labels = [container, name]
                acc_n.add_metric(labels, res.count)
                acc_step.add_metric(labels, res.global_step)
                for outcome, n in res.stats.items():
                    acc_grads.add_metric(labels + [outcome], n)
        yield from q.values()
        yield from qc.values()
        yield from v.values()
        yield from (acc_n, acc_step, acc_grads)

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


def render(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in Prometheus text format."""
    return generate_latest(registry)
