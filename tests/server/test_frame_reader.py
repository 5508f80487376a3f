"""FrameReader fed directly, without a socket: any split of a stream of valid frames parses to
the same frames, and arbitrary bytes never raise out of the reader."""

from __future__ import annotations

import msgpack
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from queueserver.errors import QueueServerError
from queueserver.wire import PREFIX, FrameReader, encode_frame

headers = st.dictionaries(st.sampled_from(["o", "n", "c", "t", "x", "r"]),
                          st.one_of(st.integers(-2 ** 31, 2 ** 31), st.text(max_size=20), st.none(),
                                    st.booleans(), st.floats(allow_nan=False)), max_size=5)
bodies = st.lists(st.integers(0, 255), max_size=3000).map(lambda b: np.array(b, np.uint8))


class Recorder:
    def __init__(self, max_message_bytes: int = 1 << 20) -> None:
        self.frames, self.bad, self.fatal = [], [], []
        self.reader = FrameReader(self.on_frame, lambda e, h: self.bad.append(e), self.fatal.append,
                                  max_message_bytes=max_message_bytes)

    def on_frame(self, header, body) -> None:
        self.frames.append((header, bytes(body)))

    def feed_in_pieces(self, data: bytes, cuts: list[int]) -> None:
        """Feed as the socket would: through get_buffer/buffer_updated, in pieces cut at ``cuts``."""
        pos = 0
        for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
            while pos < cut:
                target = self.reader.get_buffer(-1)
                n = min(len(target), cut - pos)
                target[:n] = data[pos:pos + n]
                pos += n
                self.reader.buffer_updated(n)


@settings(max_examples=150, deadline=None)
@given(frames=st.lists(st.tuples(headers, bodies), min_size=1, max_size=6),
       cuts=st.lists(st.integers(0, 1 << 16), max_size=12))
def test_any_split_of_valid_frames_parses_to_the_same_frames(frames, cuts):
    stream = b"".join(b"".join(bytes(p) for p in encode_frame(dict(h), [body] if body.size else []))
                      for h, body in frames)
    whole, pieces = Recorder(), Recorder()
    whole.reader.feed(stream)
    pieces.feed_in_pieces(stream, cuts)
    assert len(whole.frames) == len(frames) and not whole.bad and not whole.fatal
    assert pieces.frames == whole.frames and not pieces.bad and not pieces.fatal
    for (header, body), (got_header, got_body) in zip(frames, whole.frames):
        assert {k: v for k, v in got_header.items() if k != "a"} == header
        assert got_body == body.tobytes()


@settings(max_examples=300, deadline=None)
@given(noise=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 4000), max_size=8))
def test_arbitrary_bytes_never_raise_out_of_the_reader(noise, cuts):
    r = Recorder(max_message_bytes=4096)
    r.feed_in_pieces(noise, cuts)  # must not raise
    assert all(isinstance(e, QueueServerError) for e in r.bad + r.fatal)
    assert len(r.fatal) <= 1  # once the stream is dead, nothing more is reported


def test_a_frame_over_the_limit_is_fatal_and_nothing_after_it_is_parsed():
    r = Recorder(max_message_bytes=100)
    good = msgpack.packb({"o": "ping"})
    r.reader.feed(PREFIX.pack(len(good), 0) + good + PREFIX.pack(10, 10_000) + PREFIX.pack(len(good), 0) + good)
    assert len(r.frames) == 1 and len(r.fatal) == 1
