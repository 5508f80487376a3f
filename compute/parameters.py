"""The model's parameters on the ps tasks: :class:`ParameterStore` (one server variable per named
array, pulled and pushed together, in the transfer dtype) and where new resources are placed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import Any, Mapping

import numpy as np

import queueserver as qs
from compute.backend import decode_transfer, encode_transfer, transfer_marker, transfer_wire_dtype

__all__ = ["ParameterStore", "placement_scope", "device_scope"]


class ParameterStore:
    """The model's parameters as server variables, one per named array, placed round robin on the ps.

    Pulls and pushes of all variables go out together (pipelined on the one connection). With a
    half-precision ``transfer_dtype`` the chief keeps a second, encoded copy of each variable
    (``<name>/<dtype>``) that replicas pull, which halves the pull bytes; pushes (gradients to the
    accumulators, updates to the variables) travel in the transfer dtype too, bfloat16 as marked
    uint16 bit patterns, and the ps widens them to float32 on arrival
    (:mod:`queueserver.core.wire_dtypes`): half the bytes, float32 sums.

    Args:
        client: an AsyncClient.
        names_shapes: parameter name -> shape, in order.
        transfer_dtype: ``float32``, ``bfloat16`` or ``float16``.
        container: the resource container.
        ps_tasks: spread the variables over this many ps tasks (None or 0: wherever the client is).
        scope: the name prefix of the variables on the ps: parameter ``mlp/w0`` of a model in scope
            ``A`` is variable ``A/w0`` (None: the parameter's own name, ``mlp/w0``).
    """

    def __init__(self, client: Any, names_shapes: Mapping[str, tuple], transfer_dtype: str = "float32",
                 container: str = "", ps_tasks: int | None = None, scope: str | None = None) -> None:
        self.client = client
        self.scope = scope
        self.shapes = OrderedDict(names_shapes)
        self.transfer_dtype = transfer_dtype
        self.container = container
        self.ps_tasks = ps_tasks
        self.vars: OrderedDict[str, Any] = OrderedDict()
        self.wire_vars: OrderedDict[str, Any] = OrderedDict()

    #: The accumulators' dtype, whatever the transfer dtype: narrow pushes are widened on arrival,
    #: so they sum in float32 and the chief takes float32 averages with no cast on either side.
    accumulator_dtype = np.dtype(np.float32)

    @property
    def push_wire_dtype(self) -> np.dtype:
        """The NumPy dtype that carries gradients and updates on the wire (bfloat16: uint16)."""
        return transfer_wire_dtype(self.transfer_dtype)

    def placement(self) -> Any:
        """A context placing new resources round robin over the ps tasks (when the client can)."""
        return placement_scope(self.client, self.ps_tasks)

    def variable_name(self, name: str) -> str:
        """The ps variable holding parameter ``name`` (``mlp/w0`` in scope ``A``: ``A/w0``)."""
        if not self.scope:
            return name
        return f"{self.scope}/{name.split('/', 1)[-1]}"

    async def create(self) -> None:
        """Get or create the variables (zeros until someone initialises them)."""
        with self.placement():
            for name, shape in self.shapes.items():
                self.vars[name] = await self.client.variable(self.variable_name(name), np.zeros(shape, np.float32),
                                                             container=self.container)
        if self.transfer_dtype != "float32":
            wire = transfer_wire_dtype(self.transfer_dtype)
            for name, shape in self.shapes.items():
                with device_scope(self.client, self.vars[name], self.ps_tasks):
                    self.wire_vars[name] = await self.client.variable(
                        f"{self.variable_name(name)}/{self.transfer_dtype}", np.zeros(shape, wire),
                        container=self.container)

    async def is_initialized(self) -> bool:
        """Whether every variable holds a value."""
        flags = await asyncio.gather(*(v.is_initialized() for v in self.vars.values()))
        return all(flags)

    async def publish(self, params: Mapping[str, np.ndarray]) -> None:
        """Assign every variable (and its encoded copy) from host arrays: the chief's write."""
        calls = [self.vars[k].assign(np.asarray(v, np.float32)) for k, v in params.items()]
        calls += [self.wire_vars[k].assign(encode_transfer(params[k], self.transfer_dtype))
                  for k in self.wire_vars]
        await asyncio.gather(*calls)

    async def pull(self, wire: bool = True) -> "OrderedDict[str, np.ndarray]":
        """Read every parameter as float32 host arrays (through the encoded copies when ``wire``)."""
        if wire and self.wire_vars:
            raw = await asyncio.gather(*(v.read() for v in self.wire_vars.values()))
            return OrderedDict((k, decode_transfer(r, self.transfer_dtype)) for k, r in zip(self.wire_vars, raw))
        raw = await asyncio.gather(*(v.read() for v in self.vars.values()))
        return OrderedDict(zip(self.vars, raw))

    async def push_delta(self, delta: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
        """Add ``delta`` (host arrays, float32 or already in the transfer dtype's wire form) to every
        variable atomically, sent in the transfer dtype.

        Returns the new values, float32 (the next pull, free).
        """
        marker = transfer_marker(self.transfer_dtype)
        new = await asyncio.gather(*(
            self.vars[k].assign_add(encode_transfer(d, self.transfer_dtype), wire_dtype=marker)
            for k, d in delta.items()))
        return OrderedDict(zip(delta, new))

    async def push_grads(self, accs: Mapping[str, Any], grads: Mapping[str, np.ndarray],
                         local_step: int) -> list[bool]:
        """Apply one gradient per variable to its accumulator, sent in the transfer dtype (host arrays,
        float32 or already in the wire form: see :func:`~compute.backend.encode_transfer`).

        Returns each accumulator's answer: False where the gradient was stale and dropped.
        """
        marker = transfer_marker(self.transfer_dtype)
        return list(await asyncio.gather(*(
            accs[k].apply_grad(encode_transfer(g, self.transfer_dtype), local_step, wire_dtype=marker)
            for k, g in grads.items())))


def placement_scope(client: Any, ps_tasks: int | None) -> Any:
    """``client.device(replica_device_setter(ps_tasks=N))`` with ps tasks to spread over, else nothing
    (on a single server everything lives on it)."""
    if ps_tasks:
        return client.device(qs.replica_device_setter(ps_tasks=ps_tasks))
    return contextlib.nullcontext()


def device_scope(client: Any, resource: Any, ps_tasks: int | None) -> Any:
    """Place new resources beside ``resource`` (an accumulator beside its variable) in a cluster."""
    where = getattr(resource, "device", None)
    if ps_tasks and where:
        return client.device(where)
    return contextlib.nullcontext()
