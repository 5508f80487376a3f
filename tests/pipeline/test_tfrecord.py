"""TFRecord framing, Example encoding and parsing against TensorFlow's golden cases and files."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
from conftest import TF_WRITTEN, check, golden_names

import pipeline.tfrecord.bulk as tfr_bulk
from pipeline import inflate
from pipeline.tfrecord import (
    FixedLenFeature,
    SparseTensor,
    TFRecordReader,
    TFRecordWriter,
    VarLenFeature,
    encode_example,
    masked_crc32c,
    parse_example,
    read_tfrecord_examples,
    tf_record_iterator,
)
from queueserver.errors import DataLossError, InvalidArgumentError, NotFoundError

RECORDS = [b"hello", b"", b"x" * 1000]
S = encode_example({"x": np.array([1.5, 2.5], np.float32), "y": [7], "name": [b"ab"]})
FIXED = {"x": FixedLenFeature([2], np.float32), "y": FixedLenFeature([1], np.int64), "name": FixedLenFeature([], bytes)}


def _write_records(path, records, compression=""):
    with TFRecordWriter(path, compression) as w:
        for r in records:
            w.write(r)
    return path


def _read_all(path, *, iterator=False, compression=""):
    """Elements and error as TensorFlow's dataset / tf_record_iterator would give them."""
    out, err = [], None
    try:
        if iterator:
            for r in tf_record_iterator(path, compression):
                out.append(r)
        else:
            with TFRecordReader(path, compression_type=compression) as reader:
                while chunk := reader.read_chunk(7):
                    out.extend(chunk)
    except (DataLossError, NotFoundError) as e:
        err = e
    return out, err


def _expect_elements(got, err, result, tmp_path):
    assert [g.decode() for g in got] == [e["value"] for e in result.get("elements", [])]
    if "error" in result:
        assert err is not None and type(err).__name__ == result["error"]["class"]
        assert result["error"]["core"].replace("<TMP>", str(tmp_path)) in str(err)
    else:
        assert err is None


def _parse_cases():
    spec_var = {"x": VarLenFeature(np.float32), "y": VarLenFeature(np.int64)}
    e4 = encode_example({"x": np.array([0, 0.25, 0.5, 1], np.float32), "y": [3]})
    return {
        "parse_single_example_fixed": lambda: parse_example(S, FIXED),
        "parse_example_batch2": lambda: parse_example([S, S], FIXED),
        "parse_single_example_varlen": lambda: parse_example(S, spec_var),
        "parse_missing_with_default": lambda: parse_example(
            S, {"z": FixedLenFeature([2], np.float32, default_value=[0.0, -1.0])}
        ),
        "parse_wrong_length_error": lambda: parse_example(S, {"x": FixedLenFeature([3], np.float32)}),
        "parse_truncated_proto_error": lambda: parse_example(b"\x0a\x05", {"x": FixedLenFeature([2], np.float32)}),
        "parse_example_w4_features": lambda: parse_example(
            [e4], {"x": FixedLenFeature([4], np.float32), "y": FixedLenFeature([1], np.int64)}
        ),
        "parse_empty_bytes_is_empty_example": lambda: parse_example(
            b"", {"x": FixedLenFeature([2], np.float32, default_value=[3.0, 4.0])}
        ),
    }


