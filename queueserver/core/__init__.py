"""The pure core: queue types, variables and resource containers, with no I/O.

Every semantic rule of the system lives here and is tested here without sockets; the server and
the embedded local server are thin adapters over these objects.
"""

from queueserver.core.queues import (  # noqa: F401
    MANY, ONE, UP_TO, Attempt, FIFOQueue, PaddingFIFOQueue, PriorityQueue, QueueBase, RandomShuffleQueue,
)
from queueserver.core.accumulators import (  # noqa: F401
    ConditionalAccumulator, ConditionalAccumulatorBase, SparseConditionalAccumulator,
)
from queueserver.core.resources import ResourceManager, Variable  # noqa: F401
from queueserver.core.specs import ComponentSpec  # noqa: F401
