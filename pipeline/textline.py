"""Text line reader (TensorFlow's ``TextLineReader`` / ``TextLineDataset``) and the shared byte source.

``TextLineReader`` yields every line of a file as ``bytes`` without its line ending, with exactly
TensorFlow's rules (``InputBuffer::ReadLine``):

* lines end at ``\\n``; one ``\\r`` right before it (a ``\\r\\n`` ending) is removed too;
* empty lines inside the file are kept as ``b""``;
* a last line without a newline is still a line (its trailing ``\\r`` is removed), but a file that
  ends with ``\\n`` has no extra empty line after it.

With ``drop_cr=True`` (what ``TextLineDataset`` uses) it follows TensorFlow 2's
``TextLineDataset`` instead (``BufferedInputStream::ReadLine``): every ``\\r`` is removed from
its line, wherever it is, and a last line without a newline counts unless it holds only
``\\r`` bytes.

The module also holds ``ByteSource``, the buffered, optionally GZIP/ZLIB-decompressing byte stream
that every reader of this package (text, CSV, fixed-length, TFRecord) reads through, so the opening,
decompression, error and resume rules are written once; it inflates with :mod:`pipeline.inflate`
(ISA-L when installed).

Example:
    >>> with TextLineReader("my_test.csv", skip_header_lines=1) as reader:  # doctest: +SKIP
    ...     for line in reader:
    ...         print(line)
    b'1.,, 0'
"""

from __future__ import annotations

import io
import os
import threading
from typing import Any, Iterator

from queueserver.errors import DataLossError, InvalidArgumentError, NotFoundError

from . import inflate

__all__ = ["TextLineReader", "ByteSource", "check_on_error", "COMPRESSION_TYPES"]

#: Compression names TensorFlow accepts (``None`` is taken as ``""``).
COMPRESSION_TYPES = ("", "GZIP", "ZLIB")

# Reading in large blocks keeps the per-call Python overhead negligible next to the copy itself.
DEFAULT_BUFFER_SIZE = 1 << 20


def check_on_error(on_error: str) -> str:
    """Validate an ``on_error`` mode.

    Args:
        on_error: ``"raise"`` (stop with the error, like TensorFlow) or ``"skip"`` (drop the bad
            record, count it in the reader's ``bad_records`` and go on).

    Returns:
        The mode, unchanged.

    Raises:
        InvalidArgumentError: for any other value.
    """
    if on_error not in ("raise", "skip"):
        raise InvalidArgumentError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    return on_error


def _check_compression(compression_type: str | None) -> str:
    ct = "" if compression_type is None else str(compression_type).upper()
    if ct not in COMPRESSION_TYPES:
        raise InvalidArgumentError(
            f"compression_type must be one of '', 'GZIP', 'ZLIB'; got {compression_type!r}"
        )
    return ct


