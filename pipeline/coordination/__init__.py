"""``Coordinator`` and ``QueueRunner``: TensorFlow 1's ``tf.train`` threading helpers, on asyncio.

A :class:`Coordinator` stops a group of concurrent loops together: each loop checks
:meth:`~Coordinator.should_stop`, any loop may :meth:`~Coordinator.request_stop` (with the error
that made it stop), and :meth:`~Coordinator.join` waits for all of them, cancels the ones that do not
stop within a grace period and re-raises the first reported error.

A :class:`QueueRunner` runs one loop per enqueue op, as fast as the target queue accepts, the way
the seed's section 2.7.3 describes:

* each op does one unit of work (read a record or a chunk, enqueue it) and raises
  ``OutOfRangeError`` when its input is exhausted (or ``CancelledError`` when the queue it enqueues
  into was closed): its loop then ends quietly;
* when *every* loop of a run has ended that way, the runner closes the target queue, so consumers
  using ``dequeue_up_to`` get what is left and then ``OutOfRangeError``;
* any other error is reported to the coordinator (``request_stop(exc)``), and once a stop is
  requested the runner closes the queue with ``cancel_pending_enqueues=True`` so that no loop or
  remote producer stays blocked on a full queue.

Everything runs as asyncio tasks (:meth:`QueueRunner.create_tasks`). Synchronous scripts, like the
seed's, use :meth:`QueueRunner.create_threads`, which runs the same tasks on a background event
loop and hands back thread-like handles for :meth:`Coordinator.join_threads`.

Queue handles: an :class:`queueserver.AsyncQueue` is awaited directly (use it on the loop its
client was opened on); a synchronous :class:`queueserver.Queue` is wrapped in an
:class:`AsyncQueueView`, whose coroutines run the call on that client's own loop, so they work from
any event loop without blocking it.

Modules: :mod:`.loops` (the background loop and loop helpers), :mod:`.views` (``AsyncQueueView``,
``as_async_queue``), :mod:`.coordinator` (``Coordinator``) and :mod:`.runner` (``QueueRunner``,
``RunnerThread``); every name is importable from here.

Example:
    >>> import numpy as np, queueserver as qs
    >>> server = qs.Server.create_local_server()
    >>> c = qs.connect(server.target)
    >>> q = c.fifo_queue("numbers", capacity=4, dtypes=[np.int64], shapes=[[]])
    >>> source = iter(range(10))
    >>> def enqueue_next():                      # a sync op: runs in a worker thread
    ...     try:
    ...         q.enqueue(next(source))
    ...     except StopIteration:
    ...         raise qs.OutOfRangeError("no more numbers") from None
    >>> coord = Coordinator()
    >>> threads = QueueRunner(q, [enqueue_next]).create_threads(coord)
    >>> got = []
    >>> with coord.stop_on_exception():          # OutOfRangeError: a clean stop
    ...     while True:
    ...         got.extend(q.dequeue_up_to(3).tolist())
    >>> coord.join_threads(threads)
    >>> got
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    >>> c.close(); server.stop()
"""

from .coordinator import Coordinator
from .loops import background_loop
from .loops import call_in_thread as call_in_thread
from .runner import EnqueueOp as EnqueueOp
from .runner import QueueRunner, RunnerThread
from .views import AsyncQueueView, as_async_queue

__all__ = [
    "AsyncQueueView",
    "Coordinator",
    "QueueRunner",
    "RunnerThread",
    "as_async_queue",
    "background_loop",
]
