"""File datasets: TextLineDataset, FixedLengthRecordDataset, TFRecordDataset, CsvDataset and
``Dataset.list_files``.

These wrap the synchronous readers of :mod:`pipeline.textline`, :mod:`pipeline.fixed_length`,
:mod:`pipeline.tfrecord` and :mod:`pipeline.csv.records`; no file format is parsed here. A
reader is iterable, has ``read_chunk(max_records)``, ``get_state()``, resumes from a state and
``close()``\\ s. Records move in chunks (one object array of bytes per ``read_chunk``), so
``TextLineDataset(f).batch(1024)`` never handles lines one by one.

Iterator states hold the file index, the reader's state at the start of the current chunk and
how many records of that chunk were consumed: resuming re-reads that chunk and drops the prefix.
"""

from __future__ import annotations

import glob
import os
from concurrent.futures import Future
from typing import Any, Callable, Sequence

import numpy as np

from pipeline.blocks import (FixedBlock, FramedBlock, LinesBlock, RecordBlock, ahead_executor, decode_ahead,
                             object_array)
from pipeline.fixed_length import FixedLengthRecordReader
from pipeline.textline import TextLineReader
from pipeline.tfrecord import TFRecordReader
from queueserver import errors

from . import structure
from .base import Dataset, DatasetIterator, autotune_parallelism
from .structure import Chunk, TensorSpec

_READ_SIZE = 1024  # records per read_chunk: large enough to amortise, small enough to start fast
# Block mode (a batch decoded by its map straight from the reader's bytes, see pipeline.blocks):
_BLOCK_BYTES = 64 << 20  # the most bytes of fixed-length records per read
_TEXT_BLOCK_LINES = 1 << 20  # the most lines per read (reads are bounded in bytes first)
_TEXT_BLOCK_BYTES = 4 << 20  # text per read: one native CSV parse serves many batches
_TFRECORD_BLOCK_RECORDS = 1 << 20  # the most TFRecord records per read (bounded in bytes first)
_TFRECORD_BLOCK_BYTES = 16 << 20
# A file's first TFRecord read is this large and each one after it as large as the file so far
# (reads double up to _TFRECORD_BLOCK_BYTES): the first read, which nothing overlaps, is short, and
# each read made ahead is about as long as the parse of the one before it.
_TFRECORD_FIRST_BYTES = 1 << 20
# CsvDataset reads _READ_SIZE records first, then 4x more per read up to this many: a chunk of plain
# lines (up to 128 bytes each) is parsed by pyarrow in one call, so large reads amortise that call.
_CSV_READ_MAX = 1 << 15
_CSV_READ_AHEAD = 1 << 12  # from reads this large, the next read is made ahead on a worker thread
#: TFRecord in block mode: the next read (framing, CRC checks, inflating) runs on the worker thread
#: while the current one's batches are parsed (tests switch it off to compare with reading in turn).
TFRECORD_READ_AHEAD = True


def _as_paths(filenames: Any) -> list[str]:
    if isinstance(filenames, (str, bytes, os.PathLike)):
        filenames = [filenames]
    if isinstance(filenames, np.ndarray):
        filenames = filenames.reshape(-1).tolist()
    paths = []
    for f in filenames:
        if isinstance(f, bytes):
            f = f.decode("utf-8")
        if not isinstance(f, (str, os.PathLike)):
            # TensorFlow's words: file names are strings (a list of ints is a common slip).
            kind = structure.leaf_spec(structure.normalize(f)).dtype_name if isinstance(
                f, (int, float, np.generic)) else type(f).__name__
            raise TypeError(f"The `filenames` argument must contain `tf.string` elements. Got `tf.{kind}` elements.")
        paths.append(os.fspath(f))
    return paths


def _compression(compression_type: str | None) -> str:
    c = (compression_type or "").upper()
    if c not in ("", "GZIP", "ZLIB"):
        raise ValueError(f"compression_type must be '', 'GZIP' or 'ZLIB', got {compression_type!r}")
    return c


