"""Array backend: CuPy on a GPU, NumPy on the CPU, one code path.

Models and optimizers never import NumPy or CuPy for arithmetic: they call ``xp = backend.xp`` (or
:func:`array_module` on an array) and write ``xp.maximum``, ``xp.exp`` and so on, which both modules
spell the same way. Only this module imports CuPy, and only when a GPU device is asked for, so the
project imports and its tests run on machines without CuPy.

Also here: the parameter transfer dtypes (float32, float16, and bfloat16 carried as uint16 bit
patterns with round-to-nearest-even, since NumPy has no bfloat16), which halve the bytes a trainer
pulls and pushes (the seed's section 3.4.3).

Example:
    >>> be = get_backend("cpu")
    >>> x = be.to_device(np.ones((2, 3), np.float32))
    >>> be.to_host(be.xp.sum(x, axis=1)).tolist()
    [3.0, 3.0]
    >>> decode_transfer(encode_transfer(np.float32([1.0, 3.14159]), "bfloat16"), "bfloat16").tolist()
    [1.0, 3.140625]
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

# The bfloat16 conversions live with the server's rule for reading them (one implementation for
# clients and server); re-exported here as part of the transfer-dtype API.
from queueserver.core.wire_dtypes import bfloat16_bits_to_float32, float32_to_bfloat16_bits

__all__ = [
    "Backend", "DevicePlacementError", "get_backend", "parse_device", "array_module", "cupy_available",
    "TRANSFER_DTYPES", "encode_transfer", "decode_transfer", "transfer_wire_dtype", "transfer_marker",
    "float32_to_bfloat16_bits", "bfloat16_bits_to_float32",
]


class DevicePlacementError(RuntimeError):
    """A device was asked for that this machine does not have (and soft placement was off)."""


_DEVICE_RE = re.compile(r"^/?(?:device:)?(cpu|gpu)(?::(\d+))?$", re.IGNORECASE)


def parse_device(device: str) -> tuple[str, int]:
    """``"cpu"``, ``"gpu"``, ``"gpu:1"``, ``"/gpu:0"``, ``"/device:GPU:0"`` -> ``("gpu", 1)``.

    Args:
        device: a device name, TensorFlow's spellings included.

    Returns:
        ``(kind, index)`` with kind ``"cpu"`` or ``"gpu"``.

    Raises:
        ValueError: the name is not a CPU or GPU device.
    """
    match = _DEVICE_RE.match(device.strip())
    if not match:
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'gpu' or 'gpu:N'")
    return match.group(1).lower(), int(match.group(2) or 0)


def _import_cupy() -> ModuleType | None:
    """CuPy, or None when it is not installed or cannot load its CUDA libraries."""
    try:
        import cupy  # noqa: PLC0415 - optional dependency, imported only when a GPU is asked for
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None
    return cupy


def cupy_available() -> bool:
    """Whether CuPy imports and sees at least one CUDA device (after CUDA_VISIBLE_DEVICES)."""
    cupy = _import_cupy()
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def array_module(x: Any) -> ModuleType:
    """``cupy`` for CuPy arrays, ``numpy`` for everything else (without importing CuPy needlessly)."""
    if type(x).__module__.startswith("cupy"):
        import cupy  # noqa: PLC0415

        return cupy
    return np


@dataclass
class Backend:
    """Where arrays live and how they get there.

    Create it with :func:`get_backend`. ``xp`` is the array module (``numpy`` or ``cupy``); model code
    uses only ``xp`` so the same lines run on both.

    Attributes:
        kind: ``"cpu"`` or ``"gpu"``.
        index: the GPU's index among the visible devices (0 on the CPU).
        xp: the array module.
        memory_fraction: the cap on CuPy's memory pool as a fraction of the GPU's memory, if set.
    """

    kind: str
    index: int
    xp: ModuleType
    memory_fraction: float | None = None
    _pinned: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def is_gpu(self) -> bool:
        """Whether arrays live on a GPU."""
        return self.kind == "gpu"

    @property
    def name(self) -> str:
        """``"cpu"`` or ``"gpu:N"``."""
        return "cpu" if self.kind == "cpu" else f"gpu:{self.index}"

    def to_device(self, array: np.ndarray, dtype: Any = None) -> Any:
        """Copy a host array to this backend's device (a no-op view on the CPU when dtypes match).

        On a GPU the bytes are first staged in page-locked (pinned) host memory, which the GPU's DMA
        engine reads directly: roughly four times the bandwidth of a pageable copy (42.5 vs 10.6 GB/s
        measured on an H200, WORKLOADS.md), and the copy can overlap compute on the stream.

        Args:
            array: a NumPy array (or anything ``np.asarray`` takes).
            dtype: convert to this dtype on the way (on the host, before the copy).
        """
        host = np.asarray(array, dtype=dtype)
        if not self.is_gpu:
            return host
        host = np.ascontiguousarray(host)
        # One staging buffer serves every thread (the prefetcher's copy thread, and the loop that
        # copies pulled parameters): it is held from the host copy until the GPU has read it.
        with self._lock, self.xp.cuda.Device(self.index):
            staging = self._staging(host.nbytes)[: host.nbytes].view(host.dtype).reshape(host.shape)
            np.copyto(staging, host)
            out = self.xp.empty(host.shape, host.dtype)
            out.set(staging)
            # The buffer is reused by the next call, so the copy must be finished, not just queued
            # (prefetching overlaps it with the queue I/O and the previous step).
            self.xp.cuda.get_current_stream().synchronize()
            return out

    def _staging(self, nbytes: int) -> np.ndarray:
        """A pinned host buffer of at least ``nbytes``, reused across calls (grown by doubling).
        The caller holds ``_lock``."""
        buf = self._pinned.get("buf")
        if buf is None or buf.nbytes < nbytes:
            size = max(nbytes, 2 * (0 if buf is None else buf.nbytes))
            mem = self.xp.cuda.alloc_pinned_memory(size)
            buf = np.frombuffer(mem, np.uint8, size)
            self._pinned["buf"], self._pinned["mem"] = buf, mem  # keep the allocation alive
        return buf

    def to_host(self, array: Any) -> np.ndarray:
        """Copy a device array back to a NumPy array (returns NumPy arrays unchanged)."""
        if self.is_gpu and array_module(array) is not np:
            return self.xp.asnumpy(array)
        return np.asarray(array)

    def synchronize(self) -> None:
        """Wait for queued GPU work to finish (for honest timings); nothing on the CPU."""
        if self.is_gpu:
            self.xp.cuda.Device(self.index).synchronize()

    def describe(self) -> str:
        """A one-line description for logs."""
        if not self.is_gpu:
            return "cpu (numpy)"
        cap = f", memory pool capped at {self.memory_fraction:.0%}" if self.memory_fraction else ""
        return f"gpu:{self.index} (cupy {self.xp.__version__}{cap})"


def get_backend(device: str = "cpu", soft_placement: bool = False,
                gpu_memory_fraction: float | None = None) -> Backend:
    """The backend for ``device``.

    Args:
        device: ``"cpu"`` or ``"gpu:N"`` (N counts the devices CUDA_VISIBLE_DEVICES leaves visible,
            as CUDA itself does).
        soft_placement: when the GPU is missing, warn and use the CPU instead of failing (the seed's
            ``allow_soft_placement``).
        gpu_memory_fraction: cap CuPy's memory pool at this fraction of the GPU's memory (the seed's
            ``per_process_gpu_memory_fraction``), so several processes can share one GPU.

    Returns:
        A :class:`Backend`.

    Raises:
        DevicePlacementError: a GPU was asked for, none is usable, and soft placement is off.
        ValueError: a bad device name or memory fraction.
    """
    kind, index = parse_device(device)
    if gpu_memory_fraction is not None and not 0.0 < gpu_memory_fraction <= 1.0:
        raise ValueError(f"--gpu-memory-fraction must be in (0, 1], got {gpu_memory_fraction}")
    if kind == "cpu":
        return Backend("cpu", 0, np)
    problem = _gpu_problem(index)
    if problem is not None:
        if soft_placement:
            warnings.warn(f"{problem}; soft placement: running on the CPU instead", RuntimeWarning, stacklevel=2)
            return Backend("cpu", 0, np)
        raise DevicePlacementError(f"{problem} (pass --soft-placement to fall back to the CPU)")
    cupy = _import_cupy()
    assert cupy is not None
    with cupy.cuda.Device(index):
        if gpu_memory_fraction is not None:
            cupy.get_default_memory_pool().set_limit(fraction=gpu_memory_fraction)
    cupy.cuda.Device(index).use()
    return Backend("gpu", index, cupy, gpu_memory_fraction)


def _gpu_problem(index: int) -> str | None:
    """Why ``gpu:index`` cannot be used, or None when it can."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    cupy = _import_cupy()
    if cupy is None:
        return f"device gpu:{index} was requested but CuPy is not installed (pip install 'queueserver[gpu]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no device
        count, why = 0, f": {exc}"
    else:
        why = ""
    if index >= count:
        hint = f" with CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
        return f"device gpu:{index} was requested but {count} CUDA device(s) are visible{hint}{why}"
    return None


