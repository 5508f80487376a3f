"""Many models at once: a hyperparameter search over processes, and an ensemble that survives members."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import queueserver as qs
from compute.ensemble import Aggregator, serve_member
from compute.models import parse_model
from compute.search import grid, run_search, run_trial
from compute.trainer import ArraySource, TrainConfig, Trainer

D, C = 12, 3


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    x = (np.random.default_rng(99).standard_normal((C, D))[y] * 2 + rng.standard_normal((n, D))).astype(np.float32)
    return x, y


def test_grid():
    assert grid(lr=[0.1, 1.0], batch=[32]) == [{"lr": 0.1, "batch": 32}, {"lr": 1.0, "batch": 32}]
    assert len(grid(a=[1, 2], b=[3, 4, 5])) == 6


@pytest.mark.slow
def test_search_trains_one_model_per_process_and_ranks_them(server_process):
    train, test = make_data(2000), make_data(500, seed=1)
    trials = [{"lr": 1e-4}, {"lr": 0.5}, {"lr": 0.1, "model": "bogus"}]
    results = run_search(server_process.target, trials, train, test, processes=2,
                         base={"model": f"mlp:{D},16,{C}", "steps": 60, "batch": 32})
    assert [r.index for r in results] == [1, 0, 2]  # best first, the failed trial last
    assert results[0].accuracy > 0.9 > results[1].accuracy
    assert results[2].error is not None and "model spec" in results[2].error
    # Each trial kept its parameters on the shared server, in its own container.
    with qs.connect(server_process.target) as c:
        assert int(c.variable("trial1/global_step", np.int64(0), container="trial-1").read()) == 60


def test_run_trial_reports_errors_instead_of_raising(local_server):
    r = run_trial(0, local_server.target, {"mode": "sync", "replicas": 1, "aggregate": 5}, make_data(10),
                  make_data(10), {})
    assert r.error and "aggregate" in r.error


def test_ensemble_answers_when_a_member_is_dead_or_slow(local_server):
    model = parse_model(f"mlp:{D},16,{C}")
    train = make_data(1000)
    members = []
    for seed in range(3):
        cfg = TrainConfig(model=model.spec, mode="local", steps=40, batch=50, seed=seed, progress=False)
        members.append(asyncio.run(Trainer(cfg, source=ArraySource(*train, 50, epochs=None)).run()).params)
    xt, yt = make_data(200, seed=2)

    async def main():
        async with qs.connect_async(local_server.target) as c:
            agg = await Aggregator.open(c, ["m0", "m1", "m2", "dead"], D, C, timeout=1.0, capacity=300)
            tasks = [asyncio.ensure_future(serve_member(local_server.target, "m0", model, members[0], capacity=300)),
                     asyncio.ensure_future(serve_member(local_server.target, "m1", model, members[1], capacity=300)),
                     asyncio.ensure_future(serve_member(local_server.target, "m2", model, members[2], delay=2.0, capacity=300))]
            probs, answered = await agg.predict(xt)
            assert answered == ["m0", "m1"]  # m2 too slow, "dead" never started
            assert probs.shape == (200, C) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
            assert np.mean(probs.argmax(axis=1) == yt) > 0.9
            # The dead member's queue is full now (capacity 300): the aggregator still answers.
            probs2, answered2 = await agg.predict(xt[:150])
            assert "dead" not in answered2 and "m0" in answered2 and probs2.shape == (150, C)
            await agg.close()
            served = await asyncio.gather(*tasks)
            assert served[0] == 350 and served[2] == 350  # the slow member answered late, and was ignored
            with pytest.raises(qs.DeadlineExceededError):
                await Aggregator(c, ["dead"], [agg.queues[3]], timeout=0.2).predict(xt[:5])

    asyncio.run(asyncio.wait_for(main(), 30))
