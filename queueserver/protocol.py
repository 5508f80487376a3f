"""The data-plane protocol in one place: its operations, the header fields they use, which calls
a cluster task routes to another task, and one builder per request (the functions at the end,
which every client and the server's peer links call). Each operation's parser is its handler in
:mod:`queueserver.ops`, which checks every field it reads.

A connection starts with :data:`queueserver.wire.PREAMBLE`; then each request and reply is a
frame (see :mod:`queueserver.wire` for the framing, the array codec and the compact frames): a
msgpack header (a map) and a body of raw array bytes. Every request names its operation and a
request id; its reply carries the same id, and either the results or an error.

Requests (``OP_*``; the fields each uses are listed with the field constants below):

==============  ===========================================================================
``hello``       introduce the client (``token``, ``client``; ``cid``: the client id its compact
                enqueues' stamps use); the reply describes the server
``queue``       create or open a queue (``kind``, ``n``, ``c``, ``cap``, ``spec``, ``mad``, ``seed``)
``enqueue``     add one element or, with ``m``, a batch (arrays ``a`` + body; ``t``); ``st``: its
                stamp [client id, sequence], so a retry places only what earlier tries did not
``dequeue``     take ``md`` one/many/up_to (``nn`` elements; ``t``), acknowledging ``k``;
                the reply's ``d`` is the delivery id the server holds the batch under
``ack``         acknowledge deliveries ``k``
``return``      give deliveries ``k`` back to the front of their queues
``bind``        bind compact-frame handle ``fh`` to a queue and element ``spec`` (no reply)
``cancel``      withdraw the pending request ``r``
``size``        a queue's size; ``is_closed``; ``close`` (``x``: cancel pending enqueues)
``delete``      delete a queue: its elements are dropped, its waiting calls fail with Cancelled
``variable``    create or open a variable (initial value in ``a``; ``dtype``)
``var``         a variable action ``v``: read, assign, assign_add, assign_sub, initialize, is_initialized;
                gather (arrays: indices; reply: the rows), scatter_add, scatter_sub, scatter_update
                (arrays: indices, updates; ``wd``; no reply arrays)
``accumulator`` create or open a conditional accumulator (``shape``, ``dtype``; ``sp``: a sparse one,
                with that reduction type, MEAN or SUM)
``acc``         an accumulator action ``v``: apply (``step``, ``wd``), apply_sparse (arrays: indices,
                values; ``step``, ``wd``), take (``nn``, ``t``; a sparse one's reply: indices, values,
                dense shape), set_step, num
``spec``        what a name is (queue or variable) and its spec
``reset``       free containers ``cs`` (on every task of a cluster)
``status``      the server's status (``cluster``: every task's)
``report``      a client's latest figures about itself (``role``, ``fig``)
``dir``         the cluster directory of resource homes (between tasks)
``bye``         clean goodbye: every held delivery is acknowledged
``ping``        nothing; answers at once
==============  ===========================================================================
"""

from __future__ import annotations

from typing import Any

from queueserver.errors import InvalidArgumentError

# ----- operations
OP_HELLO, OP_QUEUE, OP_ENQUEUE, OP_DEQUEUE = "hello", "queue", "enqueue", "dequeue"
OP_ACK, OP_RETURN, OP_BIND, OP_CANCEL = "ack", "return", "bind", "cancel"
OP_SIZE, OP_IS_CLOSED, OP_CLOSE = "size", "is_closed", "close"
OP_VARIABLE, OP_VAR, OP_ACCUMULATOR, OP_ACC = "variable", "var", "accumulator", "acc"
OP_SPEC, OP_RESET, OP_STATUS, OP_REPORT, OP_DIR = "spec", "reset", "status", "report", "dir"
OP_BYE, OP_PING, OP_DELETE = "bye", "ping", "delete"

# ----- header fields (short: they travel with every call)
ID = "i"              # request id; a reply carries its request's (0: not a reply to anything)
OP = "o"              # the operation
NAME = "n"            # resource name
CONTAINER = "c"       # resource container ("" the default)
HOME = "h"            # the task a resource lives on (/job:ps/task:0)
LOCAL = "local"       # run on this task, do not route again (set by the task that routed it)
ARRAYS = "a"          # array descriptors of the body: [[dtype, shape], ...]
TIMEOUT = "t"         # seconds a blocking call may wait; None for ever
DEADLINE = "dl"       # seconds the caller waits for a call that does not block (its operation timeout)
MANY = "m"            # enqueue: the arrays are a batch
MODE = "md"           # dequeue: "one", "many" or "up_to"
COUNT = "nn"          # dequeue / take_grad: how many
ACKS = "k"            # delivery ids being acknowledged (dequeue, ack) or returned (return)
DELIVERY = "d"        # reply to a dequeue: the delivery id the batch is held under
RESULT = "r"          # reply: the result of a query
WITHDRAWN = "r"       # cancel: the id of the request to withdraw
ERROR = "e"           # reply: [code, message, details] of the error raised
WIRE_DTYPE = "wd"     # a narrower dtype the values travel as (bfloat16 bit patterns)
HANDLE = "fh"         # bind: the compact-frame handle
CANCEL_PENDING = "x"  # close: cancel pending enqueues
ACTION = "v"          # var / acc / dir: the action
STAMP = "st"          # enqueue: [client id, sequence number, low-water mark]; a retry is applied once
WARNING = "warn"      # reply to a create: a placement warning to show the user
SPARSE = "sp"         # accumulator: a sparse one, with this reduction type ("MEAN" or "SUM")

