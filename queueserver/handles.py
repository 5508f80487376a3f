"""Handles on shared resources, as the asyncio client gives them: queues (and taken deliveries),
variables and conditional accumulators. Each carries its calls over its resource's connection
(its home task's, in a cluster) and takes its options (timeouts) from the client that made it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from queueserver import protocol as P
from queueserver.channel import DEFAULT, wait_for_reply
from queueserver.core.specs import ComponentSpec, coerce_component
from queueserver.core.wire_dtypes import BFLOAT16, float32_to_bfloat16_bits
from queueserver.errors import InvalidArgumentError
from queueserver.wire import (
    COMPACT_DEQUEUE, COMPACT_ENQUEUE, COMPACT_MAX_ACKS, COMPACT_MAX_HANDLES, COMPACT_REPLY, compact_layout,
)

if TYPE_CHECKING:
    from queueserver.asyncio_client import AsyncClient


def _components(value: Any, spec: ComponentSpec) -> list:
    """Split a user's element (array, tuple, or dict for named queues) into components."""
    n = len(spec.dtypes)
    # Misuse of names is Python API misuse: ValueError with TensorFlow's own words.
    if isinstance(value, dict):
        if spec.names is None:
            raise ValueError("Queue must have names to enqueue a dictionary")
        if sorted(map(str, value)) != sorted(spec.names):
            raise ValueError("Keys in dictionary to enqueue do not match names of Queue.  Dictionary: "
                             f"({sorted(map(str, value))}), Queue: ({sorted(spec.names)})")
        value = [value[k] for k in spec.names]
    elif spec.names is not None:
        raise ValueError("You must enqueue a dictionary in a Queue with names")
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
    if len(layout) == 1 and spec.names is None and isinstance(value, (np.ndarray, np.generic)):
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

    @property
    def _where(self) -> dict:
        """The routing fields of this resource's calls (see queueserver.protocol)."""
        return {P.NAME: self.name, P.CONTAINER: self.container, P.HOME: self.device}


