"""The wire: length-prefixed frames of a msgpack header plus raw array bytes.

A data-plane connection starts with the 4-byte preamble ``b"\\x00QS1"`` (a zero byte, so it can
never be mistaken for HTTP on the same port), then carries frames both ways::

    u32 header_len | u64 body_len | header (msgpack map) | body (array bytes, back to back)

Numeric arrays travel as ``[dtype.str, shape]`` in the header's ``"a"`` list with their bytes in the
body, so a 800 KB batch is never packed into msgpack; the receiver reads the body into one buffer it
allocated for exactly that size and views the arrays in it with ``np.frombuffer`` (no copy). String
arrays (numpy object arrays of ``bytes``) travel inside the header as ``["O", shape, [bytes...]]``.

Requests carry ``"i"`` (request id) and ``"o"`` (operation); replies carry ``"i"`` and either the
result fields or ``"e": [code, message, details]``. Pipelining is free: replies name their request.

Compact frames (``header_len == 0``) carry the commonest small calls without msgpack: a
one-element enqueue or dequeue on a queue whose elements are a fixed run of bytes
(:attr:`~queueserver.core.specs.ComponentSpec.fixed_layout`). The client first binds a handle
number of its choosing to the queue and the element layout it expects (a ``"bind"`` request,
answered by nothing; the server checks the layout against the queue on the first call), then sends::

    request: u8 op | u8 flags | u16 n | u32 handle | u64 request id | f64 timeout (NaN: none)
             | [u64 sequence, u64 low-water mark, with flag 1] | n x u64 acks | element
    reply:   u8 op | 7 pad | u64 request id | u64 delivery id (0 for an enqueue) | element

Flag 1 (``COMPACT_STAMPED``): an enqueue's stamp, the sequence number that, with the client id its
hello gave, lets the server apply a repeated call once, and the client's low-water mark (as a
msgpack enqueue's ``st``; see :mod:`queueserver.core.stamps`). Both fixed
parts are 24 bytes, and what follows comes in u64s, so the element's arrays start 8-byte aligned. Element bytes are in
the machine's order; a client uses compact frames only with a server of its own byte order. Errors
still come back as ordinary frames (``{"i": id, "e": ...}``), so one error path serves both.
"""

from __future__ import annotations

import math
import socket
import struct
import threading
from typing import Any, Callable, Sequence

import msgpack
import numpy as np

from queueserver.errors import InvalidArgumentError, QueueServerError, ResourceExhaustedError

PREAMBLE = b"\x00QS1"
PREFIX = struct.Struct("<IQ")
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# Bodies at least this big get a buffer of their own that the socket reads straight into.
_BIG_BODY = 64 * 1024
# A header is metadata (the bodies carry the data): one larger than this is refused before it is
# parsed, and its parse is bounded too, so a header cannot cost more than a few dozen times its
# size in Python objects (a 16 MiB header of empty arrays used to cost 1.2 GB).
MAX_HEADER_BYTES = 1024 * 1024
_HEADER_LIMITS = dict(max_array_len=1 << 17, max_map_len=1024, max_ext_len=0)
_SMALL_BUFFER = 256 * 1024

COMPACT_REQUEST = struct.Struct("<BBHIQd")   # op, flags, ack count, handle, request id, timeout
COMPACT_STAMPED = 1                          # flags: the enqueue's sequence number and low-water mark follow
COMPACT_REPLY = struct.Struct("<B7xQQ")      # op, request id, delivery id
COMPACT_ENQUEUE, COMPACT_DEQUEUE = 1, 2
COMPACT_MAX_ACKS = 0xFFFF
COMPACT_MAX_HANDLES = 65536  # per connection: each holds a reference to its queue on the server
# Larger elements gain nothing from compact frames (their bytes cost more than a header) and
# would leave the reader's small-frame buffer.
COMPACT_MAX_ELEMENT_BYTES = 1 << 20
_COMPACT = object()  # the "header" of a compact frame inside the reader
_COMPACT_FRAME = struct.Struct("<IQBBHIQd")  # PREFIX and COMPACT_REQUEST in one
_U64 = struct.Struct("<Q")
_STAMP = struct.Struct("<QQ")

