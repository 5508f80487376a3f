"""Partitioned variables: one logical table stored as row shards on the ps tasks, as TensorFlow's
``tf.compat.v1.get_variable(..., partitioner=...)`` makes them.

A table of ``shape`` is split along its first dimension into shards named ``name/part_0``,
``name/part_1``, ...; shard ``i`` holds a contiguous block of rows, and, as in TensorFlow, the
first ``rows % n`` shards hold one row more than the others. How many shards:

- ``num_shards=n``: TensorFlow's ``fixed_size_partitioner(n)`` (never more shards than rows);
- ``min_shard_bytes=b`` (with ``max_shards``, default unbounded): TensorFlow's
  ``min_max_variable_partitioner(max_partitions, min_slice_size=b)``: ``ceil(table bytes / b)``
  shards, at most ``max_shards`` and one per row, at least one (the rows then split as above, so a
  shard may hold somewhat less than ``b`` bytes, as in TensorFlow).

Shards are placed over the ps tasks round robin (shard ``i`` on ``/job:ps/task:i % num_ps``, as a
``replica_device_setter`` places variables in turn) when the client is in a cluster with a ``ps``
job and no ``device`` block is open; inside a ``device`` block each shard is placed by it, as any
variable (a ``replica_device_setter`` there spreads them itself).

The handle reads as one table: :meth:`AsyncPartitionedVariable.read` concatenates the shards;
``gather`` sends each index to its shard (all shards at once) and puts the rows back in the order
asked; ``scatter_*`` split the indices and updates by shard. Indices and updates are checked here,
against the logical table, before anything is sent: bad input changes no shard. Each shard's
update is atomic; an update that spans shards is not atomic across them (nor is TensorFlow's).

Example::

    with qs.connect(target) as c:
        emb = c.partitioned_variable("emb", [1000, 16], num_shards=4)   # emb/part_0..3 on the ps tasks
        emb.initialize()
        rows = emb.gather([3, 999, 3])
        emb.scatter_sub([3, 999], 0.1 * grads)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from queueserver.cluster import ClusterSpec
from queueserver.core.specs import dtype_name, shape_str
from queueserver.errors import InvalidArgumentError
from queueserver.handles import AsyncVariable, _as_indices

if TYPE_CHECKING:
    from queueserver.asyncio_client import AsyncClient

Initializer = Any  # an array of the whole table, a callable (shard shape, first row) -> array, or None (zeros)


def fixed_size_partitioner(num_shards: int) -> Callable[[Sequence[int], Any], int]:
    """TensorFlow's ``fixed_size_partitioner(num_shards)`` along the rows: ``num_shards`` shards
    (no more than there are rows)."""
    if int(num_shards) < 1:
        raise InvalidArgumentError(f"num_shards must be at least 1, got {num_shards}")

    def partition(shape: Sequence[int], dtype: Any) -> int:
        return max(1, min(int(num_shards), int(shape[0])))
    return partition


def min_max_variable_partitioner(max_partitions: int | None = 1,
                                 min_slice_size: int = 256 << 10) -> Callable[[Sequence[int], Any], int]:
    """TensorFlow's ``min_max_variable_partitioner`` along the rows, with its defaults and its
    count: ``max(1, min(rows, max_partitions, ceil(total bytes / min_slice_size)))`` (None for
    ``max_partitions``: no limit but the rows). As in TensorFlow, ``min_slice_size`` sets the count;
    rows are then split as evenly as they go, so a shard may hold somewhat less than it."""
    if max_partitions is not None and int(max_partitions) < 1:
        raise InvalidArgumentError(f"max_partitions must be at least 1, got {max_partitions}")
    if int(min_slice_size) < 1:
        raise InvalidArgumentError(f"min_slice_size must be at least 1 byte, got {min_slice_size}")

    def partition(shape: Sequence[int], dtype: Any) -> int:
        rows = int(shape[0])
        total_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        shards = min(rows, math.ceil(total_bytes / int(min_slice_size)))
        if max_partitions is not None:
            shards = min(int(max_partitions), shards)
        return max(1, shards)
    return partition


def shard_rows(rows: int, num_shards: int) -> list[int]:
    """Rows of each shard, as TensorFlow splits them: the first ``rows % num_shards`` get one more."""
    base, extra = divmod(int(rows), int(num_shards))
    return [base + (1 if i < extra else 0) for i in range(int(num_shards))]


class AsyncPartitionedVariable:
    """One logical table over row shards (see the module notes). ``shards`` are the variables,
    ``offsets[i]`` the first row of shard ``i`` (``offsets[-1]`` the number of rows)."""

    def __init__(self, name: str, shards: list[AsyncVariable], shape: tuple, dtype: np.dtype) -> None:
        self.name = name
        self.shards = shards
        self.shape = shape
        self.dtype = dtype
        self.offsets = np.concatenate([[0], np.cumsum([s.shape[0] for s in shards])]).astype(np.int64)

    def __repr__(self) -> str:
        return (f"<PartitionedVariable '{self.name}' {self.dtype.name}{list(self.shape)}"
                f" in {len(self.shards)} shard(s) on {sorted(set(self.devices))}>")

    @property
    def devices(self) -> list[str]:
        """The task of each shard, in shard order."""
        return [s.device for s in self.shards]

    async def _together(self, calls: list) -> list:
        """The shards' calls, made together as the client's transport can (see ``Channel.gather``)."""
        return await self.shards[0].client.gather(calls)

    async def initialize(self) -> None:
        """Initialize every shard."""
        await self._together([s.initialize() for s in self.shards])

    async def is_initialized(self) -> bool:
        """Whether every shard holds a value."""
        return all(await self._together([s.is_initialized() for s in self.shards]))

    async def read(self) -> np.ndarray:
        """The whole table: the shards' values, concatenated."""
        return np.concatenate(await self._together([s.read() for s in self.shards]), axis=0)

    async def assign(self, value: Any) -> None:
        """Replace the whole table (each shard gets its rows)."""
        value = np.asarray(value)
        if value.shape != self.shape:
            raise InvalidArgumentError(f"PartitionedVariable '{self.name}' assign: expected shape"
                                       f" {shape_str(self.shape)}, got {shape_str(value.shape)}")
        o = self.offsets
        await self._together([s.assign(value[o[i]:o[i + 1]]) for i, s in enumerate(self.shards)])

    def _route(self, indices: Any, op: str) -> tuple[tuple, np.ndarray, list[np.ndarray]]:
        """``(shape of the indices, local row of each flat index, flat positions per shard)``.

        Raises:
            InvalidArgumentError: indices that are not integers, or out of range of the whole table.
        """
        idx = _as_indices(indices)
        if idx.dtype.kind not in "iu":
            raise InvalidArgumentError(
                f"PartitionedVariable '{self.name}' {op}: indices must be int32 or int64, got {dtype_name(idx.dtype)}")
        flat = idx.reshape(-1).astype(np.int64)
        rows = int(self.offsets[-1])
        bad = np.flatnonzero((flat < 0) | (flat >= rows))
        if bad.size:
            at = (f"indices[{','.join(str(int(i)) for i in np.unravel_index(int(bad[0]), idx.shape))}]"
                  if idx.ndim else "indices")
            raise InvalidArgumentError(f"PartitionedVariable '{self.name}' {op}: {at} ="
                                       f" {int(flat[bad[0]])} is not in [0, {rows})")
        shard = np.searchsorted(self.offsets[1:], flat, side="right")
        order = np.argsort(shard, kind="stable")
        cuts = np.searchsorted(shard[order], np.arange(1, len(self.shards)))
        return idx.shape, flat - self.offsets[shard], np.split(order, cuts)

    async def gather(self, indices: Any) -> np.ndarray:
        """Rows ``indices`` of the table (shape ``indices.shape + shape[1:]``): each shard is asked
        for its rows only, all at once, and the rows come back in the order asked."""
        shape, local, parts = self._route(indices, "gather")
        out = np.empty((local.size,) + tuple(self.shape[1:]), self.dtype)
        asked = [(s, p) for s, p in zip(self.shards, parts) if p.size]
        got = await self._together([s.gather(local[p]) for s, p in asked])
        for (_, p), rows in zip(asked, got):
            out[p] = rows
        return out.reshape(shape + tuple(self.shape[1:]))

    async def _scatter(self, action: str, indices: Any, updates: Any) -> None:
        shape, local, parts = self._route(indices, action)
        upd = np.asarray(updates)
        if upd.shape and upd.shape != shape + tuple(self.shape[1:]):
            raise InvalidArgumentError(
                f"PartitionedVariable '{self.name}' {action}: updates must have shape"
                f" {shape_str(shape + tuple(self.shape[1:]))} or be a scalar, got {shape_str(upd.shape)}")
        flat = upd.reshape((local.size,) + tuple(self.shape[1:])) if upd.shape else upd
        await self._together([getattr(s, action)(local[p], flat[p] if upd.shape else upd)
                              for s, p in zip(self.shards, parts) if p.size])

    async def scatter_add(self, indices: Any, updates: Any) -> None:
        """Add ``updates`` to rows ``indices`` (duplicates summed), each shard its own rows."""
        await self._scatter("scatter_add", indices, updates)

    async def scatter_sub(self, indices: Any, updates: Any) -> None:
        """Subtract ``updates`` from rows ``indices``; as :meth:`scatter_add` otherwise."""
        await self._scatter("scatter_sub", indices, updates)

    async def scatter_update(self, indices: Any, updates: Any) -> None:
        """Set rows ``indices`` to ``updates`` (a row named twice: its last update)."""
        await self._scatter("scatter_update", indices, updates)


