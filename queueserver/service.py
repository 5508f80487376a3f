"""The state of one server: its resources, its connections, its options and its status.

:class:`QueueService` owns the resource manager (the core), this task's place in its cluster
(placement, peers, the directory), the open connections and the figures status and /metrics
read. Its ``start``/``stop`` bind and release the port; :mod:`queueserver.runtime` runs it in a
thread or as the daemon.

With a data directory (``ServerOptions.data_dir``) ``start`` first replays the durable log into the
resources (batches held when the server died go back to the front of their queues), then every
change is recorded (:mod:`queueserver.durability`), and no reply leaves before the records of the
changes it reports are written (on disk, with ``fsync="always"``): see :meth:`QueueService.may_send`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from typing import TYPE_CHECKING, Any

from queueserver import protocol as P
from queueserver.connection import DataConnection, Sniffer
from queueserver.core import Attempt, ConditionalAccumulatorBase, QueueBase, ResourceManager
from queueserver.core.stamps import Stamps
from queueserver.errors import InvalidArgumentError, QueueServerError, UnavailableError
from queueserver.logs import event, printable
from queueserver.options import ServerOptions
from queueserver.routing import Directory, Peers, Placement, check_device_name
from queueserver.status import build as build_status, build_now as build_status_now

if TYPE_CHECKING:
    from aiohttp import web

    from queueserver.durability import DurableLog, Recorder

# Wrong tokens from one host are logged once per this many seconds (with a count of the rest).
AUTH_LOG_WINDOW_S = 10.0
# With a data directory: bytes the log's writer may fall behind before connections stop being read.
LOG_BACKLOG_BYTES = 256 * 1024 * 1024

class QueueService:
    """The state of one server: its resources, its connections and its options.

    Args:
        options: how it runs (:class:`~queueserver.options.ServerOptions`); or give the options'
            fields as keywords (``QueueService(token="t")``).
    """

    def __init__(self, options: ServerOptions | None = None, **fields: Any) -> None:
        options = options if options is not None else ServerOptions(**fields)
        self.options = options
        self.resources = ResourceManager()
        self.stamps = Stamps()  # the last enqueue stamps of each client: a retry is applied once
        self.durable: DurableLog | None = None
        if options.data_dir is not None:
            from queueserver.durability import DurableLog

            self.durable = DurableLog(options.data_dir, options.fsync, task=f"/job:{options.job}/task:{options.index}")
        self.recorder: Recorder | None = None
        self.log_done = 0  # records of the durable log written (on disk with fsync="always")
        self.log_failed = False
        self._log_paused: set[DataConnection] = set()  # connections reading nothing until the log catches up
        self._deferred: set[DataConnection] = set()  # connections whose replies wait for the log
        # Each connection's delivery ids start at its own multiple of 2**32, from a random base, so
        # an id a client kept from a lost connection (or a server before a restart) names nothing.
        self._next_ids = random.getrandbits(24) << 32
        self.token = options.token
        self.max_message_bytes = options.max_message_bytes
        self.cluster = options.cluster
        self.placement = Placement(options.cluster, options.job, options.index)
        self.task = self.placement.task
        self.peers = Peers(self.placement, self.token, self.max_message_bytes)
        self.directory = Directory(self.placement, self.peers, self.resources)
        self.connections: set[DataConnection] = set()
        self.pending_bytes_limit = options.pending_bytes_limit
        self.reading = 0                              # reads being handled right now (nested)
        self.unflushed: set[DataConnection] = set()   # connections with replies from those reads
        self.started = time.time()
        self.calls: dict[str, int] = {}
        self.report_ttl = options.report_ttl_s
        self.call_stats = self.metrics_registry = None
        if options.metrics:
            from queueserver.metrics import CallStats, make_registry

            self.call_stats = CallStats()
            self.metrics_registry = make_registry(self)
        self.stopping = False
        self._all_closed: asyncio.Event | None = None
        self._auth_failures: dict[str, tuple[float, int]] = {}  # peer host -> (logged at, suppressed since)  # set when the last connection closes while stopping
        self._listener: asyncio.AbstractServer | None = None
        self._runner: web.AppRunner | None = None
        self.host = self.port = None

    # ----- lifecycle
    async def start(self, host: str | None = None, port: int | None = None, *,
                    sock: socket.socket | None = None) -> None:
        """Listen on ``host:port`` (default: the options'; port 0 picks a free one); returns once accepting."""
        host = self.options.host if host is None else host
        port = self.options.port if port is None else port
        if self.durable is not None and self.recorder is None:
            self._recover()
        from aiohttp import web

        from queueserver.http import build_app  # aiohttp: imported when a server starts

        self._runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False)
        await self._runner.setup()
        http_factory: Any = self._runner.server  # aiohttp's protocol factory
        loop = asyncio.get_running_loop()
        factory = lambda: Sniffer(self, http_factory)  # noqa: E731
        if sock is not None:
            self._listener = await loop.create_server(factory, sock=sock)
        else:
            self._listener = await loop.create_server(factory, host, port, reuse_address=True)
        self.host, self.port = self._listener.sockets[0].getsockname()[:2]
        event(logging.INFO, self.task, "server_started", f"serving on {self.target}", address=self.target,
              token=self.token is not None, metrics=self.call_stats is not None, pid=os.getpid())
        if self.token is None and not _is_loopback(str(self.host)):
            event(logging.WARNING, self.task, "no_token",
                  f"serving on {self.target} without a token: anyone who can reach this address can read and"
                  " change every queue and variable; set --token (or QUEUESERVER_TOKEN)", address=self.target)

    def delivery_ids(self) -> int:
        """The first delivery id of a new connection."""
        self._next_ids += 1 << 32
        return self._next_ids

    # ----- the durable log
    def _recover(self) -> None:
        """Replay the data directory, start recording, and give back what was held when the server died."""
        from queueserver.durability import Recorder

        durable = self.durable
        assert durable is not None
        replay, found = durable.recover(self.resources, self.stamps)
        recorder = Recorder(durable.append, replay.next_tid)
        self.resources.attach(recorder)
        self.recorder = recorder
        loop = asyncio.get_running_loop()

        def progress(n: int) -> None:
            try:
                loop.call_soon_threadsafe(self._log_progress, n)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        def failure(exc: BaseException) -> None:
            try:
                loop.call_soon_threadsafe(self._log_broken)
            except RuntimeError:
                pass

        durable.start(progress, failure)
        held = replay.held()
        recorder.adopt(held)
        by_queue: dict[int, tuple[QueueBase, list]] = {}
        for _, queue, batch in held:  # in take order: each queue gets its batches back in order
            by_queue.setdefault(id(queue), (queue, []))[1].append(batch)
        for queue, batches in by_queue.values():
            queue.return_elements(batches)
        counts: dict[str, Any] = {"queues": 0, "variables": 0, "accumulators": 0}
        for _, _, res in self.resources.items():
            counts["queues" if isinstance(res, QueueBase) else
                   "accumulators" if isinstance(res, ConditionalAccumulatorBase) else "variables"] += 1
        event(logging.INFO, self.task, "state_recovered",
              f"durable state from {durable.dir}: {found.records} record(s), {found.bytes} bytes replayed in"
              f" {found.seconds:.2f} s; {counts['queues']} queue(s), {counts['variables']} variable(s),"
              f" {counts['accumulators']} accumulator(s); {found.held} held batch(es) returned to their queues"
              + (f"; DAMAGED: {'; '.join(found.damage)}" if found.damage else ""),
              directory=str(durable.dir), fsync=durable.mode, records=found.records, bytes=found.bytes,
              seconds=round(found.seconds, 3), held=found.held, damage=found.damage, **counts)

    def may_send(self, conn: DataConnection, needed: int) -> bool:
        """Whether ``conn``'s replies, which report changes up to record ``needed`` of the durable
        log, may go out now; if not, ``conn`` is flushed again when they may (or aborted if the
        log fails: what cannot be recorded is not acknowledged)."""
        if needed <= self.log_done:
            return True
        if self.log_failed:
            conn.abort()
        else:
            self._deferred.add(conn)
        return False

    def log_backlogged(self, conn: DataConnection) -> bool:
        """With a data directory: whether the log's writer is LOG_BACKLOG_BYTES behind; then
        ``conn`` reads nothing more until it catches up (the disk is slower than the clients, and
        what they send would otherwise wait in memory without bound)."""
        durable = self.durable
        if durable is None or durable.backlog_bytes <= LOG_BACKLOG_BYTES:
            return False
        self._log_paused.add(conn)
        return True

    def _log_progress(self, done: int) -> None:
        self.log_done = done
        if self._log_paused and self.durable is not None and self.durable.backlog_bytes <= LOG_BACKLOG_BYTES // 2:
            paused, self._log_paused = self._log_paused, set()
            for conn in paused:
                conn.log_caught_up()
        if self._deferred:
            waiting, self._deferred = self._deferred, set()
            for conn in waiting:
                conn.flush()

    def _log_broken(self) -> None:
        self.log_failed = True
        waiting, self._deferred = self._deferred, set()
        for conn in waiting:
            conn.abort()
        paused, self._log_paused = self._log_paused, set()
        for conn in paused:  # read again: what they send now is refused (see DataConnection._refusal)
            conn.log_caught_up()

    def auth_failed(self, peer: str, client: str) -> None:
        """Log a wrong or missing token once per burst per peer host: the first, then how many
        more came in the next :data:`AUTH_LOG_WINDOW_S` seconds (a guessing client cannot flood the log)."""
        host = peer.rpartition(":")[0] or peer
        now = time.monotonic()
        since, suppressed = self._auth_failures.get(host, (0.0, 0))
        if now - since < AUTH_LOG_WINDOW_S:
            self._auth_failures[host] = (since, suppressed + 1)
            return
        if suppressed:
            event(logging.WARNING, self.task, "auth_failed_burst",
                  f"{printable(host)} sent {suppressed} more wrong or missing token(s)", peer=host, count=suppressed)
        if len(self._auth_failures) > 10_000:  # many hosts: forget the old windows rather than grow
            self._auth_failures.clear()
        self._auth_failures[host] = (now, 0)
        event(logging.WARNING, self.task, "auth_failed",
              f"rejected a client from {printable(peer)}: wrong or missing token", peer=peer, client=client)

    def connection_closed(self, conn: DataConnection) -> None:
        """A connection is gone (its transport closed)."""
        self.connections.discard(conn)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    @property
    def target(self) -> str:
        """The address clients connect to, as ``http://host:port``."""
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
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
        if self.connections:
            self._all_closed = asyncio.Event()
            try:
                await asyncio.wait_for(self._all_closed.wait(), self.options.grace_s if grace is None else grace)
            except asyncio.TimeoutError:
                pass  # what is still open after the grace period is cut off
        for conn in list(self.connections):
            conn.abort()
        if self.durable is not None and self.recorder is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.durable.close)  # written and synced
        await self.peers.close()
        if self._runner is not None:
            await self._runner.cleanup()
        event(logging.INFO, self.task, "server_stopped", "stopped",
              uptime_s=round(time.time() - self.started, 1))

    # ----- status
    def status(self) -> dict:
        """Everything ``queueserver status`` and the status page show, as plain data, read now
        (see :mod:`queueserver.status`; the server's own paths use its sliced ``build``)."""
        return build_status_now(self)

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
                        "blocked": blocked, "held": len(conn.session.held),
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
                return {"up": True, **await build_status(self)}
            try:
                peer = await self.peers.get(task)
                reply, _ = await peer.call(P.status(), wait=5.0)
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
                reply, _ = await peer.call(P.reset(containers, local=True), wait=10.0)
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


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"
