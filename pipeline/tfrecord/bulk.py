"""``read_tfrecord_examples``: whole TFRecord files of Examples straight into stacked arrays.

An uncompressed file is memory-mapped, runs of equal-length records are framed with one array
comparison of their headers (each data CRC is still checked, one native call per record), and each
feature of a run is copied once, as a strided view of the file, into its output. GZIP/ZLIB files
are inflated (by :mod:`pipeline.inflate`) in a thread running one block ahead while each block's records are framed and parsed, straight into outputs sized from the
GZIP trailer. Anything irregular (a bad CRC, a truncated file, an odd stream) sends the file
through ``TFRecordReader``, so errors are TensorFlow's.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from queueserver.errors import DataLossError, InvalidArgumentError
from pipeline import inflate
from pipeline.textline import _check_compression

from .example import (
    FixedLenFeature,
    SparseTensor,
    _checked_features,
    _feature_kinds,
    _parse_rows_fast,
    parse_example,
)
from .framing import _HEADER, TFRecordReader, _frame, _Irregular

__all__ = ["read_tfrecord_examples"]


# ------------------------------------------------------------------------------------------------
# Whole files straight to arrays
# ------------------------------------------------------------------------------------------------
# Uncompressed files are mapped whole (each value is then copied once, into its array); GZIP/ZLIB
# files are inflated in blocks of this size by a thread that runs ahead of the parser (zlib
# releases the GIL while it inflates).
_INFLATE_BLOCK = 1 << 21
_UNIFORM_MIN = 2  # a run of equal records shorter than this is parsed by the general path


def _compressed_blocks(path: str, compression_type: str, block: int) -> Iterator[bytes]:
    """Inflate a GZIP/ZLIB file in ~``block``-byte pieces (concatenated GZIP members included).

    Few, large inflate calls: the thread running this needs the GIL back after each one, and
    the parser holding it can delay that by a switch interval.
    """
    wbits = inflate.wbits_for(compression_type)
    new = inflate.decompressobj
    with open(path, "rb") as f:
        d = new(wbits)
        pieces, have, held = [], 0, False
        while True:
            if d.unconsumed_tail:
                data = d.unconsumed_tail
            elif held:  # python-isal may keep output back from a call cut at the limit
                data = b""
            else:
                data = (d.unused_data if d.eof else b"") or f.read(block)
                if d.eof:
                    if not data:
                        break  # the stream ended with a complete member
                    d = new(wbits)  # another GZIP member follows
            if not data and not held:
                if f.tell():
                    raise _Irregular("truncated compressed stream")
                break  # an empty file is an empty stream
            try:
                out = d.decompress(data, block)
            except inflate.ERRORS as e:  # the exact reader words it
                raise _Irregular(str(e)) from None
            held = len(out) == block
            if out:
                pieces.append(out)
                have += len(out)
                if have >= block:
                    yield b"".join(pieces) if len(pieces) > 1 else pieces[0]
                    pieces, have = [], 0
        if pieces:
            yield b"".join(pieces)


def _read_ahead(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """Produce ``blocks`` in a background thread, one block ahead of the consumer."""
    import queue
    import threading

    q: "queue.Queue" = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: tuple) -> bool:
        # Never block for good: the consumer may have stopped (an exception) and gone away.
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for b in blocks:
                if not put(("block", b)):
                    return
            put(("end", None))
        except BaseException as e:  # handed to the consumer, raised there
            put(("error", e))

    t = threading.Thread(target=work, name="tfrecord-inflate", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        t.join()


def _concat_parsed(parts: list[tuple[dict, int]], features: Mapping[str, Any]) -> dict:
    """Stack per-block results in order (dense: concatenated; sparse: rows renumbered)."""
    if len(parts) == 1:
        return parts[0][0]
    out: dict[str, Any] = {}
    for name, sp in features.items():
        if isinstance(sp, FixedLenFeature):
            out[name] = np.concatenate([d[name] for d, _ in parts])
            continue
        indices, values, base, width = [], [], 0, 0
        for d, n in parts:
            st = d[name]
            idx = st.indices.copy()
            idx[:, 0] += base
            indices.append(idx)
            values.append(st.values)
            base += n
            width = max(width, int(st.dense_shape[1]))
        out[name] = SparseTensor(np.concatenate(indices), np.concatenate(values), np.array([base, width], np.int64))
    return out


def _parse_general(recs: list[bytes], features: Mapping[str, Any], path: str, first: int) -> dict:
    try:
        return parse_example(recs, features)
    except InvalidArgumentError as e:
        i = first + int(e.details.get("record", 0))
        raise InvalidArgumentError(f"{e} (file {path}, record {i})", **{**e.details, "record": i, "path": path}) from None


def _map_file(path: str) -> Any:
    """An uncompressed file's bytes without copying them: a read-only ``mmap`` (pre-faulted).

    Mapping the page cache skips the copy ``read()`` makes (and the page faults of the fresh
    buffer it copies into, most of the cost of reading at these sizes); every value still gets
    copied exactly once, into its output array. Where mapping is not possible (an empty file, a
    platform without these flags) the file is read into one numpy buffer instead.
    """
    import mmap

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            try:
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                return mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
            except (AttributeError, TypeError, ValueError, OSError):  # pragma: no cover - not Linux
                pass
        return f.read()


class _Assembler:
    """Collects one file's parsed parts in record order, writing dense runs into preallocated arrays.

    A compressed file is parsed block by block while the next block inflates; stacking the
    blocks' arrays at the end would be one more full copy (into fresh, page-faulting memory) after
    the last block, on nobody else's time. When the record count can be estimated (a GZIP
    trailer's size over the first run's record stride), each dense part is copied straight into
    its final place instead. Anything that does not fit the estimate (a sparse feature, records
    parsed by the general path, more records than estimated) ends the preallocation: what was
    gathered becomes one part and the rest are kept as parts, so order and values never change.
    """

    def __init__(self, parts: list, capacity_bytes: int) -> None:
        self.parts = parts
        self.capacity_bytes = capacity_bytes  # 0: no estimate, keep parts
        self.arrays: dict[str, np.ndarray] | None = None
        self.rows = 0  # rows preallocated in each of ``arrays``
        self.filled = 0

    def add(self, got: dict, k: int, stride: int = 0) -> None:
        if self.arrays is None and self.capacity_bytes and stride:
            cap = self.capacity_bytes // stride
            if cap >= k and all(isinstance(a, np.ndarray) for a in got.values()):
                self.arrays = {name: np.empty((cap,) + a.shape[1:], a.dtype) for name, a in got.items()}
                self.rows = cap
            self.capacity_bytes = 0  # one attempt per file
        arrays = self.arrays
        if arrays is not None:
            fits = self.filled + k <= self.rows and all(
                isinstance(a, np.ndarray) and a.dtype == arrays[name].dtype and a.shape[1:] == arrays[name].shape[1:]
                for name, a in got.items()
            )
            if fits and arrays.keys() == got.keys():
                for name, a in got.items():
                    arrays[name][self.filled : self.filled + k] = a
                self.filled += k
                return
            self.close()
        self.parts.append((got, k))

    def close(self) -> None:
        """Hand over what was gathered as one part (exactly sized) and stop preallocating."""
        arrays, self.arrays, self.capacity_bytes = self.arrays, None, 0
        if arrays is None or not self.filled:
            return
        n = self.filled
        self.parts.append(({name: a if n == self.rows else a[:n].copy() for name, a in arrays.items()}, n))


def _gzip_size_hint(path: str, comp: str) -> int:
    """The uncompressed size a single-member GZIP file states in its trailer (0 if unknown)."""
    if comp != "GZIP":
        return 0
    size = os.path.getsize(path)
    if size < 18:
        return 0
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        isize = int.from_bytes(f.read(4), "little")  # length mod 2**32
    return min(isize, 1032 * size)  # DEFLATE expands at most ~1032:1; a wild trailer is ignored


def _read_file_fast(path: str, features: Mapping[str, Any], kinds: dict, comp: str, parts: list) -> None:
    """Append ``(arrays, records)`` parts for one file; raises _Irregular for the exact path."""
    done = 0
    pending: list[bytes] = []  # records of short runs, parsed together by the general path
    sink = _Assembler(parts, _gzip_size_hint(path, comp))

    def flush() -> None:
        nonlocal done
        if pending:
            sink.add(_parse_general(pending, features, path, done), len(pending))
            done += len(pending)
            pending.clear()

    def parse_runs(buf: Any, runs: list[tuple[int, int, int, int]]) -> None:
        nonlocal done
        for first, length, k, stride in runs:
            if k >= _UNIFORM_MIN and length:
                try:
                    got = _parse_rows_fast(np.ndarray((k, length), np.uint8, buf, first, (stride, 1)), features, kinds)
                except InvalidArgumentError:
                    got = None  # e.g. a required feature missing: the general path names the record
                if got is not None:
                    flush()
                    sink.add(got, k, stride)
                    done += k
                    continue
            pending.extend(bytes(buf[o : o + length]) for o in range(first, first + k * stride, stride))

    if not comp:
        buf = _map_file(path)
        try:
            end, runs = _frame(buf)
            parse_runs(buf, runs)
            tail = len(buf) - end
        finally:
            if not isinstance(buf, bytes):
                try:
                    buf.close()
                except BufferError:  # a view is still alive (an exception is unwinding): GC closes it
                    pass
    else:
        # Each inflated block's complete records are framed and parsed while the thread inflates
        # the next; the bytes of a record cut by the block's end are carried into the next block.
        # A record longer than a block is gathered as a list and joined once it is whole, so a
        # huge record costs one copy, not one per block.
        carry: list[bytes] = []
        have = need = 0
        for block in _read_ahead(_compressed_blocks(path, comp, _INFLATE_BLOCK)):
            if carry:
                carry.append(block)
                have += len(block)
                if have < need:
                    continue
                buf = b"".join(carry)
            else:
                buf = block
            end, runs = _frame(buf)
            parse_runs(buf, runs)
            rest = buf[end:]
            carry, have = ([rest], len(rest)) if rest else ([], 0)
            # The carried record's full size, once its length field is there (a header alone first).
            need = _HEADER.unpack_from(rest)[0] + 16 if have >= 12 else 12
        tail = have
    flush()
    sink.close()
    if tail >= 12:
        raise _Irregular("truncated record")  # TFRecordReader words the error
    # Fewer than 12 bytes left: TensorFlow ends the input there without an error.


def read_tfrecord_examples(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    features: Mapping[str, Any],
    compression_type: str | None = "",
) -> dict:
    """Read whole TFRecord files of ``tf.train.Example`` records straight into stacked arrays.

    The result equals ``parse_example`` of every record of the files in order (what a
    ``TFRecordDataset(paths).batch(all).map(parse_example)`` would give), with both CRCs of every
    record checked. Records that share one length and layout (what ``encode_example`` of uniform
    data writes) are parsed a run at a time: the headers of a run are compared as one array, each
    data CRC is one native call, and each feature becomes one slice of the file's bytes copied into
    its output array. Other records go through the general parser, and a file with any corrupt or
    truncated record is re-read by :class:`TFRecordReader`, so errors are TensorFlow's.

    Args:
        paths: one file or a sequence of files.
        features: name -> :class:`FixedLenFeature` or :class:`VarLenFeature`.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"`` (GZIP/ZLIB are inflated by a thread
            running ahead of the parser).

    Returns:
        name -> array with a leading record dimension (a :class:`SparseTensor` for var-len
        features), as :func:`parse_example` returns for a batch.

    Raises:
        NotFoundError: a file does not exist.
        DataLossError: a corrupt or truncated record (TensorFlow's message and offset).
        InvalidArgumentError: a record that does not parse (naming the file and record index).

    Example:
        >>> spec = {"x": FixedLenFeature([784], np.float32), "y": FixedLenFeature([1], np.int64)}
        >>> arrays = read_tfrecord_examples("w4.tfrecord", spec)  # doctest: +SKIP
        >>> arrays["x"].shape  # doctest: +SKIP
        (20000, 784)
    """
    comp = _check_compression(compression_type)
    files: Sequence[Any] = [paths] if isinstance(paths, (str, bytes, os.PathLike)) else paths
    features = _checked_features(features)
    kinds = _feature_kinds(features)
    parts: list[tuple[dict, int]] = []
    for path in map(os.fspath, files):
        mark = len(parts)
        try:
            if not os.path.isfile(path):
                raise _Irregular("not a regular file")  # TFRecordReader raises the right error
            _read_file_fast(path, features, kinds, comp, parts)
        except (_Irregular, DataLossError) + inflate.ERRORS:
            # The exact reader finds and words the problem (or, for a stream that merely ends
            # inside a header, reads the same records without one).
            del parts[mark:]
            done = 0
            with TFRecordReader(path, compression_type=comp) as reader:
                while recs := reader.read_chunk(4096):
                    parts.append((_parse_general(recs, features, path, done), len(recs)))
                    done += len(recs)
    if not parts:
        return parse_example([], features)
    return _concat_parsed(parts, features)