@pytest.mark.parametrize("name", golden_names("tfrecord"))
def test_golden_tfrecord(name, golden, tmp_path):
    case = golden[name]
    result = case["result"]
    inputs = case.get("inputs", {})
    if name == "file_bytes_hello_empty_x1000":
        recs = [bytes.fromhex(h) for h in inputs["records_hex"]]
        assert recs == RECORDS
        p = _write_records(tmp_path / "three.tfrecord", recs)
        assert p.read_bytes().hex() == result["value"]["hex"]
    elif name == "file_fields_hello_empty_x1000":
        data = _write_records(tmp_path / "three.tfrecord", RECORDS).read_bytes()
        fields, off = [], 0
        while off < len(data):
            length, lcrc = struct.unpack_from("<QI", data, off)
            (dcrc,) = struct.unpack_from("<I", data, off + 12 + length)
            fields.append({"offset": off, "length": length, "length_crc": lcrc, "data_crc": dcrc})
            assert lcrc == masked_crc32c(data[off : off + 8])
            off += 16 + length
        assert fields == result["value"]
    elif name in ("read_back_three", "read_back_ZLIB", "read_ZLIB_as_uncompressed_error", "missing_file_error"):
        comp = "ZLIB" if "ZLIB" in name else ""
        p = _write_records(tmp_path / "three.tfrecord", RECORDS, comp)
        if name == "missing_file_error":
            p = tmp_path / "three.tfrecord.nope"
        got, err = _read_all(p, compression="" if name.endswith("error") else comp)
        _expect_elements(got, err, result, tmp_path)
    elif name.startswith("corrupt_"):
        p = tmp_path / "c.tfrecord"
        p.write_bytes(bytes.fromhex(inputs["file_hex"]))
        got, err = _read_all(p, iterator=name.endswith("_tf_record_iterator"))
        _expect_elements(got, err, result, tmp_path)
    elif name == "example_x_y_name_bytes":
        assert S.hex() == result["value"]["hex"] and len(S) == result["value"]["length"]
        # The INFO_ONLY order (non-deterministic serialisation) parses to the same Example.
        other = parse_example(bytes.fromhex(result["value"]["hex_default_serialize_INFO_ONLY"]))
        mine = parse_example(S)
        assert sorted(other) == sorted(mine) and all(np.array_equal(other[k], mine[k]) for k in mine)
    elif name == "example_empty_bytes":
        assert encode_example({}).hex() == result["value"]["hex"]
        assert parse_example(b"") == {}
    elif name == "example_int64_negative_varint":
        assert encode_example({"y": np.array([-1, 300, 2**40])}).hex() == result["value"]["hex"]
        assert parse_example(bytes.fromhex(result["value"]["hex"]))["y"].tolist() == [-1, 300, 2**40]
    elif name == "parse_garbage_bytes_error":
        # TensorFlow's UnicodeDecodeError is an artefact of its error formatting; the bytes are
        # malformed, which is an InvalidArgumentError here.
        with pytest.raises(InvalidArgumentError, match="Could not parse example input"):
            parse_example(b"\xff\xff", {"x": FixedLenFeature([2], np.float32)})
    else:
        call = _parse_cases()[name]  # KeyError here means an unhandled golden case
        if "error" in result:
            with pytest.raises(InvalidArgumentError) as info:
                call()
            assert result["error"]["core"] in str(info.value)
        else:
            check(call(), result["value"])


def _w4(n=200):
    rng = np.random.default_rng(0)
    x = rng.random((20000, 784), np.float32)
    y = rng.integers(0, 10, (20000, 1))
    return x[:n], y[:n]


@pytest.mark.parametrize("fname,comp", [("w4_first200.tfrecord", ""), ("w4_first200.tfrecord.gz", "GZIP")])
def test_tf_written_w4(fname, comp, tmp_path):
    x, y = _w4()
    path = TF_WRITTEN / fname
    recs = list(tf_record_iterator(path, comp))
    assert len(recs) == 200
    parsed = parse_example(recs, {"x": FixedLenFeature([784], np.float32), "y": FixedLenFeature([1], np.int64)})
    np.testing.assert_array_equal(parsed["x"], x)
    np.testing.assert_array_equal(parsed["y"], y)
    one = parse_example(recs[3])
    np.testing.assert_array_equal(one["x"], x[3])
    # Re-written here, byte for byte (compressed bytes included).
    out = tmp_path / fname
    with TFRecordWriter(out, comp) as w:
        for i in range(200):
            w.write(encode_example({"x": x[i], "y": y[i]}))
    assert out.read_bytes() == path.read_bytes()


