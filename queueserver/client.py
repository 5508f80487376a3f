"""Clients: one asyncio client, and a synchronous client that drives it for scripts.

Both speak to a server over one persistent connection with pipelined requests (any number of
calls may be in flight; replies name their request). Values go in as numpy arrays or Python
values and come out as numpy arrays; errors come out as the same classes the server raised.

Delivery is at least once: each dequeued batch stays held on the server until this client
acknowledges it, which happens on the same caller's next dequeue from the same queue, on
``queue.ack()``, or on a clean ``close()``; a batch from ``queue.take()`` only by its own ``ack()``
(see :mod:`queueserver.deliveries`). If the process dies first, the server puts the batch back at
the queue's front.

Example:
    >>> import numpy as np, queueserver as qs
    >>> server = qs.Server.create_local_server()
    >>> with qs.connect(server.target) as c:
    ...     q = c.fifo_queue("q", capacity=10, dtypes=[np.float32], shapes=[[2]])
    ...     q.enqueue_many(np.array([[1., 2.], [3., 4.]], np.float32))
    ...     q.dequeue_many(2).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    >>> server.stop()
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import threading
import warnings
from typing import Any, Sequence
from urllib.parse import urlsplit

import numpy as np

from queueserver.cluster import DeviceSpec, ResourceInfo
from queueserver.core.specs import ComponentSpec, coerce_component
from queueserver.core.timeouts import check_timeout
from queueserver.deliveries import Deliveries
from queueserver.protocol import route_fields
from queueserver.core.wire_dtypes import BFLOAT16, float32_to_bfloat16_bits
from queueserver.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    QueueServerError,
    UnavailableError,
    error_from_code,
)
from queueserver.loops import LoopThread
from queueserver.wire import (
    COMPACT_DEQUEUE, COMPACT_ENQUEUE, COMPACT_MAX_ACKS, COMPACT_MAX_HANDLES, COMPACT_REPLY, PREAMBLE, FrameReader,
    coalesce, compact_layout, decode_arrays, encode_compact_request, encode_frame, encode_raw_frame, set_nodelay,
)

_DEFAULT = object()  # "use the client's operation timeout"
# How long the client waits past a call's own timeout before deciding the server is gone.
_TIMEOUT_GRACE = 30.0


def parse_target(target: str) -> tuple[str, int]:
    """``http://host:port``, ``grpc://host:port`` or ``host:port`` -> ``(host, port)``.

    Raises:
        InvalidArgumentError: the target names no port.
    """
    if "://" not in target:
        target = "http://" + target
    parts = urlsplit(target)
    if parts.hostname is None or parts.port is None:
        raise InvalidArgumentError(f"target {target!r} needs a host and a port, like http://127.0.0.1:2222")
    return parts.hostname, parts.port


class _ClientProtocol(asyncio.BufferedProtocol):
    def __init__(self, client: "AsyncClient") -> None:
        self.client = client
        self.reader = FrameReader(client._on_frame, client._on_stray_error, client._on_fatal,
                                  max_message_bytes=client.max_message_bytes, on_compact=client._on_compact)
        self.transport: asyncio.Transport | None = None
        self.can_write = asyncio.Event()
        self.can_write.set()
        # The transport calls these once per read: the reader's own methods, without a hop.
        self.get_buffer = self.reader.get_buffer
        self.buffer_updated = self.reader.buffer_updated

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        set_nodelay(transport)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.can_write.set()
        self.client._on_lost(exc)


class AsyncClient:
    """An asyncio connection to a queue server. Create it with :func:`connect_async`.

    Args:
        target: the server's address (``server.target``, ``host:port``).
        operation_timeout: default timeout in seconds for every blocking call (the seed's
            ``operation_timeout_in_ms``, in seconds); ``None`` waits for ever.
        token: the server's shared secret (default: ``QUEUESERVER_TOKEN``).
        client_name: shown in the server's logs and status.
    """

    def __init__(self, target: str, *, operation_timeout: float | None = None, token: str | None = None,
                 client_name: str | None = None, max_message_bytes: int = 256 * 1024 * 1024,
                 allow_soft_placement: bool = False, log_device_placement: bool = False,
                 route_direct: bool = True, parent: "AsyncClient | None" = None) -> None:
        self.target = target
        self.operation_timeout = operation_timeout
        self.allow_soft_placement = allow_soft_placement
        self.log_device_placement = log_device_placement
        self.route_direct = route_direct
        self.parent = parent
        self.task = "/job:localhost/task:0"
        self.cluster: dict | None = None
        self._device_stack: list = []
        self._routes: dict[str, "AsyncClient"] = {}
        self._dequeue_routes: dict[int, dict] = {}
        self._out: list | None = None  # frames waiting for this turn's coalesced write
        self.token = token if token is not None else os.environ.get("QUEUESERVER_TOKEN")
        self.client_name = client_name or f"pid {os.getpid()}"
        self.max_message_bytes = max_message_bytes
        self._protocol: _ClientProtocol | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._next_id = 1
        self._deliveries = Deliveries()
        self._watched_tasks: set[asyncio.Task] = set()  # callers whose end hands their batches over
        self._fatal: QueueServerError | None = None
        self._closed = False
        self.server_info: dict = {}
        # The loop this client runs on, kept: asyncio.get_running_loop() costs a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        # Compact-frame handles this connection has bound, one per queue and element layout (see AsyncQueue).
        self._compact_handles: dict[tuple, int] = {}

    # ----- connection
    async def open(self) -> "AsyncClient":
        """Connect and introduce this client (token included)."""
        host, port = parse_target(self.target)
        self._loop = loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_connection(lambda: _ClientProtocol(self), host, port)
        except OSError as exc:
            raise UnavailableError(f"cannot connect to {self.target}: {exc}") from exc
        self._protocol = protocol
        transport.write(PREAMBLE)
        reply, _ = await self.call({"o": "hello", "token": self.token, "client": self.client_name})
        self.server_info = reply
        self.task = reply.get("task", self.task)
        self.cluster = reply.get("cluster")
        return self

    @property
    def connected(self) -> bool:
        """Whether the connection is up."""
        return self._protocol is not None and self._protocol.transport is not None and not self._closed

    # ----- placement
    def device(self, device: Any):
        """Place resources created inside this block: ``with c.device("/job:ps/task:1"): ...``.

        ``device`` is a (partial) task name or a function of a :class:`~queueserver.cluster.ResourceInfo`
        returning one (e.g. :func:`~queueserver.replica_device_setter`). Blocks nest; inner ones
        override the fields they set, as TensorFlow's ``tf.device`` blocks do.
        """
        return _DeviceScope(self._device_stack, device)

    def _placement(self, kind: str, name: str, container: str) -> str:
        spec = DeviceSpec()
        info = ResourceInfo(kind, name, container)
        for entry in self._device_stack:
            value = entry(info) if callable(entry) else entry
            spec = spec.merged_with(DeviceSpec.parse(value))
        return spec.to_string()

    async def _create(self, kind: str, name: str, container: str, header: dict,
                      arrays: Sequence[np.ndarray] = ()) -> tuple[dict, "AsyncClient"]:
        """Create or open a resource where the placement scope says; returns the reply and its route."""
        header.update(n=name, c=container, dev=self._placement(kind, name, container),
                      soft=self.allow_soft_placement)
        reply, _ = await self.call(header, arrays)
        home = reply.get("home", self.task)
        if reply.get("warn"):
            warnings.warn(reply["warn"], stacklevel=3)
        if self.log_device_placement:
            print(f"{kind} {container + '/' if container else ''}{name}: {home}", file=sys.stderr, flush=True)
        return reply, await self._route_to(home)

    async def _route_to(self, home: str) -> "AsyncClient":
        """The connection that reaches ``home`` best: a direct one to its task, when allowed."""
        if not self.route_direct or home == self.task or not self.cluster:
            return self
        route = self._routes.get(home)
        if route is None or not route.connected:
            spec = DeviceSpec.parse(home)
            address = self.cluster[spec.job][spec.task]
            route = AsyncClient(address, operation_timeout=self.operation_timeout, token=self.token,
                                client_name=self.client_name, max_message_bytes=self.max_message_bytes,
                                route_direct=False, parent=self)
            try:
                await route.open()
            except UnavailableError:
                return self  # let the task we talk to forward it, and report the failure itself
            self._routes[home] = route
        return route

    async def close(self) -> None:
        """Acknowledge everything received (except taken batches nobody acknowledged, which go back
        to their queues) and disconnect cleanly."""
        if self._closed:
            return
        for route in list(self._routes.values()):
            await route.close()
        self._routes.clear()
        self._closed = True
        if self._protocol is not None and self._protocol.transport is not None:
            for delivery, route in self._deliveries.close():
                self._give_back(delivery, route)  # taken and never acknowledged: not done with
            try:
                await asyncio.wait_for(self.call({"o": "bye"}), 5.0)
            except (QueueServerError, asyncio.TimeoutError, ConnectionError):
                pass
            if self._protocol.transport is not None:
                self._protocol.transport.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _on_frame(self, header: dict, body: Any) -> None:
        route = self._dequeue_routes.pop(header.get("i"), None)
        fut = self._pending.pop(header.get("i"), None)
        if fut is None:
            if header.get("i") == 0 and "e" in header:
                self._on_stray_error(error_from_code(*header["e"]), header)
            return
        if fut.cancelled():
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
        if fut.cancelled():
            if delivery:  # nobody waits for this element any more: straight back to the queue's front
                self._give_back(delivery, route or {})
            return
        fut.set_result(({"d": delivery} if delivery else {}, body))

    def _on_stray_error(self, error: QueueServerError, header: Any) -> None:
        self._fatal = error

    def _on_fatal(self, error: QueueServerError) -> None:
        self._fatal = error
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()

    def _on_lost(self, exc: Exception | None) -> None:
        error = self._fatal or UnavailableError(
            f"connection to {self.target} lost" + (f": {exc}" if exc else ""))
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)

    def _send(self, header: dict, arrays: Sequence[np.ndarray] = ()) -> None:
        proto = self._protocol
        if proto is None or proto.transport is None:
            raise self._fatal or UnavailableError(f"not connected to {self.target}")
        self._write(proto, encode_frame(header, arrays))

    def _write(self, proto: _ClientProtocol, frames: list) -> None:
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
        if len(frames) == 1:
            proto.transport.write(frames[0])
        else:
            proto.transport.writelines(frames)

    def _flush_out(self, proto: _ClientProtocol) -> None:
        out, self._out = self._out, None
        if out and proto.transport is not None:
            proto.transport.writelines(coalesce(out))

    async def call(self, header: dict, arrays: Sequence[np.ndarray] = (), *,
                   wait: float | None = None) -> tuple[dict, list[np.ndarray]]:
        """Send one request and await its reply; raises the server's error class."""
        proto = self._protocol
        if proto is not None and not proto.can_write.is_set():
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
        proto = self._protocol
        if proto is not None and not proto.can_write.is_set():
            await proto.can_write.wait()
        if proto is None or proto.transport is None:
            raise self._fatal or UnavailableError(f"not connected to {self.target}")
        rid = self._next_id
        frame = encode_compact_request(op, rid, handle, timeout, acks, payload)  # before anything is registered
        self._next_id += 1
        fut = self._loop.create_future()
        self._pending[rid] = fut
        if route is not None:
            self._dequeue_routes[rid] = route
        self._write(proto, [frame])
        return await self._reply(rid, fut, _wait(timeout), route)

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
            raise DeadlineExceededError(f"no reply from {self.target} within {wait:.1f} s") from None
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
        if proto is None or proto.transport is None:
            self._pending.pop(rid, None)
            raise self._fatal or UnavailableError(f"not connected to {self.target}")
        self._write(proto, encode_raw_frame(header, body))
        try:
            return await (fut if wait is None else asyncio.wait_for(fut, wait))
        except asyncio.TimeoutError:
            self._abandon(rid, fut, {"local": True})
            raise DeadlineExceededError(f"no reply from {self.target} within {wait:.1f} s") from None
        except asyncio.CancelledError:
            self._abandon(rid, fut, {"local": True})
            raise

    def _give_back(self, delivery: int, route: dict) -> None:
        """Return a delivered batch nobody will see to the front of its queue (``route``: where it lives).

        If the connection is gone there is nothing to send: the server returns held batches itself.
        """
        try:
            self._send({"o": "return", "k": [delivery], "i": 0, **route})
        except QueueServerError:
            pass

    def _abandon(self, rid: int, fut: asyncio.Future, route: dict) -> None:
        """The caller stopped waiting: withdraw the call on the server, or give back what it delivered.

        If the reply already arrived (cancelled in the same turn), a delivered batch goes back to
        the queue's front; if it has not, the server withdraws the call, and a reply that still
        comes is returned on arrival (see ``_on_frame``).
        """
        try:
            if fut.done() and not fut.cancelled():
                reply = fut.result()[0]
                if "d" in reply:
                    self._give_back(reply["d"], route)
            else:
                fut.cancel()
                self._send({"o": "cancel", "r": rid, "i": 0})
        except QueueServerError:
            pass  # the connection is gone: the server returns held batches itself

    def _timeout(self, timeout: Any) -> float | None:
        """The call's timeout in seconds (the operation timeout by default), checked by the core's
        rule here too: the compact wire spells "no timeout" as NaN, so a NaN must never reach it."""
        owner = self.parent or self
        return check_timeout(owner.operation_timeout if timeout is _DEFAULT else timeout, "a blocking call")

    def _caller(self) -> Any:
        """Who is calling, for acknowledgements (see :mod:`queueserver.deliveries`): the current task,
        watched so that what it received is handed over when it ends."""
        task = asyncio.current_task()
        if task is not None and task not in self._watched_tasks:
            self._watched_tasks.add(task)
            task.add_done_callback(self._caller_ended)
        return task

    def _caller_ended(self, task: asyncio.Task) -> None:
        self._watched_tasks.discard(task)
        self._deliveries.caller_ended(task)

    # ----- resources
    async def _queue(self, kind: str, name: str, capacity: int, dtypes: Any, shapes: Any, names: Any,
                     container: str, **extra: Any) -> "AsyncQueue":
        if not isinstance(capacity, (int, np.integer)) or isinstance(capacity, bool):
            raise InvalidArgumentError(f"capacity must be an integer, got {capacity!r}")
        spec = ComponentSpec(dtypes, shapes, names)  # validates before anything is sent
        header = {"o": "queue", "kind": kind, "cap": int(capacity), "spec": spec.to_wire(), **extra}
        reply, route = await self._create(_QUEUE_TYPE_NAMES[kind], name, container, header)
        return AsyncQueue(self, route, name, container, reply.get("home", self.task),
                          ComponentSpec.from_wire(reply["spec"]), reply["type"])

    async def fifo_queue(self, name: str, capacity: int, dtypes: Any, shapes: Any = None, *,
                         names: Any = None, container: str = "") -> "AsyncQueue":
        """Get or create a first-in first-out queue shared under ``(container, name)``."""
        return await self._queue("fifo", name, capacity, dtypes, shapes, names, container)

    async def random_shuffle_queue(self, name: str, capacity: int, min_after_dequeue: int, dtypes: Any,
                                   shapes: Any = None, *, names: Any = None, seed: int | None = None,
                                   container: str = "") -> "AsyncQueue":
        """Get or create a queue that dequeues in random order, keeping ``min_after_dequeue`` while open."""
        return await self._queue("random_shuffle", name, capacity, dtypes, shapes, names, container,
                                 mad=int(min_after_dequeue), seed=seed)

    async def padding_fifo_queue(self, name: str, capacity: int, dtypes: Any, shapes: Any, *,
                                 names: Any = None, container: str = "") -> "AsyncQueue":
        """Get or create a FIFO queue of variable-size elements, zero-padded when batched."""
        return await self._queue("padding_fifo", name, capacity, dtypes, shapes, names, container)

    async def priority_queue(self, name: str, capacity: int, dtypes: Any, shapes: Any = None, *,
                             names: Any = None, container: str = "") -> "AsyncQueue":
        """Get or create a queue whose elements are ``(int64 priority, *values)``, smallest first."""
        return await self._queue("priority", name, capacity, dtypes, shapes, names, container)

    async def queue(self, name: str, *, container: str = "") -> "AsyncQueue":
        """Open an existing queue by name, whatever its type and spec."""
        reply, _ = await self.call({"o": "spec", "n": name, "c": container})
        if reply.get("kind") != "queue":
            raise InvalidArgumentError(f"'{name}' is a variable, not a queue")
        home = reply.get("home", self.task)
        return AsyncQueue(self, await self._route_to(home), name, container, home,
                          ComponentSpec.from_wire(reply["spec"]), reply["type"])

    async def variable(self, name: str, initial_value: Any = 0.0, *, container: str = "",
                       dtype: Any = None) -> "AsyncVariable":
        """Get or create a variable; it stays uninitialised until ``initialize()``."""
        value = np.asarray(initial_value)
        if dtype is None and value.dtype == np.float64 and not isinstance(initial_value, np.ndarray):
            value = value.astype(np.float32)  # Python floats make float32 variables, as in TensorFlow
        header = {"o": "variable"}
        if dtype is not None:
            header["dtype"] = np.dtype(dtype).name
        reply, route = await self._create("Variable", name, container, header, [value])
        return AsyncVariable(self, route, name, container, reply.get("home", self.task),
                             np.dtype(reply["dtype"]), tuple(reply["shape"]))

    async def conditional_accumulator(self, name: str, shape: Any, dtype: Any = np.float32, *,
                                      container: str = "") -> "AsyncAccumulator":
        """Get or create a conditional accumulator of gradients (TensorFlow's ConditionalAccumulator)."""
        shape = [int(shape)] if isinstance(shape, (int, np.integer)) else [int(d) for d in shape]
        header = {"o": "accumulator", "shape": shape, "dtype": np.dtype(dtype).name}
        reply, route = await self._create("ConditionalAccumulator", name, container, header)
        return AsyncAccumulator(self, route, name, container, reply.get("home", self.task),
                                np.dtype(reply["dtype"]), tuple(reply["shape"]))

    async def reset(self, containers: Sequence[str]) -> int:
        """Free every resource in ``containers``; returns how many were freed."""
        if isinstance(containers, str):
            containers = [containers]
        reply, _ = await self.call({"o": "reset", "cs": list(containers)})
        if reply.get("unreachable"):
            warnings.warn("reset did not reach: " + "; ".join(reply["unreachable"]), stacklevel=2)
        return reply["r"]

    async def status(self, cluster: bool = False) -> dict:
        """This server's queues, variables and counters; with ``cluster``, every task's under ``"cluster"``."""
        reply, _ = await self.call({"o": "status", "cluster": bool(cluster)})
        out = reply["r"]
        if "cluster" in reply:
            out["cluster"] = reply["cluster"]
        return out

    async def report(self, role: str, figures: dict[str, float]) -> None:
        """Tell the server how this client is doing; the status page, ``/status`` and ``/metrics`` show it.

        The server keeps the latest report of each connection (under this client's ``client_name``)
        until the connection closes or the report is a minute old, so call it every second or few,
        not every step: it is one small round trip.

        By convention a loader reports ``role="loader"`` with ``records_per_s`` (and ``bytes_per_s``);
        a trainer reports ``role="trainer"`` with ``samples_per_s``, ``step_s`` and its step split
        into ``wait_data_s``, ``pull_params_s``, ``compute_s`` and ``push_grads_s`` (seconds per step,
        averaged since the last report), which the page stacks to show where the time goes.

        Args:
            role: what this client is, e.g. ``"loader"`` or ``"trainer"``.
            figures: figure name -> finite number (at most 64).

        Raises:
            InvalidArgumentError: a figure is not a finite number.
        """
        # numpy scalars (a loader's np.float32 rate) travel as plain numbers.
        clean = {str(k): v.item() if isinstance(v, np.generic) else v for k, v in figures.items()}
        await self.call({"o": "report", "role": str(role), "fig": clean})


