"""TensorFlow 1's input producers and batching queues on the queue server (``tf.train.*``).

Each function creates a queue on the server and a :class:`~pipeline.coordination.QueueRunner` that
fills it, and returns both in a :class:`Producer`, which also knows how to take from the queue (one
element, or a batch). Start the runner with :meth:`Producer.start` (threads, for scripts) or
:meth:`Producer.create_tasks` (asyncio); TensorFlow's ``start_queue_runners`` is
:func:`start_queue_runners`.

* :func:`string_input_producer`: a FIFO queue of file names, refilled every epoch (shuffled by
  default), closed after ``num_epochs``;
* :func:`batch` / :func:`shuffle_batch`: a FIFO / RandomShuffle queue filled from one source by
  ``num_threads`` loops; ``Producer.dequeue()`` is ``dequeue_many(batch_size)``, or
  ``dequeue_up_to(batch_size)`` with ``allow_smaller_final_batch``;
* :func:`batch_join` / :func:`shuffle_batch_join`: the same with one loop per source (e.g. one
  reader per file).

A *source* stands for TensorFlow's tensors, which yield a new value every time they are evaluated:

* a function (plain or ``async``) returning the next element, raising ``OutOfRangeError`` (or
  ``StopIteration``) at the end; plain functions run in worker threads;
* an iterable (a list, a generator, a :class:`pipeline.data.Dataset`) or an async iterable,
  shared by the loops of one source under a lock.

An element is one array or scalar (a one-component queue), a tuple or list of them (components),
or a dict (named components). With ``enqueue_many=True`` each value is a batch of elements (the
first dimension counts them). The queue's dtypes and shapes come from ``dtypes``/``shapes`` if
given, else from the queue a source takes from (a queue's ``dequeue``, a Producer of single
elements), else from a Dataset source's static ``element_spec``, else from the source's first
value. An iterable's first value is taken right away (every source's, for a join, checked against
each other as TensorFlow checks them at build). A function's may depend on runners not started yet
(a reader on a queue of file names), so a producer over functions makes its queue when its runner
takes the first value, and ``Producer.queue`` waits for it; building never waits, as building
TensorFlow's graph never does. Python numbers follow TensorFlow's rules (float -> float32, int ->
int32).

Example:
    >>> import numpy as np, queueserver as qs
    >>> from pipeline.coordination import Coordinator
    >>> server = qs.Server.create_local_server()
    >>> c = qs.connect(server.target)
    >>> xs = [(np.float32(i), np.int32(i % 2)) for i in range(5)]
    >>> batches = batch(c, xs, batch_size=2, allow_smaller_final_batch=True)
    >>> coord = Coordinator()
    >>> threads = batches.start(coord)
    >>> [x.tolist() for x, y in batches]
    [[0.0, 1.0], [2.0, 3.0], [4.0]]
    >>> coord.request_stop(); coord.join_threads(threads)
    >>> c.close(); server.stop()
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import uuid
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

import numpy as np

from queueserver import errors as qerrors
from queueserver.channel import DEFAULT
from queueserver.client import Client, Queue
from queueserver.core.specs import STRING

from pipeline.coordination import (
    AsyncQueueView,
    Coordinator,
    QueueRunner,
    RunnerThread,
    background_loop,
    call_in_thread,
)
from pipeline.coordination.loops import is_coroutine_callable
from pipeline.data.structure import to_array

__all__ = [
    "Producer",
    "batch",
    "batch_join",
    "shuffle_batch",
    "shuffle_batch_join",
    "start_queue_runners",
    "string_input_producer",
]


# --------------------------------------------------------------------------- the result
class Producer:
    """A server queue, the :class:`QueueRunner` that fills it, and how to take from it.

    Attributes:
        queue: the synchronous queue handle (share its name with other processes).
        runner: the runner; nothing is enqueued until it is started.
        batch_size: elements per :meth:`dequeue` (``None``: one element, not stacked).
        allow_smaller_final_batch: whether the last batch may be smaller (``dequeue_up_to``).

    Example:
        >>> files = string_input_producer(client, ["a.csv"], num_epochs=1)   # doctest: +SKIP
        >>> threads = files.start(coord)                                    # doctest: +SKIP
        >>> list(files)                                                     # doctest: +SKIP
        [b'a.csv']
    """

    def __init__(self, queue: "Queue | _LazyQueue", runner: QueueRunner, batch_size: int | None = None,
                 allow_smaller_final_batch: bool = False) -> None:
        self._queue = queue
        self.runner = runner
        self.batch_size = batch_size
        self.allow_smaller_final_batch = allow_smaller_final_batch
        self._view = None if isinstance(queue, _LazyQueue) else AsyncQueueView(queue)

    def __repr__(self) -> str:
        take = "one element" if self.batch_size is None else f"batches of {self.batch_size}"
        queue = self._queue.made if isinstance(self._queue, _LazyQueue) else self._queue
        return f"<Producer {queue if queue is not None else repr(self.name)}, {take}>"

    @property
    def queue(self) -> Queue:
        """The synchronous queue handle. A producer whose element spec is read off its source's first
        value makes its queue when that value arrives (its runner started): until then this waits.

        Raises:
            OutOfRangeError: the source ended (or the runner was stopped) before giving a value.
        """
        if isinstance(self._queue, _LazyQueue):
            return self._queue.get()
        return self._queue

    def _ready_queue(self) -> Queue | None:
        """The queue, or None while it is still to be made (never waits)."""
        return self._queue.made if isinstance(self._queue, _LazyQueue) else self._queue

    @property
    def name(self) -> str:
        """The queue's name on the server (known before the queue is made)."""
        return self._queue.name

    def start(self, coord: Coordinator | None = None) -> list[RunnerThread]:
        """Start the runner on the background loop (``tf.train.start_queue_runners`` for one).

        Args:
            coord: stops the runner and collects its errors; ``coord.join_threads()`` waits for it.

        Returns:
            The runner's thread-like handles.
        """
        return self.runner.create_threads(coord)

    def create_tasks(self, coord: Coordinator | None = None) -> list[asyncio.Task]:
        """Start the runner as asyncio tasks of the running loop (see :meth:`QueueRunner.create_tasks`)."""
        return self.runner.create_tasks(coord)

    def dequeue(self, **kwargs: Any) -> Any:
        """The next element or batch (what evaluating TensorFlow's returned tensors gives).

        Args:
            **kwargs: passed to the queue call (``timeout=``).

        Returns:
            One element (``batch_size`` None), or a batch: arrays stacked along a new first axis.

        Raises:
            OutOfRangeError: the queue is closed and (for batches without
                ``allow_smaller_final_batch``) holds fewer than ``batch_size`` elements.
        """
        lazy = self._queue
        queue = lazy.get(kwargs.get("timeout", DEFAULT)) if isinstance(lazy, _LazyQueue) else lazy
        if self.batch_size is None:
            return queue.dequeue(**kwargs)
        if self.allow_smaller_final_batch:
            return queue.dequeue_up_to(self.batch_size, **kwargs)
        return queue.dequeue_many(self.batch_size, **kwargs)

    async def dequeue_async(self, **kwargs: Any) -> Any:
        """:meth:`dequeue` as a coroutine, from any event loop."""
        lazy = self._queue
        if isinstance(lazy, _LazyQueue):
            if lazy.made is None:  # wait off the loop, as dequeue() waits
                await asyncio.to_thread(lazy.get, kwargs.get("timeout", DEFAULT))
            view = lazy.view()
        else:
            assert self._view is not None  # made with the queue
            view = self._view
        if self.batch_size is None:
            return await view.dequeue(**kwargs)
        if self.allow_smaller_final_batch:
            return await view.dequeue_up_to(self.batch_size, **kwargs)
        return await view.dequeue_many(self.batch_size, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        """Dequeue until ``OutOfRangeError`` (the queue closed and drained)."""
        while True:
            try:
                value = self.dequeue()
            except qerrors.OutOfRangeError:
                return
            yield value

    async def __aiter__(self) -> AsyncIterator[Any]:
        """``async for``: dequeue until ``OutOfRangeError``."""
        while True:
            try:
                value = await self.dequeue_async()
            except qerrors.OutOfRangeError:
                return
            yield value


def start_queue_runners(producers: Sequence[Producer | QueueRunner],
                        coord: Coordinator | None = None) -> list[RunnerThread]:
    """Start several producers' (or runners') loops on the background loop.

    TensorFlow's ``tf.train.start_queue_runners`` starts every runner of the graph; here they are
    named explicitly.

    Args:
        producers: :class:`Producer` or :class:`QueueRunner` objects.
        coord: the coordinator for all of them.

    Returns:
        All their thread-like handles.

    Example:
        >>> threads = start_queue_runners([filenames, batches], coord)   # doctest: +SKIP
    """
    if isinstance(producers, (Producer, QueueRunner)):
        # A Producer is iterable (iterating it dequeues): looping over one would wait for ever.
        raise TypeError(f"start_queue_runners expects a list of producers or runners, got one "
                        f"{type(producers).__name__}: write start_queue_runners([{producers.name}], coord)")
    threads: list[RunnerThread] = []
    for p in producers:
        runner = p.runner if isinstance(p, Producer) else p
        threads += runner.create_threads(coord)
    return threads


# --------------------------------------------------------------------------- helpers
def _unique(name: str, shared_name: str | None) -> str:
    # TensorFlow's queues are private to their graph unless given a shared_name; a random suffix
    # keeps two producers of one process (or of two processes) from meeting by accident.
    return shared_name if shared_name else f"{name}_{uuid.uuid4().hex[:10]}"


def _require_client(client: Any) -> Client:
    if not isinstance(client, Client):
        raise TypeError(
            f"expected a synchronous queueserver Client (queueserver.connect(target)), got {type(client).__name__}; "
            "the producers' queues are used from any event loop through Producer.dequeue_async()")
    return client


def _split(element: Any) -> tuple[list[Any], list[str] | None, str]:
    """An element's components, their names (dicts) and its kind: 'single', 'tuple' or 'dict'."""
    if isinstance(element, dict):
        return list(element.values()), list(element), "dict"
    if isinstance(element, (tuple, list)):
        return list(element), None, "tuple"
    return [element], None, "single"


def _infer_spec(element: Any, enqueue_many: bool, dynamic_pad: bool, dtypes: Any, shapes: Any,
                where: str) -> tuple[list, list | None, list[str] | None]:
    comps, names, _ = _split(element)
    arrays = [to_array(c) for c in comps]
    if dtypes is None:
        dtypes = [STRING if a.dtype == object else a.dtype for a in arrays]
    if shapes is None:
        shapes = []
        for i, a in enumerate(arrays):
            if enqueue_many and a.ndim == 0:
                raise ValueError(
                    f"{where}: enqueue_many=True needs batches, but component {i} of the first value is a scalar")
            shape = a.shape[1:] if enqueue_many else a.shape
            shapes.append([None] * len(shape) if dynamic_pad else list(shape))
    return list(dtypes), shapes, names


def _merge_specs(specs: list[tuple[list, Any, list[str] | None]], where: str) -> tuple[list, list, list[str] | None]:
    """One queue spec from the sources' specs, refused as TensorFlow refuses a join's inputs:
    different keys (ValueError), dtypes (TypeError) or incompatible shapes (ValueError)."""
    dtypes, shapes, names = specs[0]
    merged = [None if s is None else list(s) for s in shapes]
    for i, (other_dtypes, other_shapes, other_names) in enumerate(specs[1:], 1):
        if (names is None) != (other_names is None) or (names is not None and set(names) != set(other_names or ())):
            raise ValueError(f"{where}: all sources must give elements of the same structure (and dicts the "
                             f"same keys): source 0 gives {names or len(dtypes)}, source {i} {other_names or len(other_dtypes)}")
        if names is not None and other_names is not None:  # compare by key, whatever each dict's order
            order = [other_names.index(k) for k in names]
            other_dtypes = [other_dtypes[j] for j in order]
            other_shapes = [other_shapes[j] for j in order]
        if len(other_dtypes) != len(dtypes):
            raise ValueError(f"{where}: source 0 gives {len(dtypes)} component(s), source {i} {len(other_dtypes)}")
        if [np.dtype(d) for d in other_dtypes] != [np.dtype(d) for d in dtypes]:
            raise TypeError(f"{where}: expected types to be consistent: "
                            f"{', '.join(np.dtype(d).name for d in dtypes)} vs. "
                            f"{', '.join(np.dtype(d).name for d in other_dtypes)} (source {i})")
        for c, (mine, theirs) in enumerate(zip(merged, other_shapes)):
            if mine is None or theirs is None:
                continue
            if len(mine) != len(theirs) or any(a is not None and b is not None and a != b for a, b in zip(mine, theirs)):
                raise ValueError(f"{where}: shapes {tuple(mine)} and {tuple(theirs)} of component {c} are not "
                                 f"compatible (sources 0 and {i})")
            merged[c] = [a if a is not None else b for a, b in zip(mine, theirs)]
    return dtypes, merged, names


def _spec_from_queue_source(source: Any, dynamic_pad: bool, dtypes: Any,
                            shapes: Any) -> tuple[Any, Any, list[str] | None]:
    """The spec of a source that takes single elements from a queue (a queue's ``dequeue``, or a
    :class:`Producer` of single elements): the queue's own, so nothing is taken from it before
    its runners start (TensorFlow reads it off the graph and never blocks)."""
    queue: Any = None
    owner, fname = getattr(source, "__self__", None), getattr(source, "__name__", "")
    if isinstance(source, Producer) and source.batch_size is None:
        queue = source._ready_queue()
    elif isinstance(owner, Producer) and owner.batch_size is None and fname in ("dequeue", "dequeue_async"):
        queue = owner._ready_queue()
    elif fname == "dequeue" and all(hasattr(owner, a) for a in ("dtypes", "shapes", "names", "dequeue_many")):
        queue = owner  # a Queue, AsyncQueue or AsyncQueueView
    if queue is None or queue.shapes is None:
        return dtypes, shapes, None
    queue_dtypes, qshapes, names = _queue_spec(queue)
    assert qshapes is not None  # checked above
    if not dynamic_pad and any(d is None for s in qshapes for d in s):
        return dtypes, shapes, None  # unknown sizes: the first value will tell
    if dtypes is None:
        dtypes = queue_dtypes
    if shapes is None:
        shapes = [[None] * len(s) for s in qshapes] if dynamic_pad else qshapes
    return dtypes, shapes, names


def _queue_spec(queue: Any) -> tuple[list, list | None, list[str] | None]:
    """A queue's dtypes (``STRING`` for text), shapes and names, as the producers' specs are written."""
    return ([STRING if np.dtype(d) == object else d for d in queue.dtypes],
            [list(s) for s in queue.shapes] if queue.shapes is not None else None,
            list(queue.names) if queue.names is not None else None)


def _spec_from_dataset(source: Any, dtypes: Any, shapes: Any) -> tuple[Any, Any, list[str] | None]:
    """A Dataset's static element spec as queue dtypes and shapes, when it is fully known."""
    from pipeline.data import Dataset, TensorSpec

    if not isinstance(source, Dataset):
        return dtypes, shapes, None
    try:
        spec = source.element_spec
    except Exception:  # noqa: BLE001 - no static spec: the first element will tell
        return dtypes, shapes, None
    leaves, names, _ = _split(spec)
    if not all(isinstance(l, TensorSpec) and l.shape is not None and None not in l.shape for l in leaves):
        return dtypes, shapes, None
    if dtypes is None:
        dtypes = [STRING if l.dtype_name == "string" else l.dtype for l in leaves]
    if shapes is None:
        shapes = [list(l.shape) for l in leaves]
    return dtypes, shapes, names


def _to_queue_value(value: Any) -> Any:
    comps, names, kind = _split(value)
    arrays = [to_array(c) for c in comps]
    if kind == "dict":
        assert names is not None  # a dict's keys
        return dict(zip(names, arrays))
    return tuple(arrays) if kind == "tuple" else arrays[0]


class _LazyQueue:
    """A producer's queue, made from the first value any of its loops takes (its dtypes and shapes
    are read off it), so that building a producer never waits for a source that depends on runners
    not started yet, as building TensorFlow's graph never does."""

    def __init__(self, name: str, make: Callable[[Any], Queue], operation_timeout: float | None = None) -> None:
        self.name = name
        self.operation_timeout = operation_timeout  # the client's: how long a dequeue waits by default
        self.made: Queue | None = None
        self._make = make
        self._ended: BaseException | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._view: AsyncQueueView | None = None

    def get(self, timeout: Any = None) -> Queue:
        """The queue, once made: waits for it (``timeout``: at most that long, ``DEFAULT``: the
        client's operation timeout), as a dequeue from it would wait for an element.

        Raises:
            DeadlineExceededError: it was not made in time.
            OutOfRangeError: it will never be made (the source ended or the runner was stopped first).
        """
        if timeout is DEFAULT:
            timeout = self.operation_timeout
        if not self._ready.wait(timeout):
            raise qerrors.DeadlineExceededError(
                f"{self.name}: no value came from the producer's source within {timeout:g} s (are its runners started?)")
        if self.made is None:
            assert self._ended is not None  # set before _ready
            raise self._ended
        return self.made

    def view(self) -> AsyncQueueView:
        if self._view is None:
            self._view = AsyncQueueView(self.get())
        return self._view

    def make_from(self, value: Any) -> Queue:
        """The queue, made from ``value`` if it is the first (in a worker thread: it calls the server)."""
        with self._lock:
            if self.made is None and self._ended is None:
                self.made = self._make(value)  # a value the spec cannot be read off raises: reported
                self._ready.set()
            return self.get()

    def end(self, error: BaseException) -> None:
        """No queue will be made: whoever waits for it gets ``error``."""
        with self._lock:
            if self.made is None and self._ended is None:
                self._ended = error
                self._ready.set()


class _Source:
    """Hands out a source's values to any number of loops: ``await source.next()``."""

    def __init__(self, source: Any, where: str) -> None:
        self.where = where
        self._peeked: list[Any] = []
        self._tlock = threading.Lock()
        self._alock: asyncio.Lock | None = None
        self._fn: Callable[[], Any] | None = None
        self._is_async_fn = False
        self._it: Iterator | None = None
        self._ait: Any = None
        self.is_function = False
        if callable(source) and not hasattr(source, "__iter__") and not hasattr(source, "__aiter__"):
            self.is_function = True
            self._fn = source
            self._is_async_fn = is_coroutine_callable(source)
        elif hasattr(source, "__iter__"):
            self._it = iter(source)
        elif hasattr(source, "__aiter__"):
            self._ait = source.__aiter__()
        else:
            raise TypeError(f"{where}: a source is a function, an iterable or an async iterable, "
                            f"not {type(source).__name__}")

    def _end(self) -> qerrors.OutOfRangeError:
        return qerrors.OutOfRangeError(f"{self.where}: the source is exhausted")

    def _next_sync(self) -> Any:
        with self._tlock:  # iterators are not thread-safe; readers behind them rarely are either
            if self._peeked:
                return self._peeked.pop()
            assert self._it is not None  # only called for an iterable source
            try:
                return next(self._it)
            except StopIteration:
                raise self._end() from None

    async def next(self) -> Any:
        """The next value; ``OutOfRangeError`` at the end."""
        if self._peeked:
            with self._tlock:
                if self._peeked:
                    return self._peeked.pop()
        if self._it is not None:
            return await asyncio.to_thread(self._next_sync)
        if self._ait is not None:
            if self._alock is None:
                self._alock = asyncio.Lock()
            async with self._alock:
                try:
                    return await self._ait.__anext__()
                except StopAsyncIteration:
                    raise self._end() from None
        assert self._fn is not None  # neither iterable: the source is a function
        try:
            if self._is_async_fn:
                return await self._fn()
            out = await asyncio.to_thread(call_in_thread, self._fn)
            return await out if inspect.isawaitable(out) else out
        except (StopIteration, StopAsyncIteration):
            raise self._end() from None

    def peek(self) -> Any:
        """Take the first value now (blocking) and keep it to hand out first."""
        if self._it is not None:
            value = self._next_sync()
        else:
            value = asyncio.run_coroutine_threadsafe(self.next(), background_loop()).result()
            self._alock = None  # created on the background loop: the loops make their own
        with self._tlock:
            self._peeked.append(value)
        return value


def _enqueue_op(source: _Source, view: AsyncQueueView, enqueue_many: bool):
    async def enqueue_next() -> None:
        value = _to_queue_value(await source.next())
        if enqueue_many:
            await view.enqueue_many(value)
        else:
            await view.enqueue(value)

    return enqueue_next


def _lazy_enqueue_op(source: _Source, lazy: _LazyQueue, enqueue_many: bool, dynamic_pad: bool, where: str,
                     dtypes: Any, shapes: Any):
    """An op of a producer whose queue is made from the first value (see :class:`_LazyQueue`). The
    first value of each source is checked against the queue's spec as the sources of a join are
    checked at build when their first values are known (TypeError, ValueError: reported)."""
    checked = [False]

    async def enqueue_next() -> None:
        raw = await source.next()
        value = _to_queue_value(raw)
        if lazy.made is None:
            await asyncio.to_thread(lazy.make_from, raw)
        if not checked[0]:
            queue = lazy.get()
            mine = _infer_spec(raw, enqueue_many, dynamic_pad, dtypes, shapes, source.where)
            _merge_specs([_queue_spec(queue), mine], where)
            checked[0] = True
        view = lazy.view()
        if enqueue_many:
            await view.enqueue_many(value)
        else:
            await view.enqueue(value)

    return enqueue_next


def _lazy_runner(lazy: _LazyQueue, ops: list, where: str) -> QueueRunner:
    """The runner of a lazily made queue: it closes (or cancels) the queue if it was made, and
    otherwise tells whoever waits for it that no value came."""

    async def close() -> None:
        if lazy.made is not None:
            await lazy.view().close()
        lazy.end(qerrors.OutOfRangeError(f"{where}: the source ended before giving a value"))

    async def cancel() -> None:
        if lazy.made is not None:
            await lazy.view().close(cancel_pending_enqueues=True)
        lazy.end(qerrors.OutOfRangeError(f"{where}: stopped before the source gave a value"))

    return QueueRunner(None, ops, close_op=close, cancel_op=cancel, name=lazy.name)


def _make_batch(client: Any, sources: Sequence[Any], loops_per_source: int, batch_size: int, capacity: int,
                enqueue_many: bool, shapes: Any, dtypes: Any, dynamic_pad: bool, allow_smaller_final_batch: bool,
                shared_name: str | None, name: str, container: str, shuffle: dict | None) -> Producer:
    client = _require_client(client)
    where = f"{name}()"
    if batch_size < 1:
        raise qerrors.InvalidArgumentError(f"{where}: batch_size must be >= 1, got {batch_size}")
    if capacity < 1:
        raise qerrors.InvalidArgumentError(f"{where}: capacity must be >= 1, got {capacity}")
    # A batch may be larger than the capacity, or than capacity - min_after_dequeue: a dequeue_many
    # takes elements as they come (TensorFlow's rule), so only this is refused, as TensorFlow does.
    if shuffle is not None:
        mad = shuffle["min_after_dequeue"]
        if mad < 0:
            raise qerrors.InvalidArgumentError(f"{where}: min_after_dequeue must be >= 0, got {mad}")
        if capacity <= mad:
            raise ValueError(f"{where}: capacity {capacity} must be bigger than min_after_dequeue {mad}.")
    if not sources:
        raise ValueError(f"{where}: expected at least one input")
    wrapped = [_Source(s, f"{where} source {i}") for i, s in enumerate(sources)]
    names = None
    if (dtypes is None or shapes is None) and not enqueue_many:
        dtypes, shapes, names = _spec_from_queue_source(sources[0], dynamic_pad, dtypes, shapes)
    if (dtypes is None or shapes is None) and not enqueue_many and not dynamic_pad:
        dtypes, shapes, names = _spec_from_dataset(sources[0], dtypes, shapes)
    qname = _unique(name, shared_name)

    def make_queue(dtypes: Any, shapes: Any, names: list[str] | None) -> Queue:
        if dynamic_pad:
            return client.padding_fifo_queue(qname, capacity, dtypes, shapes, names=names, container=container)
        if shuffle is not None:
            return client.random_shuffle_queue(qname, capacity, shuffle["min_after_dequeue"], dtypes, shapes,
                                               names=names, seed=shuffle["seed"], container=container)
        return client.fifo_queue(qname, capacity, dtypes, shapes, names=names, container=container)

    if (dtypes is None or shapes is None) and any(w.is_function or isinstance(src, Producer)
                                                  for w, src in zip(wrapped, sources)):
        # A function's (or another producer's) first value may depend on runners not started yet
        # (a reader on a file name queue): the queue is made from the first value any loop takes,
        # when the runners run.
        given_dtypes, given_shapes = dtypes, shapes
        lazy = _LazyQueue(qname, lambda first: make_queue(*_infer_spec(
            first, enqueue_many, dynamic_pad, given_dtypes, given_shapes, where)), client.operation_timeout)
        ops = [_lazy_enqueue_op(src, lazy, enqueue_many, dynamic_pad, where, given_dtypes, given_shapes)
               for src in wrapped for _ in range(loops_per_source)]
        return Producer(lazy, _lazy_runner(lazy, ops, where), batch_size, allow_smaller_final_batch)
    if dtypes is None or shapes is None:
        # Every source's first value (a join's sources must agree, as TensorFlow checks when it
        # builds the graph); each is kept to be enqueued first.
        specs = [_infer_spec(w.peek(), enqueue_many, dynamic_pad, dtypes, shapes, where) for w in wrapped]
        dtypes, shapes, names = _merge_specs(specs, where)
    queue = make_queue(dtypes, shapes, names)
    view = AsyncQueueView(queue)
    ops = [_enqueue_op(src, view, enqueue_many) for src in wrapped for _ in range(loops_per_source)]
    runner = QueueRunner(queue, ops, name=qname)
    return Producer(queue, runner, batch_size, allow_smaller_final_batch)


# --------------------------------------------------------------------------- the producers
def string_input_producer(
    client: Client,
    filenames: Sequence[str | bytes | os.PathLike],
    num_epochs: int | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    capacity: int = 32,
    shared_name: str | None = None,
    name: str = "input_producer",
    *,
    container: str = "",
) -> Producer:
    """A queue of file names for readers, refilled every epoch, like ``tf.train.string_input_producer``.

    Its runner enqueues the whole list once per epoch (a new shuffle each epoch with ``shuffle``)
    and, after ``num_epochs`` epochs, closes the queue: readers then get ``OutOfRangeError`` once
    they took the last name. Without ``num_epochs`` it never ends.

    Args:
        client: a synchronous client (``queueserver.connect``).
        filenames: the file names (``str``, ``bytes`` or paths).
        num_epochs: how many times to produce each name (``None``: for ever).
        shuffle: shuffle the names within each epoch.
        seed: the shuffle seed (epochs still differ from each other).
        capacity: the queue's capacity.
        shared_name: share the queue under this exact name (default: a private, unique name).
        name: prefix of the unique name.
        container: the queue's resource container.

    Returns:
        A :class:`Producer` whose ``dequeue()`` gives one name (``bytes``).

    Raises:
        ValueError: no file names, a single name instead of a list, or ``num_epochs`` < 1
            (TensorFlow's class).

    Example:
        >>> files = string_input_producer(c, ["a.csv", "b.csv"], num_epochs=2, seed=0)  # doctest: +SKIP
        >>> threads = files.start(coord)                                                # doctest: +SKIP
        >>> sorted(files)                                                               # doctest: +SKIP
        [b'a.csv', b'a.csv', b'b.csv', b'b.csv']
    """
    client = _require_client(client)
    if isinstance(filenames, (str, bytes, os.PathLike)):
        # Iterating a string would give its characters: TensorFlow refuses a scalar here too.
        raise ValueError(f"string_input_producer expects a list of file names, got a single name "
                         f"{filenames!r}: write [{filenames!r}]")
    names = [os.fsencode(f) if not isinstance(f, bytes) else f for f in filenames]
    if not names:
        raise ValueError("string_input_producer requires a non-null input tensor: give at least one file name")
    if num_epochs is not None and num_epochs <= 0:
        raise ValueError(f"num_epochs must be > 0 not {num_epochs}.")
    queue = client.fifo_queue(_unique(name, shared_name), capacity, [STRING], [[]], container=container)
    view = AsyncQueueView(queue)
    rng = np.random.default_rng(seed)
    all_names = np.empty(len(names), object)
    all_names[:] = names
    epochs = [0]

    async def enqueue_epoch() -> None:
        if num_epochs is not None and epochs[0] >= num_epochs:
            raise qerrors.OutOfRangeError(f"{queue.name}: all {num_epochs} epoch(s) produced")
        epochs[0] += 1
        await view.enqueue_many(all_names[rng.permutation(len(names))] if shuffle else all_names)

    return Producer(queue, QueueRunner(queue, [enqueue_epoch], name=queue.name))


def batch(
    client: Client,
    tensors: Any,
    batch_size: int,
    num_threads: int = 1,
    capacity: int = 32,
    enqueue_many: bool = False,
    shapes: Any = None,
    dynamic_pad: bool = False,
    allow_smaller_final_batch: bool = False,
    shared_name: str | None = None,
    name: str = "batch",
    *,
    dtypes: Any = None,
    container: str = "",
) -> Producer:
    """Batches the values of a source through a FIFO queue, like ``tf.train.batch``.

    ``num_threads`` loops take values from the source and enqueue them; ``Producer.dequeue()``
    takes ``batch_size`` elements in order (``dequeue_many``). When the source is exhausted the
    queue is closed: the final partial batch is dropped, unless ``allow_smaller_final_batch``
    (``dequeue_up_to``), and then ``OutOfRangeError`` ends the iteration.

    Args:
        client: a synchronous client.
        tensors: the source (see the module docstring).
        batch_size: elements per batch.
        num_threads: loops enqueueing from the source at the same time.
        capacity: the queue's capacity (a batch may be larger: it is taken as elements come).
        enqueue_many: each source value is a batch of elements.
        shapes: the element shapes (default: from the first value).
        dynamic_pad: use a padding queue: shapes may vary and batches are zero-padded.
        allow_smaller_final_batch: hand out the last, smaller batch too.
        shared_name: share the queue under this exact name.
        name: prefix of the queue's unique name.
        dtypes: the component dtypes (default: from the first value).
        container: the queue's resource container.

    Returns:
        A :class:`Producer`.

    Raises:
        InvalidArgumentError: bad sizes.
        ValueError: a first value that is not a batch with ``enqueue_many`` (TensorFlow's class).

    Example:
        >>> b = batch(c, Dataset.range(10), batch_size=4)        # doctest: +SKIP
        >>> threads = b.start(coord)                             # doctest: +SKIP
        >>> [x.tolist() for x in b]                              # doctest: +SKIP
        [[0, 1, 2, 3], [4, 5, 6, 7]]
    """
    return _make_batch(client, [tensors], num_threads, batch_size, capacity, enqueue_many, shapes, dtypes,
                       dynamic_pad, allow_smaller_final_batch, shared_name, name, container, None)


def shuffle_batch(
    client: Client,
    tensors: Any,
    batch_size: int,
    capacity: int,
    min_after_dequeue: int,
    num_threads: int = 1,
    seed: int | None = None,
    enqueue_many: bool = False,
    shapes: Any = None,
    allow_smaller_final_batch: bool = False,
    shared_name: str | None = None,
    name: str = "shuffle_batch",
    *,
    dtypes: Any = None,
    container: str = "",
) -> Producer:
    """Batches the values of a source in random order through a RandomShuffleQueue
    (``tf.train.shuffle_batch``).

    While the queue is open a batch is only taken when ``min_after_dequeue`` elements would remain,
    which keeps the mix well shuffled; once the source is exhausted and the queue closed, the rest
    drains (the last partial batch only with ``allow_smaller_final_batch``).

    Args:
        client: a synchronous client.
        tensors: the source (see the module docstring).
        batch_size: elements per batch.
        capacity: the queue's capacity (more than ``min_after_dequeue``).
        min_after_dequeue: elements kept in the queue after a dequeue while it is open.
        num_threads: loops enqueueing from the source at the same time.
        seed: the queue's shuffle seed.
        enqueue_many: each source value is a batch of elements.
        shapes: the element shapes (default: from the first value).
        allow_smaller_final_batch: hand out the last, smaller batch too.
        shared_name: share the queue under this exact name.
        name: prefix of the queue's unique name.
        dtypes: the component dtypes (default: from the first value).
        container: the queue's resource container.

    Returns:
        A :class:`Producer`.

    Raises:
        ValueError: ``capacity <= min_after_dequeue`` (TensorFlow's rule and class).
        InvalidArgumentError: bad sizes.

    Example:
        >>> b = shuffle_batch(c, (x, y), 32, capacity=1000, min_after_dequeue=500, enqueue_many=True)  # doctest: +SKIP
        >>> threads = b.start(coord); xb, yb = b.dequeue()                                             # doctest: +SKIP
    """
    return _make_batch(client, [tensors], num_threads, batch_size, capacity, enqueue_many, shapes, dtypes,
                       False, allow_smaller_final_batch, shared_name, name, container,
                       {"min_after_dequeue": int(min_after_dequeue), "seed": seed})


def batch_join(
    client: Client,
    tensors_list: Sequence[Any],
    batch_size: int,
    capacity: int = 32,
    enqueue_many: bool = False,
    shapes: Any = None,
    dynamic_pad: bool = False,
    allow_smaller_final_batch: bool = False,
    shared_name: str | None = None,
    name: str = "batch_join",
    *,
    dtypes: Any = None,
    container: str = "",
) -> Producer:
    """Batches values of several sources through one FIFO queue, one loop per source
    (``tf.train.batch_join``): e.g. one reader per file, read in parallel.

    The sources must give elements of the same structure, types and shapes (checked on each
    source's first value, or refused as TensorFlow refuses them: ``ValueError``, ``TypeError``).
    The queue closes when every source is exhausted.

    Args:
        client: a synchronous client.
        tensors_list: the sources.
        batch_size: elements per batch.
        capacity: the queue's capacity (a batch may be larger: it is taken as elements come).
        enqueue_many: each source value is a batch of elements.
        shapes: the element shapes (default: from the first source's first value).
        dynamic_pad: use a padding queue.
        allow_smaller_final_batch: hand out the last, smaller batch too.
        shared_name: share the queue under this exact name.
        name: prefix of the queue's unique name.
        dtypes: the component dtypes (default: from the first value).
        container: the queue's resource container.

    Returns:
        A :class:`Producer`.

    Example:
        >>> b = batch_join(c, [reader_a, reader_b], batch_size=128)   # doctest: +SKIP
    """
    return _make_batch(client, list(tensors_list), 1, batch_size, capacity, enqueue_many, shapes, dtypes,
                       dynamic_pad, allow_smaller_final_batch, shared_name, name, container, None)


def shuffle_batch_join(
    client: Client,
    tensors_list: Sequence[Any],
    batch_size: int,
    capacity: int,
    min_after_dequeue: int,
    seed: int | None = None,
    enqueue_many: bool = False,
    shapes: Any = None,
    allow_smaller_final_batch: bool = False,
    shared_name: str | None = None,
    name: str = "shuffle_batch_join",
    *,
    dtypes: Any = None,
    container: str = "",
) -> Producer:
    """Shuffles and batches values of several sources through one RandomShuffleQueue, one loop per
    source (``tf.train.shuffle_batch_join``).

    Args:
        client: a synchronous client.
        tensors_list: the sources.
        batch_size: elements per batch.
        capacity: the queue's capacity (more than ``min_after_dequeue``).
        min_after_dequeue: elements kept in the queue after a dequeue while it is open.
        seed: the queue's shuffle seed.
        enqueue_many: each source value is a batch of elements.
        shapes: the element shapes (default: from the first value).
        allow_smaller_final_batch: hand out the last, smaller batch too.
        shared_name: share the queue under this exact name.
        name: prefix of the queue's unique name.
        dtypes: the component dtypes (default: from the first value).
        container: the queue's resource container.

    Returns:
        A :class:`Producer`.

    Example:
        >>> b = shuffle_batch_join(c, [reader_a, reader_b], 64, capacity=512, min_after_dequeue=256)  # doctest: +SKIP
    """
    return _make_batch(client, list(tensors_list), 1, batch_size, capacity, enqueue_many, shapes, dtypes,
                       False, allow_smaller_final_batch, shared_name, name, container,
                       {"min_after_dequeue": int(min_after_dequeue), "seed": seed})
