"""The :class:`Dataset` description and the :class:`DatasetIterator` protocol.

Following google/grain's design, a dataset is an immutable description: every transformation
returns a new :class:`Dataset` and nothing runs until iteration. Iteration state lives in
iterators, which can save it as plain data (``get_state()``) and resume from it exactly
(``ds.iterator(state=...)``), so a pipeline survives a process restart.

Iterators form a tree mirroring the datasets. Each one implements ``__next__`` (raising
``StopIteration`` at the end) and ``get_state`` / ``set_state``; some also implement
``next_chunk(max_n)``, which hands over up to ``max_n`` consecutive elements as one stacked
:class:`~pipeline.data.structure.Chunk`, so batch, shuffle and friends can move numpy blocks.

Randomness never touches global state: each random stage derives its generator from
``np.random.SeedSequence``, from a seed fixed when the dataset is built (see ``shuffle``).

Also here: ``_Unary`` / ``_UnaryIterator``, the bases of every one-input dataset and its
iterator (transforms, batching, shuffle, parallel import them from this module), and the server
queue methods ``from_queue`` / ``to_queue`` / ``to_queue_async``, whose implementation lives in
:mod:`.bridges` and is imported on first call.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
from contextlib import contextmanager
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

import numpy as np

from queueserver import errors
from queueserver.loops import LoopThread

from . import structure
from .structure import Chunk

__all__ = ["AUTOTUNE", "Dataset", "DatasetIterator", "INFINITE_CARDINALITY", "StateMismatchError", "UNKNOWN_CARDINALITY"]

#: Pass as ``num_parallel_calls`` / ``buffer_size`` to let the pipeline pick (tf.data.AUTOTUNE).
AUTOTUNE = -1
#: :meth:`Dataset.cardinality` of an endless dataset.
INFINITE_CARDINALITY = -1
#: :meth:`Dataset.cardinality` when it cannot be known without iterating.
UNKNOWN_CARDINALITY = -2
#: Elements per ``enqueue_many`` when :meth:`Dataset.to_queue` moves blocks of consecutive elements.
DEFAULT_CHUNK = 256


def autotune_parallelism(n: int | None) -> int:
    """Resolves a ``num_parallel_calls`` value: ``AUTOTUNE`` means one worker per core."""
    if n is None:
        return 1
    if n == AUTOTUNE:
        return max(2, os.cpu_count() or 2)
    if n < 1:
        raise ValueError(f"num_parallel_calls must be positive or AUTOTUNE, got {n}")
    return int(n)


def fn_name(fn: Callable) -> str:
    """A readable name for a user function, for error messages."""
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def wrap_user_error(exc: BaseException, where: str) -> Exception:
    """The error to raise when a user function fails inside ``where``.

    Errors of this project's hierarchy keep their class (a ``DataLossError`` from a parser stays
    one); anything else becomes :class:`~queueserver.errors.InvalidArgumentError`, as TensorFlow
    reports failures inside dataset functions. The caller chains the original (``from exc``).
    """
    detail = f"{type(exc).__name__}: {exc}"
    msg = f"in {where}: {detail}"
    if isinstance(exc, errors.QueueServerError):
        try:
            return type(exc)(msg)
        except Exception:  # an unusual constructor: fall back to the generic class
            pass
    return errors.InvalidArgumentError(msg)


def call_fn(fn: Callable, element: Any, where: str) -> Any:
    """Calls a user function on an element the way tf.data does and normalises the result.

    Tuples are unpacked into positional arguments; a coroutine result is run on the shared
    background event loop. Any failure is re-raised with :func:`wrap_user_error`.
    """
    try:
        out = fn(*element) if type(element) is tuple else fn(element)
        if inspect.isawaitable(out):
            out = run_coroutine(out).result()
        if type(out) is list:
            # tf.data treats a returned list as a tuple (decode_csv returns a list of columns of
            # different dtypes, which must not be stacked into one array).
            out = tuple(out)
    except Exception as e:
        raise wrap_user_error(e, where) from e
    try:
        return structure.normalize(out)
    except TypeError as e:
        # TensorFlow's TypeError (it finds this when tracing; a Python function shows it when called).
        api = where.split("(")[0]
        raise TypeError(f"in {where}: Unsupported return value from function passed to {api}(): {e}") from None


_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """The process-wide event loop, on a daemon thread, that runs coroutine functions and the
    synchronous facades (started on first use; one for the whole ``pipeline`` package).

    Example:
        >>> async def two(): return 2
        >>> asyncio.run_coroutine_threadsafe(two(), background_loop()).result()
        2
    """
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP.is_closed():
            # asyncio's own loop: user coroutines may rely on its behaviour exactly.
            _LOOP = LoopThread("pipeline-loop", uvloop=False).loop
        return _LOOP


def run_coroutine(awaitable: Any):
    """Schedules ``awaitable`` on :func:`background_loop`; returns a concurrent Future."""

    async def _await() -> Any:
        return await awaitable

    return asyncio.run_coroutine_threadsafe(_await(), background_loop())


# --------------------------------------------------------------------------- iterators
_GET_NEXT_LOCKS = threading.Lock()  # guards the lazy creation of each iterator's get_next lock


class StateMismatchError(errors.NotFoundError, ValueError):
    """A saved iterator state does not belong to this pipeline: TensorFlow's ``NotFoundError``
    ("Make sure the dataset definition has not changed"), and a ``ValueError`` as this API has
    always documented it."""


class DatasetIterator(Iterator[Any]):
    """Iterates a dataset; holds all the state of one pass and can save and restore it.

    Example:
        >>> it = Dataset.range(5).iterator()
        >>> next(it), next(it)
        (np.int64(0), np.int64(1))
        >>> list(Dataset.range(5).iterator(state=it.get_state()))
        [np.int64(2), np.int64(3), np.int64(4)]
    """

    #: True when ``next_chunk`` is implemented natively (uniform shapes, a block at a time).
    chunked: bool = False

    def __iter__(self) -> "DatasetIterator":
        return self

    def __next__(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def next_chunk(self, max_n: int) -> Chunk | None:
        """Returns 1..``max_n`` next elements stacked as a chunk, or ``None`` at the end.

        The default takes one element; stages with ``chunked = True`` return whole blocks.
        """
        try:
            e = next(self)
        except StopIteration:
            return None
        return Chunk(1, structure.map_structure(_expand, e))

    def get_state(self) -> dict:
        """Returns the iteration state as JSON-serialisable plain data.

        Returns:
            A dict; pass it to ``dataset.iterator(state=...)`` or :meth:`set_state`.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot save its state")

    def set_state(self, state: dict) -> None:
        """Restores a state from :meth:`get_state` of an iterator of the same dataset.

        Raises:
            StateMismatchError: (a ``ValueError`` and TensorFlow's ``NotFoundError``) if the state
                belongs to a different pipeline.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot restore a state")

    def get_next(self) -> Any:
        """TF1-style ``get_next``: the next element, or ``OutOfRangeError`` at the end.

        Safe to call from several threads at once, as TensorFlow's ``get_next`` is: each element
        goes to exactly one caller (calls are served one at a time; parallel stages inside the
        pipeline still run in parallel). Plain ``next()`` is for one thread.

        Raises:
            OutOfRangeError: when the dataset is exhausted.
        """
        lock = self.__dict__.get("_get_next_lock")
        if lock is None:
            with _GET_NEXT_LOCKS:
                lock = self.__dict__.setdefault("_get_next_lock", threading.Lock())
        with lock:
            try:
                return next(self)
            except StopIteration:
                raise errors.OutOfRangeError("End of sequence") from None

    def close(self) -> None:
        """Releases threads and files held by this iterator and its inputs."""
        for child in self._children():
            child.close()

    def _children(self) -> list["DatasetIterator"]:
        return []

    def _check(self, state: dict) -> dict:
        if not isinstance(state, dict) or state.get("kind") != type(self).__name__:
            got = state.get("kind") if isinstance(state, dict) else type(state).__name__
            raise StateMismatchError(
                f"this state was saved by a {got} iterator, not {type(self).__name__}: restore a "
                "state only into an iterator of the dataset that produced it. Make sure the dataset "
                "definition has not changed."
            )
        return state

    def _state(self, **fields: Any) -> dict:
        return {"kind": type(self).__name__, **fields}

    def __enter__(self) -> "DatasetIterator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _expand(leaf: Any) -> Any:
    if leaf is None:  # a None component stays None in a chunk too
        return None
    if isinstance(leaf, bytes):
        arr = np.empty(1, dtype=object)
        arr[0] = leaf
        return arr
    if isinstance(leaf, structure.RaggedTensor) or isinstance(leaf, Dataset):
        raise TypeError("ragged or dataset elements cannot be chunked")
    return np.asarray(leaf)[None]


class AsyncDatasetIterator(AsyncIterator[Any]):
    """``async for`` over a dataset: each step runs the synchronous pipeline in a worker thread.

    The event loop never blocks on file reads, prefetch waits or user functions. The wrapped
    iterator is available as :attr:`sync` (for ``get_state``).
    """

    def __init__(self, it: DatasetIterator) -> None:
        self.sync = it

    def __aiter__(self) -> "AsyncDatasetIterator":
        return self

    async def __anext__(self) -> Any:
        loop = asyncio.get_running_loop()
        done, value = await loop.run_in_executor(None, self._step)
        if done:
            raise StopAsyncIteration
        return value

    def _step(self) -> tuple[bool, Any]:
        try:
            return False, next(self.sync)
        except StopIteration:
            return True, None

    def get_state(self) -> dict:
        """The wrapped iterator's state (see :meth:`DatasetIterator.get_state`)."""
        return self.sync.get_state()