_QUEUE_TYPE_NAMES = {"fifo": "FIFOQueue", "random_shuffle": "RandomShuffleQueue",
                     "padding_fifo": "PaddingFIFOQueue", "priority": "PriorityQueue"}


class _DeviceScope:
    """``with client.device(...)``: pushes a placement on entry, pops it on exit."""

    def __init__(self, stack: list, device: Any) -> None:
        if not callable(device):
            DeviceSpec.parse(device)  # a malformed name fails here, not at the first creation
        self._stack, self._device = stack, device

    def __enter__(self) -> None:
        self._stack.append(self._device)

    def __exit__(self, *exc: Any) -> None:
        self._stack.pop()


def _components(value: Any, spec: ComponentSpec) -> list:
    """Split a user's element (array, tuple, or dict for named queues) into components."""
    n = len(spec.dtypes)
    if isinstance(value, dict):
        if spec.names is None:
            raise InvalidArgumentError("this queue has no component names: pass a tuple, not a dict")
        if set(value) != set(spec.names):
            raise InvalidArgumentError(f"expected components {list(spec.names)}, got {sorted(value)}")
        value = [value[k] for k in spec.names]
    elif n == 1 and not isinstance(value, (tuple, list)):
        value = [value]
    elif n == 1 and isinstance(value, list):
        value = [value]
    elif not isinstance(value, (tuple, list)):
        raise InvalidArgumentError(f"expected a tuple of {n} components, got {type(value).__name__}")
    if len(value) != n:
        raise InvalidArgumentError(f"expected {n} component(s), got {len(value)}")
    return [coerce_component(v, d, i) for i, (v, d) in enumerate(zip(value, spec.dtypes))]