def test_tf_written_mixed(tmp_path):
    expected = json.loads((TF_WRITTEN / "mixed.expected.json").read_text())
    recs = list(tf_record_iterator(TF_WRITTEN / "mixed.tfrecord"))
    assert len(recs) == len(expected) == 50
    out = tmp_path / "mixed.tfrecord"
    with TFRecordWriter(out) as w:
        for rec, exp in zip(recs, expected):
            got = parse_example(rec)
            assert got["label"].tolist() == exp["label"] and got["neg"].tolist() == exp["neg"]
            assert got["scores"].dtype == np.float32 and got["scores"].tolist() == exp["scores"]
            assert [b.decode() for b in got["name"]] == exp["name"]
            w.write(
                encode_example(
                    {
                        "label": np.array(exp["label"], np.int64),
                        "scores": np.array(exp["scores"], np.float32),
                        "name": [s.encode() for s in exp["name"]],
                        "neg": np.array(exp["neg"], np.int64),
                    }
                )
            )
    assert out.read_bytes() == (TF_WRITTEN / "mixed.tfrecord").read_bytes()
    # A batch with different layouts takes the general path; var-len scores become sparse.
    batch = parse_example(recs[:5], {"scores": VarLenFeature(np.float32), "label": FixedLenFeature([1], np.int64)})
    counts = [len(e["scores"]) for e in expected[:5]]
    assert batch["scores"].dense_shape.tolist() == [5, max(counts)]
    assert np.bincount(batch["scores"].indices[:, 0], minlength=5).tolist() == counts
    assert batch["label"].ravel().tolist() == [0, 1, 2, 3, 4]


def test_unpacked_lists_are_read():
    # float_list with two unpacked floats (tag 0x0d each) and int64_list with unpacked varints.
    floats = b"\x0d" + struct.pack("<f", 1.5) + b"\x0d" + struct.pack("<f", -2.0)
    ints = b"\x08\x05\x08\x96\x01"
    feat_x = b"\x12" + bytes([len(floats)]) + floats
    feat_y = b"\x1a" + bytes([len(ints)]) + ints
    entry = lambda k, f: b"\x0a" + bytes([len(k) + len(f) + 4]) + b"\x0a" + bytes([len(k)]) + k + b"\x12" + bytes([len(f)]) + f
    body = entry(b"x", feat_x) + entry(b"y", feat_y)
    rec = b"\x0a" + bytes([len(body)]) + body
    got = parse_example(rec)
    assert got["x"].tolist() == [1.5, -2.0] and got["y"].tolist() == [5, 150]


def test_parse_errors_name_feature_and_record():
    other = encode_example({"x": np.array([1.0, 2.0], np.float32)})
    short = encode_example({"x": np.array([1.0], np.float32)})
    with pytest.raises(InvalidArgumentError) as info:
        parse_example([other, other, short], {"x": FixedLenFeature([2], np.float32)})
    assert "Key: x" in str(info.value) and info.value.details["record"] == 2
    with pytest.raises(InvalidArgumentError, match="required but could not be found.*record 1"):
        parse_example([other, encode_example({"z": [1]})], {"x": FixedLenFeature([2], np.float32)})
    with pytest.raises(InvalidArgumentError, match="Data types don't match"):
        parse_example(other, {"x": FixedLenFeature([2], np.int64)})


def _ld(tag: int, payload: bytes, length: int | None = None) -> bytes:
    """A length-delimited protobuf field (``length`` overrides the true length)."""
    return bytes([(tag << 3) | 2, len(payload) if length is None else length]) + payload


