"""Reader pipelines into shared queues, and the loader client (``python -m pipeline load``).

The seed's multi-reader pipeline (figure 12-10): a queue of file names feeds ``N`` readers; each
reader takes a file name, opens the file in a worker thread, reads it a chunk of records at a time,
decodes the chunk with one vectorised call (``decode_csv``, ``parse_example`` ...) and enqueues the
decoded instances with ``enqueue_many``. Backpressure comes from the target queue's capacity: a
reader waits in ``enqueue_many`` while the queue is full. A :class:`~pipeline.coordination.QueueRunner`
runs the readers and closes the target queue when the file names run out.

* :class:`CsvFormat`, :class:`TextFormat`, :class:`FixedLengthFormat`, :class:`TFRecordFormat`
  say how to open and decode one kind of file;
* :func:`reader_runner` builds the QueueRunner for any format; :func:`csv_reader_runner` is the
  seed's CSV case;
* :func:`load_async` / :func:`load` and :func:`main` are the loader client: they create or open
  the target queue, read files matching a glob with concurrent readers, show progress on stderr,
  report their figures to the server every few seconds (``role="loader"``: records/s, bytes/s,
  totals; the status page and ``/metrics`` show them) and close the queue at the end. Ctrl-C
  (or cancelling :func:`load_async`) stops the readers and leaves the queue open and usable.

How decoded records become queue elements is decided by the queue's spec, so one rule serves
existing and new queues: the queue's components take the decoded CSV columns in order, a scalar
component one column, a ``[k]`` component the next ``k`` columns (stacked). A queue
``(float32[2], int32[])`` thus takes ``x1, x2, target`` as the seed's ``features, target``.

Modules: :mod:`.formats` (the four formats, ``parse_features``), :mod:`.reading` (readers,
``reader_runner``, ``LocalFilenameQueue``), :mod:`.loading` (``load_async`` / ``load``, progress and
reports) and :mod:`.cli` (``main``, argument parsing); every name is importable from here.

Example:
    >>> import numpy as np, queueserver as qs                              # doctest: +SKIP
    >>> c = qs.connect(target)                                             # doctest: +SKIP
    >>> files = c.fifo_queue("files", 10, [str], [[]])                     # doctest: +SKIP
    >>> instances = c.random_shuffle_queue("instances", 10, 2, [np.float32, np.int32], [[2], []])  # doctest: +SKIP
    >>> runner = csv_reader_runner(files, instances, [[-1.], [-1.], [-1]], num_readers=5)  # doctest: +SKIP
    >>> files.enqueue("my_test.csv"); files.close()                        # doctest: +SKIP
    >>> runner.create_threads(Coordinator())                               # doctest: +SKIP
"""

from .cli import build_parser as build_parser
from .cli import main, parse_record_defaults
from .formats import CsvFormat, FixedLengthFormat, TextFormat, TFRecordFormat, parse_features
from .formats import _Format as _Format  # the formats' base class, for code that subclasses it
from .loading import DEFAULT_INTERRUPT_GRACE_S as DEFAULT_INTERRUPT_GRACE_S
from .loading import DEFAULT_REPORT_EVERY_S as DEFAULT_REPORT_EVERY_S
from .loading import expand_files as expand_files
from .loading import LoadResult, load, load_async
from .reading import DEFAULT_CHUNK as DEFAULT_CHUNK
from .reading import LocalFilenameQueue, ReaderStats, auto_chunk_size, csv_reader_runner, reader_runner

__all__ = [
    "CsvFormat",
    "FixedLengthFormat",
    "LoadResult",
    "LocalFilenameQueue",
    "ReaderStats",
    "auto_chunk_size",
    "TFRecordFormat",
    "TextFormat",
    "csv_reader_runner",
    "load",
    "load_async",
    "main",
    "parse_features",
    "parse_record_defaults",
    "reader_runner",
]