def _compact_payload(value: Any, spec: ComponentSpec, layout: tuple) -> bytes | None:
    """One element's bytes for a compact enqueue, or None when it does not match the spec exactly
    (then the ordinary call sends it, and the server says what is wrong)."""
    if len(layout) == 1 and isinstance(value, (np.ndarray, np.generic)):
        dtype, shape, _ = layout[0]
        if value.dtype == dtype and value.shape == shape:  # the commonest element: one exact array
            return value.tobytes()
    comps = _components(value, spec)
    for arr, (_, shape, _) in zip(comps, layout):
        if arr.shape != shape:
            return None
    return comps[0].tobytes() if len(comps) == 1 else b"".join([c.tobytes() for c in comps])


class _Handle:
    """What every resource handle has: its name, its home task, and the connection that reaches it."""

    def __init__(self, client: AsyncClient, conn: AsyncClient, name: str, container: str, home: str) -> None:
        self.client = client   # owns the options (timeouts)
        self.conn = conn       # carries the calls: the home task directly, or the task we talk to
        self.name = name
        self.container = container
        self.device = home

    def _header(self, op: str, **fields: Any) -> dict:
        return {"o": op, "n": self.name, "c": self.container, "h": self.device, **fields}


class AsyncQueue(_Handle):
    """A handle on a shared queue. All blocking methods take ``timeout`` (seconds)."""

    def __init__(self, client: AsyncClient, conn: AsyncClient, name: str, container: str, home: str,
                 spec: ComponentSpec, type_name: str) -> None:
        super().__init__(client, conn, name, container, home)
        self.spec = spec
        self.type_name = type_name
        self._key = (container, name)
        self._route = {"n": name, "c": container, "h": home}  # where a delivery goes back to
        # Compact frames: None until the first call decides, then 0 (not possible) or the handle.
        self._compact: int | None = None
        self._layout = compact_layout(spec)

    def __repr__(self) -> str:
        where = f"{self.container}/" if self.container else ""
        return f"<{self.type_name} '{where}{self.name}' {self.spec.describe()}>"

    @property
    def dtypes(self) -> tuple:
        """The components' dtypes."""
        return self.spec.dtypes

    @property
    def shapes(self) -> tuple | None:
        """The components' shapes (``None`` entries for unknown sizes)."""
        return self.spec.shapes

    async def enqueue(self, value: Any, *, timeout: Any = _DEFAULT) -> None:
        """Add one element; waits while the queue is full.

        Raises:
            InvalidArgumentError: wrong dtype, shape or component count (nothing is added).
            CancelledError: the queue is closed.
            DeadlineExceededError: no room before the timeout.
        """
        handle = self._compact if self._compact is not None else self._bind()
        if handle:
            payload = _compact_payload(value, self.spec, self._layout)
            if payload is not None:
                await self.conn.call_compact(COMPACT_ENQUEUE, handle, self.client._timeout(timeout), (), payload, None)
                return
        await self._enqueue(value, False, timeout)

    def _bind(self) -> int:
        """This queue's compact-frame handle on its connection, if its calls can be compact: elements
        of fixed size, a server that knows compact frames and has this machine's byte order, and the
        connection reaching the queue's own task (compact calls are never forwarded). Handles are
        per queue and element layout, shared by every handle object of it. Returns it, or 0."""
        conn = self.conn
        info = conn.server_info
        if (self._layout is None or not info.get("compact") or info.get("byteorder") != sys.byteorder
                or conn.task != self.device):
            self._compact = 0
            return 0
        key = (self._key, self._layout)
        handle = conn._compact_handles.get(key)
        if handle is None:
            if len(conn._compact_handles) >= COMPACT_MAX_HANDLES:
                self._compact = 0  # the server's limit: further queues use ordinary frames
                return 0
            handle = len(conn._compact_handles) + 1
            # No reply: the first compact call follows on the same connection, so the server has
            # bound the handle before it reads that call; the server checks the layout then.
            conn._send({"o": "bind", "i": 0, "fh": handle, "n": self.name, "c": self.container,
                        "spec": self.spec.to_wire()})
            conn._compact_handles[key] = handle
        self._compact = handle
        return handle

    async def enqueue_many(self, values: Any, *, timeout: Any = _DEFAULT) -> None:
        """Add a batch of elements (the first dimension counts them), contiguously and in order.

        Raises:
            DeadlineExceededError: the timeout expired; ``error.details["placed"]`` elements were
                added (they stay), the rest were not.
        """
        await self._enqueue(values, True, timeout)

    async def _enqueue(self, value: Any, many: bool, timeout: Any) -> None:
        comps = _components(value, self.spec)
        t = self.client._timeout(timeout)
        header = {"o": "enqueue", "n": self.name, "c": self.container, "h": self.device, "m": many, "t": t}
        await self.conn.call(header, comps, wait=_wait(t))

    async def _dequeue(self, mode: str, n: int | None, timeout: Any, tracked: bool = False,
                       caller: Any = None, take: bool = False) -> Any:
        """The element(s) dequeued; with ``tracked``, ``(value, delivery id)`` (see ``_give_back``).

        The call acknowledges what ``caller`` (default: the current task) is done with, unless it
        is a ``take``, whose batch only its own ``ack()`` acknowledges."""
        conn = self.conn
        books = conn._deliveries
        if caller is None:
            caller = conn._caller()
        key = self._key
        if mode == "one" and not take:
            handle = self._compact if self._compact is not None else self._bind()
            if handle and books.count(key, caller) <= COMPACT_MAX_ACKS:
                return await self._dequeue_compact(handle, timeout, tracked, caller)
        t = self.client._timeout(timeout)
        header = {"o": "dequeue", "n": self.name, "c": self.container, "h": self.device, "md": mode, "nn": n, "t": t}
        done = books.done_with(key, caller)
        if done:
            header["k"] = done
        try:
            reply, arrays = await conn.call(header, wait=_wait(t))
        except BaseException:
            books.restore(key, caller, done)  # perhaps not acknowledged: they go with the next call
            raise
        delivery = reply["d"]
        if take:
            books.taken(delivery, self._route)
        else:
            books.received(key, caller, delivery)
        value = self._value(arrays)
        return (value, delivery) if tracked else value

    async def _dequeue_compact(self, handle: int, timeout: Any, tracked: bool, caller: Any) -> Any:
        """``dequeue()`` in compact frames: the element comes back as bare bytes cut by the spec."""
        conn = self.conn
        books = conn._deliveries
        done = books.done_with(self._key, caller)
        try:
            reply, body = await conn.call_compact(COMPACT_DEQUEUE, handle, self.client._timeout(timeout),
                                                  done, b"", self._route)
        except BaseException:
            books.restore(self._key, caller, done)  # perhaps not acknowledged: they go with the next call
            raise
        delivery = reply["d"]
        if len(body) != COMPACT_REPLY.size + sum(nbytes for _, _, nbytes in self._layout):
            self._give_back(delivery)  # nobody can read it: back to the queue's front, not acknowledged
            raise InvalidArgumentError(f"malformed compact reply: {len(body)} bytes for an element of {self}")
        books.received(self._key, caller, delivery)
        offset = COMPACT_REPLY.size
        arrays = []
        for dtype, shape, nbytes in self._layout:
            arrays.append(np.ndarray(shape, dtype, body, offset) if nbytes else np.empty(shape, dtype))
            offset += nbytes
        value = self._value(arrays)
        return (value, delivery) if tracked else value

    def _value(self, arrays: list) -> Any:
        """What a dequeue returns: the array, a tuple of them, or a dict for named components."""
        if self.spec.names is not None:
            return dict(zip(self.spec.names, arrays))
        return arrays[0] if len(arrays) == 1 else tuple(arrays)

    def _give_back(self, delivery: int) -> None:
        """Return a delivered batch that its caller never received to the front of the queue.

        Runs on the client's loop. The batch is no longer ours to acknowledge: a later call
        must not acknowledge it, and the server puts it back as if our connection had dropped.
        """
        self.conn._deliveries.forget(self._key, delivery)
        self.conn._give_back(delivery, self._route)

    async def dequeue(self, *, timeout: Any = _DEFAULT) -> Any:
        """Remove one element: an array, or a tuple of arrays (a dict for named components).

        Raises:
            OutOfRangeError: the queue is closed and empty.
            DeadlineExceededError: nothing arrived in time (nothing was taken).
        """
        return await self._dequeue("one", None, timeout)

    async def dequeue_many(self, n: int, *, timeout: Any = _DEFAULT) -> Any:
        """Remove exactly ``n`` elements, stacked along a new first axis.

        Raises:
            OutOfRangeError: the queue is closed with fewer than ``n`` left (they stay in it).
        """
        return await self._dequeue("many", int(n), timeout)

    async def dequeue_up_to(self, n: int, *, timeout: Any = _DEFAULT) -> Any:
        """Like :meth:`dequeue_many`, but once the queue is closed returns what is left (1..n)."""
        return await self._dequeue("up_to", int(n), timeout)

    async def take(self, n: int | None = None, *, up_to: bool = False, timeout: Any = _DEFAULT) -> "AsyncDelivery":
        """Dequeue like :meth:`dequeue` (``n`` None), :meth:`dequeue_many` or, with ``up_to``,
        :meth:`dequeue_up_to`, but keep the batch held on the server until :meth:`AsyncDelivery.ack`:
        no other call acknowledges it, and one not acknowledged when the client closes (or dies)
        goes back to the queue. ``async with await q.take(32) as batch:`` acknowledges on success
        and gives the batch back on an exception.
        """
        mode = "one" if n is None else "up_to" if up_to else "many"
        value, delivery = await self._dequeue(mode, None if n is None else int(n), timeout, True, take=True)
        return AsyncDelivery(self, value, delivery)

    async def ack(self) -> None:
        """Acknowledge the batches this caller (the current task) received from this queue by plain
        dequeues, and those of callers that have ended; they will not be redelivered."""
        await self._ack(self.conn._caller())

    async def _ack(self, caller: Any) -> None:
        books = self.conn._deliveries
        ids = books.done_with(self._key, caller)
        if ids:
            try:
                await self.conn.call(self._header("ack", k=ids))
            except BaseException:
                books.restore(self._key, caller, ids)
                raise

    async def _settle(self, delivery: int, ack: bool) -> None:
        """Acknowledge a taken delivery, or give it back to the front of its queue."""
        if not self.conn._deliveries.settled(delivery):
            raise InvalidArgumentError(f"delivery {delivery} from {self} was already acknowledged or given back")
        if ack:
            await self.conn.call(self._header("ack", k=[delivery]))
        else:
            self.conn._give_back(delivery, self._route)

    async def size(self) -> int:
        """Elements in the queue now."""
        reply, _ = await self.conn.call(self._header("size"))
        return reply["r"]

    async def is_closed(self) -> bool:
        """Whether the queue was closed."""
        reply, _ = await self.conn.call(self._header("is_closed"))
        return reply["r"]

    async def close(self, cancel_pending_enqueues: bool = False) -> None:
        """Close the queue; with ``cancel_pending_enqueues`` blocked enqueues fail with Cancelled."""
        await self.conn.call(self._header("close", x=bool(cancel_pending_enqueues)))