def test_scalar_bytes_feature_in_a_mixed_batch_gives_bytes():
    """One record with the feature, one without (the general path): elements are bytes, as on the
    uniform path and in TensorFlow (they were 0-d object arrays)."""
    with_s = encode_example({"s": [b"hello"], "x": np.array([1.0], np.float32)})
    without_s = encode_example({"x": np.array([1.0], np.float32)})
    spec = {"s": FixedLenFeature([], bytes, default_value=b"dflt")}
    for recs, want in (([with_s, without_s], [b"hello", b"dflt"]), ([with_s, with_s], [b"hello"] * 2),
                       ([without_s, with_s, without_s], [b"dflt", b"hello", b"dflt"])):
        got = parse_example(recs, spec)["s"]
        assert got.shape == (len(recs),) and got.tolist() == want
        assert all(type(v) is bytes for v in got.tolist())
    got = parse_example([with_s, without_s], {"s": FixedLenFeature([1], bytes, default_value=[b"d"])})["s"]
    assert got.tolist() == [[b"hello"], [b"d"]]


# Feature map entries TensorFlow 2.21 refuses ("Could not parse example input") and accepts
# (checked against it): an entry's name or value longer than what is left, an entry without both.
_VALUE = _ld(2, _ld(1, struct.pack("<f", 1.5)))  # Feature{float_list: [1.5]}
_ENTRY = _ld(1, _ld(1, b"f1") + _ld(2, _VALUE))
_GOOD = _ld(1, _ENTRY)
_REFUSED = {
    "cut_in_value": _GOOD[:10], "cut_after_name": _GOOD[:8], "cut_last_byte": _GOOD[:-1],
    "name_too_long": _ld(1, _ld(1, b"\n\x09f1" + _ld(2, _VALUE))),
    "value_too_long": _ld(1, _ld(1, _ld(1, b"f1") + b"\x12" + bytes([len(_VALUE) + 3]) + _VALUE)),
    "entry_cut_inside_long_features": _ld(1, _ENTRY + b"\n", len(_ENTRY) + 10),
    "name_only": _ld(1, _ld(1, _ld(1, b"f1"))),
    "three_fields": _ld(1, _ld(1, _ld(1, b"f1") + _ld(2, _VALUE) + _ld(1, b"f1"))),
    "empty_entry": _ld(1, _ld(1, b"")),
    "not_an_entry_in_features": _ld(1, _ENTRY + b"\x10\x01"),
}
_ACCEPTED = {  # -> the values of "f1"
    "features_longer_than_the_record": (b"\n\x05", []),
    "entry_longer_than_the_record": (_ld(1, b"\n" + bytes([len(_ENTRY) + 3]) + _ENTRY[2:]), [1.5]),
    "value_before_name": (_ld(1, _ld(1, _ld(2, _VALUE) + _ld(1, b"f1"))), [1.5]),
    "float_list_longer_than_its_feature": (_ld(1, _ld(1, _ld(1, b"f1") + _ld(2, _ld(2, _ld(1, b"\0\0\xc0?"), 9)))), [1.5]),
}


@pytest.mark.parametrize("name", sorted(_REFUSED))
def test_truncated_or_malformed_feature_map_entry_is_an_error(name):
    bad, spec = _REFUSED[name], {"f1": FixedLenFeature([1], np.float32, default_value=[0.0])}
    with pytest.raises(InvalidArgumentError, match="Could not parse example input") as info:
        parse_example(bad, spec)
    assert "record" not in str(info.value)
    for recs, where in (([_GOOD, bad], 1), ([bad, _GOOD, _GOOD], 0), ([bad] * 3, 0)):  # the last: one layout
        with pytest.raises(InvalidArgumentError, match=rf"Could not parse example input.*\(record {where} of the batch\)"):
            parse_example(recs, spec)
    with pytest.raises(InvalidArgumentError, match="Could not parse example input"):
        parse_example(bad)


@pytest.mark.parametrize("name", sorted(_ACCEPTED))
def test_feature_map_entries_tensorflow_accepts(name):
    rec, want = _ACCEPTED[name]
    assert parse_example(rec, {"f1": VarLenFeature(np.float32)})["f1"].values.tolist() == want
    assert parse_example([rec] * 3, {"f1": VarLenFeature(np.float32)})["f1"].values.tolist() == want * 3


