"""The operations: one handler per op, each a thin adapter from a request's header and body to
the core (:mod:`queueserver.core`) and the connection's delivery session (:mod:`queueserver.session`).

A handler takes ``(connection, header, body)`` and returns a reply dict, ``(reply, arrays)``, a core
:class:`~queueserver.core.Attempt` or future that the connection answers when it finishes, or
:data:`NO_REPLY`. It raises a :class:`~queueserver.errors.QueueServerError` for a bad request; the
connection answers with it, and nothing has changed. No queue rule is written here.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

from queueserver._version import __version__
from queueserver.core import MANY, ONE, UP_TO, Attempt, QueueBase, SparseConditionalAccumulator
from queueserver.core.specs import ComponentSpec
from queueserver.errors import (
    InvalidArgumentError,
    QueueServerError,
    UnauthenticatedError,
    UnimplementedError,
)
from queueserver.forwarding import settle_forwarded
from queueserver.logs import event
from queueserver import protocol as P
from queueserver.protocol import field_str, timeout_field
from queueserver.status import build as build_status
from queueserver.wire import compact_layout, decode_arrays

if TYPE_CHECKING:
    from queueserver.connection import DataConnection
    from queueserver.service import QueueService

# Wrong tokens one connection may try before it is closed.
MAX_FAILED_HELLOS = 3

# ----- operations: (connection, header, body) -> reply dict | (reply, arrays) | Attempt
def _op_hello(conn: DataConnection, h: dict, body) -> dict:
    token = conn.service.token
    if token is not None:
        given = h.get("token") or ""
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
            conn.service.auth_failed(conn.peer, str(h.get("client", "?"))[:200])
            conn.failed_hellos += 1
            if conn.failed_hellos >= MAX_FAILED_HELLOS:  # guessing: no more tries on this connection
                conn.closing = True  # closed once this error reply is written
            raise UnauthenticatedError("wrong or missing token for this server")
    conn.authenticate()
    conn.client_name = str(h.get("client", "?"))[:200]
    cid = h.get("cid")
    if cid is not None:
        if not (type(cid) is str and 0 < len(cid) <= 64):
            raise InvalidArgumentError(f"a client id ('cid') must be 1-64 characters, got {str(cid)[:80]}")
        conn.stamp_client = cid
    if not conn.said_hello:
        conn.said_hello = True
        event(logging.INFO, conn.service.task, "client_connected", f"client {conn.client_name} connected from {conn.peer}",
              client=conn.client_name, peer=conn.peer)
    cluster = conn.service.cluster
    return {"version": __version__, "task": conn.service.task, "max_message_bytes": conn.service.max_message_bytes,
            "compact": 1, "byteorder": sys.byteorder,
            "cluster": None if cluster is None else cluster.as_dict()}


def _op_queue(conn: DataConnection, h: dict, body) -> dict:
    home, warning = conn.service.placement_for(h)
    spec = h.get("spec")
    if not isinstance(spec, dict) or "dtypes" not in spec:
        raise InvalidArgumentError("queue spec must give dtypes")
    capacity = h.get("cap")
    container, name = field_str(h, P.CONTAINER, ""), field_str(h, P.NAME)
    existed = name in conn.service.resources.containers.get(container, {})
    q = conn.service.resources.queue(
        field_str(h, "kind"), field_str(h, P.NAME), container=field_str(h, P.CONTAINER, ""), capacity=capacity,  # type: ignore[arg-type]  # the core checks it
        dtypes=spec["dtypes"], shapes=spec.get("shapes"), names=spec.get("names"),
        min_after_dequeue=h.get("mad", 0) or 0, seed=h.get("seed"))
    if not existed:
        event(logging.INFO, conn.service.task, "queue_created",
              f"{q.type_name} {q.name} created by {conn.client_name} (capacity {q.capacity}, {q.spec.describe()})",
              queue=q.name, type=q.type_name, capacity=q.capacity, spec=q.spec.describe(), client=conn.client_name)
    return {"spec": q.spec.to_wire(), "type": q.type_name, "home": home, "warn": warning}


def _op_enqueue(conn: DataConnection, h: dict, body) -> Attempt:
    conn.session.check_budget()
    q = conn.queue(h)
    arrays = decode_arrays(h.get(P.ARRAYS, []), body)
    stamp = h.get(P.STAMP)
    if stamp is not None:
        if not (type(stamp) is list and len(stamp) in (2, 3) and type(stamp[0]) is str and 0 < len(stamp[0]) <= 64
                and type(stamp[1]) is int and (len(stamp) == 2 or (type(stamp[2]) is int and stamp[2] <= stamp[1]))):
            raise InvalidArgumentError(f"an enqueue stamp must be [client id (1-64 characters), sequence number,"
                                       f" low-water mark (optional, <= the sequence number)], got {str(stamp)[:80]}")
        stamp = conn.service.stamps.get(stamp[0], stamp[1], stamp[2] if len(stamp) == 3 else None)
    return q.enqueue(tuple(arrays), many=bool(h.get(P.MANY)), timeout=timeout_field(h), stamp=stamp)


def _op_dequeue(conn: DataConnection, h: dict, body) -> Attempt:
    conn.session.ack(h.get(P.ACKS))
    q = conn.queue(h)
    mode = h.get(P.MODE, ONE)
    if mode not in (ONE, MANY, UP_TO):
        raise InvalidArgumentError(f"unknown dequeue mode {mode!r}")
    n = h.get(P.COUNT)
    if n is not None and not isinstance(n, int):
        raise InvalidArgumentError("dequeue count must be an integer")
    return q.dequeue(n, mode=mode, timeout=timeout_field(h), max_bytes=conn.service.max_message_bytes)


NO_REPLY = object()  # an operation that is answered by nothing (bind)


def _op_bind(conn: DataConnection, h: dict, body) -> object:
    """Bind a client-chosen handle to a queue name and the element layout the client expects, for
    compact frames. No reply: the client sends its first compact call right behind it, and that
    call (like every later one) fails if the queue is missing or holds other elements."""
    key = (field_str(h, P.CONTAINER, ""), field_str(h, P.NAME))
    try:
        layout = compact_layout(ComponentSpec.from_wire(h["spec"]))
    except (QueueServerError, KeyError, TypeError, ValueError, AttributeError):
        layout = None  # every call on the handle then says so
    conn.session.bind(h.get(P.HANDLE), key, layout, 0 if layout is None else sum(nb for _, _, nb in layout))
    return NO_REPLY


def _op_ack(conn: DataConnection, h: dict, body) -> dict:
    conn.session.ack(h.get(P.ACKS))
    return {}


def _op_return(conn: DataConnection, h: dict, body) -> dict:
    ids = h.get(P.ACKS) or []
    if not isinstance(ids, list):
        raise InvalidArgumentError("return ids must be a list")
    conn.session.give_back(ids)
    return {}


def _op_cancel(conn: DataConnection, h: dict, body) -> dict:
    rid: Any = h.get(P.WITHDRAWN)  # any value: one that names no pending call finds nothing
    pending = conn.pending.get(rid) or conn.forwards.get(rid)
    if pending is not None:
        pending.cancel()
    return {}


def _op_size(conn: DataConnection, h: dict, body) -> dict:
    return {"r": conn.queue(h).size()}


def _op_is_closed(conn: DataConnection, h: dict, body) -> dict:
    return {"r": conn.queue(h).is_closed()}


def _op_close(conn: DataConnection, h: dict, body) -> dict:
    q = conn.queue(h)
    q.close(cancel_pending_enqueues=bool(h.get(P.CANCEL_PENDING)))
    event(logging.INFO, conn.service.task, "queue_closed", f"queue {q.name} closed by {conn.client_name}",
          queue=q.name, client=conn.client_name, size=q._store.size, cancel_pending_enqueues=bool(h.get(P.CANCEL_PENDING)))
    return {}


def _op_delete(conn: DataConnection, h: dict, body) -> dict:
    q = conn.queue(h)
    size = q._store.size
    conn.service.resources.delete(q.key[0], q.key[1], f"{q.type_name} '{q.name}' was deleted by {conn.client_name}")
    event(logging.INFO, conn.service.task, "queue_deleted", f"queue {q.name} deleted by {conn.client_name}",
          queue=q.name, client=conn.client_name, dropped=size)
    return {"r": size}


def _op_variable(conn: DataConnection, h: dict, body) -> dict:
    home, warning = conn.service.placement_for(h)
    arrays = decode_arrays(h.get(P.ARRAYS, []), body)
    if len(arrays) != 1:
        raise InvalidArgumentError("variable needs exactly one initial value")
    container, name = field_str(h, P.CONTAINER, ""), field_str(h, P.NAME)
    existed = name in conn.service.resources.containers.get(container, {})
    v = conn.service.resources.variable(name, arrays[0], container=container, dtype=h.get("dtype"))
    if not existed:
        event(logging.INFO, conn.service.task, "variable_created", f"variable {v.name} created by {conn.client_name}",
              variable=v.name, dtype=str(v.dtype), shape=list(v.shape), client=conn.client_name)
    return {"dtype": v.dtype.str, "shape": list(v.shape), "init": v.is_initialized(), "home": home, "warn": warning}


def _op_var(conn: DataConnection, h: dict, body):
    v = conn.variable(h)
    action = h.get(P.ACTION)
    if action == "is_initialized":
        if v.destroyed:
            v._check()
        return {"r": v.is_initialized()}
    arrays = decode_arrays(h.get(P.ARRAYS, []), body)
    if action == "initialize":
        value = v.initialize()
    elif action == "read":
        value = v.read()
    elif action in ("assign", "assign_add", "assign_sub"):
        if len(arrays) != 1:
            raise InvalidArgumentError(f"{action} needs one value")
        value = getattr(v, action)(arrays[0], h.get(P.WIRE_DTYPE))  # "wd": the marked wire dtype, if any
    elif action == "gather":
        if len(arrays) != 1:
            raise InvalidArgumentError(f"Variable '{v.name}' gather needs one array of indices")
        value = v.gather(arrays[0])
    elif action in SCATTERS:
        if len(arrays) != 2:
            raise InvalidArgumentError(f"Variable '{v.name}' {action} needs two arrays: indices and updates")
        getattr(v, action)(arrays[0], arrays[1], h.get(P.WIRE_DTYPE))
        return {}  # the rows changed, not the table: a sparse push gets no dense reply
    else:
        raise UnimplementedError(f"unknown variable operation {action!r}")
    return {}, [value]


SCATTERS = frozenset({"scatter_add", "scatter_sub", "scatter_update"})


def _op_accumulator(conn: DataConnection, h: dict, body) -> dict:
    home, warning = conn.service.placement_for(h)
    shape = h.get("shape")
    if shape is not None and (not isinstance(shape, list) or not all(isinstance(d, int) for d in shape)):
        raise InvalidArgumentError("an accumulator's shape is a list of dimensions")  # the core says what it takes
    container, name = field_str(h, P.CONTAINER, ""), field_str(h, P.NAME)
    existed = name in conn.service.resources.containers.get(container, {})
    reduction = h.get(P.SPARSE)
    if reduction is None:
        acc: Any = conn.service.resources.accumulator(name, shape, dtype=h.get("dtype", "float32"), container=container)
    else:
        acc = conn.service.resources.sparse_accumulator(name, shape, dtype=h.get("dtype", "float32"),
                                                        reduction_type=reduction, container=container)
    if not existed:
        event(logging.INFO, conn.service.task, "accumulator_created",
              f"accumulator {acc.name} created by {conn.client_name}", accumulator=acc.name, client=conn.client_name)
    return {"dtype": acc.dtype.str, "shape": list(acc.shape), "home": home, "warn": warning}


def _op_acc(conn: DataConnection, h: dict, body):
    acc = conn.accumulator(h)
    action = h.get(P.ACTION)
    if action == "apply":
        arrays = decode_arrays(h.get(P.ARRAYS, []), body)
        step = h.get("step")
        if len(arrays) != 1 or not isinstance(step, int):
            raise InvalidArgumentError("apply_grad needs one gradient and an integer local_step")
        return {"r": acc.apply_grad(arrays[0], step, h.get(P.WIRE_DTYPE))}  # type: ignore[attr-defined]  # each kind has one
    if action == "apply_sparse":
        arrays = decode_arrays(h.get(P.ARRAYS, []), body)
        step = h.get("step")
        if len(arrays) not in (2, 3) or not isinstance(step, int):
            raise InvalidArgumentError(
                "apply_indexed_slices_grad needs indices, values (and perhaps a dense_shape) and an integer local_step")
        if not isinstance(acc, SparseConditionalAccumulator):
            raise InvalidArgumentError(f"{acc.type_name} '{acc.name}' takes dense gradients: use apply_grad")
        dense_shape = arrays[2] if len(arrays) == 3 else None
        return {"r": acc.apply_indexed_slices_grad(arrays[0], arrays[1], step, h.get(P.WIRE_DTYPE), dense_shape)}
    if action == "take":
        n = h.get(P.COUNT)
        if not isinstance(n, int):
            raise InvalidArgumentError("take_grad needs an integer num_required")
        return acc.take_grad(n, timeout=timeout_field(h))
    if action == "set_step":
        step = h.get("step")
        if not isinstance(step, int):
            raise InvalidArgumentError("set_global_step needs an integer step")
        acc.set_global_step(step)
        return {}
    if action == "num":
        return {"r": acc.num_accumulated(), "step": acc.global_step}
    raise UnimplementedError(f"unknown accumulator operation {action!r}")


def _op_reset(conn: DataConnection, h: dict, body) -> dict:
    containers = h.get("cs")
    if not isinstance(containers, list) or not all(isinstance(c, str) for c in containers):
        raise InvalidArgumentError("reset needs a list of container names")
    return {"r": conn.service.reset_local(containers), "unreachable": []}


def _op_status(conn: DataConnection, h: dict, body) -> asyncio.Future:
    """This task's status (``cluster``: and every task's), built a slice per turn of the loop."""
    return asyncio.ensure_future(_status(conn.service, bool(h.get("cluster"))))


async def _status(service: "QueueService", cluster: bool) -> dict:
    reply: dict = {"r": await build_status(service)}
    if cluster:
        reply["cluster"] = await service.cluster_status()
    return reply


def _op_spec(conn: DataConnection, h: dict, body) -> dict:
    res = conn.service.resources.get(field_str(h, P.CONTAINER, ""), field_str(h, P.NAME))
    home = conn.service.task
    if isinstance(res, QueueBase):
        return {"kind": "queue", "type": res.type_name, "spec": res.spec.to_wire(), "cap": res.capacity, "home": home}
    return {"kind": "variable", "dtype": res.dtype.str, "shape": list(res.shape), "home": home}


def _op_bye(conn: DataConnection, h: dict, body) -> object:
    conn.said_bye = True
    settle_forwarded(conn, "ack", conn.session.goodbye())
    # The reply goes first, then the connection closes: a client's close() returns once its
    # acknowledgements are done (with a data directory: written). It used to close unanswered.
    conn.send({P.ID: h.get(P.ID, 0)})
    conn.close_after_flush()
    return NO_REPLY


def _op_ping(conn: DataConnection, h: dict, body) -> dict:
    return {}


_MAX_REPORT_FIGURES = 64


def _op_report(conn: DataConnection, h: dict, body) -> dict:
    """Keep a client's latest figures about itself (role, e.g. "trainer", and name -> number)."""
    role = field_str(h, "role")[:100]
    figures = h.get("fig")
    if not isinstance(figures, dict) or len(figures) > _MAX_REPORT_FIGURES:
        raise InvalidArgumentError(f"report figures must be a dict of at most {_MAX_REPORT_FIGURES} numbers")
    clean: dict[str, float] = {}
    for key, value in figures.items():
        if not isinstance(key, str) or not key or len(key) > 100:
            raise InvalidArgumentError("report figure names must be non-empty strings of at most 100 characters")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
                float("inf"), float("-inf")):
            raise InvalidArgumentError(f"report figure {key!r} must be a finite number, got {value!r}")
        clean[key] = value
    conn.report = {"role": role, "figures": clean, "ts": time.time()}
    return {}