class AsyncDelivery:
    """A taken batch (:meth:`AsyncQueue.take`): held on the server until :meth:`ack`.

    Attributes:
        value: what the dequeue returned.
        id: the server's delivery id.
    """

    def __init__(self, queue: AsyncQueue, value: Any, delivery: int) -> None:
        self.queue, self.value, self.id = queue, value, delivery

    def __repr__(self) -> str:
        return f"<AsyncDelivery {self.id} from {self.queue}>"

    async def ack(self) -> None:
        """Done with it: it will not be delivered again.

        Raises:
            InvalidArgumentError: it was already acknowledged or given back.
        """
        await self.queue._settle(self.id, ack=True)

    async def give_back(self) -> None:
        """Not done with it: it goes back to the front of its queue, in order, for the next caller.

        Raises:
            InvalidArgumentError: it was already acknowledged or given back.
        """
        await self.queue._settle(self.id, ack=False)

    async def __aenter__(self) -> Any:
        return self.value

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        await (self.give_back() if exc_type is not None else self.ack())


def _wait(timeout: float | None) -> float | None:
    return None if timeout is None else timeout + _TIMEOUT_GRACE


class _ArrayHandle(_Handle):
    """A handle on a resource holding one array of fixed dtype and shape."""

    kind = ""

    def __init__(self, client: AsyncClient, conn: AsyncClient, name: str, container: str, home: str,
                 dtype: np.dtype, shape: tuple) -> None:
        super().__init__(client, conn, name, container, home)
        self.dtype = dtype
        self.shape = shape

    def __repr__(self) -> str:
        return f"<{self.kind} '{self.name}' {self.dtype.name}{list(self.shape)}>"


