"""The core's clock: where timeouts are armed and waits are measured, injectable for tests.

The core never sleeps and never reads the time directly: a blocking call's timeout is a timer
armed with :meth:`Clock.call_later`, and blocked time is measured with :meth:`Clock.monotonic`.
A server uses :data:`LOOP_CLOCK` (the running event loop's timers, ``time.monotonic``); a test
passes a :class:`ManualClock` and moves time by hand, so a race between a timeout and an arrival
is an ordinary, instant unit test.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Any, Callable, Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the core needs of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` once, ``delay`` seconds from now, unless cancelled first."""
        ...


class LoopClock:
    """The running event loop's timers and ``time.monotonic`` (the default)."""

    monotonic = staticmethod(time.monotonic)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback, *args)


LOOP_CLOCK = LoopClock()


class _ManualTimer:
    __slots__ = ("when", "callback", "args", "cancelled")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple) -> None:
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told: :meth:`advance` fires the timers that fall due, in order.

    Example:
        >>> clock, fired = ManualClock(), []
        >>> _ = clock.call_later(2.0, fired.append, "two")
        >>> clock.advance(1.0); fired
        []
        >>> clock.advance(1.0); fired
        ['two']
    """

    def __init__(self, start: float = 1000.0) -> None:
        # Not 0: the core reads a wait's start time of 0.0 as "never waited", as a monotonic
        # clock never reads 0.
        self.now = start
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        timer = _ManualTimer(self.now + max(delay, 0.0), callback, args)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward, firing each timer due by then (at its own time, earliest first)."""
        until = self.now + seconds
        while self._timers and self._timers[0][0] <= until:
            when, _, timer = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                timer.callback(*timer.args)
        self.now = until