class _FilesDataset(Dataset):
    """Records of a list of files, read in order with one reader at a time.

    Subclasses say how to open a reader. A ``Dataset`` of file names is accepted too (each name
    is expanded in turn), and ``num_parallel_reads`` interleaves files like TensorFlow does.
    """

    def __init__(self, filenames: Any, num_parallel_reads: int | None) -> None:
        self.__dict__["_spec"] = TensorSpec((), "string")
        self._delegate: Dataset | None = None
        if isinstance(filenames, Dataset):
            spec = filenames.element_spec
            if isinstance(spec, TensorSpec) and spec.dtype_name != "string":
                raise TypeError(f"The `filenames` argument must contain `tf.string` elements. Got "
                                f"`tf.{spec.dtype_name}` elements.")
            self._paths: list[str] = []
            self._delegate = self._per_file(filenames, num_parallel_reads)
            return
        self._paths = _as_paths(filenames)
        if num_parallel_reads not in (None, 1) and len(self._paths) > 1:
            from .sources import TensorSliceDataset

            names = TensorSliceDataset([p.encode("utf-8") for p in self._paths])
            self._delegate = self._per_file(names, num_parallel_reads)

    def _per_file(self, names: Dataset, num_parallel_reads: int | None) -> Dataset:
        one = self._single
        if num_parallel_reads in (None, 1):
            return names.flat_map(one)
        n = autotune_parallelism(num_parallel_reads)
        return names.interleave(one, cycle_length=n, block_length=1, num_parallel_calls=n)

    def _single(self, path: Any) -> Dataset:  # pragma: no cover - abstract
        raise NotImplementedError

    def _open(self, path: str, state: dict | None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _compute_spec(self) -> Any:
        return TensorSpec((), "string")

    def _block_read_size(self, batch_size: int) -> int:
        """Records per read in block mode (0: this format has no record blocks)."""
        return 0

    def _as_block(self, records: Any) -> RecordBlock:  # pragma: no cover - only where _block_read_size is
        raise NotImplementedError

    def _read_block(self, reader: Any, n: int, batch: int = 0) -> Any:
        """Block mode's read: the next ``n`` records (fewer is fine: the chunk's size is saved);
        ``batch``: the batch size the reads serve."""
        return reader.read_chunk(n)

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        if self._delegate is not None:
            return self._delegate._make_iter(ctx)
        return _FilesIterator(self)


class _Ahead:
    """A read made ahead of its turn: the reader's state before it (``start``), a Future of its
    records or of the error it raised, and the records it asked for (``size``, where that varies).
    The reader is the worker's until the Future is done."""

    __slots__ = ("start", "future", "size", "_pid")

    def __init__(self, start: dict, future: Future, size: int = 0) -> None:
        self.start, self.future, self.size = start, future, size
        self._pid = os.getpid()

    @property
    def forked(self) -> bool:
        """Made in the parent of this forked child: no thread here will end it (the reader's
        copy may be mid-read), so the read must be made again from ``start``."""
        return self._pid != os.getpid()

    def settle(self) -> None:
        """Wait until the worker is done with the reader (not in a forked child); the read's
        result or error is dropped: nobody asked for it yet, it is read again."""
        if self.forked:
            return
        try:
            self.future.result()
        except Exception:  # noqa: BLE001 - a read nobody asked for yet: it is read again
            pass


class _FilesIterator(DatasetIterator):
    """Records of ``ds``'s files, a reader chunk at a time.

    The chunk is kept as the reader returned it (a list of bytes, or fixed-length rows); elements
    and ``next_chunk`` cut the object array of it once. In block mode (:meth:`enable_blocks`, set
    by a batch whose ``map`` decodes record blocks), ``next_chunk`` hands out
    :class:`~pipeline.blocks.RecordBlock` slices of larger reads instead; the state is the same
    (a chunk's size is saved with it, so either mode restores the other's states).
    """

    chunked = True

    def __init__(self, ds: _FilesDataset) -> None:
        self._ds = ds
        self._file = 0
        self._reader: Any = None
        self._chunk_start: dict | None = None  # reader state before the buffered chunk
        self._chunk: Any = None  # the reader's records (None: no chunk buffered)
        self._n = 0  # records in the chunk
        self._objs: np.ndarray | None = None  # the chunk as an object array, once cut
        self._block: RecordBlock | None = None  # the chunk as a block, in block mode
        self._taken = 0
        self._read_size = _READ_SIZE
        self._block_read = 0  # > 0: block mode, records per read
        self._batch = 0  # block mode: the batch size (reads end at whole batches where they can)
        # Block mode: the next read, made ahead while this chunk's batches are served. Text: read
        # here once a decoder has parsed a whole segment, the parse of the next one running on the
        # worker thread (pipeline.blocks.decode_ahead). TFRecord: the read itself (framing, CRC
        # checks, inflating) runs on the worker thread, which has the reader until it is done.
        self._ahead: _Ahead | None = None

    def enable_blocks(self, batch_size: int) -> bool:
        """Switch ``next_chunk`` to record blocks (before anything is read); False if unsupported."""
        size = self._ds._block_read_size(batch_size)
        if not size or self._chunk is not None:
            return False
        self._block_read, self._batch = size, int(batch_size)
        return True

    def _open_reader(self, state: dict | None) -> None:
        path = self._ds._paths[self._file]
        try:
            self._reader = self._ds._open(path, state)
        except FileNotFoundError as e:
            self._file += 1  # an error moves past the file, so ignore_errors() can continue
            raise errors.NotFoundError(f"{path}; No such file or directory") from e
        except Exception:
            self._file += 1
            raise

    def _load(self) -> bool:
        """Makes sure an unconsumed record is buffered; False at the end of the last file."""
        while self._chunk is None or self._taken >= self._n:
            if self._file >= len(self._ds._paths):
                return False
            if self._reader is None:
                self._open_reader(None)
            if self._ahead is not None and self._ahead.forked:
                self._forked()
            if self._ahead is not None:  # read already (an error it raised comes out here)
                start = self._ahead.start
                try:
                    records = self._ahead.future.result()
                except Exception:
                    self._next_file()
                    raise
                self._ahead = None
            else:
                start = self._reader.get_state()
                try:
                    # The readers return the good records before a corrupt one first and raise on
                    # the next call, so errors surface at their own position in the stream (and
                    # one large read gives the records of several small ones).
                    if self._block_read:
                        records = self._ds._read_block(self._reader, self._block_read, self._batch)
                    else:
                        records = self._reader.read_chunk(self._read_size)
                except Exception:
                    self._next_file()  # move past the broken file, so ignore_errors() can go on
                    raise
            if len(records) == 0:
                self._next_file()
                continue
            done = self._block
            self._set_chunk(start, records, 0)
            if self._block_read:
                self._read_ahead(done, records)
        return True

    def _read_ahead(self, done: RecordBlock | None, records: Any) -> None:
        """Block mode, a chunk just loaded (``records``; ``done``: the one before it, as served):
        make the next read now, so that it overlaps with serving this chunk's batches. Its state
        and records (or its error) wait in ``_ahead`` for :meth:`_load`, so the stream, its errors
        and the iterator's states are those of reading it then.

        * Framed records (TFRecord): the read runs on the worker thread (the native inflate and
          the parse's array copies release the GIL), from the first chunk on.
        * Text, after a segment a decoder parsed whole (``done``): the read is made here and the
          same parse of the next segment starts on the worker (:func:`pipeline.blocks.decode_ahead`).
        """
        reader = self._reader
        if type(records) is FramedBlock:
            if not TFRECORD_READ_AHEAD:
                return
            start = reader.get_state()  # before the worker has the reader
            self._ahead = _Ahead(start, ahead_executor().submit(self._read_framed, done, reader))
            return
        if type(done) is not LinesBlock or not done.seg.recipes:
            return
        start, future = reader.get_state(), Future[Any]()
        try:
            nxt = self._ds._read_block(reader, self._block_read, self._batch)
        except Exception as e:  # noqa: BLE001 - raised by _load at its own position
            future.set_exception(e)
        else:
            future.set_result(nxt)
            if len(nxt):
                decode_ahead(done, self._ds._as_block(nxt))
        self._ahead = _Ahead(start, future)

    def _forked(self) -> None:
        """In a forked child, a read made ahead in the parent: the worker that had it is not in
        this process (the reader's copy may be mid-read). Reopen the file at the state before that
        read, which :meth:`_load` then makes here."""
        assert self._ahead is not None
        start, self._ahead = self._ahead.start, None
        self._reader = None  # the parent's worker had it: left as it is
        self._open_reader(start)

    def _read_framed(self, done: RecordBlock | None, reader: Any) -> Any:
        """On the worker: the next read and, once a decoder parsed a whole read (``done``'s),
        the same parse of this one (:meth:`~pipeline.blocks.FramedBlock.decode_like`)."""
        block = self._ds._read_block(reader, self._block_read, self._batch)
        if type(block) is FramedBlock and len(block):
            block.decode_like(done if type(done) is FramedBlock else None)
        return block

    def _wait_ahead(self) -> None:
        """Drops the read made ahead, once the worker is done with the reader."""
        if self._ahead is not None:
            self._ahead.settle()
            self._ahead = None

    def _set_chunk(self, start: dict | None, records: Any, taken: int) -> None:
        self._chunk_start, self._chunk, self._taken = start, records, taken
        self._n = 0 if records is None else len(records)
        self._objs = self._block = None

    def _objects(self) -> np.ndarray:
        if self._objs is None:
            self._objs = _object_array(self._chunk)
        return self._objs

    def _next_file(self) -> None:
        self._wait_ahead()
        if self._reader is not None:
            self._reader.close()
        self._reader = None
        self._set_chunk(None, None, 0)
        self._file += 1

    def __next__(self) -> Any:
        if not self._load():
            raise StopIteration
        self._taken += 1
        return self._objects()[self._taken - 1]

    def next_chunk(self, max_n: int) -> Chunk | None:
        if not self._load():
            return None
        i = self._taken
        j = min(self._n, i + max_n)
        self._taken = j
        if self._block_read:
            if self._block is None:
                self._block = self._ds._as_block(self._chunk)
            return Chunk(j - i, self._block if (i, j) == (0, self._n) else self._block.slice(i, j))
        return Chunk(j - i, self._objects()[i:j])

    def close(self) -> None:
        self._wait_ahead()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def get_state(self) -> dict:
        if self._chunk is None:
            return self._state(file=self._file, reader=None if self._reader is None else self._reader.get_state(),
                               read_size=self._read_size, taken=0, chunk=False)
        # Re-reading read_size records from the chunk's start gives the chunk again.
        size = self._n if self._block_read else self._read_size
        return self._state(file=self._file, reader=self._chunk_start, read_size=size, taken=self._taken, chunk=True)

    def set_state(self, state: dict) -> None:
        self._check(state)
        self.close()
        self._set_chunk(None, None, 0)
        self._file = int(state["file"])
        if not self._block_read:
            self._read_size = int(state["read_size"])
        if self._file >= len(self._ds._paths):
            return
        if state["reader"] is not None:
            self._open_reader(state["reader"])
        if state["chunk"]:
            records = self._reader.read_chunk(int(state["read_size"]))
            self._set_chunk(state["reader"], records, int(state["taken"]))


def _object_array(records: Any) -> np.ndarray:
    """A reader's chunk as an object array of bytes records."""
    if isinstance(records, RecordBlock):
        return records.materialize()
    if isinstance(records, np.ndarray):
        if records.dtype == object:
            return records
        if records.ndim == 2:  # fixed-length records as uint8 rows
            return FixedBlock(records).materialize()
    return object_array(list(records))


def _reader_with_state(cls: Callable, path: str, state: dict | None, **kwargs: Any) -> Any:
    """Opens a reader at ``state`` with whichever resume spelling the reader supports."""
    if state is None:
        return cls(path, **kwargs)
    try:
        return cls(path, state=state, **kwargs)
    except TypeError:
        reader = cls(path, **kwargs)
        reader.set_state(state)
        return reader


# --------------------------------------------------------------------------- the datasets
class TextLineDataset(_FilesDataset):
    """The lines of text files as bytes, without line endings, split at ``\\n``; as in TensorFlow 2's
    ``TextLineDataset``, every ``\\r`` is removed from the lines, not only a ``\\r\\n`` ending's
    (``TextLineReader``, like ``tf.compat.v1.TextLineReader``, keeps the others).

    Args:
        filenames: a path, a list of paths, or a Dataset of paths.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        buffer_size: accepted for compatibility (reads are chunked).
        num_parallel_reads: interleave this many files at once.
        skip_header_lines: drop this many lines at the start of each file.

    Raises:
        ValueError: for an unknown compression type.

    Example:
        >>> ds = TextLineDataset("data.csv").skip(1).batch(1024)  # doctest: +SKIP
    """

    def __init__(self, filenames: Any, compression_type: str | None = None, buffer_size: int | None = None,
                 num_parallel_reads: int | None = None, skip_header_lines: int = 0) -> None:
        self._compression = _compression(compression_type)
        self._skip_header = int(skip_header_lines)
        super().__init__(filenames, num_parallel_reads)

    def _single(self, path: Any) -> Dataset:
        return TextLineDataset(path, self._compression, skip_header_lines=self._skip_header)

    def _open(self, path: str, state: dict | None) -> Any:
        return _reader_with_state(TextLineReader, path, state, skip_header_lines=self._skip_header,
                                  compression_type=self._compression, drop_cr=True)

    def _block_read_size(self, batch_size: int) -> int:
        # Lines are decoded a segment at a time (one native CSV call for many batches).
        return max(batch_size, _TEXT_BLOCK_LINES)

    def _as_block(self, records: Any) -> RecordBlock:
        return records if isinstance(records, LinesBlock) else LinesBlock.of(records)

    def _read_block(self, reader: Any, n: int, batch: int = 0) -> Any:
        # Raw text of whole lines, split only if the decoder needs the lines (pipeline.blocks).
        return reader.read_segment(n, max_bytes=_TEXT_BLOCK_BYTES)


class FixedLengthRecordDataset(_FilesDataset):
    """Fixed-size records of binary files (e.g. CIFAR-10), as bytes.

    Args:
        filenames: a path, a list of paths, or a Dataset of paths.
        record_bytes: bytes per record.
        header_bytes: bytes to skip at the start of each file.
        footer_bytes: bytes to ignore at the end of each file.
        buffer_size: accepted for compatibility.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        num_parallel_reads: interleave this many files at once.

    Raises:
        ValueError: if ``record_bytes`` < 1.

    Example:
        >>> ds = FixedLengthRecordDataset("cifar.bin", record_bytes=3073)  # doctest: +SKIP
    """

    def __init__(self, filenames: Any, record_bytes: int, header_bytes: int | None = None,
                 footer_bytes: int | None = None, buffer_size: int | None = None,
                 compression_type: str | None = None, num_parallel_reads: int | None = None,
                 hop_bytes: int | None = None) -> None:
        if int(record_bytes) < 1:
            raise ValueError(f"record_bytes must be positive, got {record_bytes}")
        self._opts: dict[str, Any] = dict(
            record_bytes=int(record_bytes),
            header_bytes=int(header_bytes or 0),
            footer_bytes=int(footer_bytes or 0),
            hop_bytes=int(hop_bytes or 0),
            compression_type=_compression(compression_type),
        )
        super().__init__(filenames, num_parallel_reads)

    def _single(self, path: Any) -> Dataset:
        o = self._opts
        return FixedLengthRecordDataset(path, o["record_bytes"], o["header_bytes"], o["footer_bytes"],
                                        compression_type=o["compression_type"], hop_bytes=o["hop_bytes"])

    def _open(self, path: str, state: dict | None) -> Any:
        opts = dict(self._opts)
        if not opts["hop_bytes"]:
            del opts["hop_bytes"]
        return _reader_with_state(FixedLengthRecordReader, path, state, **opts)

    def _block_read_size(self, batch_size: int) -> int:
        # One read per batch where it fits (the rows are the batch), bounded in bytes.
        return max(1, min(batch_size, _BLOCK_BYTES // self._opts["record_bytes"]))

    def _as_block(self, records: Any) -> RecordBlock:
        return FixedBlock(records)


class TFRecordDataset(_FilesDataset):
    """The records of TFRecord files, as bytes (CRCs checked by the reader).

    Args:
        filenames: a path, a list of paths, or a Dataset of paths.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        buffer_size: accepted for compatibility.
        num_parallel_reads: interleave this many files at once.

    Raises:
        ValueError: for an unknown compression type.

    Example:
        >>> ds = TFRecordDataset(["a.tfrecord", "b.tfrecord"]).batch(256)  # doctest: +SKIP
    """

    def __init__(self, filenames: Any, compression_type: str | None = None, buffer_size: int | None = None,
                 num_parallel_reads: int | None = None) -> None:
        self._compression = _compression(compression_type)
        super().__init__(filenames, num_parallel_reads)

    def _single(self, path: Any) -> Dataset:
        return TFRecordDataset(path, self._compression)

    def _open(self, path: str, state: dict | None) -> Any:
        return _reader_with_state(TFRecordReader, path, state, compression_type=self._compression)

    def _block_read_size(self, batch_size: int) -> int:
        # Records framed where they lie (the file's map, or the inflated buffer), many batches a read.
        return max(batch_size, _TFRECORD_BLOCK_RECORDS)

    def _as_block(self, records: Any) -> RecordBlock:
        return records if isinstance(records, FramedBlock) else FramedBlock.of(records)

    def _read_block(self, reader: Any, n: int, batch: int = 0) -> Any:
        state = reader.get_state()
        offset, done = int(state["offset"]), int(state["records"])
        size = min(max(_TFRECORD_FIRST_BYTES, offset), _TFRECORD_BLOCK_BYTES)
        if batch > 1 and done and offset:
            # End the read at a whole batch of the file (records of one size: a batch is then
            # rows of one read, parsed with it), by the record size so far; the bytes still bound it.
            end = (done + int(size * done / offset)) // batch * batch
            if end > done:
                n = min(n, end - done)
                size += size // 4
        return reader.read_block(n, max_bytes=size)


class CsvDataset(Dataset):
    """Rows of CSV files as tuples of scalars, one per column (``tf.data.experimental.CsvDataset``).

    Records follow TensorFlow's CSV rules, not lines: a quoted field may hold delimiters, newlines
    and ``""``; ``\\n``, ``\\r`` and ``\\r\\n`` end records; an empty line is one empty field. Files
    are read a chunk of records at a time (:class:`pipeline.csv.records.CsvRecordReader`); chunks of
    plain lines are decoded by the vector/arrow paths of :mod:`pipeline.csv`. A bad record raises
    ``InvalidArgumentError`` (TensorFlow's message plus file and line) at its own position, and
    only that record is lost: the rows before and after it still come, so ``ignore_errors()``
    drops exactly the bad records.

    Args:
        filenames: a path, a list of paths, or a Dataset of paths.
        record_defaults: one default per (selected) column; its dtype is the column's dtype, an
            empty default makes the column required.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        buffer_size: bytes per read (positive; None for the default).
        header: skip the first record of each file (an error if the file has none).
        field_delim: the field separator.
        use_quote_delim: treat ``"`` as quoting.
        na_value: a field value that means "missing".
        select_cols: indices of the columns to keep.
        exclude_cols: indices of the columns to drop (instead of ``select_cols``).

    Raises:
        InvalidArgumentError: bad arguments (TensorFlow's messages): both ``select_cols`` and
            ``exclude_cols``, indices not strictly increasing or negative, ``select_cols`` of the
            wrong length, ``buffer_size`` not positive, a bad delimiter or default.

    Example:
        >>> ds = CsvDataset("data.csv", [[0.0]] * 10 + [[0]], header=True)  # doctest: +SKIP
    """

    def __init__(self, filenames: Any, record_defaults: Sequence[Any], compression_type: str | None = None,
                 buffer_size: int | None = None, header: bool = False, field_delim: str = ",",
                 use_quote_delim: bool = True, na_value: str = "", select_cols: Sequence[int] | None = None,
                 exclude_cols: Sequence[int] | None = None) -> None:
        from pipeline.csv.defaults import _parse_defaults

        if buffer_size is not None and int(buffer_size) <= 0:
            raise errors.InvalidArgumentError("buffer_size should be positive")
        self._cols = _parse_defaults(record_defaults)
        select = _csv_indices("select_cols", select_cols)
        exclude = _csv_indices("exclude_cols", exclude_cols)
        if select and exclude:
            raise errors.InvalidArgumentError("Either select_cols or exclude_cols should be empty")
        if select and len(select) != len(self._cols):
            raise errors.InvalidArgumentError("select_cols should match output size")
        delim = field_delim.encode() if isinstance(field_delim, str) else bytes(field_delim)
        if len(delim) != 1:
            raise errors.InvalidArgumentError("field_delim should be only 1 char")
        na = na_value.encode() if isinstance(na_value, str) else bytes(na_value)
        self._opts: dict[str, Any] = dict(
            cols=self._cols, delim=delim[0], use_quote=bool(use_quote_delim), na=na,
            select=select or None, exclude=exclude or None, header=bool(header),
            compression_type=_compression(compression_type), buffer_size=buffer_size,
        )
        self._args = (record_defaults, compression_type, buffer_size, header, field_delim, use_quote_delim,
                      na_value, select_cols, exclude_cols)
        self._delegate: Dataset | None = None
        self._paths: list[str] = []
        if isinstance(filenames, Dataset):
            self._delegate = filenames.flat_map(lambda p: CsvDataset(p, *self._args))
        else:
            self._paths = _as_paths(filenames)

    def _open(self, path: str, state: dict | None) -> Any:
        from pipeline.csv.records import CsvRecordReader

        return CsvRecordReader(path, state=state, **self._opts)

    def _compute_spec(self) -> Any:
        return tuple(TensorSpec((), c.kind) for c in self._cols)

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        if self._delegate is not None:
            return self._delegate._make_iter(ctx)
        return _CsvIterator(self)


def _csv_indices(name: str, cols: Sequence[int] | None) -> list[int]:
    """``select_cols`` / ``exclude_cols`` checked as TensorFlow's CSVDataset kernel does."""
    out = [] if cols is None else [int(c) for c in cols]
    if any(out[i - 1] >= out[i] for i in range(1, len(out))):
        raise errors.InvalidArgumentError(f"{name} should be strictly increasing indices")
    if out and out[0] < 0:
        raise errors.InvalidArgumentError(f"{name} should be non-negative indices")
    return out


def _grown(size: int) -> int:
    """The records a CsvDataset read after one of ``size`` asks for."""
    return min(size * 4, _CSV_READ_MAX)


class _CsvIterator(DatasetIterator):
    """Rows of a CsvDataset: one reader at a time, a decoded chunk of records buffered.

    A chunk holds its good rows and the positions of its bad records; rows are served in record
    order and a bad record raises its error when its turn comes (then the rows after it follow).
    The state is the file index, the reader's state before the buffered chunk and the records of
    that chunk already consumed (good and bad): resuming re-reads the chunk and skips them.
    """

    chunked = True

    def __init__(self, ds: CsvDataset) -> None:
        self._ds = ds
        self._file = 0
        self._reader: Any = None
        self._before: dict | None = None
        self._chunk: Any = None  # CsvChunk
        # Records asked for by the buffered chunk's read (the next read's, when none is buffered);
        # each read asks 4x more than the one before, up to _CSV_READ_MAX. Saved in the state, so
        # a resumed iterator re-reads the same chunk and then grows as the first one would have.
        self._size = _READ_SIZE
        self._rec = 0  # records of the chunk consumed
        self._row = 0  # good rows of the chunk consumed
        self._bad_i = 0  # bad records of the chunk consumed
        # The next read, made on the worker thread while this chunk is served (pyarrow's parse
        # releases the GIL); its chunk or error comes out in _load.
        self._ahead: _Ahead | None = None

    def _wait_ahead(self) -> None:
        """Drops the read made ahead, once the worker is done with the reader."""
        if self._ahead is not None:
            self._ahead.settle()
            self._ahead = None

    def _next_file(self) -> None:
        self._wait_ahead()
        if self._reader is not None:
            self._reader.close()
        self._reader, self._chunk, self._before = None, None, None
        self._rec = self._row = self._bad_i = 0
        self._file += 1

    def _open(self, state: dict | None) -> None:
        path = self._ds._paths[self._file]
        try:
            self._reader = self._ds._open(path, state)
        except Exception:
            self._file += 1  # an error moves past the file, so ignore_errors() can go on
            raise

    def _load(self) -> Any:
        """A chunk with an unconsumed record, or None at the end of the last file."""
        while self._chunk is None or self._rec >= self._chunk.n:
            if self._file >= len(self._ds._paths):
                return None
            if self._reader is None:
                self._open(None)
            ahead, self._ahead = self._ahead, None
            if ahead is not None:
                before, self._size = ahead.start, ahead.size
                if ahead.forked:  # reopen the file at the state before that read; make it here
                    self._reader = None
                    self._open(before)
                    ahead = None
            else:
                before = self._reader.get_state()
                if self._chunk is not None:  # the chunk before this one was read with self._size
                    self._size = _grown(self._size)
            try:
                chunk = ahead.future.result() if ahead is not None else self._reader.read_chunk(self._size)
            except errors.InvalidArgumentError:
                self._chunk = None  # a header that cannot be read: the file goes on after it
                raise
            except Exception:
                self._next_file()
                raise
            if chunk is None:
                self._next_file()
                continue
            self._before, self._chunk = before, chunk
            self._rec = self._row = self._bad_i = 0
            if self._size >= _CSV_READ_AHEAD:  # read the next chunk while this one is served
                size, reader = _grown(self._size), self._reader
                self._ahead = _Ahead(reader.get_state(), ahead_executor().submit(reader.read_chunk, size), size)
        return self._chunk

    def _raise_if_bad(self, chunk: Any) -> None:
        if self._bad_i < len(chunk.bad) and chunk.bad[self._bad_i][0] == self._rec:
            err = chunk.bad[self._bad_i][1]
            self._bad_i += 1
            self._rec += 1
            raise err

    def __next__(self) -> Any:
        chunk = self._load()
        if chunk is None:
            raise StopIteration
        self._raise_if_bad(chunk)
        i = self._row
        self._row += 1
        self._rec += 1
        return tuple(c[i] for c in chunk.columns)

    def next_chunk(self, max_n: int) -> Chunk | None:
        chunk = self._load()
        if chunk is None:
            return None
        self._raise_if_bad(chunk)
        stop = chunk.bad[self._bad_i][0] if self._bad_i < len(chunk.bad) else chunk.n
        k = min(max_n, stop - self._rec)
        i = self._row
        self._row += k
        self._rec += k
        if i == 0 and k == len(chunk.columns[0]):
            return Chunk(k, tuple(chunk.columns))
        return Chunk(k, tuple(c[i : i + k] for c in chunk.columns))

    def close(self) -> None:
        self._wait_ahead()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def get_state(self) -> dict:
        if self._chunk is None:
            reader = None if self._reader is None else self._reader.get_state()
            return self._state(file=self._file, reader=reader, rec=0, chunk=False, read_size=self._size)
        return self._state(file=self._file, reader=self._before, rec=self._rec, chunk=True, read_size=self._size)

    def set_state(self, state: dict) -> None:
        self._check(state)
        self.close()
        self._chunk, self._before = None, None
        self._rec = self._row = self._bad_i = 0
        self._file = int(state["file"])
        self._size = int(state.get("read_size", _READ_SIZE))  # states saved before it had one: 1024
        if self._file >= len(self._ds._paths):
            return
        if state["reader"] is not None:
            self._open(state["reader"])
        if state["chunk"]:
            self._before = state["reader"]
            self._chunk = self._reader.read_chunk(self._size)
            rec = int(state["rec"])
            self._bad_i = sum(1 for i, _ in self._chunk.bad if i < rec)
            self._rec, self._row = rec, rec - self._bad_i


# --------------------------------------------------------------------------- list_files
class _NoMatchDataset(Dataset):
    """Raises at iteration (as TensorFlow's assert does) when a pattern matched nothing."""

    def __init__(self, pattern: Any) -> None:
        self._pattern = pattern

    def _compute_spec(self) -> Any:
        return TensorSpec((), "string")

    def _make_iter(self, ctx: tuple) -> DatasetIterator:
        return _RaiseIterator(errors.InvalidArgumentError(f"No files matched pattern: {self._pattern}"))


class _RaiseIterator(DatasetIterator):
    def __init__(self, exc: Exception) -> None:
        self._exc = exc

    def __next__(self) -> Any:
        raise self._exc

    def get_state(self) -> dict:
        return self._state()

    def set_state(self, state: dict) -> None:
        self._check(state)


def list_files(file_pattern: Any, shuffle: bool | None = None, seed: int | None = None) -> Dataset:
    """See :meth:`Dataset.list_files`."""
    from .sources import TensorSliceDataset

    patterns = _as_paths(file_pattern)
    names = sorted({m for p in patterns for m in glob.glob(p)})
    if not names:
        return _NoMatchDataset(", ".join(patterns))
    ds: Dataset = TensorSliceDataset([n.encode("utf-8") for n in names])
    if shuffle is None or shuffle:
        ds = ds.shuffle(len(names), seed=seed)
    return ds
