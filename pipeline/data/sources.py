"""Source datasets: tensor slices, ranges, in-memory lists, generators, zip and concatenate."""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np

from queueserver import errors

from . import structure
from .base import Dataset, DatasetIterator, INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, spec_sample
from .structure import Chunk, RaggedTensor, RaggedTensorSpec, TensorSpec


def infer_spec(ds: Dataset, n: int = 8) -> Any:
    """Infers an element spec from the first ``n`` elements (dims that vary become ``None``).

    Used where a Python function decides the elements and cannot be traced. Errors while
    producing the sample are skipped (``ignore_errors`` pipelines), so a spec is still found;
    with nothing to look at (see :func:`~pipeline.data.base.spec_sample`) it is unknown.
    """
    if ds._iteration_consumes():
        return structure.UNKNOWN_SPEC  # never take from a queue or run a generator to look
    spec = None
    with spec_sample(ds, n + 64) as elements:
        for seen, e in enumerate(elements, 1):
            s = structure.spec_of(e)
            spec = s if spec is None else structure.relax(spec, s)
            if seen == n:
                break
    return structure.UNKNOWN_SPEC if spec is None else spec


def _read_only(arr: np.ndarray) -> np.ndarray:
    """A read-only view: elements and batches may be views of the user's arrays, never copies
    that the consumer could mistake for private buffers."""
    v = arr.view()
    v.flags.writeable = False
    return v


# --------------------------------------------------------------------------- from_tensor_slices
class TensorSliceDataset(Dataset):
    """The slices of arrays along axis 0 (``Dataset.from_tensor_slices``)."""

    def __init__(self, tensors: Any) -> None:
        def leaf(v: Any) -> Any:
            if isinstance(v, RaggedTensor):
                return v
            arr = structure.to_array(v)
            if arr.ndim == 0:
                raise ValueError(
                    "Unbatching a tensor is only supported for rank >= 1 (from_tensor_slices "
                    "needs arrays with a first dimension to slice)"
                )
            return _read_only(arr)

        self._tensors = structure.map_structure(leaf, tensors)
        self._leaves = structure.flatten(self._tensors)
        if not self._leaves:
            raise ValueError("Invalid `components`: from_tensor_slices needs at least one tensor, got an empty "
                             f"structure {tensors!r}")
        sizes = [len(x) for x in self._leaves]
        for s in sizes[1:]:
            if s != sizes[0]:
                raise ValueError(f"Dimensions {sizes[0]} and {s} are not compatible")
        self._n = sizes[0]
        self._chunkable = not any(isinstance(x, RaggedTensor) for x in self._leaves)
        # The common single-array case skips structure handling per element.
        self._single = self._leaves[0] if len(self._leaves) == 1 and not structure.is_nested(self._tensors) else None

    def _compute_spec(self) -> Any:
        def leaf(v: Any) -> Any:
            if isinstance(v, RaggedTensor):
                return TensorSpec((None,) + v.flat_values.shape[1:], v.flat_values.dtype)
            return TensorSpec(tuple(v.shape[1:]), "string" if v.dtype == object else v.dtype)

        return structure.map_structure(leaf, self._tensors)

    def _cardinality(self) -> int:
        return self._n

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _SliceIterator(self)


class _SliceIterator(DatasetIterator):
    def __init__(self, ds: TensorSliceDataset) -> None:
        self._ds = ds
        self._i = 0
        self.chunked = ds._chunkable

    def __next__(self) -> Any:
        i = self._i
        ds = self._ds
        if i >= ds._n:
            raise StopIteration
        self._i = i + 1
        if ds._single is not None:
            return structure.unstack_leaf(ds._single, i)
        return structure.map_structure(lambda a: structure.unstack_leaf(a, i), ds._tensors)

    def next_chunk(self, max_n: int) -> Chunk | None:
        i = self._i
        ds = self._ds
        if i >= ds._n:
            return None
        j = min(ds._n, i + max_n)
        self._i = j
        if ds._single is not None:
            return Chunk(j - i, ds._single[i:j])
        return Chunk(j - i, structure.map_structure(lambda a: a[i:j], ds._tensors))

    def get_state(self) -> dict:
        return self._state(i=self._i)

    def set_state(self, state: dict) -> None:
        self._i = int(self._check(state)["i"])