# A Packer keeps an internal buffer and is not thread-safe; the server's thread and clients'
# loop threads of one process all encode frames, so each thread packs with its own.
_local = threading.local()


def _pack(header: dict) -> bytes:
    try:
        packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(header)
_DTYPES: dict = {}  # wire dtype strings already validated, to skip np.dtype() on the hot path
_DTYPE_NAMES: dict = {}  # little-endian or byte-order-free dtypes -> their wire string


def encode_arrays(arrays: Sequence[np.ndarray]) -> tuple[list, list, int]:
    """Describe arrays for a header and collect their body buffers.

    Returns:
        ``(descriptors, buffers, body_len)``; buffers are zero-copy views where the array is
        contiguous.
    """
    descriptors, buffers, total = [], [], 0
    for arr in arrays:
        if arr.dtype.kind == "O":
            descriptors.append(["O", list(arr.shape), [bytes(v) for v in arr.reshape(-1)]])
            continue
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr).reshape(arr.shape)  # ascontiguousarray makes 0-d 1-d
        dtype = arr.dtype
        name = _DTYPE_NAMES.get(dtype)
        if name is None:
            if dtype.byteorder == ">":
                arr = arr.astype(dtype.newbyteorder("<"))
            name = arr.dtype.str  # "<f4": a new string per call, hence the cache
            if arr.dtype is dtype and len(_DTYPE_NAMES) < 256:
                _DTYPE_NAMES[dtype] = name
        descriptors.append([name, list(arr.shape)])
        nbytes = arr.nbytes
        if nbytes:
            # A small array's bytes are copied (cheaper than a view, and joined with the header
            # anyway); a large one's are sent from the array itself.
            buffers.append(arr.tobytes() if nbytes < 512 else memoryview(arr).cast("B"))  # type: ignore[arg-type]
            total += nbytes
    return descriptors, buffers, total


def encode_frame(header: dict, arrays: Sequence[np.ndarray] = ()) -> list:
    """Build one frame as a list of buffers for ``transport.writelines`` (arrays are not copied)."""
    if arrays:
        descriptors, buffers, body_len = encode_arrays(arrays)
        header["a"] = descriptors
    else:
        buffers, body_len = [], 0
    head = _pack(header)
    if body_len < _BIG_BODY:
        # One small buffer: a single send, instead of a header segment followed by a tiny body one.
        return [b"".join([PREFIX.pack(len(head), body_len), head, *buffers])]
    return [PREFIX.pack(len(head), body_len) + head, *buffers]


def compact_layout(spec: Any) -> tuple | None:
    """The element layout a queue's compact frames use (a ``ComponentSpec``'s ``fixed_layout``),
    or None when its elements cannot travel compact (variable size, strings, over 1 MiB)."""
    layout = spec.fixed_layout
    if layout is None or sum(nbytes for _, _, nbytes in layout) > COMPACT_MAX_ELEMENT_BYTES:
        return None
    return layout


def encode_compact_request(op: int, rid: int, handle: int, timeout: float | None, acks: Sequence[int],
                           payload: bytes = b"", seq: int | None = None, low: int = 0) -> bytes:
    """One compact request frame (see the module notes); ``payload`` is the element's bytes,
    ``seq`` and ``low`` an enqueue's stamp sequence number and the client's low-water mark.

    Raises:
        InvalidArgumentError: more than ``COMPACT_MAX_ACKS`` acknowledgements, or a request id
            over 64 bits (the caller sends such a call the ordinary way).
    """
    t = math.nan if timeout is None else timeout
    n = len(acks)
    try:
        if not n and seq is None:
            return _COMPACT_FRAME.pack(0, COMPACT_REQUEST.size + len(payload), op, 0, 0, handle, rid, t) + payload
        head = COMPACT_REQUEST.pack(op, 0 if seq is None else COMPACT_STAMPED, n, handle, rid, t)
        if seq is not None:
            head += _STAMP.pack(seq, low)
        if n:
            head += struct.pack(f"<{n}Q", *acks)
    except struct.error as exc:
        raise InvalidArgumentError(f"cannot encode a compact request: {exc}") from None
    return PREFIX.pack(0, len(head) + len(payload)) + head + payload


