"""File datasets: golden.json's Dataset cases of groups "csv", "tfrecord" and "fixedlen", and
resuming mid-file (the raw readers are tested beside their own modules)."""

from __future__ import annotations

import gzip
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import CsvDataset, Dataset, FixedLengthRecordDataset, TextLineDataset, TFRecordDataset
from queueserver import errors

import test_dataset_golden as golden  # same folder: pytest puts it on sys.path


def needs(module: str):
    """Skips when a reader module another engineer is writing is not in the tree yet."""
    try:
        importlib.import_module(f"pipeline.{module}")
    except ImportError as e:
        pytest.skip(f"pipeline.{module} is missing or broken ({e}); the file datasets wrap it")


FILE_CASES = [
    c
    for c in golden.GOLDEN["cases"]
    if c["group"] in ("csv", "tfrecord", "fixedlen") and "Dataset" in c["code"]
]
MODULES = {"csv": ["textline", "csv"], "tfrecord": ["tfrecord"], "fixedlen": ["fixed_length"]}


def _unescape(s: str) -> bytes:
    return s.encode("latin-1").decode("unicode_escape").encode("latin-1")


def setup_files(case: dict, tmp: Path) -> dict:
    """Writes the case's input files; returns the names its code uses (PATH, FP, P, ...)."""
    inputs = case.get("inputs", {})
    group, name = case["group"], case["name"]
    ns: dict = {}
    if group == "csv":
        if "FA" in inputs:
            (tmp / "a.txt").write_bytes(_unescape(inputs["FA"]))
            (tmp / "b.txt").write_bytes(_unescape(inputs["FB"]))
            ns.update(FA=str(tmp / "a.txt"), FB=str(tmp / "b.txt"))
        elif "uncompressed" in inputs:
            (tmp / "z.txt.gz").write_bytes(gzip.compress(_unescape(inputs["uncompressed"])))
            ns["FZ"] = str(tmp / "z.txt.gz")
        else:
            data = bytes.fromhex(inputs["file_content_hex"]) if "file_content_hex" in inputs else inputs["file_content"].encode()
            (tmp / "data.csv").write_bytes(data)
            ns.update(PATH=str(tmp / "data.csv"), FP=str(tmp / "data.csv"))
    elif group == "fixedlen":
        if "uncompressed" in inputs:
            path = tmp / ("fl_trunc.gz" if "truncated" in name else "fl.gz")
            path.write_bytes(gzip.compress(_unescape(inputs["uncompressed"])))
        else:
            path = tmp / f"fl_{name}.bin"
            path.write_bytes(bytes.fromhex(inputs["file_hex"]))
        ns["P"] = str(path)
    else:
        path = tmp / "three.tfrecord"
        if "file_hex" in inputs:
            path.write_bytes(bytes.fromhex(inputs["file_hex"]))
        else:
            from pipeline.tfrecord import TFRecordWriter

            records = [e["value"].encode() for e in case["result"]["elements"]] or [b"hello", b"", b"x" * 1000]
            zlib_written = "ZLIB" in name
            with TFRecordWriter(str(path), compression_type="ZLIB" if zlib_written else "") as w:
                for r in records:
                    w.write(r)
        ns["P"] = str(path)
    return ns


@pytest.mark.parametrize("case", FILE_CASES, ids=[f"{c['group']}-{c['name']}" for c in FILE_CASES])
def test_golden_file_dataset_case(case: dict, tmp_path: Path) -> None:
    for m in MODULES[case["group"]]:
        needs(m)
    ns = setup_files(case, tmp_path)
    case = json.loads(json.dumps(case).replace("<TMP>", str(tmp_path)))
    golden.run_case(case, ns)


def _lines_files(tmp: Path, n_files: int = 3) -> list[str]:
    paths = []
    for f in range(n_files):
        p = tmp / f"lines{f}.txt"
        p.write_bytes(b"".join(b"f%d-line%d\n" % (f, i) for i in range(5 + 3 * f)))
        paths.append(str(p))
    return paths


