"""The blocking transport: the same calls as :class:`~queueserver.channel.Channel`, made with
socket I/O on the calling thread, so a synchronous call costs one write and one read of the socket
(no event loop, no thread hand-off). :mod:`queueserver.sync_client` drives the asyncio client's own
code over it: the handles' coroutines never suspend here, and so run to their end on the caller's
thread. Every rule of the protocol (stamps, what a reconnection repeats, acknowledgements, giving
back a batch nobody received) is the asyncio client's, in one place; only the I/O is here.

Several threads may share one connection. Each sends its own requests (one frame at a time); the
replies are read by one of the waiting threads at a time (the reader), which hands every other
thread its reply and wakes it, and when its own reply has come lets another waiting thread read
(the leader/followers pattern). A single thread therefore reads its own replies directly.

Ctrl-C (KeyboardInterrupt) while a call waits withdraws it, as the asyncio client does when a task
is cancelled: a batch already on its way goes back to its queue's front when it arrives. An
interruption inside the reading or writing of a frame leaves the stream in an unknown state: the
connection is dropped then, and the server returns every batch it held for it (delivery is at
least once), and the next call reconnects.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

from queueserver import protocol as P
from queueserver.asyncio_client import AsyncClient
from queueserver.channel import HELLO_TIMEOUT_S, OPERATION_DEADLINE, Channel, _lost, parse_target, wait_for_reply
from queueserver.errors import (
    CancelledError, DeadlineExceededError, InvalidArgumentError, QueueServerError, error_from_code, from_exception,
)
from queueserver.protocol import route_fields
from queueserver.wire import PREAMBLE, FrameReader, decode_arrays, encode_compact_request, encode_frame

# How often a thread blocked in the socket looks up (its deadline, a close, a signal): the socket's
# receive and send timeouts. A reply wakes it at once; this bounds only how late it notices the rest.
TICK_S = 0.1

_PENDING, _DONE, _CANCELLED = 0, 1, 2


class _Slot:
    """Where a call's reply lands: the part of ``asyncio.Future`` the channel's reply handling uses,
    safe between threads. A reply that lands after its caller gave up is handed to ``late``."""

    __slots__ = ("_state", "_value", "_error", "_late")

    def __init__(self, late: Callable[[Any], None]) -> None:
        self._state = _PENDING
        self._value: Any = None
        self._error: BaseException | None = None
        self._late = late

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def set_result(self, value: Any) -> None:
        with _SLOT_LOCK:
            if self._state == _PENDING:
                self._value, self._state = value, _DONE
                return
        self._late(value)  # its caller stopped waiting meanwhile: nobody will see it

    def set_exception(self, error: BaseException) -> None:
        with _SLOT_LOCK:
            if self._state == _PENDING:
                self._error, self._state = error, _DONE

    def cancel(self) -> bool:
        """Stop waiting; False when the reply (or an error) came first."""
        with _SLOT_LOCK:
            if self._state == _PENDING:
                self._state = _CANCELLED
                return True
            return False

    def exception(self) -> BaseException | None:
        return self._error

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


# One lock for every slot's state: held for a few instructions, and a reply's hand-over and its
# caller's giving up must not interleave (one of them owns the batch).
_SLOT_LOCK = threading.Lock()


class BlockingChannel(Channel):
    """A :class:`~queueserver.channel.Channel` whose I/O is blocking socket calls on the caller's
    thread. Its ``async`` methods never suspend: run them with :func:`run_blocking`.

    Args: as :class:`~queueserver.channel.Channel`.
    """

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self._sock: socket.socket | None = None
        self._reader: FrameReader | None = None
        self._generation = 0               # connections made so far (the current one's number)
        self._wlock = threading.Lock()     # one frame on the wire at a time
        self._cv = threading.Condition()   # waiting callers; guards _reading
        self._reading = False              # a caller is reading replies for everyone
        self._waiters = 0                  # callers waiting for the reader to hand them their reply
        self._reconnect_lock = threading.Lock()
        self._routes_lock = threading.Lock()
        self._local = threading.local()    # per thread: the connection its last call used; a batch in hand

    # ----- connection
    @property
    def connected(self) -> bool:
        return self._sock is not None and not self._closed

    async def _timed_hello(self, wait: float) -> dict:
        deadline = time.monotonic() + wait
        host, port = parse_target(self.target)
        try:
            sock = socket.create_connection((host, port), timeout=wait)
        except socket.timeout:
            raise TimeoutError from None
        except OSError as exc:
            raise from_exception(exc, f"cannot connect to {self.label}") from exc
        sock.settimeout(None)  # blocking, with the kernel's timeouts as ticks (see TICK_S)
        tick = struct.pack("ll", int(TICK_S), int(TICK_S % 1 * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tick)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tick)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._reader = FrameReader(self._on_frame, self._on_stray_error, self._on_fatal,
                                   max_message_bytes=self.max_message_bytes, on_compact=self._on_compact)
        self._generation += 1
        self._write_frames([PREAMBLE], deadline)
        try:
            reply, _ = await self._call(P.hello(self.token, self.client_name, self.client_id), (),
                                        max(deadline - time.monotonic(), 0.001))
        except DeadlineExceededError:
            raise TimeoutError from None
        if not isinstance(reply.get("version"), str) or not isinstance(reply.get("task"), str):
            raise InvalidArgumentError(f"its hello reply has no version and task: {sorted(reply)}")
        return reply

    def _drop(self) -> None:
        self._break()

    def _break(self) -> None:
        """Close the socket without a goodbye (the server gives back what this connection held)
        and fail the calls waiting on it."""
        sock, self._sock = self._sock, None
        if sock is not None:
            _shut(sock)
            self._on_lost(None)
            with self._cv:
                self._cv.notify_all()

    def _on_fatal(self, error: QueueServerError) -> None:
        self._fatal = error
        self._break()

    def _forget_connection(self) -> None:
        self._break()
        self._fatal = self._stray = None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sock is None:
            return
        self._withdraw_pending_now()
        try:
            await self._call(P.bye(), (), 5.0)
        except (QueueServerError, OSError):
            pass
        sock, self._sock = self._sock, None
        if sock is not None:
            _shut(sock)
        with self._cv:
            self._cv.notify_all()

    def _withdraw_pending_now(self, wait: float = 2.0) -> None:
        """As ``Channel._withdraw_pending``: calls other threads still wait in fail with
        CancelledError and are withdrawn; their replies are read (briefly) before the goodbye."""
        waiting = [(rid, slot) for rid, slot in list(self._pending.items()) if not slot.done()]
        if not waiting:
            return
        error = CancelledError(f"the client of {self.label} was closed while this call waited")
        self._replies_left = {rid for rid, _ in waiting}
        for rid, slot in waiting:
            slot.set_exception(error)
            self._send({**P.cancel(rid), P.ID: 0})
        with self._cv:
            self._cv.notify_all()
        self._wait_until(lambda: not self._replies_left, time.monotonic() + wait)

    async def _reconnect(self, until: float) -> None:
        """One thread reconnects; the others, who lost the same connection, use its new one."""
        seen = getattr(self._local, "generation", 0)
        with self._reconnect_lock:
            if self.connected and self._generation != seen:
                return  # another thread reconnected after this one's connection was lost
            await self._reconnect_attempts(until)

    def _now(self) -> float:
        return time.monotonic()

    async def _pause(self, seconds: float) -> None:
        time.sleep(seconds)

    async def gather(self, calls: Sequence[Any]) -> list:
        """One after the other: each runs to its end on this thread."""
        return [await call for call in calls]

    # ----- writing
    def _send(self, header: dict, arrays: Sequence[np.ndarray] = ()) -> None:
        if self._sock is None or self._fatal is not None:
            raise self._fatal or _lost(f"not connected to {self.label}")
        if header.get("o") == P.OP_BIND:
            self._binds[header.get(P.HANDLE)] = header
        self._write_frames(encode_frame(header, arrays), None)

    def _write_frames(self, frames: list, deadline: float | None) -> None:
        """Write whole frames, or drop the connection: a frame cut short would corrupt the stream.

        Raises:
            UnavailableError: the connection is gone (``connection_lost``: a call may be repeated).
            DeadlineExceededError: the server took nothing for longer than ``deadline`` allowed.
        """
        with self._wlock:
            sock = self._sock
            if sock is None:
                raise self._fatal or _lost(f"not connected to {self.label}")
            views: list = []
            try:
                first = frames[0]
                if len(frames) == 1 and type(first) is bytes:  # the common small call: one system call
                    try:
                        sent = sock.send(first)
                    except BlockingIOError:
                        sent = 0
                    if sent == len(first):
                        return
                    views = [memoryview(first)[sent:]]
                else:
                    views = [memoryview(f).cast("B") for f in frames]
                while views:
                    try:
                        sent = sock.sendmsg(views)
                    except BlockingIOError:  # a tick passed with the server's buffers full
                        if deadline is not None and time.monotonic() >= deadline:
                            self._break()
                            raise DeadlineExceededError(f"{self.label} took no data for too long; dropped the"
                                                        " connection") from None
                        continue
                    while sent:
                        head = views[0]
                        if sent >= len(head):
                            sent -= len(head)
                            views.pop(0)
                        else:
                            views[0] = head[sent:]
                            sent = 0
            except OSError as exc:
                self._read_last_words(sock)
                self._break()
                raise self._fatal or self._stray or _lost(f"connection to {self.label} lost: {exc}") from None
            except BaseException:
                if views and sock is self._sock:
                    self._break()  # interrupted inside a frame
                raise

    # ----- calls
    def _register(self, rid: int, route: Any) -> _Slot:
        """A slot for call ``rid``'s reply, on the current connection (a connection lost before it
        was registered fails the call here; one lost after fails it in ``_on_lost``)."""
        slot = _Slot(lambda value: self._late(value, route))
        with self._lock:
            if self._sock is None or self._fatal is not None:
                raise self._fatal or _lost(f"not connected to {self.label}")
            self._pending[rid] = slot  # type: ignore[assignment]
        return slot

    def _take_pending(self) -> dict:
        with self._lock:  # no call registers on a connection whose calls were already failed
            return super()._take_pending()

    def _late(self, value: Any, route: Any) -> None:
        """A reply whose caller gave up: a batch in it goes back to its queue's front."""
        delivery = value[0].get("d")
        if delivery:
            # ``route``: a dequeue's whole header (ordinary frames) or its routing fields (compact)
            self._give_back(delivery, route_fields(route) if P.OP in route else route)

    def _next_rid(self) -> int:
        with self._lock:
            rid = self._next_id
            self._next_id += 1
        return rid

    async def _call(self, header: dict, arrays: Sequence[np.ndarray], wait: Any) -> tuple[dict, list[np.ndarray]]:
        if wait is OPERATION_DEADLINE:
            deadline = self.call_deadline()
            if deadline is not None:
                header[P.DEADLINE] = deadline
            wait = wait_for_reply(deadline)
        rid = self._next_rid()
        header["i"] = rid
        route = header if header.get("o") == P.OP_DEQUEUE else None
        slot = self._register(rid, route)
        if route is not None:
            self._dequeue_routes[rid] = header
        self._local.generation = self._generation
        until = None if wait is None else time.monotonic() + wait
        try:
            self._send(header, arrays)
        except BaseException:
            self._pending.pop(rid, None)
            self._dequeue_routes.pop(rid, None)
            raise
        reply, body = self._await_reply(rid, slot, wait, until, route)
        return reply, decode_arrays(reply["a"], body) if "a" in reply else []

    async def _call_compact(self, op: int, handle: int, timeout: float | None, acks: Sequence[int],
                            payload: bytes, route: dict | None,
                            stamp: tuple[int, int] | None = None) -> tuple[dict, bytearray]:
        if self._sock is None or self._fatal is not None:
            raise self._fatal or _lost(f"not connected to {self.label}")
        rid = self._next_rid()
        frame = encode_compact_request(op, rid, handle, timeout, acks, payload, *(stamp if stamp is not None else ()))
        slot = self._register(rid, route)
        if route is not None:
            self._dequeue_routes[rid] = route
        self._local.generation = self._generation
        wait = wait_for_reply(timeout)
        until = None if wait is None else time.monotonic() + wait
        try:
            self._write_frames([frame], until)
        except BaseException:
            self._pending.pop(rid, None)
            self._dequeue_routes.pop(rid, None)
            raise
        return self._await_reply(rid, slot, wait, until, route)

    def _await_reply(self, rid: int, slot: _Slot, wait: float | None, until: float | None,
                     route: Any) -> tuple[dict, Any]:
        """Wait for a call's reply (``route``: a dequeue's header or routing fields, else None)."""
        try:
            arrived = self._wait_until(slot.done, until)
        except BaseException:  # Ctrl-C while waiting: withdraw the call
            self._withdraw(rid, slot, route)
            raise
        if not arrived:
            self._withdraw(rid, slot, route)
            if self._sock is None:  # the connection went while this call was being made
                raise self._fatal or _lost(f"connection to {self.label} lost")
            raise DeadlineExceededError(f"no reply from {self.label} within {wait:.1f} s")
        reply, body = slot.result()
        if "e" in reply:
            code, message, details = reply["e"]
            raise error_from_code(code, message, details)
        if route is not None and reply.get("d"):
            self._local.in_hand = reply["d"]  # until the caller has it (see take_in_hand)
        return reply, body

    def _withdraw(self, rid: int, slot: _Slot, route: Any) -> None:
        """The caller stopped waiting: withdraw the call, or give back the batch that came first."""
        try:
            if slot.cancel():
                self._send({**P.cancel(rid), P.ID: 0})  # a reply still on its way is given back (_late)
            elif slot.exception() is None:
                self._late(slot.result(), route)
        except QueueServerError:
            pass  # the connection is gone: the server returns held batches itself

    def take_in_hand(self) -> int | None:
        """The delivery id of the batch the calling thread's last dequeue returned, once: the
        synchronous client clears it when the batch is the caller's, and gives it back if the
        caller was interrupted before."""
        delivery = getattr(self._local, "in_hand", None)
        self._local.in_hand = None
        return delivery

    # ----- reading
    def _wait_until(self, ready: Callable[[], bool], until: float | None) -> bool:
        """Wait until ``ready()``, reading replies for every caller while no other thread does.

        Returns False when ``until`` (monotonic time) passed first."""
        cv = self._cv
        with cv:
            while True:
                if ready():
                    return True
                if self._sock is None:
                    return ready()
                if not self._reading:
                    self._reading = True
                    break
                left = TICK_S if until is None else min(until - time.monotonic(), TICK_S)
                if left <= 0:
                    return False
                self._waiters += 1
                try:
                    cv.wait(left)
                finally:
                    self._waiters -= 1
        try:
            return self._read_until(ready, until)
        finally:
            with cv:
                self._reading = False
                cv.notify_all()

    def _read_until(self, ready: Callable[[], bool], until: float | None) -> bool:
        while not ready():
            sock, reader = self._sock, self._reader
            if sock is None or reader is None:
                return ready()
            if until is not None and time.monotonic() >= until:
                return False
            try:
                n = sock.recv_into(reader.get_buffer(-1))
            except BlockingIOError:  # a tick: look at the deadline again
                continue
            except OSError as exc:
                self._on_lost_socket(sock, exc)
                continue
            if not n:
                self._on_lost_socket(sock, None)
                continue
            try:
                reader.buffer_updated(n)
            except BaseException:
                self._break()  # interrupted while handing out replies: the stream's state is unknown
                raise
            if self._waiters:
                with self._cv:
                    self._cv.notify_all()
        return True

    def _read_last_words(self, sock: socket.socket) -> None:
        """The server closed the connection as this thread wrote: read what it said before (an
        error naming why), unless another thread is reading it."""
        with self._cv:
            if self._reading or self._reader is None:
                return
            self._reading = True
        try:
            while True:
                n = sock.recv_into(self._reader.get_buffer(-1), 0, socket.MSG_DONTWAIT)
                if not n:
                    break
                self._reader.buffer_updated(n)
        except OSError:
            pass
        finally:
            with self._cv:
                self._reading = False
                self._cv.notify_all()

    def _on_lost_socket(self, sock: socket.socket, exc: Exception | None) -> None:
        if sock is self._sock:
            self._sock = None
            _shut(sock)
            self._on_lost(exc)
            with self._cv:
                self._cv.notify_all()

    def _give_back(self, delivery: int, route: dict) -> None:
        if getattr(self._local, "in_hand", None) == delivery:
            self._local.in_hand = None
        super()._give_back(delivery, route)


def _shut(sock: socket.socket) -> None:
    """Close a socket, waking a thread blocked reading it at once (a plain close would leave it
    waiting for its tick)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more
    sock.close()


class BlockingClient(AsyncClient, BlockingChannel):
    """The asyncio client's resources, placement and books over a :class:`BlockingChannel`; the
    synchronous client (:mod:`queueserver.sync_client`) runs its methods with :func:`run_blocking`."""

    def _caller(self) -> Any:
        """The caller, for acknowledgements: the calling thread."""
        return ("thread", threading.get_ident())

    async def _route_to(self, home: str) -> "AsyncClient":
        with self._routes_lock:  # two threads opening the same route would make two connections
            return await super()._route_to(home)


def run_blocking(coro: Any) -> Any:
    """Run a coroutine of a blocking client's (or its handles') to its end on this thread.

    Raises:
        RuntimeError: it waited for something else than its own socket (a bug, not a user error).
    """
    try:
        coro.send(None)
    except StopIteration as finished:
        return finished.value
    coro.close()
    raise RuntimeError("a call of the blocking client suspended: it awaited something that is not its socket")


__all__ = ["BlockingChannel", "BlockingClient", "run_blocking", "TICK_S", "HELLO_TIMEOUT_S"]
