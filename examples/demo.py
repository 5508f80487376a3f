"""`make demo`: loaders and a trainer sharing queues on an embedded local server.

Three loader clients (each its own connection, as separate processes would have) push shards of a
synthetic classification data set into one shared RandomShuffleQueue with ``enqueue_many``; the
last loader to finish closes the queue. A trainer client dequeues minibatches with
``dequeue_up_to`` until the queue is closed and drained, trains softmax regression on them with
NumPy, and keeps its weights in a shared variable so another client could read them.
"""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np

import queueserver as qs

FEATURES, CLASSES, PER_LOADER, LOADERS, BATCH = 20, 3, 20_000, 3, 256


def make_centers() -> np.ndarray:
    """Class centers close enough together that the classes overlap."""
    return np.random.default_rng(99).standard_normal((CLASSES, FEATURES)) * 0.35


def make_shard(seed: int, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, PER_LOADER).astype(np.int32)
    x = (centers[y] + rng.standard_normal((PER_LOADER, FEATURES))).astype(np.float32)
    return x, y


async def loader(target: str, index: int, centers: np.ndarray, done: list) -> None:
    async with qs.connect_async(target, client_name=f"loader {index}") as c:
        q = await c.random_shuffle_queue("instances", capacity=10_000, min_after_dequeue=1_000,
                                         dtypes=[np.float32, np.int32], shapes=[[FEATURES], []], seed=index)
        x, y = make_shard(index, centers)
        for start in range(0, PER_LOADER, BATCH):
            await q.enqueue_many((x[start:start + BATCH], y[start:start + BATCH]))
        done.append(index)
        if len(done) == LOADERS:
            await q.close()  # the last loader out closes the queue: trainers drain it, then stop


async def trainer(target: str) -> None:
    async with qs.connect_async(target, client_name="trainer") as c:
        q = await c.random_shuffle_queue("instances", capacity=10_000, min_after_dequeue=1_000,
                                         dtypes=[np.float32, np.int32], shapes=[[FEATURES], []])
        weights = await c.variable("softmax/weights", np.zeros((FEATURES + 1, CLASSES), np.float32))
        await weights.initialize()
        w = await weights.read()
        seen, steps, start = 0, 0, time.perf_counter()
        while True:
            try:
                x, y = await q.dequeue_up_to(BATCH)
            except qs.OutOfRangeError:
                break
            xb = np.hstack([x, np.ones((len(x), 1), np.float32)])
            logits = xb @ w
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            loss = -np.log(p[np.arange(len(y)), y] + 1e-9).mean()
            p[np.arange(len(y)), y] -= 1
            w -= 0.1 * (xb.T @ p / len(y)).astype(np.float32)
            seen += len(y)
            steps += 1
            if steps % 50 == 0:
                await weights.assign(w)
                rate = seen / (time.perf_counter() - start)
                print(f"\rstep {steps:4d}  instances {seen:6d}/{LOADERS * PER_LOADER}  loss {loss:.3f}"
                      f"  {rate:,.0f} instances/s", end="", file=sys.stderr, flush=True)
        await weights.assign(w)
        print(file=sys.stderr)
        x_test, y_test = make_shard(1234, make_centers())
        pred = (np.hstack([x_test, np.ones((len(x_test), 1), np.float32)]) @ w).argmax(axis=1)
        print(f"trained on {seen} instances in {steps} steps; held-out accuracy {np.mean(pred == y_test):.3f}")
        status = await c.status()
        for queue in status["queues"]:
            print(f"queue {queue['name']}: {queue['enqueued']} enqueued, {queue['dequeued']} dequeued,"
                  f" closed={queue['closed']}, size now {queue['size']}")


async def main(target: str) -> None:
    centers = make_centers()
    done: list[int] = []
    await asyncio.gather(trainer(target), *(loader(target, i, centers, done) for i in range(LOADERS)))


if __name__ == "__main__":
    server = qs.Server.create_local_server()
    print(f"local server at {server.target}")
    try:
        asyncio.run(main(server.target))
    finally:
        server.stop()