def _shard_count(name: str, shape: tuple, dtype: np.dtype, num_shards: int | None, min_shard_bytes: int | None,
                 max_shards: int | None) -> int:
    if not shape:
        raise InvalidArgumentError(f"PartitionedVariable '{name}': a scalar cannot be partitioned by rows")
    if num_shards is not None and min_shard_bytes is not None:
        raise InvalidArgumentError(f"PartitionedVariable '{name}': give num_shards or min_shard_bytes, not both")
    if num_shards is not None:
        return fixed_size_partitioner(num_shards)(shape, dtype)
    if min_shard_bytes is not None:
        return min_max_variable_partitioner(max_shards, min_shard_bytes)(shape, dtype)
    raise InvalidArgumentError(f"PartitionedVariable '{name}': give num_shards or min_shard_bytes")


def _initial(initializer: Initializer, name: str, shape: tuple, dtype: np.dtype, first: int, rows: int) -> np.ndarray:
    shard_shape = (rows,) + tuple(shape[1:])
    if initializer is None:
        return np.zeros(shard_shape, dtype)
    if callable(initializer):
        value = np.asarray(initializer(shard_shape, first), dtype=dtype)
    else:
        value = np.asarray(initializer, dtype=dtype)
        if value.shape != shape:
            raise InvalidArgumentError(f"PartitionedVariable '{name}': initial value has shape"
                                       f" {shape_str(value.shape)}, the table {shape_str(shape)}")
        value = value[first:first + rows]
    if value.shape != shard_shape:
        raise InvalidArgumentError(f"PartitionedVariable '{name}': the initializer gave shape"
                                   f" {shape_str(value.shape)} for shard rows {first}..{first + rows - 1}")
    return value


