"""The server: one port, two protocols, one core.

A connection that starts with the data-plane preamble (see :mod:`queueserver.wire`) speaks framed
msgpack with raw array bodies; anything else is handed to aiohttp, which serves the plain HTTP
endpoints (``/healthz``, ``/status``, ``/metrics`` and the status page at ``/``; see
:mod:`queueserver.metrics` and ``queueserver/static/``). Every operation is a thin adapter over the core in
:mod:`queueserver.core`: no queue rule is written here.

Delivery is at least once: a dequeued batch is *held* for the connection that received it until
that client acknowledges it (its next dequeue from the same queue, an explicit ack, or a clean
goodbye). If the connection drops first, held batches go back to the front of their queues.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from queueserver import __version__
from queueserver.core import (
    MANY, ONE, UP_TO, Attempt, ConditionalAccumulator, QueueBase, ResourceManager, Variable,
)
from queueserver.core.specs import ComponentSpec
from queueserver import errors as _errors
from queueserver.errors import (
    CancelledError,
    InternalError,
    InvalidArgumentError,
    QueueServerError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from queueserver.cluster import ClusterSpec
from queueserver.logs import event
from queueserver.routing import Directory, Peers, Placement, check_device_name
from queueserver.wire import (
    COMPACT_DEQUEUE,
    COMPACT_ENQUEUE,
    COMPACT_MAX_HANDLES,
    COMPACT_REQUEST,
    DEFAULT_MAX_MESSAGE_BYTES,
    PREAMBLE,
    FrameReader,
    compact_layout,
    decode_arrays,
    decode_compact_acks,
    encode_compact_reply,
    encode_frame,
    encode_raw_frame,
    error_payload,
    route_fields,
    coalesce,
    set_nodelay,
)

if TYPE_CHECKING:
    from aiohttp import web
# aiohttp (a quarter of a second to import) is imported when a server starts: clients, which
# import this module for its event loop, never need it.

log = logging.getLogger("queueserver")

# A connection whose blocked enqueues hold more than this has further enqueues refused (with
# ResourceExhausted) until they drain, so a fast producer cannot grow the server's memory without
# bound; its dequeues, cancels and acks are still read, so it can never block itself.
PENDING_BYTES_LIMIT = 64 * 1024 * 1024
# A client's report older than this is dropped from status and metrics (the client stopped reporting).
REPORT_TTL_S = 60.0
STATIC_DIR = Path(__file__).with_name("static")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop where uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - the platform has no uvloop
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class QueueService:
    """The state of one server: its resources, its connections and its options.

    Args:
        token: a shared secret every client must present; ``None`` for none.
        max_message_bytes: the largest frame accepted (header plus body).
        cluster, job, index: this server's cluster and its task in it (none: a lone task).
        metrics: keep per-call statistics and serve ``/metrics`` (False: ``--no-metrics``; the
            queues' own counters, which status shows, are kept either way).
        report_ttl: seconds after which a client's last ``report()`` counts as stale and is dropped.
    """

    def __init__(self, *, token: str | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 cluster: ClusterSpec | None = None, job: str = "localhost", index: int = 0,
                 metrics: bool = True, report_ttl: float = REPORT_TTL_S) -> None:
        self.resources = ResourceManager()
        self.token = token or None
        self.max_message_bytes = max_message_bytes
        self.cluster = cluster
        self.placement = Placement(cluster, job, index)
        self.task = self.placement.task
        self.peers = Peers(self.placement, self.token, max_message_bytes)
        self.directory = Directory(self.placement, self.peers)
        self.connections: set[DataConnection] = set()
        self.pending_bytes_limit = PENDING_BYTES_LIMIT
        self.reading = 0                              # reads being handled right now (nested)
        self.unflushed: set[DataConnection] = set()   # connections with replies from those reads
        self.started = time.time()
        self.calls: dict[str, int] = {}
        self.report_ttl = report_ttl
        self.call_stats = self.metrics_registry = None
        if metrics:
            from queueserver.metrics import CallStats, make_registry

            self.call_stats = CallStats()
            self.metrics_registry = make_registry(self)
        self.stopping = False
        self._listener: asyncio.AbstractServer | None = None
        self._runner: web.AppRunner | None = None
        self.host = self.port = None

    # ----- lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None) -> None:
        """Listen on ``host:port`` (port 0 picks a free one); returns once accepting."""
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/healthz", self._http_health)
        app.router.add_get("/status", self._http_status)
        app.router.add_get("/metrics", self._http_metrics)
        app.router.add_get("/", self._http_page)
        app.router.add_static("/static/", STATIC_DIR, append_version=False)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        http_factory = self._runner.server
        loop = asyncio.get_running_loop()
        factory = lambda: _Sniffer(self, http_factory)  # noqa: E731
        if sock is not None:
            self._listener = await loop.create_server(factory, sock=sock)
        else:
            self._listener = await loop.create_server(factory, host, port, reuse_address=True)
        self.host, self.port = self._listener.sockets[0].getsockname()[:2]
        event(logging.INFO, self.task, "server_started", f"serving on {self.target}", address=self.target,
              token=self.token is not None, metrics=self.call_stats is not None, pid=os.getpid())

    @property
    def target(self) -> str:
        """The address clients connect to, as ``http://host:port``."""
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, tell every waiting caller the server is going away, and close."""
        if self.stopping:
            return
        self.stopping = True
        event(logging.INFO, self.task, "server_stopping", f"stopping ({len(self.connections)} connection(s) open)",
              connections=len(self.connections))
        if self._listener is not None:
            self._listener.close()
        error = UnavailableError(f"server {self.task} is shutting down")
        for _, _, res in list(self.resources.items()):
            if isinstance(res, QueueBase):
                res.cancel_all(error)
        for conn in list(self.connections):
            conn.close_after_flush()
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.abort()
        await self.peers.close()
        if self._runner is not None:
            await self._runner.cleanup()
        event(logging.INFO, self.task, "server_stopped", "stopped",
              uptime_s=round(time.time() - self.started, 1))

    # ----- status
    def status(self) -> dict:
        """Everything ``queueserver status`` and the status page show, as plain data.

        Besides the resources: ``clients`` (each connection, what it is blocked on, and its latest
        report), ``time`` (this server's clock, for computing rates and ages) and ``bytes_in`` /
        ``bytes_out`` when metrics are on.
        """
        queues, variables, accumulators = [], [], []
        for container, name, res in self.resources.items():
            entry = {"container": container, "name": name, **res.describe()}
            if isinstance(res, QueueBase):
                queues.append(entry)
            elif isinstance(res, ConditionalAccumulator):
                accumulators.append(entry)
            else:
                variables.append(entry)
        now = time.time()
        out = {
            "task": self.task, "version": __version__, "uptime_s": round(now - self.started, 1),
            "time": now, "connections": len(self.connections), "calls": dict(self.calls),
            "queues": queues, "variables": variables, "accumulators": accumulators,
            "clients": self.clients(), "metrics": self.call_stats is not None,
        }
        if self.call_stats is not None:
            out["bytes_in"] = self.call_stats.bytes_in_closed + sum(c.bytes_in for c in self.connections)
            out["bytes_out"] = self.call_stats.bytes_out_closed + sum(c.bytes_out for c in self.connections)
            out["forwarded"] = dict(self.call_stats.forwarded)
        return out

    def clients(self) -> list[dict]:
        """Every connection: who it is, how long it has been here, what it waits on, what it reported."""
        now, mono = time.time(), time.monotonic()
        out = []
        for conn in self.connections:
            blocked = []
            for attempt in conn.pending.values():
                if isinstance(attempt, Attempt) and not attempt.done:
                    blocked.append({"op": "enqueue" if attempt.is_enqueue else "dequeue", "queue": attempt.queue.name,
                                    "count": attempt.count,
                                    "for_s": round(mono - attempt.waiting_since, 3) if attempt.waiting_since else 0.0})
                elif isinstance(attempt, asyncio.Future):
                    blocked.append({"op": "take_grad", "queue": "", "count": 0, "for_s": 0.0})
            report = conn.fresh_report(now, self.report_ttl)
            out.append({"client": conn.client_name, "peer": conn.peer, "connected_s": round(mono - conn.connected_at, 1),
                        "blocked": blocked, "held": len(conn.held),
                        "report": None if report is None else {**report, "age_s": round(now - report["ts"], 2)}})
        out.sort(key=lambda c: (c["client"], c["peer"]))
        return out

    def live_reports(self) -> list[dict]:
        """The latest report of every connected client that reported within ``report_ttl`` seconds."""
        now = time.time()
        out = []
        for conn in self.connections:
            report = conn.fresh_report(now, self.report_ttl)
            if report is not None:
                out.append({"client": conn.client_name, **report})
        return out

    async def cluster_status(self) -> list[dict]:
        """Every task's status; a task that does not answer is listed as down, with why."""
        async def one(task: str) -> dict:
            if task == self.task:
                return {"up": True, **self.status()}
            try:
                peer = await self.peers.get(task)
                reply, _ = await peer.call({"o": "status"}, wait=5.0)
                return {"up": True, **reply["r"]}
            except QueueServerError as exc:
                return {"task": task, "up": False, "error": str(exc)}
        return list(await asyncio.gather(*(one(t) for t in self.placement.all_tasks())))

    def reset_local(self, containers: list[str]) -> int:
        """Free this task's resources in ``containers`` and forget their directory entries."""
        freed = self.resources.reset(containers)
        self.directory.forget(containers)
        event(logging.INFO, self.task, "containers_reset", f"containers {containers} reset ({freed} resource(s) freed)",
              containers=containers, freed=freed)
        return freed

    async def cluster_reset(self, containers: list[str]) -> tuple[int, list[str]]:
        """Reset ``containers`` on every task; returns (resources freed, tasks that did not answer)."""
        async def one(task: str) -> tuple[int, str | None]:
            if task == self.task:
                return self.reset_local(containers), None
            try:
                peer = await self.peers.get(task)
                reply, _ = await peer.call({"o": "reset", "cs": containers, "local": True}, wait=10.0)
                return reply["r"], None
            except QueueServerError as exc:
                return 0, f"{task}: {exc}"
        results = await asyncio.gather(*(one(t) for t in self.placement.all_tasks()))
        return sum(r for r, _ in results), [e for _, e in results if e]

    def placement_for(self, header: dict) -> tuple[str, str | None]:
        """Where a resource being created here lives: resolved by the routing step, or now."""
        if header.get("local") and isinstance(header.get("h"), str):
            return header["h"], header.get("warn")
        home, warning = self.placement.resolve(check_device_name(header.get("dev")), bool(header.get("soft")))
        if home != self.task:  # only reachable without a cluster: nothing else exists
            raise InvalidArgumentError(f"cannot place on {home} from {self.task}")
        return home, warning

    def _http_authorized(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        given = given or request.query.get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def _http_health(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response({"ok": True, "task": self.task})

    async def _http_status(self, request: web.Request) -> web.Response:
        """This task's status as JSON; with ``?cluster=1``, every task's too, under ``"cluster"``."""
        from aiohttp import web

        if not self._http_authorized(request):
            return _unauthorized()
        out = self.status()
        if request.query.get("cluster", "") not in ("", "0", "false"):
            out["cluster"] = await self.cluster_status() if self.cluster is not None else [{"up": True, **out}]
        return web.json_response(out)

    async def _http_metrics(self, request: web.Request) -> web.Response:
        """Prometheus text format, read from the live state now (see :mod:`queueserver.metrics`)."""
        from aiohttp import web

        if not self._http_authorized(request):
            return _unauthorized()
        if self.metrics_registry is None:
            return web.json_response({"error": "metrics are off on this server (it runs with --no-metrics)"},
                                     status=404)
        from queueserver.metrics import CONTENT_TYPE, render

        return web.Response(body=render(self.metrics_registry), headers={"Content-Type": CONTENT_TYPE})

    async def _http_page(self, request: web.Request) -> web.StreamResponse:
        """The status page (static: it holds no data; its script fetches ``/status?cluster=1``).

        A client that asks for JSON only gets the status JSON, as ``GET /`` answered before the page.
        """
        from aiohttp import web

        accept = request.headers.get("Accept", "")
        if "application/json" in accept and "text/html" not in accept:
            return await self._http_status(request)
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def _unauthorized() -> web.Response:
    from aiohttp import web

    return web.json_response({"error": "Unauthenticated: this server needs its token"}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="queueserver"'})


class _Sniffer(asyncio.Protocol):
    """Looks at a connection's first byte and hands it to the data plane or to aiohttp."""

    def __init__(self, service: QueueService, http_factory: Callable[[], asyncio.Protocol]) -> None:
        self.service = service
        self.http_factory = http_factory
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.buffer[:1] == b"\x00":
            if len(self.buffer) < len(PREAMBLE):
                return
            if self.buffer[: len(PREAMBLE)] != PREAMBLE:
                self.transport.close()  # a binary client of another protocol or version
                return
            proto: asyncio.BaseProtocol = DataConnection(self.service)
            rest = self.buffer[len(PREAMBLE):]
        else:
            proto, rest = self.http_factory(), self.buffer
        self.buffer = b""
        self.transport.set_protocol(proto)
        proto.connection_made(self.transport)
        if rest:
            if isinstance(proto, DataConnection):
                proto.reader.feed(rest)
                proto.flush()
            else:
                proto.data_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class DataConnection(asyncio.BufferedProtocol):
    """One client's data-plane connection: parses frames, runs operations, writes replies."""

    _delivery_ids = itertools.count(1)

    def __init__(self, service: QueueService) -> None:
        self.service = service
        self.reader = FrameReader(self._on_frame, self._on_bad_frame, self._on_fatal,
                                  max_message_bytes=service.max_message_bytes, on_compact=self._on_compact)
        self.transport: asyncio.Transport | None = None
        self.authenticated = service.token is None
        self.client_name = "?"
        self.out: list = []
        self.closing = False
        self.held: dict[int, tuple[QueueBase, list]] = {}
        self.pending: dict[int, Attempt] = {}
        self.pending_bytes = 0
        self.reading_paused = False
        self.writing_paused = False
        self.forwards: dict[int, asyncio.Task] = {}      # requests being routed to other tasks
        self.forwarded_held: dict[str, set[int]] = {}    # home task -> deliveries held there for us
        # Observability: plain attributes, read by status and /metrics; ``stats`` None = metrics off.
        self.stats = service.call_stats
        self.bytes_in = self.bytes_out = 0
        self.connected_at = time.monotonic()
        self.peer = "?"
        self.said_hello = self.said_bye = False
        self.report: dict | None = None                  # the client's latest report(): role, figures, ts
        self._last_queue: tuple | None = None            # ((container, name), queue) of the last call
        # Compact-frame handles this client bound: handle -> ((container, name), the element
        # layout the client expects or None, element bytes, the queue once found or None).
        self.handles: dict[int, tuple] = {}

    # ----- transport callbacks
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.service.connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        set_nodelay(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.get_buffer(sizehint)

    def fresh_report(self, now: float, ttl: float) -> dict | None:
        """The client's latest report, unless it is older than ``ttl`` seconds (then it is dropped)."""
        report = self.report
        if report is not None and now - report["ts"] > ttl:
            self.report = report = None  # the client stopped reporting: its figures no longer hold
        return report

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_in += nbytes
        svc = self.service
        svc.reading += 1
        svc.unflushed.add(self)
        try:
            self.reader.buffer_updated(nbytes)
        finally:
            svc.reading -= 1
            if not svc.reading:
                # Everything this read answered, on this connection or on others it woke (a
                # dequeue waiting elsewhere), goes out now: one write per connection.
                touched, svc.unflushed = svc.unflushed, set()
                for conn in touched:
                    conn.flush()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        svc = self.service
        svc.connections.discard(self)
        self.transport = None
        if self.stats is not None:
            self.stats.bytes_in_closed += self.bytes_in
            self.stats.bytes_out_closed += self.bytes_out
            self.bytes_in = self.bytes_out = 0
        for attempt in list(self.pending.values()):
            attempt.cancel()
        self.pending.clear()
        for task in list(self.forwards.values()):
            task.cancel()
        self._return_held(list(self.held))
        self._settle_forwarded("return")
        if self.said_hello:
            how = "said goodbye" if self.said_bye else f"connection lost ({exc})" if exc else "connection closed"
            event(logging.INFO, svc.task, "client_disconnected", f"client {self.client_name} disconnected: {how}",
                  client=self.client_name, peer=self.peer, clean=self.said_bye, error=None if exc is None else str(exc),
                  connected_s=round(time.monotonic() - self.connected_at, 3))

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport is None:
            return
        should_pause = self.writing_paused
        if should_pause and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True
        elif not should_pause and self.reading_paused:
            self.transport.resume_reading()
            self.reading_paused = False

    # ----- output
    def send(self, header: dict, arrays=()) -> None:
        """Queue a reply; it goes out with the others at the end of this turn of the loop."""
        if self.transport is None:
            return
        self._queue_out(encode_frame(header, arrays))

    def send_frame(self, frame: bytes) -> None:
        """Queue one already-encoded frame (a compact reply)."""
        if self.transport is not None:
            self._queue_out([frame])

    def _queue_out(self, frames: list) -> None:
        """Replies made while the server handles a read go out together when it ends; a reply made
        outside one (a timeout, a forwarded reply) goes out at once. No extra turn of the loop."""
        self.out.extend(frames)
        if self.service.reading:
            self.service.unflushed.add(self)
        else:
            self.flush()

    def flush(self) -> None:
        """Write every queued reply in one call."""
        if self.out and self.transport is not None:
            out, self.out = self.out, []
            if self.stats is not None:
                self.bytes_out += sum(map(len, out))  # byte views and bytes: len is their size
            self.transport.writelines(coalesce(out))
        if self.closing and self.transport is not None and not self.pending:
            self.transport.close()

    def close_after_flush(self) -> None:
        """Close once every reply is written."""
        self.closing = True
        self.flush()

    def abort(self) -> None:
        """Drop the connection now."""
        if self.transport is not None:
            self.transport.abort()

    # ----- frames
    def _on_bad_frame(self, error: QueueServerError, header: Any) -> None:
        self.send({"i": 0, "e": error_payload(error)})

    def _on_fatal(self, error: QueueServerError) -> None:
        event(logging.WARNING, self.service.task, "protocol_error",
              f"closing the connection of {self.client_name} ({self.peer}): {error}",
              client=self.client_name, peer=self.peer, error=str(error))
        self.send({"i": 0, "e": error_payload(error)})
        self.flush()
        if self.transport is not None:
            # Nothing more will be parsed: stop reading and close once the error is written,
            # whatever is pending (connection_lost withdraws it).
            self.transport.pause_reading()
            self.transport.close()

    def _on_frame(self, header: dict, body: Any) -> None:
        stats = self.stats
        t0 = perf_counter() if stats is not None else 0.0
        rid = header.get("i", 0)
        op = header.get("o")
        svc = self.service
        # The usual request passes one test; anything else is looked at closely, and refused with
        # an error that says what is wrong (a "hello" before the token is accepted goes on).
        if not (type(op) is str and type(rid) is int and op in _OPS and self.authenticated and not svc.stopping):
            error = self._refusal(rid, op)
            if error is not None:
                key = op if isinstance(op, str) and op in _OPS else "?"
                svc.calls[key] = svc.calls.get(key, 0) + 1
                self.send({"i": rid, "e": error_payload(error)})
                if stats is not None:
                    stats.observe(key, type(error).__name__, t0)
                return
        svc.calls[op] = svc.calls.get(op, 0) + 1
        if svc.cluster is not None and not header.get("local") and _needs_routing(op, header, svc.task):
            task = asyncio.ensure_future(self._route(rid, op, header, body, t0))
            self.forwards[rid] = task
            task.add_done_callback(lambda _: self.forwards.pop(rid, None))
            return
        self._dispatch_local(rid, op, header, body, t0)

    def _refusal(self, rid: Any, op: Any) -> QueueServerError | None:
        """Why a request cannot run, or None when it can."""
        if not isinstance(rid, int):
            return InvalidArgumentError("request id must be an integer")
        if not isinstance(op, str) or op not in _OPS:
            return UnimplementedError(f"unknown operation {op!r}")
        if not self.authenticated and op != "hello":
            return UnauthenticatedError("this server needs a token: connect with token=... or QUEUESERVER_TOKEN")
        if self.service.stopping:
            return UnavailableError(f"server {self.service.task} is shutting down")
        return None

    def _dispatch_local(self, rid: int, op: str, header: dict, body: Any, t0: float = 0.0) -> None:
        """Run an operation on this task's own resources and reply; ``t0`` is its arrival (perf_counter)."""
        stats = self.stats
        try:
            outcome = _OPS[op](self, header, body)
        except Exception as exc:
            self._fail(rid, op, exc, t0)
            return
        if outcome is _NO_REPLY:
            if stats is not None:
                stats.observe(op, "ok", t0)
        elif isinstance(outcome, Attempt):
            self._track(rid, op, outcome, header, len(body), t0)
        elif isinstance(outcome, asyncio.Future):
            self._track_future(rid, op, outcome, t0)
        else:
            result, arrays = outcome if isinstance(outcome, tuple) else (outcome, ())
            result["i"] = rid
            self.send(result, arrays)
            if stats is not None:
                stats.observe(op, "ok", t0)

    def _fail(self, rid: int, op: str, exc: Exception, t0: float, doing: str = "in") -> None:
        """Answer a call that raised: with its error, or, for a bug, with InternalError (logged,
        so the server keeps serving everyone else); and count the outcome. Call it from the
        ``except`` block, where the traceback is."""
        if isinstance(exc, QueueServerError):
            error = exc
        else:
            event(logging.ERROR, self.service.task, "internal_error", f"internal error {doing} {op!r}: {exc!r}",
                  exc_info=True, op=op, client=self.client_name)
            error = InternalError(f"{type(exc).__name__}: {exc}")
        self.send({"i": rid, "e": error_payload(error)})
        if self.stats is not None:
            self.stats.observe(op, type(error).__name__, t0)

    # ----- compact frames: one-element enqueue and dequeue without msgpack (see queueserver.wire)
    def _on_compact(self, body: bytearray) -> None:
        """Run a compact request; the queue rules are the core's, exactly as for a msgpack request."""
        stats = self.stats
        t0 = perf_counter() if stats is not None else 0.0
        svc = self.service
        rid, op = 0, "?"
        try:
            if len(body) < COMPACT_REQUEST.size:
                svc.calls[op] = svc.calls.get(op, 0) + 1
                raise InvalidArgumentError(
                    f"malformed compact frame: {len(body)} bytes, a request needs {COMPACT_REQUEST.size}")
            code, n_acks, handle, rid, timeout = COMPACT_REQUEST.unpack_from(body)
            op = "enqueue" if code == COMPACT_ENQUEUE else "dequeue" if code == COMPACT_DEQUEUE else "?"
            svc.calls[op] = svc.calls.get(op, 0) + 1
            if op == "?":
                raise UnimplementedError(f"unknown compact operation {code}")
            if not self.authenticated or svc.stopping:
                raise self._refusal(rid, op)
            acks, offset = decode_compact_acks(body, n_acks)
            if timeout != timeout:  # NaN: wait for ever
                timeout = None
            q, layout, size = self._bound(handle)
            if op == "enqueue":
                if acks:
                    raise InvalidArgumentError("a compact enqueue carries no acknowledgements")
                element = self._compact_element(q, layout, size, body, offset)
                self._check_pending_bytes()
                attempt = q.enqueue(element, timeout=timeout, validated=True)
            else:
                if offset != len(body):
                    raise InvalidArgumentError(f"malformed compact dequeue: {len(body) - offset} bytes after its header")
                self._ack(acks)
                attempt = q.dequeue(timeout=timeout)
        except Exception as exc:
            self._fail(rid, op, exc, t0, "in compact")
            return
        self._track(rid, op, attempt, None, len(body), t0, compact=True)

    def _bound(self, handle: int) -> tuple[QueueBase, tuple, int]:
        """``(queue, layout, element bytes)`` of a compact handle. The queue is looked up on first
        use and again after a reset destroyed it, and must have the layout the client expects."""
        entry = self.handles.get(handle)
        if entry is None:
            raise InvalidArgumentError(f"no queue is bound to compact handle {handle} on this connection")
        key, layout, size, q = entry
        if q is None or q.destroyed:
            if layout is None:
                raise InvalidArgumentError(f"compact handle {handle} was bound without a fixed-size element spec")
            q = self.service.resources.get(key[0], key[1], QueueBase)
            if compact_layout(q.spec) != layout:
                raise InvalidArgumentError(f"{q.type_name} '{q.name}' holds {q.spec.describe()}, not the elements this"
                                           " client expects (created again with another spec?): open it again")
            self.handles[handle] = (key, layout, size, q)
        return q, layout, size

    @staticmethod
    def _compact_element(q: QueueBase, layout: tuple, size: int, body: bytearray, offset: int) -> tuple:
        """One element, cut from a compact enqueue's bytes, with its leading count dimension."""
        if len(body) - offset != size:
            raise InvalidArgumentError(f"compact enqueue into {q.type_name} '{q.name}' carries {len(body) - offset}"
                                       f" bytes; its elements are {size} bytes")
        out = []
        for dtype, shape, nbytes in layout:
            out.append(np.ndarray((1, *shape), dtype, body, offset) if nbytes else np.empty((1, *shape), dtype))
            offset += nbytes
        return tuple(out)

    def _check_pending_bytes(self) -> None:
        limit = self.service.pending_bytes_limit
        if self.pending_bytes > limit:
            raise ResourceExhaustedError(
                f"{self.pending_bytes} bytes of this connection's enqueues already wait for room (limit {limit});"
                " wait for them to complete, or enqueue from another connection")

    # ----- cluster routing
    async def _route(self, rid: int, op: str, header: dict, body: Any, t0: float = 0.0) -> None:
        """Find the task a request belongs to; run it here or forward it there."""
        svc = self.service
        stats = self.stats
        try:
            if op == "reset":
                containers = header.get("cs")
                if not isinstance(containers, list) or not all(isinstance(c, str) for c in containers):
                    raise InvalidArgumentError("reset needs a list of container names")
                freed, unreachable = await svc.cluster_reset(containers)
                self.send({"i": rid, "r": freed, "unreachable": unreachable})
                if stats is not None:
                    stats.observe(op, "ok", t0)
                return
            if op == "status":
                self.send({"i": rid, "r": svc.status(), "cluster": await svc.cluster_status()})
                if stats is not None:
                    stats.observe(op, "ok", t0)
                return
            container, name = _str(header, "c", ""), _str(header, "n")
            if op in _CREATE_OPS:
                wanted, warning = svc.placement.resolve(check_device_name(header.get("dev")), bool(header.get("soft")))
                home = await svc.directory.register(container, name, wanted)
                if home != wanted:
                    warning = None  # it already existed: where it lives is not a placement decision
                header = {**header, "h": home, "local": True, "warn": warning}
            else:
                home = header.get("h") if isinstance(header.get("h"), str) else await svc.directory.lookup(container, name)
                header = {**header, "h": home, "local": True}
            if home == svc.task:
                self._dispatch_local(rid, op, header, body, t0)
            else:
                await self._forward(rid, op, home, header, body, t0)
        except asyncio.CancelledError:
            # Withdrawn by the client (or its connection closed): answer, so it forgets the call.
            self.send({"i": rid, "e": error_payload(CancelledError("the call was cancelled by its caller"))})
            raise
        except Exception as exc:
            self._fail(rid, op, exc, t0, "routing")

    async def _forward(self, rid: int, op: str, home: str, header: dict, body: Any, t0: float = 0.0) -> None:
        stats = self.stats
        if stats is not None:
            stats.forward(home)
        peer = await self.service.peers.get(home)
        forwarded = {k: v for k, v in header.items() if k != "i"}
        t = header.get("t")
        reply, reply_body = await peer.call_raw(forwarded, body, wait=None if t is None else t + 30.0)
        held = self.forwarded_held.setdefault(home, set())
        for d in header.get("k") or ():
            held.discard(d)
        if op == "dequeue" and "d" in reply:
            if self.transport is None:  # our client left while the batch travelled: give it back
                asyncio.ensure_future(peer.call({"o": "return", "k": [reply["d"]], **route_fields(header)}))
                return
            held.add(reply["d"])
        reply["i"] = rid
        self.send_raw(reply, reply_body)
        if stats is not None:
            stats.observe(op, "ok" if "e" not in reply else _ERROR_NAMES.get(reply["e"][0], "QueueServerError"), t0)

    def _settle_forwarded(self, action: str) -> None:
        """Acknowledge (clean goodbye) or return (lost connection) deliveries held on other tasks."""
        pending, self.forwarded_held = self.forwarded_held, {}
        for home, ids in pending.items():
            if ids:
                asyncio.ensure_future(self._settle_one(home, action, sorted(ids)))

    async def _settle_one(self, home: str, action: str, ids: list) -> None:
        try:
            peer = await self.service.peers.get(home)
            await peer.call({"o": action, "k": ids, "local": True}, wait=10.0)
        except QueueServerError as exc:  # the home is gone too: it returns them itself on our disconnect
            event(logging.WARNING, self.service.task, "settle_failed",
                  f"could not {action} deliveries {ids} on {home}: {exc}", action=action, home=home, error=str(exc))

    def send_raw(self, header: dict, body: Any) -> None:
        """Send a reply whose arrays are already encoded (a forwarded reply)."""
        if self.transport is None:
            return
        self._queue_out(encode_raw_frame(header, body))

    def _track(self, rid: int, op: str, attempt: Attempt, header: dict | None, nbytes: int, t0: float = 0.0,
               compact: bool = False) -> None:
        stats = self.stats
        if attempt.done:
            self._reply_attempt(rid, attempt, compact)
            if stats is not None:
                stats.observe(op, "ok" if attempt.error is None else type(attempt.error).__name__, t0)
            return
        self.pending[rid] = attempt
        is_enqueue = attempt.is_enqueue
        if is_enqueue:
            self.pending_bytes += nbytes
            self._update_reading()

        def done(att: Attempt) -> None:
            self.pending.pop(rid, None)
            if is_enqueue:
                self.pending_bytes -= nbytes
                self._update_reading()
            self._reply_attempt(rid, att, compact)
            if stats is not None:
                stats.observe(op, "ok" if att.error is None else type(att.error).__name__, t0)
            if self.closing and not self.pending:
                self.flush()

        attempt.add_done_callback(done)

    def _track_future(self, rid: int, op: str, fut: asyncio.Future, t0: float = 0.0) -> None:
        """Reply when a core future (an accumulator's take) resolves; cancel it if we go away."""
        stats = self.stats

        def done(f: asyncio.Future) -> None:
            self.pending.pop(rid, None)
            if f.cancelled():
                if stats is not None:
                    stats.observe(op, "CancelledError", t0)
                return
            exc = f.exception()
            if stats is not None:
                stats.observe(op, "ok" if exc is None else type(exc).__name__, t0)
            if isinstance(exc, QueueServerError):
                self.send({"i": rid, "e": error_payload(exc)})
            elif exc is not None:
                self.send({"i": rid, "e": error_payload(InternalError(f"{type(exc).__name__}: {exc}"))})
            else:
                self.send({"i": rid}, [f.result()])
            if self.closing and not self.pending:
                self.flush()

        if fut.done():
            done(fut)
        else:
            self.pending[rid] = fut
            fut.add_done_callback(done)

    def _reply_attempt(self, rid: int, attempt: Attempt, compact: bool = False) -> None:
        try:
            if attempt.error is not None:
                self.send({"i": rid, "e": error_payload(attempt.error)})
            elif attempt.is_enqueue:
                if compact:
                    self.send_frame(encode_compact_reply(COMPACT_ENQUEUE, rid, 0))
                else:
                    self.send({"i": rid})
            elif self.transport is None:
                # The client went away while the batch was on its way: put it straight back.
                attempt.queue.return_elements(attempt.taken)
            else:
                self._deliver(rid, attempt, compact)
        except Exception as exc:  # a bug: report it to this caller, keep serving everyone else
            self._fail_reply(rid, exc)

    def _deliver(self, rid: int, attempt: Attempt, compact: bool) -> None:
        """Send a finished dequeue's batch and hold it until acknowledged. The reply is built first:
        a batch whose reply cannot be built (a padded batch too large to allocate, any failure while
        assembling) goes back to the front of its queue, in order, and the caller gets the error."""
        delivery = next(self._delivery_ids)
        try:
            if compact:
                # One element is taken as one batch of one: its arrays' bytes are the
                # element's, without assembling the result arrays.
                element = attempt.taken[0] if len(attempt.taken) == 1 else attempt.result
                payload = element[0].tobytes() if len(element) == 1 else b"".join([c.tobytes() for c in element])
                frames = [encode_compact_reply(COMPACT_DEQUEUE, rid, delivery, payload)]
            else:
                frames = encode_frame({"i": rid, "d": delivery}, attempt.result)
        except Exception as exc:
            attempt.queue.return_elements(attempt.taken)
            self._fail_reply(rid, exc)
            return
        self.held[delivery] = (attempt.queue, attempt.taken)
        self._queue_out(frames)

    def _fail_reply(self, rid: int, exc: Exception) -> None:
        if not isinstance(exc, QueueServerError):
            event(logging.ERROR, self.service.task, "internal_error", f"internal error replying to request {rid}",
                  exc_info=True, client=self.client_name)  # called in an except block
            exc = InternalError(f"{type(exc).__name__}: {exc}")
        self.send({"i": rid, "e": error_payload(exc)})

    def _ack(self, ids: Any) -> None:
        if not ids:
            return
        if not isinstance(ids, list):
            raise InvalidArgumentError("ack ids must be a list")
        for d in ids:
            self.held.pop(d, None)

    def _return_held(self, ids: list) -> None:
        by_queue: dict[int, tuple[QueueBase, list]] = {}
        for d in sorted(ids):
            entry = self.held.pop(d, None)
            if entry is not None:
                queue, batches = entry
                by_queue.setdefault(id(queue), (queue, []))[1].extend(batches)
        for queue, batches in by_queue.values():
            queue.return_elements(batches)

    # ----- helpers for handlers
    def queue(self, header: dict) -> QueueBase:
        # Calls on one connection mostly name one queue: keep the last one found. A reset destroys
        # the queue object, so a destroyed one is looked up again (and then not found, or found new).
        key = (header.get("c", ""), header.get("n"))
        last = self._last_queue
        if last is not None and last[0] == key and not last[1].destroyed:
            return last[1]
        q = self.service.resources.get(_str(header, "c", ""), _str(header, "n"), QueueBase)
        self._last_queue = (key, q)
        return q

    def variable(self, header: dict) -> Variable:
        return self.service.resources.get(_str(header, "c", ""), _str(header, "n"), Variable)

    def accumulator(self, header: dict) -> ConditionalAccumulator:
        return self.service.resources.get(_str(header, "c", ""), _str(header, "n"), ConditionalAccumulator)


# Error class names by wire code, for the outcome label of forwarded calls (their error stays encoded).
_ERROR_NAMES = {cls.code: cls.__name__ for cls in (getattr(_errors, n) for n in _errors.__all__)
                if isinstance(cls, type) and issubclass(cls, QueueServerError) and cls is not QueueServerError}

_CREATE_OPS = frozenset({"queue", "variable", "accumulator"})
_RESOURCE_OPS = frozenset({"enqueue", "dequeue", "size", "is_closed", "close", "var", "acc", "spec", "ack", "return"})


def _needs_routing(op: str, header: dict, task: str) -> bool:
    if op in _CREATE_OPS or op == "reset":
        return True
    if op == "status":
        return bool(header.get("cluster"))
    if op in _RESOURCE_OPS:
        if op in ("ack", "return") and "n" not in header:
            return False
        return header.get("h") != task
    return False


def _str(header: dict, key: str, default: str | None = None) -> str:
    value = header.get(key, default)
    if not isinstance(value, str):
        raise InvalidArgumentError(f"field {key!r} must be a string")
    return value


def _timeout(header: dict) -> Any:
    """The call's timeout as sent; the core checks it (``check_timeout``) before anything changes."""
    return header.get("t")


# ----- operations: (connection, header, body) -> reply dict | (reply, arrays) | Attempt
def _op_hello(conn: DataConnection, h: dict, body) -> dict:
    token = conn.service.token
    if token is not None:
        given = h.get("token") or ""
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
            event(logging.WARNING, conn.service.task, "auth_failed",
                  f"rejected a client from {conn.peer}: wrong or missing token", peer=conn.peer,
                  client=str(h.get("client", "?"))[:200])
            raise UnauthenticatedError("wrong or missing token for this server")
    conn.authenticated = True
    conn.client_name = str(h.get("client", "?"))[:200]
    if not conn.said_hello:
        conn.said_hello = True
        event(logging.INFO, conn.service.task, "client_connected", f"client {conn.client_name} connected from {conn.peer}",
              client=conn.client_name, peer=conn.peer)
    cluster = conn.service.cluster
    return {"version": __version__, "task": conn.service.task, "max_message_bytes": conn.service.max_message_bytes,
            "compact": 1, "byteorder": sys.byteorder,
            "cluster": None if cluster is None else cluster.as_dict()}


def _op_queue(conn: DataConnection, h: dict, body) -> dict:
    home, warning = conn.service.placement_for(h)
    spec = h.get("spec")
    if not isinstance(spec, dict) or "dtypes" not in spec:
        raise InvalidArgumentError("queue spec must give dtypes")
    capacity = h.get("cap")
    container, name = _str(h, "c", ""), _str(h, "n")
    existed = name in conn.service.resources.containers.get(container, {})
    q = conn.service.resources.queue(
        _str(h, "kind"), _str(h, "n"), container=_str(h, "c", ""), capacity=capacity,
        dtypes=spec["dtypes"], shapes=spec.get("shapes"), names=spec.get("names"),
        min_after_dequeue=h.get("mad", 0) or 0, seed=h.get("seed"))
    if not existed:
        event(logging.INFO, conn.service.task, "queue_created",
              f"{q.type_name} {q.name} created by {conn.client_name} (capacity {q.capacity}, {q.spec.describe()})",
              queue=q.name, type=q.type_name, capacity=q.capacity, spec=q.spec.describe(), client=conn.client_name)
    return {"spec": q.spec.to_wire(), "type": q.type_name, "home": home, "warn": warning}


def _op_enqueue(conn: DataConnection, h: dict, body) -> Attempt:
    conn._check_pending_bytes()
    q = conn.queue(h)
    arrays = decode_arrays(h.get("a", []), body)
    return q.enqueue(arrays, many=bool(h.get("m")), timeout=_timeout(h))


def _op_dequeue(conn: DataConnection, h: dict, body) -> Attempt:
    conn._ack(h.get("k"))
    q = conn.queue(h)
    mode = h.get("md", ONE)
    if mode not in (ONE, MANY, UP_TO):
        raise InvalidArgumentError(f"unknown dequeue mode {mode!r}")
    n = h.get("nn")
    if n is not None and not isinstance(n, int):
        raise InvalidArgumentError("dequeue count must be an integer")
    return q.dequeue(n, mode=mode, timeout=_timeout(h))


_NO_REPLY = object()  # an operation that is answered by nothing (bind)


def _op_bind(conn: DataConnection, h: dict, body) -> object:
    """Bind a client-chosen handle to a queue name and the element layout the client expects, for
    compact frames. No reply: the client sends its first compact call right behind it, and that
    call (like every later one) fails if the queue is missing or holds other elements."""
    handle = h.get("fh")
    if type(handle) is not int or not 0 < handle < 2 ** 32:
        raise InvalidArgumentError(f"bind needs a handle number between 1 and 2**32-1, got {handle!r}")
    if handle not in conn.handles and len(conn.handles) >= COMPACT_MAX_HANDLES:
        raise ResourceExhaustedError(f"this connection already bound {COMPACT_MAX_HANDLES} compact handles")
    key = (_str(h, "c", ""), _str(h, "n"))
    try:
        layout = compact_layout(ComponentSpec.from_wire(h["spec"]))
    except (QueueServerError, KeyError, TypeError, ValueError, AttributeError):
        layout = None  # every call on the handle then says so
    conn.handles[handle] = (key, layout, 0 if layout is None else sum(nb for _, _, nb in layout), None)
    return _NO_REPLY


def _op_ack(conn: DataConnection, h: dict, body) -> dict:
    conn._ack(h.get("k"))
    return {}


def _op_return(conn: DataConnection, h: dict, body) -> dict:
    ids = h.get("k") or []
    if not isinstance(ids, list):
        raise InvalidArgumentError("return ids must be a list")
    conn._return_held(ids)
    return {}


def _op_cancel(conn: DataConnection, h: dict, body) -> dict:
    pending = conn.pending.get(h.get("r")) or conn.forwards.get(h.get("r"))
    if pending is not None:
        pending.cancel()
    return {}


def _op_size(conn: DataConnection, h: dict, body) -> dict:
    return {"r": conn.queue(h).size()}


def _op_is_closed(conn: DataConnection, h: dict, body) -> dict:
    return {"r": conn.queue(h).is_closed()}


def _op_close(conn: DataConnection, h: dict, body) -> dict:
    q = conn.queue(h)
    q.close(cancel_pending_enqueues=bool(h.get("x")))
    event(logging.INFO, conn.service.task, "queue_closed", f"queue {q.name} closed by {conn.client_name}",
          queue=q.name, client=conn.client_name, size=q._store.size, cancel_pending_enqueues=bool(h.get("x")))
    return {}


def _op_variable(conn: DataConnection, h: dict, body) -> dict:
    home, warning = conn.service.placement_for(h)
    arrays = decode_arrays(h.get("a", []), body)
    if len(arrays) != 1:
        raise InvalidArgumentError("variable needs exactly one initial value")
    container, name = _str(h, "c", ""), _str(h, "n")
    existed = name in conn.service.resources.containers.get(container, {})
    v = conn.service.resources.variable(name, arrays[0], container=container, dtype=h.get("dtype"))
    if not existed:
        event(logging.INFO, conn.service.task, "variable_created", f"variable {v.name} created by {conn.client_name}",
              variable=v.name, dtype=str(v.dtype), shape=list(v.shape), client=conn.client_name)
    return {"dtype": v.dtype.str, "shape": list(v.shape), "init": v.is_initialized(), "home": home, "warn": warning}


def _op_var(conn: DataConnection, h: dict, body):
    v = conn.variable(h)
    action = h.get("v")
    if action == "is_initialized":
        if v.destroyed:
            v._check()
        return {"r": v.is_initialized()}
    arrays = decode_arrays(h.get("a", []), body)
    if action == "initialize":
        value = v.initialize()
    elif action == "read":
        value = v.read()
    elif action in ("assign", "assign_add", "assign_sub"):
        if len(arrays) != 1:
            raise InvalidArgumentError(f"{action} needs one value")
        value = getattr(v, action)(arrays[0], h.get("wd"))  # "wd": the marked wire dtype, if any
    else:
        raise UnimplementedError(f"unknown variable operation {action!r}")
    return {}, [value]


def _op_accumulator(conn: DataConnection, h: dict, body) -> dict:
    home, warning = conn.service.placement_for(h)
    shape = h.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidArgumentError("an accumulator needs a fully defined shape")
    container, name = _str(h, "c", ""), _str(h, "n")
    existed = name in conn.service.resources.containers.get(container, {})
    acc = conn.service.resources.accumulator(name, shape, dtype=h.get("dtype", "float32"), container=container)
    if not existed:
        event(logging.INFO, conn.service.task, "accumulator_created",
              f"accumulator {acc.name} created by {conn.client_name}", accumulator=acc.name, client=conn.client_name)
    return {"dtype": acc.dtype.str, "shape": list(acc.shape), "home": home, "warn": warning}


def _op_acc(conn: DataConnection, h: dict, body):
    acc = conn.accumulator(h)
    action = h.get("v")
    if action == "apply":
        arrays = decode_arrays(h.get("a", []), body)
        step = h.get("step")
        if len(arrays) != 1 or not isinstance(step, int):
            raise InvalidArgumentError("apply_grad needs one gradient and an integer local_step")
        return {"r": acc.apply_grad(arrays[0], step, h.get("wd"))}
    if action == "take":
        n = h.get("nn")
        if not isinstance(n, int):
            raise InvalidArgumentError("take_grad needs an integer num_required")
        return acc.take_grad(n, timeout=_timeout(h))
    if action == "set_step":
        step = h.get("step")
        if not isinstance(step, int):
            raise InvalidArgumentError("set_global_step needs an integer step")
        acc.set_global_step(step)
        return {}
    if action == "num":
        return {"r": acc.num_accumulated(), "step": acc.global_step}
    raise UnimplementedError(f"unknown accumulator operation {action!r}")


def _op_reset(conn: DataConnection, h: dict, body) -> dict:
    containers = h.get("cs")
    if not isinstance(containers, list) or not all(isinstance(c, str) for c in containers):
        raise InvalidArgumentError("reset needs a list of container names")
    return {"r": conn.service.reset_local(containers), "unreachable": []}


def _op_status(conn: DataConnection, h: dict, body) -> dict:
    return {"r": conn.service.status()}


def _op_spec(conn: DataConnection, h: dict, body) -> dict:
    res = conn.service.resources.get(_str(h, "c", ""), _str(h, "n"))
    home = conn.service.task
    if isinstance(res, QueueBase):
        return {"kind": "queue", "type": res.type_name, "spec": res.spec.to_wire(), "cap": res.capacity, "home": home}
    return {"kind": "variable", "dtype": res.dtype.str, "shape": list(res.shape), "home": home}


def _op_bye(conn: DataConnection, h: dict, body) -> dict:
    conn.said_bye = True
    conn.held.clear()
    conn._settle_forwarded("ack")
    conn.close_after_flush()
    return {}


def _op_ping(conn: DataConnection, h: dict, body) -> dict:
    return {}


_MAX_REPORT_FIGURES = 64


def _op_report(conn: DataConnection, h: dict, body) -> dict:
    """Keep a client's latest figures about itself (role, e.g. "trainer", and name -> number)."""
    role = _str(h, "role")[:100]
    figures = h.get("fig")
    if not isinstance(figures, dict) or len(figures) > _MAX_REPORT_FIGURES:
        raise InvalidArgumentError(f"report figures must be a dict of at most {_MAX_REPORT_FIGURES} numbers")
    clean: dict[str, float] = {}
    for key, value in figures.items():
        if not isinstance(key, str) or not key or len(key) > 100:
            raise InvalidArgumentError("report figure names must be non-empty strings of at most 100 characters")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
                float("inf"), float("-inf")):
            raise InvalidArgumentError(f"report figure {key!r} must be a finite number, got {value!r}")
        clean[key] = value
    conn.report = {"role": role, "figures": clean, "ts": time.time()}
    return {}


def _op_dir(conn: DataConnection, h: dict, body) -> dict:
    directory = conn.service.directory
    container, name = _str(h, "c", ""), _str(h, "n")
    if h.get("v") == "register":
        return {"r": directory.local_register(container, name, _str(h, "home"))}
    if h.get("v") == "lookup":
        return {"r": directory.local_lookup(container, name)}
    raise UnimplementedError(f"unknown directory operation {h.get('v')!r}")


_OPS: dict[str, Callable] = {
    "hello": _op_hello, "queue": _op_queue, "enqueue": _op_enqueue, "dequeue": _op_dequeue,
    "ack": _op_ack, "return": _op_return, "cancel": _op_cancel, "size": _op_size,
    "is_closed": _op_is_closed, "close": _op_close, "variable": _op_variable, "var": _op_var,
    "accumulator": _op_accumulator, "acc": _op_acc, "reset": _op_reset, "status": _op_status, "spec": _op_spec, "bye": _op_bye, "ping": _op_ping,
    "dir": _op_dir, "report": _op_report, "bind": _op_bind,
}


class Server:
    """A queue server running in a background thread of this process.

    ``Server.create_local_server()`` is the seed's first notebook cell: an embedded server on a free
    loopback port. A cluster task (``Server(cluster, job_name="ps", task_index=0)``) binds the address
    its ClusterSpec gives it.

    Args:
        cluster: a ClusterSpec (or its dict) when this server is one task of a cluster.
        job_name: this task's job in ``cluster``.
        task_index: this task's index in its job.
        host: address to bind when no cluster is given (loopback by default: nothing is exposed
            unless asked for).
        port: port to bind when no cluster is given; 0 picks a free one.
        token: shared secret every client must present (default: ``QUEUESERVER_TOKEN``, else none).
        max_message_bytes: largest message accepted.
        metrics: keep per-call statistics and serve ``/metrics`` (see :class:`QueueService`).
        start: start serving now (as ``tf.train.Server`` does).

    Example:
        >>> server = Server.create_local_server()
        >>> server.target  # doctest: +SKIP
        'http://127.0.0.1:40123'
        >>> server.stop()
    """

    def __init__(self, cluster: Any = None, job_name: str | None = None, task_index: int = 0, *,
                 host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, metrics: bool = True,
                 start: bool = True) -> None:
        job, index = "localhost", 0
        if cluster is not None:
            spec = cluster if isinstance(cluster, ClusterSpec) else ClusterSpec(cluster)
            if job_name is None:
                raise InvalidArgumentError("a cluster server needs job_name (and task_index)")
            address = spec.task_address(job_name, task_index)
            host, _, port_s = address.rpartition(":")
            host, port = host.strip("[]"), int(port_s)
            job, index = job_name, task_index
            self.cluster_spec: ClusterSpec | None = spec
        else:
            self.cluster_spec = None
        if token is None:
            token = os.environ.get("QUEUESERVER_TOKEN") or None
        self.service = QueueService(token=token, max_message_bytes=max_message_bytes,
                                    cluster=self.cluster_spec, job=job, index=index, metrics=metrics)
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        if start:
            self.start()

    @classmethod
    def create_local_server(cls, **options: Any) -> "Server":
        """Start an embedded server on a free loopback port, in a background thread."""
        return cls(host="127.0.0.1", port=0, **options)

    @property
    def target(self) -> str:
        """The address to give ``connect()``, e.g. ``http://127.0.0.1:40123``."""
        if self._thread is None:
            raise UnavailableError("the server is not started: call start() first")
        return self.service.target

    def start(self) -> None:
        """Start serving in a background thread; returns once the port accepts connections."""
        if self._thread is not None:
            return
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.service.start(self._host, self._port))
            except BaseException as exc:  # report bind errors to the caller of start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.service.stop())
                loop.close()
                self._stopped.set()

        self._thread = threading.Thread(target=run, name=f"queueserver {self.service.task}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise UnavailableError(f"cannot serve on {self._host}:{self._port}: {failure[0]}") from failure[0]

    def join(self) -> None:
        """Block until the server stops."""
        if self._thread is None:
            raise UnavailableError("the server is not started: call start() first")
        self._stopped.wait()

    def stop(self) -> None:
        """Stop the server; waiting callers are told it is shutting down."""
        if self._thread is None or self._loop is None or self._stopped.is_set():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._stopped.wait(10)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_forever(host: str, port: int, *, token: str | None, max_message_bytes: int,
                  cluster: ClusterSpec | None = None, job: str = "localhost", index: int = 0,
                  metrics: bool = True, on_ready: Callable[[QueueService], None] | None = None) -> None:
    """Run a server in this thread until SIGINT or SIGTERM (the ``queueserver serve`` daemon)."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    service = QueueService(token=token, max_message_bytes=max_message_bytes, cluster=cluster, job=job, index=index,
                           metrics=metrics)
    stop = asyncio.Event()

    async def main() -> None:
        await service.start(host, port)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if on_ready is not None:
            on_ready(service)
        await stop.wait()
        event(logging.INFO, service.task, "signal_received", "signal received, stopping")
        await service.stop()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
