"""The error hierarchy, named after TensorFlow's canonical status codes.

Every failure a user can see is one of these classes, on both sides of the wire: the server sends
the class's ``code`` and the message, and the client raises the same class.

    QueueServerError
     ├── CancelledError            (1)  the operation was cancelled: queue closed, resource reset
     ├── InvalidArgumentError      (3)  bad dtype, shape, count or option; malformed input data
 │    └── InvalidValueError         also a ValueError: an unknown job/task, a malformed device name
     ├── DeadlineExceededError     (4)  a blocking call ran past its timeout
     ├── NotFoundError             (5)  no such resource or file
     ├── AlreadyExistsError        (6)  a resource exists with a different spec
     ├── FailedPreconditionError   (9)  e.g. a variable read before it was initialized
     ├── ResourceExhaustedError    (8)  a size limit was hit
     ├── OutOfRangeError          (11)  a closed queue has too few elements; end of input
     ├── UnimplementedError       (12)  an operation this server does not know
     ├── InternalError            (13)  a bug: the server caught something unexpected
     ├── UnavailableError         (14)  the server or task cannot be reached
     ├── DataLossError            (15)  corrupt or truncated data (bad CRC, short record)
     └── UnauthenticatedError     (16)  missing or wrong shared token

``error_from_code(code, message)`` maps a wire code back to the most specific class;
``from_exception(exc, what)`` maps a lower layer's exception (OSError, TimeoutError) into the tree.
Misuse of the Python API itself (a wrong argument type, an impossible combination) raises
Python's ``TypeError``/``ValueError`` where TensorFlow raises them, so ported code catches the same.
"""

from __future__ import annotations

from typing import Any


class QueueServerError(Exception):
    """Base class of every error this project raises on purpose."""

    code: int = 2  # UNKNOWN

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self):  # keep the class and message across pickling (multiprocessing)
        return (_rebuild, (type(self), self.message, self.details))


def _rebuild(cls: type, message: str, details: dict) -> QueueServerError:
    return cls(message, **details)


class CancelledError(QueueServerError):
    """The operation was cancelled: its queue was closed or its container reset."""

    code = 1


class InvalidArgumentError(QueueServerError):
    """An argument or an input record is malformed: wrong dtype, shape, count or value."""

    code = 3


class InvalidValueError(InvalidArgumentError, ValueError):
    """An InvalidArgumentError that is also Python's ``ValueError``: a bad value given to the Python
    API where TensorFlow raises ValueError at build time (a job or task a ClusterSpec does not
    have, a malformed device name, ``Server`` without the job or task it needs), while code that
    catches InvalidArgumentError, and the wire (code 3), still see an InvalidArgumentError."""


class DeadlineExceededError(QueueServerError):
    """A blocking operation did not complete before its timeout."""

    code = 4


class NotFoundError(QueueServerError):
    """The named resource (or file) does not exist."""

    code = 5


class AlreadyExistsError(QueueServerError):
    """A resource with this name already exists and cannot be created again."""

    code = 6


class ResourceExhaustedError(QueueServerError):
    """A size limit was exceeded (message size, memory budget)."""

    code = 8


class FailedPreconditionError(QueueServerError):
    """The system is not in a state the operation needs (e.g. an uninitialized variable)."""

    code = 9


class OutOfRangeError(QueueServerError):
    """Input is exhausted: a closed queue holds fewer elements than were asked for."""

    code = 11


class UnimplementedError(QueueServerError):
    """The server does not know this operation."""

    code = 12


class InternalError(QueueServerError):
    """An unexpected failure inside the server; this is a bug worth reporting."""

    code = 13


class UnavailableError(QueueServerError):
    """The server or task could not be reached."""

    code = 14


class DataLossError(QueueServerError):
    """Data is corrupt or truncated: a bad checksum, a short record."""

    code = 15


class UnauthenticatedError(QueueServerError):
    """The call carried no token, or the wrong one."""

    code = 16


_BY_CODE: dict[int, type[QueueServerError]] = {
    cls.code: cls
    for cls in (
        CancelledError,
        InvalidArgumentError,
        DeadlineExceededError,
        NotFoundError,
        AlreadyExistsError,
        ResourceExhaustedError,
        FailedPreconditionError,
        OutOfRangeError,
        UnimplementedError,
        InternalError,
        UnavailableError,
        DataLossError,
        UnauthenticatedError,
    )
}


def error_name(code: Any) -> str:
    """The class name a wire error code stands for (``"QueueServerError"`` for an unknown one)."""
    return _BY_CODE.get(code, QueueServerError).__name__


def from_exception(exc: BaseException, what: str) -> QueueServerError:
    """The error of this tree for a lower layer's exception while doing ``what`` (one mapping for
    every package): a QueueServerError is returned as it is; a timeout is DeadlineExceeded; a
    refused, reset or unreachable connection is Unavailable; a missing file NotFound; other
    OSErrors Unavailable; anything else Internal."""
    if isinstance(exc, QueueServerError):
        return exc
    import asyncio

    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return DeadlineExceededError(f"{what}: timed out")
    if isinstance(exc, FileNotFoundError):
        return NotFoundError(f"{what}: {exc}")
    if isinstance(exc, (ConnectionError, OSError)):
        return UnavailableError(f"{what}: {exc}")
    return InternalError(f"{what}: {type(exc).__name__}: {exc}")


def error_from_code(code: int, message: str, details: dict | None = None) -> QueueServerError:
    """Build the error class that ``code`` names; unknown codes give the base class."""
    cls = _BY_CODE.get(code, QueueServerError)
    return cls(message, **(details or {}))


__all__ = [
    "QueueServerError",
    "CancelledError",
    "InvalidArgumentError",
    "InvalidValueError",
    "DeadlineExceededError",
    "NotFoundError",
    "AlreadyExistsError",
    "ResourceExhaustedError",
    "FailedPreconditionError",
    "OutOfRangeError",
    "UnimplementedError",
    "InternalError",
    "UnavailableError",
    "DataLossError",
    "UnauthenticatedError",
    "error_from_code",
]