def decode_compact_extras(body: bytearray, flags: int, n: int) -> tuple[tuple[int, int] | None, list[int], int]:
    """What follows a compact request's fixed part: its stamp's sequence number and low-water mark
    (or None), its ``n`` acknowledgements, and where its element starts.

    Raises:
        InvalidArgumentError: unknown flags, or a frame too short for what it declares.
    """
    if flags & ~COMPACT_STAMPED:
        raise InvalidArgumentError(f"malformed compact frame: unknown flags {flags:#x}")
    start = COMPACT_REQUEST.size + (_STAMP.size if flags & COMPACT_STAMPED else 0)
    offset = start + 8 * n
    if offset > len(body):
        raise InvalidArgumentError(f"malformed compact frame: it declares {n} acknowledgements"
                                   f"{' and a stamp' if flags else ''} but has {len(body)} bytes")
    stamp = _STAMP.unpack_from(body, COMPACT_REQUEST.size) if flags & COMPACT_STAMPED else None
    return stamp, (list(struct.unpack_from(f"<{n}Q", body, start)) if n else []), offset


def encode_compact_reply(op: int, rid: int, delivery: int, payload: bytes = b"") -> bytes:
    """One compact reply frame."""
    return PREFIX.pack(0, COMPACT_REPLY.size + len(payload)) + COMPACT_REPLY.pack(op, rid, delivery) + payload


def coalesce(buffers: list) -> list:
    """Join runs of small buffers into one, leaving large ones (array bodies) uncopied.

    Transports make a system call per buffer they are given; dozens of small replies written as
    one buffer cost one call instead of dozens.
    """
    if len(buffers) <= 1:
        return buffers
    out: list = []
    run: list = []
    for buf in buffers:
        if len(buf) >= _BIG_BODY:
            if run:
                out.append(b"".join(run))
                run = []
            out.append(buf)
        else:
            run.append(buf)
    if run:
        out.append(b"".join(run) if len(run) > 1 else run[0])
    return out


def encode_raw_frame(header: dict, body: Any) -> list:
    """Build a frame around an already-encoded body (``header["a"]`` describes it): forwarding."""
    head = _pack(header)
    prefix = PREFIX.pack(len(head), len(body)) + head
    return [prefix, body] if len(body) else [prefix]


def decode_arrays(descriptors: Any, body: bytearray | bytes) -> list[np.ndarray]:
    """Rebuild arrays from their header descriptors and the frame body (views, not copies).

    Raises:
        InvalidArgumentError: a descriptor is malformed or the body has the wrong length.
    """
    if not isinstance(descriptors, list):
        raise InvalidArgumentError("malformed frame: array list is not a list")
    out, offset = [], 0
    for d in descriptors:
        if type(d) is list and len(d) == 2 and d[1] == [] and d[0] in _DTYPES:
            dtype, shape, count = _DTYPES[d[0]], (), 1  # a scalar of a known dtype: nothing to check
        else:
            try:
                kind, shape = d[0], d[1]
                if (not isinstance(shape, list) or len(shape) > 64
                        or not all(isinstance(x, int) and x >= 0 for x in shape)):
                    raise ValueError(f"bad shape {shape!r}")
                count = math.prod(shape)
                if kind == "O":
                    values = d[2]
                    if not isinstance(values, list) or len(values) != count or not all(
                            isinstance(v, bytes) for v in values):
                        raise ValueError("string array values do not match its shape")
                    arr = np.empty(count, dtype=object)
                    arr[:] = values
                    out.append(arr.reshape(shape))
                    continue
                dtype = _DTYPES.get(kind)
                if dtype is None:
                    dtype = np.dtype(kind)
                    if dtype.kind not in "biufc" or dtype.fields is not None:
                        raise ValueError(f"dtype {kind!r} is not allowed")
                    if len(_DTYPES) < 256:
                        _DTYPES[kind] = dtype
            except (TypeError, ValueError, IndexError) as exc:
                raise InvalidArgumentError(f"malformed array descriptor {str(d)[:80]}: {exc}") from None
        nbytes = count * dtype.itemsize
        if offset + nbytes > len(body):
            raise InvalidArgumentError(f"malformed frame: arrays need more than the body's {len(body)} bytes")
        if count == 0:
            out.append(np.empty(shape, dtype=dtype))
        else:
            out.append(np.ndarray(shape, dtype, body, offset))  # a view of the body, in one call
        offset += nbytes
    if offset != len(body):
        raise InvalidArgumentError(f"malformed frame: arrays use {offset} bytes but the body has {len(body)}")
    return out


