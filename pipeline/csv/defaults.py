"""``record_defaults``: TensorFlow's rules for turning each default into a column's dtype and fill value.

Each entry fixes its column's dtype (see :mod:`pipeline.csv`); ``_parse_defaults`` turns the list
into ``_Column`` objects (dtype name and default, ``None`` for a required column) that every
decoding path of the package shares.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from queueserver.errors import InvalidArgumentError


_F32, _F64, _I32, _I64, _STR = "float32", "float64", "int32", "int64", "string"
# The numpy scalar types, used both as constructors and as dtypes.
_NP: dict[str, Any] = {_F32: np.float32, _F64: np.float64, _I32: np.int32, _I64: np.int64}
_TYPE_WORD = {_F32: "float", _F64: "double", _I32: "int32", _I64: "int64"}


class _Column:
    """One output column: its dtype name and default (``None`` = required)."""

    __slots__ = ("kind", "default")

    def __init__(self, kind: str, default: Any) -> None:
        self.kind = kind
        self.default = default


def _kind_of_value(v: Any, in_list: bool) -> str | None:
    if isinstance(v, (bytes, str, np.bytes_, np.str_)):
        return _STR
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, np.float32):
        return _F32
    if isinstance(v, np.float64):
        return _F64  # np.float64 keeps float64, also inside a list (what TensorFlow does)
    if isinstance(v, float):
        return _F32
    if isinstance(v, np.int64):
        # TensorFlow converts a *list* of numpy int64 scalars like Python ints (to int32).
        return _I32 if in_list and -(2**31) <= int(v) < 2**31 else _I64
    if isinstance(v, np.int32):
        return _I32
    if isinstance(v, (int, np.integer)):
        return _I32 if -(2**31) <= int(v) < 2**31 else _I64
    return None


def _kind_of_dtype(dt: np.dtype) -> str | None:
    if dt == np.float32:
        return _F32
    if dt == np.float64:
        return _F64
    if dt == np.int32:
        return _I32
    if dt == np.int64:
        return _I64
    if dt.kind in "SUO":
        return _STR
    return None


def _as_default(kind: str, v: Any) -> Any:
    if kind == _STR:
        return v.encode() if isinstance(v, str) else bytes(v)
    return _NP[kind](v)


def _parse_defaults(record_defaults: Sequence[Any]) -> list[_Column]:
    """Turn ``record_defaults`` into columns, with TensorFlow's dtype rules."""
    if isinstance(record_defaults, np.ndarray) and record_defaults.ndim >= 1:
        # TensorFlow (eager) takes a numpy array as the list of its rows: np.zeros(5) is five
        # float64 scalar defaults.
        record_defaults = list(record_defaults)
    if not isinstance(record_defaults, (list, tuple)) or not record_defaults:
        raise InvalidArgumentError("record_defaults must be a non-empty list, one entry per column")
    cols = []
    for f, d in enumerate(record_defaults):
        kind: str | None
        if isinstance(d, type) or isinstance(d, np.dtype):
            # A bare type (np.int32, float, bytes): a required column of that type.
            builtin: dict[Any, str] = {float: _F32, int: _I32, bytes: _STR, str: _STR}
            kind = builtin[d] if d in builtin else _kind_of_dtype(np.dtype(d))
            values: list = []
        elif isinstance(d, np.ndarray):
            if d.ndim > 1:
                raise InvalidArgumentError(f"Each record default should be at most rank 1 (field {f})")
            kind = _kind_of_dtype(d.dtype)
            values = d.ravel().tolist()
        elif isinstance(d, (list, tuple)):
            values = list(d)
            if not values:
                kind = _F32  # tf.constant([]) is float32
            else:
                kinds = {_kind_of_value(v, True) for v in values}
                if kinds == {_I32, _F32} or kinds == {_I32, _I64, _F32}:
                    kinds = {_F32}
                kind = kinds.pop() if len(kinds) == 1 else None
        else:
            kind = _kind_of_value(d, False)
            values = [d]
        if len(values) > 1:
            raise InvalidArgumentError(
                f"There should only be 1 default per field but field {f} has {len(values)}"
            )
        if kind is None:
            raise InvalidArgumentError(
                f"csv: data type of record_defaults[{f}] ({d!r}) not supported; use float, "
                f"np.float64, int, np.int64 (array) or str/bytes"
            )
        cols.append(_Column(kind, _as_default(kind, values[0]) if values else None))
    return cols


def _empty_columns(cols: list[_Column]) -> list[np.ndarray]:
    return [np.empty(0, object) if c.kind == _STR else np.empty(0, _NP[c.kind]) for c in cols]
