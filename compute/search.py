"""Many models at once (the seed's section 3.1): a hyperparameter search, one model per process.

Each trial is an ordinary trainer in its own process, with its own parameters on the shared server
(its own container, so trials never collide and ``reset`` frees one trial's variables), trained on
the same data and scored on the same held-out set. With GPUs, give each trial its own device.

Example:
    >>> trials = grid(lr=[0.05, 0.5], model=["mlp:64,32,10"])            # doctest: +SKIP
    >>> results = run_search(server.target, trials, (x, y), (xt, yt))      # doctest: +SKIP
    >>> best = results[0]                                                  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["grid", "TrialResult", "run_trial", "run_search"]


def grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Every combination of the given values: ``grid(lr=[0.1, 1], batch=[32])`` -> two trials."""
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


@dataclass
class TrialResult:
    """One trial's outcome.

    Attributes:
        index: the trial's position in the list given to :func:`run_search`.
        params: its hyperparameters (TrainConfig fields).
        accuracy: on the held-out set.
        loss: mean cross-entropy on the held-out set.
        seconds: its training time.
        error: why it failed, if it did (the other trials still report).
    """

    index: int
    params: dict[str, Any]
    accuracy: float = float("nan")
    loss: float = float("nan")
    seconds: float = 0.0
    error: str | None = field(default=None)


def run_trial(index: int, target: str, overrides: dict[str, Any], train: tuple, test: tuple,
              base: dict[str, Any]) -> TrialResult:
    """Train and score one trial (runs in a worker process; usable directly too)."""
    from compute.models import accuracy, cross_entropy, parse_model
    from compute.trainer import ArraySource, TrainConfig, Trainer

    settings = {"mode": "async", "progress": False, "steps": 100, **base, **overrides}
    start = time.perf_counter()
    try:
        config = TrainConfig(target=target, container=f"trial-{index}", scope=f"trial{index}", **settings)
        source = ArraySource(train[0], train[1], config.batch, epochs=None)
        result = asyncio.run(Trainer(config, source=source).run())
        logits = parse_model(config.model).forward(result.params, np.asarray(test[0], np.float32))
        return TrialResult(index, overrides, accuracy(logits, test[1]), cross_entropy(logits, test[1]),
                           time.perf_counter() - start)
    except Exception as exc:  # report it: one bad trial must not sink the search
        return TrialResult(index, overrides, seconds=time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")


def run_search(target: str, trials: Sequence[dict[str, Any]], train: tuple, test: tuple, *,
               processes: int = 2, base: dict[str, Any] | None = None) -> list[TrialResult]:
    """Train one model per trial, ``processes`` at a time, each in its own process.

    Args:
        target: the shared server (parameters live there, one container per trial).
        trials: TrainConfig overrides per trial (see :func:`grid`).
        train: ``(x, y)`` training arrays, the same for every trial.
        test: ``(x, y)`` held-out arrays.
        processes: trials running at once.
        base: settings shared by every trial (e.g. ``{"model": "mlp:64,32,10", "steps": 200}``).

    Returns:
        Every trial's result, best accuracy first (failed trials last).
    """
    ctx = mp.get_context("spawn")  # no forked event loops or client threads in the children
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        futures = [pool.submit(run_trial, i, target, dict(t), train, test, dict(base or {}))
                   for i, t in enumerate(trials)]
        results = [f.result() for f in futures]
    return sorted(results, key=lambda r: (r.error is not None, -np.nan_to_num(r.accuracy, nan=-1.0)))
