"""FixedLengthRecordReader and the CIFAR helper against TensorFlow's golden cases."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from conftest import check, golden_names

from pipeline.fixed_length import FixedLengthRecordReader, decode_cifar10
from queueserver.errors import DataLossError, InvalidArgumentError, NotFoundError

READER_CASES = {
    "h2_r3_f1": "fl_h2_r3_f1.bin",
    "h2_r3_f1_only_header_footer": "fl_only.bin",
    "h2_r3_f1_shorter_than_header_footer": "fl_short.bin",
    "h0_r4_f0_10bytes": "fl_h0_r4_f0_10bytes.bin",
    "h2_r3_f1_gzip": "fl.gz",
    "h2_r3_f1_gzip_truncated_last": "fl_trunc.gz",
}


@pytest.mark.parametrize("name", [n for n in golden_names("fixedlen") if not n.startswith("decode_raw")])
def test_golden_fixedlen(name, golden, tmp_path):
    case = golden[name]
    result = case["result"]
    inputs = case["inputs"]
    if name == "cifar_style_label_image":
        p = tmp_path / "c.bin"
        p.write_bytes(bytes.fromhex(inputs["file_hex"]))
        with FixedLengthRecordReader(p, record_bytes=4) as r:
            labels, images = decode_cifar10(r.read_chunk(100), image_shape=(1, 3))
        got = list(zip(labels, images))
        assert len(got) == len(result["elements"])
        for g, e in zip(got, result["elements"]):
            check(g, e)
        return
    p = tmp_path / READER_CASES[name]  # KeyError: an unhandled golden case
    gz = name.endswith(("gzip", "gzip_truncated_last"))
    data = inputs["uncompressed"].encode() if gz else bytes.fromhex(inputs["file_hex"])
    p.write_bytes(gzip.compress(data) if gz else data)
    kw = dict(record_bytes=4) if name.startswith("h0_r4") else dict(record_bytes=3, header_bytes=2, footer_bytes=1)
    out, err = [], None
    try:
        with FixedLengthRecordReader(p, compression_type="GZIP" if gz else "", **kw) as r:
            for rec in r:  # records before an error still count, as TensorFlow yields them
                out.append(rec)
    except (DataLossError, InvalidArgumentError) as e:
        err = e
    assert [o.decode() for o in out] == [e["value"] for e in result["elements"]]
    if "error" in result:
        assert type(err).__name__ == result["error"]["class"]
        assert result["error"]["core"].replace("<TMP>", str(tmp_path)) in str(err)
    else:
        assert err is None


def test_chunks_are_uint8_arrays_and_checkpoint(tmp_path):
    data = np.arange(10 * 7, dtype=np.uint8).tobytes()
    p = tmp_path / "f.bin"
    p.write_bytes(b"HH" + data + b"F")
    r = FixedLengthRecordReader(p, record_bytes=7, header_bytes=2, footer_bytes=1)
    a = r.read_chunk(4)
    assert a.dtype == np.uint8 and a.shape == (4, 7) and a.flags.writeable
    state = json.loads(json.dumps(r.get_state()))
    assert state["offset"] == 2 + 4 * 7
    rest = FixedLengthRecordReader(p, record_bytes=7, header_bytes=2, footer_bytes=1, state=state).read_chunk(100)
    np.testing.assert_array_equal(np.concatenate([a, rest]), np.frombuffer(data, np.uint8).reshape(10, 7))
    assert r.read_chunk(100).shape == (6, 7) and r.read_chunk(5).shape == (0, 7)


def test_gzip_checkpoint_and_hop(tmp_path):
    body = bytes(range(60))
    p = tmp_path / "f.gz"
    p.write_bytes(gzip.compress(body))
    r = FixedLengthRecordReader(p, record_bytes=6, compression_type="GZIP")
    first = r.read_chunk(3)
    r2 = FixedLengthRecordReader(p, record_bytes=6, compression_type="GZIP", state=r.get_state())
    assert np.concatenate([first, r2.read_chunk(100)]).tobytes() == body
    q = tmp_path / "hop.bin"
    q.write_bytes(body[:10])
    hop = list(FixedLengthRecordReader(q, record_bytes=4, hop_bytes=2))
    assert hop == [body[0:4], body[2:6], body[4:8], body[6:10]]


def test_skip_mode_counts_partial_record(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"0123456789")
    r = FixedLengthRecordReader(p, record_bytes=4, on_error="skip")
    assert list(r) == [b"0123", b"4567"] and r.bad_records == 1
    g = tmp_path / "f.gz"
    g.write_bytes(gzip.compress(b"0123456789"))
    r = FixedLengthRecordReader(g, record_bytes=4, compression_type="GZIP", on_error="skip")
    assert list(r) == [b"0123", b"4567"] and r.bad_records == 1
    with pytest.raises(InvalidArgumentError, match="byte offset 8"):
        FixedLengthRecordReader(p, record_bytes=4)


def test_cifar10_layout(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, (5, 1), np.uint8)
    pixels = rng.integers(0, 256, (5, 3072), np.uint8)
    p = tmp_path / "cifar.bin"
    p.write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())
    with FixedLengthRecordReader(p, record_bytes=3073) as r:
        lab, img = decode_cifar10(r.read_chunk(10))
    assert lab.tolist() == labels.ravel().tolist() and img.shape == (5, 3, 32, 32) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[2, 1], pixels[2, 1024:2048].reshape(32, 32))
    one_label, one_img = decode_cifar10(p.read_bytes()[:3073])
    assert one_label == labels[0, 0] and one_img.shape == (3, 32, 32)


def test_missing_file(tmp_path):
    with pytest.raises(NotFoundError, match="absent.bin"):
        FixedLengthRecordReader(tmp_path / "absent.bin", record_bytes=4)