def _resume_everywhere(make) -> None:
    full = [golden_canon(e) for e in make()]
    assert full
    for k in range(len(full) + 1):
        it = make().iterator()
        for _ in range(k):
            next(it)
        state = json.loads(json.dumps(it.get_state()))
        it.close()
        assert [golden_canon(e) for e in make().iterator(state=state)] == full[k:], f"cut at {k}"


def golden_canon(e) -> str:
    from pipeline.data import structure

    return json.dumps(structure.encode(e), sort_keys=True)


def test_textline_resumes_mid_file_and_across_files(tmp_path: Path) -> None:
    needs("textline")
    paths = _lines_files(tmp_path)
    _resume_everywhere(lambda: TextLineDataset(paths))
    _resume_everywhere(lambda: TextLineDataset(paths, num_parallel_reads=2).shuffle(4, seed=1).batch(3))
    lines = [x.decode() for x in TextLineDataset(paths)]
    assert lines[:2] == ["f0-line0", "f0-line1"] and len(lines) == 5 + 8 + 11


def test_textline_dataset_of_names_and_skip_header(tmp_path: Path) -> None:
    needs("textline")
    paths = _lines_files(tmp_path, 2)
    ds = TextLineDataset(Dataset.from_tensor_slices(paths), skip_header_lines=1)
    assert [x.decode() for x in ds][:2] == ["f0-line1", "f0-line2"]
    assert len(list(ds)) == 4 + 7


def test_textline_batch_moves_chunks(tmp_path: Path) -> None:
    needs("textline")
    paths = _lines_files(tmp_path, 1)
    batches = list(TextLineDataset(paths).batch(2))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert batches[0].dtype == object and batches[0][1] == b"f0-line1"


def test_fixed_length_resumes_mid_file(tmp_path: Path) -> None:
    needs("fixed_length")
    p = tmp_path / "recs.bin"
    p.write_bytes(b"HH" + bytes(range(3 * 20)) + b"F")
    _resume_everywhere(lambda: FixedLengthRecordDataset([str(p), str(p)], record_bytes=3, header_bytes=2, footer_bytes=1))
    recs = list(FixedLengthRecordDataset(str(p), 3, 2, 1))
    assert recs[1] == bytes([3, 4, 5]) and len(recs) == 20


def test_tfrecord_resumes_mid_file(tmp_path: Path) -> None:
    needs("tfrecord")
    from pipeline.tfrecord import TFRecordWriter

    paths = []
    for f, comp in enumerate(["", "GZIP"]):
        path = tmp_path / f"r{f}.tfrecord"
        with TFRecordWriter(str(path), compression_type=comp) as w:
            for i in range(9):
                w.write(b"rec-%d-%d" % (f, i))
        paths.append(str(path))
    _resume_everywhere(lambda: TFRecordDataset(paths[0]).concatenate(TFRecordDataset(paths[1], compression_type="GZIP")))
    assert list(TFRecordDataset(paths[1], "GZIP"))[-1] == b"rec-1-8"


def test_missing_file_raises_not_found_then_continues(tmp_path: Path) -> None:
    needs("textline")
    good = _lines_files(tmp_path, 1)[0]
    ds = TextLineDataset([str(tmp_path / "nope.txt"), good])
    with pytest.raises(errors.NotFoundError):
        next(iter(ds))
    assert len(list(ds.ignore_errors())) == 5


