"""The tests TensorFlow's FIFOQueue, PaddingFIFOQueue and RandomShuffleQueue test files share.

``fifo_queue_test.py``, ``padding_fifo_queue_test.py`` and ``random_shuffle_queue_test.py`` hold
the same case written three times; here each is written once, as a test run on a real server.
A module that ports it imports it (pytest collects it there, under that module's name and
fixtures), next to a comment naming the TensorFlow test it ports; where a module's TensorFlow test
differs (a RandomShuffleQueue's ``min_after_dequeue``, a padding queue's shapes), its own test calls
the shared one with those arguments. A test's parameters without defaults are fixtures.

Each module says which queue it tests with ``KIND`` (``"fifo"``, ``"padding_fifo"``,
``"random_shuffle"``, ``"priority"``) and takes the fixtures here: ``c``, a client of a fresh
server; ``make(capacity, dtypes, shapes=None, *, name=None, **options)``, a fresh queue of that kind;
``ordered``, False for a RandomShuffleQueue, whose cases compare contents, not order (TensorFlow's
``assertItemsEqual``).

TensorFlow's tests sleep 0.1 s and hope a call has blocked by then; these ask the server instead
(:func:`wait_until`: its status counts the calls waiting on each queue), so they neither race nor
sleep. TensorFlow's ``checkedThread`` is :class:`Checked`: a thread whose failure fails the test
and whose ``finish`` never waits for ever.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np
import pytest

import queueserver as qs

#: Longest wait for a thread that should end, or for the server to report a call blocked.
JOIN_S = 10.0

Make = Callable[..., Any]


class Checked(threading.Thread):
    """TensorFlow's ``checkedThread``: runs ``target(*args)``; :meth:`finish` re-raises its failure."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self._fn, self._fn_args = target, args
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._fn(*self._fn_args)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def finish(self, timeout: float = JOIN_S) -> None:
        """Join; fail if the thread is still blocked after ``timeout`` or if it raised."""
        self.join(timeout)
        assert not self.is_alive(), f"a thread is still blocked after {timeout} s"
        if self.error is not None:
            raise self.error


def started(target: Callable[..., Any], *args: Any) -> Checked:
    """A started :class:`Checked` thread."""
    thread = Checked(target, *args)
    thread.start()
    return thread


def waiters(c: Any, q: Any) -> tuple[int, int]:
    """``(waiting enqueues, waiting dequeues)`` of queue ``q``, as the server reports them."""
    for row in c.status()["queues"]:
        if row["name"] == q.name and row["container"] == q.container:
            return row["waiting_enqueues"], row["waiting_dequeues"]
    raise AssertionError(f"{q} is not in the server's status")


def wait_until(c: Any, q: Any, *, enqueues: int | None = None, dequeues: int | None = None) -> None:
    """Wait until the server reports exactly this many enqueues and dequeues blocked on ``q``."""
    deadline = time.monotonic() + JOIN_S
    while True:
        enq, deq = waiters(c, q)
        if (enqueues is None or enq == enqueues) and (dequeues is None or deq == dequeues):
            return
        assert time.monotonic() < deadline, f"{q}: {enq} enqueue(s), {deq} dequeue(s) blocked"
        time.sleep(0.002)  # polling the server's own count: nothing else can tell another thread is blocked


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Wait until ``predicate()`` holds: a change another connection makes on the server."""
    deadline = time.monotonic() + JOIN_S
    while not predicate():
        assert time.monotonic() < deadline, f"still not {what} after {JOIN_S} s"
        time.sleep(0.002)


def same(expected: Any, got: Any, ordered: bool) -> None:
    """``assertAllEqual`` when ``ordered``, else ``assertItemsEqual``."""
    expected, got = [_plain(x) for x in expected], [_plain(x) for x in got]
    if ordered:
        assert got == expected
    else:
        assert sorted(got, key=repr) == sorted(expected, key=repr)


def _plain(x: Any) -> Any:
    if isinstance(x, (np.ndarray, np.generic)):
        return x.tolist()
    if isinstance(x, tuple):
        return tuple(_plain(v) for v in x)
    return x


F = np.float32
ELEMS4 = [10.0, 20.0, 30.0, 40.0]
ELEMS10 = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
INT_PAIRS10 = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16], [17, 18], [19, 20]]


# ----- fixtures: a module takes them with ``c, make, ordered = cases.c, cases.make, cases.ordered``

#: ``KIND`` -> (the prefix of a fresh queue's name, ``new(c, name, capacity, dtypes, shapes, **options)``).
_KINDS: dict[str, tuple[str, Callable[..., Any]]] = {
    "fifo": ("fifo", lambda c, name, capacity, dtypes, shapes, **options:
             c.fifo_queue(name, capacity, dtypes, shapes, **options)),
    "padding_fifo": ("padding", lambda c, name, capacity, dtypes, shapes, **options:
                     c.padding_fifo_queue(name, capacity, dtypes, shapes, **options)),
    "random_shuffle": ("shuffle", lambda c, name, capacity, dtypes, shapes, min_after_dequeue=0, **options:
                       c.random_shuffle_queue(name, capacity, min_after_dequeue, dtypes, shapes, **options)),
    "priority": ("priority", lambda c, name, capacity, dtypes, shapes, **options:
                 c.priority_queue(name, capacity, dtypes, shapes, **options)),
}


@pytest.fixture
def c(local_server: Any) -> Iterator[Any]:
    """A client of the test's own server."""
    with qs.connect(local_server.target) as client:
        yield client