def test_batch_of_equal_truncated_records_is_an_error(tmp_path):
    """Records of one length whose last entry runs past their end: the one-layout batch path
    (and the Data API's framed rows) used to read the values that were there."""
    from pipeline.data import TFRecordDataset

    good = encode_example({"f1": np.array([1.5, 2.5], np.float32)})
    body = good[2:-4]  # the last float cut off, the Features length fixed: the entry overruns
    bad = b"\n" + bytes([len(body)]) + body
    spec = {"f1": VarLenFeature(np.float32)}
    for n in (1, 2, 300):
        with pytest.raises(InvalidArgumentError, match="Could not parse example input"):
            parse_example([bad] * n, spec)
    path = _write_records(tmp_path / "bad.tfrecord", [bad] * 300)
    with pytest.raises(InvalidArgumentError, match=r"Could not parse example input.*record 0 of the batch"):
        list(TFRecordDataset(str(path)).batch(100).map(lambda r: parse_example(r, spec)))


def test_vectorised_batch_matches_general_path():
    rng = np.random.default_rng(1)
    recs = [
        encode_example({"x": rng.random(16, np.float32), "y": [int(v)], "s": [b"ab"]})
        for v in rng.integers(0, 10**6, 50)  # multi-byte varints with equal lengths only by chance
    ]
    spec = {"x": FixedLenFeature([16], np.float32), "y": FixedLenFeature([1], np.int64), "s": FixedLenFeature([], bytes)}
    batch = parse_example(recs, spec)
    for i, r in enumerate(recs):
        one = parse_example(r, spec)
        np.testing.assert_array_equal(batch["x"][i], one["x"])
        assert batch["y"][i, 0] == one["y"][0] and batch["s"][i] == one["s"]


def test_gzip_roundtrip_checkpoint_and_skip(tmp_path):
    recs = [bytes([i % 256]) * (i * 7 % 300) for i in range(500)]
    p = _write_records(tmp_path / "r.tfrecord.gz", recs, "GZIP")
    r = TFRecordReader(p, compression_type="GZIP", buffer_size=4096)
    first = r.read_chunk(123)
    state = json.loads(json.dumps(r.get_state()))
    r.close()
    r2 = TFRecordReader(p, compression_type="GZIP", state=state)
    assert first + list(r2) == recs
    assert r2.records == 500

    # Corrupt the data of record 2 and the header of record 5: skip mode drops exactly those.
    raw = bytearray(_write_records(tmp_path / "r.tfrecord", recs[:10]).read_bytes())
    offs, off = [], 0
    for rec in recs[:10]:
        offs.append(off)
        off += 16 + len(rec)
    raw[offs[2] + 12] ^= 0xFF
    raw[offs[5]] ^= 0x01
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(raw))
    reader = TFRecordReader(bad, on_error="skip")
    got = list(reader)
    assert got == [recs[i] for i in range(10) if i not in (2, 5)] and reader.bad_records == 2
    with pytest.raises(DataLossError, match=f"corrupted record at {offs[2] + 12}"):
        list(tf_record_iterator(bad))


def test_missing_file_names_path(tmp_path):
    with pytest.raises(NotFoundError, match="nope.tfrecord"):
        TFRecordReader(tmp_path / "nope.tfrecord")


# -- read_tfrecord_examples: whole files straight to arrays ----------------------------------------

W4_SPEC = {"x": FixedLenFeature([784], np.float32), "y": FixedLenFeature([1], np.int64)}


def _same(got, exp):
    assert got.keys() == exp.keys()
    for k in exp:
        if isinstance(exp[k], SparseTensor):
            for a, b in zip(got[k], exp[k]):
                assert np.asarray(a).tolist() == np.asarray(b).tolist(), k
        else:
            assert got[k].dtype == exp[k].dtype and got[k].shape == exp[k].shape, k
            assert got[k].tolist() == exp[k].tolist(), k


def _reference(paths, spec, comp=""):
    recs = [r for p in paths for r in tf_record_iterator(p, comp)]
    return parse_example(recs, spec)


