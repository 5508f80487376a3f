"""Sparse updates (W9 sparse-embedding): one step's parameter traffic for a large embedding table,
pulling and pushing only the rows a batch touches, against pulling and pushing the whole table.

The table is 1,000,000 x 64 float32 (256 MB) in a ``queueserver serve`` process. Each step's batch
is Zipf-distributed feature ids (``rng.zipf(1.1)``, folded into the table's rows), as many as make
the batch touch about 1% of the rows (calibrated once, from the same generator):

- sparse: ``gather`` the batch's unique rows, then ``scatter_sub`` their gradients (indices and
  rows travel, nothing else);
- dense, as the asynchronous trainer pushes today: ``read`` the whole table, then ``assign_add``
  the whole update (the reply of ``assign_add`` carries the new table back: counted apart).

Prints the bytes and the median time of one step of each, and their ratios (targets: 20x fewer
bytes, 10x less time). Then whole training steps of :mod:`compute.sparse`'s model on the same
table size (bags of 20 Zipf ids, 512 per batch, the MLP 64-64-2), trained sparse and dense
(``train_async``): table bytes moved and seconds per step, the model's compute included.

    python benchmarks/sparse_updates.py [--rows 1000000] [--dim 64] [--touch 0.01] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from _common import ServerProc, machine_line, run_async, table


def _calibrate(rng: np.random.Generator, rows: int, touch: float) -> int:
    """How many Zipf ids make a batch touch ``touch`` of the rows (on average over a few draws)."""
    lo, hi = 1, 50 * int(rows * touch)
    while lo < hi:
        mid = (lo + hi) // 2
        unique = np.mean([np.unique(_ids(rng, mid, rows)).size for _ in range(3)])
        lo, hi = (mid + 1, hi) if unique < touch * rows else (lo, mid)
    return lo


def _ids(rng: np.random.Generator, n: int, rows: int) -> np.ndarray:
    return (rng.zipf(1.1, n) - 1) % rows


async def _run(target: str, rows: int, dim: int, touch: float, repeat: int) -> dict:
    import queueserver as qs

    rng = np.random.default_rng(0)
    n_ids = _calibrate(rng, rows, touch)
    batches = [np.unique(_ids(rng, n_ids, rows)) for _ in range(repeat + 1)]
    table0 = (rng.standard_normal((rows, dim), np.float32) * 0.01)
    lr = np.float32(0.1)
    async with qs.connect_async(target, operation_timeout=600) as c:
        v = await c.variable("w9/emb", table0)
        await v.initialize()
        sparse_t, sparse_b = [], []
        for u in batches:
            t0 = time.perf_counter()
            got = await v.gather(u)
            grads = got * np.float32(0.5)  # a gradient-sized array of the rows (the model is not timed)
            await v.scatter_sub(u, lr * grads)
            sparse_t.append(time.perf_counter() - t0)
            sparse_b.append(2 * u.nbytes + got.nbytes + grads.nbytes)
        dense_t, reply_b = [], 0
        for u in batches[: max(2, repeat // 2) + 1]:
            t0 = time.perf_counter()
            full = await v.read()
            delta = np.zeros_like(full)
            delta[u] = -lr * full[u] * np.float32(0.5)
            new = await v.assign_add(delta)
            dense_t.append(time.perf_counter() - t0)
            reply_b = new.nbytes
            del full, delta, new
        return {"n_ids": n_ids, "touched": float(np.mean([u.size for u in batches])) / rows,
                "sparse_s": statistics.median(sparse_t[1:]), "sparse_bytes": float(np.mean(sparse_b)),
                "dense_s": statistics.median(dense_t[1:]), "dense_bytes": 2 * table0.nbytes, "reply_bytes": reply_b}


def _model_steps(target: str, rows: int, dim: int, steps: int) -> dict:
    """Seconds and table bytes per training step of the sparse model, sparse and dense."""
    import queueserver as qs
    from compute.sparse import SparseModel, SparseParams, synthetic_data, train_async

    model = SparseModel(buckets=rows, dim=dim, hidden=[64], classes=2, name="w9model")
    batch = 512
    ids, labels = synthetic_data(batch * (steps + 1), features=20, id_space=1 << 40, classes=2, seed=0)
    out: dict = {}
    with qs.connect(target, operation_timeout=600) as c:
        for sparse in (True, False):
            n = steps + 1 if sparse else max(2, steps // 3) + 1
            with c.container(f"w9-{'sparse' if sparse else 'dense'}"):
                params = SparseParams(c, model, dtype=np.float32, seed=0)
            train_async(c, model, ids[:batch], labels[:batch], batch_size=batch, lr=0.1, sparse=sparse,
                        params=params)  # the first step warms the connection and the server's buffers
            r = train_async(c, model, ids[batch:batch * n], labels[batch:batch * n], batch_size=batch, lr=0.1,
                            sparse=sparse, params=params)
            key = "sparse" if sparse else "dense"
            out[key] = (r.seconds / len(r.losses), (r.bytes_pulled + r.bytes_pushed) / len(r.losses))
        out["touched"] = np.mean([model.lookup(ids[i:i + batch]).rows.size
                                  for i in range(0, batch * steps, batch)]) / rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--touch", type=float, default=0.01, help="fraction of rows a batch touches")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    server = ServerProc()
    try:
        r = run_async(_run, server.target, args.rows, args.dim, args.touch, args.repeat)
        m = _model_steps(server.target, args.rows, args.dim, args.repeat * 2)
    finally:
        server.stop()
    mb = 1e6
    print(f"W9 sparse-embedding: {args.rows:,} x {args.dim} float32, {r['n_ids']:,} Zipf ids per batch"
          f" touching {100 * r['touched']:.2f}% of the rows; {machine_line()}")
    print(table([
        ("step", "bytes (pull + push)", "time (median)"),
        ("sparse: gather + scatter_sub", f"{r['sparse_bytes'] / mb:.2f} MB", f"{1e3 * r['sparse_s']:.1f} ms"),
        ("dense: read + assign_add", f"{r['dense_bytes'] / mb:.1f} MB (+ {r['reply_bytes'] / mb:.1f} MB reply)",
         f"{1e3 * r['dense_s']:.1f} ms"),
        ("dense / sparse", f"{r['dense_bytes'] / r['sparse_bytes']:.1f}x fewer bytes (target 20x)",
         f"{r['dense_s'] / r['sparse_s']:.1f}x less time (target 10x)"),
    ]))
    (st, sb), (dt, db) = m["sparse"], m["dense"]
    print(f"\ncompute.sparse training steps (batch 512 bags of 20 Zipf ids, touching {100 * m['touched']:.2f}%"
          " of the rows; the model's compute included):")
    print(table([
        ("train_async", "table bytes per step", "seconds per step"),
        ("sparse", f"{sb / mb:.2f} MB", f"{1e3 * st:.1f} ms"),
        ("dense", f"{db / mb:.1f} MB", f"{1e3 * dt:.1f} ms"),
        ("dense / sparse", f"{db / sb:.1f}x", f"{dt / st:.1f}x"),
    ]))


if __name__ == "__main__":
    main()
