"""Everything that produces data: readers, the Data API, Coordinator and QueueRunner, the loader.

    from pipeline import Dataset, TextLineDataset, decode_csv
    ds = TextLineDataset("my_test.csv").skip(1).batch(1024).map(
        lambda lines: decode_csv(lines, record_defaults=[[-1.], [-1.], [-1]]))

Layout:

* readers and decoders: :mod:`.textline`, :mod:`.fixed_length`, :mod:`.raw`, and two packages,
  :mod:`.csv` (``decode_csv``: ``defaults``, ``exact``, ``vectorised``, ``arrow``) and
  :mod:`.tfrecord` (``framing``, ``example`` codec, ``bulk`` whole-file reading);
* :mod:`.data`: the Data API (``Dataset`` and the file datasets);
* :mod:`.coordination` (``loops``, ``views``, ``coordinator``, ``runner``) and :mod:`.producers`:
  TensorFlow 1's queue runners and input producers; :mod:`.queue_readers`: TensorFlow 1's readers
  fed by a queue of file names (``TextLineReader(skip_header_lines=1).read(filename_queue)``);
* :mod:`.loader` (``formats``, ``reading``, ``loading``, ``cli``): reader pipelines into shared
  queues and ``python -m pipeline load``; its formats (``CsvFormat``, ``TextFormat``,
  ``FixedLengthFormat``, ``TFRecordFormat``) and ``load`` import from here too.

Each package's ``__init__`` re-exports its public names, so ``pipeline.csv.decode_csv`` and the
like import as before.
"""

from pipeline.coordination import Coordinator, QueueRunner
from pipeline.csv import decode_csv
from pipeline.data import (
    AUTOTUNE, CsvDataset, Dataset, FixedLengthRecordDataset, TextLineDataset, TFRecordDataset,
)
from pipeline.fixed_length import FixedLengthRecordReader, decode_cifar10
from pipeline.loader import (
    CsvFormat, FixedLengthFormat, LoadResult, TextFormat, TFRecordFormat, csv_reader_runner, load, load_async,
    parse_features, reader_runner,
)
from pipeline.producers import (
    Producer, batch, batch_join, shuffle_batch, shuffle_batch_join, start_queue_runners, string_input_producer,
)
from pipeline.raw import decode_raw
from pipeline.textline import TextLineReader
from pipeline.tfrecord import (
    FixedLenFeature, TFRecordReader, TFRecordWriter, VarLenFeature, encode_example, parse_example,
    tf_record_iterator,
)

__all__ = [
    "AUTOTUNE", "Coordinator", "CsvDataset", "CsvFormat", "Dataset", "FixedLenFeature", "FixedLengthFormat",
    "FixedLengthRecordDataset", "FixedLengthRecordReader", "LoadResult", "Producer", "QueueRunner",
    "TFRecordDataset", "TFRecordFormat", "TFRecordReader", "TFRecordWriter", "TextFormat", "TextLineDataset",
    "TextLineReader", "VarLenFeature", "batch", "batch_join", "csv_reader_runner", "decode_cifar10", "decode_csv",
    "decode_raw", "encode_example", "load", "load_async", "parse_example", "parse_features", "reader_runner",
    "shuffle_batch", "shuffle_batch_join", "start_queue_runners", "string_input_producer", "tf_record_iterator",
]