@pytest.mark.parametrize("fname,comp", [("w4_first200.tfrecord", ""), ("w4_first200.tfrecord.gz", "GZIP")])
def test_read_examples_tf_written_w4(fname, comp):
    x, y = _w4()
    out = read_tfrecord_examples(TF_WRITTEN / fname, W4_SPEC, comp)
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["y"], y)
    assert out["x"].flags.c_contiguous and out["x"].flags.writeable


def _mixed_records(rng, n):
    """Runs of identical layouts broken by records of other lengths and layouts."""
    recs = []
    for _i in range(n):
        r = rng.random()
        if r < 0.7:
            feats = {"x": rng.random(6).astype(np.float32), "y": [int(rng.integers(0, 100))], "s": [b"ab"]}
        elif r < 0.85:
            feats = {"x": rng.random(6).astype(np.float32), "y": [int(rng.integers(200, 10**12))], "s": [b"abc"]}
        elif r < 0.93:  # same length as the common layout, other key: breaks a run's byte layout
            feats = {"x": rng.random(6).astype(np.float32), "y": [int(rng.integers(0, 100))], "t": [b"ab"]}
        else:
            feats = {"x": rng.random(6).astype(np.float32), "y": [5], "s": [b"zz"], "v": [1.0]}
        recs.append(encode_example(feats))
    return recs


@pytest.mark.parametrize("comp", ["", "GZIP", "ZLIB"])
def test_read_examples_matches_parse_example(tmp_path, comp, monkeypatch):
    monkeypatch.setattr(tfr_bulk, "_BLOCK_BYTES", 1000)  # many blocks: records straddle block edges
    rng = np.random.default_rng(5)
    spec = {
        "x": FixedLenFeature([6], np.float32),
        "y": FixedLenFeature([1], np.int64),
        "s": FixedLenFeature([], bytes, default_value=b"dflt"),
        "v": VarLenFeature(np.float32),
        "missing": FixedLenFeature([2], np.int64, default_value=[7, 8]),
    }
    paths = []
    for f in range(3):
        paths.append(_write_records(tmp_path / f"m{f}.tfrecord", _mixed_records(rng, 300 + 50 * f), comp))
    _same(read_tfrecord_examples(paths, spec, comp), _reference(paths, spec, comp))
    # Uniform records only: the vectorised path end to end, across files.
    uni = [encode_example({"x": rng.random(6).astype(np.float32), "y": [3], "s": [b"q"]}) for _ in range(500)]
    p = _write_records(tmp_path / "u.tfrecord", uni, comp)
    _same(read_tfrecord_examples([p, p], spec, comp), _reference([p, p], spec, comp))


@pytest.mark.parametrize("comp", ["GZIP", "ZLIB"])
def test_read_examples_records_longer_than_a_block(tmp_path, comp, monkeypatch):
    monkeypatch.setattr(tfr_bulk, "_BLOCK_BYTES", 1000)  # each record spans several blocks
    rng = np.random.default_rng(8)
    spec = {"x": FixedLenFeature([3000], np.float32), "y": FixedLenFeature([1], np.int64)}
    recs = [encode_example({"x": rng.random(3000).astype(np.float32), "y": [i]}) for i in range(7)]
    recs.insert(3, encode_example({"x": rng.random(3000).astype(np.float32), "y": [10**12]}))  # another length
    p = _write_records(tmp_path / "big.tfrecord", recs, comp)
    _same(read_tfrecord_examples(p, spec, comp), _reference([p], spec, comp))


def test_read_examples_concatenated_gzip_members(tmp_path):
    a = _write_records(tmp_path / "a.gz", [encode_example({"x": np.ones(784, np.float32), "y": [1]})] * 30, "GZIP")
    b = _write_records(tmp_path / "b.gz", [encode_example({"x": np.zeros(784, np.float32), "y": [2]})] * 20, "GZIP")
    cat = tmp_path / "cat.gz"
    cat.write_bytes(a.read_bytes() + b.read_bytes())
    out = read_tfrecord_examples(cat, W4_SPEC, "GZIP")
    assert out["y"].ravel().tolist() == [1] * 30 + [2] * 20