async def partitioned_variable(client: AsyncClient, name: str, shape: Sequence[int], dtype: Any = np.float32, *,
                               initializer: Initializer = None, num_shards: int | None = None,
                               min_shard_bytes: int | None = None, max_shards: int | None = None,
                               container: str | None = None) -> AsyncPartitionedVariable:
    """Get or create a table of ``shape`` as row shards ``name/part_i`` (see the module notes).

    Args:
        client: the asyncio client.
        name: the table's name; shard ``i`` is the variable ``f"{name}/part_{i}"``.
        shape: the whole table's shape (rows first).
        dtype: its dtype.
        initializer: the whole table's initial value, a function ``(shard shape, first row) ->
            array``, or None for zeros. Shards stay uninitialised until ``initialize()``.
        num_shards: a fixed number of shards (``fixed_size_partitioner``).
        min_shard_bytes, max_shards: ``ceil(table bytes / min_shard_bytes)`` shards, at most
            ``max_shards`` (None: no limit but one per row); ``min_max_variable_partitioner``'s count.
        container: the container of every shard.

    Raises:
        InvalidArgumentError: a scalar shape, both or neither of ``num_shards`` and
            ``min_shard_bytes``, an initial value of another shape, or shards that exist with
            another spec.
    """
    shape, dt = tuple(int(d) for d in shape), np.dtype(dtype)
    n = _shard_count(name, shape, dt, num_shards, min_shard_bytes, max_shards)
    cluster = ClusterSpec(client.cluster or {})
    ps = cluster.task_indices("ps") if "ps" in cluster.jobs else []
    round_robin = bool(ps) and not client._device_stack
    shards: list[AsyncVariable] = []
    first = 0
    for i, rows in enumerate(shard_rows(shape[0], n)):
        value = _initial(initializer, name, shape, dt, first, rows)
        if round_robin:
            with client.device(f"/job:ps/task:{ps[i % len(ps)]}"):
                shards.append(await client.variable(f"{name}/part_{i}", value, container=container, dtype=dt))
        else:
            shards.append(await client.variable(f"{name}/part_{i}", value, container=container, dtype=dt))
        first += rows
    return AsyncPartitionedVariable(name, shards, shape, dt)