class AsyncVariable(_ArrayHandle):
    """A handle on a shared variable; ``device`` names the task it lives on."""

    kind = "Variable"

    async def _op(self, action: str, value: Any = None, wire_dtype: str | None = None) -> Any:
        if wire_dtype is None:
            header, arrays = self._header("var", v=action), [] if value is None else [np.asarray(value)]
        else:
            header, arrays = self._header("var", v=action, wd=wire_dtype), [_to_wire(value, wire_dtype)]
        reply, out = await self.conn.call(header, arrays)
        if action == "is_initialized":
            return reply["r"]
        return out[0]

    async def initialize(self) -> np.ndarray:
        """Set the variable to its initial value (the seed's ``x.initializer``)."""
        return await self._op("initialize")

    async def is_initialized(self) -> bool:
        """Whether the variable holds a value."""
        return await self._op("is_initialized")

    async def read(self) -> np.ndarray:
        """The current value. Raises FailedPreconditionError before ``initialize()``."""
        return await self._op("read")

    async def assign(self, value: Any, *, wire_dtype: str | None = None) -> np.ndarray:
        """Replace the value; returns it.

        ``wire_dtype="bfloat16"`` sends ``value`` as bfloat16, half the bytes of float32: rounded
        to nearest even here, or taken as bit patterns already when it is uint16. The server widens
        it exactly to the variable's float dtype.
        """
        return await self._op("assign", value, wire_dtype)

    async def assign_add(self, delta: Any, *, wire_dtype: str | None = None) -> np.ndarray:
        """Add atomically; returns the new value. ``wire_dtype``: as for :meth:`assign`."""
        return await self._op("assign_add", delta, wire_dtype)

    async def assign_sub(self, delta: Any, *, wire_dtype: str | None = None) -> np.ndarray:
        """Subtract atomically; returns the new value. ``wire_dtype``: as for :meth:`assign`."""
        return await self._op("assign_sub", delta, wire_dtype)


