"""A queue server daemon with shared named queues and resource containers, as in TensorFlow 1.

    import numpy as np, queueserver as qs
    server = qs.Server.create_local_server()
    with qs.connect(server.target) as c:
        q = c.fifo_queue("q", capacity=10, dtypes=[np.float32], shapes=[[2]])
        q.enqueue_many(np.array([[1., 2.], [3., 4.]], np.float32))
        print(q.dequeue_many(2))
"""

from queueserver._version import __version__  # noqa: E402,F401

from queueserver.errors import *  # noqa: E402,F401,F403
from queueserver.errors import __all__ as _errors_all  # noqa: E402
from queueserver.cluster import ClusterSpec, DeviceSpec, ResourceInfo, replica_device_setter  # noqa: E402
from queueserver.server import Server  # noqa: E402
from queueserver.client import (  # noqa: E402
    Accumulator, AsyncAccumulator, AsyncClient, AsyncDelivery, AsyncQueue, AsyncVariable, Client, Delivery, Queue,
    VariableHandle, connect, connect_async, AsyncSparseAccumulator, SparseAccumulator, IndexedSlices,
)

__all__ = [
    "__version__", "Server", "ClusterSpec", "DeviceSpec", "ResourceInfo", "replica_device_setter", "connect", "connect_async", "Client", "AsyncClient",
    "Queue", "AsyncQueue", "Delivery", "AsyncDelivery", "VariableHandle", "AsyncVariable", "Accumulator", "AsyncAccumulator",
    "SparseAccumulator", "AsyncSparseAccumulator", "IndexedSlices", *_errors_all,
]
