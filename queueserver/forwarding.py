"""Cluster routing: a request for a resource homed on another task is forwarded there.

A task that receives a call for a resource it does not hold finds the resource's home (the
directory, :mod:`queueserver.routing`), forwards the call over its link to that task, and relays
the reply. Deliveries the home task holds for our client are remembered in the client
connection's session, so a goodbye acknowledges them there and a lost connection returns them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from queueserver.errors import (
    CancelledError, InvalidArgumentError, QueueServerError, error_name,
)
from queueserver.core.timeouts import check_timeout
from queueserver.logs import event
from queueserver import protocol as P
from queueserver.protocol import CREATE_OPS, field_str, route_fields
from queueserver.routing import check_device_name
from queueserver.wire import error_payload

if TYPE_CHECKING:
    from queueserver.connection import DataConnection

# How long past a forwarded call's own timeout (or its caller's deadline) the forwarding task
# waits for the home's reply: short of the client's grace (``channel.TIMEOUT_GRACE_S``), so the
# client hears which task failed to answer. A call that does not block and comes without a
# deadline gets FORWARD_REPLY_TIMEOUT_S before its home counts as hung.
FORWARD_GRACE_S = 1.5
FORWARD_REPLY_TIMEOUT_S = 10.0


async def route(conn: DataConnection, rid: int, op: str, header: dict, body: Any, t0: float = 0.0) -> None:
    """Find the task a request belongs to; run it here or forward it there."""
    svc = conn.service
    stats = conn.stats
    try:
        if op == "reset":
            containers = header.get("cs")
            if not isinstance(containers, list) or not all(isinstance(c, str) for c in containers):
                raise InvalidArgumentError("reset needs a list of container names")
            freed, unreachable = await svc.cluster_reset(containers)
            conn.send({"i": rid, "r": freed, "unreachable": unreachable})
            if stats is not None:
                stats.observe(op, "ok", t0)
            return
        container, name = field_str(header, "c", ""), field_str(header, "n")
        if op in CREATE_OPS:
            wanted, warning = svc.placement.resolve(check_device_name(header.get("dev")), bool(header.get("soft")))
            home = await svc.directory.register(container, name, wanted)
            if home != wanted:
                warning = None  # it already existed: where it lives is not a placement decision
            header = {**header, "h": home, "local": True, "warn": warning}
        else:
            given = header.get("h")
            home = given if isinstance(given, str) else await svc.directory.lookup(container, name)
            header = {**header, "h": home, "local": True}
        if home == svc.task:
            conn.dispatch_local(rid, op, header, body, t0)
        else:
            await forward(conn, rid, op, home, header, body, t0)
    except asyncio.CancelledError:
        # Withdrawn by the client (or its connection closed): answer, so it forgets the call.
        conn.send({"i": rid, "e": error_payload(CancelledError("the call was cancelled by its caller"))})
        raise
    except Exception as exc:
        conn.fail(rid, op, exc, t0, "routing")


async def forward(conn: DataConnection, rid: int, op: str, home: str, header: dict, body: Any,
                  t0: float = 0.0) -> None:
    """Send a request to its home task and relay the reply (its arrays stay encoded)."""
    stats = conn.stats
    if stats is not None:
        stats.forward(home)
    peer = await conn.service.peers.get(home)
    forwarded = {k: v for k, v in header.items() if k != "i"}
    if _may_block(op, header):
        t = check_timeout(header.get(P.TIMEOUT), "a forwarded call's timeout")
    else:
        t = check_timeout(header.get(P.DEADLINE, FORWARD_REPLY_TIMEOUT_S), "a forwarded call's deadline")
    wait = None if t is None else t + FORWARD_GRACE_S  # None: a blocking call without a timeout
    reply, reply_body = await peer.call_raw(forwarded, body, wait=wait)  # its errors name the task
    delivery = reply.get("d") if op == "dequeue" else None
    if delivery is not None and conn.transport is None:
        # Our client left while the batch travelled: give it back on its home.
        asyncio.ensure_future(peer.call(P.give_back(route_fields(header), [delivery])))
        conn.session.forwarded(home, header.get("k"), None)
        return
    conn.session.forwarded(home, header.get("k"), delivery)
    reply["i"] = rid
    conn.send_raw(reply, reply_body)
    if stats is not None:
        stats.observe(op, "ok" if "e" not in reply else error_name(reply["e"][0]), t0)


def _may_block(op: str, header: dict) -> bool:
    """Whether a call may wait on its resource (for room, for elements, for gradients)."""
    return op in (P.OP_ENQUEUE, P.OP_DEQUEUE) or (op == P.OP_ACC and header.get(P.ACTION) == "take")


def settle_forwarded(conn: DataConnection, action: str, pending: dict[str, list[int]]) -> None:
    """Acknowledge (``"ack"``: clean goodbye) or return (``"return"``: lost connection) the
    deliveries ``pending`` (home task -> ids) held on other tasks for this connection's client."""
    for home, ids in pending.items():
        asyncio.ensure_future(_settle_one(conn, home, action, ids))


async def _settle_one(conn: DataConnection, home: str, action: str, ids: list) -> None:
    try:
        peer = await conn.service.peers.get(home)
        settle = P.ack if action == "ack" else P.give_back
        await peer.call({**settle({}, ids), P.LOCAL: True}, wait=10.0)
    except QueueServerError as exc:  # the home is gone too: it returns them itself on our disconnect
        event(logging.WARNING, conn.service.task, "settle_failed",
              f"could not {action} deliveries {ids} on {home}: {exc}", action=action, home=home, error=str(exc))