# --------------------------------------------------------------------------- spec sampling
#: How many elements the sources of a pipeline may produce while its element spec is inferred
#: by running it (:func:`spec_sample`). Past that the sources look ended to the sampler, so a
#: pipeline whose ``filter`` almost never passes is built at once, with what the sample shows
#: (nothing: :class:`~pipeline.data.UnknownSpec`). A count, not a time: the same on any machine.
SPEC_SAMPLE_SOURCE_ELEMENTS = 10_000

_SAMPLE_BUDGET = threading.local()  # .current: the _SampleBudget of the sampling in this thread


class _SampleBudget:
    """What the sources of one spec sample may still produce."""

    __slots__ = ("left",)

    def __init__(self, n: int) -> None:
        self.left = n

    def grant(self, n: int) -> int:
        """Up to ``n`` elements (0 when spent)."""
        k = min(n, self.left)
        self.left -= k
        return k


class _BudgetedIterator(DatasetIterator):
    """A source's iterator made while a spec is sampled: it ends when the budget is spent."""

    def __init__(self, it: DatasetIterator, budget: _SampleBudget) -> None:
        self._it, self._budget = it, budget
        self.chunked = it.chunked  # a source's does not change

    def __next__(self) -> Any:
        if not self._budget.grant(1):
            raise StopIteration
        return next(self._it)

    def next_chunk(self, max_n: int) -> Chunk | None:
        n = self._budget.grant(max_n)
        return self._it.next_chunk(n) if n else None

    def get_state(self) -> dict:
        return self._it.get_state()

    def set_state(self, state: dict) -> None:
        self._it.set_state(state)

    def _children(self) -> list[DatasetIterator]:
        return [self._it]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._it, name)


