"""``read_tfrecord_examples``: whole TFRecord files of Examples straight into stacked arrays.

The same reading path as ``TFRecordDataset(paths).batch(n).map(lambda s: parse_example(s, spec))``:
:meth:`TFRecordReader.read_block` frames the records where they lie (the file's memory map, or the
inflated buffer of a GZIP/ZLIB file; both CRCs of every record checked), and ``parse_example``
parses each block of equal records as one strided view. This module only loops over the files
and stacks the blocks' arrays.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from queueserver.errors import InvalidArgumentError
from pipeline.textline import _check_compression

from .example import FixedLenFeature, SparseTensor, _checked_features, _feature_kinds, _parse_records, parse_example
from .framing import TFRecordReader

__all__ = ["read_tfrecord_examples"]

_BLOCK_BYTES = 16 << 20  # bytes of records per read (and so per parse_example call)


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


def _parse_block(block: Any, features: Mapping[str, Any], kinds: dict, path: str, first: int) -> dict:
    """``parse_example`` of a block; an error names the file and the record (in the file)."""
    try:
        return parse_example(block, features)
    except InvalidArgumentError as e:
        err = e
    # The batch path names the first record of a run: the record-by-record parser finds the one.
    try:
        _parse_records(block.materialize().tolist(), features, kinds)
    except InvalidArgumentError as e:
        err = e
    i = first + int(err.details.get("record", 0))
    raise InvalidArgumentError(f"{err} (file {path}, record {i})", **{**err.details, "record": i, "path": path}) from None


def read_tfrecord_examples(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    features: Mapping[str, Any],
    compression_type: str | None = "",
) -> dict:
    """Read whole TFRecord files of ``tf.train.Example`` records straight into stacked arrays.

    The result equals ``parse_example`` of every record of the files in order (what a
    ``TFRecordDataset(paths).batch(all).map(parse_example)`` would give), with both CRCs of every
    record checked. It reads exactly as the Data API does (:meth:`TFRecordReader.read_block`, then
    ``parse_example`` of each block): records that share one length and layout (what
    ``encode_example`` of uniform data writes) are parsed a run at a time, as a strided view of the
    file's memory map or of the inflated buffer, each feature copied once into its output array;
    other records go through the general parser, and corrupt or truncated records through
    :class:`TFRecordReader`'s record-by-record path, so errors are TensorFlow's.

    Args:
        paths: one file or a sequence of files.
        features: name -> :class:`FixedLenFeature` or :class:`VarLenFeature`.
        compression_type: ``""``, ``"GZIP"`` or ``"ZLIB"``.

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
        done = 0
        with TFRecordReader(path, compression_type=comp) as reader:
            while len(block := reader.read_block(1 << 30, _BLOCK_BYTES)):
                parts.append((_parse_block(block, features, kinds, path, done), len(block)))
                done += len(block)
    if not parts:
        return parse_example([], features)
    return _concat_parsed(parts, features)