# Ops that create a resource: the cluster decides (and remembers) where it lives.
CREATE_OPS = frozenset({OP_QUEUE, OP_VARIABLE, OP_ACCUMULATOR})
# Ops on one named resource: a task that is not its home forwards them there.
RESOURCE_OPS = frozenset({OP_ENQUEUE, OP_DEQUEUE, OP_SIZE, OP_IS_CLOSED, OP_CLOSE, OP_DELETE, OP_VAR, OP_ACC, OP_SPEC,
                          OP_ACK, OP_RETURN})


def needs_routing(op: str, header: dict, task: str) -> bool:
    """Whether ``task``, receiving ``op`` from a client, must route it (find its home, or go to
    every task) rather than run it on its own resources."""
    if op in CREATE_OPS or op == OP_RESET:
        return True
    if op in RESOURCE_OPS:
        if op in (OP_ACK, OP_RETURN) and NAME not in header:
            return False
        return header.get(HOME) != task
    return False


def route_fields(header: dict) -> dict:
    """The fields (name, container, home task) that route a follow-up call to a request's resource."""
    return {k: header[k] for k in (NAME, CONTAINER, HOME) if k in header}


def field_str(header: dict, key: str, default: str | None = None) -> str:
    """A string field of a request.

    Raises:
        InvalidArgumentError: the field is missing (without a default) or not a string.
    """
    value = header.get(key, default)
    if not isinstance(value, str):
        raise InvalidArgumentError(f"field {key!r} must be a string")
    return value


def timeout_field(header: dict) -> Any:
    """The call's timeout as sent; the core checks it (``check_timeout``) before anything changes."""
    return header.get(TIMEOUT)


# ----- one builder per request (the client side; ``route`` is ``route_fields`` of the resource)
def hello(token: str | None, client: str, client_id: str | None = None) -> dict:
    header = {OP: OP_HELLO, "token": token, "client": client}
    if client_id is not None:
        header["cid"] = client_id  # what stamps a compact enqueue (see queueserver.wire)
    return header


def bye() -> dict:
    return {OP: OP_BYE}


def ping() -> dict:
    return {OP: OP_PING}


def create_queue(kind: str, capacity: int, spec: dict, **extra: Any) -> dict:
    """``extra``: ``mad`` (min_after_dequeue) and ``seed`` for a RandomShuffleQueue."""
    return {OP: OP_QUEUE, "kind": kind, "cap": capacity, "spec": spec, **extra}


def create_variable(dtype: str | None = None) -> dict:
    return {OP: OP_VARIABLE} if dtype is None else {OP: OP_VARIABLE, "dtype": dtype}


def create_accumulator(shape: list | None, dtype: str, reduction_type: str | None = None) -> dict:
    """``reduction_type``: None for a dense accumulator, "MEAN" or "SUM" for a sparse one."""
    header = {OP: OP_ACCUMULATOR, "shape": shape, "dtype": dtype}
    if reduction_type is not None:
        header[SPARSE] = reduction_type
    return header


def enqueue(route: dict, many: bool, timeout: float | None) -> dict:
    return {OP: OP_ENQUEUE, **route, MANY: many, TIMEOUT: timeout}


def dequeue(route: dict, mode: str, count: int | None, timeout: float | None, acks: list) -> dict:
    header: dict[str, Any] = {OP: OP_DEQUEUE, **route, MODE: mode, COUNT: count, TIMEOUT: timeout}
    if acks:
        header[ACKS] = acks
    return header


def ack(route: dict, ids: list) -> dict:
    return {OP: OP_ACK, **route, ACKS: ids}


def give_back(route: dict, ids: list) -> dict:
    """``return``: the deliveries go back to the front of their queues."""
    return {OP: OP_RETURN, **route, ACKS: ids}


def cancel(request_id: int) -> dict:
    return {OP: OP_CANCEL, WITHDRAWN: request_id}


def bind(handle: int, name: str, container: str, spec: dict) -> dict:
    return {OP: OP_BIND, HANDLE: handle, NAME: name, CONTAINER: container, "spec": spec}


def queue_query(op: str, route: dict) -> dict:
    """``size`` or ``is_closed``."""
    return {OP: op, **route}


def close(route: dict, cancel_pending_enqueues: bool) -> dict:
    return {OP: OP_CLOSE, **route, CANCEL_PENDING: cancel_pending_enqueues}


def delete(route: dict) -> dict:
    return {OP: OP_DELETE, **route}


def variable_action(route: dict, action: str, wire_dtype: str | None = None) -> dict:
    header: dict[str, Any] = {OP: OP_VAR, **route, ACTION: action}
    if wire_dtype is not None:
        header[WIRE_DTYPE] = wire_dtype
    return header


def accumulator_action(route: dict, action: str, **fields: Any) -> dict:
    """``fields``: ``step`` and ``wd`` for apply, ``nn`` and ``t`` for take, ``step`` for set_step."""
    return {OP: OP_ACC, **route, ACTION: action, **fields}


def spec(name: str, container: str) -> dict:
    return {OP: OP_SPEC, NAME: name, CONTAINER: container}


def reset(containers: list, local: bool = False) -> dict:
    header: dict[str, Any] = {OP: OP_RESET, "cs": containers}
    if local:
        header[LOCAL] = True
    return header


def status(cluster: bool = False) -> dict:
    return {OP: OP_STATUS, "cluster": cluster}


def report(role: str, figures: dict) -> dict:
    return {OP: OP_REPORT, "role": role, "fig": figures}


def directory(action: str, container: str, name: str, home: str | None = None) -> dict:
    header: dict[str, Any] = {OP: OP_DIR, ACTION: action, CONTAINER: container, NAME: name}
    if home is not None:
        header["home"] = home
    return header