class AsyncQueue(_Handle):
    """A handle on a shared queue. All blocking methods take ``timeout`` (seconds)."""

    def __init__(self, client: AsyncClient, conn: AsyncClient, name: str, container: str, home: str,
                 spec: ComponentSpec, type_name: str) -> None:
        super().__init__(client, conn, name, container, home)
        self.spec = spec
        self.type_name = type_name
        self._key = (container, name)
        self._route = self._where  # its calls' routing fields, built once; also where a delivery goes back to
        # Compact frames: None until the first call decides, then 0 (not possible) or the handle.
        self._compact: int | None = None
        self._layout: Any = compact_layout(spec)  # a tuple wherever compact calls are made (see _bind)
        # A compact dequeue reply's length: its fixed part and the element's bytes.
        self._compact_reply_bytes = COMPACT_REPLY.size + sum(nb for _, _, nb in self._layout or ())

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

    @property
    def names(self) -> tuple | None:
        """The components' names (elements are dicts keyed by them), or None."""
        return self.spec.names

    async def enqueue(self, value: Any, *, timeout: Any = DEFAULT) -> None:
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
        with conn._bind_lock:  # threads of a blocking client bind at once: one number per queue
            handle = conn._compact_handles.get(key)
            if handle is None:
                if len(conn._compact_handles) >= COMPACT_MAX_HANDLES:
                    self._compact = 0  # the server's limit: further queues use ordinary frames
                    return 0
                handle = len(conn._compact_handles) + 1
                # No reply: the first compact call follows on the same connection, so the server has
                # bound the handle before it reads that call; the server checks the layout then.
                conn._send({**P.bind(handle, self.name, self.container, self.spec.to_wire()), P.ID: 0})
                conn._compact_handles[key] = handle
        self._compact = handle
        return handle

    async def enqueue_many(self, values: Any, *, timeout: Any = DEFAULT) -> None:
        """Add a batch of elements (the first dimension counts them), contiguously and in order.

        Raises:
            DeadlineExceededError: the timeout expired; ``error.details["placed"]`` elements were
                added (they stay), the rest were not.
        """
        await self._enqueue(values, True, timeout)

    async def _enqueue(self, value: Any, many: bool, timeout: Any) -> None:
        comps = _components(value, self.spec)
        t = self.client._timeout(timeout)
        header = P.enqueue(self._route, many, t)
        await self.conn.call(header, comps, wait=wait_for_reply(t))

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
        done = books.done_with(key, caller)
        header = P.dequeue(self._route, mode, n, t, done)
        try:
            reply, arrays = await conn.call(header, wait=wait_for_reply(t))
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
        if len(body) != self._compact_reply_bytes:
            self._give_back(delivery)  # nobody can read it: back to the queue's front, not acknowledged
            raise InvalidArgumentError(f"malformed compact reply: {len(body)} bytes for an element of {self}")
        books.received(self._key, caller, delivery)
        layout = self._layout
        if len(layout) == 1 and self.spec.names is None and layout[0][2]:  # the commonest element: one array
            dtype, shape, _ = layout[0]
            value = np.ndarray(shape, dtype, body, COMPACT_REPLY.size)
        else:
            offset = COMPACT_REPLY.size
            arrays = []
            for dtype, shape, nbytes in layout:
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

    async def dequeue(self, *, timeout: Any = DEFAULT) -> Any:
        """Remove one element: an array, or a tuple of arrays (a dict for named components).

        Raises:
            OutOfRangeError: the queue is closed and empty.
            DeadlineExceededError: nothing arrived in time (nothing was taken).
        """
        return await self._dequeue("one", None, timeout)

    async def dequeue_many(self, n: int, *, timeout: Any = DEFAULT) -> Any:
        """Remove exactly ``n`` elements, stacked along a new first axis.

        Raises:
            OutOfRangeError: the queue is closed with fewer than ``n`` left (they stay in it).
        """
        return await self._dequeue("many", int(n), timeout)

    async def dequeue_up_to(self, n: int, *, timeout: Any = DEFAULT) -> Any:
        """Like :meth:`dequeue_many`, but once the queue is closed returns what is left (1..n)."""
        return await self._dequeue("up_to", int(n), timeout)

    async def take(self, n: int | None = None, *, up_to: bool = False, timeout: Any = DEFAULT) -> "AsyncDelivery":
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
                await self.conn.call(P.ack(self._route, ids))
            except BaseException:
                books.restore(self._key, caller, ids)
                raise

    async def _settle(self, delivery: int, ack: bool) -> None:
        """Acknowledge a taken delivery, or give it back to the front of its queue."""
        if not self.conn._deliveries.settled(delivery):
            raise InvalidArgumentError(f"delivery {delivery} from {self} was already acknowledged or given back")
        if ack:
            await self.conn.call(P.ack(self._route, [delivery]))
        else:
            self.conn._give_back(delivery, self._route)

    async def size(self) -> int:
        """Elements in the queue now."""
        reply, _ = await self.conn.call(P.queue_query(P.OP_SIZE, self._route))
        return reply["r"]

    async def is_closed(self) -> bool:
        """Whether the queue was closed."""
        reply, _ = await self.conn.call(P.queue_query(P.OP_IS_CLOSED, self._route))
        return reply["r"]

    async def close(self, cancel_pending_enqueues: bool = False) -> None:
        """Close the queue; with ``cancel_pending_enqueues`` blocked enqueues fail with Cancelled."""
        await self.conn.call(P.close(self._route, bool(cancel_pending_enqueues)))

    async def delete(self) -> int:
        """Delete the queue (TensorFlow has no such call; a container reset frees every resource in
        it): its elements are dropped, calls waiting on it fail with CancelledError, later calls
        with NotFoundError, and the name may be created again. Returns how many elements it held.

        Batches taken from it and not yet acknowledged are dropped too: deleting is the one way to
        discard what a queue holds.
        """
        reply, _ = await self.conn.call(P.delete(self._route))
        return int(reply["r"])


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
            header, arrays = P.variable_action(self._where, action), [] if value is None else [np.asarray(value)]
        else:
            header, arrays = P.variable_action(self._where, action, wire_dtype), [_to_wire(value, wire_dtype)]
        reply, out = await self.conn.call(header, arrays)
        if action == "is_initialized":
            return reply["r"]
        return out[0]

    async def _scatter(self, action: str, indices: Any, updates: Any, wire_dtype: str | None) -> None:
        arrays = [_as_indices(indices), np.asarray(updates) if wire_dtype is None else _to_wire(updates, wire_dtype)]
        await self.conn.call(P.variable_action(self._where, action, wire_dtype), arrays)

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

    async def gather(self, indices: Any) -> np.ndarray:
        """Rows ``indices`` of the value (TensorFlow's ``tf.gather`` on the first dimension): only
        those rows travel. Returns an array of shape ``indices.shape + shape[1:]``.

        Raises:
            InvalidArgumentError: indices that are not int32/int64, or out of ``[0, shape[0])``
                (the first bad one is named: ``indices[2] = 6 is not in [0, 6)``).
            FailedPreconditionError: the variable is not initialized.
        """
        return await self._op("gather", _as_indices(indices))

    async def scatter_add(self, indices: Any, updates: Any, *, wire_dtype: str | None = None) -> None:
        """Add ``updates`` to rows ``indices`` on the server, atomically (TensorFlow's ``scatter_add``);
        a row named more than once gets every update. Only the rows travel; nothing comes back.

        ``updates`` has shape ``indices.shape + shape[1:]`` (or is one scalar for every named row);
        ``wire_dtype="bfloat16"`` as for :meth:`assign`.

        Raises:
            InvalidArgumentError: bad indices (as for :meth:`gather`), updates of another shape or
                dtype, a bool or scalar variable; nothing changes.

        Example::

            await table.scatter_sub(np.array([3, 7, 3]), 0.1 * grads)   # row 3 gets both rows' updates
        """
        await self._scatter("scatter_add", indices, updates, wire_dtype)

    async def scatter_sub(self, indices: Any, updates: Any, *, wire_dtype: str | None = None) -> None:
        """Subtract ``updates`` from rows ``indices``; as :meth:`scatter_add` otherwise."""
        await self._scatter("scatter_sub", indices, updates, wire_dtype)

    async def scatter_update(self, indices: Any, updates: Any, *, wire_dtype: str | None = None) -> None:
        """Set rows ``indices`` to ``updates``; as :meth:`scatter_add` otherwise. A row named more
        than once takes its last update (TensorFlow leaves that order undefined)."""
        await self._scatter("scatter_update", indices, updates, wire_dtype)