class ByteSource:
    """A buffered byte stream over one file, decompressing GZIP or ZLIB on the fly.

    Offsets (``tell``, ``seek``) always count *uncompressed* bytes, the same coordinates TensorFlow
    uses in its error messages. Seeking in a compressed file re-decompresses from the start and
    discards the bytes before the target (the only way with deflate streams).

    Args:
        path: the file to read.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        buffer_size: bytes read from the file per system call.
        offset: uncompressed byte offset to start at.

    Raises:
        NotFoundError: the file does not exist (the message names the path).
        InvalidArgumentError: unknown compression type.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        compression_type: str | None = "",
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        offset: int = 0,
    ) -> None:
        self.path = os.fspath(path)
        self.compression_type = _check_compression(compression_type)
        self.buffer_size = max(int(buffer_size), 1 << 12)
        try:
            self._file = open(self.path, "rb")
        except FileNotFoundError:
            raise NotFoundError(f"{self.path}; No such file or directory", path=self.path) from None
        except IsADirectoryError:
            raise InvalidArgumentError(f"{self.path} is a directory, not a file", path=self.path) from None
        self._pos = 0  # uncompressed offset of the next byte handed out
        self._pending = b""  # decompressed bytes not handed out yet
        self._pending_at = 0
        self._decomp: Any = None
        self._compressed_eof = False
        self._held = False  # the last inflate call was cut at its limit (see _inflate_more)
        if self.compression_type:
            self._new_decompressor()
        if offset:
            self.seek(offset)

    # -- plumbing -------------------------------------------------------------------------------
    def _new_decompressor(self) -> None:
        self._decomp = inflate.decompressobj(inflate.wbits_for(self.compression_type))

    def _inflate_more(self) -> bytes:
        """Return the next piece of decompressed data; b"" at the end of the stream."""
        limit = 4 * self.buffer_size  # bounded pieces: a highly compressible file cannot blow up memory
        while True:
            d = self._decomp
            if self._held and not d.unconsumed_tail:
                # python-isal may keep output back when a call was cut at the limit with all its
                # input taken (zlib would leave that in unconsumed_tail): collect it first.
                self._held = False
                out = self._decompress(d, b"", limit)
                if out:
                    self._held = len(out) == limit
                    return out
            if d.unconsumed_tail:
                data = d.unconsumed_tail
            elif d.eof and d.unused_data:
                # Concatenated GZIP members (what `cat a.gz b.gz` makes): start a new member.
                data = d.unused_data
                self._new_decompressor()
                d = self._decomp
            elif d.eof:
                return b""
            else:
                data = self._file.read(self.buffer_size)
                if not data:
                    if self._compressed_eof or d.eof:
                        return b""
                    self._compressed_eof = True
                    if self._file.tell() == 0:
                        return b""  # an empty file is an empty stream
                    raise DataLossError(
                        f"{self.path}: {self.compression_type} stream is truncated: the file ends at "
                        f"compressed byte {self._file.tell()} before the end of the compressed data "
                        f"(after {self._pos + len(self._pending) - self._pending_at} uncompressed bytes)",
                        path=self.path,
                        offset=self._pos,
                    )
            out = self._decompress(d, data, limit)
            self._held = len(out) == limit
            if out:
                return out

    def _decompress(self, d: Any, data: bytes, limit: int) -> bytes:
        try:
            return d.decompress(data, limit)
        except inflate.ERRORS as e:
            raise DataLossError(
                f"{self.path}: corrupt {self.compression_type} data near compressed byte "
                f"{self._file.tell()} (uncompressed offset {self._pos}): {e}",
                path=self.path,
                offset=self._pos,
            ) from None

    # -- public API -----------------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        """Read up to ``n`` bytes; fewer only at the end of the stream.

        Args:
            n: the number of bytes wanted.

        Returns:
            The bytes (``b""`` at the end).

        Raises:
            DataLossError: the compressed data is corrupt or truncated.
        """
        if n <= 0:
            return b""
        if not self.compression_type:
            data = self._file.read(n)
            self._pos += len(data)
            return data
        avail = len(self._pending) - self._pending_at
        if avail >= n:
            out = self._pending[self._pending_at : self._pending_at + n]
            self._pending_at += n
            self._pos += n
            return out
        pieces = [self._pending[self._pending_at :]] if avail else []
        have = avail
        self._pending, self._pending_at = b"", 0
        while have < n:
            piece = self._inflate_more()
            if not piece:
                break
            need = n - have
            if len(piece) > need:
                pieces.append(piece[:need])
                self._pending, self._pending_at = piece, need
                have = n
                break
            pieces.append(piece)
            have += len(piece)
        out = b"".join(pieces)
        self._pos += len(out)
        return out

    def read_block(self) -> bytes:
        """Read about one buffer's worth of bytes (whatever is cheapest); ``b""`` at the end."""
        if not self.compression_type:
            return self.read(self.buffer_size)
        if self._pending_at < len(self._pending):
            out = self._pending[self._pending_at :] if self._pending_at else self._pending
            self._pending, self._pending_at = b"", 0
        else:
            out = self._inflate_more()
        self._pos += len(out)
        return out

    def readinto(self, buf: Any) -> int:
        """Fill a writable buffer (e.g. a numpy array) as far as the stream allows.

        Args:
            buf: any writable object supporting the buffer protocol.

        Returns:
            The number of bytes written into ``buf``.
        """
        mv = memoryview(buf).cast("B")
        if not self.compression_type:
            got = 0
            while got < len(mv):
                k = self._file.readinto(mv[got:])
                if not k:
                    break
                got += k
            self._pos += got
            return got
        data = self.read(len(mv))
        mv[: len(data)] = data
        return len(data)

    def tell(self) -> int:
        """The uncompressed offset of the next byte ``read`` returns."""
        return self._pos

    def seek(self, offset: int) -> None:
        """Move to an uncompressed byte offset (re-decompressing for GZIP/ZLIB)."""
        offset = int(offset)
        if not self.compression_type:
            self._file.seek(offset)
            self._pos = offset
            return
        if offset < self._pos:
            self._file.seek(0)
            self._new_decompressor()
            self._compressed_eof = False
            self._held = False
            self._pending, self._pending_at, self._pos = b"", 0, 0
        while self._pos < offset:
            if not self.read(min(offset - self._pos, 4 * self.buffer_size)):
                break

    def size(self) -> int | None:
        """The file's size in bytes when uncompressed (``None`` for compressed files)."""
        if self.compression_type:
            return None
        return os.fstat(self._file.fileno()).st_size

    def close(self) -> None:
        """Close the file; further reads fail."""
        self._file.close()

    def __enter__(self) -> "ByteSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TextLineReader:
    """Read a text file line by line, like ``tf.TextLineReader`` / ``tf.data.TextLineDataset``.

    Each line comes out as ``bytes`` without its ``\\n`` or ``\\r\\n`` ending. The file is read in
    large blocks and split with C-level ``bytes.split``, so a whole block of lines costs a few
    calls, not a Python step per byte. ``read_chunk`` hands out lists of lines for vectorised
    consumers such as :func:`pipeline.csv.decode_csv`. Made without a path it is TensorFlow 1's
    queue-fed reader instead (``reader.read(filename_queue)``, :mod:`pipeline.queue_readers`).

    Args:
        path: the file.
        skip_header_lines: lines to drop at the start of the file (e.g. a CSV header).
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        buffer_size: bytes read per block.
        on_error: ``"raise"``, or ``"skip"`` to stop quietly at corrupt or truncated compressed
            data, counting it in ``bad_records`` (lines are only ever lost to broken compression).
        state: a dict from :meth:`get_state` to resume from.
        drop_cr: remove every ``\\r`` from the lines (TensorFlow 2's ``TextLineDataset``); by
            default only the one of a ``\\r\\n`` ending goes (``tf.compat.v1.TextLineReader``).

    Raises:
        NotFoundError: the file does not exist.

    Example:
        >>> r = TextLineReader("data.csv", skip_header_lines=1)  # doctest: +SKIP
        >>> r.read_chunk(2)  # doctest: +SKIP
        [b'1.,, 0', b'4., 5. , 1']
    """

    def __new__(cls, path: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Without a path (``TextLineReader(skip_header_lines=1)``): TensorFlow 1's reader of the
        files a queue names, ``key, value = reader.read(filename_queue)`` (see
        :mod:`pipeline.queue_readers`)."""
        if path is None:
            from pipeline.queue_readers import QueueFedTextLineReader

            return QueueFedTextLineReader(*args, **kwargs)
        return super().__new__(cls)

    def __getnewargs__(self) -> tuple:
        # A copy (or pickle) passes the path to __new__: without one it would make a queue-fed reader.
        return (self.path,)

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        skip_header_lines: int = 0,
        compression_type: str | None = "",
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        on_error: str = "raise",
        state: dict | None = None,
        drop_cr: bool = False,
    ) -> None:
        if skip_header_lines < 0:
            raise InvalidArgumentError(f"skip_header_lines must be >= 0, got {skip_header_lines}")
        self.path = os.fspath(path)
        self.skip_header_lines = int(skip_header_lines)
        self.compression_type = _check_compression(compression_type)
        self.buffer_size = int(buffer_size)
        self.on_error = check_on_error(on_error)
        self._drop_cr = bool(drop_cr)
        self.bad_records = 0
        self.records = 0  # lines handed out
        self._line_no = 0  # lines consumed, header lines included
        self._src: ByteSource | None = None
        self._lines: list[bytes] = []  # raw lines of the current block (a "\r" may end them)
        self._i = 0  # next line in self._lines
        self._has_cr = False
        self._block_base = 0  # offset of self._lines[0]
        self._partial: io.BytesIO | None = None  # a line not ended yet
        self._partial_last = b""  # its last byte so far
        self._first_stripped = False  # the block's first line came without its final "\r"
        self._eof = False
        self._pending_error: Exception | None = None  # raised by the next read_chunk
        self._open(0)
        if state is not None:
            self.set_state(state)

    def _open(self, offset: int) -> None:
        if self._src is not None:
            self._src.close()
        self._src = ByteSource(self.path, self.compression_type, self.buffer_size, offset)
        self._lines, self._i, self._eof = [], 0, False
        self._pending_error = None
        self._drop_partial()
        self._block_base = offset

    def _fill(self) -> bool:
        """Load the next block of complete lines; False at the end of the file."""
        # Where the partial line (if any) starts: every line of the current block was used.
        offset = self._block_base + self._consumed_bytes(len(self._lines))
        while not self._eof:
            assert self._src is not None  # opened in __init__, never unset
            try:
                data = self._src.read_block()
            except DataLossError:
                if self.on_error == "raise":
                    raise
                self.bad_records += 1
                data = b""
                self._drop_partial()  # the partial line before the damage cannot be trusted
            if not data:
                self._eof = True
                tail = self._finish_partial(b"")
                self._block_base = offset
                if self._drop_cr:  # TensorFlow 2: it counts unless it is only "\r"s (all removed)
                    self._has_cr = b"\r" in tail
                    return self._set_lines([tail] if tail.count(b"\r") < len(tail) else [])
                if self._first_stripped:  # its "\r" is cut already
                    return self._set_lines([tail] if tail else [])
                # TensorFlow: a last line without "\n" counts unless it is empty after the "\r" cut.
                if tail and tail != b"\r":
                    self._has_cr = tail.endswith(b"\r")
                    return self._set_lines([tail])
                return self._set_lines([])
            self._first_stripped = False
            if self._partial is not None:
                end = data.find(b"\n")
                if end < 0:  # the line goes on: keep the block aside, joined once at its end
                    self._keep_partial(data)
                    continue
                first = self._finish_partial(data[:end])
                rest = data[end + 1:]
                lines = rest.split(b"\n")
                lines.insert(0, first)
                self._has_cr = (b"\r" in first if self._drop_cr else first.endswith(b"\r")) or b"\r" in rest
            else:
                lines = data.split(b"\n")
                self._has_cr = b"\r" in data
            stripped = self._first_stripped
            self._keep_partial(lines.pop())
            if lines:
                self._block_base = offset
                self._first_stripped = stripped
                return self._set_lines(lines)
        return False

    def _set_lines(self, lines: list[bytes]) -> bool:
        self._lines, self._i = lines, 0
        return bool(lines)

    def _keep_partial(self, piece: bytes) -> None:
        """Add ``piece`` to the line not ended yet.

        Its blocks go into a ``BytesIO`` rather than being joined block by block (that made a long
        line cost the square of its length and three times its size in memory).
        """
        if not piece:
            return
        if self._partial is None:
            self._partial = io.BytesIO()
        self._partial.write(piece)
        self._partial_last = piece[-1:]

    def _finish_partial(self, end: bytes) -> bytes:
        """The line not ended yet, ended by ``end``; forget it as partial.

        ``BytesIO.getvalue()`` hands its buffer over without a copy, so a 256 MiB line is in memory
        once. A final ``"\r"`` is cut there (a truncate, not a copy of the line), which
        ``_first_stripped`` notes for the offsets and for ``read_chunk``.
        """
        self._first_stripped = False
        partial, self._partial = self._partial, None
        if partial is None:
            return end
        if end:
            partial.write(end)
        if (end[-1:] if end else self._partial_last) == b"\r":
            partial.truncate(partial.tell() - 1)
            self._first_stripped = True
        return partial.getvalue()

    def _drop_partial(self) -> None:
        self._partial, self._partial_last = None, b""

    def _consumed_bytes(self, k: int) -> int:
        """Bytes taken by the first ``k`` lines of the current block, endings included."""
        lines = self._lines
        cut = int(self._first_stripped and k > 0)  # the "\r" cut from the first line (see _finish_partial)
        if self._eof and k and k == len(lines):
            # The final line of a file has no "\n" after it.
            return sum(map(len, lines[:k])) + k - 1 + cut
        return sum(map(len, lines[:k])) + k + cut

    def _skip_header(self) -> None:
        while self._line_no < self.skip_header_lines:
            if self._i >= len(self._lines) and not self._fill():
                return
            take = min(self.skip_header_lines - self._line_no, len(self._lines) - self._i)
            self._i += take
            self._line_no += take

    def read_chunk(self, max_records: int, max_bytes: int | None = None) -> list[bytes]:
        """Return up to ``max_records`` next lines (fewer at the end; ``[]`` when done).

        Lines read before corrupt compressed data are returned first; the error is raised by the
        next call (as TensorFlow yields every line before it), so one large read returns what
        several small ones would.

        Args:
            max_records: the most lines to return.
            max_bytes: stop early, after whole blocks, once about this many bytes were read (a
                bound on memory; the lines returned are still the next ones in order).

        Returns:
            A list of lines as ``bytes``.

        Raises:
            DataLossError: corrupt compressed data (with ``on_error="raise"``).
        """
        if self._pending_error is not None:
            err, self._pending_error = self._pending_error, None
            raise err
        out: list[bytes] = []
        if self._line_no < self.skip_header_lines:
            self._skip_header()
        assert self._src is not None  # opened in __init__, never unset
        start = self._src.tell()
        while len(out) < max_records:
            if self._i >= len(self._lines):
                if out and max_bytes is not None and self._src.tell() - start >= max_bytes:
                    break
                try:
                    more = self._fill()
                except DataLossError as e:
                    if not out:
                        raise
                    self._pending_error = e  # the lines before it come out first
                    break
                if not more:
                    break
            j = min(len(self._lines), self._i + max_records - len(out))
            part = self._lines[self._i : j]
            if self._has_cr and self._drop_cr:
                if part:  # every "\r" goes: one replace over the lines, which it cannot re-split
                    part = b"\n".join(part).replace(b"\r", b"").split(b"\n")
            elif self._has_cr:
                keep = int(self._first_stripped and self._i == 0)  # already without its "\r"
                part = part[:keep] + [l[:-1] if l[-1:] == b"\r" else l for l in part[keep:]]
            if out:
                out.extend(part)
            else:
                out = part
            self._i = j
        self._line_no += len(out)
        self.records += len(out)
        return out

    def read_segment(self, max_records: int, max_bytes: int = 1 << 22) -> Any:
        """The next lines (at most ``max_records``) as a :class:`~pipeline.blocks.LinesBlock`.

        The same lines, errors and state as :meth:`read_chunk`; an uncompressed file's lines come
        as one piece of raw text (about ``max_bytes`` of whole lines, the reads after the first
        block), split into lines only if a consumer asks for them: a decoder such as
        ``decode_csv`` parses the text as it is. Compressed files, the header and a file's last
        line go through :meth:`read_chunk`.

        Returns:
            A ``LinesBlock`` (empty at the end of the file).
        """
        from .blocks import LinesBlock

        if self.compression_type or self._pending_error is not None:
            return LinesBlock.of(self.read_chunk(max_records, max_bytes))
        if self._line_no < self.skip_header_lines:
            self._skip_header()
        assert self._src is not None  # opened in __init__, never unset
        # Whatever the line path buffered is dropped: reading goes on from the next line's offset.
        start = self._block_base + self._consumed_bytes(self._i)
        if self._lines or self._partial is not None or self._eof or self._src.tell() != start:
            self._src.seek(start)
            self._lines, self._i, self._eof, self._first_stripped, self._has_cr = [], 0, False, False, False
            self._drop_partial()
            self._block_base = start
        want = max(int(max_bytes), 1 << 12)
        buf = _segment_buffer(want)
        pieces: list[Any] = []
        with memoryview(buf) as view:  # the lines are copied out once: the buffer is read into again
            while True:
                got = self._src.readinto(view[:want])
                cut = buf.rfind(b"\n", 0, got)
                if cut >= 0:
                    break
                if not got:  # the last line has no "\n": the line path applies the end-of-file rules
                    self._src.seek(start)
                    return LinesBlock.of(self.read_chunk(max_records, max_bytes))
                pieces.append(bytes(view[:got]))  # a line longer than a read: joined once, when it ends
            text = b"".join([*pieces, view[:cut]]) if pieces else bytes(view[:cut])
        n = _count_newlines(text) + 1
        if n > max_records:
            p = -1
            for _ in range(max_records):
                p = text.index(b"\n", p + 1)
            text, n = text[:p], max_records
        end = start + len(text) + 1
        if self._drop_cr and b"\r" in text:
            text = text.replace(b"\r", b"")  # removing every "\r" changes no line boundary
        self._src.seek(end)
        self._block_base = end
        self._line_no += n
        self.records += n
        return LinesBlock.of_text(text, n)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self.read_chunk(8192)
            if not chunk:
                return
            yield from chunk

    def get_state(self) -> dict:
        """A JSON-serialisable position: resume with ``TextLineReader(path, ..., state=state)``.

        Returns:
            ``{"offset": byte offset of the next line, "line": lines consumed (header included),
            "records": lines returned, "bad_records": count}``.
        """
        offset = self._block_base + self._consumed_bytes(self._i)
        return {
            "offset": int(offset),
            "line": self._line_no,
            "records": self.records,
            "bad_records": self.bad_records,
        }

    def set_state(self, state: dict) -> None:
        """Continue exactly after the last line counted in ``state`` (from :meth:`get_state`).

        Args:
            state: the dict :meth:`get_state` returned, possibly after a JSON round trip.
        """
        self._open(int(state["offset"]))
        self._line_no = int(state.get("line", 0))
        self.records = int(state.get("records", 0))
        self.bad_records = int(state.get("bad_records", 0))

    def close(self) -> None:
        """Close the file."""
        if self._src is not None:
            self._src.close()

    def __enter__(self) -> "TextLineReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SEGMENT_BUFFERS = threading.local()
# The largest segment buffer a thread keeps between reads (read_csv_columns reads 16 MiB blocks);
# a larger one, asked for by a caller's own block size, is made for that read and dropped.
_KEPT_SEGMENT_BUFFER_BYTES = 16 << 20


def _segment_buffer(size: int) -> bytearray:
    """A buffer of ``size`` bytes or more for a segment read: the calling thread's own, shared by
    its readers (a segment's text is copied out of it before the next read), so a long pass does
    not fault in fresh pages for every read. A thread keeps at most
    ``_KEPT_SEGMENT_BUFFER_BYTES``."""
    buf = getattr(_SEGMENT_BUFFERS, "buf", None)
    if buf is None or len(buf) < size:
        buf = bytearray(size)
        if size <= _KEPT_SEGMENT_BUFFER_BYTES:
            _SEGMENT_BUFFERS.buf = buf
    return buf


def _count_newlines(text: Any) -> int:
    """``text.count(b"\\n")``; for large texts numpy's vector compare, about 4x faster (a piece
    at a time: no temporary as large as the text)."""
    if len(text) < 1 << 16:
        return text.count(b"\n")
    import numpy as np

    u8 = np.frombuffer(text, np.uint8)
    step = 1 << 20
    return sum(int(np.count_nonzero(u8[i : i + step] == 10)) for i in range(0, len(u8), step))