@pytest.fixture
def make(c: Any, request: pytest.FixtureRequest) -> Make:
    """A fresh queue of the module's ``KIND``: ``make(capacity, dtypes, shapes=None, *, name=None,
    **options)``; a RandomShuffleQueue takes ``min_after_dequeue`` (0 unless given) and ``seed`` too."""
    prefix, new = _KINDS[request.module.KIND]
    count = itertools.count()

    def make(capacity: int, dtypes: Any, shapes: Any = None, *, name: str | None = None, **options: Any) -> Any:
        return new(c, name or f"{prefix}{next(count)}", capacity, dtypes, shapes, **options)

    return make


@pytest.fixture
def ordered(request: pytest.FixtureRequest) -> bool:
    """Whether the module's queue keeps order: all but a RandomShuffleQueue."""
    return request.module.KIND != "random_shuffle"


# ----- one thread

def test_enqueue_with_shape(make: Make) -> None:  # testEnqueueWithShape
    q = make(10, F, [[3, 2]])
    q.enqueue([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    with pytest.raises(qs.InvalidArgumentError, match=r"Expected \[3,2\], got \[2,3\]"):
        q.enqueue([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert q.size() == 1


def test_enqueue_many_with_shape(make: Make) -> None:  # testEnqueueManyWithShape
    q = make(10, [np.int32, np.int32], [[], [2]])
    q.enqueue_many([[1, 2, 3, 4], [[1, 1], [2, 2], [3, 3], [4, 4]]])
    assert q.size() == 4


def test_dequeue(make: Make, ordered: bool) -> None:  # testDequeue
    q = make(10, F, [[]])
    elems = [10.0, 20.0, 30.0]
    for x in elems:
        q.enqueue((x,))
    same(elems, [q.dequeue() for _ in elems], ordered)


def test_multi_enqueue_and_dequeue(make: Make, ordered: bool) -> None:  # testMultiEnqueueAndDequeue
    q = make(10, [np.int32, F], [[], []])
    elems = [(5, 10.0), (10, 20.0), (15, 30.0)]
    for x in elems:
        q.enqueue(x)
    same(elems, [q.dequeue() for _ in elems], ordered)


def test_queue_size_empty(make: Make) -> None:  # testQueueSizeEmpty
    assert make(10, F, [[]]).size() == 0


def test_queue_size_after_enqueue_and_dequeue(make: Make) -> None:  # testQueueSizeAfterEnqueueAndDequeue
    q = make(10, F, [[]])
    assert isinstance(q.size(), int)  # TensorFlow: a scalar
    q.enqueue((10.0,))
    assert q.size() == 1
    q.dequeue()
    assert q.size() == 0


def test_enqueue_many(make: Make, ordered: bool) -> None:  # testEnqueueMany
    q = make(10, F, [[]])
    q.enqueue_many((ELEMS4,))
    q.enqueue_many((ELEMS4,))
    same(ELEMS4 * 2, [q.dequeue() for _ in range(8)], ordered)


def test_empty_enqueue_many(make: Make, shapes: Any = None, **options: Any) -> None:  # testEmptyEnqueueMany
    q = make(10, F, shapes, **options)
    assert q.size() == 0
    q.enqueue_many((np.zeros((0, 2, 3), np.float32),))
    assert q.size() == 0


def test_empty_dequeue_many(make: Make, up_to: bool = False) -> None:  # testEmptyDequeueMany
    q = make(10, F, [[]])
    take = q.dequeue_up_to if up_to else q.dequeue_many
    assert take(0).tolist() == []
    q.enqueue((10.0,))
    assert take(0).tolist() == []
    assert q.size() == 1


def test_empty_dequeue_up_to(make: Make) -> None:  # testEmptyDequeueUpTo
    test_empty_dequeue_many(make, up_to=True)


def test_multi_enqueue_many(make: Make, ordered: bool, shapes: Any = None) -> None:  # testMultiEnqueueMany
    # TensorFlow's FIFO and shuffle queues give no shapes; its padding queue, which needs them, ((), (2,)).
    q = make(10, [F, np.int32], shapes)
    float_elems = ELEMS4
    int_elems = [[1, 2], [3, 4], [5, 6], [7, 8]]
    q.enqueue_many((float_elems, int_elems))
    q.enqueue_many((float_elems, int_elems))
    same(list(zip(float_elems, int_elems)) * 2, [_pair(q.dequeue()) for _ in range(8)], ordered)


def _pair(value: Any) -> tuple:
    a, b = value
    return (float(a), np.asarray(b).tolist())


def test_dequeue_many(make: Make, ordered: bool) -> None:  # testDequeueMany
    q = make(10, F, [[]])
    q.enqueue_many((ELEMS10,))
    first, second = q.dequeue_many(4), q.dequeue_many(4)
    assert first.shape == second.shape == (4,)
    if ordered:
        same(ELEMS10[:8], list(first) + list(second), True)
    else:
        assert set(first.tolist() + second.tolist()) <= set(ELEMS10) and q.size() == 2


def test_dequeue_up_to_no_blocking(make: Make, ordered: bool) -> None:  # testDequeueUpToNoBlocking
    q = make(10, F, [[]])
    q.enqueue_many((ELEMS10,))
    got = list(q.dequeue_up_to(4)) + list(q.dequeue_up_to(4))
    if ordered:
        same(ELEMS10[:8], got, True)
    else:
        assert len(set(got)) == 8 and set(got) <= set(ELEMS10)


def test_multi_dequeue_many(make: Make, ordered: bool, up_to: bool = False, shapes: Any = ((), (2,))) -> None:
    # testMultiDequeueMany
    q = make(10, [F, np.int32], shapes)
    q.enqueue_many((ELEMS10, INT_PAIRS10))
    take = q.dequeue_up_to if up_to else q.dequeue_many
    results = []
    for _ in range(2):
        f, i = take(4)
        assert f.shape == (4,) and i.shape == (4, 2)  # TensorFlow's static shapes: [4] and [4, 2]
        results += [(float(a), b) for a, b in zip(f, i.tolist())]
    f, i = q.dequeue()
    assert f.shape == () and i.shape == (2,)
    results.append((float(f), i.tolist()))
    expected = list(zip(ELEMS10, INT_PAIRS10))
    if ordered:
        assert results == expected[:9]
    else:
        results.append(_pair(q.dequeue()))
        same(expected, results, False)


def test_multi_dequeue_up_to_no_blocking(make: Make, ordered: bool) -> None:  # testMultiDequeueUpToNoBlocking
    test_multi_dequeue_many(make, ordered, up_to=True)


def test_high_dimension(make: Make, ordered: bool, shape: Any = (4, 4, 4, 4)) -> None:  # testHighDimension
    q = make(10, np.int32, [shape])
    elems = np.array([[[[[x] * 4] * 4] * 4] * 4 for x in range(10)], np.int32)
    q.enqueue_many((elems,))
    got = q.dequeue_many(10)
    if ordered:
        np.testing.assert_array_equal(got, elems)
    else:
        same(list(elems), list(got), False)


def test_enqueue_wrong_shape(make: Make) -> None:  # testEnqueueWrongShape
    # TensorFlow raises ValueError while it builds the graph; here the call itself is refused.
    q = make(10, [np.int32, np.int32], [[], [2]])
    with pytest.raises(qs.InvalidArgumentError, match=r"component 0. Expected \[\], got \[2\]"):
        q.enqueue(([1, 2], [2, 2]))
    with pytest.raises(qs.InvalidArgumentError, match="leading element dimension"):
        q.enqueue_many((7, [[1, 2], [3, 4], [5, 6]]))
    assert q.size() == 0


def test_batch_size_mismatch(make: Make) -> None:  # testBatchSizeMismatch
    q = make(10, [np.int32] * 3, [[], [], []])
    with pytest.raises(qs.InvalidArgumentError, match=r"component 1. Expected \[3\], got \[2\]"):
        q.enqueue_many(([1, 2, 3], [1, 2], [1, 2, 3]))
    with pytest.raises(qs.InvalidArgumentError, match=r"component 1. Expected \[2\], got \[3\]"):
        q.enqueue_many(([1, 2], [1, 2, 3], [1, 2]))
    assert q.size() == 0


def test_enqueue_many_empty_type_conversion(make: Make) -> None:  # testEnqueueManyEmptyTypeConversion
    q = make(10, [np.int32, F], [[], []])
    q.enqueue_many(([], []))  # empty lists take the queue's dtypes: no dtype error, nothing added
    assert q.size() == 0


def test_enqueue_wrong_type(make: Make) -> None:  # testEnqueueWrongType
    # TensorFlow: an int32 tensor for a float32 component is refused when the graph is built. NumPy
    # arrays here convert as TensorFlow converts constants (int32 into float32 is allowed), so the
    # wrong type is one no conversion allows: floats into an int32 component, text into float32.
    q = make(10, [np.int32, F], [[], []])
    with pytest.raises(qs.InvalidArgumentError, match="component 0. Expected int32, got float64"):
        q.enqueue((np.float64(1.5), np.float32(1)))
    with pytest.raises(qs.InvalidArgumentError, match="component 1. Expected float32"):
        q.enqueue_many((np.array([1, 2], np.int32), np.array(["a", "b"])))
    assert q.size() == 0


def test_enqueue_wrong_shape_at_runtime(make: Make) -> None:  # testEnqueueWrongShapeAtRuntime
    q = make(10, [np.int32, np.int32], [[2, 2], [3, 3]])
    ok = np.ones((2, 2), np.int32)
    with pytest.raises(qs.InvalidArgumentError, match=r"Expected \[3,3\], got \[3,4\]"):
        q.enqueue((ok, np.ones((3, 4), np.int32)))
    assert q.size() == 0


def test_enqueue_dequeue_many_wrong_shape(make: Make) -> None:  # testEnqueueDequeueManyWrongShape
    q = make(10, [np.int32, np.int32], [[2, 2], [3, 3]])
    with pytest.raises(qs.InvalidArgumentError,
                       match=r"Shape mismatch in tuple component 1. Expected \[2,3,3\], got \[2,3,4\]"):
        q.enqueue_many((np.ones((2, 2, 2), np.int32), np.ones((2, 3, 4), np.int32)))
    assert q.size() == 0


def test_dtypes(make: Make, with_uint16: bool = True) -> None:  # testDtypes
    kinds = [np.float32, np.float64, np.int32, np.uint8, np.int16, np.int8, np.int64]
    kinds += [np.uint16] if with_uint16 else []
    kinds += [np.bool_, np.complex64, np.complex128]
    shape = (32, 4, 128)
    q = make(32, kinds, [shape[1:]] * len(kinds))
    rng = np.random.default_rng(0)
    inputs = []
    for dtype in kinds:
        arr = rng.integers(-10, 10, shape)
        if dtype is np.bool_:
            arr = arr > 0
        elif dtype in (np.complex64, np.complex128):
            arr = np.sqrt(arr.astype(dtype))
        else:
            arr = arr.astype(dtype)
        inputs.append(arr)
    q.enqueue_many(tuple(inputs))
    for sent, got in zip(inputs, q.dequeue_many(32)):
        assert got.dtype == sent.dtype
        np.testing.assert_array_equal(got, sent)


# ----- sharing

def test_does_not_lose_value(make: Make) -> None:  # testDoesNotLoseValue
    q = make(1, F, [[]])
    q.enqueue((10.0,))
    for _ in range(500):
        assert q.size() == 1


def test_shared_queue_same_session(make: Make) -> None:  # testSharedQueueSameSession
    q1 = make(1, F, [[]], name="shared_queue")
    q1.enqueue((10.0,))
    q2 = make(1, F, [[]], name="shared_queue")
    assert q1.size() == q2.size() == 1
    assert float(q2.dequeue()) == 10.0
    assert q1.size() == q2.size() == 0
    q2.enqueue((20.0,))
    assert q1.size() == q2.size() == 1
    assert float(q1.dequeue()) == 20.0
    assert q1.size() == q2.size() == 0


# ----- threads

def test_parallel_enqueue(make: Make, ordered: bool) -> None:  # testParallelEnqueue
    q = make(10, F, [[]])
    threads = [started(q.enqueue, (x,)) for x in ELEMS10]
    for t in threads:
        t.finish()
    same(ELEMS10, [q.dequeue() for _ in ELEMS10], False)


def test_parallel_dequeue(make: Make, ordered: bool) -> None:  # testParallelDequeue
    q = make(10, F, [[]])
    for x in ELEMS10:
        q.enqueue((x,))
    results: list = []
    threads = [started(lambda: results.append(q.dequeue())) for _ in ELEMS10]
    for t in threads:
        t.finish()
    same(ELEMS10, results, False)


def test_enqueue_and_blocking_dequeue(c: Any, make: Make, ordered: bool) -> None:  # testEnqueueAndBlockingDequeue
    q = make(3, F, [[]])
    elems = [10.0, 20.0, 30.0]
    results: list = []
    dequeuer = started(lambda: results.extend(q.dequeue() for _ in elems))
    wait_until(c, q, dequeues=1)
    for x in elems:
        q.enqueue((x,))
    dequeuer.finish()
    same(elems, results, ordered)


def test_parallel_enqueue_many(make: Make) -> None:  # testParallelEnqueueMany
    q = make(1000, F, [[]])
    elems = [10.0 * x for x in range(100)]
    threads = [started(q.enqueue_many, (elems,)) for _ in range(10)]
    for t in threads:
        t.finish()
    same(elems * 10, q.dequeue_many(1000), False)


def test_parallel_dequeue_many(make: Make, up_to: bool = False) -> None:  # testParallelDequeueMany
    q = make(1000, F, [[]])
    elems = [10.0 * x for x in range(1000)]
    q.enqueue_many((elems,))
    dequeued: list = []
    take = q.dequeue_up_to if up_to else q.dequeue_many
    threads = [started(lambda: dequeued.extend(take(100))) for _ in range(10)]
    for t in threads:
        t.finish()
    same(elems, dequeued, False)


def test_parallel_dequeue_up_to(make: Make) -> None:  # testParallelDequeueUpTo
    # The FIFO queues' (from a closed queue, 101 at a time); a RandomShuffleQueue's is
    # test_parallel_dequeue_many(up_to=True).
    q = make(1000, F, [[]])
    elems = [10.0 * x for x in range(1000)]
    q.enqueue_many((elems,))
    q.close()
    dequeued: list = []
    threads = [started(lambda: dequeued.extend(q.dequeue_up_to(101))) for _ in range(10)]
    for t in threads:
        t.finish()
    same(elems, dequeued, False)


def test_parallel_enqueue_and_dequeue(make: Make) -> None:  # testParallelEnqueueAndDequeue
    q = make(50, F, [[]])
    q.enqueue_many(([10.0] * 49,))

    def enqueue() -> None:
        for _ in range(100):
            q.enqueue((20.0,))

    def dequeue() -> None:
        for _ in range(100):
            assert float(q.dequeue()) in (10.0, 20.0)

    threads = [started(enqueue) for _ in range(10)] + [started(dequeue) for _ in range(10)]
    for t in threads:
        t.finish()
    assert set(q.dequeue_many(49).tolist()) <= {10.0, 20.0}
    assert q.size() == 0


def test_mixture_of_enqueue_and_enqueue_many(make: Make, seed: int = 250) -> None:  # testMixtureOfEnqueueAndEnqueueMany
    q = make(10, np.int32, [[]])
    rnd = random.Random(seed)

    def dequeue() -> None:
        for i in range(250):
            assert int(q.dequeue()) == i

    dequeuer = started(dequeue)
    enqueued = 0
    while enqueued < 250:
        if rnd.random() > 0.5:
            q.enqueue(enqueued)
            enqueued += 1
        else:
            count = rnd.randint(0, min(20, 250 - enqueued))
            q.enqueue_many((np.arange(enqueued, enqueued + count, dtype=np.int32),))
            enqueued += count
    q.close()
    dequeuer.finish()
    assert q.size() == 0


def test_mixture_of_dequeue_and_dequeue_many(make: Make, seed: int = 250) -> None:  # testMixtureOfDequeueAndDequeueMany
    q = make(10, np.int32, [[]])
    rnd = random.Random(seed)
    enqueuer = started(q.enqueue_many, (np.arange(250, dtype=np.int32),))
    dequeued = 0
    while dequeued < 250:
        if rnd.random() > 0.5:
            assert int(q.dequeue()) == dequeued
            dequeued += 1
        else:
            count = rnd.randint(0, min(20, 250 - dequeued))
            assert q.dequeue_many(count).tolist() == list(range(dequeued, dequeued + count))
            dequeued += count
    q.close()
    enqueuer.finish()
    assert q.size() == 0


def test_blocking_dequeue_many(c: Any, make: Make, ordered: bool, up_to: bool = False) -> None:
    # testBlockingDequeueMany
    q = make(10, F, [[]])
    dequeued: list = []
    take = q.dequeue_up_to if up_to else q.dequeue_many
    dequeuer = started(lambda: dequeued.extend(take(4).tolist()))
    wait_until(c, q, dequeues=1)
    q.enqueue_many((ELEMS4,))
    dequeuer.finish()
    same(ELEMS4, dequeued, ordered)


def test_blocking_dequeue_up_to(c: Any, make: Make, ordered: bool) -> None:  # testBlockingDequeueUpTo
    test_blocking_dequeue_many(c, make, ordered, up_to=True)


def test_dequeue_many_with_tensor_parameter(make: Make, ordered: bool, up_to: bool = False) -> None:
    # testDequeueManyWithTensorParameter
    rnd = random.Random(100)
    counts = [rnd.randint(1, 10) for _ in range(100)]
    count_q = make(100, np.int32, [[]])
    count_q.enqueue_many((counts,))
    total = sum(counts)
    elems = [rnd.randint(0, 100) for _ in range(total)]
    q = make(total, np.int32, [[]])
    q.enqueue_many((elems,))
    take = q.dequeue_up_to if up_to else q.dequeue_many
    dequeued: list = []
    for _ in counts:
        n = int(count_q.dequeue())  # TensorFlow feeds one queue's dequeue into the other's count
        batch = take(n)
        assert len(batch) == n
        dequeued.extend(batch.tolist())
    same(elems, dequeued, ordered)


def test_big_enqueue_many(c: Any, make: Make, ordered: bool) -> None:  # testBigEnqueueMany
    q = make(5, np.int32, [[]])
    elem = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    enqueuer = started(q.enqueue_many, (elem,))
    wait_until(c, q, enqueues=1)  # it filled the queue and waits for room
    results = [q.dequeue()]
    assert q.size() == 5
    results += [q.dequeue() for _ in range(3)]
    assert q.size() == 5 and waiters(c, q)[0] == 1  # one element still to place
    results.append(q.dequeue())  # this one lets the enqueue finish
    enqueuer.finish()
    for i in range(5):
        assert q.size() == 5 - i
        results.append(q.dequeue())
        assert q.size() == 5 - i - 1
    same(elem, results, ordered)


def test_big_dequeue_many(c: Any, make: Make, ordered: bool) -> None:  # testBigDequeueMany
    q = make(2, np.int32, [[]])
    elem = np.arange(4, dtype=np.int32)
    results: list = []
    dequeuer = started(lambda: results.extend(q.dequeue_many(4)))
    for e in elem:
        wait_until(c, q, dequeues=1)
        assert results == []
        q.enqueue((e,))
    dequeuer.finish()
    same(list(elem), results, ordered)


# ----- close

def test_dequeue_from_closed_queue(make: Make, ordered: bool, min_after_dequeue: int = 0) -> None:
    # testDequeueFromClosedQueue
    q = make(10, F, [[]], **({"min_after_dequeue": min_after_dequeue} if min_after_dequeue else {}))
    q.enqueue_many((ELEMS4,))
    q.close()
    same(ELEMS4, [q.dequeue() for _ in ELEMS4], ordered)
    with pytest.raises(qs.OutOfRangeError, match="is closed and has insufficient"):
        q.dequeue()


def test_blocking_dequeue_from_closed_queue(c: Any, make: Make, ordered: bool) -> None:
    # testBlockingDequeueFromClosedQueue
    q = make(10, F, [[]])
    q.enqueue_many((ELEMS4,))
    results: list = []

    def dequeue() -> None:
        results.extend(q.dequeue() for _ in ELEMS4)
        with pytest.raises(qs.OutOfRangeError, match="is closed and has insufficient"):
            q.dequeue()

    dequeuer = started(dequeue)
    wait_until(c, q, dequeues=1)
    q.close()
    dequeuer.finish()
    same(ELEMS4, results, ordered)


def test_blocking_dequeue_from_closed_empty_queue(c: Any, make: Make, mode: str = "one") -> None:
    # testBlockingDequeueFromClosedEmptyQueue
    q = make(10, F, [[]])
    finished: list = []

    def dequeue() -> None:
        with pytest.raises(qs.OutOfRangeError, match="is closed and has insufficient"):
            if mode == "one":
                q.dequeue()
            elif mode == "many":
                q.dequeue_many(4)
            else:
                q.dequeue_up_to(4)
        finished.append(True)

    dequeuer = started(dequeue)
    wait_until(c, q, dequeues=1)
    assert finished == []
    q.close()
    dequeuer.finish()
    assert finished == [True]


def test_blocking_dequeue_many_from_closed_empty_queue(c: Any, make: Make) -> None:
    # testBlockingDequeueManyFromClosedEmptyQueue
    test_blocking_dequeue_from_closed_empty_queue(c, make, mode="many")


def test_blocking_dequeue_up_to_from_closed_empty_queue(c: Any, make: Make) -> None:
    # testBlockingDequeueUpToFromClosedEmptyQueue
    test_blocking_dequeue_from_closed_empty_queue(c, make, mode="up_to")


def test_blocking_dequeue_many_from_closed_queue(c: Any, make: Make, ordered: bool, n: int = 4) -> None:
    # testBlockingDequeueManyFromClosedQueue
    q = make(10, F, [[]])
    q.enqueue_many((ELEMS4,))
    got: list = []

    def dequeue() -> None:
        got.extend(q.dequeue_many(n).tolist())
        with pytest.raises(qs.OutOfRangeError, match="is closed and has insufficient"):
            q.dequeue_many(n)

    dequeuer = started(dequeue)
    wait_until(c, q, dequeues=1)
    assert len(got) == n
    q.close()
    dequeuer.finish()
    if ordered:
        assert got == ELEMS4[:n]
    assert q.size() == 4 - n  # the failed call left what it could not take


def test_blocking_dequeue_many_but_not_all_from_closed_queue(c: Any, make: Make, ordered: bool) -> None:
    # testBlockingDequeueManyButNotAllFromClosedQueue
    test_blocking_dequeue_many_from_closed_queue(c, make, ordered, n=3)


def test_dequeue_up_to_from_closed_queue_returns_remainder(c: Any, make: Make, ordered: bool) -> None:
    # testDequeueUpToFromClosedQueueReturnsRemainder
    q = make(10, F, [[]])
    q.enqueue_many((ELEMS4,))
    results: list = []

    def dequeue() -> None:
        first = q.dequeue_up_to(3).tolist()
        assert len(first) == 3
        rest = q.dequeue_up_to(3).tolist()
        assert len(rest) == 1
        results.extend(first + rest)

    dequeuer = started(dequeue)
    wait_until(c, q, dequeues=1)
    q.close()
    dequeuer.finish()
    same(ELEMS4, results, ordered)


def test_enqueue_many_larger_than_capacity_with_concurrent_dequeue_many(c: Any, make: Make) -> None:
    # testEnqueueManyLargerThanCapacityWithConcurrentDequeueMany
    q = make(4, F, [[]])
    results: list = []

    def dequeue() -> None:
        results.extend(q.dequeue_many(3).tolist())
        with pytest.raises(qs.OutOfRangeError):
            q.dequeue_many(3)
        results.append(float(q.dequeue()))

    enqueuer = started(q.enqueue_many, (ELEMS4,))
    dequeuer = started(dequeue)
    enqueuer.finish()  # it fits: were the queue closed before it arrived, it would be refused
    wait_for(lambda: len(results) == 3, "first batch taken")
    wait_until(c, q, dequeues=1)  # the second dequeue_many waits, holding the last element
    closer = started(q.close)
    for t in (dequeuer, closer):
        t.finish()
    assert results == ELEMS4  # the failed dequeue gave its element back, to the front


def test_closed_blocking_dequeue_many_restores_partial_batch(c: Any, make: Make) -> None:
    # testClosedBlockingDequeueManyRestoresPartialBatch
    q = make(4, [F, F], [[], []])
    elems_a, elems_b = [1.0, 2.0, 3.0], [10.0, 20.0, 30.0]
    q.enqueue_many((elems_a, elems_b))

    def dequeue() -> None:
        with pytest.raises(qs.OutOfRangeError):
            q.dequeue_many(4)

    dequeuer = started(dequeue)
    wait_until(c, q, dequeues=1)
    q.close()
    dequeuer.finish()
    for a, b in zip(elems_a, elems_b):  # restored in their order
        got_a, got_b = q.dequeue()
        assert (float(got_a), float(got_b)) == (a, b)
    assert q.size() == 0


def test_enqueue_to_closed_queue(make: Make, many: bool = False, **options: Any) -> None:  # testEnqueueToClosedQueue
    q = make(10, F, [[]], **options)
    if many:
        q.enqueue_many((ELEMS4,))
    else:
        q.enqueue((10.0,))
    q.close()
    with pytest.raises(qs.CancelledError, match="is closed"):
        q.enqueue_many((ELEMS4,)) if many else q.enqueue((10.0,))
    assert q.size() == (4 if many else 1)


def test_enqueue_many_to_closed_queue(make: Make, **options: Any) -> None:  # testEnqueueManyToClosedQueue
    test_enqueue_to_closed_queue(make, many=True, **options)


def test_blocking_enqueue_to_full_queue(c: Any, make: Make, ordered: bool, many: bool = False) -> None:
    # testBlockingEnqueueToFullQueue
    q = make(4, F, [[]])
    q.enqueue_many((ELEMS4,))
    extra = [50.0, 60.0] if many else [50.0]
    enqueuer = started(q.enqueue_many, (extra,)) if many else started(q.enqueue, (50.0,))
    wait_until(c, q, enqueues=1)
    results = [float(q.dequeue()) for _ in range(4 + len(extra))]
    enqueuer.finish()
    same(ELEMS4 + extra, results, ordered)
    # There was no room for the blocked elements when the first ones left.
    assert results[0] not in extra
    if many:
        assert results[1] != 60.0


def test_blocking_enqueue_many_to_full_queue(c: Any, make: Make, ordered: bool) -> None:
    # testBlockingEnqueueManyToFullQueue
    test_blocking_enqueue_to_full_queue(c, make, ordered, many=True)


def test_blocking_enqueue_before_close(c: Any, make: Make, ordered: bool, many: bool = False) -> None:
    # testBlockingEnqueueBeforeClose
    q = make(4, F, [[]])
    elems = [10.0, 20.0, 30.0] if many else ELEMS4
    q.enqueue_many((elems,))
    extra = [50.0, 60.0] if many else [50.0]
    enqueuer = started(q.enqueue_many, (extra,)) if many else started(q.enqueue, (50.0,))
    wait_until(c, q, enqueues=1)
    closer = started(q.close)  # a pending enqueue still completes after close()
    first = float(q.dequeue())
    enqueuer.finish()
    closer.finish()
    rest = [float(q.dequeue()) for _ in range(len(elems) + len(extra) - 1)]
    same(elems + extra, [first] + rest, ordered)
    assert q.size() == 0


def test_blocking_enqueue_many_before_close(c: Any, make: Make, ordered: bool) -> None:
    # testBlockingEnqueueManyBeforeClose
    test_blocking_enqueue_before_close(c, make, ordered, many=True)


def test_reset_of_blocking_operation(c: Any, local_server: Any, make: Make, up_to: bool = False) -> None:
    # testResetOfBlockingOperation
    # sess.close() cancels every blocked call of the session; here closing the client does, and
    # each blocked call fails with CancelledError (TensorFlow: "was cancelled"), taking nothing.
    q_empty = make(5, F, [[]], name="empty")
    q_full = make(5, F, [[]], name="full")
    q_full.enqueue_many(([1.0, 2.0, 3.0, 4.0, 5.0],))
    with qs.connect(local_server.target) as sess:
        empty = sess.queue(q_empty.name, container=q_empty.container)
        full = sess.queue(q_full.name, container=q_full.container)
        calls = [empty.dequeue, lambda: empty.dequeue_many(1), lambda: full.enqueue((6.0,)),
                 lambda: full.enqueue_many(([6.0],))]
        if up_to:
            calls.append(lambda: empty.dequeue_up_to(1))

        def blocked(call: Callable[[], Any]) -> None:
            with pytest.raises(qs.CancelledError, match="closed"):
                call()

        threads = [started(blocked, call) for call in calls]
        wait_until(c, q_empty, dequeues=len(calls) - 2)
        wait_until(c, q_full, enqueues=2)
        sess.close()
        for t in threads:
            t.finish()
    wait_until(c, q_empty, dequeues=0)
    wait_until(c, q_full, enqueues=0)
    assert q_empty.size() == 0 and q_full.size() == 5  # a cancelled call changed nothing


# ----- graph-only

@pytest.mark.skip(reason="QueueBase.from_list picks a queue's DT_RESOURCE handle inside a graph at run time; "
                         "here a queue handle is a Python object, chosen with Python")
def test_select_queue() -> None:  # testSelectQueue
    pass


@pytest.mark.skip(reason="QueueBase.from_list (graph-time selection of a queue handle): see test_select_queue")
def test_select_queue_out_of_range() -> None:  # testSelectQueueOutOfRange
    pass


# ----- timeouts, names, containers

def dequeue_with_timeout(target: str, make_on: Callable[[Any], Any]) -> None:
    # ConfigProto(operation_timeout_in_ms=20) is connect(..., operation_timeout_in_ms=20); set after
    # connecting here, so that a loaded machine cannot time out the connection's hello instead.
    with qs.connect(target) as sess:
        q = make_on(sess)
        assert q.container == ""
        sess.operation_timeout = 0.02
        with pytest.raises(qs.DeadlineExceededError, match="Timed out waiting"):
            q.dequeue()


def test_reusable_after_timeout(make: Make) -> None:  # testReusableAfterTimeout
    q = make(10, F, [[]])
    for _ in range(2):
        with pytest.raises(qs.DeadlineExceededError, match="Timed out waiting"):
            q.dequeue(timeout=0.01)
    q.enqueue(37)
    assert float(q.dequeue()) == 37.0