def _op_dir(conn: DataConnection, h: dict, body) -> dict:
    directory = conn.service.directory
    container, name = field_str(h, P.CONTAINER, ""), field_str(h, P.NAME)
    if h.get(P.ACTION) == "register":
        return {"r": directory.local_register(container, name, field_str(h, "home"))}
    if h.get(P.ACTION) == "lookup":
        return {"r": directory.local_lookup(container, name)}
    raise UnimplementedError(f"unknown directory operation {h.get('v')!r}")


# Every operation the server answers (see queueserver.protocol for what each one carries).
OPS: dict[str, Callable] = {
    P.OP_HELLO: _op_hello, P.OP_QUEUE: _op_queue, P.OP_ENQUEUE: _op_enqueue, P.OP_DEQUEUE: _op_dequeue,
    P.OP_ACK: _op_ack, P.OP_RETURN: _op_return, P.OP_BIND: _op_bind, P.OP_CANCEL: _op_cancel,
    P.OP_SIZE: _op_size, P.OP_IS_CLOSED: _op_is_closed, P.OP_CLOSE: _op_close, P.OP_DELETE: _op_delete,
    P.OP_VARIABLE: _op_variable, P.OP_VAR: _op_var, P.OP_ACCUMULATOR: _op_accumulator, P.OP_ACC: _op_acc,
    P.OP_SPEC: _op_spec, P.OP_RESET: _op_reset, P.OP_STATUS: _op_status, P.OP_REPORT: _op_report,
    P.OP_DIR: _op_dir, P.OP_BYE: _op_bye, P.OP_PING: _op_ping,
}
