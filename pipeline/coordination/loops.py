"""Event-loop helpers shared by the coordination modules.

One background loop serves the whole package (``background_loop``, defined with the Data API in
:mod:`pipeline.data.base`, which runs its coroutine functions there too); ``_run_on`` awaits a
coroutine on another thread's loop, cancellably; ``call_in_thread`` runs a synchronous enqueue op
for a worker thread.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable, Coroutine

from queueserver import errors as qerrors

# One background loop for the whole package (the Data API runs its coroutine functions there too).
from pipeline.data.base import background_loop

__all__ = ["background_loop", "call_in_thread", "is_coroutine_callable"]


def _loop_of_current_thread() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine) -> Any:
    """Await ``coro`` on ``loop``: directly when it is the running loop, else through a future.

    Cancelling the caller cancels the coroutine on the other loop too (run_coroutine_threadsafe
    chains the cancellation), so a cancelled dequeue is withdrawn on the server.
    """
    if loop is _loop_of_current_thread():
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def call_in_thread(fn: Callable[[], Any]) -> Any:
    """Call ``fn()`` for a worker thread, turning ``StopIteration`` into ``OutOfRangeError``.

    ``StopIteration`` cannot cross a future (asyncio refuses it and the waiter hangs), and for an
    input function it means the same as ``OutOfRangeError``: no more input.
    """
    try:
        return fn()
    except StopIteration as exc:
        raise qerrors.OutOfRangeError(f"{getattr(fn, '__qualname__', fn)!s} raised StopIteration: no more input") from exc


def is_coroutine_callable(fn: Any) -> bool:
    """Whether calling ``fn`` gives a coroutine: an ``async def`` function (or a method or partial of
    one), or an object whose class defines ``async def __call__`` (what a call of it runs)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
