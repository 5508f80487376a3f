"""TFRecord files and ``tf.train.Example`` protos, without TensorFlow or protobuf.

Three modules, one per layer:

* :mod:`.framing`: the TFRecord container (length, masked CRC32C, data, CRC): ``masked_crc32c``,
  :class:`TFRecordWriter`, :class:`TFRecordReader` (TensorFlow's reader, errors included) and
  ``tf_record_iterator``;
* :mod:`.example`: the ``tf.train.Example`` codec: ``encode_example``, ``parse_example`` (with its
  vectorised path for batches of one layout), :class:`FixedLenFeature`, :class:`VarLenFeature`,
  :class:`SparseTensor`;
* :mod:`.bulk`: ``read_tfrecord_examples``, whole files straight into stacked arrays, on the Data
  API's own path (``TFRecordReader.read_block``: records framed where they lie in the file's
  memory map or the inflated buffer, then ``parse_example`` of each block).

Everything public is importable from ``pipeline.tfrecord`` as before.

Example:
    >>> with TFRecordWriter("data.tfrecord") as w:  # doctest: +SKIP
    ...     w.write(encode_example({"x": np.arange(3, dtype=np.float32), "y": [1]}))
    >>> parse_example(next(tf_record_iterator("data.tfrecord")))  # doctest: +SKIP
    {'x': array([0., 1., 2.], dtype=float32), 'y': array([1])}
"""

from .bulk import read_tfrecord_examples
from .example import FixedLenFeature, SparseTensor, VarLenFeature, encode_example, parse_example
from .framing import TFRecordReader, TFRecordWriter, masked_crc32c, tf_record_iterator

__all__ = [
    "TFRecordWriter",
    "TFRecordReader",
    "tf_record_iterator",
    "masked_crc32c",
    "encode_example",
    "parse_example",
    "FixedLenFeature",
    "VarLenFeature",
    "SparseTensor",
    "read_tfrecord_examples",
]
