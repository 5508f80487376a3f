"""The request multiplexer over one connection: what every client of the data plane shares.

A :class:`Channel` connects, introduces itself (``hello``, with the token), and carries any number
of requests at once: each gets an id, its reply resolves it, a caller that stops waiting withdraws
its request (or gives back the batch that was already on its way), and pipelined calls started
in one turn of the loop share one write. The asyncio client (:class:`~queueserver.asyncio_client.AsyncClient`)
and the server's links to its peer tasks (:mod:`queueserver.routing`) both build on it.

With ``reconnect`` (the clients' default), a channel whose connection is lost (the server was
restarted, say) connects again by itself, with backoff, within ``reconnect_s``, and repeats the
calls that repeating cannot harm (:data:`RETRYABLE`): every enqueue carries a stamp (this
channel's client id and a sequence number) so the server applies a repeated one once; a repeated
dequeue may deliver what the lost connection held again (delivery is at least once). Calls that
would apply twice or undo another client's acknowledged write (``assign``, ``assign_add``,
``scatter_update``, ``scatter_add``, ``apply_grad``, ``take_grad``) fail with
UnavailableError, and the next call reconnects. (A one-element enqueue in a compact frame carries
its stamp too: the sequence number in the frame, the client id in the hello.)
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from typing import Any, Sequence, cast
from urllib.parse import urlsplit

import numpy as np

from queueserver.errors import (
    CancelledError,
    DeadlineExceededError,
    InvalidArgumentError,
    QueueServerError,
    ResourceExhaustedError,
    UnimplementedError,
    UnavailableError,
    error_from_code,
    from_exception,
)
from queueserver import protocol as P
from queueserver.protocol import route_fields
from queueserver.wire import (
    COMPACT_REPLY, PREAMBLE, FrameReader, coalesce, decode_arrays, encode_compact_request, encode_frame,
    encode_raw_frame, set_nodelay,
)

DEFAULT = object()  # "use the client's operation timeout"
# How long a connection may take to answer its hello (the operation timeout when shorter).
HELLO_TIMEOUT_S = 30.0
# How long the client waits past a call's own timeout (or, for a call that does not block, its
# operation timeout) before deciding the server is gone. A task forwarding the call gives the
# resource's home less (``forwarding.FORWARD_GRACE_S``), so its error naming that task comes first.
TIMEOUT_GRACE_S = 3.0
OPERATION_DEADLINE = object()  # "a call that does not block: wait as long as the operation timeout"


# Calls repeated on a new connection when the old one was lost: doing them again changes nothing
# that doing them once would not (an enqueue carries its stamp; a dequeue's lost batch was
# returned with its connection). Variable and accumulator actions are listed by action.
RETRYABLE = frozenset({P.OP_QUEUE, P.OP_VARIABLE, P.OP_ACCUMULATOR, P.OP_ENQUEUE, P.OP_DEQUEUE, P.OP_SIZE,
                       P.OP_IS_CLOSED, P.OP_SPEC, P.OP_STATUS, P.OP_PING, P.OP_REPORT, P.OP_ACK, P.OP_RETURN})
# Writes to variables (assign, initialize, scatter_update) are not repeated: a repeat after another
# client's acknowledged update would undo it (the review's case: A's assign(1.0) reaches the server,
# B's assign_add(5) is acknowledged as 6.0, A's repeat puts 1.0 back).
RETRYABLE_ACTIONS = {P.OP_VAR: frozenset({"read", "is_initialized", "gather"}),
                     P.OP_ACC: frozenset({"num", "set_step"})}
# Backoff between reconnection attempts: doubling from the first to the last.
RECONNECT_FIRST_S, RECONNECT_MAX_S = 0.05, 1.0


def _lost(message: str) -> UnavailableError:
    """The error of a call whose connection is gone (no reply came): one a reconnection may repeat,
    unlike an UnavailableError the server replied (it is shutting down: the caller is told)."""
    error = UnavailableError(message)
    error.connection_lost = True  # type: ignore[attr-defined]
    return error


def wait_for_reply(timeout: float | None) -> float | None:
    """How long to wait for the reply to a call that may block ``timeout`` seconds on the server."""
    return None if timeout is None else timeout + TIMEOUT_GRACE_S


def parse_target(target: str) -> tuple[str, int]:
    """``http://host:port``, ``grpc://host:port`` or ``host:port`` -> ``(host, port)``.

    Raises:
        InvalidArgumentError: the target names no port.
    """
    given = target
    if "://" not in target:
        target = "http://" + target
    parts = urlsplit(target)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = None
    if parts.hostname is None or port is None:
        raise InvalidArgumentError(f"target {given!r} needs a host and a port, like http://127.0.0.1:2222")
    return parts.hostname, port


class _ClientProtocol(asyncio.BufferedProtocol):
    def __init__(self, client: "Channel") -> None:
        self.client = client
        self.reader = FrameReader(client._on_frame, client._on_stray_error, client._on_fatal,
                                  max_message_bytes=client.max_message_bytes, on_compact=client._on_compact)
        self.transport: asyncio.Transport | None = None
        self.can_write = asyncio.Event()  # awaited while the transport's buffer is full
        self.can_write.set()
        self.writable = True  # can_write's state, read on every call (Event.is_set is a Python call)
        # The transport calls these once per read: the reader's own methods, without a hop.
        self.get_buffer = self.reader.get_buffer  # type: ignore[method-assign]  # a bound method, per instance
        self.buffer_updated = self.reader.buffer_updated  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        set_nodelay(transport)

    def pause_writing(self) -> None:
        self.writable = False
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.writable = True
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.writable = True
        self.can_write.set()
        if self.client._protocol is self:  # not a connection the channel already replaced
            self.client._on_lost(exc)


class Channel:
    """One connection to a queue server, carrying pipelined requests.

    Args:
        target: the server's address (``host:port``, ``http://host:port``).
        token: the server's shared secret (default: ``QUEUESERVER_TOKEN``).
        client_name: shown in the server's logs and status.
        max_message_bytes: the largest frame accepted from the server.
        reconnect_s: when the connection is lost, connect again and repeat the call for up to
            this many seconds (``None``: do not; see the module notes).
    """

    def __init__(self, target: str, *, token: str | None = None, client_name: str | None = None,
                 max_message_bytes: int = 256 * 1024 * 1024, reconnect_s: float | None = None) -> None:
        self.target = target
        self.reconnect_s = reconnect_s
        self.client_id = uuid.uuid4().hex[:16]  # with _seq, the stamp of each enqueue
        self._seq = 0
        # Guards what the blocking client's threads share (sequence numbers, compact-frame handles);
        # never held across an await.
        self._lock = threading.RLock()
        # Held while a compact handle is numbered and its bind frame written (before _lock's holders).
        self._bind_lock = threading.Lock()
        # Sequence numbers of stamped calls not answered yet: their lowest, sent with each stamp, is
        # the low-water mark below which the server may forget this client's stamps.
        self._open_seqs: set[int] = set()
        self._binds: dict[Any, dict] = {}  # compact-frame binds sent, to send again on a new connection
        self._opened = False
        self._reconnecting: asyncio.Future | None = None
        # How errors name the server: its address, or "task /job:ps/task:1 at host:port" for a
        # cluster task (users know tasks by name).
        self.label = target
        self.token = token if token is not None else os.environ.get("QUEUESERVER_TOKEN")
        self.client_name = client_name or f"pid {os.getpid()}"
        self.max_message_bytes = max_message_bytes
        self.task = "/job:localhost/task:0"
        self.cluster: dict | None = None
        self.server_info: dict = {}
        self._protocol: _ClientProtocol | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._next_id = 1
        self._dequeue_routes: dict[int, dict] = {}
        self._out: list | None = None  # frames waiting for this turn's coalesced write
        self._fatal: QueueServerError | None = None  # the stream broke: no call can be made
        self._stray: QueueServerError | None = None
        self._closed = False
        self._replies_left: set[int] = set()  # while closing: withdrawn calls not yet answered
        self._all_replied = asyncio.Event()
        # The loop this channel runs on, kept: asyncio.get_running_loop() costs a getpid() system call.
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by open()

    async def open(self, timeout: float | None = None) -> "Channel":
        """Connect and introduce this client (token included), within ``timeout`` seconds
        (default :data:`HELLO_TIMEOUT_S`): a listener that never answers, or answers something
        that is not this protocol, fails here instead of hanging.

        Raises:
            UnavailableError: nothing listens there, or it is not a queue server (of this version).
            DeadlineExceededError: it did not answer the hello in time.
        """
        wait = HELLO_TIMEOUT_S if timeout is None else timeout
        try:
            reply = await self._timed_hello(wait)
        except TimeoutError:
            self._drop()
            raise DeadlineExceededError(
                f"{self.label} did not answer the hello within {wait:g} s: not a queue server (or a different"
                " version), or it is hung") from None
        except (ResourceExhaustedError, InvalidArgumentError, UnimplementedError) as exc:
            self._drop()
            raise UnavailableError(f"{self.label} is not a queue server (or a different version): {exc}") from None
        except BaseException:
            self._drop()
            raise
        self.server_info = reply
        self.task = reply.get("task", self.task)
        self.cluster = reply.get("cluster")
        self._opened = True
        return self

    async def _timed_hello(self, wait: float) -> dict:
        """Connect and say hello within ``wait`` seconds, or raise TimeoutError (the transport's part of :meth:`open`)."""
        return await asyncio.wait_for(self._hello(), wait)

    async def _hello(self) -> dict:
        host, port = parse_target(self.target)
        self._loop = loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_connection(lambda: _ClientProtocol(self), host, port)
        except OSError as exc:
            raise from_exception(exc, f"cannot connect to {self.label}") from exc
        self._protocol = protocol
        transport.write(PREAMBLE)
        reply, _ = await self.call(P.hello(self.token, self.client_name, self.client_id))
        if not isinstance(reply.get("version"), str) or not isinstance(reply.get("task"), str):
            raise InvalidArgumentError(f"its hello reply has no version and task: {sorted(reply)}")
        return reply

    def _drop(self) -> None:
        """Abandon a connection that never completed its hello."""
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.abort()

    @property
    def connected(self) -> bool:
        """Whether the connection is up."""
        return self._protocol is not None and self._protocol.transport is not None and not self._closed

    async def close(self) -> None:
        """Say goodbye (the server acknowledges every batch it holds for this connection) and disconnect."""
        if self._closed:
            return
        self._closed = True
        if self._protocol is not None and self._protocol.transport is not None:
            await self._withdraw_pending()
            try:
                await asyncio.wait_for(self.call(P.bye()), 5.0)
            except (QueueServerError, asyncio.TimeoutError, ConnectionError):
                pass
            if self._protocol.transport is not None:
                self._protocol.transport.close()

    async def _withdraw_pending(self, wait: float = 2.0) -> None:
        """Closing with calls still waiting (other tasks or threads blocked in them): each fails at
        once with CancelledError, and is withdrawn on the server. Their replies are awaited (briefly)
        before the goodbye, so a batch delivered just before its withdrawal arrived goes back to its
        queue (see ``_on_frame``) instead of being acknowledged by the goodbye."""
        waiting = [(rid, fut) for rid, fut in self._pending.items() if not fut.done()]
        if not waiting:
            return
        error = CancelledError(f"the client of {self.label} was closed while this call waited")
        self._replies_left = {rid for rid, _ in waiting}
        self._all_replied = asyncio.Event()
        for rid, fut in waiting:
            fut.set_exception(error)
            self._send({**P.cancel(rid), P.ID: 0})
        try:
            await asyncio.wait_for(self._all_replied.wait(), wait)
        except asyncio.TimeoutError:
            pass  # what has not answered by now is returned by the server when the connection drops

    def _replied(self, rid: Any) -> None:
        """A reply arrived for ``rid``: one fewer to wait for while closing."""
        left = self._replies_left
        if left:
            left.discard(rid)
            if not left:
                self._all_replied.set()

    def _on_frame(self, header: dict, body: Any) -> None:
        rid = header.get("i")
        route = self._dequeue_routes.pop(rid, None)  # type: ignore[arg-type]  # any id: pop finds nothing
        fut = self._pending.pop(rid, None)  # type: ignore[arg-type]
        if fut is None:
            if header.get("i") == 0 and "e" in header:
                self._on_stray_error(error_from_code(*header["e"]), header)
            return
        if self._replies_left:
            self._replied(rid)
        if fut.done():  # cancelled by its caller, or failed because the client is closing
            # Nobody waits for this batch any more: give it straight back to the queue's front.
            if "d" in header:
                self._give_back(header["d"], route_fields(route) if route else {})
            return
        fut.set_result((header, body))

    def _on_compact(self, body: bytearray) -> None:
        """A compact reply (see :mod:`queueserver.wire`): resolve its call as ``({"d": id}, body)``."""
        if len(body) < COMPACT_REPLY.size:
            self._on_fatal(InvalidArgumentError(f"malformed compact reply of {len(body)} bytes"))
            return
        _, rid, delivery = COMPACT_REPLY.unpack_from(body)
        route = self._dequeue_routes.pop(rid, None)
        fut = self._pending.pop(rid, None)
        if fut is None:
            return
        if self._replies_left:
            self._replied(rid)
        if fut.done():  # cancelled by its caller, or failed because the client is closing
            if delivery:  # nobody waits for this element any more: straight back to the queue's front
                self._give_back(delivery, route or {})
            return
        fut.set_result(({"d": delivery} if delivery else {}, body))

    def _on_stray_error(self, error: QueueServerError, header: Any) -> None:
        """An error that answers no call (a frame we could not decode, or the server's last word
        before it closes the connection): kept as the reason if the connection then drops."""
        self._stray = error

    def _on_fatal(self, error: QueueServerError) -> None:
        """The stream cannot be parsed any further: every waiting call fails now (uvloop may
        report the connection lost only much later) and the connection is dropped."""
        self._fatal = error
        self._on_lost(None)
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.abort()

    def _on_lost(self, exc: Exception | None) -> None:
        error = self._fatal or self._stray or _lost(
            f"connection to {self.label} lost" + (f": {exc}" if exc else ""))
        for fut in self._take_pending().values():
            if not fut.done():
                fut.set_exception(error)

    def _take_pending(self) -> dict:
        """The calls waiting on the connection that was lost (none wait on it after this)."""
        pending, self._pending = self._pending, {}
        return pending

    def _send(self, header: dict, arrays: Sequence[np.ndarray] = ()) -> None:
        proto = self._protocol
        if proto is None or proto.transport is None or self._fatal is not None:
            raise self._fatal or _lost(f"not connected to {self.label}")
        if header.get("o") == P.OP_BIND:
            self._binds[header.get(P.HANDLE)] = header
        self._write(proto, encode_frame(header, arrays))

    def _write(self, proto: _ClientProtocol, frames: list) -> None:  # proto: connected
        """Write a frame now when it is the only call in flight; coalesce pipelined calls.

        A lone call goes out at once and costs no extra turn of the loop (latency); many calls
        started together share one system call, flushed at the end of this turn.
        """
        if self._out is not None:
            self._out.extend(frames)
            return
        if len(self._pending) > 1:
            self._out = list(frames)
            self._loop.call_soon(self._flush_out, proto)
            return
        transport: Any = proto.transport  # the caller checked that it is connected
        if len(frames) == 1:
            transport.write(frames[0])
        else:
            transport.writelines(frames)

    def _flush_out(self, proto: _ClientProtocol) -> None:
        out, self._out = self._out, None
        if out and proto.transport is not None:
            proto.transport.writelines(coalesce(out))

    def call_deadline(self) -> float | None:
        """How long a call that does not block may take (``None``: no limit); clients override it."""
        return None

    # ----- reconnection
    def _may_repeat(self, header: dict) -> bool:
        """Whether a call may be repeated on a new connection (see :data:`RETRYABLE`)."""
        if self.reconnect_window() is None or not self._opened or self._closed:
            return False
        op = header.get("o")
        return op in RETRYABLE or header.get(P.ACTION) in RETRYABLE_ACTIONS.get(op, ())  # type: ignore[arg-type]

    async def _reconnect(self, until: float) -> None:
        """Connect again (one attempt at a time for every caller), with backoff, until ``until``
        (:meth:`_now`'s time).

        Raises:
            UnavailableError: the server did not come back in time.
        """
        if self._reconnecting is not None:
            await asyncio.shield(self._reconnecting)
            return
        self._reconnecting = done = self._loop.create_future()
        try:
            await self._reconnect_attempts(until)
            done.set_result(None)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # retrieved: callers that shared it raise it themselves
            raise
        finally:
            self._reconnecting = None

    async def _reconnect_attempts(self, until: float) -> None:
        """Drop the connection and open a new one, with backoff, until ``until``: the rule every
        transport shares (each decides how its callers share one attempt)."""
        delay, last = RECONNECT_FIRST_S, None
        while True:
            self._forget_connection()
            if self._closed:
                raise CancelledError(f"the client of {self.label} was closed while reconnecting")
            left = until - self._now()
            try:
                if left <= 0:
                    raise UnavailableError(f"lost the connection to {self.label}; it did not come back in time"
                                           + (f" ({last})" if last else ""))
                await Channel.open(self, min(left, HELLO_TIMEOUT_S))
            except (UnavailableError, DeadlineExceededError) as exc:
                if self._now() + delay >= until:
                    raise UnavailableError(f"lost the connection to {self.label}; it did not come back in time"
                                           f" ({exc})") from None
                last = exc
                await self._pause(delay)  # backoff: the server is restarting
                delay = min(2 * delay, RECONNECT_MAX_S)
                continue
            if self._closed:  # closed while this attempt connected: it must not stay open
                self._forget_connection()
                raise CancelledError(f"the client of {self.label} was closed while reconnecting")
            self._reconnected()
            return

    def _now(self) -> float:
        """The clock of deadlines and reconnection windows (the loop's)."""
        return self._loop.time()

    async def _pause(self, seconds: float) -> None:
        """Wait between reconnection attempts."""
        await asyncio.sleep(seconds)

    async def gather(self, calls: Sequence[Any]) -> list:
        """Run ``calls`` (coroutines of this client's handles) together; their results in order."""
        return list(await asyncio.gather(*calls))

    def _forget_connection(self) -> None:
        """Drop the current connection for good: its waiting calls fail now (its own loss, reported
        later, must not touch the calls of the next one)."""
        proto, self._protocol = self._protocol, None
        if proto is not None:
            if proto.transport is not None:
                proto.transport.abort()
            self._on_lost(None)
        self._fatal = self._stray = None  # that stream's troubles are not the next one's
        self._out = None

    def reconnect_window(self) -> float | None:
        """Seconds a lost connection is retried for (``None``: it is not); clients override it."""
        return self.reconnect_s

    def _reconnected(self) -> None:
        """A new connection is up: bind the compact handles again (the server knew them per
        connection); subclasses also forget deliveries the lost connection held."""
        for header in self._binds.values():
            self._send({**header, P.ID: 0})

    async def _repeat(self, header: dict, attempt: Any, window: float, first: UnavailableError | None) -> Any:
        """``attempt()`` failed with ``first`` (None: it was not made, the connection was already
        lost): reconnect and run it, again while the connection is lost, within ``window`` seconds,
        if it may be repeated."""
        if first is not None and (not getattr(first, "connection_lost", False) or not self._may_repeat(header)):
            raise first
        if first is None and not self._may_repeat(header):
            # Not repeatable, but the connection is gone: reconnect, then make it once.
            await self._reconnect(self._now() + window)
            return await attempt()
        until = self._now() + window
        while True:
            await self._reconnect(until)
            header.pop(P.ACKS, None)  # those delivery ids were the lost connection's: all returned
            try:
                return await attempt()
            except UnavailableError as exc:
                if self._now() >= until or not getattr(exc, "connection_lost", False):
                    raise

    async def call(self, header: dict, arrays: Sequence[np.ndarray] = (), *,
                   wait: Any = OPERATION_DEADLINE) -> tuple[dict, list[np.ndarray]]:
        """Send one request and await its reply; raises the server's error class.

        ``wait``: how long to wait for the reply (``None``: for ever); by default the client's
        operation timeout (plus a grace), which also travels with the request so that a task
        forwarding it stops waiting for a hung home in time to say which task it was. A lost
        connection is reconnected and the call repeated when it may be (see the module notes).
        """
        window = self.reconnect_window()
        if window is None:
            return await self._call(header, arrays, wait)
        seq = None
        if header.get("o") == P.OP_ENQUEUE and P.STAMP not in header:
            seq, low = self._open_stamp()
            header[P.STAMP] = [self.client_id, seq, low]
        try:
            if not self.connected and self._opened and not self._closed:
                return await self._repeat(header, lambda: self._call(header, arrays, wait), window, None)
            try:
                return await self._call(header, arrays, wait)
            except UnavailableError as exc:
                return await self._repeat(header, lambda: self._call(header, arrays, wait), window, exc)
        finally:
            if seq is not None:
                self._close_stamp(seq)

    def _open_stamp(self) -> tuple[int, int]:
        """The next sequence number, open until its call is answered (see ``_open_seqs``), and the
        low-water mark to send with it."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._open_seqs.add(seq)
            return seq, min(self._open_seqs)

    def _close_stamp(self, seq: int) -> None:
        """The call stamped ``seq`` was answered (or gave up): it no longer holds the low-water mark."""
        with self._lock:
            self._open_seqs.discard(seq)

    def _stamp_deadline(self, header: dict, wait: Any) -> float | None:
        """How long a call waits for its reply: ``wait``, or for OPERATION_DEADLINE the client's
        deadline for a call that does not block, which then travels in ``header``."""
        if wait is OPERATION_DEADLINE:
            deadline = self.call_deadline()
            if deadline is not None:
                header[P.DEADLINE] = deadline
            wait = wait_for_reply(deadline)
        return wait

    async def _call(self, header: dict, arrays: Sequence[np.ndarray], wait: Any) -> tuple[dict, list[np.ndarray]]:
        wait = self._stamp_deadline(header, wait)
        proto = self._protocol
        if proto is not None and not proto.writable:
            await proto.can_write.wait()
        rid = self._next_id
        self._next_id += 1
        header["i"] = rid
        fut = (self._loop or asyncio.get_running_loop()).create_future()
        self._pending[rid] = fut
        if header.get("o") == "dequeue":
            self._dequeue_routes[rid] = header  # its routing fields, should the batch go back
        try:
            self._send(header, arrays)
        except BaseException:
            self._pending.pop(rid, None)
            raise
        reply, body = await self._reply(rid, fut, wait, header)
        arrays_out = decode_arrays(reply["a"], body) if "a" in reply else []
        return reply, arrays_out

    async def call_compact(self, op: int, handle: int, timeout: float | None, acks: Sequence[int],
                           payload: bytes, route: dict | None) -> tuple[dict, bytearray]:
        """Send one compact request (see :mod:`queueserver.wire`) and await its reply.

        Returns:
            ``({"d": delivery id}, reply body)`` for a dequeue (the element's bytes follow the reply's
            fixed part), ``({}, body)`` for an enqueue. Raises the server's error class.
        """
        window = self.reconnect_window()
        stamp = None
        if window is not None and route is None:  # an enqueue: stamped, so a repeat is applied once
            stamp = self._open_stamp()
        try:
            if window is None or (self.connected and self._fatal is None):
                try:
                    return await self._call_compact(op, handle, timeout, acks, payload, route, stamp)
                except UnavailableError as exc:
                    if window is None:
                        raise
                    first: UnavailableError | None = exc
            else:
                first = None
            # Both may be repeated: a dequeue without its acknowledgements (their ids were the lost
            # connection's), an enqueue with its stamp.
            header = {"o": P.OP_DEQUEUE if route is not None else P.OP_ENQUEUE}
            return await self._repeat(header, lambda: self._call_compact(op, handle, timeout, (), payload, route, stamp),
                                      window, first)
        finally:
            if stamp is not None:
                self._close_stamp(stamp[0])

    async def _call_compact(self, op: int, handle: int, timeout: float | None, acks: Sequence[int],
                            payload: bytes, route: dict | None,
                            stamp: tuple[int, int] | None = None) -> tuple[dict, bytearray]:
        proto = self._protocol
        if proto is not None and not proto.writable:
            await proto.can_write.wait()
        if proto is None or proto.transport is None or self._fatal is not None:
            raise self._fatal or _lost(f"not connected to {self.label}")
        rid = self._next_id
        frame = encode_compact_request(op, rid, handle, timeout, acks, payload,  # before anything is registered
                                       *(stamp if stamp is not None else ()))
        self._next_id += 1
        fut = self._loop.create_future()
        self._pending[rid] = fut
        if route is not None:
            self._dequeue_routes[rid] = route
        self._write(proto, [frame])
        return await self._reply(rid, fut, wait_for_reply(timeout), route)

    async def _reply(self, rid: int, fut: asyncio.Future, wait: float | None, route: dict | None) -> tuple[dict, Any]:
        """Await a call's reply; a caller that stops waiting withdraws the call (``route``: where
        its resource lives, to give back what it delivered). Raises the server's error class."""
        try:
            if wait is None:
                reply, body = await fut
            else:
                reply, body = await asyncio.wait_for(fut, wait)
        except asyncio.TimeoutError:
            self._abandon(rid, fut, route_fields(route) if route else {})
            raise DeadlineExceededError(f"no reply from {self.label} within {wait:.1f} s") from None
        except asyncio.CancelledError:
            self._abandon(rid, fut, route_fields(route) if route else {})
            raise
        if "e" in reply:
            code, message, details = reply["e"]
            raise error_from_code(code, message, details)
        return reply, body

    async def call_raw(self, header: dict, body: Any, *, wait: float | None = None) -> tuple[dict, Any]:
        """Send a request whose arrays are already encoded; return the raw reply (errors included).

        This is how a server forwards a call to the task that owns the resource.
        """
        rid = self._next_id
        self._next_id += 1
        header["i"] = rid
        fut = (self._loop or asyncio.get_running_loop()).create_future()
        self._pending[rid] = fut
        proto = self._protocol
        if proto is None or proto.transport is None or self._fatal is not None:
            self._pending.pop(rid, None)
            raise self._fatal or _lost(f"not connected to {self.label}")
        self._write(proto, encode_raw_frame(header, body))
        try:
            return await (fut if wait is None else asyncio.wait_for(fut, wait))
        except asyncio.TimeoutError:
            self._abandon(rid, fut, {"local": True})
            raise DeadlineExceededError(f"no reply from {self.label} within {wait:.1f} s") from None
        except asyncio.CancelledError:
            self._abandon(rid, fut, {"local": True})
            raise

    def _give_back(self, delivery: int, route: dict) -> None:
        """Return a delivered batch nobody will see to the front of its queue (``route``: where it lives).

        If the connection is gone there is nothing to send: the server returns held batches itself.
        """
        try:
            self._send({**P.give_back(route, [delivery]), P.ID: 0})
        except QueueServerError:
            pass

    def _abandon(self, rid: int, fut: asyncio.Future, route: dict) -> None:
        """The caller stopped waiting: withdraw the call on the server, or give back what it delivered.

        If the reply already arrived (cancelled in the same turn), a delivered batch goes back to
        the queue's front; if it has not, the server withdraws the call, and a reply that still
        comes is returned on arrival (see ``_on_frame``).
        """
        try:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                reply = fut.result()[0]
                if "d" in reply:
                    self._give_back(reply["d"], route)
            else:
                fut.cancel()
                self._send({**P.cancel(rid), P.ID: 0})
        except QueueServerError:
            pass  # the connection is gone: the server returns held batches itself
