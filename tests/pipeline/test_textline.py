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


# TensorFlow 2.21's TextLineDataset (BufferedInputStream::ReadLine) removes every "\r" of a line;
# the lines are TensorFlow's. drop_cr=True is that rule (TextLineDataset's); the default is TF1's.
DROP_CR_CASES = [
    (b"a\rb\nc\r\r\n\rd\r\nx\ry", [b"ab", b"c", b"d", b"xy"]),
    (b"a\n\r\r", [b"a"]),  # a last line of only "\r"s is no line
    (b"a\n\r\rb", [b"a", b"b"]),
    (b"\r\r\n", [b""]),
    (b"a\r", [b"a"]),
    (b"\r", []),
    (b"a\r\n\r\n", [b"a", b""]),
    (b"x\r\r", [b"x"]),
    (b"ab\r\rcd\r", [b"abcd"]),
]


@pytest.mark.parametrize("comp", ["", "GZIP", "ZLIB"])
@pytest.mark.parametrize("content,lines", DROP_CR_CASES)
def test_drop_cr_removes_every_carriage_return(content, lines, comp, tmp_path):
    p = tmp_path / "f"
    p.write_bytes({"": content, "GZIP": gzip.compress(content), "ZLIB": zlib.compress(content)}[comp])
    assert list(TextLineReader(p, compression_type=comp, buffer_size=4096, drop_cr=True)) == lines
    with TextLineReader(p, compression_type=comp, drop_cr=True) as r:
        assert r.read_segment(10**6).lines() + list(r) == lines


def _drop_cr_lines(content: bytes) -> list[bytes]:
    """TensorFlow 2's TextLineDataset lines of ``content``."""
    lines = content.replace(b"\r", b"").split(b"\n")
    last = lines.pop()
    return lines + ([last] if last else [])


@pytest.mark.parametrize("comp", ["", "GZIP"])
def test_drop_cr_at_block_boundaries_reads_and_resumes_exactly(comp, tmp_path):
    """"\r"s around every block boundary and inside lines longer than a block: read_chunk and
    read_segment, mixed, and states saved anywhere give TensorFlow 2's lines."""
    import random

    rng = random.Random(5)
    for trial in range(12):
        parts = []
        for _ in range(rng.randint(1, 300)):
            n = rng.choice([0, 1, 3, 30, 5000])
            parts.append(bytes(rng.choice(b"ab\r\r") for _ in range(n)))
        content = b"\n".join(parts) + rng.choice([b"", b"\n", b"\r", b"\r\n", b"\r\r", b"z"])
        p = tmp_path / f"f{trial}"
        p.write_bytes(gzip.compress(content) if comp else content)
        want = _drop_cr_lines(content)
        got, states = [], []
        r = TextLineReader(p, compression_type=comp, buffer_size=rng.choice([16, 100, 4096]), drop_cr=True)
        while True:
            states.append((len(got), json.loads(json.dumps(r.get_state()))))
            if rng.random() < 0.5:
                part = r.read_segment(rng.choice([1, 3, 50, 10**6]), max_bytes=rng.choice([1, 100, 5000]))
                part = part.lines()
            else:
                part = r.read_chunk(rng.choice([1, 7, 10**6]))
            if not part:
                break
            got += part
        assert got == want, trial
        for k, state in states[:: max(1, len(states) // 8)]:
            with TextLineReader(p, compression_type=comp, state=state, drop_cr=True) as again:
                assert list(again) == want[k:]


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


@pytest.mark.parametrize("compression", ["", "GZIP"])
def test_a_line_much_longer_than_a_block_costs_its_size_not_its_square(compression, tmp_path):
    """Each block used to be joined to the partial line before it (and the whole re-split): a
    256 MiB line took 66 s and 3.2x its size. Copies are counted through peak memory here."""
    import tracemalloc

    line = bytes(range(97, 123)) * (8 * 1024 * 1024 // 26)  # ~8 MiB, no newline: 128 blocks of 64 KiB
    content = b"head\n" + line + b"\r\nnext\nlast"
    path = tmp_path / "long.txt"
    path.write_bytes(gzip.compress(content, 1) if compression else content)
    tracemalloc.start()
    try:
        with TextLineReader(path, compression_type=compression, buffer_size=64 * 1024) as r:
            got = r.read_chunk(10)
            _, peak = tracemalloc.get_traced_memory()
            state = r.get_state()
    finally:
        tracemalloc.stop()
    assert got == [b"head", line, b"next", b"last"]
    assert state["offset"] == len(content) and state["line"] == 4
    assert peak < 1.3 * len(line)


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r", b""])
@pytest.mark.parametrize("compression", ["", "ZLIB"])
def test_long_lines_keep_the_line_rules_and_resume_exactly(ending, compression, tmp_path):
    long_a = b"a" * 50_000 + b"\r"  # a "\r" kept inside: only the one before the "\n" goes
    long_b = b"b" * 70_001
    content = long_a + b"x\r\n" + long_b + b"\r\n\r\nshort\n" + long_b + ending
    expected = [long_a + b"x", long_b, b"", b"short"] + ([long_b] if long_b + ending else [])
    path = tmp_path / "long.txt"
    path.write_bytes(zlib.compress(content) if compression else content)
    with TextLineReader(path, compression_type=compression, buffer_size=4096) as r:
        assert list(r) == expected
    for cut in range(len(expected) + 1):
        with TextLineReader(path, compression_type=compression, buffer_size=4096) as r:
            head = r.read_chunk(cut)
            state = json.loads(json.dumps(r.get_state()))
        with TextLineReader(path, compression_type=compression, buffer_size=4096, state=state) as r:
            assert head + list(r) == expected, cut
