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

from queueserver.asyncio_client import AsyncClient, connect_async
from queueserver.channel import Channel, parse_target
from queueserver.handles import (
    AsyncAccumulator, AsyncDelivery, AsyncQueue, AsyncSparseAccumulator, AsyncVariable, IndexedSlices,
)
from queueserver.sync_client import Accumulator, Client, Delivery, Queue, SparseAccumulator, VariableHandle, connect

__all__ = ["AsyncClient", "connect_async", "Channel", "parse_target", "AsyncQueue", "AsyncDelivery", "AsyncVariable",
           "AsyncAccumulator", "Client", "connect", "Queue", "Delivery", "VariableHandle", "Accumulator",
           "AsyncSparseAccumulator", "SparseAccumulator", "IndexedSlices"]