# --------------------------------------------------------------------------- in-memory list
class ListDataset(Dataset):
    """A dataset of given elements (``from_tensors``, the windows of ``window``)."""

    def __init__(self, elements: list, spec: Any = None) -> None:
        self._elements = list(elements)
        if spec is not None:
            self.__dict__["_spec"] = spec

    def _compute_spec(self) -> Any:
        spec = None
        for e in self._elements:
            s = structure.spec_of(e)
            spec = s if spec is None else structure.relax(spec, s)
        return spec if spec is not None else TensorSpec(None, np.float32)

    def _cardinality(self) -> int:
        return len(self._elements)

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _ListIterator(self._elements)


class _ListIterator(DatasetIterator):
    def __init__(self, elements: list) -> None:
        self._elements = elements
        self._i = 0

    def __next__(self) -> Any:
        if self._i >= len(self._elements):
            raise StopIteration
        self._i += 1
        return self._elements[self._i - 1]

    def get_state(self) -> dict:
        return self._state(i=self._i)

    def set_state(self, state: dict) -> None:
        self._i = int(self._check(state)["i"])


# --------------------------------------------------------------------------- range
class RangeDataset(Dataset):
    """``Dataset.range``: int64 scalars like Python's ``range``."""

    def __init__(self, *args: int, dtype: Any = np.int64) -> None:
        if not 1 <= len(args) <= 3:
            raise TypeError(f"range takes 1 to 3 arguments, got {len(args)}")
        ints = [int(a) for a in args]
        if len(ints) == 3 and ints[2] == 0:  # before range(), whose own check is a ValueError
            raise errors.InvalidArgumentError("step must be a non-zero integer")
        self._range = range(*ints)
        self._dtype = np.dtype(dtype)

    def _compute_spec(self) -> Any:
        return TensorSpec((), self._dtype)

    def _cardinality(self) -> int:
        return len(self._range)

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _RangeIterator(self)


class _RangeIterator(DatasetIterator):
    chunked = True

    def __init__(self, ds: RangeDataset) -> None:
        self._r = ds._range
        self._n = len(ds._range)
        self._cast = ds._dtype.type
        self._i = 0

    def __next__(self) -> Any:
        if self._i >= self._n:
            raise StopIteration
        v = self._r[self._i]
        self._i += 1
        return self._cast(v)

    def next_chunk(self, max_n: int) -> Chunk | None:
        if self._i >= self._n:
            return None
        j = min(self._n, self._i + max_n)
        r = self._r
        data = np.arange(r[self._i], r.start + j * r.step, r.step, dtype=self._cast)
        n = j - self._i
        self._i = j
        return Chunk(n, data)

    def get_state(self) -> dict:
        return self._state(i=self._i)

    def set_state(self, state: dict) -> None:
        self._i = int(self._check(state)["i"])


# --------------------------------------------------------------------------- generator
class GeneratorDataset(Dataset):
    """``Dataset.from_generator``: elements from a Python generator function."""

    _consumes_input = True  # iterating runs the user's generator: nothing else may (see UnknownSpec)

    def __init__(self, generator: Callable, output_types: Any, output_shapes: Any,
                 args: Sequence[Any] | None, output_signature: Any) -> None:
        if not callable(generator):
            raise TypeError("`generator` must be a Python callable.")
        self._gen = generator
        self._args = tuple(args) if args is not None else ()
        self._types = output_types
        if output_signature is None and output_types is not None:
            # The shapes follow the types' structure down to its leaves, where a shape is a list
            # or a tuple (``((), ())`` is two scalar shapes), as TensorFlow reads them.
            types = structure.flatten(output_types)
            shapes = [None] * len(types) if output_shapes is None else _shapes_up_to(output_types, output_shapes)
            output_signature = structure.pack_as(output_types, [
                TensorSpec(None if s is None else tuple(np.asarray(s, dtype=object).reshape(-1).tolist()),
                           _np_dtype(t)) for t, s in zip(types, shapes, strict=True)])
        self._signature = output_signature
        if output_signature is not None:
            self.__dict__["_spec"] = output_signature

    def _compute_spec(self) -> Any:
        return infer_spec(self)

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _GeneratorIterator(self)


