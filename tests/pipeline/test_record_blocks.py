"""Record blocks (pipeline.blocks): a file dataset's batch decoded by its map straight from the
reader's bytes gives exactly what the unfused chain gives: values, dtypes, errors, cardinality,
element specs and iterator states (restored either way)."""

from __future__ import annotations

import functools
import gzip
import json
import zlib

import numpy as np
import pytest

import pipeline
import pipeline.data.files
import pipeline.raw
from pipeline import blocks
from pipeline.blocks import FixedBlock, block_call
from pipeline.csv import decode_csv
from pipeline.data import FixedLengthRecordDataset, TextLineDataset
from pipeline.data.batching import _BatchIterator
from pipeline.raw import decode_raw
from pipeline.textline import TextLineReader
from queueserver.errors import DataLossError, InvalidArgumentError

DEFAULTS = [[0.0], [0.0], [0]]


def _same(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
        assert a.flags.writeable == b.flags.writeable
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    else:
        assert a == b


def _batches_until(batches, errors):
    """Every batch ``batches`` yields before it raises one of ``errors``, and that error (the test
    fails if it raises none)."""
    got = []
    with pytest.raises(errors) as e:
        for b in batches:
            got.append(b)
    return got, e.value


def _unfused(make, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(blocks, "ENABLED", False)
        return list(make())


def _is_fused(ds) -> bool:
    it = ds.iterator()
    try:
        return type(it._parent) is _BatchIterator and it._parent._blocks
    finally:
        it.close()


def _check_everywhere(make, monkeypatch, fused=True):
    """Fused output == unfused output, and every state of either restores into the other."""
    want = _unfused(make, monkeypatch)
    assert _is_fused(make()) is fused
    got = list(make())
    _same(got, want)
    for k in range(len(want) + 1):
        it = make().iterator()
        for _ in range(k):
            next(it)
        state = json.loads(json.dumps(it.get_state()))
        it.close()
        _same(list(make().iterator(state=state)), want[k:])
        with monkeypatch.context() as m:
            m.setattr(blocks, "ENABLED", False)
            _same(list(make().iterator(state=state)), want[k:])
            it = make().iterator()
            for _ in range(k):
                next(it)
            plain = json.loads(json.dumps(it.get_state()))
        _same(list(make().iterator(state=plain)), want[k:])


# -- which functions get a block --------------------------------------------------------------
SPEC = np.uint8


def _closure():
    dt = np.int16
    return lambda r: decode_raw(r, dt)


def _post(r):
    out = decode_raw(r, np.uint8)
    return out[:, :1], out[:, 1:]


@pytest.mark.parametrize("fn", [
    lambda r: decode_raw(r, np.uint8),
    lambda r: decode_raw(r, out_type=SPEC, little_endian=False),
    lambda r: decode_raw(records=r, out_type=np.uint8),
    lambda r: pipeline.raw.decode_raw(r, np.uint8),
    lambda r: pipeline.decode_raw(r, np.uint8).reshape(-1, 1),
    lambda s: decode_csv(s, [[0.0], [0]], field_delim=","),
    _closure(),
    _post,
    functools.partial(decode_raw, out_type=np.uint8),
])
def test_functions_that_pass_their_argument_to_a_decoder(fn):
    plan = block_call(fn)
    assert plan is not None and plan.takes_block()


def _twice(r):
    a = decode_raw(r, np.uint8)
    return a, r


def _looped(r):
    out = []
    for _ in range(2):
        out.append(decode_raw(r, np.uint8))
    return out


@pytest.mark.parametrize("fn", [
    _twice,
    _looped,
    lambda r: decode_raw(np.asarray(r), np.uint8),
    lambda r: np.uint8(decode_raw(r[:1], np.uint8)),
    lambda r: decode_raw(b"x", r),  # the argument is not the records
    lambda r: decode_raw(r, np.uint8) if len(r) else None,
    lambda *a: decode_raw(a[0], np.uint8),
    functools.partial(decode_raw, np.zeros(1)),
    len,
])
def test_other_functions_do_not(fn):
    plan = block_call(fn)
    assert plan is None or not plan.takes_block()


def test_a_name_that_no_longer_means_a_decoder_gets_the_plain_batch(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(bytes(range(60)))
    seen = []
    ns = {"decode_raw": decode_raw}
    fn = eval("lambda r: decode_raw(r, 'u1')", ns)
    ds = FixedLengthRecordDataset(str(p), 6).batch(4).map(fn)
    it = ds.iterator()
    assert type(next(it)) is np.ndarray
    ns["decode_raw"] = lambda r, t: seen.append(type(r)) or r
    rest = list(it)
    assert seen == [np.ndarray, np.ndarray] and rest[0].dtype == object
    assert rest[0].tolist() == [bytes(range(24, 30)), bytes(range(30, 36)), bytes(range(36, 42)), bytes(range(42, 48))]


# -- fixed-length records ----------------------------------------------------------------------
def _fixed_files(tmp_path, comp="", header=0, footer=0, sizes=(37, 0, 5)):
    rng = np.random.default_rng(1)
    paths = []
    for k, n in enumerate(sizes):
        body = rng.integers(0, 256, (n, 6), np.uint8)
        body[:, -1] = 0  # trailing NUL bytes are part of each record
        data = bytes(range(1, header + 1)) + body.tobytes() + b"\xee" * footer
        data = {"": data, "GZIP": gzip.compress(data), "ZLIB": zlib.compress(data)}[comp]
        p = tmp_path / f"f{k}.bin"
        p.write_bytes(data)
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("comp", ["", "GZIP", "ZLIB"])
@pytest.mark.parametrize("batch,drop", [(1, False), (4, True), (7, False), (100, False), (100, True)])
def test_fixed_length_fused_equals_unfused(tmp_path, monkeypatch, comp, batch, drop):
    paths = _fixed_files(tmp_path, comp, header=3, footer=2)

    def make():
        ds = FixedLengthRecordDataset(paths, 6, header_bytes=3, footer_bytes=2, compression_type=comp)
        return ds.batch(batch, drop_remainder=drop).map(lambda r: decode_raw(r, np.uint8))

    _check_everywhere(make, monkeypatch)
    ds = make()
    assert ds.cardinality() == ds.cardinality()  # unchanged by fusion (computed from the inputs)


@pytest.mark.parametrize("skip,take", [(0, -1), (1, -1), (5, 30), (40, -1), (3, 0)])
def test_fixed_length_behind_skip_and_take(tmp_path, monkeypatch, skip, take):
    paths = _fixed_files(tmp_path)

    def make():
        ds = FixedLengthRecordDataset(paths, 6).skip(skip).take(take)
        return ds.batch(8).map(lambda r: decode_raw(r, np.int16, little_endian=False))

    _check_everywhere(make, monkeypatch)


def test_fixed_length_hop_bytes(tmp_path, monkeypatch):
    paths = _fixed_files(tmp_path, sizes=(20,))

    def make():
        return FixedLengthRecordDataset(paths, 6, hop_bytes=4).batch(3).map(lambda r: decode_raw(r, np.uint8))

    _check_everywhere(make, monkeypatch)


def test_fixed_length_errors_are_the_same(tmp_path, monkeypatch):
    p = tmp_path / "odd.bin.gz"
    p.write_bytes(gzip.compress(bytes(64)))  # 10 records of 6 bytes, then 4 bytes of a partial one

    def make():
        return FixedLengthRecordDataset(str(p), 6, compression_type="GZIP").batch(4).map(
            lambda r: decode_raw(r, np.int32))

    def run():
        out = []
        it = make().iterator()
        while True:
            try:
                out.append(next(it))
            except StopIteration:
                return out, None
            except Exception as e:  # noqa: BLE001
                return out, (type(e), str(e))

    want = None
    with monkeypatch.context() as m:
        m.setattr(blocks, "ENABLED", False)
        want = run()
    got = run()
    assert want[1] is not None and got[1] == want[1]
    _same(got[0], want[0])


def test_fixed_block_decodes_like_bytes():
    rows = np.random.default_rng(0).integers(0, 256, (5, 8), np.uint8)
    for dt in (np.uint8, np.int16, np.float32, np.int64, np.complex64):
        for le in (True, False):
            _same(decode_raw(FixedBlock(rows), dt, le), decode_raw(FixedBlock(rows).materialize(), dt, le))
    _same(decode_raw(FixedBlock(rows[:0]), np.uint8), decode_raw(FixedBlock(rows[:0]).materialize(), np.uint8))
    _same(decode_raw(FixedBlock(rows), np.int16, fixed_length=4),
          decode_raw(FixedBlock(rows).materialize(), np.int16, fixed_length=4))
    with pytest.raises(InvalidArgumentError, match="length 7 that is not a multiple of 2"):
        decode_raw(FixedBlock(rows[:, :7]), np.int16)


# -- text lines and CSV ------------------------------------------------------------------------
def _csv_files(tmp_path, comp="", rows=(2000, 0, 700), extra=b""):
    paths = []
    for k, n in enumerate(rows):
        data = b"a,b,c\n" + b"".join(b"%d.5,%s,%d\n" % (i, b"" if i % 11 == 0 else b"%d" % -i, i % 7) for i in range(n))
        data += extra if k == 0 else b""
        data = {"": data, "GZIP": gzip.compress(data), "ZLIB": zlib.compress(data)}[comp]
        p = tmp_path / f"c{k}.csv"
        p.write_bytes(data)
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("comp", ["", "GZIP"])
@pytest.mark.parametrize("batch,drop", [(1, False), (300, False), (1024, True), (5000, False)])
def test_csv_lines_fused_equal_unfused(tmp_path, monkeypatch, comp, batch, drop):
    paths = _csv_files(tmp_path, comp)
    monkeypatch.setattr("pipeline.data.files._TEXT_BLOCK_LINES", 900)  # segments end inside batches
    monkeypatch.setattr("pipeline.data.files._TEXT_BLOCK_BYTES", 7000 if batch == 300 else 1 << 22)

    def make():
        ds = TextLineDataset(paths, compression_type=comp, skip_header_lines=1).skip(1).batch(batch, drop_remainder=drop)
        return ds.map(lambda s: decode_csv(s, DEFAULTS))

    want = _unfused(make, monkeypatch)
    assert _is_fused(make())
    _same(list(make()), want)
    if batch in (300, 5000):
        _check_everywhere(make, monkeypatch)


def test_csv_segments_pyarrow_declines_go_batch_by_batch(tmp_path, monkeypatch):
    # A "\r\n" line and a quoted field: pyarrow declines the segment; every batch decodes alone.
    paths = _csv_files(tmp_path, extra=b'1.5,"2",3\r\n4,5,6\n')

    def make():
        return TextLineDataset(paths, skip_header_lines=1).batch(256).map(lambda s: decode_csv(s, DEFAULTS))

    _check_everywhere(make, monkeypatch)


def test_csv_bad_record_error_is_the_same(tmp_path, monkeypatch):
    paths = _csv_files(tmp_path, extra=b"1,x,2\n")

    def run():
        ds = TextLineDataset(paths[0]).skip(1).batch(400).map(lambda s: decode_csv(s, DEFAULTS))
        got, error = _batches_until(ds, InvalidArgumentError)
        return got, str(error)

    with monkeypatch.context() as m:
        m.setattr(blocks, "ENABLED", False)
        want = run()
    got = run()
    assert "Field 1 in record" in got[1] and got[1] == want[1]
    _same(got[0], want[0])


def _csv_rows(n):
    return b"".join(b"%d.25,%s,%d\n" % (i, b"" if i % 13 == 0 else b"%d" % i, i % 5) for i in range(n))


@pytest.mark.parametrize("comp", ["", "GZIP"])
@pytest.mark.parametrize("batch,drop", [(256, False), (700, True)])
def test_csv_segments_read_ahead_equal_unfused(tmp_path, monkeypatch, comp, batch, drop):
    """Once a segment has been parsed whole, the next one is read ahead and parsed on a worker
    thread: the same batches, errors and states as the unfused chain (restored either way)."""
    paths = []
    for k, n in enumerate((15000, 0, 3000)):
        data = b"a,b,c\n" + _csv_rows(n)
        p = tmp_path / f"r{k}.csv"
        p.write_bytes(gzip.compress(data) if comp else data)
        paths.append(str(p))
    monkeypatch.setattr("pipeline.data.files._TEXT_BLOCK_BYTES", 20000)  # about 900-line segments
    # Compressed reads: 4 KiB of the file at a time (a segment ends where a read's lines end).
    monkeypatch.setattr("pipeline.data.files.TextLineReader", functools.partial(TextLineReader, buffer_size=4096))
    started = []
    real = pipeline.data.files.decode_ahead
    monkeypatch.setattr("pipeline.data.files.decode_ahead", lambda a, b: started.append(1) or real(a, b))

    def make():
        ds = TextLineDataset(paths, compression_type=comp, skip_header_lines=1).skip(3)
        return ds.batch(batch, drop_remainder=drop).map(lambda s: decode_csv(s, DEFAULTS))

    want = _unfused(make, monkeypatch)
    _same(list(make()), want)
    assert len(started) >= 3
    if comp == "" and batch == 700:
        _check_everywhere(make, monkeypatch)


@pytest.mark.parametrize("bad", ["number", "gzip"])
def test_csv_segments_read_ahead_errors_come_at_their_position(tmp_path, monkeypatch, bad):
    """A bad record in a segment parsed ahead, or broken compressed data met by a read made ahead,
    raises where the unfused chain raises it, after the same batches."""
    data = b"a,b,c\n" + _csv_rows(20000)
    if bad == "number":
        cut = data.index(b"\n15000.25,")
        data = data[:cut] + b"\n1,x,2" + data[cut:]
        p = tmp_path / "bad.csv"
        p.write_bytes(data)
        comp = ""
    else:
        packed = bytearray(gzip.compress(data, 1))
        packed[len(packed) * 3 // 4 : len(packed) * 3 // 4 + 64] = b"\xff" * 64
        p = tmp_path / "bad.csv.gz"
        p.write_bytes(bytes(packed))
        comp = "GZIP"
    monkeypatch.setattr("pipeline.data.files._TEXT_BLOCK_BYTES", 20000)
    monkeypatch.setattr("pipeline.data.files.TextLineReader", functools.partial(TextLineReader, buffer_size=4096))

    def run():
        ds = TextLineDataset(str(p), compression_type=comp).skip(1).batch(500).map(lambda s: decode_csv(s, DEFAULTS))
        got, error = _batches_until(ds, (InvalidArgumentError, DataLossError))
        return got, type(error), str(error)

    with monkeypatch.context() as m:
        m.setattr(blocks, "ENABLED", False)
        want = run()
    got = run()
    assert got[1:] == want[1:]
    _same(got[0], want[0])
    assert sum(len(b[0]) for b in got[0]) >= 5000


def test_text_reader_returns_the_lines_before_corrupt_data_first(tmp_path):
    """A large read used to lose every line it had gathered when the next block was corrupt."""
    text = b"".join(b"line %d\n" % i for i in range(100000))
    packed = bytearray(gzip.compress(text, 1))
    packed[len(packed) * 3 // 4 : len(packed) * 3 // 4 + 64] = b"\xff" * 64
    p = tmp_path / "bad.gz"
    p.write_bytes(bytes(packed))
    _one_large_read_gives_what_small_reads_give(
        lambda: TextLineReader(p, compression_type="GZIP", buffer_size=4096), 100, 1000, "bad.gz")


def _one_large_read_gives_what_small_reads_give(open_reader, small: int, at_least: int, name: str) -> None:
    """Small reads up to the broken data, then one read of everything: the same records first,
    the DataLossError (naming the file) from the next read."""
    reader = open_reader()
    want = []
    with pytest.raises(DataLossError):
        while chunk := reader.read_chunk(small):
            want += chunk
    big = open_reader()
    got = big.read_chunk(10**9)
    assert got == want and len(got) > at_least
    with pytest.raises(DataLossError, match=name):
        big.read_chunk(10)


def test_text_reader_max_bytes_bounds_a_read(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"".join(b"%07d\n" % i for i in range(100000)))
    r = TextLineReader(p, buffer_size=4096)
    first = r.read_chunk(10**9, max_bytes=20000)
    assert 2500 <= len(first) <= 4000 and first[0] == b"0000000"
    rest = r.read_chunk(10**9)
    assert first + rest == [b"%07d" % i for i in range(100000)]


def test_a_segment_is_parsed_from_the_first_line_asked_for():
    """A segment's header line (dropped by skip) made pyarrow decline the whole segment, which then
    went batch by batch; earlier lines asked for later are parsed again from there."""
    from pipeline.blocks import LinesBlock

    lines = [b"h,e,ad"] + [b"%d.5,%d,%d" % (i, -i, i) for i in range(600)]
    block = LinesBlock.of(lines)
    for i, j in ((1, 301), (301, 601), (0, 1), (1, 301)):
        if i == 0:
            with pytest.raises(InvalidArgumentError):
                decode_csv(block.slice(i, j), DEFAULTS)
            continue
        _same(decode_csv(block.slice(i, j), DEFAULTS), decode_csv(np.array(lines[i:j], object), DEFAULTS))
    assert block.seg.decoded  # the parse was kept for the segment


_TEXTS = [
    b"",
    b"\n",
    b"a",
    b"a\r",
    b"\r",
    b"a\nb",
    b"a\r\nb\r\n\r\n\nc\r",
    b"".join(b"%d,%d\n" % (i, i * 7) for i in range(3000)),
    b"".join(b"%d,%d\r\n" % (i, i * 7) for i in range(3000)) + b"tail",
    b"x" * 20000 + b"\n" + b"y" * 9000 + b"\nz\n\n",  # lines longer than a read
    b"h1\nh2\n" + b"".join(b"%d\n" % i for i in range(5000)) + b"\r\n",
]


@pytest.mark.parametrize("text", _TEXTS, ids=range(len(_TEXTS)))
@pytest.mark.parametrize("header", [0, 1, 2])
def test_read_segment_gives_the_lines_and_states_of_read_chunk(tmp_path, text, header):
    """read_segment (raw text of whole lines) returns exactly read_chunk's lines, mixed with
    read_chunk calls and across states saved anywhere."""
    import random

    p = tmp_path / "t.txt"
    p.write_bytes(text)
    with TextLineReader(p, skip_header_lines=header) as r:
        want = list(r)
    rng = random.Random(len(text) * 3 + header)
    for _trial in range(6):
        got, states = [], []
        r = TextLineReader(p, skip_header_lines=header, buffer_size=4096)
        while True:
            states.append((len(got), json.loads(json.dumps(r.get_state()))))
            if rng.random() < 0.7:
                block = r.read_segment(rng.choice([1, 3, 50, 10**6]), max_bytes=rng.choice([1, 100, 5000, 1 << 20]))
                part = block.lines()
                assert len(block) == len(part)
            else:
                part = r.read_chunk(rng.choice([1, 7, 10**6]))
            if not part:
                break
            got += part
        assert got == want
        assert r.records == len(want)
        for k, state in states:
            with TextLineReader(p, skip_header_lines=header, state=state) as again:
                assert again.read_segment(10**6).lines() + list(again) == want[k:]


def test_csv_defaults_are_remembered_only_for_equal_defaults():
    """decode_csv remembers parsed defaults; defaults that differ only in type or the sign of
    zero still give their own columns."""
    rec = [b"7,", b"8,1"]

    def col(d):
        return decode_csv(rec, [[0], d])[1]

    _same(col([0]), np.array([0, 1], np.int32))
    _same(col([0.0]), np.array([0, 1], np.float32))
    assert np.signbit(col([-0.0])[0]) and not np.signbit(col([0.0])[0])
    _same(col(["d"]), np.array([b"d", b"1"], object))
    _same(col(np.array([5], np.int64)), np.array([5, 1], np.int64))
    with pytest.raises(InvalidArgumentError):
        col([True])


# -- TFRecord ----------------------------------------------------------------------------------
def _tfrecord_files(tmp_path, comp="", counts=(300, 0, 45), mixed=True):
    from pipeline.tfrecord import TFRecordWriter, encode_example

    rng = np.random.default_rng(3)
    paths = []
    for k, n in enumerate(counts):
        p = tmp_path / f"r{k}.tfrecord"
        with TFRecordWriter(p, comp) as w:
            for i in range(n):
                feats = {"x": rng.random(5).astype(np.float32), "y": [i]}
                if mixed and i % 97 == 50:
                    feats["y"] = [10**12 + i]  # another length: the run breaks
                w.write(encode_example(feats))
        paths.append(str(p))
    return paths


_SPEC = None


def _spec():
    from pipeline.tfrecord import FixedLenFeature

    return {"x": FixedLenFeature([5], np.float32), "y": FixedLenFeature([1], np.int64)}


@pytest.mark.parametrize("comp", ["", "GZIP", "ZLIB"])
@pytest.mark.parametrize("batch,drop", [(1, False), (64, False), (100, True), (1000, False)])
def test_tfrecord_fused_equals_unfused(tmp_path, monkeypatch, comp, batch, drop):
    from pipeline.data import TFRecordDataset
    from pipeline.tfrecord import parse_example

    paths = _tfrecord_files(tmp_path, comp)
    spec = _spec()
    monkeypatch.setattr("pipeline.data.files._TFRECORD_BLOCK_BYTES", 3000)  # reads end inside batches

    def make():
        return TFRecordDataset(paths, comp).batch(batch, drop_remainder=drop).map(lambda s: parse_example(s, spec))

    want = _unfused(make, monkeypatch)
    assert _is_fused(make())
    _same(list(make()), want)
    if batch == 64:
        _check_everywhere(make, monkeypatch)


@pytest.mark.parametrize("skip,take", [(1, -1), (70, 200), (299, -1), (5, 0)])
def test_tfrecord_behind_skip_and_take(tmp_path, monkeypatch, skip, take):
    from pipeline.data import TFRecordDataset
    from pipeline.tfrecord import parse_example

    paths = _tfrecord_files(tmp_path, mixed=False)
    spec = _spec()

    def make():
        ds = TFRecordDataset(paths).skip(skip).take(take).batch(32)
        return ds.map(functools.partial(parse_example, features=spec))

    _check_everywhere(make, monkeypatch)


@pytest.mark.parametrize("comp", ["", "GZIP"])
def test_tfrecord_errors_are_the_same(tmp_path, monkeypatch, comp):
    from pipeline.data import TFRecordDataset
    from pipeline.tfrecord import parse_example

    raw = open(_tfrecord_files(tmp_path, mixed=False)[0], "rb").read()
    stride = len(raw) // 300
    cases = {
        "crc": raw[: 200 * stride + 30] + bytes([raw[200 * stride + 30] ^ 1]) + raw[200 * stride + 31 :],
        "truncated": raw[: 250 * stride + 20],
        "stream": gzip.compress(raw)[:-300],
    }
    spec = _spec()
    for name, data in cases.items():
        if name == "stream" and not comp:
            continue
        p = tmp_path / f"{name}.rec"
        p.write_bytes(data if name == "stream" or not comp else gzip.compress(data))

        def run(p=p):
            ds = TFRecordDataset(str(p), comp).batch(64).map(lambda s: parse_example(s, spec))
            got, error = _batches_until(ds, DataLossError)
            return got, str(error)

        with monkeypatch.context() as m:
            m.setattr(blocks, "ENABLED", False)
            want = run()
        got = run()
        assert got[1] == want[1], name
        _same(got[0], want[0])
        assert sum(len(b["y"]) for b in got[0]) >= 192, name  # the batches before the bad record


def test_tfrecord_reader_returns_the_records_before_broken_compressed_data_first(tmp_path):
    """A large read_chunk lost every record it had gathered when the compressed stream broke."""
    from pipeline.tfrecord import TFRecordReader

    raw = open(_tfrecord_files(tmp_path, mixed=False)[0], "rb").read()
    p = tmp_path / "cut.gz"
    p.write_bytes(gzip.compress(raw)[:-300])
    _one_large_read_gives_what_small_reads_give(
        lambda: TFRecordReader(p, compression_type="GZIP", buffer_size=4096), 10, 250, "cut.gz")


@pytest.mark.parametrize("comp", ["", "GZIP"])
def test_tfrecord_read_block_gives_read_chunks_records_and_states(tmp_path, comp):
    import random

    from pipeline.tfrecord import TFRecordReader

    p = _tfrecord_files(tmp_path, comp)[0]
    with TFRecordReader(p, compression_type=comp) as r:
        want = list(r)
    rng = random.Random(7)
    for _trial in range(5):
        got, states = [], []
        r = TFRecordReader(p, compression_type=comp, buffer_size=4096)
        while True:
            states.append((len(got), json.loads(json.dumps(r.get_state()))))
            if rng.random() < 0.7:
                block = r.read_block(rng.choice([1, 5, 10**6]), max_bytes=rng.choice([10, 500, 5000, 1 << 20]))
                part = block.materialize().tolist()
                assert len(block) == len(part)
            else:
                part = r.read_chunk(rng.choice([1, 9, 10**6]))
            if not part:
                break
            got += part
        assert got == want and r.records == len(want)
        for k, state in states[::7]:
            with TFRecordReader(p, compression_type=comp, state=state) as again:
                assert again.read_block(10**6).materialize().tolist() + list(again) == want[k:]


def test_read_segment_counts_the_lines_of_large_segments(tmp_path):
    """Segments from 64 KiB on count their lines with numpy, a MiB at a time."""
    import os

    from pipeline.textline import _count_newlines

    for text in [b"", b"\n", b"a\nb", os.urandom(3 << 20), b"\n" * (1 << 16), b"x" * ((1 << 20) - 1) + b"\n\n"]:
        assert _count_newlines(text) == text.count(b"\n")
    p = tmp_path / "t.txt"
    lines = [b"%d" % i * (i % 50) for i in range(40000)]
    p.write_bytes(b"\n".join(lines) + b"\n")
    r = TextLineReader(p)
    got = []
    while len(seg := r.read_segment(10**9, 1 << 19)):
        got += seg.lines()
    assert got == lines


def test_segments_keep_their_text_when_the_read_buffer_is_read_into_again(tmp_path):
    """Segment reads go through one buffer per thread, shared by every reader on it: a segment
    handed out earlier (kept by a batch, unsplit) keeps its text while other readers, and other
    segment sizes, read through the same buffer; a line longer than a read is still whole."""
    import threading

    paths, want = [], []
    for k in range(2):
        lines = [b"file%d line %d " % (k, i) + b"xyz" * (i % 7) for i in range(3000)]
        lines[1234] = b"L" * 20000  # longer than a 4 KiB read
        p = tmp_path / f"{k}.txt"
        p.write_bytes(b"\n".join(lines) + b"\n")
        paths.append(p)
        want.append(lines)
    readers = [TextLineReader(p) for p in paths]
    kept: list = [[], []]
    ended = [False, False]
    turn = 0
    while not all(ended):
        k, turn = turn % 2, turn + 1
        if not ended[k]:
            seg = readers[k].read_segment(10**9, max_bytes=4096 if turn % 3 else 9000)
            kept[k].append(seg)
            ended[k] = not len(seg)
    # Another thread's reads use its own buffer.
    other = threading.Thread(target=lambda: TextLineReader(paths[0]).read_segment(10**9, 1 << 16))
    other.start()
    other.join()
    for k in range(2):
        assert [line for seg in kept[k] for line in seg.lines()] == want[k]


def test_a_thread_keeps_no_segment_buffer_larger_than_its_bound(tmp_path):
    """A caller's own large block size (read_csv_columns(block_bytes=...)) gets a buffer for its
    reads that the thread does not keep afterwards; the usual sizes are kept and reused."""
    import threading

    from pipeline import textline

    p = tmp_path / "t.txt"
    p.write_bytes(b"a,b\n" * 1000)
    kept: dict = {}

    def reads() -> None:
        r = textline.TextLineReader(p)
        r.read_segment(10, max_bytes=1 << 20)
        kept["usual"] = textline._SEGMENT_BUFFERS.buf
        r.read_segment(10, max_bytes=textline._KEPT_SEGMENT_BUFFER_BYTES * 2)
        kept["after_large"] = textline._SEGMENT_BUFFERS.buf
        assert r.read_segment(10**6).lines() == [b"a,b"] * 980

    t = threading.Thread(target=reads)
    t.start()
    t.join()
    assert len(kept["usual"]) == 1 << 20 and kept["after_large"] is kept["usual"]
