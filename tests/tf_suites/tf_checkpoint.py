"""TensorFlow's ``checkpoint_test_base.CheckpointTestBase`` on this project's iterator state.

TensorFlow's checkpoint tests run each ``verify_fn`` of ``default_test_combinations()``: save the
iterator at break points, rebuild the dataset in a fresh graph, restore, and check the outputs
equal an unbroken run. Here a "checkpoint" is ``it.get_state()`` sent through JSON (what a
process restart would keep) and restored with ``ds_fn().iterator(state=...)`` on a freshly built
dataset. ``reset_restored`` is TensorFlow's graph-mode re-initialisation of a restored iterator:
here, a new ``iterator()`` of the dataset starts over.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np

#: The names of ``checkpoint_test_base.default_test_combinations()``'s verify functions.
VERIFY_FNS = ["verify_unused_iterator", "verify_fully_used_iterator", "verify_exhausted_iterator",
              "verify_multiple_breaks", "verify_reset_restored_iterator"]


def plain(value: Any) -> Any:
    """An element as nested Python values (arrays become lists), for exact comparison."""
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if hasattr(value, "to_list"):  # RaggedTensor
        return ("ragged", value.to_list())
    if hasattr(value, "element_spec"):  # a nested dataset (window)
        return ("dataset", [plain(v) for v in value])
    return value


def _roundtrip(state: dict) -> dict:
    return json.loads(json.dumps(state))


def gen_outputs(ds_fn: Callable[[], Any], break_points: list[int], num_outputs: int,
                state: dict | None = None, verify_exhausted: bool = True,
                save_checkpoint_at_end: bool = True) -> tuple[list, dict]:
    """``CheckpointTestBase.gen_outputs``: produce ``num_outputs`` elements, saving the state at
    each break point and resuming a freshly built dataset from it; returns (outputs, the last
    saved state: the one at the end, or with ``save_checkpoint_at_end=False`` the last break's)."""
    outputs: list = []
    bounds = list(break_points) + [num_outputs]
    start = 0
    for i, end in enumerate(bounds):
        it = ds_fn().iterator(state=state)
        for _ in range(end - start):
            outputs.append(plain(next(it)))
        if i == len(break_points) and verify_exhausted:
            try:
                extra = next(it)
            except StopIteration:
                pass
            else:
                raise AssertionError(f"expected the end after {num_outputs} outputs, got {plain(extra)!r}")
        if save_checkpoint_at_end or i < len(break_points):
            state = _roundtrip(it.get_state())
        it.close()
        start = end
    assert state is not None
    return outputs, state


def verify(verify_fn: str, ds_fn: Callable[[], Any], num_outputs: int, verify_exhausted: bool = True) -> None:
    """Runs one of TensorFlow's checkpoint verifications (see :data:`VERIFY_FNS`)."""
    expected, _ = gen_outputs(ds_fn, [], num_outputs, verify_exhausted=verify_exhausted)
    if verify_fn == "verify_unused_iterator":
        actual, _ = gen_outputs(ds_fn, [0], num_outputs, verify_exhausted=verify_exhausted)
    elif verify_fn == "verify_fully_used_iterator":
        actual, _ = gen_outputs(ds_fn, [num_outputs], num_outputs, verify_exhausted=verify_exhausted)
    elif verify_fn == "verify_exhausted_iterator":
        _, state = gen_outputs(ds_fn, [], num_outputs, verify_exhausted=True)
        rest, _ = gen_outputs(ds_fn, [], 0, state=state, verify_exhausted=True)
        assert rest == []
        return
    elif verify_fn == "verify_multiple_breaks":
        points = [int(p) for p in np.linspace(0, num_outputs, 10, dtype=int)]
        actual, _ = gen_outputs(ds_fn, points, num_outputs, verify_exhausted=verify_exhausted)
    elif verify_fn == "verify_reset_restored_iterator":
        _, state = gen_outputs(ds_fn, [], num_outputs // 2, verify_exhausted=False)
        ds = ds_fn()
        ds.iterator(state=state).close()  # restoring is possible ...
        actual, _ = gen_outputs(lambda: ds, [], num_outputs, verify_exhausted=verify_exhausted)  # ... and a reset starts over
    else:  # pragma: no cover - a typo in a test
        raise ValueError(verify_fn)
    assert actual == expected


def at(ds: Any, index: int) -> Any:
    """``random_access.at(ds, index)`` by iteration (random access does not exist here): element
    ``index``, or ``OutOfRangeError`` for a negative index or one past the end, as TensorFlow's."""
    from queueserver import errors

    if index < 0:
        raise errors.OutOfRangeError(f"Index {index} is negative")
    it = ds.iterator()
    try:
        for _ in range(index):
            it.get_next()
        return it.get_next()
    finally:
        it.close()
