"""A client's data-plane connection: the transport side of the server.

The first byte of every accepted connection decides its protocol (:class:`Sniffer`): the data
plane (:data:`~queueserver.wire.PREAMBLE`) or HTTP, handed to aiohttp. A :class:`DataConnection`
parses frames (:class:`~queueserver.wire.FrameReader`), runs each request through its operation
(:mod:`queueserver.ops`) or routes it to another task (:mod:`queueserver.forwarding`), and writes
the replies, coalesced per turn of the loop. What the connection holds and owes (held
deliveries, acknowledgements, the pending-bytes budget, compact handles) is its
:class:`~queueserver.session.DeliverySession`, which does no I/O.
"""

from __future__ import annotations

import asyncio
import logging
import time
from time import perf_counter
from typing import TYPE_CHECKING, Any, Callable, cast

import numpy as np

from queueserver.core import Attempt, ConditionalAccumulatorBase, QueueBase, Variable
from queueserver.errors import (
    InternalError,
    InvalidArgumentError,
    QueueServerError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from queueserver.forwarding import route, settle_forwarded
from queueserver.logs import event
from queueserver.ops import NO_REPLY, OPS
from queueserver.protocol import field_str, needs_routing
from queueserver.session import DeliverySession
from queueserver.wire import (
    COMPACT_DEQUEUE,
    COMPACT_ENQUEUE,
    COMPACT_MAX_HANDLES,
    COMPACT_REQUEST,
    PREAMBLE,
    FrameReader,
    coalesce,
    compact_layout,
    decode_compact_extras,
    encode_compact_reply,
    encode_frame,
    encode_raw_frame,
    error_payload,
    set_nodelay,
)

if TYPE_CHECKING:
    from queueserver.service import QueueService

# The largest frame a client may send before its token is checked (a hello is a few hundred bytes).
PRE_AUTH_MAX_BYTES = 64 * 1024
# Replies queued for one connection past which its further requests wait (unparsed, and its socket
# unread) until the transport has written them: a client that pipelines dequeues and never reads
# its socket made the server hold every batch it asked for (1 GB in a test).
ANSWER_PAUSE_BYTES = 4 * 1024 * 1024
# What a server whose durable log failed still answers: nothing that changes state.
_WITHOUT_THE_LOG = frozenset({"hello", "bye", "ping", "status", "spec", "size", "is_closed"})


class Sniffer(asyncio.Protocol):
    """Looks at a connection's first byte and hands it to the data plane or to aiohttp."""

    def __init__(self, service: QueueService, http_factory: Callable[[], Any]) -> None:
        self.service = service
        self.http_factory = http_factory
        self.transport: Any = None  # the accepted transport, handed to the chosen protocol
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.buffer[:1] == b"\x00":
            if len(self.buffer) < len(PREAMBLE):
                return
            if self.buffer[: len(PREAMBLE)] != PREAMBLE:
                self.transport.close()  # a binary client of another protocol or version
                return
            proto: Any = DataConnection(self.service)
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

    def __init__(self, service: QueueService) -> None:
        self.service = service
        self.authenticated = service.token is None
        # Before its token is checked a client may send only a small hello: no large frame is
        # buffered or parsed for someone who may not be allowed in.
        limit = service.max_message_bytes if self.authenticated else min(PRE_AUTH_MAX_BYTES, service.max_message_bytes)
        self.reader = FrameReader(self._on_frame, self._on_bad_frame, self._on_fatal,
                                  max_message_bytes=limit, on_compact=self._on_compact)
        # The transport calls this once per read: the reader's own method, without a hop.
        self.get_buffer = self.reader.get_buffer  # type: ignore[method-assign]  # a bound method, per instance
        self.transport: asyncio.Transport | None = None
        self._hello_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._loop_time: Callable[[], float] = time.monotonic  # the loop's clock, from connection_made
        self.last_heard = 0.0  # the last request or reply on this connection (the loop's clock)
        self.failed_hellos = 0
        self.client_name = "?"
        self.out: list = []
        self.closing = False
        self.session = DeliverySession(service.pending_bytes_limit, COMPACT_MAX_HANDLES, service.recorder,
                                       service.delivery_ids())
        # With a data directory: the replies queued report changes up to this record of the log.
        self.durable = service.durable
        self.log_needed = 0
        self.pending: dict[int, Any] = {}                # request id -> core Attempt or future
        self.reading_paused = False
        self.writing_paused = False
        self.answering_paused = False  # requests read are left unanswered (see _pause_answering)
        self.log_paused = False  # not read while the durable log's writer catches up (service.log_backlogged)
        self.out_bytes = 0  # bytes of the replies in self.out
        self.forwards: dict[int, asyncio.Task] = {}      # requests being routed to other tasks
        # Observability: plain attributes, read by status and /metrics; ``stats`` None = metrics off.
        self.stats = service.call_stats
        self.bytes_in = self.bytes_out = 0
        self.connected_at = time.monotonic()
        self.peer = "?"
        self.said_hello = self.said_bye = False
        self.stamp_client: str | None = None  # the client id its hello gave: compact enqueues' stamps use it
        self.report: dict | None = None                  # the client's latest report(): role, figures, ts
        self._last_queue: tuple | None = None            # ((container, name), queue) of the last call

    # ----- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        self.service.connections.add(self)
        loop = asyncio.get_running_loop()
        if not self.authenticated:
            self._hello_timer = loop.call_later(self.service.options.hello_timeout_s, self._hello_expired)
        self._loop_time = loop.time
        self.last_heard = loop.time()
        idle = self.service.options.idle_timeout_s
        if idle:
            self._idle_timer = loop.call_later(idle, self._idle_check)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        set_nodelay(transport)

    def authenticate(self) -> None:
        """The client presented the token: it may now send frames of any allowed size."""
        self.authenticated = True
        self.reader.set_limit(self.service.max_message_bytes)
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None

    def _hello_expired(self) -> None:
        self._hello_timer = None
        if self.authenticated or self.transport is None:
            return
        wait = self.service.options.hello_timeout_s
        event(logging.WARNING, self.service.task, "hello_timeout",
              f"closing the connection from {self.peer}: no hello with the token within {wait:g} s", peer=self.peer)
        self.send({"i": 0, "e": error_payload(UnauthenticatedError(
            f"no hello with the token within {wait:g} s: this server needs its token"))})
        self.flush()
        self.transport.close()

    def _idle_check(self) -> None:
        """Close the connection if it sent nothing, and no call of its waited, for the idle timeout."""
        self._idle_timer = None
        if self.transport is None:
            return
        loop = asyncio.get_running_loop()
        idle = self.service.options.idle_timeout_s
        if self.pending:  # a call of its is waiting: that is not idle
            self.last_heard = loop.time()
        quiet = loop.time() - self.last_heard
        if quiet < idle:  # look again when it would have been quiet for the whole timeout
            self._idle_timer = loop.call_later(idle - quiet, self._idle_check)
            return
        event(logging.INFO, self.service.task, "idle_timeout",
              f"closing the connection of {self.client_name} ({self.peer}): idle for {idle:g} s",
              client=self.client_name, peer=self.peer)
        self.send({"i": 0, "e": error_payload(UnavailableError(
            f"the server closed this connection: it sent nothing for {idle:g} s (the server's idle timeout)"))})
        self.flush()
        self.transport.close()

    def fresh_report(self, now: float, ttl: float) -> dict | None:
        """The client's latest report, unless it is older than ``ttl`` seconds (then it is dropped)."""
        report = self.report
        if report is not None and now - report["ts"] > ttl:
            self.report = report = None  # the client stopped reporting: its figures no longer hold
        return report

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_in += nbytes
        self.last_heard = self._loop_time()
        self._handle(self.reader.buffer_updated, nbytes)

    def _handle(self, parse: Callable[..., None], *args: Any) -> None:
        """Run the requests ``parse`` hands out; their replies (and the ones they cause on other
        connections) go out together at the end."""
        svc = self.service
        svc.reading += 1
        svc.unflushed.add(self)
        try:
            parse(*args)
            if svc.durable is not None and svc.log_backlogged(self):
                self.log_paused = True
                self._update_reading()
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
        for timer in (self._hello_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._hello_timer = self._idle_timer = None
        svc.connection_closed(self)
        self.transport = None
        self.reader.release()  # its buffers go now, not when the cycle collector runs
        if self.stats is not None:
            self.stats.bytes_in_closed += self.bytes_in
            self.stats.bytes_out_closed += self.bytes_out
            self.bytes_in = self.bytes_out = 0
        for attempt in list(self.pending.values()):
            attempt.cancel()
        self.pending.clear()
        for task in list(self.forwards.values()):
            task.cancel()
        settle_forwarded(self, "return", self.session.lost())
        if self.said_hello:
            how = "said goodbye" if self.said_bye else f"connection lost ({exc})" if exc else "connection closed"
            event(logging.INFO, svc.task, "client_disconnected", f"client {self.client_name} disconnected: {how}",
                  client=self.client_name, peer=self.peer, clean=self.said_bye, error=None if exc is None else str(exc),
                  connected_s=round(time.monotonic() - self.connected_at, 3))

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._pause_answering()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._resume_answering()

    def _pause_answering(self) -> None:
        """This client is not reading its replies: answer none of its requests (and read none)
        until it does, so what the server holds for it stays bounded (see ANSWER_PAUSE_BYTES)."""
        self.answering_paused = True
        self.reader.pause()
        self._update_reading()

    def _resume_answering(self) -> None:
        if self.transport is None or self.writing_paused or not self.answering_paused:
            return
        self.answering_paused = False
        self._update_reading()
        self._handle(self.reader.resume)

    def log_caught_up(self) -> None:
        """The durable log's writer caught up: read again."""
        self.log_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport is None:
            return
        should_pause = self.writing_paused or self.answering_paused or self.log_paused
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
        self.out_bytes += sum(map(len, frames))
        if self.out_bytes > ANSWER_PAUSE_BYTES and not self.answering_paused:
            self._pause_answering()
        if self.durable is not None:
            self.log_needed = self.durable.appended
        if self.service.reading:
            self.service.unflushed.add(self)
        else:
            self.flush()

    def flush(self) -> None:
        """Write every queued reply in one call (with a data directory, once the log has written
        the changes they report)."""
        if self.out and self.transport is not None:
            # A reply ends a call: the idle time counts from here (the end of the read that made
            # it, or now). Once per flush, not per reply: a read may answer hundreds of calls.
            self.last_heard = self._loop_time()
            if self.durable is not None and not self.service.may_send(self, self.log_needed):
                return
            out, self.out = self.out, []
            if self.stats is not None:
                self.bytes_out += self.out_bytes
            self.out_bytes = 0
            self.transport.writelines(coalesce(out))
            if self.answering_paused and not self.writing_paused:
                # The transport took it all without pausing: nothing will call resume_writing.
                asyncio.get_running_loop().call_soon(self._resume_answering)
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
        rid: Any = header.get("i", 0)  # checked below, with op, in one test
        op: Any = header.get("o")
        svc = self.service
        # The usual request passes one test; anything else is looked at closely, and refused with
        # an error that says what is wrong (a "hello" before the token is accepted goes on).
        if not (type(op) is str and type(rid) is int and op in OPS and self.authenticated and not svc.stopping
                and not svc.log_failed):
            error = self._refusal(rid, op)
            if error is not None:
                key = op if isinstance(op, str) and op in OPS else "?"
                svc.calls[key] = svc.calls.get(key, 0) + 1
                self.send({"i": rid, "e": error_payload(error)})
                if stats is not None:
                    stats.observe(key, type(error).__name__, t0)
                return
        svc.calls[op] = svc.calls.get(op, 0) + 1
        if svc.cluster is not None and not header.get("local") and needs_routing(op, header, svc.task):
            task = asyncio.ensure_future(route(self, rid, op, header, body, t0))
            self.forwards[rid] = task
            task.add_done_callback(lambda _: self.forwards.pop(rid, None))
            return
        self.dispatch_local(rid, op, header, body, t0)

    def _refusal(self, rid: Any, op: Any) -> QueueServerError | None:
        """Why a request cannot run, or None when it can."""
        if not isinstance(rid, int):
            return InvalidArgumentError("request id must be an integer")
        if not isinstance(op, str) or op not in OPS:
            return UnimplementedError(f"unknown operation {op!r}")
        if not self.authenticated and op != "hello":
            return UnauthenticatedError("this server needs a token: connect with token=... or QUEUESERVER_TOKEN")
        if self.service.stopping:
            return UnavailableError(f"server {self.service.task} is shutting down")
        if self.service.log_failed and op not in _WITHOUT_THE_LOG:
            # Nothing more can be recorded: a change made now would be lost at the next start, and
            # its caller, never answered, would make it again elsewhere. Refused before it changes anything.
            return UnavailableError(f"server {self.service.task} cannot record changes: its durable log failed"
                                    f" ({self.service.durable.failed if self.service.durable else '?'}); restart it")
        return None

    def dispatch_local(self, rid: int, op: str, header: dict, body: Any, t0: float = 0.0) -> None:
        """Run an operation on this task's own resources and reply; ``t0`` is its arrival (perf_counter)."""
        stats = self.stats
        try:
            outcome = OPS[op](self, header, body)
        except Exception as exc:
            self.fail(rid, op, exc, t0)
            return
        if outcome is NO_REPLY:
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

    def fail(self, rid: int, op: str, exc: Exception, t0: float, doing: str = "in") -> None:
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
            code, flags, n_acks, handle, rid, timeout = COMPACT_REQUEST.unpack_from(body)
            op = "enqueue" if code == COMPACT_ENQUEUE else "dequeue" if code == COMPACT_DEQUEUE else "?"
            svc.calls[op] = svc.calls.get(op, 0) + 1
            if op == "?":
                raise UnimplementedError(f"unknown compact operation {code}")
            ok = self.authenticated and not svc.stopping and not svc.log_failed
            refusal = None if ok else self._refusal(rid, op)
            if refusal is not None:
                raise refusal
            stamp, acks, offset = decode_compact_extras(body, flags, n_acks)
            if timeout != timeout:  # NaN: wait for ever
                timeout = None
            q, layout, size = self.session.bound(handle, self._find_queue, _layout_of)
            if op == "enqueue":
                if acks:
                    raise InvalidArgumentError("a compact enqueue carries no acknowledgements")
                element = self._compact_element(q, layout, size, body, offset)
                self.session.check_budget()
                attempt = q.enqueue(element, timeout=timeout, validated=True, stamp=self._stamp(stamp))
            else:
                if offset != len(body):
                    raise InvalidArgumentError(f"malformed compact dequeue: {len(body) - offset} bytes after its header")
                self.session.ack(acks)
                attempt = q.dequeue(timeout=timeout)
        except Exception as exc:
            self.fail(rid, op, exc, t0, "in compact")
            return
        self._track(rid, op, attempt, None, len(body), t0, compact=True)

    def _stamp(self, stamp: tuple[int, int] | None) -> Any:
        """A compact enqueue's stamp: its sequence number and low-water mark, with the client id of
        the hello."""
        if stamp is None:
            return None
        if self.stamp_client is None:
            raise InvalidArgumentError("a stamped compact enqueue needs a client id ('cid') in the connection's hello")
        seq, low = stamp
        if low > seq:
            raise InvalidArgumentError(f"a compact enqueue's low-water mark {low} is above its sequence number {seq}")
        return self.service.stamps.get(self.stamp_client, seq, low)

    def _find_queue(self, key: tuple[str, str]) -> QueueBase:
        return self.service.resources.get(key[0], key[1], QueueBase)

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
            self.session.pending_bytes += nbytes
            self._update_reading()

        def done(att: Attempt) -> None:
            self.pending.pop(rid, None)
            if is_enqueue:
                self.session.pending_bytes -= nbytes
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
                result = f.result()  # one array, or a sparse accumulator's (indices, values, dense shape)
                if isinstance(result, dict):  # a reply's fields (a status)
                    self.send({**result, "i": rid})
                else:
                    self.send({"i": rid}, list(result) if isinstance(result, tuple) else [result])
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
        delivery = self.session.next_id()
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
        self.session.hold(delivery, attempt.queue, attempt.taken)
        self._queue_out(frames)

    def _fail_reply(self, rid: int, exc: Exception) -> None:
        if not isinstance(exc, QueueServerError):
            event(logging.ERROR, self.service.task, "internal_error", f"internal error replying to request {rid}",
                  exc_info=True, client=self.client_name)  # called in an except block
            exc = InternalError(f"{type(exc).__name__}: {exc}")
        self.send({"i": rid, "e": error_payload(exc)})

    # ----- helpers for handlers
    def queue(self, header: dict) -> QueueBase:
        # Calls on one connection mostly name one queue: keep the last one found. A reset destroys
        # the queue object, so a destroyed one is looked up again (and then not found, or found new).
        key = (header.get("c", ""), header.get("n"))
        last = self._last_queue
        if last is not None and last[0] == key and not last[1].destroyed:
            return last[1]
        q = self.service.resources.get(field_str(header, "c", ""), field_str(header, "n"), QueueBase)
        self._last_queue = (key, q)
        return q

    def variable(self, header: dict) -> Variable:
        return self.service.resources.get(field_str(header, "c", ""), field_str(header, "n"), Variable)

    def accumulator(self, header: dict) -> ConditionalAccumulatorBase:
        return self.service.resources.get(field_str(header, "c", ""), field_str(header, "n"), ConditionalAccumulatorBase)


def _layout_of(queue: QueueBase) -> Any:
    return compact_layout(queue.spec)
