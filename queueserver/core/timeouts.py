"""Timeouts of blocking calls: one rule, checked in the core before a call changes anything."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from queueserver.errors import InvalidArgumentError


def check_timeout(timeout: Any, what: str, *what_args: Any) -> float | None:
    """A call's timeout as seconds (``None``: wait for ever), checked before the call changes anything.

    One rule for every blocking call (enqueue, dequeue, take_grad) on every transport: a real,
    finite number of seconds or ``None``. A number at or below zero means "do not wait". NaN and the
    infinities are refused: a timer armed with one fails after the call has joined its waiting
    line, leaving a ghost that later takes elements nobody receives.

    ``what`` names the call and its resource; with ``what_args`` it is a ``str.format`` template,
    filled in only for a timeout that is refused (every enqueue and dequeue passes here, so the
    name is not built for the calls that pass).

    Raises:
        InvalidArgumentError: anything else, naming ``what`` (the call and its resource).
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(f"{_named(what, what_args)}: timeout must be a number of seconds or None,"
                                   f" got {timeout!r}")
    seconds = float(timeout)
    if not math.isfinite(seconds):
        raise InvalidArgumentError(f"{_named(what, what_args)}: timeout must be a finite number of seconds or"
                                   f" None (for no limit), got {timeout!r}")
    return seconds


def _named(what: str, what_args: tuple) -> str:
    return what.format(*what_args) if what_args else what