def _as_indices(indices: Any) -> np.ndarray:
    """Row indices as they travel: an integer array as given (the server checks its dtype and range);
    a Python int or list of ints as int64."""
    arr = np.asarray(indices)
    if arr.dtype.kind not in "iu" and arr.size == 0 and not isinstance(indices, np.ndarray):
        return arr.astype(np.int64)  # [] is float64 to numpy: an empty list of rows
    return arr


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
    """A gradient as it should travel: its own float dtype (float16 halves the bytes; the server widens).
    A complex one travels as it is, for the server to refuse: casting would drop its imaginary part."""
    arr = np.asarray(value)
    return arr if arr.dtype.kind in "fc" else arr.astype(np.float32)


class AsyncAccumulator(_ArrayHandle):
    """A handle on a shared conditional accumulator."""

    kind = "ConditionalAccumulator"

    def _acc(self, action: str, **fields: Any) -> dict:
        return P.accumulator_action(self._where, action, **fields)

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

    async def take_grad(self, num_required: int, *, timeout: Any = DEFAULT) -> np.ndarray:
        """Wait for ``num_required`` fresh gradients; returns their average and advances the global step."""
        t = self.client._timeout(timeout)
        _, arrays = await self.conn.call(self._acc("take", nn=int(num_required), t=t), wait=wait_for_reply(t))
        return arrays[0]

    async def set_global_step(self, step: int) -> None:
        """Set the global step (backwards too, as TensorFlow); gradients for older steps are dropped from now on."""
        await self.conn.call(self._acc("set_step", step=int(step)))

    async def num_accumulated(self) -> int:
        """Fresh gradients accumulated so far."""
        reply, _ = await self.conn.call(self._acc("num"))
        return reply["r"]