def _to_wire(value: Any, wire_dtype: str) -> np.ndarray:
    """``value`` in the carrier of a marked wire dtype: for bfloat16, uint16 bit patterns.

    A uint16 array is taken as bit patterns already (encoded by the caller); anything else is
    rounded from float32 to nearest bfloat16, ties to even. An unknown ``wire_dtype`` is sent as is,
    for the server to refuse with InvalidArgument naming the resource.
    """
    arr = np.asarray(value)
    if wire_dtype != BFLOAT16 or arr.dtype == np.uint16:
        return arr
    return float32_to_bfloat16_bits(arr)


def _as_float_array(value: Any) -> np.ndarray:
    """A gradient as it should travel: its own float dtype (float16 halves the bytes; the server widens)."""
    arr = np.asarray(value)
    return arr if arr.dtype.kind == "f" else arr.astype(np.float32)


class AsyncAccumulator(_ArrayHandle):
    """A handle on a shared conditional accumulator."""

    kind = "ConditionalAccumulator"

    def _acc(self, action: str, **fields: Any) -> dict:
        return self._header("acc", v=action, **fields)

    async def apply_grad(self, grad: Any, local_step: int = 0, *, wire_dtype: str | None = None) -> bool:
        """Add a gradient computed at ``local_step``; False when it was stale and dropped.

        ``wire_dtype="bfloat16"`` sends the gradient as bfloat16 (half the bytes of float32; a uint16
        array is taken as bit patterns already); the server widens it exactly to float32 and sums in
        float32. float16 needs no marker: pass a float16 array.
        """
        if wire_dtype is None:
            header, arrays = self._acc("apply", step=int(local_step)), [_as_float_array(grad)]
        else:
            header, arrays = self._acc("apply", step=int(local_step), wd=wire_dtype), [_to_wire(grad, wire_dtype)]
        reply, _ = await self.conn.call(header, arrays)
        return reply["r"]

    async def take_grad(self, num_required: int, *, timeout: Any = _DEFAULT) -> np.ndarray:
        """Wait for ``num_required`` fresh gradients; returns their average and advances the global step."""
        t = self.client._timeout(timeout)
        _, arrays = await self.conn.call(self._acc("take", nn=int(num_required), t=t), wait=_wait(t))
        return arrays[0]

    async def set_global_step(self, step: int) -> None:
        """Move the global step forward; gradients for older steps are dropped from now on."""
        await self.conn.call(self._acc("set_step", step=int(step)))

    async def num_accumulated(self) -> int:
        """Fresh gradients accumulated so far."""
        reply, _ = await self.conn.call(self._acc("num"))
        return reply["r"]


