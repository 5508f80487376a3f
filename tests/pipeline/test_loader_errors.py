"""The loader CLI on bad records, run as a user runs it: a real ``python -m pipeline load`` process.

A loader stopping on a bad record loads every good record before it, names where the bad one is
(file, line and column for CSV; record index and byte offset for binary formats), and leaves the
queue open; a loader skipping bad records reports each one's real position, not a chunk's.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

import queueserver as qs
from pipeline.tfrecord import TFRecordWriter, encode_example
from support import REPO


def load(target: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "load", "--target", target, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_a_bad_csv_row_loads_the_rows_before_it_names_line_and_column_and_leaves_the_queue_open(
        server_process, tmp_path):
    # Before: the 476 good rows of the bad row's chunk were dropped (1,024 of 1,500 loaded) and the
    # error said "Field 1 in record 476", a number relative to the chunk.
    path = tmp_path / "rows.csv"
    path.write_text("".join("1.0,abc,2\n" if i == 1500 else f"{i}.5,{i},1\n" for i in range(3000)))
    p = load(server_process.target, "--queue", "csv_bad", "--format", "csv", "--files", str(path),
             "--record-defaults", "float32*2,int32", "--readers", "1")
    assert p.returncode == 1
    assert f"Field 1 is not a valid float: abc (file {path}, line 1501, column 5)" in p.stderr, p.stderr
    assert "in record" not in p.stderr and "Traceback" not in p.stderr
    with qs.connect(server_process.target) as c:
        q = c.queue("csv_bad")
        assert q.size() == 1500 and not q.is_closed()
        x, _ = q.dequeue_many(1500)
        assert x[-1].tolist() == [1499.5, 1499.0]


def test_skipped_csv_rows_are_reported_by_their_own_line_and_column(server_process, tmp_path):
    path = tmp_path / "rows.csv"
    rows = [f"{i},{i}" for i in range(250)]
    rows[7], rows[130], rows[249] = "7,x7", '"a,b",1', "1,2,3"  # a bad field, a quoted one, a field too many
    path.write_text("id,value\n" + "\n".join(rows) + "\n")
    p = load(server_process.target, "--queue", "csv_skip", "--format", "csv", "--files", str(path),
             "--record-defaults", "int32,int32", "--layout", "columns", "--skip-header-lines", "1",
             "--batch", "100", "--on-error", "skip")
    assert p.returncode == 0, p.stderr
    assert "skipped 3 bad record(s)" in p.stderr
    assert f"(file {path}, line 9, column 3)" in p.stderr  # "x7": row 7 is line 9 after the header
    assert f"(file {path}, line 132, column 1)" in p.stderr  # the quoted field starts the line
    assert f"(file {path}, line 251, column 5)" in p.stderr  # the extra third field
    assert "in record" not in p.stderr
    with qs.connect(server_process.target) as c:
        assert c.queue("csv_skip").size() == 247


def _write_tfrecords(path, n: int, broken: int | None = None) -> list[int]:
    """``n`` Example records; record ``broken`` (0-based) is not an Example. Returns their offsets."""
    offsets, at = [], 0
    with TFRecordWriter(str(path)) as w:
        for i in range(n):
            data = b"\xff\xff not a proto" if i == broken else encode_example({"x": np.float32([i, i]),
                                                                               "y": np.int64([i])})
            w.write(data)
            offsets.append(at)
            at += len(data) + 16
    return offsets


def test_an_unparsable_tfrecord_loads_the_records_before_it_and_names_its_index_and_offset(
        server_process, tmp_path):
    path = tmp_path / "ex.tfrecord"
    offsets = _write_tfrecords(path, 40, broken=25)
    p = load(server_process.target, "--queue", "tf_bad", "--format", "tfrecord", "--files", str(path),
             "--features", "x:float32:2,y:int64:1", "--batch", "16", "--readers", "1")
    assert p.returncode == 1
    assert f"(file {path}, record 26, byte offset {offsets[25]})" in p.stderr, p.stderr
    assert "records 17..32" not in p.stderr
    with qs.connect(server_process.target) as c:
        q = c.queue("tf_bad")
        assert q.size() == 25 and not q.is_closed()


def test_skipped_corrupt_tfrecords_are_reported_by_record_index_and_byte_offset(server_process, tmp_path):
    # Before: "corrupt data skipped near record 1", the first record of the chunk.
    path = tmp_path / "ex.tfrecord"
    offsets = _write_tfrecords(path, 30)
    data = bytearray(path.read_bytes())
    for k in (4, 21):  # a byte of each record's data: its data CRC no longer matches
        data[offsets[k] + 14] ^= 0xFF
    path.write_bytes(bytes(data))
    p = load(server_process.target, "--queue", "tf_skip", "--format", "tfrecord", "--files", str(path),
             "--features", "x:float32:2,y:int64:1", "--batch", "16", "--on-error", "skip")
    assert p.returncode == 0, p.stderr
    assert "skipped 2 bad record(s)" in p.stderr
    assert f"corrupt record skipped (record 5, byte offset {offsets[4]})" in p.stderr, p.stderr
    assert f"corrupt record skipped (record 22, byte offset {offsets[21]})" in p.stderr, p.stderr
    with qs.connect(server_process.target) as c:
        assert c.queue("tf_skip").size() == 28


def test_a_corrupt_tfrecord_stops_the_load_after_the_records_before_it(server_process, tmp_path):
    path = tmp_path / "ex.tfrecord"
    offsets = _write_tfrecords(path, 30)
    data = bytearray(path.read_bytes())
    data[offsets[20] + 14] ^= 0xFF
    path.write_bytes(bytes(data))
    p = load(server_process.target, "--queue", "tf_crc", "--format", "tfrecord", "--files", str(path),
             "--features", "x:float32:2,y:int64:1", "--batch", "16", "--readers", "1")
    assert p.returncode == 1
    assert re.search(rf"corrupted record at {offsets[20] + 12}\b.*\(record 21 of the file\)", p.stderr), p.stderr
    with qs.connect(server_process.target) as c:
        q = c.queue("tf_crc")
        assert q.size() == 20 and not q.is_closed()


def test_a_skipped_partial_fixed_length_record_is_reported_by_index_and_offset(server_process, tmp_path):
    path = tmp_path / "r.bin"
    path.write_bytes(b"HDR" + bytes(range(6)) * 4 + b"xyz")  # 4 records of 6 bytes, then 3 bytes
    p = load(server_process.target, "--queue", "fixed_skip", "--format", "fixed", "--files", str(path),
             "--record-bytes", "6", "--header-bytes", "3", "--on-error", "skip")
    assert p.returncode == 0, p.stderr
    assert "a partial record skipped (record 5, byte offset 27)" in p.stderr, p.stderr
    with qs.connect(server_process.target) as c:
        assert c.queue("fixed_skip").size() == 4