def set_nodelay(transport: Any) -> None:
    """Turn Nagle off: calls are answered one by one, so a small frame must never wait for an ACK."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (a Unix socket): nothing to turn off
            pass


def error_payload(exc: QueueServerError) -> list:
    """The ``"e"`` field of an error reply."""
    details = {k: v for k, v in exc.details.items() if isinstance(v, (int, float, str, bool))}
    return [exc.code, exc.message, details]


class FrameReader:
    """Incremental frame parser for a ``BufferedProtocol``: the socket reads into its buffers.

    Small frames are parsed out of one reusable buffer; a large body gets a buffer of its own that
    the socket fills directly, and that buffer becomes the arrays' memory.

    Args:
        on_frame: called with ``(header, body)`` for each complete frame whose header decoded.
        on_bad_frame: called with ``(error, header_or_None)`` for a frame that could not be
            decoded; parsing goes on with the next frame.
        on_fatal: called with an error when the stream cannot be parsed any further (limits).
        max_message_bytes: the largest header plus body accepted.
        on_compact: called with the body of each compact frame (``header_len == 0``); without it
            such a frame is a bad frame.
    """

    def __init__(self, on_frame: Callable[[dict, Any], None],
                 on_bad_frame: Callable[[QueueServerError, Any], None],
                 on_fatal: Callable[[QueueServerError], None], *,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 on_compact: Callable[[bytearray], None] | None = None) -> None:
        self._on_frame = on_frame
        self._on_compact = on_compact
        self._on_bad_frame = on_bad_frame
        self._on_fatal = on_fatal
        self._max = max_message_bytes
        self._max_header = min(MAX_HEADER_BYTES, max_message_bytes)
        self._buf = bytearray(_SMALL_BUFFER)
        self._start = 0
        self._end = 0
        self._big: tuple[Any, Any, QueueServerError | None] | None = None  # (header, body array, error)
        self._big_filled = 0
        self._dead = False
        self._paused = False

    def pause(self) -> None:
        """Hand out no more frames until :meth:`resume` (the bytes already read wait here)."""
        self._paused = True

    def resume(self) -> None:
        """Hand out the frames read while paused, and go on."""
        self._paused = False
        if self._big is None:
            self._parse()

    def set_limit(self, max_message_bytes: int) -> None:
        """Change the largest frame accepted (a server raises it once the client is authenticated)."""
        self._max = max_message_bytes
        self._max_header = min(MAX_HEADER_BYTES, max_message_bytes)

    def release(self) -> None:
        """The connection is gone: drop the buffers and the callbacks at once (they hold the
        connection, which holds this reader: without this only the cycle collector frees them)."""
        self._dead = True
        self._buf = bytearray(0)
        self._big = None
        self._on_frame = self._on_compact = None  # type: ignore[assignment]
        self._on_bad_frame = self._on_fatal = None  # type: ignore[assignment]

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next bytes from the socket go."""
        if self._dead:
            return memoryview(self._buf)[:_SMALL_BUFFER // 4]  # after a fatal error: read and drop
        if self._big is not None:
            return memoryview(self._big[1])[self._big_filled:]
        if self._end == len(self._buf):
            self._make_room(_SMALL_BUFFER // 4)
        return memoryview(self._buf)[self._end:]

    def feed(self, data: bytes) -> None:
        """Feed bytes that arrived some other way (a plain Protocol, a preamble's leftovers)."""
        view = memoryview(data)
        while view and not self._dead:
            target = self.get_buffer()
            n = min(len(target), len(view))
            target[:n] = view[:n]
            view = view[n:]
            self.buffer_updated(n)

    def buffer_updated(self, nbytes: int) -> None:
        """The socket wrote ``nbytes`` into the last buffer handed out."""
        if self._dead:
            return
        if self._big is not None:
            self._big_filled += nbytes
            header, body, bad = self._big
            if self._big_filled == len(body):
                self._big = None
                self._emit(header, body, bad)
            return
        self._end += nbytes
        self._parse()

    def _emit(self, header: Any, body: Any, bad: QueueServerError | None) -> None:
        if bad is not None:
            self._on_bad_frame(bad, None)
        elif header is _COMPACT:
            self._on_compact(body)  # type: ignore[misc]  # compact frames are parsed only with a handler
        else:
            self._on_frame(header, body)

    def _make_room(self, needed: int) -> None:
        """Move the unparsed bytes to the start of a buffer with ``needed`` bytes free after them."""
        pending = self._end - self._start
        size = len(self._buf)
        while size - pending < needed:
            size *= 2
        # A fresh buffer rather than a resize: the socket may still hold a view of the old one.
        new = bytearray(size)
        new[:pending] = memoryview(self._buf)[self._start:self._end]
        self._buf, self._start, self._end = new, 0, pending

    def _parse(self) -> None:
        while not self._dead and not self._paused:
            buf = self._buf
            avail = self._end - self._start
            if avail < PREFIX.size:
                break
            header_len, body_len = PREFIX.unpack_from(buf, self._start)
            if header_len > self._max_header:
                self._dead = True
                self._on_fatal(ResourceExhaustedError(
                    f"a frame header of {header_len} bytes is over the limit of {self._max_header} bytes"))
                return
            if header_len + body_len > self._max:
                self._dead = True
                self._on_fatal(ResourceExhaustedError(
                    f"message of {header_len + body_len} bytes is over the limit of {self._max} bytes"
                    " (the server's --max-message-bytes)"))
                return
            big = body_len >= _BIG_BODY
            needed = PREFIX.size + header_len + (0 if big else body_len)
            if avail < needed:
                if len(buf) - self._start < needed:
                    self._make_room(needed)
                break
            h0 = self._start + PREFIX.size
            bad = None
            if not header_len:
                header = _COMPACT
                if self._on_compact is None:
                    bad = InvalidArgumentError("malformed frame: empty header (compact frames are not accepted here)")
            else:
                try:
                    header = msgpack.unpackb(memoryview(buf)[h0:h0 + header_len], raw=False, strict_map_key=False,
                                             max_str_len=header_len, max_bin_len=header_len, **_HEADER_LIMITS)
                    if not isinstance(header, dict):
                        raise ValueError("the header is not a map")
                except Exception as exc:  # malformed msgpack of any kind
                    header, bad = None, InvalidArgumentError(f"malformed frame header: {exc}")
            b0 = h0 + header_len
            frame_len = needed if not big else needed + body_len
            if avail < frame_len:
                # A large body: give it its own buffer and let the socket fill the rest of it. The
                # buffer is left uninitialised (np.empty, not a zero-filled bytearray): its pages
                # take memory only when the bytes that land in them arrive, so a half-sent frame
                # pins what has arrived, not what it announced, and an honest one costs no copy.
                have = self._end - b0
                big_body = np.empty(body_len, np.uint8)
                big_body[:have] = memoryview(buf)[b0:self._end]
                self._start = self._end = 0
                self._big, self._big_filled = (header, big_body, bad), have
                return
            body = buf[b0:b0 + body_len] if body_len else bytearray()  # a bytearray slice is its own copy
            self._start += frame_len
            if header is _COMPACT and bad is None:
                self._on_compact(body)  # type: ignore[misc]  # the commonest frame, without _emit's hop
            else:
                self._emit(header, body, bad)
        if self._start == self._end:
            self._start = self._end = 0
            if len(self._buf) > _SMALL_BUFFER:  # one large header must not pin a large buffer for good
                self._buf = bytearray(_SMALL_BUFFER)