@pytest.mark.parametrize("block", [1000, 1 << 22])
def test_read_examples_gzip_size_estimate_wrong_either_way(tmp_path, block, monkeypatch):
    # GZIP output is gathered into arrays sized from the trailer's length over the first run's
    # record stride; the estimate is wrong for concatenated members and for mixed lengths, and
    # the result must not change (order, count, values), however the blocks fall.
    monkeypatch.setattr(tfr_bulk, "_BLOCK_BYTES", block)
    rng = np.random.default_rng(11)
    spec = {"x": FixedLenFeature([6], np.float32), "y": FixedLenFeature([1], np.int64),
            "s": FixedLenFeature([], bytes, default_value=b"d")}

    def recs(n, big=False):
        return [encode_example({"x": rng.random(6).astype(np.float32),
                                "y": [int(rng.integers(10**11, 10**12)) if big else int(rng.integers(0, 100))]})
                for _ in range(n)]

    small_then_big = recs(20) + recs(300, big=True)  # first stride short: estimate too large
    big_then_small = recs(300, big=True) + recs(40)  # first stride long: estimate too small
    cases = {"short_first": [small_then_big], "long_first": [big_then_small],
             "members_small_first": [recs(20), recs(30)], "members_twice": "same"}
    for name, members in cases.items():
        path = tmp_path / f"{name}.gz"
        if members == "same":  # the same member twice: trailer length and CRC of one member match
            one = _write_records(tmp_path / "one.gz", recs(25), "GZIP").read_bytes()
            path.write_bytes(one + one)
        else:
            path.write_bytes(b"".join(
                _write_records(tmp_path / f"{name}{i}.gz", m, "GZIP").read_bytes() for i, m in enumerate(members)))
        got = read_tfrecord_examples(path, spec, "GZIP")
        _same(got, _reference([path], spec, "GZIP"))
        assert all(a.base is None or a.base.shape[0] == a.shape[0] for a in got.values()), name  # no oversized buffer


