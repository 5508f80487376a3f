"""Which storage for ``--data-dir``: our segment log, SQLite in WAL mode, or LMDB.

Each engine stores the same stream of queue changes and reads it back, as a restart does:

* ``bulk``: W1 batches, enqueue_many of 256 x (784 float32 + int32), about 800 KB each;
* ``small``: one-element enqueues of 64 bytes.

Writes are grouped as the server groups them (the writer thread takes everything pending: here 16
records per commit) and synced once per commit (``--fsync always``'s cost) or once at the end
(``everysec``'s). A queue also deletes what is consumed: our log appends an acknowledgement
record; SQLite and LMDB delete the row (measured: half of the elements are consumed).
Reading back is what a restart pays: every record, checksummed or as stored.

    python benchmarks/durable_storage.py [--mb 400] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import struct
import tempfile
import time

import numpy as np

from _common import machine_line

GROUP = 16


def _wide_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def ours(path: str, payloads: list[np.ndarray], sync_each: bool) -> tuple[float, float]:
    """Our records (CRC32C framed) appended with writev; acks appended as small records."""
    from queueserver.durability.records import MAGIC, encode, frame, scan

    fd = os.open(os.path.join(path, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, MAGIC)
    t0 = time.perf_counter()
    for start in range(0, len(payloads), GROUP):
        buffers: list = []
        for i, arr in enumerate(payloads[start:start + GROUP], start):
            buffers += frame(*encode({"k": "e", "c": "", "n": "q"}, (arr,))).buffers
            if i % 2:
                buffers += frame(*encode({"k": "a", "t": [i - 1]})).buffers
        os.writev(fd, buffers)
        if sync_each:
            os.fdatasync(fd)
    os.fdatasync(fd)
    write_s = time.perf_counter() - t0
    os.close(fd)
    t0 = time.perf_counter()
    with open(os.path.join(path, "log"), "rb") as f:
        buf = bytearray(os.fstat(f.fileno()).st_size)
        f.readinto(buf)
    n = sum(1 for _ in scan(buf, len(MAGIC)))
    assert n == len(payloads) + len(payloads) // 2
    return write_s, time.perf_counter() - t0


def sqlite(path: str, payloads: list[np.ndarray], sync_each: bool) -> tuple[float, float]:
    """SQLite in WAL mode: a row per element batch, deleted when consumed."""
    db = sqlite3.connect(os.path.join(path, "db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if sync_each else 'NORMAL'}")
    db.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, body BLOB)")
    t0 = time.perf_counter()
    for start in range(0, len(payloads), GROUP):
        db.execute("BEGIN")
        for i, arr in enumerate(payloads[start:start + GROUP], start):
            db.execute("INSERT INTO q VALUES (?, ?)", (i, memoryview(arr).cast("B")))
            if i % 2:
                db.execute("DELETE FROM q WHERE id = ?", (i - 1,))
        db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(FULL)")
    write_s = time.perf_counter() - t0
    db.close()
    t0 = time.perf_counter()
    db = sqlite3.connect(os.path.join(path, "db"))
    n = sum(1 for _ in db.execute("SELECT id, body FROM q ORDER BY id"))
    db.close()
    assert n == len(payloads) - len(payloads) // 2
    return write_s, time.perf_counter() - t0


def lmdb_store(path: str, payloads: list[np.ndarray], sync_each: bool) -> tuple[float, float]:
    """LMDB: a key per element batch, deleted when consumed."""
    import lmdb

    env = lmdb.open(os.path.join(path, "lmdb"), map_size=1 << 36, sync=sync_each, metasync=sync_each)
    t0 = time.perf_counter()
    for start in range(0, len(payloads), GROUP):
        with env.begin(write=True) as txn:
            for i, arr in enumerate(payloads[start:start + GROUP], start):
                txn.put(struct.pack(">Q", i), memoryview(arr).cast("B"))
                if i % 2:
                    txn.delete(struct.pack(">Q", i - 1))
    env.sync(True)
    write_s = time.perf_counter() - t0
    env.close()
    t0 = time.perf_counter()
    env = lmdb.open(os.path.join(path, "lmdb"), map_size=1 << 36, readonly=True)
    with env.begin() as txn:
        n = sum(1 for _ in ((k, bytes(v)) for k, v in txn.cursor()))
    env.close()
    assert n == len(payloads) - len(payloads) // 2
    return write_s, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=400, help="megabytes of bulk records")
    parser.add_argument("--small", type=int, default=50_000, help="small records")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    bulk = [rng.random(256 * 785, dtype=np.float32) for _ in range(int(args.mb * 1e6 / (256 * 785 * 4)))]
    small = [rng.random(16, dtype=np.float32) for _ in range(args.small)]
    engines = [("segment log (ours)", ours), ("SQLite WAL", sqlite)]
    try:
        import lmdb  # noqa: F401

        engines.append(("LMDB", lmdb_store))
    except ImportError:
        print("(LMDB not installed: pip install lmdb to compare it too)")
    rows: list[tuple[str, ...]] = [("engine", "workload", "sync", "write MB/s", "records/s", "read back MB/s")]
    for label, payloads in (("bulk 800 KB", bulk), ("small 64 B", small)):
        mb = sum(p.nbytes for p in payloads) / 1e6
        for sync_each in (False, True):
            if sync_each and label.startswith("small"):
                payloads = payloads[: len(payloads) // 10]  # a sync per 16 records: fewer of them
                mb /= 10
            for name, fn in engines:
                writes, reads = [], []
                for _ in range(args.repeat):
                    path = tempfile.mkdtemp(prefix="storage-", dir=args.data_root)
                    try:
                        w, r = fn(path, payloads, sync_each)
                    finally:
                        shutil.rmtree(path, ignore_errors=True)
                    writes.append(w)
                    reads.append(r)
                w, r = statistics.median(writes), statistics.median(reads)
                rows.append((name, label, "per commit" if sync_each else "at end", f"{mb / w:,.0f}",
                             f"{len(payloads) / w:,.0f}", f"{mb / r:,.0f}"))
    print(f"{machine_line()}; {args.mb:.0f} MB of bulk records, {args.small} small; groups of {GROUP} per commit;"
          f" median of {args.repeat}")
    print(_wide_table(rows))


if __name__ == "__main__":
    main()
