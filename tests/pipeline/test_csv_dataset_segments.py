"""CsvDataset's large reads: a chunk of plain lines is parsed by pyarrow as one piece of text, and
reads grow (1,024 records, then 4x more, up to files._CSV_READ_MAX). Rows, dtypes, errors (file and
line), batches and iterator states are exactly those of the exact path (TensorFlow's ReadRecord
port, record by record) and of the former reading (1,024-record chunks, no pyarrow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pipeline.csv
from pipeline.csv.records import CsvRecordReader
from pipeline.data import CsvDataset
from pipeline.data import files as data_files
from queueserver.errors import InvalidArgumentError
from test_record_blocks import _batches_until  # same folder: pytest puts it on sys.path

pytest.importorskip("pyarrow")

DEFAULTS = [[0.0], [-1.0], [0]]
N = 30_000  # enough lines for reads of 1,024, 4,096, 16,384 and 32,768 records


def _rows(rng: np.random.Generator, n: int) -> list[bytes]:
    a = rng.standard_normal((n, 2))
    k = rng.integers(-1000, 1000, n)
    out = []
    for i in range(n):
        x = b"" if i % 97 == 5 else b"%.6f" % a[i, 0]
        y = b"" if i % 89 == 7 else b"%.3e" % a[i, 1]
        out.append(b"%s,%s,%d" % (x, y, k[i]))
    return out


def _files(tmp_path) -> dict[str, str]:
    rng = np.random.default_rng(7)
    base = _rows(rng, N)
    variants = {
        "plain": b"x,y,k\n" + b"\n".join(base) + b"\n",
        "crlf": b"x,y,k\r\n" + b"\r\n".join(base) + b"\r\n",
        "no_final_newline": b"x,y,k\n" + b"\n".join(base),
        # A bad number, a float cut short, an int out of range, a wrong field count: errors at
        # their own lines, the rows around them still come.
        "bad": b"x,y,k\n" + b"\n".join(
            base[:9000] + [b"1,x,2"] + base[9000:20000] + [b"1.0" + b"0" * 30 + b"e,1,2"]
            + base[20000:25000] + [b"1,2,99999999999", b"1,2"] + base[25000:]) + b"\n",
        # An empty line (one empty field: CsvDataset's own rule), a quoted field, a lone "\r", a
        # float of 33 bytes (a number: TensorFlow 2.21 reads any length).
        "odd": b"x,y,k\n" + b"\n".join(
            base[:3000] + [b"1.0" + b"0" * 30 + b",1,2"] + base[3000:12000] + [b""] + base[12000:18000] + [b'"1.5",2,3'] + base[18000:26000]
            + [b"1,2,3\r4,5,6"] + base[26000:]) + b"\n",
        "empty_last_line": b"x,y,k\n" + b"\n".join(base[:3000]) + b"\n\n",
    }
    out = {}
    for name, data in variants.items():
        p = tmp_path / f"{name}.csv"
        p.write_bytes(data)
        out[name] = str(p)
    return out


def _collect(ds, limit: int | None = None) -> list:
    """Every element (its values and dtypes) and every error (its message), in order (the first
    ``limit`` of them, then only how many more there are and the last one)."""
    out: list = []
    it = iter(ds)
    more, last = 0, None
    while True:
        try:
            e = next(it)
        except StopIteration:
            return out if limit is None else out + [more, last]
        except InvalidArgumentError as err:
            got: tuple = ("error", str(err))
        else:
            got = tuple((np.asarray(v).dtype.str, np.asarray(v).tolist()) for v in e)
        if limit is None or len(out) < limit:
            out.append(got)
        else:
            more, last = more + 1, got


def _reference(make, monkeypatch, exact: bool) -> list:
    """What ``make()`` gives through the exact path (every record through ReadRecord's port), or
    through the former reading (1,024-record chunks, lines split, no pyarrow)."""
    with monkeypatch.context() as m:
        m.setattr(data_files, "_CSV_READ_MAX", data_files._READ_SIZE)
        m.setattr(pipeline.csv, "USE_ARROW", False)
        if exact:
            m.setattr(CsvRecordReader, "_plain_text", lambda self, n: None)
        return _collect(make())


CASES = [
    ("plain", {}),
    ("crlf", {}),
    ("no_final_newline", {}),
    ("bad", {}),
    ("odd", {}),
    ("empty_last_line", {}),
    ("plain", {"select_cols": [0, 2], "record_defaults": [[0.0], [0]]}),
    ("plain", {"na_value": "0"}),
    ("plain", {"record_defaults": [[0.0], [], [0]]}),  # required: the empty fields are errors
]


@pytest.mark.parametrize("name,kwargs", CASES)
@pytest.mark.parametrize("batch", [None, 1000])
def test_csv_dataset_equals_the_exact_path(tmp_path, monkeypatch, name, kwargs, batch):
    path = _files(tmp_path)[name]
    kwargs = {"record_defaults": DEFAULTS, **kwargs}

    def make():
        ds = CsvDataset(path, header=True, **kwargs)
        return ds if batch is None else ds.batch(batch)

    got = _collect(make())
    assert got == _reference(make, monkeypatch, exact=False)
    assert got == _reference(make, monkeypatch, exact=True)
    if batch is None and name != "empty_last_line" and kwargs["record_defaults"] != [[0.0], [], [0]]:
        assert sum(1 for g in got if g[0] != "error") >= N - 1


def test_csv_dataset_errors_name_their_lines(tmp_path):
    path = _files(tmp_path)["bad"]
    errs = [g[1] for g in _collect(CsvDataset(path, DEFAULTS, header=True)) if g[0] == "error"]
    assert len(errs) == 4
    assert errs[0].startswith("Field 1 in record is not a valid float: x") and errs[0].endswith("line 9002)")
    assert errs[3].startswith("Expect 3 fields but have 2 in record")


def test_csv_dataset_takes_large_pyarrow_reads(tmp_path, monkeypatch):
    """The plain file is read in growing chunks, each parsed by pyarrow in one call."""
    path = _files(tmp_path)["plain"]
    calls: list[int] = []
    real = pipeline.csv._decode_arrow

    def spy(text, nrec, cols, plan):
        res = real(text, nrec, cols, plan)
        calls.append(-1 if res is None else res[1])
        return res

    monkeypatch.setattr(pipeline.csv, "_decode_arrow", spy)
    rows = list(CsvDataset(path, DEFAULTS, header=True).batch(1024))
    assert sum(len(b[0]) for b in rows) == N
    assert -1 not in calls and sum(calls) == N
    assert len(calls) <= 6 and max(calls) > 30_000 * 0.9 * (4096 * 128) / (N * 25)  # few large reads


@pytest.mark.parametrize("name", ["plain", "bad"])
def test_csv_dataset_resumes_from_states_saved_anywhere(tmp_path, name):
    paths = _files(tmp_path)
    files = [paths[name], paths["crlf"]]

    def make():
        return CsvDataset(files, DEFAULTS, header=True)

    full = _collect(make())
    rng = np.random.default_rng(3)
    cuts = sorted({0, 1023, 1024, 5121, 21503, N + 1, len(full) - 1, *rng.integers(0, len(full), 4).tolist()})
    for k in cuts:
        it = make().iterator()
        seen = 0
        while seen < k:
            try:
                next(it)
            except InvalidArgumentError:
                pass
            seen += 1
        state = json.loads(json.dumps(it.get_state()))
        it.close()
        rest = full[k:]
        want = rest[:2000] + [len(rest[2000:]), rest[-1] if len(rest) > 2000 else None]
        assert _collect(make().iterator(state=state), 2000) == want, f"cut at {k}"


def test_csv_dataset_resumes_states_without_a_read_size(tmp_path):
    """A state saved before reads grew (no read_size) restores as a 1,024-record read."""
    path = _files(tmp_path)["plain"]
    it = CsvDataset(path, DEFAULTS, header=True).iterator()
    for _ in range(700):
        next(it)
    state = it.get_state()
    assert state["read_size"] == 1024
    del state["read_size"]
    rest = _collect(CsvDataset(path, DEFAULTS, header=True).iterator(state=state))
    assert rest == _collect(CsvDataset(path, DEFAULTS, header=True))[700:]


def test_csv_dataset_reads_ahead_on_the_worker(tmp_path, monkeypatch):
    """From reads of 4,096 records on, the next read is made on the worker thread while the chunk
    is served: the same rows as reading in turn (no read ahead, 1,024-record reads)."""
    path = _files(tmp_path)["plain"]
    submitted: list = []
    real = data_files.ahead_executor

    class Spy:
        def submit(self, fn, *args):
            submitted.append(args)
            return real().submit(fn, *args)

    monkeypatch.setattr(data_files, "ahead_executor", lambda: Spy())
    make = lambda: CsvDataset(path, DEFAULTS, header=True).batch(1000)  # noqa: E731
    got = _collect(make())
    assert [a[0] for a in submitted] == [16384, 32768]  # the reads after the 4,096-record one
    with monkeypatch.context() as m:
        m.setattr(data_files, "_CSV_READ_AHEAD", 1 << 30)
        assert got == _collect(make())


def test_csv_dataset_broken_gzip_in_a_read_ahead_raises_at_its_position(tmp_path, monkeypatch):
    import functools
    import gzip

    import pipeline.textline

    rows = _rows(np.random.default_rng(1), 60_000)
    packed = bytearray(gzip.compress(b"x,y,k\n" + b"\n".join(rows) + b"\n", 1))
    packed[len(packed) * 3 // 4 : len(packed) * 3 // 4 + 64] = b"\xff" * 64
    p = tmp_path / "bad.csv.gz"
    p.write_bytes(bytes(packed))
    # 4 KiB of the compressed file per read, so the rows before the broken data come first.
    monkeypatch.setattr(pipeline.textline, "ByteSource", functools.partial(pipeline.textline.ByteSource, buffer_size=4096))

    def run():
        got, error = _batches_until(CsvDataset(str(p), DEFAULTS, compression_type="GZIP", header=True).batch(1000),
                                    Exception)
        return got, type(error), str(error)

    got = run()
    with monkeypatch.context() as m:
        m.setattr(data_files, "_CSV_READ_AHEAD", 1 << 30)
        want = run()
    assert got[1:] == want[1:] and "bad.csv.gz" in got[2]
    assert len(got[0]) == len(want[0]) >= 20
    for a, b in zip(got[0], want[0]):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


_FORK_SCRIPT = r"""
import os, sys, threading, time
import numpy as np
from pipeline.csv.records import CsvRecordReader
from pipeline.data import CsvDataset

real = CsvRecordReader.read_chunk
started = threading.Event()

def slow_read(self, max_records):
    if threading.current_thread().name.startswith("read-ahead") and not started.is_set():
        started.set()
        time.sleep(0.5)  # in flight at the fork
    return real(self, max_records)

CsvRecordReader.read_chunk = slow_read
it = iter(CsvDataset(sys.argv[1], [[0], [0.0]], header=True).batch(100))
seen = []
while not started.is_set():
    seen.append(next(it)[0])
pid = os.fork()
if pid == 0:
    import signal
    signal.alarm(20)  # a child that hangs dies instead of holding the test
rows = np.concatenate(seen + [b[0] for b in it])
ok = rows.tolist() == list(range(int(sys.argv[2])))
if pid == 0:
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print("parent", ok, "child", os.waitstatus_to_exitcode(status) == 0)
"""


def test_a_read_in_flight_at_a_fork_is_made_again_in_the_child(tmp_path):
    """The parent's worker thread is not in a forked child: before, a child forked while a
    CsvDataset read was made ahead waited for ever on it. It now reopens the file at the state
    before that read and makes it itself; parent and child both get every row. (In a process of
    its own: the read-ahead worker is one per process.)"""
    import os
    import subprocess
    import sys

    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i * 0.5}\n" for i in range(200_000)))
    try:
        done = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, str(path), "200000"], capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("a CsvDataset iterator forked with a read in flight never finished in the child")
    assert done.stdout.strip() == "parent True child True", done.stderr