def _shapes_up_to(types: Any, shapes: Any) -> list:
    """``output_shapes`` as one shape per leaf of ``output_types`` (TensorFlow's map_structure_up_to)."""
    if isinstance(types, tuple):
        if not isinstance(shapes, (tuple, list)) or len(shapes) != len(types):
            raise ValueError(f"`output_shapes` {shapes!r} does not match the structure of `output_types` {types!r}")
        return [s for t, sh in zip(types, shapes) for s in _shapes_up_to(t, sh)]
    if isinstance(types, dict):
        if not isinstance(shapes, dict) or set(shapes) != set(types):
            raise ValueError(f"`output_shapes` {shapes!r} does not match the structure of `output_types` {types!r}")
        return [s for k in sorted(types) for s in _shapes_up_to(types[k], shapes[k])]
    return [shapes]


def _np_dtype(t: Any) -> Any:
    if t in ("string", str, bytes, object):
        return "string"
    return np.dtype(t)


class _GeneratorIterator(DatasetIterator):
    def __init__(self, ds: GeneratorDataset) -> None:
        self._ds = ds
        self._it: Any = None
        self._count = 0
        self._done = False

    def close(self) -> None:
        """Releases the user's generator (running its ``finally`` blocks, as TensorFlow's finalize)."""
        it, self._it = self._it, None
        if it is not None and hasattr(it, "close"):
            it.close()

    def _start(self) -> None:
        try:
            self._it = iter(self._ds._gen(*self._ds._args))
        except Exception as e:
            raise errors.InvalidArgumentError(
                f"in Dataset.from_generator(generator={self._ds._gen!r}): {type(e).__name__}: {e}"
            ) from e

    def __next__(self) -> Any:
        if self._it is None:
            if self._done:
                raise StopIteration
            self._start()
        try:
            value = next(self._it)
        except StopIteration:
            self.close()  # let the generator go at its end, as TensorFlow does
            self._done = True
            raise
        except Exception as e:
            raise errors.InvalidArgumentError(
                f"in Dataset.from_generator: {type(e).__name__}: {e}"
            ) from e
        self._count += 1
        sig = self._ds._signature
        if sig is None:
            return structure.normalize(value)
        return _conform(value, sig)

    def get_state(self) -> dict:
        return self._state(count=self._count)

    def set_state(self, state: dict) -> None:
        n = int(self._check(state)["count"])
        self.close()
        self._done = False
        self._start()
        self._count = 0
        for _ in range(n):  # generators cannot seek: replay and drop the consumed elements
            next(self)


def _conform(value: Any, sig: Any) -> Any:
    """Casts a generator output to the declared signature, as TensorFlow does."""

    def one(v: Any, spec: Any) -> Any:
        if isinstance(spec, RaggedTensorSpec):
            if not isinstance(v, RaggedTensor):
                v = RaggedTensor.from_rows(list(v))
            flat = np.asarray(v.flat_values, dtype=spec.dtype)
            if spec.shape and spec.shape[0] is not None and len(v) != spec.shape[0]:
                raise errors.InvalidArgumentError(
                    f"`generator` yielded a ragged element of {len(v)} rows where {spec.shape[0]} were expected.")
            return RaggedTensor(flat, v.row_lengths)
        if spec.dtype_name == "string":
            return structure.normalize(v)
        arr = np.asarray(v, dtype=spec.dtype)
        if spec.shape is not None:
            shape = arr.shape
            if len(shape) != len(spec.shape) or any(
                d is not None and d != s for d, s in zip(spec.shape, shape)
            ):
                raise errors.InvalidArgumentError(
                    f"`generator` yielded an element of shape {shape} where an element of shape "
                    f"{spec.shape} was expected."
                )
        return arr[()] if arr.ndim == 0 else arr

    value = tuple(value) if isinstance(value, list) and isinstance(sig, tuple) else value
    try:
        return structure.map_structure(one, value, sig) if structure.is_nested(sig) else one(value, sig)
    except (ValueError, TypeError) as e:
        raise errors.InvalidArgumentError(
            f"`generator` yielded an element that did not match the expected structure. The expected structure was "
            f"{sig!r}, but the yielded element was {value!r} ({e})."
        ) from e


