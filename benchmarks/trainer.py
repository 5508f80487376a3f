"""Trainer benchmarks: parameter traffic against the same-run relay floor, and queue-fed vs in-memory training.

1. Parameter traffic: one pull plus one push of the MLP 784-1024-1024-10's parameters (7.4 MB in
   float32) against a ``queueserver serve`` process, as a sync replica does them (``ParameterStore.pull``
   and ``ParameterStore.push_grads`` of float32 host gradients to float32 accumulators: the encoding
   to the transfer dtype and the server's widening are timed), in float32 and in bfloat16; beside
   the time the same bytes take through the bare asyncio relay process measured in the same run.
2. Trainer throughput: the same local-mode trainer fed from the server's queue by loader processes,
   and fed from arrays already in memory (already on the device with ``--device gpu:0``).

    python benchmarks/trainer.py [--device cpu|gpu:0] [--model mlp:784,1024,1024,10] [--batch 256]
                                 [--samples 60000] [--loaders 2] [--repeat 5]
    # the GPU workload of the trainer issue:
    python benchmarks/trainer.py --device gpu:0 --model mlp:784,4096,4096,4096,10 --batch 4096 --samples 600000
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import threading
import time
from collections import OrderedDict

import numpy as np

from _common import CTX, ServerProc, machine_line, relay_process, run_async, start_floor, table

FEATURES, CLASSES = 784, 10


# ---------------------------------------------------------------- 1. parameter traffic
async def _traffic(target: str, dtype: str, repeat: int) -> tuple[float, int]:
    """Median seconds of one pull + push, and the bytes they carry."""
    import queueserver as qs
    from compute.models import parse_model
    from compute.trainer import ParameterStore

    params = parse_model("mlp:784,1024,1024,10").init_params(0)
    async with qs.connect_async(target) as c:
        store = ParameterStore(c, {k: v.shape for k, v in params.items()}, dtype, container=f"bench-{dtype}")
        await store.create()
        await store.publish(params)
        accs = OrderedDict()
        for k, v in params.items():  # as the sync trainer makes them (Trainer._accumulators)
            accs[k] = await c.conditional_accumulator(f"{k}/acc", v.shape, store.accumulator_dtype,
                                                      container=f"bench-{dtype}")
        rng = np.random.default_rng(1)  # gradient-like values: every bit of the rounding is exercised
        grads = {k: (rng.standard_normal(v.shape, np.float32) * 1e-3) for k, v in params.items()}
        times = []
        for _ in range(repeat + 1):  # the first round warms the connection and the server's buffers
            t0 = time.perf_counter()
            pulled = await store.pull()
            applied = await store.push_grads(accs, grads, 0)
            times.append(time.perf_counter() - t0)
        assert all(applied)
        # The bytes on the wire: the pull reads the encoded copies, the push sends the encoded gradients.
        nbytes = 2 * sum(v.size for v in pulled.values()) * store.push_wire_dtype.itemsize
    return statistics.median(times[1:]), nbytes


def _relay_seconds(nbytes: int, repeat: int) -> float:
    """Median seconds for ``nbytes`` through the bare relay process (producer and consumer threads here)."""
    times = []
    for _ in range(repeat + 1):
        proc, port = start_floor(relay_process)  # the relay serves one producer/consumer pair
        try:
            prod = socket.create_connection(("127.0.0.1", port))
            cons = socket.create_connection(("127.0.0.1", port))
            prod.sendall(b"P")
            cons.sendall(b"C")
            payload = memoryview(np.zeros(nbytes, np.uint8))
            done = threading.Event()
            received = [0]

            def consume(cons=cons, received=received, done=done) -> None:
                buf = bytearray(1 << 20)
                while True:
                    n = cons.recv_into(buf)
                    if not n:
                        break
                    received[0] += n
                done.set()

            t = threading.Thread(target=consume)
            t0 = time.perf_counter()
            t.start()
            prod.sendall(payload)
            prod.close()
            done.wait(60)
            times.append(time.perf_counter() - t0)
            t.join()
            cons.close()
            assert received[0] == nbytes, (received[0], nbytes)
        finally:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    return statistics.median(times[1:])


# ---------------------------------------------------------------- 2. trainer throughput
def loader(target: str, queue: str, seed: int, n: int, batch: int, total: int, done) -> None:
    """A loader process: enqueue ``n`` random examples; the last of ``total`` loaders closes the queue."""
    import queueserver as qs

    rng = np.random.default_rng(seed)
    x = rng.random((batch, FEATURES), dtype=np.float32)
    y = rng.integers(0, CLASSES, batch).astype(np.int64)

    async def main() -> None:
        async with qs.connect_async(target, client_name=f"loader {seed}") as c:
            q = await c.fifo_queue(queue, 64 * batch, [np.float32, np.int64], [[FEATURES], []])
            pending: set = set()
            for _ in range(0, n, batch):
                pending.add(asyncio.ensure_future(q.enqueue_many((x, y))))
                if len(pending) >= 2:  # two calls in flight keep the socket busy
                    _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.gather(*pending)
            with done.get_lock():
                done.value += 1
                last = done.value == total
            if last:
                await q.close()

    run_async(main)


def _train(args, source=None, target=None, queue="bench_q"):
    from compute.trainer import TrainConfig, Trainer

    cfg = TrainConfig(target=target, queue=queue, model=args.model, mode="local", device=args.device,
                      batch=args.batch, lr=0.01, progress=False, gpu_memory_fraction=args.gpu_memory_fraction)
    return asyncio.run(Trainer(cfg, source=source).run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="mlp:784,1024,1024,10")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--samples", type=int, default=40_000, help="examples per throughput run")
    parser.add_argument("--loaders", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--gpu-memory-fraction", type=float)
    args = parser.parse_args()
    print(f"# trainer benchmark: {machine_line()}, device {args.device}")

    server = ServerProc()
    try:
        rows = [("parameter traffic (pull + push, MLP 784-1024-1024-10)", "MB", "ms", "MB/s", "x relay time")]
        for dtype in ("float32", "bfloat16"):
            seconds, nbytes = run_async(_traffic, server.target, dtype, args.repeat)
            relay = _relay_seconds(nbytes, args.repeat)
            rows.append((f"  {dtype}", f"{nbytes / 1e6:.1f}", f"{seconds * 1e3:.1f}",
                         f"{nbytes / 1e6 / seconds:,.0f}", f"{seconds / relay:.2f}"))
            rows.append(("  floor: the same bytes through the bare relay", f"{nbytes / 1e6:.1f}",
                         f"{relay * 1e3:.1f}", f"{nbytes / 1e6 / relay:,.0f}", "1.00"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        print("\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows))

        # In memory (on the device): the ceiling the queue-fed trainer is measured against.
        from compute.backend import get_backend
        from compute.trainer import ArraySource

        be = get_backend(args.device, gpu_memory_fraction=args.gpu_memory_fraction)
        rng = np.random.default_rng(0)
        x = be.to_device(rng.random((args.samples, FEATURES), dtype=np.float32))
        y = be.to_device(rng.integers(0, CLASSES, args.samples).astype(np.int64))
        _train(args, ArraySource(x[: args.batch * 3], y[: args.batch * 3], args.batch))  # warm-up
        mem = _train(args, ArraySource(x, y, args.batch))
        del x, y

        import queueserver as qs

        with qs.connect(server.target) as c:  # create it first: the trainer opens it by name
            c.fifo_queue("bench_q", 64 * args.batch, [np.float32, np.int64], [[FEATURES], []])
        done = CTX.Value("i", 0)
        per = args.samples // args.loaders
        procs = [CTX.Process(target=loader, args=(server.target, "bench_q", i, per, args.batch,
                                                         args.loaders, done)) for i in range(args.loaders)]
        for p in procs:
            p.start()
        fed = _train(args, target=server.target, queue="bench_q")
        for p in procs:
            p.join(60)
        print(table([
            (f"trainer {args.model}, batch {args.batch}, {args.device}", "samples/s", "vs in memory"),
            ("  data already in memory" + (" (on the GPU)" if be.is_gpu else ""), f"{mem.samples_per_s:,.0f}", "1.00"),
            (f"  fed from the queue by {args.loaders} loader processes", f"{fed.samples_per_s:,.0f}",
             f"{fed.samples_per_s / mem.samples_per_s:.2f}"),
        ]))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
