"""A connection's delivery session, fed by hand: no sockets, no server (queueserver.session)."""

from __future__ import annotations

import numpy as np
import pytest

from queueserver.core import MANY, ResourceManager
from queueserver.errors import InvalidArgumentError, ResourceExhaustedError
from queueserver.session import DeliverySession


def _queue_with(values):
    q = ResourceManager().queue("fifo", "q", capacity=100, dtypes=["int64"], shapes=[[]])
    q.enqueue([np.array(values, np.int64)], many=True)
    return q


async def _take(q, n):
    """What a dequeue of n delivered: (the taken batches, their values)."""
    attempt = q.dequeue(n, mode=MANY)
    await attempt.wait()
    return attempt.taken, attempt.result[0].tolist()


async def test_held_deliveries_go_back_in_delivery_order_when_the_connection_is_lost():
    q = _queue_with(range(9))
    session = DeliverySession(pending_bytes_limit=1 << 20, max_handles=4)
    ids = []
    for _ in range(3):
        taken, _ = await _take(q, 3)
        ids.append(session.next_id())
        session.hold(ids[-1], q, taken)
    session.ack([ids[1]])
    assert session.lost() == {}
    assert session.held == {}
    _, values = await _take(q, 6)
    assert values == [0, 1, 2, 6, 7, 8]  # the acknowledged batch does not come back


async def test_give_back_and_goodbye():
    q = _queue_with(range(6))
    session = DeliverySession(1 << 20, 4)
    first, second = session.next_id(), session.next_id()
    session.hold(first, q, (await _take(q, 2))[0])
    session.hold(second, q, (await _take(q, 2))[0])
    session.give_back([second, first, 999])  # in delivery order whatever the order asked; unknown ids ignored
    assert (await _take(q, 6))[1] == [0, 1, 2, 3, 4, 5]
    session.forwarded("/job:ps/task:1", [], 7)
    session.forwarded("/job:ps/task:1", [], 8)
    session.forwarded("/job:ps/task:1", [7], None)  # acknowledged there by a later forwarded call
    assert session.goodbye() == {"/job:ps/task:1": [8]}
    assert session.lost() == {}


def test_acks_must_be_a_list_and_the_budget_is_checked():
    session = DeliverySession(pending_bytes_limit=10, max_handles=1)
    with pytest.raises(InvalidArgumentError, match="ack ids must be a list"):
        session.ack(5)
    session.pending_bytes = 10
    session.check_budget()
    session.pending_bytes = 11
    with pytest.raises(ResourceExhaustedError, match="11 bytes of this connection's enqueues"):
        session.check_budget()


def test_compact_handles_are_bounded_and_checked_on_use():
    q = _queue_with([])
    session = DeliverySession(1 << 20, max_handles=1)
    with pytest.raises(InvalidArgumentError, match="handle number"):
        session.bind(0, ("", "q"), ("layout",), 8)
    session.bind(1, ("", "q"), ("layout",), 8)
    with pytest.raises(ResourceExhaustedError, match="already bound 1"):
        session.bind(2, ("", "q"), ("layout",), 8)
    found = []

    def find(key):
        found.append(key)
        return q

    assert session.bound(1, find, lambda queue: ("layout",)) == (q, ("layout",), 8)
    assert session.bound(1, find, lambda queue: ("layout",))[0] is q and found == [("", "q")]  # looked up once
    q.destroy("reset")
    with pytest.raises(InvalidArgumentError, match="not the elements this client expects"):
        session.bound(1, find, lambda queue: ("another",))
    with pytest.raises(InvalidArgumentError, match="no queue is bound to compact handle 3"):
        session.bound(3, find, lambda queue: ())


def test_the_protocol_module_names_every_operation_the_server_answers():
    from queueserver import protocol
    from queueserver.ops import OPS

    named = {v for k, v in vars(protocol).items() if k.startswith("OP_")}
    assert named == set(OPS)
    documented = protocol.__doc__
    assert all(f"``{op}``" in documented for op in OPS), "every op has a line in protocol's table"