# --------------------------------------------------------------------------- zip
class ZipDataset(Dataset):
    """``Dataset.zip``: elements of several datasets side by side."""

    def __init__(self, datasets: Any) -> None:
        leaves = structure.flatten(datasets)
        if not leaves or not all(isinstance(d, Dataset) for d in leaves):
            raise TypeError("Dataset.zip expects a (nested) tuple or dict of Dataset objects")
        self._structure = datasets
        self._datasets = leaves

    def _compute_spec(self) -> Any:
        return structure.pack_as(self._structure, [d.element_spec for d in self._datasets])

    def _cardinality(self) -> int:
        # TensorFlow's rule: one input of unknown length makes the zip's unknown (a filtered input
        # may be shorter than every other), else the shortest finite one, else infinite.
        cards = [d._cardinality() for d in self._datasets]
        if UNKNOWN_CARDINALITY in cards:
            return UNKNOWN_CARDINALITY
        finite = [c for c in cards if c >= 0]
        return min(finite) if finite else INFINITE_CARDINALITY

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _ZipIterator(self, ctx)


class _ZipIterator(DatasetIterator):
    """As TensorFlow's zip: every input advances on every call, even after one of them raised,
    so the inputs stay in step (an error skipped by ``ignore_errors`` skips the whole tuple); the
    first error is raised; once any input ends, the zip has ended."""

    def __init__(self, ds: ZipDataset, ctx: tuple) -> None:
        self._ds = ds
        self._its = [d._make_iter(ctx) for d in ds._datasets]
        self._ended = False

    def __next__(self) -> Any:
        if self._ended:
            raise StopIteration
        values, error = [], None
        for it in self._its:
            try:
                values.append(next(it))
            except StopIteration:
                self._ended = True
                break
            except Exception as exc:  # noqa: BLE001 - raised below, after the others advanced
                if error is None:
                    error = exc
        if error is not None:
            raise error
        if self._ended:
            raise StopIteration
        return structure.pack_as(self._ds._structure, values)

    def _children(self) -> list[DatasetIterator]:
        return self._its

    def get_state(self) -> dict:
        return self._state(children=[it.get_state() for it in self._its], ended=self._ended)

    def set_state(self, state: dict) -> None:
        state = self._check(state)
        for it, s in zip(self._its, state["children"], strict=True):
            it.set_state(s)
        self._ended = bool(state.get("ended", False))


# --------------------------------------------------------------------------- choose_from_datasets
class _SelectDataset(Dataset):
    """What choose_from_datasets and sample_from_datasets share: a non-empty list of inputs whose
    specs relax into the output's."""

    def __init__(self, datasets: list) -> None:
        if not datasets:  # TensorFlow's ValueError and words
            raise ValueError("Invalid `datasets`. `datasets` should not be empty.")
        if not all(isinstance(d, Dataset) for d in datasets):
            raise TypeError("`datasets` must be a non-empty list of datasets")
        self._datasets = datasets
        specs = [d.element_spec for d in datasets]
        if not any(isinstance(sp, structure.UnknownSpec) for sp in specs):
            try:  # checked when built, as TensorFlow does
                self.__dict__["_spec"] = self._compute_spec()
            except TypeError as e:
                raise TypeError(f"All datasets must have compatible element specs: {e}") from None

    def _compute_spec(self) -> Any:
        spec = self._datasets[0].element_spec
        for d in self._datasets[1:]:
            spec = structure.relax(spec, d.element_spec)
        return spec

    def _cardinality(self) -> int:
        # TensorFlow's directed interleave: endless when an input is (stop_on_empty_dataset or not).
        if any(d._cardinality() == INFINITE_CARDINALITY for d in self._datasets):
            return INFINITE_CARDINALITY
        return UNKNOWN_CARDINALITY


class ChooseDataset(_SelectDataset):
    """``Dataset.choose_from_datasets``: the next element of the dataset each choice names."""

    def __init__(self, datasets: list, choices: Dataset, stop_on_empty_dataset: bool) -> None:
        super().__init__(datasets)
        if not isinstance(choices, Dataset):
            raise TypeError(f"`choice_dataset` should be a `tf.data.Dataset` of scalar `tf.int64` tensors, got "
                            f"{type(choices).__name__}")
        spec = choices.element_spec
        if not isinstance(spec, structure.UnknownSpec) and spec != TensorSpec((), np.int64):
            raise TypeError(f"`choice_dataset` must be a dataset of scalar `tf.int64` tensors, but its "
                            f"element_spec is {spec!r}")
        self._choices, self._stop = choices, bool(stop_on_empty_dataset)

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _ChooseIterator(self, ctx)