@contextmanager
def spec_sample(ds: "Dataset", pulls: int) -> Iterator[Iterator[Any]]:
    """Runs ``ds`` to infer a spec from its first elements (Python functions cannot be traced).

    Yields an iterator over the elements produced in at most ``pulls`` pulls; elements whose
    production raises an ordinary error are skipped (``ignore_errors`` pipelines; iteration
    reports the error), signals (``KeyboardInterrupt``, ``SystemExit``) are not. The sources
    produce at most :data:`SPEC_SAMPLE_SOURCE_ELEMENTS` elements in all, and looking does not
    advance a shuffle's reshuffle sequence.
    """
    from .shuffle import sampling

    before = getattr(_SAMPLE_BUDGET, "current", None)
    _SAMPLE_BUDGET.current = _SampleBudget(SPEC_SAMPLE_SOURCE_ELEMENTS)
    try:
        with sampling():
            it = ds.iterator()
            try:
                yield _sampled(it, pulls)
            finally:
                it.close()
    finally:
        _SAMPLE_BUDGET.current = before


def _sampled(it: DatasetIterator, pulls: int) -> Iterator[Any]:
    for _ in range(pulls):
        try:
            yield next(it)
        except StopIteration:
            return
        except Exception:  # noqa: BLE001 - sample around failing elements (BaseException passes)
            continue


