"""Parameter checkpoints: one ``.npz`` file per directory, written atomically.

A checkpoint holds the named parameters, the global step and any optimizer slots. It is written to a
temporary file in the same directory, flushed to disk, then renamed over the old one with
``os.replace``, so a crash mid-write leaves the previous checkpoint whole (a rename within one
file system is atomic).

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> path = save_checkpoint(d, {"w": np.ones(2, np.float32)}, global_step=7)
    >>> ckpt = load_checkpoint(d)
    >>> ckpt.global_step, ckpt.params["w"].tolist()
    (7, [1.0, 1.0])
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "CHECKPOINT_FILE"]

CHECKPOINT_FILE = "checkpoint.npz"
_PARAM, _SLOT = "param:", "slot:"


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    Attributes:
        params: parameter arrays by name, in saved order.
        global_step: the global step the parameters belong to.
        slots: optimizer state by name (empty for plain SGD).
    """

    params: "OrderedDict[str, np.ndarray]"
    global_step: int
    slots: dict[str, np.ndarray] = field(default_factory=dict)


def save_checkpoint(directory: str | os.PathLike, params: Mapping[str, np.ndarray], global_step: int,
                    slots: Mapping[str, np.ndarray] | None = None) -> str:
    """Write a checkpoint atomically; returns its path.

    Args:
        directory: created if missing.
        params: host arrays by name.
        global_step: saved with them.
        slots: optimizer state to save too.
    """
    os.makedirs(directory, exist_ok=True)
    arrays = {f"{_PARAM}{k}": np.asarray(v) for k, v in params.items()}
    arrays.update({f"{_SLOT}{k}": np.asarray(v) for k, v in (slots or {}).items()})
    arrays["global_step"] = np.asarray(global_step, np.int64)  # a 0-d array, as savez would make it
    arrays["order"] = np.array(list(params), dtype=object).astype(str)
    path = os.path.join(directory, CHECKPOINT_FILE)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)  # plain arrays only, as load_checkpoint reads them
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint | None:
    """The checkpoint in ``directory``, or None when there is none yet."""
    path = os.path.join(directory, CHECKPOINT_FILE)
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        order = [str(k) for k in data["order"]]
        params = OrderedDict((k, data[f"{_PARAM}{k}"]) for k in order)
        slots = {k[len(_SLOT):]: data[k] for k in data.files if k.startswith(_SLOT)}
        return Checkpoint(params, int(data["global_step"]), slots)
