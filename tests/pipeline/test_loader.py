"""Reader pipelines (the seed's figure 12-10) and the loader CLI, end to end on real servers."""

from __future__ import annotations

import doctest
import gzip
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

import queueserver as qs
from pipeline import loader
from pipeline.coordination import Coordinator
from pipeline.loader import (
    CsvFormat,
    FixedLengthFormat,
    csv_reader_runner,
    main,
    parse_features,
    parse_record_defaults,
    reader_runner,
)
from pipeline.csv import decode_csv
from pipeline.textline import TextLineReader
from pipeline.tfrecord import TFRecordWriter, encode_example
from support import REPO

NOTEBOOK_CSV = "x1,x2,target\n1.,,0\n4.,5.,1\n7.,8.,0\n"


def instances(features, targets):
    return [(tuple(f), int(t)) for f, t in zip(features.tolist(), targets.tolist())]


# --------------------------------------------------------------------------- the seed's pipeline
def test_queue_runners_and_coordinators_notebook_cells(local_server, tmp_path):
    path = tmp_path / "my_test.csv"
    path.write_text(NOTEBOOK_CSV)
    with qs.connect(local_server.target, operation_timeout=10) as c:
        filename_queue = c.fifo_queue("filename_queue", capacity=10, dtypes=[str], shapes=[()])
        instance_queue = c.random_shuffle_queue(
            "shared_instance_q", capacity=10, min_after_dequeue=2,
            dtypes=[np.float32, np.int32], shapes=[[2], []])
        filename_queue.enqueue(str(path))
        filename_queue.close()
        queue_runner = csv_reader_runner(filename_queue, instance_queue, [[-1.], [-1.], [-1]], num_readers=5)
        assert len(queue_runner.enqueue_ops) == 5
        coord = Coordinator()
        enqueue_threads = queue_runner.create_threads(coord, start=True)
        got = []
        with pytest.raises(qs.OutOfRangeError):
            while True:
                minibatch_instances, minibatch_targets = instance_queue.dequeue_up_to(2)
                assert minibatch_instances.dtype == np.float32 and minibatch_targets.dtype == np.int32
                got += instances(minibatch_instances, minibatch_targets)
        coord.join_threads(enqueue_threads, stop_grace_period_secs=5)
        assert Counter(got) == Counter([((1.0, -1.0), 0), ((4.0, 5.0), 1), ((7.0, 8.0), 0)])
        assert queue_runner.stats.records == 3 and queue_runner.stats.files_done == 1


async def test_many_files_many_readers_small_chunks_async(local_server, tmp_path):
    rows = []
    for f in range(4):
        lines = ["a,b,c,label"]
        for i in range(25):
            n = f * 100 + i
            rows.append(((float(n), float(-n), 0.5), n % 10))
            lines.append(f"{n}.,{-n},0.5,{n % 10}")
        (tmp_path / f"part-{f}.csv").write_text("\n".join(lines) + "\n")
    async with qs.connect_async(local_server.target, operation_timeout=10) as c:
        files = await c.fifo_queue("files", capacity=2, dtypes=[str], shapes=[[]])
        q = await c.fifo_queue("rows", capacity=16, dtypes=[np.float32, np.int64], shapes=[[3], []])
        runner = reader_runner(files, q, CsvFormat([[0.]] * 3 + [[0]], skip_header_lines=1),
                               num_readers=3, chunk_size=7)
        coord = Coordinator()
        tasks = runner.create_tasks(coord)
        for f in range(4):
            await files.enqueue(str(tmp_path / f"part-{f}.csv"))
        await files.close()
        got = []
        with pytest.raises(qs.OutOfRangeError):
            while True:
                x, y = await q.dequeue_up_to(10)
                got += instances(x, y)
        await coord.join(tasks, stop_grace_period_secs=5)
        assert Counter(got) == Counter(rows)


def test_reader_errors_name_the_file_and_line_and_stop_the_pipeline(local_server, tmp_path):
    (tmp_path / "bad.csv").write_text("h\n1,2\n3,x\n")
    with qs.connect(local_server.target, operation_timeout=10) as c:
        files = c.fifo_queue("bad_files", capacity=2, dtypes=[str], shapes=[[]])
        q = c.fifo_queue("bad_rows", capacity=4, dtypes=[np.int32, np.int32], shapes=[[], []])
        files.enqueue(str(tmp_path / "bad.csv"))
        files.close()
        coord = Coordinator()
        threads = csv_reader_runner(files, q, [[0], [0]], num_readers=2).create_threads(coord)
        with pytest.raises(qs.InvalidArgumentError, match=r"bad\.csv, line 3"):
            coord.join_threads(threads, stop_grace_period_secs=5)
        assert q.is_closed()