class PartitionedVariable:
    """Blocking handle on a partitioned variable, with the methods of :class:`AsyncPartitionedVariable`."""

    def __init__(self, handle: AsyncPartitionedVariable, run: Callable[[Any], Any]) -> None:
        self._async = handle
        self._run = run  # runs one of the handle's calls to its end on the calling thread
        self.name, self.shape, self.dtype = handle.name, handle.shape, handle.dtype

    def __repr__(self) -> str:
        return repr(self._async)

    @property
    def shards(self) -> list[AsyncVariable]:
        """The shards' asyncio handles, in row order."""
        return self._async.shards

    @property
    def offsets(self) -> np.ndarray:
        """The first row of each shard, then the number of rows."""
        return self._async.offsets

    @property
    def devices(self) -> list[str]:
        """The task of each shard."""
        return self._async.devices

    def initialize(self) -> None:
        """Initialize every shard."""
        self._run(self._async.initialize())

    def is_initialized(self) -> bool:
        """Whether every shard holds a value."""
        return self._run(self._async.is_initialized())

    def read(self) -> np.ndarray:
        """The whole table."""
        return self._run(self._async.read())

    def assign(self, value: Any) -> None:
        """Replace the whole table."""
        self._run(self._async.assign(value))

    def gather(self, indices: Any) -> np.ndarray:
        """Rows ``indices`` of the table, in the order asked."""
        return self._run(self._async.gather(indices))

    def scatter_add(self, indices: Any, updates: Any) -> None:
        """Add ``updates`` to rows ``indices``."""
        self._run(self._async.scatter_add(indices, updates))

    def scatter_sub(self, indices: Any, updates: Any) -> None:
        """Subtract ``updates`` from rows ``indices``."""
        self._run(self._async.scatter_sub(indices, updates))

    def scatter_update(self, indices: Any, updates: Any) -> None:
        """Set rows ``indices`` to ``updates``."""
        self._run(self._async.scatter_update(indices, updates))
