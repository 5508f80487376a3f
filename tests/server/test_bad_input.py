"""Bad input never takes the server down: malformed frames, unknown operations, random bytes."""

from __future__ import annotations

import socket
import struct

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import queueserver as qs
from queueserver.wire import PREAMBLE, PREFIX


def _raw(target: str) -> socket.socket:
    host, port = target.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def _read_frame(sock: socket.socket) -> dict:
    data = b""
    while len(data) < PREFIX.size:
        chunk = sock.recv(65536)
        assert chunk, "server closed the connection"
        data += chunk
    header_len, body_len = PREFIX.unpack_from(data)
    while len(data) < PREFIX.size + header_len + body_len:
        data += sock.recv(65536)
    return msgpack.unpackb(data[PREFIX.size:PREFIX.size + header_len])


def _frame(header: bytes, body: bytes = b"") -> bytes:
    return PREFIX.pack(len(header), len(body)) + header + body


def _still_serves(target: str) -> None:
    with qs.connect(target) as c:
        q = c.fifo_queue("alive", capacity=2, dtypes=[np.float32], shapes=[[]])
        q.enqueue(1.0)
        assert q.dequeue() == 1.0


def test_malformed_header_unknown_op_and_bad_arrays_get_error_replies(local_server):
    sock = _raw(local_server.target)
    sock.sendall(PREAMBLE + _frame(b"\xc1\xc1garbage"))
    reply = _read_frame(sock)
    assert reply["e"][0] == qs.InvalidArgumentError.code and "malformed frame header" in reply["e"][1]
    sock.sendall(_frame(msgpack.packb({"i": 7, "o": "hello"})))
    assert _read_frame(sock) ["i"] == 7
    sock.sendall(_frame(msgpack.packb({"i": 8, "o": "explode"})))
    reply = _read_frame(sock)
    assert reply["i"] == 8 and reply["e"][0] == qs.UnimplementedError.code
    sock.sendall(_frame(msgpack.packb({"i": 9, "o": "queue", "kind": "fifo", "n": "bad", "cap": 4,
                                       "spec": {"dtypes": ["float32"], "shapes": [[2]]}})))
    assert "e" not in _read_frame(sock)
    bad_arrays = {"i": 10, "o": "enqueue", "n": "bad", "a": [["<f4", [2]]]}
    sock.sendall(_frame(msgpack.packb(bad_arrays), b"\x00" * 3))  # 3 bytes for an 8-byte array
    reply = _read_frame(sock)
    assert reply["i"] == 10 and reply["e"][0] == qs.InvalidArgumentError.code
    sock.sendall(_frame(msgpack.packb({"i": 11, "o": "enqueue", "n": "bad", "a": [["|O8", [1]]]}), b"12345678"))
    assert _read_frame(sock)["e"][0] == qs.InvalidArgumentError.code
    sock.close()
    _still_serves(local_server.target)


def test_truncated_frame_then_disconnect(local_server):
    sock = _raw(local_server.target)
    sock.sendall(PREAMBLE + struct.pack("<IQ", 100, 10_000_000) + b"\x81")
    sock.close()
    _still_serves(local_server.target)


def test_http_still_answers_on_the_same_port(local_server):
    import json
    import urllib.request

    with urllib.request.urlopen(local_server.target + "/healthz", timeout=5) as r:
        assert json.load(r)["ok"] is True
    with urllib.request.urlopen(local_server.target + "/status", timeout=5) as r:
        assert "queues" in json.load(r)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=st.binary(min_size=1, max_size=400), with_preamble=st.booleans())
def test_random_bytes_never_take_the_server_down(local_server, noise, with_preamble):
    sock = _raw(local_server.target)
    try:
        sock.sendall((PREAMBLE if with_preamble else b"") + noise)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2)
        try:
            while sock.recv(65536):
                pass
        except (socket.timeout, ConnectionResetError):
            pass
    finally:
        sock.close()
    _still_serves(local_server.target)


def test_a_large_header_does_not_pin_a_large_receive_buffer():
    from queueserver.wire import _SMALL_BUFFER, FrameReader

    frames = []
    reader = FrameReader(lambda h, b: frames.append(h), lambda e, h: None, lambda e: None)
    header = msgpack.packb({"i": 1, "o": "ping", "pad": "x" * (3 * _SMALL_BUFFER)})  # under MAX_HEADER_BYTES
    reader.feed(PREFIX.pack(len(header), 0) + header)
    assert frames and frames[0]["i"] == 1
    assert len(reader._buf) == _SMALL_BUFFER


