"""Trainer clients against an embedded server: local, async and sync modes, checkpoints, transfer dtypes."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

import queueserver as qs
from compute.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from compute.models import parse_model
from compute.trainer import (
    ArraySource, Prefetcher, ParameterStore, StalenessPolicy, Stopper, TrainConfig, Trainer,
)
from compute.backend import get_backend, decode_transfer
from concurrent.futures import ThreadPoolExecutor

D, C = 12, 3
# The same tests train on a GPU when run with QUEUESERVER_TEST_DEVICE=gpu:0 (benchmarks/gpu_checks.sh).
TEST_DEVICE = os.environ.get("QUEUESERVER_TEST_DEVICE", "cpu")


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).standard_normal((C, D)) * 2
    y = rng.integers(0, C, n)
    return (centers[y] + rng.standard_normal((n, D))).astype(np.float32), y.astype(np.int64)


async def fill(target: str, name: str, x: np.ndarray, y: np.ndarray, close: bool = True) -> None:
    async with qs.connect_async(target) as c:
        q = await c.fifo_queue(name, max(len(x), 1), [np.float32, np.int64], [[D], []])
        await q.enqueue_many((x, y))
        if close:
            await q.close()


def cfg(target: str | None, **kw) -> TrainConfig:
    base = dict(target=target, model=f"mlp:{D},16,{C}", batch=32, lr=0.2, progress=False, device=TEST_DEVICE)
    base.update(kw)
    return TrainConfig(**base)


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ---------------------------------------------------------------- configuration and pieces
@pytest.mark.parametrize("kw, match", [
    (dict(mode="sync", replicas=3, aggregate=4), "aggregate 4"),
    (dict(mode="async", replicas=2, task=2), "task 2"),
    (dict(transfer_dtype="int8"), "transfer-dtype"),
    (dict(staleness_policy="drop"), "staleness policy"),
    (dict(model="cnn:1,2"), "model spec"),
    (dict(mode="async", target=None), "needs --target"),
])
def test_config_is_validated_with_the_fix_in_the_message(kw, match):
    kw = {"target": "127.0.0.1:1", **kw}
    with pytest.raises(ValueError, match=match):
        cfg(**kw)


def test_staleness_policies():
    assert StalenessPolicy.parse("none").scale(7) == 1.0
    drop = StalenessPolicy.parse("drop:2")
    assert drop.scale(2) == 1.0 and drop.scale(3) is None
    assert StalenessPolicy.parse("scale").scale(3) == 0.25


def test_prefetcher_fetches_the_next_batch_while_the_step_runs():
    calls = []

    class Source:
        async def next(self):
            calls.append(len(calls))
            if len(calls) > 3:
                raise qs.OutOfRangeError("done")
            return np.zeros((2, D), np.float32), np.zeros(2)

    async def main():
        p = Prefetcher(Source(), get_backend("cpu"), ThreadPoolExecutor(1))
        await p.next()
        await asyncio.sleep(0)  # one loop turn, as awaiting the compute thread gives
        assert calls == [0, 1]  # batch 2 is already being fetched while batch 1 is used
        await p.next(), await p.next()
        with pytest.raises(qs.OutOfRangeError):
            await p.next()

    run(main())


@pytest.mark.parametrize("cancel_after_s", [0.0, 0.02, 0.07, 0.12])
def test_a_loop_cancelled_while_racing_for_data_settles_every_batch_it_took(cancel_after_s):
    # Before: cancelling the loop (Ctrl-C) while Stopper.race waited on Prefetcher.next() left that
    # next() running: it took a batch after cancel() had given back what it held (lost on close).
    log = []

    class Delivery:
        def __init__(self, i):
            self.i = i

        async def ack(self):
            log.append(("settled", self.i))

        async def give_back(self):
            log.append(("settled", self.i))

    class Source:
        taken = 0

        async def next(self):
            await asyncio.sleep(0.05)
            Source.taken += 1
            log.append(("taken", Source.taken))
            return np.zeros((1, D), np.float32), np.zeros(1), Delivery(Source.taken)

    class NeverStops:
        async def dequeue(self, timeout=None):
            await asyncio.Event().wait()

    async def main():
        p = Prefetcher(Source(), get_backend("cpu"), ThreadPoolExecutor(1))
        stopper = await Stopper(lambda: asyncio.sleep(0, NeverStops())).start()

        async def loop():
            try:
                while True:
                    await stopper.race(p.next())
                    p.trained()
            finally:
                await p.cancel()

        task = asyncio.ensure_future(loop())
        await asyncio.sleep(cancel_after_s)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.15)  # time for anything left running to take another batch
        await stopper.close()

    run(main())
    taken = {i for kind, i in log if kind == "taken"}
    settled = [i for kind, i in log if kind == "settled"]
    assert sorted(settled) == sorted(taken) and len(set(settled)) == len(settled), log


def test_stopper_is_a_broadcast(local_server):
    async def main():
        async with qs.connect_async(local_server.target) as c:
            open_q = lambda: c.fifo_queue("stop", 1, [np.int64], [[]])  # noqa: E731
            a, b = await Stopper(open_q).start(), await Stopper(open_q).start()
            never = asyncio.get_running_loop().create_future()
            waiting = asyncio.ensure_future(b.race(never))
            await a.request_stop()
            with pytest.raises(Exception) as info:
                await waiting
            assert type(info.value).__name__ == "Stopped"
            assert never.cancelled()
            await a.close(), await b.close()

    run(main())


# ---------------------------------------------------------------- local mode
def test_local_mode_drains_the_queue_and_learns(local_server):
    x, y = make_data(2000)
    run(fill(local_server.target, "q", x, y))
    result = run(Trainer(cfg(local_server.target, queue="q", mode="local")).run())
    assert result.stop_reason == "end_of_data"
    assert result.samples == 2000 and result.local_steps == 63  # 62 full batches and one of 16
    model = parse_model(f"mlp:{D},16,{C}")
    from compute.models import accuracy
    xt, yt = make_data(500, seed=1)
    assert accuracy(model.forward(result.params, xt), yt) > 0.9


def test_array_source_epochs_and_step_budget():
    x, y = make_data(100)
    result = run(Trainer(cfg(None, mode="local", steps=10), source=ArraySource(x, y, 32, epochs=None)).run())
    # Each epoch of 100 ends with a short batch of 4: 32+32+32+4, twice, then 32+32.
    assert result.stop_reason == "steps" and result.global_step == 10 and result.samples == 264


# ---------------------------------------------------------------- async mode
def test_async_replicas_share_one_model_and_measure_staleness(local_server):
    x, y = make_data(3000)
    run(fill(local_server.target, "qa", x, y))

    async def main():
        return await asyncio.gather(*(Trainer(cfg(local_server.target, queue="qa", mode="async", replicas=2,
                                                   task=i, staleness_policy="scale")).run() for i in range(2)))

    chief, other = run(main())
    assert chief.samples + other.samples == 3000  # every example used once, by one replica
    pushes = chief.local_steps + other.local_steps
    # Read the step once both replicas are done: the chief may stop while the other still pushes.
    with qs.connect(local_server.target) as c:
        final_step = int(c.variable("mlp/global_step", np.int64(0)).read())
    assert final_step == pushes  # the global step counts every applied update
    assert sum(chief.staleness.values()) == chief.local_steps
    assert sum(other.staleness.values()) == other.local_steps
    assert all(k >= 0 for k in chief.staleness)
    assert "staleness" in chief.staleness_histogram()
    from compute.models import accuracy
    xt, yt = make_data(500, seed=1)
    assert accuracy(parse_model(f"mlp:{D},16,{C}").forward(chief.params, xt), yt) > 0.9


def test_async_drop_policy_drops_stale_gradients(local_server):
    # Two replicas alternate on one event loop: with drop:0 every gradient that another replica's
    # update overtook is dropped, and the global step counts only the applied ones.
    x, y = make_data(2000)
    run(fill(local_server.target, "qd", x, y))

    async def main():
        return await asyncio.gather(*(Trainer(cfg(local_server.target, queue="qd", mode="async", replicas=2,
                                                   task=i, staleness_policy="drop:0")).run() for i in range(2)))

    results = run(main())
    dropped = sum(r.dropped for r in results)
    stale = sum(n for r in results for k, n in r.staleness.items() if k > 0)
    assert dropped == stale
    assert results[0].global_step == sum(r.local_steps for r in results) - dropped


# ---------------------------------------------------------------- sync mode
def test_sync_replicas_equal_one_process_on_the_whole_batch(local_server):
    """K replicas, each fed a fixed shard of every batch, end with the big-batch parameters."""
    k, shard, steps = 3, 16, 6
    x, y = make_data(k * shard * steps, seed=5)
    xb, yb = x.reshape(steps, k * shard, D), y.reshape(steps, k * shard)
    for i in range(k):
        run(fill(local_server.target, f"shard{i}", xb[:, i * shard:(i + 1) * shard].reshape(-1, D),
                 yb[:, i * shard:(i + 1) * shard].reshape(-1)))

    async def replicas():
        return await asyncio.gather(*(Trainer(cfg(local_server.target, queue=f"shard{i}", mode="sync", replicas=k,
                                                   task=i, batch=shard, steps=steps)).run() for i in range(k)))

    results = run(replicas())
    single = run(Trainer(cfg(None, mode="local", batch=k * shard, steps=steps),
                         source=ArraySource(x, y, k * shard)).run())
    assert results[0].global_step == steps and all(r.dropped == 0 for r in results)
    for name, value in single.params.items():
        np.testing.assert_allclose(results[0].params[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    # ...and the ps holds the same values the chief returned.
    async def read():
        async with qs.connect_async(local_server.target) as c:
            return await (await c.variable("mlp/w0", np.zeros((D, 16), np.float32))).read()
    np.testing.assert_array_equal(run(read()), results[0].params["mlp/w0"])


def test_sync_with_a_spare_replica_drops_the_slowest_gradients(local_server):
    x, y = make_data(4000)
    run(fill(local_server.target, "qs", x, y))

    async def main():
        return await asyncio.gather(*(Trainer(cfg(local_server.target, queue="qs", mode="sync", replicas=3,
                                                   aggregate=2, task=i, steps=15)).run() for i in range(3)))

    results = run(main())
    assert results[0].global_step == 15
    assert all(r.stop_reason in ("steps", "stopped") for r in results)
    pushed = sum(r.local_steps for r in results)
    assert pushed >= 2 * 15  # every step averaged two gradients; the rest were spares


def test_sync_bfloat16_transfer_halves_pulls_and_trains(local_server):
    x, y = make_data(1500)
    run(fill(local_server.target, "qb", x, y))
    result = run(Trainer(cfg(local_server.target, queue="qb", mode="sync", transfer_dtype="bfloat16")).run())
    assert result.stop_reason == "end_of_data" and result.global_step == result.local_steps

    async def read():
        async with qs.connect_async(local_server.target) as c:
            master = await (await c.variable("mlp/w0", np.zeros((D, 16), np.float32))).read()
            wire = await (await c.variable("mlp/w0/bfloat16", np.zeros((D, 16), np.uint16))).read()
            return master, wire

    master, wire = run(read())
    assert wire.dtype == np.uint16 and wire.nbytes == master.nbytes // 2
    np.testing.assert_allclose(decode_transfer(wire, "bfloat16"), master, rtol=2 ** -8)
    from compute.models import accuracy
    xt, yt = make_data(500, seed=1)
    assert accuracy(parse_model(f"mlp:{D},16,{C}").forward(result.params, xt), yt) > 0.9


def test_bfloat16_pushes_carry_half_the_bytes_and_the_accumulators_average_in_float32(local_server):
    from compute.backend import encode_transfer

    shapes = {"w": (300, 100), "b": (100,)}
    rng = np.random.default_rng(0)
    replicas = [{k: rng.standard_normal(s).astype(np.float32) * 1e-3 for k, s in shapes.items()} for _ in range(2)]

    async def push_bytes(c, transfer_dtype: str):
        store = ParameterStore(c, shapes, transfer_dtype, container=f"ps-{transfer_dtype}")
        accs = {k: await c.conditional_accumulator(f"{k}/acc", s, store.accumulator_dtype,
                                                   container=f"ps-{transfer_dtype}") for k, s in shapes.items()}
        before = (await c.status())["bytes_in"]
        for grads in replicas:
            assert await store.push_grads(accs, grads, 0) == [True, True]
        sent = (await c.status())["bytes_in"] - before
        avgs = {k: await a.take_grad(2) for k, a in accs.items()}
        return sent, avgs

    async def main():
        async with qs.connect_async(local_server.target) as c:
            return await push_bytes(c, "float32"), await push_bytes(c, "bfloat16")

    (full, exact), (half, avgs) = run(main())
    assert 0.45 * full < half < 0.55 * full
    for k in shapes:
        # The ps widened the bfloat16 values exactly and averaged them in float32.
        wide = [decode_transfer(encode_transfer(r[k], "bfloat16"), "bfloat16") for r in replicas]
        assert avgs[k].dtype == np.float32
        np.testing.assert_array_equal(avgs[k], (wide[0] + wide[1]) / np.float32(2))
        np.testing.assert_array_equal(exact[k], (replicas[0][k] + replicas[1][k]) / np.float32(2))


def test_async_bfloat16_updates_travel_as_bfloat16(local_server):
    from compute.backend import encode_transfer

    params = parse_model(f"mlp:{D},16,{C}").init_params(0)
    delta = {k: np.full(v.shape, 0.1, np.float32) for k, v in params.items()}

    async def main():
        async with qs.connect_async(local_server.target) as c:
            store = ParameterStore(c, {k: v.shape for k, v in params.items()}, "bfloat16", container="ps")
            await store.create()
            await store.publish(params)
            assert store.push_wire_dtype == np.uint16
            return await store.push_delta(delta)

    new = run(main())
    step = decode_transfer(encode_transfer(np.float32(0.1), "bfloat16"), "bfloat16")  # 0.10009765625
    for k, v in params.items():
        assert new[k].dtype == np.float32
        np.testing.assert_array_equal(new[k], v + step)


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, {"w": np.ones(3, np.float32)}, 5)

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, {"w": np.zeros(3, np.float32)}, 6)
    monkeypatch.undo()
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.global_step == 5 and ckpt.params["w"].tolist() == [1, 1, 1]
    assert os.listdir(tmp_path) == [CHECKPOINT_FILE]  # no temporary file left behind


def test_restarted_trainer_continues_from_checkpoint_or_from_the_ps(local_server, tmp_path):
    x, y = make_data(3000)
    run(fill(local_server.target, "qc", x, y, close=False))
    c1 = cfg(local_server.target, queue="qc", mode="async", steps=4, checkpoint_dir=str(tmp_path),
             optimizer="momentum")
    first = run(Trainer(c1).run())
    assert first.global_step == 4 and load_checkpoint(tmp_path).global_step == 4
    assert "momentum:mlp/w0" in load_checkpoint(tmp_path).slots

    # Same live server: the ps still holds the model, and the stale stop signal is reset.
    second = run(Trainer(dataclass_replace(c1, steps=7)).run())
    assert (second.start_step, second.global_step) == (4, 7)

    # A fresh server: the chief restores the checkpoint (global step included).
    fresh = qs.Server.create_local_server()
    try:
        run(fill(fresh.target, "qc", x, y, close=False))
        third = run(Trainer(dataclass_replace(c1, target=fresh.target, steps=9)).run())
        assert (third.start_step, third.global_step) == (7, 9)
    finally:
        fresh.stop()


def dataclass_replace(config: TrainConfig, **changes) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(config, **changes)


def test_parameter_store_round_trip(local_server):
    model = parse_model(f"mlp:{D},16,{C}")
    params = model.init_params(0)

    async def main():
        async with qs.connect_async(local_server.target) as c:
            store = ParameterStore(c, {k: v.shape for k, v in params.items()}, "float16", container="ps")
            await store.create()
            assert not await store.is_initialized()
            await store.publish(params)
            pulled = await store.pull()
            assert all(v.dtype == np.float32 for v in pulled.values())
            np.testing.assert_allclose(pulled["mlp/w0"], params["mlp/w0"], rtol=1e-3)
            new = await store.push_delta({k: np.ones_like(v) for k, v in params.items()})
            np.testing.assert_allclose(new["mlp/b0"], params["mlp/b0"] + 1)

    run(main())


def test_scope_prefixes_every_variable_of_the_model(local_server):
    # Before: --scope A and --scope B both trained the same mlp/w0 on the ps.
    x, y = make_data(256)
    run(fill(local_server.target, "scoped_a", x, y))
    run(fill(local_server.target, "scoped_b", x, y))
    a = run(Trainer(cfg(local_server.target, queue="scoped_a", mode="async", scope="A", steps=2)).run())
    b = run(Trainer(cfg(local_server.target, queue="scoped_b", mode="async", scope="B", steps=2)).run())
    assert a.global_step == b.global_step == 2

    async def names():
        async with qs.connect_async(local_server.target) as c:
            return {v["name"] for v in (await c.status())["variables"]}
    found = run(names())
    assert {"A/w0", "A/b0", "A/w1", "A/b1", "A/global_step", "B/w0", "B/global_step"} <= found
    assert not any(n.startswith("mlp/") for n in found)