def test_csv_dataset_chunks_and_resume(tmp_path: Path) -> None:
    needs("textline")
    needs("csv")
    p = tmp_path / "d.csv"
    p.write_bytes(b"a,b,c\n" + b"".join(b"%d.5,%d,x%d\n" % (i, i, i) for i in range(30)))
    make = lambda: CsvDataset(str(p), [[0.0], [0], [b""]], header=True)  # noqa: E731
    rows = list(make())
    assert rows[3] == (np.float32(3.5), np.int32(3), b"x3")
    assert repr(make().element_spec).startswith("(TensorSpec(shape=(), dtype=tf.float32")
    _resume_everywhere(lambda: make().shuffle(5, seed=0))
    b = next(iter(make().batch(8)))
    assert b[0].shape == (8,) and b[1].dtype == np.int32
    sel = list(CsvDataset(str(p), [[0], [b""]], header=True, select_cols=[1, 2]))
    assert sel[2] == (np.int32(2), b"x2")


def test_list_files(tmp_path: Path) -> None:
    for name in ["b.txt", "a.txt", "c.csv"]:
        (tmp_path / name).write_text("x\n")
    names = [Path(n.decode()).name for n in Dataset.list_files(str(tmp_path / "*.txt"), shuffle=False)]
    assert names == ["a.txt", "b.txt"]
    shuffled = [n for n in Dataset.list_files(str(tmp_path / "*"), seed=3)]
    assert sorted(shuffled) == sorted(n for n in Dataset.list_files(str(tmp_path / "*"), shuffle=False))
    with pytest.raises(errors.InvalidArgumentError, match="No files matched"):
        list(Dataset.list_files(str(tmp_path / "*.nope")))


def test_map_of_the_real_decode_csv_gives_a_tuple_of_typed_columns(tmp_path):
    # decode_csv returns a list, as TensorFlow's does; tf.data treats a returned list as a tuple.
    from pipeline.csv import decode_csv

    path = tmp_path / "my_test.csv"
    path.write_text("x1,x2,target\n1.,,0\n4.,5.,1\n7.,8.,0\n")
    ds = TextLineDataset(str(path)).skip(1).batch(2).map(
        lambda lines: decode_csv(lines, record_defaults=[[-1.], [-1.], [-1]]))
    first = next(iter(ds))
    assert isinstance(first, tuple) and [c.dtype.name for c in first] == ["float32", "float32", "int32"]
    assert [c.tolist() for c in first] == [[1.0, 4.0], [-1.0, 5.0], [0, 1]]


@pytest.mark.parametrize("comp", ["", "GZIP"])
def test_textline_dataset_removes_every_carriage_return(tmp_path, comp):
    """TensorFlow 2.21's TextLineDataset drops each "\r" of a line, not only a "\r\n" ending's
    (tf.compat.v1.TextLineReader keeps the others: pipeline.TextLineReader does too)."""
    from pipeline.csv import decode_csv

    raw = b"a\rb\nc\r\r\n\rd\r\nx\ry"
    path = tmp_path / "cr.txt"
    path.write_bytes(gzip.compress(raw) if comp else raw)
    assert [bytes(x) for x in TextLineDataset(str(path), comp)] == [b"ab", b"c", b"d", b"xy"]  # TensorFlow's
    assert [b.tolist() for b in TextLineDataset(str(path), comp).skip(1).batch(2)] == [[b"c", b"d"], [b"xy"]]
    # Many lines, batched into decode_csv (the raw-text segment path): "1\r,2" reads as "1,2".
    rows = [b"%d,%d" % (i, -i) for i in range(3000)]
    rows[5], rows[700], rows[2999] = b"5\r,-5", b"7\r00,-700\r\r", b"\r2999,-2999"
    big = b"h\r1,h2\n" + b"\r\n".join(rows) + b"\r\n"
    path.write_bytes(gzip.compress(big) if comp else big)
    for batch in (1, 3, 1024):
        ds = TextLineDataset(str(path), comp).skip(1).batch(batch).map(lambda s: decode_csv(s, [[0], [0]]))
        cols = [np.concatenate(c) for c in zip(*ds)]
        assert cols[0].tolist() == list(range(3000)) and cols[1].tolist() == [-i for i in range(3000)]
    assert bytes(next(iter(TextLineDataset(str(path), comp)))) == b"h1,h2"
