"""The synchronous client: the asyncio client's own code over a blocking transport
(:mod:`queueserver.blocking`), so every method does its socket I/O on the caller's thread and
blocks only its caller; several threads may share one client. A batch whose caller is
interrupted (Ctrl-C) goes back to its queue.
"""

from __future__ import annotations

import atexit
import functools
import threading
import weakref
from typing import Any

import numpy as np

from queueserver.asyncio_client import AsyncClient
from queueserver.blocking import BlockingClient, run_blocking
from queueserver.channel import DEFAULT
from queueserver.errors import FailedPreconditionError
from queueserver.handles import AsyncAccumulator, AsyncDelivery, AsyncQueue, AsyncSparseAccumulator, AsyncVariable


def _sync(name: str):
    """Make a blocking method that runs the async handle's method of the same name."""
    async_method = getattr(_ASYNC_BY_NAME[name.split(".")[0]], name.split(".")[1])

    @functools.wraps(async_method)
    def method(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(getattr(self._async, async_method.__name__)(*args, **kwargs))

    return method


_ASYNC_BY_NAME = {"AsyncQueue": AsyncQueue, "AsyncVariable": AsyncVariable, "AsyncClient": AsyncClient,
                  "AsyncAccumulator": AsyncAccumulator, "AsyncSparseAccumulator": AsyncSparseAccumulator}


class _SyncHandle:
    """A blocking view of an async handle: the same attributes, its methods run on the caller's thread."""

    def __init__(self, handle: Any, run: Any) -> None:
        self._async, self._run = handle, run  # run: the client's Client._run
        self.name, self.container, self.device = handle.name, handle.container, handle.device

    def __repr__(self) -> str:
        return repr(self._async)


class Queue(_SyncHandle):
    """Blocking handle on a shared queue, with the methods of :class:`AsyncQueue`."""

    def __init__(self, handle: AsyncQueue, run: Any) -> None:
        super().__init__(handle, run)
        self.spec, self.type_name = handle.spec, handle.type_name

    dtypes = property(lambda self: self.spec.dtypes, doc="The components' dtypes.")
    shapes = property(lambda self: self.spec.shapes, doc="The components' shapes.")
    names = property(lambda self: self.spec.names, doc="The components' names (elements are dicts), or None.")

    def enqueue(self, value: Any, *, timeout: Any = DEFAULT) -> None:
        """Add one element (see :meth:`AsyncQueue.enqueue`)."""
        self._run(self._async.enqueue(value, timeout=timeout))  # written out: the commonest call

    enqueue_many = _sync("AsyncQueue.enqueue_many")

    # The caller, for acknowledgements, is the calling thread: a dequeue acknowledges what this
    # thread received before, never another's.
    def dequeue(self, *, timeout: Any = DEFAULT) -> Any:
        """Remove one element (see :meth:`AsyncQueue.dequeue`); Ctrl-C at any moment loses nothing."""
        return self._dequeue("one", None, timeout)

    def dequeue_many(self, n: int, *, timeout: Any = DEFAULT) -> Any:
        """Remove exactly ``n`` elements (see :meth:`AsyncQueue.dequeue_many`)."""
        return self._dequeue("many", int(n), timeout)

    def dequeue_up_to(self, n: int, *, timeout: Any = DEFAULT) -> Any:
        """Remove up to ``n`` elements (see :meth:`AsyncQueue.dequeue_up_to`)."""
        return self._dequeue("up_to", int(n), timeout)

    def _dequeue(self, mode: str, n: int | None, timeout: Any) -> Any:
        return self._delivered(self._async._dequeue(mode, n, timeout, False, _thread_caller()))

    def _delivered(self, coro: Any) -> Any:
        """Run a dequeue; a batch that reached this client but not its caller (Ctrl-C landed in
        between) goes back to the queue's front instead of being acknowledged later."""
        conn = self._async.conn
        local = conn._local
        local.in_hand = None  # nothing stale from a call made some other way
        try:
            value = self._run(coro)
            # One store and no call before the return: an interruption can no longer land between
            # the batch leaving the books and reaching the caller.
            local.in_hand = None
            return value
        except BaseException:
            delivery = conn.take_in_hand()
            if delivery is not None:
                self._async._give_back(delivery)
                conn._flush_deferred()
            raise

    def take(self, n: int | None = None, *, up_to: bool = False, timeout: Any = DEFAULT) -> "Delivery":
        """A batch held until its :meth:`Delivery.ack` (see :meth:`AsyncQueue.take`);
        ``with q.take(32) as batch:`` acknowledges on success and gives it back on an exception."""
        return self._delivered(self._take(n, up_to, timeout))

    async def _take(self, n: int | None, up_to: bool, timeout: Any) -> "Delivery":
        return Delivery(self._run, await self._async.take(n, up_to=up_to, timeout=timeout))

    def ack(self) -> None:
        """Acknowledge what this thread received from this queue (see :meth:`AsyncQueue.ack`)."""
        self._run(self._async._ack(_thread_caller()))
    size = _sync("AsyncQueue.size")
    is_closed = _sync("AsyncQueue.is_closed")
    close = _sync("AsyncQueue.close")
    delete = _sync("AsyncQueue.delete")


def _thread_caller() -> tuple[str, int]:
    return ("thread", threading.get_ident())


class Delivery:
    """A taken batch (:meth:`Queue.take`), held on the server until :meth:`ack`.

    Attributes:
        value: what the dequeue returned.
        id: the server's delivery id.
    """

    def __init__(self, run: Any, delivery: AsyncDelivery) -> None:
        self._run, self._async = run, delivery
        self.value, self.id = delivery.value, delivery.id

    def __repr__(self) -> str:
        return f"<Delivery {self.id} from {self._async.queue}>"

    def ack(self) -> None:
        """Done with it: it will not be delivered again (see :meth:`AsyncDelivery.ack`)."""
        self._run(self._async.ack())

    def give_back(self) -> None:
        """Not done with it: back to the front of its queue (see :meth:`AsyncDelivery.give_back`)."""
        self._run(self._async.give_back())

    def __enter__(self) -> Any:
        return self.value

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.give_back() if exc_type is not None else self.ack()


class VariableHandle(_SyncHandle):
    """Blocking handle on a shared variable, with the methods of :class:`AsyncVariable`."""

    def __init__(self, handle: AsyncVariable, run: Any) -> None:
        super().__init__(handle, run)
        self.dtype, self.shape = handle.dtype, handle.shape

    initialize = _sync("AsyncVariable.initialize")
    is_initialized = _sync("AsyncVariable.is_initialized")
    read = _sync("AsyncVariable.read")
    assign = _sync("AsyncVariable.assign")
    assign_add = _sync("AsyncVariable.assign_add")
    assign_sub = _sync("AsyncVariable.assign_sub")
    gather = _sync("AsyncVariable.gather")
    scatter_add = _sync("AsyncVariable.scatter_add")
    scatter_sub = _sync("AsyncVariable.scatter_sub")
    scatter_update = _sync("AsyncVariable.scatter_update")

    @property
    def initializer(self):
        """The seed's ``x.initializer``: call it to initialize."""
        return self.initialize

    def eval(self) -> np.ndarray:
        """Alias of :meth:`read`, as the seed's ``x.eval()``."""
        return self.read()


class Accumulator(_SyncHandle):
    """Blocking handle on a shared conditional accumulator, with the methods of :class:`AsyncAccumulator`."""

    def __init__(self, handle: AsyncAccumulator, run: Any) -> None:
        super().__init__(handle, run)
        self.dtype, self.shape = handle.dtype, handle.shape

    apply_grad = _sync("AsyncAccumulator.apply_grad")
    take_grad = _sync("AsyncAccumulator.take_grad")
    set_global_step = _sync("AsyncAccumulator.set_global_step")
    num_accumulated = _sync("AsyncAccumulator.num_accumulated")


class SparseAccumulator(_SyncHandle):
    """Blocking handle on a shared sparse conditional accumulator, with the methods of
    :class:`AsyncSparseAccumulator`."""

    def __init__(self, handle: AsyncSparseAccumulator, run: Any) -> None:
        super().__init__(handle, run)
        self.dtype, self.shape = handle.dtype, handle.shape

    apply_indexed_slices_grad = _sync("AsyncSparseAccumulator.apply_indexed_slices_grad")
    take_indexed_slices_grad = _sync("AsyncSparseAccumulator.take_indexed_slices_grad")
    set_global_step = _sync("AsyncSparseAccumulator.set_global_step")
    num_accumulated = _sync("AsyncSparseAccumulator.num_accumulated")


def _sync_factory(name: str, wrapper: type):
    """A blocking method that creates a resource with the async client and wraps its handle."""
    async_method = getattr(AsyncClient, name)

    @functools.wraps(async_method)
    def method(self: "Client", *args: Any, **kwargs: Any) -> Any:
        return wrapper(self._run(getattr(self._async, name)(*args, **kwargs)), self._run)

    return method


class Client:
    """A synchronous connection to a queue server. Create it with :func:`connect`.

    Its methods do their socket I/O on the calling thread (:mod:`queueserver.blocking`); several
    threads may share it.
    """

    def __init__(self, target: str, operation_timeout: float | None = None, token: str | None = None, *,
                 client_name: str | None = None, **options: Any) -> None:
        self.target = target
        self._closed = False
        self._async = BlockingClient(target, operation_timeout=operation_timeout, token=token,
                                     client_name=client_name, **options)
        run_blocking(self._async.open())
        _OPEN_CLIENTS.add(self)

    def _run(self, coro: Any) -> Any:
        """Run one of the client's (or its handles') calls on this thread.

        Raises:
            FailedPreconditionError: the client was closed.
        """
        if self._closed:
            coro.close()
            raise FailedPreconditionError(f"this client of {self.target} is closed: connect again")
        return run_blocking(coro)

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

    def container(self, name: str):
        """Create and open resources inside this block in container ``name`` (TensorFlow 1's
        ``with tf.container(name):``; see :meth:`AsyncClient.container`)."""
        return self._async.container(name)

    fifo_queue = _sync_factory("fifo_queue", Queue)
    random_shuffle_queue = _sync_factory("random_shuffle_queue", Queue)
    padding_fifo_queue = _sync_factory("padding_fifo_queue", Queue)
    priority_queue = _sync_factory("priority_queue", Queue)
    queue = _sync_factory("queue", Queue)
    variable = _sync_factory("variable", VariableHandle)
    conditional_accumulator = _sync_factory("conditional_accumulator", Accumulator)
    sparse_conditional_accumulator = _sync_factory("sparse_conditional_accumulator", SparseAccumulator)

    def partitioned_variable(self, name: str, shape: Any, dtype: Any = np.float32, **options: Any) -> Any:
        """A table stored as row shards over the ps tasks (see :func:`queueserver.partitioned.partitioned_variable`);
        returns a :class:`~queueserver.partitioned.PartitionedVariable`."""
        from queueserver.partitioned import PartitionedVariable

        handle = self._run(self._async.partitioned_variable(name, shape, dtype, **options))
        return PartitionedVariable(handle, self._run)

    reset = _sync("AsyncClient.reset")
    status = _sync("AsyncClient.status")
    report = _sync("AsyncClient.report")

    def close(self) -> None:
        """Acknowledge everything received and disconnect."""
        if self._closed:
            return
        _OPEN_CLIENTS.discard(self)
        try:
            run_blocking(self._async.close())
        finally:
            self._closed = True

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # Dropped without close(): no goodbye, so the server gives back what it held for us.
        client = getattr(self, "_async", None)
        if client is not None and not getattr(self, "_closed", True):
            client._break()


def connect(target: str, operation_timeout: float | None = None, token: str | None = None, *,
            operation_timeout_in_ms: int | None = None, client_name: str | None = None,
            allow_soft_placement: bool = False, log_device_placement: bool = False,
            route_direct: bool = True, reconnect: bool = True) -> Client:
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
        reconnect: when the server goes away (a restart), connect again by itself within the
            operation timeout and repeat what may be repeated (see :class:`~queueserver.options.ClientOptions`).

    Raises:
        UnavailableError: nothing answers at ``target``.
        UnauthenticatedError: the token is missing or wrong.
    """
    if operation_timeout_in_ms is not None:
        operation_timeout = operation_timeout_in_ms / 1000.0
    return Client(target, operation_timeout, token, client_name=client_name,
                  allow_soft_placement=allow_soft_placement, log_device_placement=log_device_placement,
                  route_direct=route_direct, reconnect=reconnect)


# Clients still open when the interpreter exits normally are closed cleanly then: what they
# received is acknowledged, as a clean close does, and only a crash makes the server deliver it again.
_OPEN_CLIENTS: "weakref.WeakSet[Client]" = weakref.WeakSet()


@atexit.register
def _close_open_clients() -> None:
    for client in list(_OPEN_CLIENTS):
        try:
            client.close()
        except Exception:  # noqa: BLE001 - exiting: a client that cannot say goodbye is dropped
            pass