# ---------------------------------------------------------------- transfer dtypes
TRANSFER_DTYPES = ("float32", "bfloat16", "float16")


def transfer_wire_dtype(name: str) -> np.dtype:
    """The NumPy dtype that carries ``name`` on the wire (bfloat16 travels as uint16 bit patterns)."""
    if name not in TRANSFER_DTYPES:
        raise ValueError(f"unknown transfer dtype {name!r}: use one of {', '.join(TRANSFER_DTYPES)}")
    return np.dtype(np.uint16) if name == "bfloat16" else np.dtype(name)


def transfer_marker(name: str) -> str | None:
    """The ``wire_dtype`` marker a push in transfer dtype ``name`` carries: ``"bfloat16"`` for
    bfloat16 (its uint16 carrier would otherwise read as integers), None for the NumPy dtypes."""
    return "bfloat16" if transfer_wire_dtype(name) == np.uint16 else None


def encode_transfer(x: Any, dtype: str) -> Any:
    """A float32 array in the wire form of ``dtype`` (float32: unchanged, no copy), where it lives:
    a GPU array is rounded on the GPU, so its copy to the host carries the narrow bytes. An array
    already in the wire form (uint16 bit patterns for bfloat16, float16) is returned as it is."""
    xp = array_module(x)
    wire = transfer_wire_dtype(dtype)  # ValueError for an unknown name
    if getattr(x, "dtype", None) == wire:
        return x
    x = xp.asarray(x, dtype=np.float32)
    if dtype == "float16":
        return x.astype(np.float16)
    if dtype == "bfloat16":
        return float32_to_bfloat16_bits(x, xp)
    return x


def decode_transfer(x: np.ndarray, dtype: str) -> np.ndarray:
    """The float32 value of an array received in the wire form of ``dtype``."""
    if dtype == "bfloat16":
        return bfloat16_bits_to_float32(x)
    if dtype in ("float32", "float16"):
        return np.asarray(x).astype(np.float32, copy=False)
    raise ValueError(f"unknown transfer dtype {dtype!r}: use one of {', '.join(TRANSFER_DTYPES)}")