# --------------------------------------------------------------------------- datasets
class Dataset:
    """An immutable description of an input pipeline, as in ``tf.data.Dataset``.

    Build one from a source (:meth:`from_tensor_slices`, :meth:`range`, :meth:`from_generator`,
    file datasets ...), chain transformations (each returns a new dataset), then iterate with
    ``for`` or ``async for``. Every iteration starts over; :meth:`iterator` gives an iterator whose
    state can be saved and restored.

    Example:
        >>> ds = Dataset.from_tensor_slices(np.arange(10)).repeat(3).batch(7)
        >>> [b.tolist() for b in ds][-1]
        [8, 9]
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A source's iterators made while a spec is sampled end when the sample's budget is spent
        # (see spec_sample): one rule for every source, wherever it is defined.
        super().__init_subclass__(**kwargs)
        make = cls.__dict__.get("_make_iter")
        if make is None:
            return

        @functools.wraps(make)
        def _make_iter(self: "Dataset", ctx: tuple) -> DatasetIterator:
            it = make(self, ctx)
            budget = getattr(_SAMPLE_BUDGET, "current", None)
            if budget is not None and not isinstance(it, _BudgetedIterator) and not self._inputs():
                it = _BudgetedIterator(it, budget)
            return it

        cls._make_iter = _make_iter  # type: ignore[method-assign]

    # ----------------------------------------------------------------- to be implemented
    def _make_iter(self, ctx: tuple) -> DatasetIterator:  # pragma: no cover - abstract
        """Creates a fresh iterator. ``ctx`` is the seed path (epochs of enclosing repeats)."""
        raise NotImplementedError

    def _compute_spec(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cardinality(self) -> int:
        return UNKNOWN_CARDINALITY

    #: Iterating this source takes elements from outside the pipeline (a server queue, a user's
    #: generator): nothing but iteration may run it (see :class:`~pipeline.data.UnknownSpec`).
    _consumes_input = False

    def _inputs(self) -> list["Dataset"]:
        """The datasets this one reads (every Dataset among its attributes, in lists and tuples too)."""
        found: list[Dataset] = []
        for value in self.__dict__.values():
            if isinstance(value, Dataset):
                found.append(value)
            elif isinstance(value, (list, tuple)):
                found.extend(v for v in value if isinstance(v, Dataset))
        return found

    def _iteration_consumes(self) -> bool:
        """Whether iterating this dataset would take elements from outside (a queue, a generator)."""
        return self._consumes_input or any(d._iteration_consumes() for d in self._inputs())

    # ----------------------------------------------------------------- iteration
    def iterator(self, state: dict | None = None) -> DatasetIterator:
        """Starts a pass over the dataset, optionally resuming from a saved state.

        Args:
            state: a dict from ``DatasetIterator.get_state()`` of an iterator of this dataset
                (or an equal one built the same way, e.g. after a restart).

        Returns:
            A :class:`DatasetIterator`.

        Raises:
            ValueError: if ``state`` belongs to a different pipeline.

        Example:
            >>> ds = Dataset.range(4)
            >>> it = ds.iterator(); _ = next(it)
            >>> [int(x) for x in ds.iterator(state=it.get_state())]
            [1, 2, 3]
        """
        it = self._make_iter(())
        if state is not None:
            it.set_state(state)
        return it

    def make_one_shot_iterator(self) -> DatasetIterator:
        """TF1 spelling of :meth:`iterator` (use ``get_next()`` for ``OutOfRangeError``)."""
        return self.iterator()

    def __iter__(self) -> DatasetIterator:
        return self.iterator()

    def __aiter__(self) -> AsyncDatasetIterator:
        return AsyncDatasetIterator(self.iterator())

    def as_numpy_iterator(self) -> DatasetIterator:
        """Returns an iterator of numpy elements (elements already are numpy values).

        Raises:
            TypeError: the elements hold datasets (windows), which are not numpy values.

        Example:
            >>> list(Dataset.range(2).as_numpy_iterator())
            [np.int64(0), np.int64(1)]
        """
        spec = self.element_spec
        for leaf in structure.flatten(spec):
            if isinstance(leaf, structure.DatasetSpec):  # TensorFlow's refusal, in its words
                raise TypeError(f"Dataset.as_numpy_iterator() does not support datasets containing {leaf!r}")
        return self.iterator()

    @property
    def element_spec(self) -> Any:
        """The type of the elements: nested :class:`TensorSpec` (``repr`` like TensorFlow's).

        Static for sources and structural transformations. Python functions cannot be traced,
        so after ``map``/``scan``/``from_generator`` without a declared signature the spec is
        inferred from the first few elements (dimensions that vary, or follow a ``None``
        dimension of the input, become ``None``), unless that would take elements from a server
        queue or run a generator: then it is :class:`UnknownSpec` until declared. It is unknown
        too when the sample shows no element (an empty input, or a filter that passes none of
        the first :data:`SPEC_SAMPLE_SOURCE_ELEMENTS` source elements): no dtype is invented.
        """
        try:
            return self.__dict__["_spec"]
        except KeyError:
            if any(isinstance(d.element_spec, structure.UnknownSpec) for d in self._inputs()):
                spec = structure.UNKNOWN_SPEC
            else:
                spec = self._compute_spec()
            self.__dict__["_spec"] = spec
            return spec

    def cardinality(self) -> int:
        """The number of elements, ``INFINITE_CARDINALITY`` (-1) or ``UNKNOWN_CARDINALITY`` (-2).

        Example:
            >>> Dataset.range(10).batch(3).cardinality()
            4
        """
        return self._cardinality()

    def __len__(self) -> int:
        n = self._cardinality()
        if n == INFINITE_CARDINALITY:
            raise TypeError("The dataset is infinite.")
        if n == UNKNOWN_CARDINALITY:
            raise TypeError("The dataset length is unknown.")
        return n

    def __repr__(self) -> str:
        try:
            spec = repr(self.element_spec)
        except Exception:  # noqa: BLE001 - repr must never fail
            spec = "?"
        return f"<{type(self).__name__} element_spec={spec}>"

    # ----------------------------------------------------------------- sources
    @staticmethod
    def from_tensor_slices(tensors: Any) -> "Dataset":
        """A dataset of the slices of ``tensors`` along their first dimension.

        Args:
            tensors: an array, a Python list, or tuples/dicts of them (all with the same first
                dimension); a :class:`RaggedTensor` gives its rows. Arrays are not copied.

        Returns:
            The dataset.

        Raises:
            ValueError: if the components' first dimensions differ.

        Example:
            >>> [int(x) for x in Dataset.from_tensor_slices([1, 2, 3])]
            [1, 2, 3]
        """
        if isinstance(tensors, list) and tensors and all(isinstance(d, Dataset) for d in tensors):
            from .sources import ListDataset

            return ListDataset(tensors)  # a dataset of datasets, as TensorFlow slices a list of them
        from .sources import TensorSliceDataset

        return TensorSliceDataset(tensors)

    @staticmethod
    def from_tensors(tensors: Any) -> "Dataset":
        """A dataset with the single element ``tensors``.

        Example:
            >>> [x.tolist() for x in Dataset.from_tensors(np.arange(3))]
            [[0, 1, 2]]
        """
        from .sources import ListDataset

        element = structure.normalize(tensors)
        if all(leaf is None for leaf in structure.flatten(element)):
            # TensorFlow's refusal of an element without a tensor (None, (), {}), in its words.
            raise errors.InvalidArgumentError(
                f"Length for attr 'Toutput_types' of 0 must be at least minimum 1: from_tensors needs at least "
                f"one tensor, got {tensors!r}")
        return ListDataset([element])

    @staticmethod
    def range(*args: int, output_type: Any = None, dtype: Any = None) -> "Dataset":
        """``range(stop)``, ``range(start, stop[, step])`` as scalars of ``output_type``
        (TensorFlow's keyword; ``dtype`` is this API's older name for it), int64 by default.

        Raises:
            InvalidArgumentError: if ``step`` is 0.
            TypeError: if ``output_type`` and ``dtype`` are both given and differ.

        Example:
            >>> [int(x) for x in Dataset.range(10, 0, -3)]
            [10, 7, 4, 1]
        """
        from .sources import RangeDataset

        if output_type is not None and dtype is not None and np.dtype(output_type) != np.dtype(dtype):
            raise TypeError(f"Dataset.range() got output_type={output_type!r} and dtype={dtype!r}: give one")
        return RangeDataset(*args, dtype=output_type if output_type is not None else
                            dtype if dtype is not None else np.int64)

    @staticmethod
    def from_generator(
        generator: Callable[..., Any],
        output_types: Any = None,
        output_shapes: Any = None,
        args: Sequence[Any] | None = None,
        output_signature: Any = None,
    ) -> "Dataset":
        """A dataset of what ``generator(*args)`` yields.

        A generator cannot save its position: the iterator state counts elements, and resuming
        calls ``generator`` again and skips that many (exact for deterministic generators).

        Args:
            generator: a callable returning an iterable.
            output_types: optional dtypes (nested like the elements).
            output_shapes: optional shapes (nested like the elements).
            args: arguments for ``generator``.
            output_signature: optional nested :class:`TensorSpec`, checked against each element.

        Returns:
            The dataset.

        Example:
            >>> [int(x) for x in Dataset.from_generator(lambda: iter([1, 2]))]
            [1, 2]
        """
        from .sources import GeneratorDataset

        return GeneratorDataset(generator, output_types, output_shapes, args, output_signature)

    @staticmethod
    def zip(*datasets: Any) -> "Dataset":
        """Zips datasets (given as a tuple/dict, or as several arguments) element by element.

        Stops at the shortest input.

        Example:
            >>> [(int(a), int(b)) for a, b in Dataset.zip(Dataset.range(2), Dataset.range(5, 9))]
            [(0, 5), (1, 6)]
        """
        from .sources import ZipDataset

        structure_arg = datasets[0] if len(datasets) == 1 else tuple(datasets)
        return ZipDataset(structure_arg)

    @staticmethod
    def list_files(file_pattern: Any, shuffle: bool | None = None, seed: int | None = None) -> "Dataset":
        """The file names (bytes) matching one or more glob patterns.

        Args:
            file_pattern: a pattern or a list of patterns.
            shuffle: shuffle the names (TensorFlow's default is True); False keeps sorted order.
            seed: the shuffle seed.

        Returns:
            The dataset; iterating raises ``InvalidArgumentError`` if nothing matches.

        Example:
            >>> Dataset.list_files("/nonexistent/*.csv", shuffle=False).cardinality()
            -2
        """
        from .files import list_files

        return list_files(file_pattern, shuffle=shuffle, seed=seed)

    # ----------------------------------------------------------------- transformations
    def apply(self, transformation_func: Callable[["Dataset"], "Dataset"]) -> "Dataset":
        """Returns ``transformation_func(self)`` (for reusable pipeline pieces).

        Raises:
            TypeError: if the function does not return a Dataset.

        Example:
            >>> Dataset.range(5).apply(lambda d: d.take(2)).cardinality()
            2
        """
        out = transformation_func(self)
        if not isinstance(out, Dataset):
            raise TypeError("`transformation_func` must return a Dataset object.")
        return out

    def repeat(self, count: int | None = None) -> "Dataset":
        """Repeats the dataset ``count`` times (forever when ``None`` or -1).

        Example:
            >>> [int(x) for x in Dataset.range(2).repeat(2)]
            [0, 1, 0, 1]
        """
        from .transforms import RepeatDataset

        return RepeatDataset(self, count)

    def batch(self, batch_size: int, drop_remainder: bool = False, num_parallel_calls: int | None = None,
              deterministic: bool | None = None) -> "Dataset":
        """Stacks ``batch_size`` consecutive elements into one (one gather per batch).

        As in tf.data, a component that is a dataset batches into a vector of datasets (``unbatch``
        gives them back) and a ``None`` component stays ``None``.

        Args:
            batch_size: elements per batch.
            drop_remainder: drop a last, smaller batch.
            num_parallel_calls: accepted for compatibility; batching is already vectorised.
            deterministic: accepted for compatibility.

        Returns:
            The dataset.

        Raises:
            ValueError: if ``batch_size`` is not positive.

        Example:
            >>> [b.tolist() for b in Dataset.range(5).batch(2)]
            [[0, 1], [2, 3], [4]]
        """
        from .batching import BatchDataset

        return BatchDataset(self, batch_size, drop_remainder)

    def padded_batch(self, batch_size: int, padded_shapes: Any = None, padding_values: Any = None,
                     drop_remainder: bool = False) -> "Dataset":
        """Batches elements of different shapes, padding each component.

        Args:
            batch_size: elements per batch.
            padded_shapes: per component, the padded shape (``None``/-1 dims pad to the longest
                in the batch); default: every dimension pads to the longest.
            padding_values: per component, the pad value (default 0 / ``b""``).
            drop_remainder: drop a last, smaller batch.

        Returns:
            The dataset. Iterating raises ``DataLossError`` if an element is larger than a fixed
            padded size (TensorFlow's behaviour).

        Example:
            >>> ds = Dataset.range(1, 3).map(lambda x: np.arange(x)).padded_batch(2)
            >>> next(iter(ds)).tolist()
            [[0, 0], [0, 1]]
        """
        from .batching import PaddedBatchDataset

        return PaddedBatchDataset(self, batch_size, padded_shapes, padding_values, drop_remainder)

    def ragged_batch(self, batch_size: int, drop_remainder: bool = False) -> "Dataset":
        """Batches variable-length elements into :class:`RaggedTensor` values; components of a
        fully known shape are batched dense, as TensorFlow's (ragged elements are refused with
        ``UnimplementedError``: one ragged dimension is supported).

        Example:
            >>> ds = Dataset.range(1, 3).map(lambda x: np.arange(x)).ragged_batch(2)
            >>> next(iter(ds)).to_list()
            [[0], [0, 1]]
        """
        from .batching import RaggedBatchDataset

        return RaggedBatchDataset(self, batch_size, drop_remainder)

    def unbatch(self) -> "Dataset":
        """Splits each element along its first dimension (the inverse of ``batch``).

        Example:
            >>> [int(x) for x in Dataset.range(3).batch(2).unbatch()]
            [0, 1, 2]
        """
        from .batching import UnbatchDataset

        return UnbatchDataset(self)

    def shuffle(self, buffer_size: int, seed: int | None = None,
                reshuffle_each_iteration: bool | None = None) -> "Dataset":
        """Shuffles with a buffer of ``buffer_size`` elements.

        The algorithm (see :mod:`pipeline.data.shuffle`) fills the buffer, then repeatedly emits
        a uniformly chosen buffer slot and refills it with the next input. As in tf.data, the seed
        is fixed when the dataset is built: with ``reshuffle_each_iteration`` (default True) each
        new iteration (a new pass, or a new epoch under ``repeat``) takes a different order, a
        sequence the seed determines; without it every pass and epoch has one order. With a
        ``seed`` the orders are the same in every run and process.

        Args:
            buffer_size: the buffer size (>= 1).
            seed: an int seed, or None for one drawn from OS entropy when the dataset is built.
            reshuffle_each_iteration: a new order for each new iteration and epoch.

        Returns:
            The dataset.

        Raises:
            ValueError: if ``buffer_size`` < 1.

        Example:
            >>> sorted(int(x) for x in Dataset.range(5).shuffle(3, seed=0))
            [0, 1, 2, 3, 4]
        """
        from .shuffle import ShuffleDataset

        return ShuffleDataset(self, buffer_size, seed, reshuffle_each_iteration)

    def map(self, map_func: Callable, num_parallel_calls: int | None = None,
            deterministic: bool | None = None, output_signature: Any = None) -> "Dataset":
        """Applies ``map_func`` to every element (tuples are unpacked into arguments).

        Args:
            map_func: a function of the element, or a coroutine function (run on an event loop).
            num_parallel_calls: run up to this many calls at once (threads for functions, the
                event loop for coroutines); ``AUTOTUNE`` picks one per core.
            deterministic: False lets results come out in completion order.
            output_signature: optional element spec of the results (otherwise inferred).

        Returns:
            The dataset. A failing call raises at iteration with the original error chained and
            a message naming ``Dataset.map(fn=...)``.

        Example:
            >>> [int(x) for x in Dataset.range(3).map(lambda x: x * 2, num_parallel_calls=AUTOTUNE)]
            [0, 2, 4]
        """
        from .parallel import MapDataset

        return MapDataset(self, map_func, num_parallel_calls, deterministic, output_signature)

    def filter(self, predicate: Callable) -> "Dataset":
        """Keeps the elements for which ``predicate`` is true.

        Example:
            >>> [int(x) for x in Dataset.range(10).filter(lambda x: x % 3 == 0)]
            [0, 3, 6, 9]
        """
        from .transforms import FilterDataset

        return FilterDataset(self, predicate)

    def flat_map(self, map_func: Callable[..., "Dataset"]) -> "Dataset":
        """Maps each element to a dataset and chains those datasets.

        Example:
            >>> [int(x) for x in Dataset.range(1, 3).flat_map(lambda x: Dataset.range(x))]
            [0, 0, 1]
        """
        from .parallel import InterleaveDataset

        return InterleaveDataset(self, map_func, 1, 1, None, None, name="flat_map")

    def interleave(self, map_func: Callable[..., "Dataset"], cycle_length: int | None = None,
                   block_length: int | None = None, num_parallel_calls: int | None = None,
                   deterministic: bool | None = None) -> "Dataset":
        """Maps elements to datasets and interleaves them (TensorFlow's order).

        Args:
            map_func: element -> Dataset.
            cycle_length: how many input elements are open at once (default: core count).
            block_length: consecutive elements taken from each before moving on (default 1).
            num_parallel_calls: fetch from the open datasets in this many threads ahead of use;
                the order stays the sequential one.
            deterministic: accepted; the order is always deterministic.

        Returns:
            The dataset.

        Example:
            >>> ds = Dataset.range(1, 3).interleave(lambda x: Dataset.range(x), cycle_length=2)
            >>> [int(x) for x in ds]
            [0, 0, 1]
        """
        from .parallel import InterleaveDataset

        return InterleaveDataset(self, map_func, cycle_length, block_length, num_parallel_calls,
                                 deterministic)

    def take_while(self, predicate: Callable) -> "Dataset":
        """The elements up to (not including) the first for which ``predicate`` is false.

        Raises:
            InvalidArgumentError: (when iterated) ``predicate`` returns something other than a
                scalar boolean.

        Example:
            >>> [int(x) for x in Dataset.range(10).take_while(lambda x: x < 4)]
            [0, 1, 2, 3]
        """
        from .transforms import TakeWhileDataset

        return TakeWhileDataset(self, predicate)

    def group_by_window(self, key_func: Callable, reduce_func: Callable, window_size: int | None = None,
                        window_size_func: Callable | None = None) -> "Dataset":
        """Group elements by ``key_func`` (an int64 scalar) into windows of ``window_size`` (or
        ``window_size_func(key)``); each full window, and at the end each partial one, becomes
        ``reduce_func(key, window_dataset)``, whose elements are this dataset's.

        Example:
            >>> ds = Dataset.range(10).group_by_window(lambda x: x % 2, lambda k, w: w.batch(5), window_size=5)
            >>> [b.tolist() for b in ds]
            [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
        """
        from .transforms import GroupByWindowDataset

        return GroupByWindowDataset(self, key_func, reduce_func, window_size, window_size_func)

    def bucket_by_sequence_length(self, element_length_func: Callable, bucket_boundaries: Sequence[int],
                                  bucket_batch_sizes: Sequence[int], padded_shapes: Any = None,
                                  padding_values: Any = None, pad_to_bucket_boundary: bool = False,
                                  no_padding: bool = False, drop_remainder: bool = False) -> "Dataset":
        """Batches elements of similar length together, as ``tf.data.Dataset.bucket_by_sequence_length``.

        An element of length ``n`` (``element_length_func(element)``) goes to bucket ``i`` where
        ``bucket_boundaries[i-1] <= n < bucket_boundaries[i]``; each bucket is batched by its own
        ``bucket_batch_sizes[i]`` with ``padded_batch`` (``batch`` with ``no_padding``).

        Args:
            element_length_func: element -> int length.
            bucket_boundaries: increasing upper length bounds of the buckets.
            bucket_batch_sizes: a batch size per bucket (one more than the boundaries).
            padded_shapes: as for :meth:`padded_batch` (default: the elements' shapes).
            padding_values: as for :meth:`padded_batch`.
            pad_to_bucket_boundary: pad unknown dimensions to the bucket's boundary - 1 (an element
                as long as the last boundary then fails with ``InvalidArgumentError``).
            no_padding: batch without padding.
            drop_remainder: drop each bucket's last, smaller batch.

        Returns:
            The dataset.

        Raises:
            ValueError: ``bucket_batch_sizes`` does not have one more entry than ``bucket_boundaries``.

        Example:
            >>> ds = Dataset.range(1, 6).map(lambda n: np.ones(n, np.int64))
            >>> ds = ds.bucket_by_sequence_length(lambda x: len(x), [3], [2, 3])
            >>> [b.shape for b in ds]
            [(2, 2), (3, 5)]
        """
        from .transforms import bucket_by_sequence_length

        return bucket_by_sequence_length(self, element_length_func, bucket_boundaries, bucket_batch_sizes,
                                         padded_shapes, padding_values, pad_to_bucket_boundary, no_padding,
                                         drop_remainder)

    def get_single_element(self) -> Any:
        """The dataset's one element (``tf.data.Dataset.get_single_element``).

        Raises:
            InvalidArgumentError: the dataset is empty, or has more than one element.

        Example:
            >>> int(Dataset.range(5).skip(4).get_single_element())
            4
        """
        it = self.iterator()
        try:
            try:
                element = next(it)
            except StopIteration:
                raise errors.InvalidArgumentError("Dataset was empty.") from None
            try:
                next(it)
            except StopIteration:
                return element
            raise errors.InvalidArgumentError("Dataset had more than one element.")
        finally:
            it.close()

    @staticmethod
    def sample_from_datasets(datasets: Sequence["Dataset"], weights: Any = None, seed: int | None = None,
                             stop_on_empty_dataset: bool = False,
                             rerandomize_each_iteration: bool | None = None) -> "Dataset":
        """Elements drawn at random from ``datasets``, each pick by ``weights`` (default: uniform).

        An exhausted dataset drops out of the draw (``stop_on_empty_dataset``: the sampling ends
        there instead); when only zero-weight datasets are left, the sampling ends. The seed is
        fixed when the dataset is built: every iteration, and every epoch of a ``repeat``, draws
        the same sequence, unless ``rerandomize_each_iteration`` gives each new one the next.

        Args:
            datasets: the datasets, with compatible element specs.
            weights: float weights, one per dataset, or a dataset of such vectors (one per draw).
            seed: the seed; None draws one from OS entropy when the dataset is built.
            stop_on_empty_dataset: end at the first draw of an exhausted dataset.
            rerandomize_each_iteration: a new sequence for each new iteration.

        Raises:
            ValueError: ``datasets`` is empty, or ``weights`` does not have one entry per dataset.
            TypeError: the weights are not floats, or the datasets' specs are incompatible.
            InvalidArgumentError: a weight is negative or not finite.

        Example:
            >>> ds = Dataset.sample_from_datasets([Dataset.range(3), Dataset.range(10, 13)], seed=1)
            >>> sorted(int(x) for x in ds)
            [0, 1, 2, 10, 11, 12]
        """
        from .sources import SampleDataset

        return SampleDataset(list(datasets), weights, seed, stop_on_empty_dataset, rerandomize_each_iteration)

    @staticmethod
    def choose_from_datasets(datasets: Sequence["Dataset"], choice_dataset: "Dataset",
                             stop_on_empty_dataset: bool = True) -> "Dataset":
        """Elements of ``datasets`` in the order ``choice_dataset`` (int64 scalars) names them.

        Raises:
            ValueError: ``datasets`` is empty.
            TypeError: ``choice_dataset`` is not a dataset of scalar int64 values.
            InvalidArgumentError: (when iterated) a choice is out of range.

        Example:
            >>> ds = Dataset.choose_from_datasets([Dataset.range(3), Dataset.range(10, 13)],
            ...                                   Dataset.from_tensor_slices(np.array([0, 1, 1, 0], np.int64)))
            >>> [int(x) for x in ds]
            [0, 10, 11, 1]
        """
        from .sources import ChooseDataset

        return ChooseDataset(list(datasets), choice_dataset, stop_on_empty_dataset)

    def take(self, count: int) -> "Dataset":
        """The first ``count`` elements (all when -1).

        Example:
            >>> [int(x) for x in Dataset.range(10).take(2)]
            [0, 1]
        """
        from .transforms import TakeDataset

        return TakeDataset(self, count)

    def skip(self, count: int) -> "Dataset":
        """All but the first ``count`` elements (-1 skips everything).

        Example:
            >>> [int(x) for x in Dataset.range(4).skip(2)]
            [2, 3]
        """
        from .transforms import SkipDataset

        return SkipDataset(self, count)

    def shard(self, num_shards: int, index: int) -> "Dataset":
        """Every ``num_shards``-th element starting at ``index``.

        Raises:
            InvalidArgumentError: if ``index`` is not in ``[0, num_shards)``.

        Example:
            >>> [int(x) for x in Dataset.range(10).shard(3, 1)]
            [1, 4, 7]
        """
        from .transforms import ShardDataset

        return ShardDataset(self, num_shards, index)

    def enumerate(self, start: int = 0) -> "Dataset":
        """Pairs each element with its int64 index.

        Example:
            >>> [(int(i), int(x)) for i, x in Dataset.range(5, 7).enumerate()]
            [(0, 5), (1, 6)]
        """
        from .transforms import EnumerateDataset

        return EnumerateDataset(self, start)

    def window(self, size: int, shift: int | None = None, stride: int = 1,
               drop_remainder: bool = False) -> "Dataset":
        """A dataset of windows, each a small dataset of ``size`` elements.

        Args:
            size: elements per window.
            shift: input elements between window starts (default ``size``).
            stride: input elements between a window's elements.
            drop_remainder: drop windows shorter than ``size`` at the end.

        Returns:
            A dataset of datasets (use ``flat_map(lambda w: w.batch(size))``).

        Example:
            >>> ds = Dataset.range(5).window(2, drop_remainder=True).flat_map(lambda w: w.batch(2))
            >>> [w.tolist() for w in ds]
            [[0, 1], [2, 3]]
        """
        from .batching import WindowDataset

        return WindowDataset(self, size, shift, stride, drop_remainder)

    def concatenate(self, dataset: "Dataset") -> "Dataset":
        """This dataset's elements followed by ``dataset``'s.

        Raises:
            TypeError: if the element types are incompatible.

        Example:
            >>> [int(x) for x in Dataset.range(2).concatenate(Dataset.range(5, 6))]
            [0, 1, 5]
        """
        from .sources import ConcatenateDataset

        return ConcatenateDataset(self, dataset)

    def cache(self, filename: str = "") -> "Dataset":
        """Caches the elements of the first complete pass, in memory or in ``filename``.

        Later passes (and, for a file, later processes) read the cache instead of recomputing.
        A pass that stops early does not complete the cache.

        Example:
            >>> ds = Dataset.range(3).map(lambda x: x + 1).cache()
            >>> [int(x) for x in ds] == [int(x) for x in ds] == [1, 2, 3]
            True
        """
        from .transforms import CacheDataset

        return CacheDataset(self, filename)

    def prefetch(self, buffer_size: int | None) -> "Dataset":
        """Produces up to ``buffer_size`` elements ahead in a background thread.

        Args:
            buffer_size: elements to keep ready; ``AUTOTUNE`` (-1) or None lets the pipeline
                choose, 0 does not prefetch.

        Raises:
            InvalidArgumentError: ``buffer_size`` is below -1.

        Example:
            >>> [int(x) for x in Dataset.range(3).prefetch(2)]
            [0, 1, 2]
        """
        from .parallel import PrefetchDataset

        return PrefetchDataset(self, buffer_size)

    def ignore_errors(self, log_warning: bool = False) -> "Dataset":
        """Drops the elements whose production raised an error.

        Example:
            >>> ds = Dataset.from_tensor_slices(["1", "x"]).map(lambda s: int(s)).ignore_errors()
            >>> [int(x) for x in ds]
            [1]
        """
        from .transforms import IgnoreErrorsDataset

        return IgnoreErrorsDataset(self, log_warning)

    def scan(self, initial_state: Any, scan_func: Callable) -> "Dataset":
        """Maps with a carried state: ``scan_func(state, element) -> (new_state, output)``.

        Example:
            >>> [int(x) for x in Dataset.range(1, 4).scan(np.int64(0), lambda s, x: (s + x, s + x))]
            [1, 3, 6]
        """
        from .transforms import ScanDataset

        return ScanDataset(self, initial_state, scan_func)

    def reduce(self, initial_state: Any, reduce_func: Callable) -> Any:
        """Folds every element into a state: ``reduce_func(state, element) -> state``.

        Returns:
            The final state.

        Example:
            >>> int(Dataset.range(5).reduce(np.int64(0), lambda s, x: s + x))
            10
        """
        state = structure.normalize(initial_state)
        where = f"Dataset.reduce(fn={fn_name(reduce_func)})"
        for element in self:
            state = call_fn(reduce_func, (state, element), where)
        return state

    def unique(self) -> "Dataset":
        """Drops elements equal to an earlier one (scalars only, as in TensorFlow).

        Example:
            >>> [int(x) for x in Dataset.from_tensor_slices([1, 2, 1]).unique()]
            [1, 2]
        """
        from .transforms import UniqueDataset

        return UniqueDataset(self)


    # ----------------------------------------------------------------- server queues
    @staticmethod
    def from_queue(queue: Any, batch_size: int | None = None, *, timeout: float | None = None) -> "Dataset":
        """A dataset of the elements of a server queue, until it is closed and drained.

        Args:
            queue: a ``Queue`` (or an ``AsyncQueue``, see :class:`~pipeline.data.bridges.QueueDataset`).
            batch_size: each dataset element is a batch of up to this many queue elements
                (``dequeue_up_to``: full batches while the queue is open, then what is left); ``None``
                gives single elements.
            timeout: seconds each dequeue may wait (``DeadlineExceededError`` after that).

        Returns:
            The dataset (elements: arrays, tuples, or dicts for queues with component names).

        Raises:
            TypeError: ``queue`` is not a queue handle.

        Example:
            >>> ds = Dataset.from_queue(q, batch_size=256).map(train_step)   # doctest: +SKIP
        """
        from .bridges import from_queue

        return from_queue(queue, batch_size, timeout=timeout)

    def to_queue(self, queue: Any, *, enqueue_many: bool = False, close: bool = True,
                 chunk_size: int = DEFAULT_CHUNK) -> int:
        """Enqueue every element of the dataset into a server queue; blocks while the queue is full.

        Args:
            queue: a synchronous ``Queue`` whose spec matches the elements.
            enqueue_many: each dataset element is a batch of queue elements (its first dimension
                counts them); otherwise one dataset element is one queue element.
            close: close the queue after the last element (consumers then drain it and get
                ``OutOfRangeError``). If the dataset fails, the queue is closed with
                ``cancel_pending_enqueues=True`` instead and the error is raised.
            chunk_size: most consecutive elements sent in one ``enqueue_many``.

        Returns:
            The number of queue elements enqueued.

        Raises:
            TypeError: ``queue`` is an ``AsyncQueue`` (use :meth:`to_queue_async`).
            InvalidArgumentError: an element does not match the queue's spec (the queue's message).
            CancelledError: the queue was closed by someone else.

        Example:
            >>> Dataset.from_tensor_slices((x, y)).to_queue(q)      # doctest: +SKIP
            60000
        """
        from .bridges import to_queue

        return to_queue(self, queue, enqueue_many=enqueue_many, close=close, chunk_size=chunk_size)

    async def to_queue_async(self, queue: Any, *, enqueue_many: bool = False, close: bool = True,
                             chunk_size: int = DEFAULT_CHUNK) -> int:
        """:meth:`to_queue` as a coroutine: the dataset runs in worker threads, enqueues are awaited.

        Args:
            queue: an ``AsyncQueue`` of this loop's client, or a synchronous ``Queue``.
            enqueue_many: as for :meth:`to_queue`.
            close: as for :meth:`to_queue`.
            chunk_size: as for :meth:`to_queue`.

        Returns:
            The number of queue elements enqueued.

        Example:
            >>> await Dataset.range(100).to_queue_async(aq)    # doctest: +SKIP
            100
        """
        from .bridges import to_queue_async

        return await to_queue_async(self, queue, enqueue_many=enqueue_many, close=close, chunk_size=chunk_size)


# ----------------------------------------------------------------- one-input datasets
class _Unary(Dataset):
    """A dataset computed from one input dataset; by default it keeps the element spec."""

    def __init__(self, parent: Dataset) -> None:
        if not isinstance(parent, Dataset):
            raise TypeError(f"expected a Dataset, got {type(parent).__name__}")
        self._parent = parent

    def _compute_spec(self) -> Any:
        return self._parent.element_spec


class _UnaryIterator(DatasetIterator):
    """Holds the iterator of the input; saves it under ``child`` in the state."""

    def __init__(self, parent_it: DatasetIterator) -> None:
        self._parent = parent_it

    def _children(self) -> list[DatasetIterator]:
        return [self._parent]

    def get_state(self) -> dict:
        return self._state(child=self._parent.get_state(), **self._own_state())

    def set_state(self, state: dict) -> None:
        self._check(state)
        self._parent.set_state(state["child"])
        self._set_own_state(state)

    def _own_state(self) -> dict:
        return {}

    def _set_own_state(self, state: dict) -> None:
        pass
