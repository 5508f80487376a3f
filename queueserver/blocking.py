"""The blocking transport: the same calls as :class:`~queueserver.channel.Channel`, made with
socket I/O on the calling thread, so a synchronous call costs a write, a wait and a read of the
socket (no event loop, no thread hand-off). :mod:`queueserver.sync_client` drives the asyncio
client's own code over it: the handles' coroutines never suspend here, and so run to their end on
the caller's thread. Every rule of the protocol (stamps, what a reconnection repeats,
acknowledgements, giving back a batch nobody received) is the asyncio client's, in one place; only
the I/O is here.

Several threads may share one connection. Each sends its own requests (one frame at a time, by
its call's deadline); the replies are read by one of the waiting threads at a time (the reader),
which hands every other thread its reply and wakes it, and when its own reply has come lets
another waiting thread read (the leader/followers pattern). A single thread therefore reads its
own replies directly. A thread whose write is held up because the server waits for this client
to read its answers reads them itself when nobody else does.

Ctrl-C (KeyboardInterrupt) while a call waits withdraws it, as the asyncio client does when a task
is cancelled: the wait is a ``poll`` that takes no bytes, and a batch already on its way goes back
to its queue's front when it arrives. An interruption after bytes were taken from the socket and
before they were handed out, or inside the writing of a frame, leaves the stream in an unknown
state: the connection is dropped then (the server returns every batch it held for it: delivery is
at least once) and the next call reconnects. A batch handed to a call whose caller is interrupted
before it returns is given back (``take_in_hand``, ``sync_client.Queue._delivered``).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from typing import Any, Sequence

import numpy as np

from queueserver import protocol as P
from queueserver.asyncio_client import AsyncClient
from queueserver.channel import HELLO_TIMEOUT_S, Channel, _lost, parse_target, wait_for_reply
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

    __slots__ = ("_state", "_value", "_error", "_channel", "_route")

    def __init__(self, channel: "BlockingChannel", route: Any) -> None:
        self._state = _PENDING
        self._value: Any = None
        self._error: BaseException | None = None
        self._channel, self._route = channel, route  # for a late reply: channel._late(value, route)

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def set_result(self, value: Any) -> None:
        with _SLOT_LOCK:
            if self._state == _PENDING:
                self._value, self._state = value, _DONE
                return
        self._channel._late(value, self._route)  # its caller stopped waiting meanwhile: nobody will see it

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


class _AllReplied:
    """What :meth:`BlockingChannel._withdraw_pending_now` waits for, shaped as a slot for
    ``_wait_until``: every withdrawn call answered."""

    __slots__ = ("_channel",)

    def __init__(self, channel: "BlockingChannel") -> None:
        self._channel = channel

    @property
    def _state(self) -> int:
        return _PENDING if self._channel._replies_left else _DONE


# One lock for every slot's state: held for a few instructions, and a reply's hand-over and its
# caller's giving up must not interleave (one of them owns the batch).
_SLOT_LOCK = threading.Lock()


class BlockingChannel(Channel):
    """A :class:`~queueserver.channel.Channel` whose I/O is blocking socket calls on the caller's
    thread. Its ``async`` methods never suspend: run them with :func:`run_blocking`.

    Locks, always taken in this order: ``_bind_lock`` (a compact handle's number and its bind
    frame), ``_wlock`` (one frame on the wire at a time), then the short ones that call nothing
    while held (``_lock``, ``_cv``, the slots'). Replies are handed out by whoever reads; what a
    reply makes this client send (a late batch given back) is queued in ``_deferred`` and written
    between frames, never from inside the reading of one.

    Args: as :class:`~queueserver.channel.Channel`.
    """

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self._sock: socket.socket | None = None
        self._poller: Any = None           # select.poll of the socket: a wait that takes no bytes
        self._reader: FrameReader | None = None
        self._generation = 0               # connections made so far (the current one's number)
        self._ready = False                # the current connection said hello and bound its handles
        self._wlock = threading.RLock()    # one frame on the wire at a time
        self._frame_open = False           # a frame is part written (under _wlock)
        self._deferred: list[bytes] = []   # frames to send between frames (under _lock)
        # Waiting callers; guards _reading and _waiters. Its lock is taken directly where nothing
        # waits or is woken (a Condition's own __enter__ is a Python call on every reply).
        self._cv_lock = threading.Lock()
        self._cv = threading.Condition(self._cv_lock)
        self._reading = 0                  # the thread reading replies for everyone (0: none)
        self._waiters = 0                  # callers waiting for the reader to hand them their reply
        self._reconnect_lock = threading.Lock()
        self._routes_lock = threading.Lock()
        self._closing = threading.Event()  # wakes a reconnection's backoff when the client closes
        self._local = threading.local()    # per thread: its last call's connection, a batch in hand

    # ----- connection
    @property
    def connected(self) -> bool:
        return self._sock is not None and self._ready and not self._closed

    def _usable(self, sock: socket.socket | None) -> bool:
        """Whether a call may go out on ``sock`` now: the current connection, past its hello (or
        this thread is the one saying it)."""
        return (sock is not None and sock is self._sock and self._fatal is None
                and (self._ready or getattr(self._local, "opening", False)))

    async def open(self, timeout: float | None = None) -> Any:
        try:
            await super().open(timeout)
        finally:
            self._local.opening = False
        self._ready = True
        return self

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
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        reader = FrameReader(self._on_frame, self._on_stray_error, self._on_fatal,
                             max_message_bytes=self.max_message_bytes, on_compact=self._on_compact)
        with self._lock:
            self._sock, self._poller, self._reader = sock, poller, reader
            self._generation += 1
            self._ready = False  # until the hello (and, reconnecting, the binds) went out
        self._local.opening = True
        self._write_frames([PREAMBLE], deadline, sock)
        try:
            reply, _ = await self._call(P.hello(self.token, self.client_name, self.client_id), (),
                                        max(deadline - time.monotonic(), 0.001))
        except DeadlineExceededError:
            raise TimeoutError from None
        if not isinstance(reply.get("version"), str) or not isinstance(reply.get("task"), str):
            raise InvalidArgumentError(f"its hello reply has no version and task: {sorted(reply)}")
        return reply

    def _reconnected(self) -> None:
        super()._reconnected()  # binds the compact handles again, on this thread's new connection
        self._ready = True
        self._local.opening = False

    def _drop(self) -> None:
        self._break()

    def _break(self, sock: socket.socket | None = None) -> None:
        """Close the connection (``sock``, if it is still the current one) without a goodbye: the
        server gives back what it held; the calls waiting on it fail. Holds no other lock."""
        with self._lock:
            current = self._sock
            if current is None or (sock is not None and sock is not current):
                return
            self._sock = None
            self._ready = False
            self._deferred.clear()  # give-backs and cancels of that connection: it returns everything
        _shut(current)
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
        self._closing.set()
        if self._sock is None or not self._ready:
            self._break()  # mid-reconnection: that thread stops at its next step
            return
        try:
            self._withdraw_pending_now()
            await self._call(P.bye(), (), 5.0)
        except (QueueServerError, OSError):
            pass
        self._break()

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
            self._send_later(encode_frame({**P.cancel(rid), P.ID: 0}))
        self._flush_deferred(time.monotonic() + wait)
        with self._cv:
            self._cv.notify_all()
        self._wait_until(_AllReplied(self), time.monotonic() + wait)

    async def _reconnect(self, until: float) -> None:
        """One thread reconnects; the others, who lost the same connection, use its new one."""
        seen = getattr(self._local, "generation", 0)
        with self._reconnect_lock:
            if self.connected and self._generation != seen:
                return  # another thread reconnected after this one's connection was lost
            try:
                await self._reconnect_attempts(until)
            finally:
                self._local.opening = False

    def _now(self) -> float:
        return time.monotonic()

    async def _pause(self, seconds: float) -> None:
        self._closing.wait(seconds)  # close() ends the wait (the attempts then stop)

    async def gather(self, calls: Sequence[Any]) -> list:
        """One after the other: each runs to its end on this thread."""
        return [await call for call in calls]

    # ----- writing
    def _send(self, header: dict, arrays: Sequence[np.ndarray] = (), deadline: float | None = None,
              sock: socket.socket | None = None) -> None:
        """Write one request on ``sock`` (default: the current connection) by ``deadline``."""
        sock = sock if sock is not None else self._sock
        if sock is None or not self._usable(sock):
            raise self._fatal or _lost(f"not connected to {self.label}")
        if header.get("o") == P.OP_BIND:
            self._binds[header.get(P.HANDLE)] = header
        self._write_frames(encode_frame(header, arrays), deadline, sock)

    def _send_later(self, frame: list) -> None:
        """Queue a frame this client sends of its own accord (a cancel, a batch given back): it
        goes out between other frames (see :meth:`_flush_deferred`)."""
        with self._lock:
            if self._sock is not None:
                self._deferred.extend(frame)

    def _flush_deferred(self, deadline: float | None = None) -> None:
        """Write the queued frames, unless another thread is writing (it writes them after its own)."""
        while self._deferred and self._wlock.acquire(blocking=False):
            try:
                if self._frame_open:
                    return  # this thread is inside a frame of its own: it writes them after it
                sock = self._sock
                if sock is None:
                    return
                self._write_frames([], deadline, sock)
            except QueueServerError:
                return  # the connection is gone: the server returns held batches itself
            finally:
                self._wlock.release()

    def _write_frames(self, frames: list, deadline: float | None, sock: socket.socket) -> None:
        """Write whole frames on ``sock`` (queued deferred frames first and after), or drop the
        connection: a frame cut short would corrupt the stream.

        Raises:
            UnavailableError: ``sock`` is gone (``connection_lost``: the call may be repeated).
            DeadlineExceededError: the server took nothing for longer than ``deadline`` allowed.
        """
        wlock = self._wlock
        if not wlock.acquire(blocking=False):  # another thread is writing: wait for it, by the deadline
            left = -1 if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not wlock.acquire(timeout=left):
                raise DeadlineExceededError(f"could not write to {self.label} within its deadline: another"
                                            " call's frame is still being written (the server takes no data)")
        failure: QueueServerError | None = None
        try:
            if sock is not self._sock:
                raise self._fatal or _lost(f"connection to {self.label} lost")
            if self._deferred:
                with self._lock:
                    before, self._deferred = self._deferred, []
                frames = [*before, *frames]
            failure = self._write_all(sock, frames, deadline)
            while failure is None and self._deferred and sock is self._sock:
                with self._lock:
                    after, self._deferred = self._deferred, []
                failure = self._write_all(sock, after, deadline)
        finally:
            self._frame_open = False
            wlock.release()
        if failure is not None:
            if not getattr(failure, "connection_lost", False):
                self._break(sock)
                raise failure
            self._read_last_words(sock)  # why the server closed it, if it said
            self._break(sock)
            raise self._fatal or self._stray or failure

    def _write_all(self, sock: socket.socket, frames: list, deadline: float | None) -> QueueServerError | None:
        """Write ``frames`` (``_wlock`` held); returns the error that ends the connection, if any."""
        if not frames:
            return None
        self._frame_open = True
        try:
            first = frames[0]
            if len(frames) == 1 and type(first) is bytes:  # the common small call: one system call
                try:
                    sent = sock.send(first)
                except BlockingIOError:
                    sent = 0
                if sent == len(first):
                    self._frame_open = False
                    return None
                views = [memoryview(first)[sent:]]
            else:
                views = [memoryview(f).cast("B") for f in frames]
            while views:
                try:
                    sent = sock.sendmsg(views)
                except BlockingIOError:  # a tick with the server's buffers full
                    if deadline is not None and time.monotonic() >= deadline:
                        return DeadlineExceededError(f"{self.label} took no data for too long; dropped the connection")
                    self._read_while_writing(sock)  # it may wait for us to read its replies
                    continue
                while sent:
                    head = views[0]
                    if sent >= len(head):
                        sent -= len(head)
                        views.pop(0)
                    else:
                        views[0] = head[sent:]
                        sent = 0
            self._frame_open = False
            return None
        except OSError as exc:
            return _lost(f"connection to {self.label} lost: {exc}")
        except BaseException:
            # Interrupted (Ctrl-C) with the frame perhaps part written: the stream is unusable.
            self._break(sock)
            raise

    # ----- calls
    def _register(self, route: Any) -> tuple[int, _Slot, socket.socket]:
        """A request id and a slot for its reply, on the current connection: ``(rid, slot, sock)``
        (a connection lost before this fails the call here; one lost after, in ``_on_lost``)."""
        slot = _Slot(self, route)
        with self._lock:
            sock = self._sock
            if not self._usable(sock):
                raise self._fatal or _lost(f"not connected to {self.label}")
            rid = self._next_id
            self._next_id += 1
            self._pending[rid] = slot  # type: ignore[assignment]
            if route is not None:
                self._dequeue_routes[rid] = route
            self._local.generation = self._generation
        return rid, slot, sock  # type: ignore[return-value]  # usable: not None

    def _take_pending(self) -> dict:
        with self._lock:  # no call registers on a connection whose calls were already failed
            return super()._take_pending()

    def _late(self, value: Any, route: Any) -> None:
        """A reply whose caller gave up: a batch in it goes back to its queue's front."""
        delivery = value[0].get("d")
        if delivery:
            # ``route``: a dequeue's whole header (ordinary frames) or its routing fields (compact)
            self._give_back(delivery, route_fields(route) if P.OP in route else route)

    async def _call(self, header: dict, arrays: Sequence[np.ndarray], wait: Any) -> tuple[dict, list[np.ndarray]]:
        wait = self._stamp_deadline(header, wait)
        route = header if header.get("o") == P.OP_DEQUEUE else None
        rid, slot, sock = self._register(route)
        header["i"] = rid
        until = None if wait is None else time.monotonic() + wait
        try:
            self._send(header, arrays, until, sock)
        except BaseException:
            self._withdraw(rid, slot, route)  # it may have gone out: a batch it brings goes back
            raise
        reply, body = self._await_reply(rid, slot, wait, until, route)
        return reply, decode_arrays(reply["a"], body) if "a" in reply else []

    async def _call_compact(self, op: int, handle: int, timeout: float | None, acks: Sequence[int],
                            payload: bytes, route: dict | None,
                            stamp: tuple[int, int] | None = None) -> tuple[dict, bytearray]:
        rid, slot, sock = self._register(route)
        wait = wait_for_reply(timeout)
        until = None if wait is None else time.monotonic() + wait
        try:
            frame = encode_compact_request(op, rid, handle, timeout, acks, payload,
                                           *(stamp if stamp is not None else ()))
            self._write_frames([frame], until, sock)
        except BaseException:
            self._withdraw(rid, slot, route)
            raise
        return self._await_reply(rid, slot, wait, until, route)

    def _await_reply(self, rid: int, slot: _Slot, wait: float | None, until: float | None,
                     route: Any) -> tuple[dict, Any]:
        """Wait for a call's reply (``route``: a dequeue's header or routing fields, else None).

        An interruption (Ctrl-C) at any point before a delivered batch is recorded as in this
        thread's hand withdraws the call or gives the batch back."""
        handed = False
        try:
            if not self._wait_until(slot, until):
                if self._sock is None:  # the connection went while this call was being made
                    raise self._fatal or _lost(f"connection to {self.label} lost")
                raise DeadlineExceededError(f"no reply from {self.label} within {wait:.1f} s")
            if slot._error is not None:
                raise slot._error
            reply, body = slot._value
            if "e" in reply:
                code, message, details = reply["e"]
                raise error_from_code(code, message, details)
            if route is not None and reply.get("d"):
                self._local.in_hand = reply["d"]  # until the caller has it (see Queue._delivered)
            handed = True
            return reply, body
        except BaseException:
            if not handed:
                self._withdraw(rid, slot, route)
            raise

    def _withdraw(self, rid: int, slot: _Slot, route: Any) -> None:
        """The caller stopped waiting: withdraw the call, or give back the batch that came first."""
        if slot.cancel():
            self._send_later(encode_frame({**P.cancel(rid), P.ID: 0}))  # a late reply is given back (_late)
        elif slot.exception() is None:
            self._late(slot.result(), route)
        self._flush_deferred()

    def take_in_hand(self) -> int | None:
        """The delivery id of the batch the calling thread's last dequeue returned, once: the
        synchronous client gives it back if its caller was interrupted before receiving it."""
        delivery = getattr(self._local, "in_hand", None)
        self._local.in_hand = None
        return delivery

    def _give_back(self, delivery: int, route: dict) -> None:
        """Return a batch nobody will see; written between frames (this may run while a reply is
        being read)."""
        if getattr(self._local, "in_hand", None) == delivery:
            self._local.in_hand = None
        self._send_later(encode_frame({**P.give_back(route, [delivery]), P.ID: 0}))

    # ----- reading
    def _wait_until(self, slot: "_Slot | _AllReplied", until: float | None) -> bool:
        """Wait until ``slot`` is no longer pending (its ``_state`` is read directly: this runs on
        every call), reading replies for every caller while no other thread does.

        Returns False when ``until`` (monotonic time) passed first."""
        with self._cv_lock:  # the Condition's lock: cv.wait below releases it
            while True:
                if slot._state:
                    return True
                if self._sock is None:
                    return bool(slot._state)
                if not self._reading:
                    self._reading = threading.get_ident()
                    break
                left = TICK_S if until is None else min(until - time.monotonic(), TICK_S)
                if left <= 0:
                    return False
                self._waiters += 1
                try:
                    self._cv.wait(left)
                finally:
                    self._waiters -= 1
        # This thread reads, and hands out, replies until the slot is answered.
        try:
            while not slot._state:
                sock, poller = self._sock, self._poller
                if sock is None:
                    return bool(slot._state)
                wait_ms = TICK_S * 1000
                if until is not None:
                    left = until - time.monotonic()
                    if left <= 0:
                        return False
                    wait_ms = min(wait_ms, left * 1000)
                # Wait without taking any bytes: an interruption here leaves the stream whole.
                if not poller.poll(wait_ms):
                    continue
                self._read_once(sock)
                if self._deferred:
                    self._flush_deferred()
                if self._waiters:
                    with self._cv_lock:
                        self._cv.notify_all()
            return True
        finally:
            with self._cv_lock:
                self._reading = 0
                if self._waiters:  # the next of them reads (a thread waits only after counting itself)
                    self._cv.notify_all()

    def _read_once(self, sock: socket.socket, flags: int = 0) -> bool:
        """Read what the socket has and hand out the frames it completes; False when it had nothing."""
        reader = self._reader
        try:
            n = sock.recv_into(reader.get_buffer(-1), 0, flags)  # type: ignore[union-attr]
            if n:
                reader.buffer_updated(n)  # type: ignore[union-attr]
        except BlockingIOError:
            return False
        except OSError as exc:
            self._on_lost_socket(sock, exc)
            return False
        except BaseException:
            self._break(sock)  # interrupted with bytes perhaps taken but not handed out
            raise
        if not n:
            self._on_lost_socket(sock, None)
            return False
        return True

    def _read_while_writing(self, sock: socket.socket) -> None:
        """A write is blocked: read the replies waiting, unless another thread reads them (a
        server holds back from reading a client that does not read its answers)."""
        me = threading.get_ident()
        with self._cv:
            if self._reading and self._reading != me:
                return
            took, self._reading = not self._reading, me
        try:
            while sock is self._sock and self._read_once(sock, socket.MSG_DONTWAIT):
                pass
        finally:
            if took:
                with self._cv:
                    self._reading = 0
                    self._cv.notify_all()

    def _read_last_words(self, sock: socket.socket) -> None:
        """The server closed the connection as this thread wrote: read what it said before (an
        error naming why), unless another thread is reading it."""
        with self._cv:
            if self._reading:
                return
            self._reading = threading.get_ident()
        try:
            while sock is self._sock and self._read_once(sock, socket.MSG_DONTWAIT):
                pass
        finally:
            with self._cv:
                self._reading = 0
                self._cv.notify_all()

    def _on_lost_socket(self, sock: socket.socket, exc: Exception | None) -> None:
        with self._lock:
            if sock is not self._sock:
                return
            self._sock = None
            self._ready = False
            self._deferred.clear()
        _shut(sock)
        self._on_lost(exc)
        with self._cv:
            self._cv.notify_all()


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
