"""``Dataset.shuffle``: a buffered shuffle, element-wise and as a vectorised block algorithm.

The element-wise algorithm (the definition)::

    fill:  append input elements to `buf` until it holds buffer_size of them (or input ends)
    step:  u = rng.random()                        # one float64 draw per output, always
           n = len(buf); j = min(int(u * n), n - 1)
           out = buf[j]
           if the input has a next element x:  buf[j] = x
           else:                               buf[j] = buf[-1]; buf.pop()
           emit out; stop when buf is empty

``rng`` is ``np.random.Generator(PCG64(SeedSequence(seed, spawn_key=key)))``:
``Generator.random(k)`` returns exactly the floats of ``k`` calls to ``random()``, so the block
algorithm below can draw a whole block at once and still emit the identical sequence.

The block algorithm (used when the input hands over chunks, e.g. ``from_tensor_slices``): the
buffer is one stacked array per leaf. For ``m`` steady-state steps it takes ``m`` inputs as one
chunk and slots ``j_0..j_{m-1}``; step ``t`` emits the last value written to slot ``j_t`` before
``t`` -- input ``s`` for the latest ``s < t`` with ``j_s == j_t``, else the buffer's row ``j_t``.
A stable sort of the slots finds those predecessors, so the outputs are one gather and the buffer
update one scatter. Draining (input exhausted) runs the swap-with-last steps on row indices and
gathers once. ``tests/pipeline/test_dataset_shuffle.py`` checks both give the same sequence.

Seeding follows TensorFlow's (``ShuffleDatasetOp`` with its seed generator): the seed is fixed
when the dataset is built (``seed``, or fresh OS entropy when it is None). Without
``reshuffle_each_iteration`` every iterator of the dataset uses ``key = ()``: one order for every
epoch of ``repeat`` and every new pass. With it, each new iterator of the dataset -- a new pass, a
new epoch of an enclosing ``repeat``, another use inside ``concatenate``/``interleave`` -- takes
the next number of the dataset's sequence as ``key = (k,)``, so orders differ and are
reproducible from the seed. A saved state holds the entropy and ``k``; restoring it also sets
the dataset's sequence to continue after ``k`` (as TensorFlow restores its seed generator), so a
restored pass continues with the same later epochs. Iterators made only to infer an element spec
(inside :func:`sampling`) look at the next order without taking a number.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator, cast

import numpy as np

from queueserver import errors

from . import structure
from .base import Dataset, DatasetIterator, _Unary
from .structure import Chunk


class ShuffleDataset(_Unary):
    """``ds.shuffle(buffer_size, seed, reshuffle_each_iteration)``."""

    def __init__(self, parent: Dataset, buffer_size: int, seed: int | None,
                 reshuffle_each_iteration: bool | None) -> None:
        super().__init__(parent)
        buffer_size = int(buffer_size)
        if buffer_size < 1:
            raise errors.InvalidArgumentError(f"buffer_size must be greater than zero, got {buffer_size}.")
        self._size = buffer_size
        self._seed = None if seed is None else int(seed)
        self._reshuffle = True if reshuffle_each_iteration is None else bool(reshuffle_each_iteration)
        # The seed is fixed here, once per dataset (TensorFlow draws it when the op is built).
        self._entropy = self._seed if self._seed is not None else int(cast(int, np.random.SeedSequence().entropy))
        self._next_number = 0  # the next pass's number in the reshuffle sequence
        self._lock = threading.Lock()

    def _number(self, take: bool) -> int | None:
        """A new pass's number in the reshuffle sequence (None without reshuffling); ``take``
        advances the sequence, otherwise this only looks at the next number."""
        if not self._reshuffle:
            return None
        with self._lock:
            k = self._next_number
            if take:
                self._next_number = k + 1
        return k

    def _restored(self, entropy: int, number: int | None) -> None:
        """A state was restored: later passes continue the sequence it was saved in."""
        with self._lock:
            if self._seed is None:
                self._entropy = entropy
            if number is not None:
                self._next_number = number + 1

    def _cardinality(self) -> int:
        return self._parent._cardinality()

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return ShuffleIterator(self, ctx, take=True)


_SAMPLING = threading.local()


@contextmanager
def sampling() -> Iterator[None]:
    """Iterators made in this thread inside the block only look at elements (e.g. to infer an
    element spec): they see the order the next pass will have and leave the seed sequence as it is."""
    before = getattr(_SAMPLING, "active", False)
    _SAMPLING.active = True
    try:
        yield
    finally:
        _SAMPLING.active = before


def _rng(entropy: int, number: int | None) -> np.random.Generator:
    # Pass 0 (and every pass without reshuffling) uses the seed's own order: spawn key ().
    key = (number,) if number else ()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=key)))


class ShuffleIterator(DatasetIterator):
    """Iterator of :class:`ShuffleDataset`; chunked when its input is.

    ``fast=False`` forces the element-wise algorithm (used by the equivalence tests). With
    ``take`` (a new pass, see the module docstring) the iterator takes the next number of the
    dataset's reshuffle sequence when it draws first -- an iterator that never yields takes none;
    without it, it only looks at that number.
    """

    def __init__(self, ds: ShuffleDataset, ctx: tuple, fast: bool | None = None,
                 take: bool = False) -> None:
        self._ds = ds
        self._parent = ds._parent._make_iter(ctx)
        self._take = take and not getattr(_SAMPLING, "active", False)
        # Set when the first draw starts the generator. The entropy goes into the state, so a
        # resumed pass continues the same order even in a dataset built again without a seed.
        self._entropy = ds._entropy
        self._number: int | None = None
        self._gen = cast(np.random.Generator, None)  # set by _start
        self._draws = 0
        self._fast = self._parent.chunked if fast is None else fast
        self.chunked = self._fast
        self._filled = False
        self._done = False  # the input is exhausted
        self._buf: Any = [] if not self._fast else None  # list, or stacked structure
        self._n = 0  # rows of the stacked buffer

    def _children(self) -> list[DatasetIterator]:
        return [self._parent]

    def _start(self) -> None:
        if self._gen is None:
            self._entropy = self._ds._entropy
            self._number = self._ds._number(self._take)
            self._gen = _rng(self._entropy, self._number)

    # ----------------------------------------------------------------- element-wise
    def _fill_list(self) -> None:
        self._start()
        while len(self._buf) < self._ds._size:
            try:
                self._buf.append(next(self._parent))
            except StopIteration:
                self._done = True
                break
        self._filled = True

    def __next__(self) -> Any:
        if self._fast:
            c = self.next_chunk(1)
            if c is None:
                raise StopIteration
            return c.element(0)
        if not self._filled:
            self._fill_list()
        buf = self._buf
        if not buf:
            raise StopIteration
        u = self._gen.random()
        self._draws += 1
        n = len(buf)
        j = min(int(u * n), n - 1)
        out = buf[j]
        if not self._done:
            try:
                buf[j] = next(self._parent)
                return out
            except StopIteration:
                self._done = True
        buf[j] = buf[-1]
        buf.pop()
        return out

    # ----------------------------------------------------------------- blocks
    def _fill_stacked(self) -> None:
        self._start()
        chunks = []
        got = 0
        size = self._ds._size
        while got < size:
            c = self._parent.next_chunk(size - got)
            if c is None:
                self._done = True
                break
            chunks.append(c)
            got += c.n
        self._filled = True
        if chunks:
            joined = structure.concat_chunks(chunks)
            # The buffer is written in place, so it must own its memory.
            self._buf = structure.map_structure(np.array, joined.data)
            self._n = joined.n

    def next_chunk(self, max_n: int) -> Chunk | None:
        if not self._fast:
            return DatasetIterator.next_chunk(self, max_n)
        if not self._filled:
            self._fill_stacked()
        if self._n == 0:
            return None
        if not self._done:
            c = self._parent.next_chunk(max_n)
            if c is not None:
                return self._steady(c)
            self._done = True
        return self._drain(min(max_n, self._n))

    def _steady(self, c: Chunk) -> Chunk:
        m, n = c.n, self._n
        u = self._gen.random(m)
        self._draws += m
        j = np.minimum((u * n).astype(np.int64), n - 1)
        order = np.argsort(j, kind="stable")  # groups equal slots, in step order
        js = j[order]
        same_as_prev = np.empty(m, dtype=bool)
        same_as_prev[0] = False
        same_as_prev[1:] = js[1:] == js[:-1]
        # Outputs: by default the buffer row; where an earlier step in this block wrote the same
        # slot, the input written by the latest such step.
        from_input_at = order[same_as_prev]  # steps whose slot was written earlier in the block
        written_by = order[np.flatnonzero(same_as_prev) - 1]
        last_in_group = np.empty(m, dtype=bool)
        last_in_group[-1] = True
        last_in_group[:-1] = js[1:] != js[:-1]
        slots = js[last_in_group]
        writers = order[last_in_group]

        def leaf(buf: np.ndarray, inp: np.ndarray) -> np.ndarray:
            out = buf[j]
            if len(from_input_at):
                out[from_input_at] = inp[written_by]
            buf[slots] = inp[writers]
            return out

        data = structure.map_structure(leaf, self._buf, c.data)
        return Chunk(m, data)

    def _drain(self, k: int) -> Chunk:
        u = self._gen.random(k).tolist()
        self._draws += k
        n = self._n
        rows = list(range(n))
        picked = []
        for x in u:  # swap-with-last on row numbers only; the data moves in one gather below
            j = min(int(x * n), n - 1)
            picked.append(rows[j])
            rows[j] = rows[n - 1]
            n -= 1
        del rows[n:]
        idx = np.array(picked, dtype=np.int64)
        keep = np.array(rows, dtype=np.int64)
        out = structure.map_structure(lambda a: a[idx], self._buf)
        self._buf = structure.map_structure(lambda a: a[keep], self._buf)
        self._n = n
        return Chunk(k, out)

    # ----------------------------------------------------------------- state
    def get_state(self) -> dict:
        if self._fast:
            buf = None if self._buf is None or self._n == 0 else structure.encode(self._buf)
        else:
            buf = structure.encode(list(self._buf))
        rng = None
        if self._gen is not None:
            gen_state = self._gen.bit_generator.state
            rng = {"state": str(gen_state["state"]["state"]), "inc": str(gen_state["state"]["inc"])}
        return self._state(
            child=self._parent.get_state(),
            entropy=str(self._entropy),
            number=self._number,
            rng=rng,
            draws=self._draws,
            filled=self._filled,
            done=self._done,
            fast=self._fast,
            buffer=buf,
        )

    def set_state(self, state: dict) -> None:
        self._check(state)
        if bool(state["fast"]) != self._fast:
            raise ValueError("this shuffle state was saved with a different buffer layout")
        self._parent.set_state(state["child"])
        if state["rng"] is None:  # saved before the first draw: the pass starts when resumed
            self._gen = cast(np.random.Generator, None)
            self._number = None
        else:
            self._entropy = int(state["entropy"])
            self._number = None if state["number"] is None else int(state["number"])
            self._ds._restored(self._entropy, self._number)
            self._gen = _rng(self._entropy, self._number)
            self._gen.bit_generator.state = {
                "bit_generator": "PCG64",
                "state": {"state": int(state["rng"]["state"]), "inc": int(state["rng"]["inc"])},
                "has_uint32": 0,
                "uinteger": 0,
            }
        self._draws = int(state["draws"])
        self._filled = bool(state["filled"])
        self._done = bool(state["done"])
        if self._fast:
            if state["buffer"] is None:
                self._buf, self._n = None, 0
            else:
                self._buf = structure.decode(state["buffer"])
                self._n = len(structure.flatten(self._buf)[0])
        else:
            self._buf = structure.decode(state["buffer"])