def test_queue_spec_that_cannot_hold_the_records_is_refused_before_reading(local_server):
    with qs.connect(local_server.target) as c:
        files = c.fifo_queue("f", capacity=2, dtypes=[str], shapes=[[]])
        q = c.fifo_queue("two", capacity=4, dtypes=[np.float32, np.int32], shapes=[[2], []])
        with pytest.raises(qs.InvalidArgumentError, match=r"queue 'two' .* takes 3 CSV column\(s\) but record_defaults has 2"):
            csv_reader_runner(files, q, [[0.], [0]])
        with pytest.raises(qs.InvalidArgumentError, match="cannot put float32 values into a int32"):
            csv_reader_runner(files, q, [[0.], [0.], [0.]])


# --------------------------------------------------------------------------- the CLI
def drain_all(q, n=100):
    parts = []
    with pytest.raises(qs.OutOfRangeError):
        while True:
            parts.append(q.dequeue_up_to(n))
    return parts


def test_cli_loads_csv_into_a_new_queue_and_closes_it(local_server, tmp_path, capsys):
    for f in range(3):
        lines = ["x0,x1,target"] + [f"{f}.{i},{'' if i % 4 == 0 else i},{i % 2}" for i in range(20)]
        (tmp_path / f"d{f}.csv").write_text("\n".join(lines) + "\n")
    rc = main(["load", "--target", local_server.target, "--queue", "csvq", "--format", "csv",
               "--files", str(tmp_path / "*.csv"), "--skip-header-lines", "1",
               "--record-defaults", "float32*2,int32", "--readers", "2", "--batch", "8", "--capacity", "100"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "loaded 60 records from 3 file(s) into queue 'csvq'" in err and "closed" in err
    with qs.connect(local_server.target) as c:
        q = c.queue("csvq")
        assert q.spec.describe() == "(float32[2], int32[])"
        parts = drain_all(q)
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    assert len(x) == 60 and sorted(y.tolist()) == [0] * 30 + [1] * 30
    assert (x[:, 1] == 0).sum() == 15  # empty fields took the default


def test_cli_fills_an_existing_queue_by_its_spec_with_epochs_and_no_close(local_server, tmp_path, capsys):
    (tmp_path / "a.csv").write_text("1,2,3\n4,5,6\n")
    with qs.connect(local_server.target, operation_timeout=10) as c:
        q = c.fifo_queue("existing", capacity=100, dtypes=[np.int64, np.float64], shapes=[[], [2]])
        rc = main(["load", "--target", local_server.target, "--queue", "existing", "--format", "csv",
                   "--files", str(tmp_path / "a.csv"), "--num-epochs", "3", "--shuffle-files", "--seed", "1",
                   "--no-close", "--quiet"])
        assert rc == 0 and capsys.readouterr().err == ""
        assert not q.is_closed()
        a, b = q.dequeue_many(6)
        assert a.tolist() == [1, 4] * 3 and b.tolist() == [[2, 3], [5, 6]] * 3


def test_cli_skips_bad_records_and_reports_them(local_server, tmp_path, capsys):
    (tmp_path / "mixed.csv").write_text("1,2\n3,oops\n5,6\n7\n")
    rc = main(["load", "--target", local_server.target, "--queue", "skipq", "--format", "csv",
               "--files", str(tmp_path / "mixed.csv"), "--record-defaults", "int32,int32",
               "--layout", "columns", "--on-error", "skip"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "skipped 2 bad record(s)" in err and "mixed.csv, line 2" in err and "mixed.csv, line 4" in err
    with qs.connect(local_server.target) as c:
        (a, b), = drain_all(c.queue("skipq"))
    assert a.tolist() == [1, 5] and b.tolist() == [2, 6]


def test_cli_error_exit_status_names_file_and_line_and_leaves_the_queue_open(local_server, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("1,2\n3,oops\n")
    rc = main(["load", "--target", local_server.target, "--queue", "failq", "--format", "csv",
               "--files", str(tmp_path / "bad.csv"), "--record-defaults", "int32,int32", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "InvalidArgumentError" in err and "bad.csv, line 2" in err
    assert "queue 'failq' left open: it was not closed as a clean end of data" in err
    with qs.connect(local_server.target) as c:
        # Closing it would tell consumers the data ended cleanly after a partial load.
        assert not c.queue("failq").is_closed()

    rc = main(["load", "--target", local_server.target, "--queue", "q", "--format", "csv",
               "--files", str(tmp_path / "nothing-*.csv"), "--record-defaults", "int32"])
    assert rc == 1 and "no file matches" in capsys.readouterr().err


def test_cli_reads_csv_in_segments_and_loads_exactly_what_decode_csv_gives_line_by_line(local_server, tmp_path,
                                                                                      capsys):
    # The loader reads a segment of many chunks at once and parses it once; every chunk it
    # enqueues must still hold exactly the rows decode_csv gives for the file's lines, in order:
    # "\r\n" endings, quoted fields, empty fields taking their default, a segment pyarrow takes
    # and one it declines (the quoted rows), and text as well as CSV.
    rows = []
    for i in range(5000):
        if i % 997 == 5:
            rows.append(f'"{i}.25",,{i % 7}')
        else:
            rows.append(f"{i}.5,{-i},{i % 7}")
    plain = tmp_path / "plain.csv"
    plain.write_bytes(("a,b,c\n" + "\n".join(rows[:2500]) + "\n").encode())
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(("a,b,c\r\n" + "\r\n".join(rows[2500:]) + "\r\n").encode())
    defaults = [[0.0], [-1.0], [0]]
    want = [decode_csv(TextLineReader(str(p), skip_header_lines=1).read_chunk(10_000), defaults)
            for p in (plain, crlf)]
    target = local_server.target
    for path, (x1, x2, y) in zip((plain, crlf), want):
        name = f"seg_{path.stem}"
        assert main(["load", "--target", target, "--queue", name, "--format", "csv", "--files", str(path),
                     "--record-defaults", "float32,float32=-1,int32", "--skip-header-lines", "1", "--batch", "300",
                     "--readers", "1", "--capacity", "10000", "--quiet"]) == 0
        with qs.connect(target) as c:
            (features, targets), = drain_all(c.queue(name), 10_000)
        np.testing.assert_array_equal(features, np.stack([x1, x2], axis=1))
        np.testing.assert_array_equal(targets, y)
        assert main(["load", "--target", target, "--queue", name + "_text", "--format", "text", "--files",
                     str(path), "--batch", "300", "--readers", "1", "--capacity", "10000", "--quiet"]) == 0
        with qs.connect(target) as c:
            lines, = drain_all(c.queue(name + "_text"), 10_000)
        assert lines.tolist() == TextLineReader(str(path)).read_chunk(10_000)
    capsys.readouterr()


def test_cli_fixed_length_records_with_header_and_gzip_text(local_server, tmp_path, capsys):
    records = np.arange(5 * 6, dtype=np.uint8).reshape(5, 6)
    (tmp_path / "r.bin").write_bytes(b"HDR" + records.tobytes() + b"FT")
    with gzip.open(tmp_path / "t.txt.gz", "wb") as f:
        f.write(b"alpha\nbeta\r\ngamma")
    target = local_server.target
    assert main(["load", "--target", target, "--queue", "fixedq", "--format", "fixed", "--files",
                 str(tmp_path / "r.bin"), "--record-bytes", "6", "--header-bytes", "3", "--footer-bytes", "2"]) == 0
    assert main(["load", "--target", target, "--queue", "textq", "--format", "text", "--files",
                 str(tmp_path / "*.gz"), "--compression", "gzip"]) == 0
    capsys.readouterr()
    with qs.connect(target) as c:
        (got,) = drain_all(c.queue("fixedq"))
        np.testing.assert_array_equal(got, records)
        (lines,) = drain_all(c.queue("textq"))
        assert lines.tolist() == [b"alpha", b"beta", b"gamma"]


def test_cli_tfrecord_with_features_in_a_subprocess(local_server, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((30, 4), dtype=np.float32)
    y = rng.integers(0, 10, (30, 1))
    for f in range(2):
        with TFRecordWriter(str(tmp_path / f"part-{f}.tfrecord")) as w:
            for i in range(f * 15, f * 15 + 15):
                w.write(encode_example({"x": x[i], "y": y[i]}))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "load", "--target", local_server.target, "--queue", "tfq",
         "--format", "tfrecord", "--files", str(tmp_path / "*.tfrecord"), "--features", "x:float32:4,y:int64:1",
         "--readers", "2", "--batch", "4"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "loaded 30 records from 2 file(s)" in proc.stderr
    with qs.connect(local_server.target) as c:
        q = c.queue("tfq")
        assert q.spec.describe() == "(float32[4], int64[1])"
        parts = drain_all(q)
    got_x = np.concatenate([p[0] for p in parts])
    got_y = np.concatenate([p[1] for p in parts])
    order = np.argsort([np.flatnonzero((x == row).all(axis=1))[0] for row in got_x])
    np.testing.assert_array_equal(got_x[order], x)
    np.testing.assert_array_equal(got_y[order], y)


def test_cli_help_explains_the_options():
    proc = subprocess.run([sys.executable, "-m", "pipeline", "load", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for option in ("--record-defaults", "--features", "--no-close", "--on-error", "--shuffle-files",
                   "--compression", "--record-bytes", "exit status"):
        assert option in proc.stdout


def test_option_parsers():
    d = parse_record_defaults("-1.,0,float64=2.5*2,int64!,string=x")
    assert [np.asarray(v).dtype.name for v in d] == ["float32", "int32", "float64", "float64", "int64", "object"]
    assert d[2].tolist() == [2.5] and d[4].size == 0  # int64! is required
    with pytest.raises(qs.InvalidArgumentError, match="expected a number"):
        parse_record_defaults("float16")
    f = parse_features("img:float32:28x28,label:int64,name:string:1")
    assert f["img"].shape == (28, 28) and f["label"].shape == () and f["name"].dtype == "string"
    with pytest.raises(qs.InvalidArgumentError, match="dtype must be float32, int64 or string"):
        parse_features("x:float16:3")
    assert FixedLengthFormat(4).default_spec().describe() == "(uint8[4])"


@pytest.mark.parametrize("module", [loader, loader.formats, loader.reading, loader.loading, loader.cli],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    # The package and each of its modules: testmod only finds examples defined in the module it is given.
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