class _AsyncConnect:
    """What :func:`connect_async` returns: await it, or use it with ``async with``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def __await__(self):
        return self._client.open().__await__()

    async def __aenter__(self) -> AsyncClient:
        return await self._client.open()

    async def __aexit__(self, *exc: Any) -> None:
        await self._client.close()


def connect_async(target: str, operation_timeout: float | None = None, token: str | None = None, *,
                  operation_timeout_in_ms: int | None = None, client_name: str | None = None,
                  allow_soft_placement: bool = False, log_device_placement: bool = False,
                  route_direct: bool = True) -> _AsyncConnect:
    """Connect an asyncio client: ``async with connect_async(target) as c:`` or ``c = await connect_async(t)``.

    Args:
        target: the server's address.
        operation_timeout: default timeout, in seconds, of every blocking call.
        token: the server's shared secret (default: ``QUEUESERVER_TOKEN``).
        operation_timeout_in_ms: the same default in milliseconds, as TensorFlow's ConfigProto spells it.
        client_name: shown in the server's logs.
        allow_soft_placement: place a resource pinned to a task that does not exist on the task this
            client talks to, with a warning, instead of failing (TensorFlow's soft placement).
        log_device_placement: print where each resource is placed.
        route_direct: in a cluster, send each resource's calls straight to its home task (one hop
            less); False sends everything through ``target``, which forwards.
    """
    if operation_timeout_in_ms is not None:
        operation_timeout = operation_timeout_in_ms / 1000.0
    return _AsyncConnect(AsyncClient(target, operation_timeout=operation_timeout, token=token,
                                     client_name=client_name, allow_soft_placement=allow_soft_placement,
                                     log_device_placement=log_device_placement, route_direct=route_direct))


# ---------------------------------------------------------------- synchronous client
class _LoopThread(LoopThread):
    """The loop thread that runs one synchronous client's coroutines, plus its delivery guard."""

    def __init__(self) -> None:
        super().__init__("queueserver-client")

    def run_delivery(self, coro: Any, give_back: Any, with_id: bool = False) -> Any:
        """Run a tracked dequeue; a batch its caller never receives goes back to the queue.

        ``coro`` returns ``(value, delivery id)``; so does this with ``with_id``, else the value.
        The caller can be interrupted (Ctrl-C) at any moment: before the reply (the call is withdrawn, as in :meth:`run`), or after the batch
        reached this client but before ``run`` returned it. A lock decides which side wins: either
        the loop hands the value over, or the caller has given up and the loop gives it back.
        """
        lock = threading.Lock()
        state: dict[str, Any] = {"handed": None, "abandoned": False}  # handed: the delivery id

        async def guarded() -> Any:
            value, delivery = await coro
            with lock:
                if not state["abandoned"]:
                    state["handed"] = delivery
                    return (value, delivery) if with_id else value
            give_back(delivery)  # the caller gave up while the batch was on its way
            return None

        fut = asyncio.run_coroutine_threadsafe(guarded(), self.loop)
        try:
            return fut.result()
        except BaseException:
            with lock:
                handed, state["abandoned"] = state["handed"], True
            if handed is not None:
                # The batch reached this client; the interruption kept it from the caller.
                self.loop.call_soon_threadsafe(give_back, handed)
            else:
                fut.cancel()  # withdraw the call (a reply still on its way is returned on arrival)
            raise


def _sync(name: str):
    """Make a blocking method that runs the async handle's method of the same name."""
    async_method = getattr(_ASYNC_BY_NAME[name.split(".")[0]], name.split(".")[1])

    @functools.wraps(async_method)
    def method(self, *args: Any, **kwargs: Any) -> Any:
        return self._runner.run(getattr(self._async, async_method.__name__)(*args, **kwargs))

    return method


_ASYNC_BY_NAME = {"AsyncQueue": AsyncQueue, "AsyncVariable": AsyncVariable, "AsyncClient": AsyncClient,
                  "AsyncAccumulator": AsyncAccumulator}


class _SyncHandle:
    """A blocking view of an async handle: the same attributes, methods run on the client's loop."""

    def __init__(self, handle: Any, runner: _LoopThread) -> None:
        self._async, self._runner = handle, runner
        self.name, self.container, self.device = handle.name, handle.container, handle.device

    def __repr__(self) -> str:
        return repr(self._async)


class Queue(_SyncHandle):
    """Blocking handle on a shared queue, with the methods of :class:`AsyncQueue`."""

    def __init__(self, handle: AsyncQueue, runner: _LoopThread) -> None:
        super().__init__(handle, runner)
        self.spec, self.type_name = handle.spec, handle.type_name

    dtypes = property(lambda self: self.spec.dtypes, doc="The components' dtypes.")
    shapes = property(lambda self: self.spec.shapes, doc="The components' shapes.")
    enqueue = _sync("AsyncQueue.enqueue")
    enqueue_many = _sync("AsyncQueue.enqueue_many")

    # The caller, for acknowledgements, is the calling thread (each call runs as a new task on the
    # client's loop): a dequeue acknowledges what this thread received before, never another's.
    def dequeue(self, *, timeout: Any = _DEFAULT) -> Any:
        """Remove one element (see :meth:`AsyncQueue.dequeue`); Ctrl-C at any moment loses nothing."""
        return self._dequeue("one", None, timeout)

    def dequeue_many(self, n: int, *, timeout: Any = _DEFAULT) -> Any:
        """Remove exactly ``n`` elements (see :meth:`AsyncQueue.dequeue_many`)."""
        return self._dequeue("many", int(n), timeout)

    def dequeue_up_to(self, n: int, *, timeout: Any = _DEFAULT) -> Any:
        """Remove up to ``n`` elements (see :meth:`AsyncQueue.dequeue_up_to`)."""
        return self._dequeue("up_to", int(n), timeout)

    def _dequeue(self, mode: str, n: int | None, timeout: Any) -> Any:
        coro = self._async._dequeue(mode, n, timeout, True, _thread_caller())
        return self._runner.run_delivery(coro, self._async._give_back)

    def take(self, n: int | None = None, *, up_to: bool = False, timeout: Any = _DEFAULT) -> "Delivery":
        """A batch held until its :meth:`Delivery.ack` (see :meth:`AsyncQueue.take`);
        ``with q.take(32) as batch:`` acknowledges on success and gives it back on an exception."""
        mode = "one" if n is None else "up_to" if up_to else "many"
        coro = self._async._dequeue(mode, None if n is None else int(n), timeout, True, _thread_caller(), True)
        value, delivery = self._runner.run_delivery(coro, self._async._give_back, with_id=True)
        return Delivery(self._runner, AsyncDelivery(self._async, value, delivery))

    def ack(self) -> None:
        """Acknowledge what this thread received from this queue (see :meth:`AsyncQueue.ack`)."""
        self._runner.run(self._async._ack(_thread_caller()))
    size = _sync("AsyncQueue.size")
    is_closed = _sync("AsyncQueue.is_closed")
    close = _sync("AsyncQueue.close")