def test_malformed_specs_and_descriptors_get_invalid_argument_or_resource_exhausted(local_server):
    # Before: each of these was an InternalError (a logged server bug) instead of the caller's error.
    from support import RawConnection

    raw = RawConnection(local_server.target)
    try:
        def error(header, body=b""):
            reply, _ = raw.call({"i": 1, **header}, body)
            return reply["e"][0], reply["e"][1]

        queue = {"o": "queue", "kind": "fifo", "cap": 4}
        assert error({**queue, "n": "d65", "spec": {"dtypes": ["float32"], "shapes": [[1] * 65]}}) == (
            qs.InvalidArgumentError.code, f"shape {[1] * 65} has 65 dimensions; at most 64 are supported")
        assert error({**queue, "n": "nd", "spec": {"dtypes": 5}})[0] == qs.InvalidArgumentError.code
        assert error({**queue, "n": "ns", "spec": {"dtypes": ["float32"], "shapes": 7}})[0] == qs.InvalidArgumentError.code
        code, message = error({**queue, "kind": "random_shuffle", "n": "seed", "mad": 0, "seed": -5,
                               "spec": {"dtypes": ["float32"]}})
        assert code == qs.InvalidArgumentError.code and "seed must be a non-negative integer" in message
        code, message = error({**queue, "kind": "random_shuffle", "n": "huge", "mad": 0,
                               "spec": {"dtypes": ["float32"], "shapes": [[2 ** 40, 2 ** 40]]}})
        assert code == qs.ResourceExhaustedError.code and "cannot be allocated" in message
        code, message = error({"o": "accumulator", "n": "huge_acc", "shape": [2 ** 40, 2 ** 40], "dtype": "float32"})
        assert code == qs.ResourceExhaustedError.code and "cannot be allocated" in message
        created, _ = raw.call({"i": 1, **queue, "n": "ok", "spec": {"dtypes": ["float32"]}})
        assert "e" not in created
        code, message = error({"o": "enqueue", "n": "ok", "a": [["<f4", [1] * 65]]}, b"\0" * 4)
        assert code == qs.InvalidArgumentError.code and "malformed array descriptor" in message
    finally:
        raw.close()
    _still_serves(local_server.target)


def test_a_header_is_bounded_before_and_while_it_is_parsed():
    from queueserver.wire import MAX_HEADER_BYTES, FrameReader

    frames, bad, fatal = [], [], []
    reader = FrameReader(lambda h, b: frames.append(h), lambda e, h: bad.append(e), fatal.append)
    # 200k empty arrays in one array: too many elements for a header (each costs a Python object).
    many = msgpack.packb([[]] * 200_000)
    reader.feed(PREFIX.pack(len(many), 0) + many)
    assert not frames and bad and "malformed frame header" in str(bad[0])
    # A header over the size limit is refused before anything is parsed, and ends the stream.
    reader.feed(PREFIX.pack(MAX_HEADER_BYTES + 1, 0) + b"\x80" * 64)
    assert fatal and "frame header of" in str(fatal[0])


def test_a_half_sent_frame_pins_about_what_arrived_not_what_it_announced():
    from queueserver.wire import FrameReader

    def resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    readers = [FrameReader(lambda h, b: None, lambda e, h: None, lambda e: None) for _ in range(5)]
    header = msgpack.packb({"i": 1, "o": "enqueue"})
    before = resident()
    for reader in readers:  # five connections each announce 200 MiB and send 1 KB
        reader.feed(PREFIX.pack(len(header), 200 * 1024 * 1024) + header + b"\1" * 1000)
    assert resident() - before < 50 * 1024 * 1024  # not the 1 GB announced


def test_before_its_token_a_client_may_send_only_a_small_hello_within_a_deadline():
    from support import RawConnection

    server = qs.Server.create_local_server(token="s3cret", hello_timeout_s=0.5)
    try:
        # A large frame before the hello: refused as over the pre-authentication limit, nothing buffered.
        raw = RawConnection(server.target)
        raw.sock.sendall(PREFIX.pack(100, 10 * 1024 * 1024))
        reply, _ = raw.reply()
        assert reply["e"][0] == qs.ResourceExhaustedError.code and "over the limit of 65536 bytes" in reply["e"][1]
        raw.close()
        # Silent after connecting: closed at the deadline, told why.
        raw = RawConnection(server.target)
        reply, _ = raw.reply()
        assert reply["e"][0] == qs.UnauthenticatedError.code and "no hello with the token within 0.5 s" in reply["e"][1]
        assert raw.sock.recv(1) == b""  # and closed
        raw.close()
        # With the token, large frames are fine and the deadline does not apply.
        with qs.connect(server.target, token="s3cret") as c:
            q = c.fifo_queue("big", 2, [np.uint8], [[1 << 20]])
            q.enqueue(np.ones(1 << 20, np.uint8))
            assert q.dequeue(timeout=5).sum() == 1 << 20
    finally:
        server.stop()
