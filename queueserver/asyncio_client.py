"""The asyncio client: a :class:`~queueserver.channel.Channel` plus resources, placement and the
acknowledgement books (:mod:`queueserver.deliveries`). Its handles are in :mod:`queueserver.handles`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import warnings
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from queueserver import protocol as P
from queueserver.channel import DEFAULT, HELLO_TIMEOUT_S, Channel
from queueserver.cluster import ClusterSpec, DeviceSpec, ResourceInfo
from queueserver.core.specs import ComponentSpec, as_dtype, as_shape, coerce_value, default_array, dtype_name
from queueserver.core.timeouts import check_timeout
from queueserver.deliveries import Deliveries
from queueserver.errors import InvalidArgumentError, UnavailableError
from queueserver.options import RECONNECT_S, ClientOptions
from queueserver.handles import AsyncAccumulator, AsyncQueue, AsyncSparseAccumulator, AsyncVariable

if TYPE_CHECKING:
    from queueserver.partitioned import AsyncPartitionedVariable


class AsyncClient(Channel):
    """An asyncio connection to a queue server. Create it with :func:`connect_async`.

    Args:
        target: the server's address (``server.target``, ``host:port``).
        options: a :class:`~queueserver.options.ClientOptions`; or its fields as keywords
            (``operation_timeout`` in seconds, ``token``, ``client_name``, ...), checked here.
        parent: the client this one is a direct route of (it takes its operation timeout).
    """

    def __init__(self, target: str, options: ClientOptions | None = None, *,
                 parent: "AsyncClient | None" = None, **fields: Any) -> None:
        options = options if options is not None else ClientOptions(**fields)
        super().__init__(target, token=options.token, client_name=options.client_name,
                         max_message_bytes=options.max_message_bytes)
        self.options = options
        self.operation_timeout = options.operation_timeout  # may be changed later (Client.operation_timeout)
        self.allow_soft_placement = options.allow_soft_placement
        self.log_device_placement = options.log_device_placement
        self.route_direct = options.route_direct
        self.parent = parent
        self._device_stack: list = []
        self._container_stack: list[str] = []
        self._routes: dict[str, "AsyncClient"] = {}
        self._deliveries = Deliveries(_watch_task)
        self.reconnect_s = RECONNECT_S if options.reconnect else None
        # Compact-frame handles this connection has bound, one per queue and element layout (see AsyncQueue).
        self._compact_handles: dict[tuple, int] = {}

    async def open(self, timeout: float | None = None) -> "AsyncClient":
        """Connect and say hello, within the operation timeout when it is shorter than the hello's
        own limit (see :meth:`Channel.open`)."""
        if timeout is None and self.options.operation_timeout is not None:
            timeout = min(max(self.options.operation_timeout, 0.001), HELLO_TIMEOUT_S)
        await super().open(timeout)
        return self

    # ----- placement
    def device(self, device: Any):
        """Place resources created inside this block: ``with c.device("/job:ps/task:1"): ...``.

        ``device`` is a (partial) device name, a :class:`~queueserver.cluster.DeviceSpec`, a
        function of a :class:`~queueserver.cluster.ResourceInfo` returning a name (e.g.
        :func:`~queueserver.replica_device_setter`), or ``None``, which clears the enclosing
        blocks. Blocks nest as TensorFlow's ``tf.device`` blocks do: the innermost applies first,
        and each enclosing name fills only the fields still unset; a function sees the device the
        inner blocks gave (``ResourceInfo.device``) and its answer replaces it.
        """
        return _DeviceScope(self._device_stack, device)

    def _placement(self, kind: str, name: str, container: str) -> str:
        spec = DeviceSpec()
        for entry in reversed(self._device_stack):
            if entry is None:
                break  # device(None): the blocks around it do not apply
            if isinstance(entry, DeviceSpec):
                spec = entry.merged_with(spec)
            else:
                spec = DeviceSpec.parse(entry(ResourceInfo(kind, name, container, spec.to_string())))
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
            if spec.job is None or spec.task is None:
                return self  # not a task name: the task we talk to knows
            address = ClusterSpec(self.cluster).task_address(spec.job, spec.task)
            route = type(self)(address, dataclasses.replace(self.options, route_direct=False), parent=self)
            route.label = f"task {home} at {address}"
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
        for link in list(self._routes.values()):
            await link.close()
        self._routes.clear()
        if self.connected:
            for delivery, route in self._deliveries.close():
                self._give_back(delivery, route)  # taken and never acknowledged: not done with
        await super().close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _timeout(self, timeout: Any) -> float | None:
        """The call's timeout in seconds (the operation timeout by default), checked by the core's
        rule here too: the compact wire spells "no timeout" as NaN, so a NaN must never reach it."""
        if timeout is DEFAULT:
            timeout = (self.parent or self).operation_timeout
        return check_timeout(timeout, "a blocking call")

    def reconnect_window(self) -> float | None:
        """A lost connection is retried within the operation timeout (:data:`RECONNECT_S` without one)."""
        if self.reconnect_s is None:
            return None
        timeout = (self.parent or self).operation_timeout
        return RECONNECT_S if timeout is None else timeout

    def _reconnected(self) -> None:
        """A new connection: the deliveries the lost one held went back to their queues (the
        server returns what a dropped connection held), so none of them can be acknowledged."""
        self._deliveries.close()
        super()._reconnected()

    def call_deadline(self) -> float | None:
        """Calls that do not block (reads, assigns, creations) end within the operation timeout."""
        return (self.parent or self).operation_timeout

    def _caller(self) -> Any:
        """Who is calling, for acknowledgements (see :mod:`queueserver.deliveries`): the current task."""
        return asyncio.current_task()

    # ----- resources
    def container(self, name: str) -> Any:
        """Create and open resources inside this block in container ``name`` (TensorFlow 1's
        ``with tf.container(name):``); an explicit ``container=`` still wins. Blocks nest."""
        if not isinstance(name, str):
            raise TypeError(f"a container name is a string, got {type(name).__name__}")
        return _ContainerScope(self._container_stack, name)

    def _container(self, container: str | None) -> str:
        if container is not None:
            return container
        return self._container_stack[-1] if self._container_stack else ""

    async def _queue(self, kind: str, name: str | None, capacity: int | None, dtypes: Any, shapes: Any, names: Any,
                     container: str | None, shared_name: str | None = None, **extra: Any) -> "AsyncQueue":
        # TensorFlow 1's spelling: shared_name= is the name the queue is shared under (name= is
        # then only its op's name); without it, name is.
        key = shared_name if shared_name is not None else name
        if not key:
            raise TypeError(f"{_QUEUE_TYPE_NAMES[kind]} needs a name (or shared_name=) to be shared under")
        name = key
        container = self._container(container)
        if dtypes is None:
            raise TypeError(f"{_QUEUE_TYPE_NAMES[kind]} needs dtypes")
        if not isinstance(capacity, (int, np.integer)) or isinstance(capacity, bool):
            raise InvalidArgumentError(f"capacity must be an integer, got {capacity!r}")
        spec = ComponentSpec(dtypes, shapes, names)  # validates before anything is sent
        header = P.create_queue(kind, int(capacity), spec.to_wire(), **extra)
        reply, route = await self._create(_QUEUE_TYPE_NAMES[kind], name, container, header)
        return AsyncQueue(self, route, name, container, reply.get("home", self.task),
                          ComponentSpec.from_wire(reply["spec"]), reply["type"])

    async def fifo_queue(self, name: str | None = None, capacity: int | None = None, dtypes: Any = None,
                         shapes: Any = None, *, names: Any = None, container: str | None = None,
                         shared_name: str | None = None) -> "AsyncQueue":
        """Get or create a first-in first-out queue shared under ``(container, name)``
        (``shared_name=`` names it as TensorFlow 1 does; ``container`` defaults to the
        :meth:`container` block's, else ``""``)."""
        return await self._queue("fifo", name, capacity, dtypes, shapes, names, container, shared_name)

    async def random_shuffle_queue(self, name: str | None = None, capacity: int | None = None,
                                   min_after_dequeue: int = 0, dtypes: Any = None, shapes: Any = None, *,
                                   names: Any = None, seed: int | None = None, container: str | None = None,
                                   shared_name: str | None = None) -> "AsyncQueue":
        """Get or create a queue that dequeues in random order, keeping ``min_after_dequeue`` while open."""
        return await self._queue("random_shuffle", name, capacity, dtypes, shapes, names, container, shared_name,
                                 mad=int(min_after_dequeue), seed=seed)

    async def padding_fifo_queue(self, name: str | None = None, capacity: int | None = None, dtypes: Any = None,
                                 shapes: Any = None, *, names: Any = None, container: str | None = None,
                                 shared_name: str | None = None) -> "AsyncQueue":
        """Get or create a FIFO queue of variable-size elements, zero-padded when batched."""
        return await self._queue("padding_fifo", name, capacity, dtypes, shapes, names, container, shared_name)

    async def priority_queue(self, name: str | None = None, capacity: int | None = None, dtypes: Any = None,
                             shapes: Any = None, *, names: Any = None, container: str | None = None,
                             shared_name: str | None = None) -> "AsyncQueue":
        """Get or create a queue whose elements are ``(int64 priority, *values)``, smallest first."""
        return await self._queue("priority", name, capacity, dtypes, shapes, names, container, shared_name)

    async def queue(self, name: str, *, container: str | None = None) -> "AsyncQueue":
        """Open an existing queue by name, whatever its type and spec."""
        container = self._container(container)
        reply, _ = await self.call(P.spec(name, container))
        if reply.get("kind") != "queue":
            raise InvalidArgumentError(f"'{name}' is a variable, not a queue")
        home = reply.get("home", self.task)
        return AsyncQueue(self, await self._route_to(home), name, container, home,
                          ComponentSpec.from_wire(reply["spec"]), reply["type"])

    async def variable(self, name: str, initial_value: Any = 0.0, *, container: str | None = None,
                       dtype: Any = None) -> "AsyncVariable":
        """Get or create a variable; it stays uninitialised until ``initialize()``.

        Without ``dtype`` the variable takes TensorFlow's dtype for ``initial_value`` (Python floats
        float32, Python ints int32, NumPy values their own: see ``core.specs.default_array``); with
        it, the initial value must convert without changing kind (``1.5`` into int32 is refused,
        never truncated), as every later update.
        """
        container = self._container(container)
        if dtype is None:
            value, header = default_array(initial_value), P.create_variable()
        else:
            dt = as_dtype(dtype)  # converted here, where a Python value is still one (``[]`` takes the dtype)
            value = coerce_value(initial_value, dt, f"Variable '{name}' initial value")
            header = P.create_variable(dtype_name(dt))
        reply, route = await self._create("Variable", name, container, header, [value])
        return AsyncVariable(self, route, name, container, reply.get("home", self.task),
                             np.dtype(reply["dtype"]), tuple(reply["shape"]))

    async def conditional_accumulator(self, name: str, shape: Any, dtype: Any = np.float32, *,
                                      container: str | None = None) -> "AsyncAccumulator":
        """Get or create a conditional accumulator of gradients (TensorFlow's ConditionalAccumulator)."""
        container = self._container(container)
        header = P.create_accumulator(_wire_shape(shape), dtype_name(as_dtype(dtype)))
        reply, route = await self._create("ConditionalAccumulator", name, container, header)
        return AsyncAccumulator(self, route, name, container, reply.get("home", self.task),
                                np.dtype(reply["dtype"]), tuple(reply["shape"]))

    async def sparse_conditional_accumulator(self, name: str, shape: Any, dtype: Any = np.float32, *,
                                             reduction_type: str = "MEAN",
                                             container: str | None = None) -> "AsyncSparseAccumulator":
        """Get or create an accumulator of sparse gradients of a ``shape`` table (TensorFlow's
        SparseConditionalAccumulator): ``reduction_type`` "MEAN" averages each row over the
        gradients that touched it, "SUM" sums."""
        container = self._container(container)
        header = P.create_accumulator(_wire_shape(shape), dtype_name(as_dtype(dtype)), str(reduction_type))
        reply, route = await self._create("SparseConditionalAccumulator", name, container, header)
        return AsyncSparseAccumulator(self, route, name, container, reply.get("home", self.task),
                                      np.dtype(reply["dtype"]), tuple(reply["shape"]))

    async def partitioned_variable(self, name: str, shape: Sequence[int], dtype: Any = np.float32,
                                   **options: Any) -> "AsyncPartitionedVariable":
        """Get or create a table stored as row shards ``name/part_i`` over the ps tasks (TensorFlow's
        partitioned variables); ``options`` as :func:`queueserver.partitioned.partitioned_variable`."""
        from queueserver.partitioned import partitioned_variable

        return await partitioned_variable(self, name, shape, dtype, **options)

    async def reset(self, containers: Sequence[str] | None = None) -> int:
        """Free every resource in ``containers``; returns how many were freed. ``None`` or ``[]``
        resets the default container ``""``, as TensorFlow's ``Session.reset(target)`` does."""
        if isinstance(containers, str):
            containers = [containers]
        reply, _ = await self.call(P.reset(list(containers or [""])))
        if reply.get("unreachable"):
            warnings.warn("reset did not reach: " + "; ".join(reply["unreachable"]), stacklevel=2)
        return reply["r"]

    async def status(self, cluster: bool = False) -> dict:
        """This server's queues, variables and counters; with ``cluster``, every task's under ``"cluster"``."""
        reply, _ = await self.call(P.status(bool(cluster)))
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
        await self.call(P.report(str(role), clean))


def _wire_shape(shape: Any) -> list | None:
    """An accumulator's shape as it travels: a list of dimensions, -1 for an unknown one; None
    for an unknown rank (the server says what it takes)."""
    dims = as_shape(shape.tolist() if isinstance(shape, np.ndarray) else shape)
    return None if dims is None else [-1 if d is None else d for d in dims]


def _watch_task(caller: Any, callback: Callable[[Any], None]) -> None:
    """What a task received is handed over when it ends (threads, the synchronous callers, stay)."""
    if isinstance(caller, asyncio.Task):
        caller.add_done_callback(callback)


_QUEUE_TYPE_NAMES = {"fifo": "FIFOQueue", "random_shuffle": "RandomShuffleQueue",
                     "padding_fifo": "PaddingFIFOQueue", "priority": "PriorityQueue"}


class _ContainerScope:
    """``with client.container(name)``: pushes a default container on entry, pops it on exit."""

    def __init__(self, stack: list, name: str) -> None:
        self._stack, self._name = stack, name

    def __enter__(self) -> None:
        self._stack.append(self._name)

    def __exit__(self, *exc: Any) -> None:
        self._stack.pop()


class _DeviceScope:
    """``with client.device(...)``: pushes a placement on entry, pops it on exit."""

    def __init__(self, stack: list, device: Any) -> None:
        if device is not None and not callable(device):
            device = DeviceSpec.parse(device)  # a malformed name fails here, not at the first creation
        self._stack, self._device = stack, device

    def __enter__(self) -> None:
        self._stack.append(self._device)

    def __exit__(self, *exc: Any) -> None:
        self._stack.pop()


class _AsyncConnect:
    """What :func:`connect_async` returns: await it, or use it with ``async with``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def __await__(self):
        return self._open().__await__()

    async def _open(self) -> AsyncClient:
        await self._client.open()
        return self._client

    async def __aenter__(self) -> AsyncClient:
        return await self._open()

    async def __aexit__(self, *exc: Any) -> None:
        await self._client.close()


def connect_async(target: str, operation_timeout: float | None = None, token: str | None = None, *,
                  operation_timeout_in_ms: int | None = None, client_name: str | None = None,
                  allow_soft_placement: bool = False, log_device_placement: bool = False,
                  route_direct: bool = True, reconnect: bool = True) -> _AsyncConnect:
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
        reconnect: when the server goes away (a restart), connect again by itself within the
            operation timeout and repeat what may be repeated (see :class:`~queueserver.options.ClientOptions`).
    """
    if operation_timeout_in_ms is not None:
        operation_timeout = operation_timeout_in_ms / 1000.0
    return _AsyncConnect(AsyncClient(target, operation_timeout=operation_timeout, token=token,
                                     client_name=client_name, allow_soft_placement=allow_soft_placement,
                                     log_device_placement=log_device_placement, route_direct=route_direct,
                                     reconnect=reconnect))