class _ChooseIterator(DatasetIterator):
    def __init__(self, ds: ChooseDataset, ctx: tuple) -> None:
        self._ds = ds
        self._choices = ds._choices._make_iter(ctx)
        self._its = [d._make_iter(ctx) for d in ds._datasets]
        self._empty = [False] * len(self._its)
        self._ended = False

    def __next__(self) -> Any:
        ds = self._ds
        if self._ended:
            raise StopIteration
        while True:
            choice = int(next(self._choices))
            if not 0 <= choice < len(self._its):
                raise errors.InvalidArgumentError(
                    f"Selector index out of range: {choice} >= {len(self._its)}" if choice >= 0
                    else f"Selector index out of range: {choice} < 0")
            if not self._empty[choice]:
                try:
                    return next(self._its[choice])
                except StopIteration:
                    self._empty[choice] = True
            if ds._stop:
                self._ended = True  # as TensorFlow's stop_on_empty_dataset: the selection ends here
                raise StopIteration

    def _children(self) -> list[DatasetIterator]:
        return [self._choices, *self._its]

    def get_state(self) -> dict:
        return self._state(choices=self._choices.get_state(), children=[it.get_state() for it in self._its],
                           empty=list(self._empty), ended=self._ended)

    def set_state(self, state: dict) -> None:
        state = self._check(state)
        self._choices.set_state(state["choices"])
        for it, s in zip(self._its, state["children"], strict=True):
            it.set_state(s)
        self._empty = [bool(e) for e in state["empty"]]
        self._ended = bool(state["ended"])


# --------------------------------------------------------------------------- sample_from_datasets
class SampleDataset(_SelectDataset):
    """``Dataset.sample_from_datasets``: each element from a dataset drawn by ``weights`` (a vector,
    or a dataset of vectors: one per draw, as tf.data allows)."""

    def __init__(self, datasets: list, weights: Any, seed: int | None, stop_on_empty_dataset: bool,
                 rerandomize_each_iteration: bool | None = None) -> None:
        super().__init__(datasets)
        self._weights_ds: Dataset | None = None
        if isinstance(weights, Dataset):
            self._weights_ds = weights
            self._weights = np.full(len(datasets), 1.0 / len(datasets))
        else:
            if weights is None:
                weights = [1.0 / len(datasets)] * len(datasets)
            self._weights = _checked_weights(weights, len(datasets))
        self._stop = bool(stop_on_empty_dataset)
        self._rerandomize = bool(rerandomize_each_iteration)
        # Fixed when the dataset is built (as shuffle's seed): every pass draws the same sequence,
        # unless rerandomize_each_iteration gives each new iteration the next one.
        self._seed = int(np.random.SeedSequence(seed).generate_state(1)[0]) if seed is None else int(seed)
        self._next_number = 0
        self._lock = threading.Lock()

    def _number(self) -> int:
        from .shuffle import _SAMPLING

        if not self._rerandomize or getattr(_SAMPLING, "active", False):
            return 0
        with self._lock:
            k = self._next_number
            self._next_number = k + 1
        return k

    def _cardinality(self) -> int:
        # As TensorFlow's: fixed weights leave out the zero-weight inputs, and a single input left
        # is the result itself (none left: nothing); else the directed interleave's rule.
        if self._weights_ds is None:
            drawn = [d for d, w in zip(self._datasets, self._weights) if w > 0]
            if len(drawn) <= 1:
                return drawn[0]._cardinality() if drawn else 0
        return super()._cardinality()

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _SampleIterator(self, ctx)


def _checked_weights(weights: Any, n: int) -> np.ndarray:
    """A weight vector: n floats, none negative (all zero draws nothing); TensorFlow's errors."""
    w = np.asarray(weights)
    if w.dtype.kind not in "f":
        raise TypeError(f"`weights` must be convertible to a tensor of `tf.float32` or `tf.float64` elements, "
                        f"got {w.dtype.name} values {w.tolist()!r}")
    w = w.astype(np.float64).reshape(-1)
    if w.size != n:
        # Both TensorFlow revisions' words ("same length", and the older "same number of elements").
        raise ValueError(f"`datasets` and `weights` should have the same length (should have the same number of "
                         f"elements): got {n} datasets and {w.size} weights")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise errors.InvalidArgumentError(f"`weights` must be finite and non-negative, got {w.tolist()}")
    return w