def _thread_caller() -> tuple[str, int]:
    return ("thread", threading.get_ident())


class Delivery:
    """A taken batch (:meth:`Queue.take`), held on the server until :meth:`ack`.

    Attributes:
        value: what the dequeue returned.
        id: the server's delivery id.
    """

    def __init__(self, runner: "_LoopThread", delivery: AsyncDelivery) -> None:
        self._runner, self._async = runner, delivery
        self.value, self.id = delivery.value, delivery.id

    def __repr__(self) -> str:
        return f"<Delivery {self.id} from {self._async.queue}>"

    def ack(self) -> None:
        """Done with it: it will not be delivered again (see :meth:`AsyncDelivery.ack`)."""
        self._runner.run(self._async.ack())

    def give_back(self) -> None:
        """Not done with it: back to the front of its queue (see :meth:`AsyncDelivery.give_back`)."""
        self._runner.run(self._async.give_back())

    def __enter__(self) -> Any:
        return self.value

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.give_back() if exc_type is not None else self.ack()


class VariableHandle(_SyncHandle):
    """Blocking handle on a shared variable, with the methods of :class:`AsyncVariable`."""

    def __init__(self, handle: AsyncVariable, runner: _LoopThread) -> None:
        super().__init__(handle, runner)
        self.dtype, self.shape = handle.dtype, handle.shape

    initialize = _sync("AsyncVariable.initialize")
    is_initialized = _sync("AsyncVariable.is_initialized")
    read = _sync("AsyncVariable.read")
    assign = _sync("AsyncVariable.assign")
    assign_add = _sync("AsyncVariable.assign_add")
    assign_sub = _sync("AsyncVariable.assign_sub")

    @property
    def initializer(self):
        """The seed's ``x.initializer``: call it to initialize."""
        return self.initialize

    def eval(self) -> np.ndarray:
        """Alias of :meth:`read`, as the seed's ``x.eval()``."""
        return self.read()


class Accumulator(_SyncHandle):
    """Blocking handle on a shared conditional accumulator, with the methods of :class:`AsyncAccumulator`."""

    def __init__(self, handle: AsyncAccumulator, runner: _LoopThread) -> None:
        super().__init__(handle, runner)
        self.dtype, self.shape = handle.dtype, handle.shape

    apply_grad = _sync("AsyncAccumulator.apply_grad")
    take_grad = _sync("AsyncAccumulator.take_grad")
    set_global_step = _sync("AsyncAccumulator.set_global_step")
    num_accumulated = _sync("AsyncAccumulator.num_accumulated")


def _sync_factory(name: str, wrapper: type):
    """A blocking method that creates a resource with the async client and wraps its handle."""
    async_method = getattr(AsyncClient, name)

    @functools.wraps(async_method)
    def method(self: "Client", *args: Any, **kwargs: Any) -> Any:
        return wrapper(self._runner.run(getattr(self._async, name)(*args, **kwargs)), self._runner)

    return method


class Client:
    """A synchronous connection to a queue server. Create it with :func:`connect`.

    It runs an :class:`AsyncClient` on an event loop in a background thread, so every method
    blocks the caller only.
    """

    def __init__(self, target: str, operation_timeout: float | None = None, token: str | None = None, *,
                 client_name: str | None = None, **options: Any) -> None:
        self._runner = _LoopThread()
        self._async = AsyncClient(target, operation_timeout=operation_timeout, token=token, client_name=client_name,
                                  **options)
        try:
            self._runner.run(self._async.open())
        except BaseException:
            self._runner.stop()
            raise
        self.target = target

    @property
    def operation_timeout(self) -> float | None:
        """Default timeout in seconds of every blocking call."""
        return self._async.operation_timeout

    @operation_timeout.setter
    def operation_timeout(self, value: float | None) -> None:
        self._async.operation_timeout = value

    @property
    def task(self) -> str:
        """The task this client talks to, e.g. ``/job:worker/task:0``."""
        return self._async.task

    def device(self, device: Any):
        """Place resources created inside this block (see :meth:`AsyncClient.device`)."""
        return self._async.device(device)

    fifo_queue = _sync_factory("fifo_queue", Queue)
    random_shuffle_queue = _sync_factory("random_shuffle_queue", Queue)
    padding_fifo_queue = _sync_factory("padding_fifo_queue", Queue)
    priority_queue = _sync_factory("priority_queue", Queue)
    queue = _sync_factory("queue", Queue)
    variable = _sync_factory("variable", VariableHandle)
    conditional_accumulator = _sync_factory("conditional_accumulator", Accumulator)

    reset = _sync("AsyncClient.reset")
    status = _sync("AsyncClient.status")
    report = _sync("AsyncClient.report")

    def close(self) -> None:
        """Acknowledge everything received, disconnect, and stop the client's thread."""
        if self._runner is None:
            return
        try:
            self._runner.run(self._async.close())
        finally:
            self._runner.stop()
            self._runner = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        runner = getattr(self, "_runner", None)
        if runner is not None:
            try:
                runner.loop.call_soon_threadsafe(runner.loop.stop)
            except RuntimeError:
                pass


def connect(target: str, operation_timeout: float | None = None, token: str | None = None, *,
            operation_timeout_in_ms: int | None = None, client_name: str | None = None,
            allow_soft_placement: bool = False, log_device_placement: bool = False,
            route_direct: bool = True) -> Client:
    """Connect a synchronous client: ``with connect(server.target) as c: ...``.

    Args:
        target: the server's address.
        operation_timeout: default timeout, in seconds, of every blocking call (``None``: wait).
        token: the server's shared secret (default: ``QUEUESERVER_TOKEN``).
        operation_timeout_in_ms: the same default in milliseconds, as TensorFlow spells it.
        client_name: shown in the server's logs.
        allow_soft_placement: fall back to the client's task when a placement names a task that
            does not exist, with a warning.
        log_device_placement: print where each resource is placed.
        route_direct: in a cluster, call each resource's home task directly.

    Raises:
        UnavailableError: nothing answers at ``target``.
        UnauthenticatedError: the token is missing or wrong.
    """
    if operation_timeout_in_ms is not None:
        operation_timeout = operation_timeout_in_ms / 1000.0
    return Client(target, operation_timeout, token, client_name=client_name,
                  allow_soft_placement=allow_soft_placement, log_device_placement=log_device_placement,
                  route_direct=route_direct)