class IndexedSlices(NamedTuple):
    """A sparse gradient as TensorFlow's ``tf.IndexedSlices``: ``values[i]`` is row ``indices[i]``
    of a ``dense_shape`` tensor; rows not named are zero."""

    values: np.ndarray
    indices: np.ndarray
    dense_shape: np.ndarray


class AsyncSparseAccumulator(_ArrayHandle):
    """A handle on a shared sparse conditional accumulator (TensorFlow's SparseConditionalAccumulator)."""

    kind = "SparseConditionalAccumulator"

    def _acc(self, action: str, **fields: Any) -> dict:
        return P.accumulator_action(self._where, action, **fields)

    async def apply_indexed_slices_grad(self, grad: Any, local_step: int = 0, *,
                                        wire_dtype: str | None = None) -> bool:
        """Add a sparse gradient computed at ``local_step``; False when it was stale and dropped.

        Args:
            grad: an :class:`IndexedSlices` (or any ``(values, indices)`` pair, or ``(values,
                indices, dense_shape)``): ``indices`` a vector of rows, ``values`` one row of
                ``shape[1:]`` per index. A row named twice adds both values (and counts once for
                that row's average). A ``dense_shape`` that is not None is checked against the
                accumulator's shape, as TensorFlow checks it.
            local_step: the global step the gradient was computed at.
            wire_dtype: ``"bfloat16"`` sends the values as bfloat16, as for ``apply_grad``.

        Raises:
            InvalidArgumentError: indices not a vector of integers or out of range, values of the
                wrong shape or dtype, a ``dense_shape`` other than the accumulator's shape;
                checked even for a stale gradient.
        """
        values, indices = grad[0], grad[1]
        dense_shape = grad[2] if len(grad) > 2 else None
        vals = _as_float_array(values) if wire_dtype is None else _to_wire(values, wire_dtype)
        fields: dict[str, Any] = {"step": int(local_step)}
        if wire_dtype is not None:
            fields["wd"] = wire_dtype
        arrays = [_as_indices(indices), vals]
        if dense_shape is not None:
            arrays.append(_as_indices(dense_shape))
        reply, _ = await self.conn.call(self._acc("apply_sparse", **fields), arrays)
        return reply["r"]

    async def take_indexed_slices_grad(self, num_required: int, *, timeout: Any = DEFAULT) -> IndexedSlices:
        """Wait for ``num_required`` fresh gradients; returns the touched rows (increasing) and their
        reduction (``MEAN``: each row's sum over the gradients that touched it, divided by their
        number, as TensorFlow does; ``SUM``: the sums), and advances the global step."""
        t = self.client._timeout(timeout)
        _, arrays = await self.conn.call(self._acc("take", nn=int(num_required), t=t), wait=wait_for_reply(t))
        indices, values, dense_shape = arrays
        return IndexedSlices(values, indices, dense_shape)

    async def set_global_step(self, step: int) -> None:
        """Set the global step (backwards too, as TensorFlow); gradients for older steps are dropped from now on."""
        await self.conn.call(self._acc("set_step", step=int(step)))

    async def num_accumulated(self) -> int:
        """Fresh gradients accumulated so far."""
        reply, _ = await self.conn.call(self._acc("num"))
        return reply["r"]