class _SampleIterator(DatasetIterator):
    def __init__(self, ds: SampleDataset, ctx: tuple) -> None:
        self._ds = ds
        self._its = [d._make_iter(ctx) for d in ds._datasets]
        self._weights_it = ds._weights_ds._make_iter(ctx) if ds._weights_ds is not None else None
        self._number = ds._number()
        self._rng = np.random.default_rng(np.random.SeedSequence(ds._seed, spawn_key=(self._number,)
                                                                 if self._number else ()))
        self._active = np.ones(len(self._its), bool)
        self._ended = False

    def _weights(self) -> np.ndarray | None:
        if self._weights_it is None:
            return self._ds._weights
        try:
            return _checked_weights(next(self._weights_it), len(self._its))
        except StopIteration:
            return None

    def __next__(self) -> Any:
        ds = self._ds
        while not self._ended and self._active.any():
            weights = self._weights()
            if weights is None:
                break
            w = np.where(self._active, weights, 0.0)
            if w.sum() <= 0:  # only zero-weight datasets are left
                break
            i = int(self._rng.choice(len(w), p=w / w.sum()))
            try:
                return next(self._its[i])
            except StopIteration:
                self._active[i] = False
                if ds._stop:
                    self._ended = True  # as TensorFlow's stop_on_empty_dataset
        raise StopIteration

    def _children(self) -> list[DatasetIterator]:
        return list(self._its) + ([self._weights_it] if self._weights_it is not None else [])

    def get_state(self) -> dict:
        return self._state(children=[it.get_state() for it in self._its], rng=self._rng.bit_generator.state,
                           active=self._active.tolist(), ended=self._ended,
                           weights=None if self._weights_it is None else self._weights_it.get_state())

    def set_state(self, state: dict) -> None:
        state = self._check(state)
        for it, s in zip(self._its, state["children"], strict=True):
            it.set_state(s)
        if self._weights_it is not None and state.get("weights") is not None:
            self._weights_it.set_state(state["weights"])
        self._rng.bit_generator.state = state["rng"]
        self._active = np.asarray(state["active"], bool)
        self._ended = bool(state["ended"])


# --------------------------------------------------------------------------- concatenate
class ConcatenateDataset(Dataset):
    """``a.concatenate(b)``: a's elements then b's."""

    def __init__(self, first: Dataset, second: Dataset) -> None:
        if not isinstance(second, Dataset):
            raise TypeError("concatenate expects a Dataset")
        self._a, self._b = first, second
        # Validated at construction, as TensorFlow does (TypeError naming both specs), when both
        # specs are known without consuming input.
        a, b = first.element_spec, second.element_spec
        unknown = isinstance(a, structure.UnknownSpec) or isinstance(b, structure.UnknownSpec)
        self.__dict__["_spec"] = structure.UNKNOWN_SPEC if unknown else structure.relax(a, b)

    def _compute_spec(self) -> Any:  # pragma: no cover - set in __init__
        return structure.relax(self._a.element_spec, self._b.element_spec)

    def _cardinality(self) -> int:
        a, b = self._a._cardinality(), self._b._cardinality()
        if INFINITE_CARDINALITY in (a, b):
            return INFINITE_CARDINALITY
        if UNKNOWN_CARDINALITY in (a, b):
            return UNKNOWN_CARDINALITY
        return a + b

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _ConcatIterator(self, ctx)


class _ConcatIterator(DatasetIterator):
    def __init__(self, ds: ConcatenateDataset, ctx: tuple) -> None:
        self._ds = ds
        self._ctx = ctx
        self._part = 0
        self._it = ds._a._make_iter(ctx)
        b_chunked = ds._b._make_iter(ctx).chunked if self._it.chunked else False
        self.chunked = self._it.chunked and b_chunked

    def _advance(self) -> bool:
        if self._part == 1:
            return False
        self._it.close()
        self._part = 1
        self._it = self._ds._b._make_iter(self._ctx)
        return True

    def __next__(self) -> Any:
        while True:
            try:
                return next(self._it)
            except StopIteration:
                if not self._advance():
                    raise

    def next_chunk(self, max_n: int) -> Chunk | None:
        while True:
            c = self._it.next_chunk(max_n)
            if c is not None:
                return c
            if not self._advance():
                return None

    def _children(self) -> list[DatasetIterator]:
        return [self._it]

    def get_state(self) -> dict:
        return self._state(part=self._part, child=self._it.get_state())

    def set_state(self, state: dict) -> None:
        self._check(state)
        if state["part"] == 1 and self._part == 0:
            self._advance()
        self._it.set_state(state["child"])
