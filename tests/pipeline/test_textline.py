"""TextLineReader: TensorFlow's line rules, compression, chunks, checkpoints and skip mode.

The golden textline_* cases run in test_csv.py (they belong to the "csv" group).
"""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from pipeline.textline import TextLineReader
from queueserver.errors import DataLossError, NotFoundError


@pytest.mark.parametrize(
    "content,lines",
    [
        (b"a\r\nb\n", [b"a", b"b"]),
        (b"a\n\n\nb", [b"a", b"", b"", b"b"]),
        (b"a\nb\r", [b"a", b"b"]),  # a final "\r" goes like a final "\r\n"
        (b"a\n\r", [b"a"]),  # ... and a last line that is only "\r" is no line at all
        (b"a\rb\n", [b"a\rb"]),  # a lone "\r" inside a line stays
        (b"\n", [b""]),
        (b"", []),
    ],
)
def test_line_rules(content, lines, tmp_path):
    p = tmp_path / "f.txt"
    p.write_bytes(content)
    assert list(TextLineReader(p, buffer_size=4096)) == lines


@pytest.mark.parametrize("comp", ["", "GZIP", "ZLIB"])
def test_chunks_checkpoint_every_position(comp, tmp_path):
    lines = [(b"line %d" % i) * (i % 5) + (b"\r" if i % 3 == 0 else b"") for i in range(300)]
    data = b"\n".join(lines)
    packed = {"": data, "GZIP": gzip.compress(data), "ZLIB": zlib.compress(data)}[comp]
    p = tmp_path / "f"
    p.write_bytes(packed)
    want = [l[:-1] if l.endswith(b"\r") else l for l in lines][1:]
    r = TextLineReader(p, skip_header_lines=1, compression_type=comp, buffer_size=4096)
    got = []
    for k in (1, 7, 50, 100):
        got += r.read_chunk(k)
        state = json.loads(json.dumps(r.get_state()))
        resumed = TextLineReader(p, skip_header_lines=1, compression_type=comp, state=state)
        assert got + list(resumed) == want
    assert got + list(r) == want


def test_corrupt_gzip_raises_or_skips(tmp_path):
    data = gzip.compress(b"".join(b"%d\n" % i for i in range(20000)))
    p = tmp_path / "f.gz"
    p.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DataLossError, match="f.gz"):
        list(TextLineReader(p, compression_type="GZIP", buffer_size=4096))
    r = TextLineReader(p, compression_type="GZIP", buffer_size=4096, on_error="skip")
    got = list(r)
    assert r.bad_records == 1 and got == [b"%d" % i for i in range(len(got))] and len(got) > 100


def test_missing_file(tmp_path):
    with pytest.raises(NotFoundError, match="no_such.txt; No such file or directory"):
        TextLineReader(tmp_path / "no_such.txt")