def _errors(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the class and message are compared
        return type(e), str(e)
    return None


@pytest.mark.parametrize("comp", ["", "GZIP"])
def test_read_examples_errors_are_tfrecordreaders(tmp_path, comp):
    recs = [encode_example({"x": np.full(784, i, np.float32), "y": [i]}) for i in range(40)]
    framed = tmp_path / "plain.tfrecord"
    _write_records(framed, recs)
    raw = framed.read_bytes()
    stride = len(raw) // 40
    cases = {
        "data_crc": raw[: 5 * stride + 100] + bytes([raw[5 * stride + 100] ^ 1]) + raw[5 * stride + 101 :],
        "header_crc": raw[: 7 * stride + 9] + bytes([raw[7 * stride + 9] ^ 1]) + raw[7 * stride + 10 :],
        "truncated": raw[: 39 * stride + 500],
        "short_tail": raw + b"\x01\x02\x03",  # fewer than 12 bytes: TensorFlow ends quietly
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.tfrecord"
        path.write_bytes(gzip.compress(data) if comp else data)

        def via_reader(path=path):
            return _reference([path], W4_SPEC, comp)

        got = _errors(lambda path=path: read_tfrecord_examples(path, W4_SPEC, comp))
        exp = _errors(via_reader)
        assert got == exp, name
        if exp is None:
            _same(read_tfrecord_examples(path, W4_SPEC, comp), via_reader())
        else:
            assert exp[0] is DataLossError
    if comp:
        cut = tmp_path / "cut.gz"
        cut.write_bytes(gzip.compress(raw)[:-100])  # the stream itself ends early
        got = _errors(lambda: read_tfrecord_examples(cut, W4_SPEC, "GZIP"))
        assert got == _errors(lambda: _reference([cut], W4_SPEC, "GZIP")) and got[0] is DataLossError


def test_read_examples_parse_error_names_file_and_record(tmp_path):
    recs = [encode_example({"x": np.zeros(784, np.float32), "y": [1]})] * 10
    recs.append(encode_example({"x": np.zeros(784, np.float32)}))
    path = _write_records(tmp_path / "f.tfrecord", recs * 2)
    with pytest.raises(InvalidArgumentError) as info:
        read_tfrecord_examples(path, W4_SPEC)
    assert "Feature: y (data type: int64) is required" in str(info.value)
    assert str(path) in str(info.value) and "record 10" in str(info.value)
    assert info.value.details["record"] == 10


def test_read_examples_empty_and_missing(tmp_path):
    empty = tmp_path / "e.tfrecord"
    empty.write_bytes(b"")
    out = read_tfrecord_examples([empty], W4_SPEC)
    assert out["x"].shape == (0, 784) and out["y"].shape == (0, 1)
    gz = tmp_path / "e.gz"
    gz.write_bytes(b"")
    assert read_tfrecord_examples(gz, W4_SPEC, "GZIP")["x"].shape == (0, 784)
    with pytest.raises(NotFoundError, match="nope.tfrecord"):
        read_tfrecord_examples(tmp_path / "nope.tfrecord", W4_SPEC)
    with pytest.raises(InvalidArgumentError):
        read_tfrecord_examples(empty, W4_SPEC, "BZIP2")


def test_read_examples_without_isal(tmp_path, monkeypatch):
    monkeypatch.setattr(inflate, "USE_ISAL", False)
    recs = [encode_example({"x": np.full(784, i, np.float32), "y": [i]}) for i in range(50)]
    p = _write_records(tmp_path / "z.gz", recs, "GZIP")
    assert read_tfrecord_examples(p, W4_SPEC, "GZIP")["y"].ravel().tolist() == list(range(50))


def test_read_examples_run_missing_required_feature(tmp_path):
    recs = [encode_example({"x": np.zeros(784, np.float32), "y": [1]})] * 3
    recs += [encode_example({"x": np.ones(784, np.float32), "z": [1]})] * 5  # a uniform run without y
    path = _write_records(tmp_path / "f.tfrecord", recs)
    with pytest.raises(InvalidArgumentError, match=r"is required.*record 3\)"):
        read_tfrecord_examples(path, W4_SPEC)
    good = _write_records(tmp_path / "g.tfrecord", recs[:3])
    with pytest.raises(NotFoundError):
        read_tfrecord_examples([good, tmp_path / "missing.tfrecord"], W4_SPEC)
    with pytest.raises(InvalidArgumentError):
        read_tfrecord_examples(tmp_path, W4_SPEC)  # a directory


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_runs_framed_at_once_still_stop_at_the_exact_bad_record(tmp_path, on_error):
    """read_chunk frames whole runs of equal records at a time; a bad CRC or a truncation inside a
    run must still give every good record before it, then the error at its own offset."""
    path = tmp_path / "runs.tfrecord"
    with TFRecordWriter(str(path)) as w:
        for i in range(300):
            w.write(bytes([i % 256]) * (100 if i < 200 else 57))  # two runs of equal lengths
    data = bytearray(path.read_bytes())
    bad = 150 * 116 + 12 + 5  # a data byte of record 150
    data[bad] ^= 0xFF
    path.write_bytes(bytes(data[:-30]))  # and the last record cut short
    r = TFRecordReader(str(path), on_error=on_error)
    got: list[bytes] = []
    errors = []
    while True:
        try:
            chunk = r.read_chunk(64)
        except DataLossError as exc:
            errors.append(exc)
            break
        if not chunk:
            break
        got += chunk
    expected = [bytes([i % 256]) * (100 if i < 200 else 57) for i in range(299)]
    if on_error == "raise":
        assert got == expected[:150]
        assert errors and f"corrupted record at {150 * 116 + 12}" in str(errors[0])
    else:
        assert got == expected[:150] + expected[151:]
        assert [offset for _, offset in r.skipped] == [150 * 116, 200 * 116 + 99 * 73]
