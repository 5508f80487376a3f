"""Event loops in threads: the one helper the server's thread, the synchronous client and
``pipeline``'s background loop share.

* :func:`new_event_loop`: uvloop's loop where uvloop is installed, else asyncio's.
* :class:`LoopThread`: a loop running in a daemon thread, started and ready when constructed;
  :meth:`LoopThread.run` runs a coroutine on it from any other thread and waits for the result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Coroutine

from queueserver.errors import CancelledError, FailedPreconditionError


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop where uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - the platform has no uvloop
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    """An event loop running forever in a daemon thread (ready when the constructor returns).

    Args:
        name: the thread's name (shown by debuggers and ``py-spy``).
        uvloop: use :func:`new_event_loop` (uvloop where installed); False: asyncio's own loop.
    """

    def __init__(self, name: str, *, uvloop: bool = True) -> None:
        self.name = name
        self.loop = new_event_loop() if uvloop else asyncio.new_event_loop()
        self._stopped = False
        self._outstanding: set[concurrent.futures.Future] = set()  # submitted, not finished
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()
        ready.wait()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        """Schedule ``coro`` on the loop; returns a ``concurrent.futures.Future``.

        Raises:
            FailedPreconditionError: the loop was stopped (its client was closed).
        """
        if self._stopped:
            coro.close()
            raise FailedPreconditionError(f"{self.name} was stopped (its client was closed): connect again")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        self._outstanding.add(fut)
        fut.add_done_callback(self._outstanding.discard)
        return fut

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the loop and return its result; an interruption (Ctrl-C) of the
        waiting thread cancels it there too."""
        fut = self.submit(coro)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()  # e.g. KeyboardInterrupt: withdraw the call on the server too
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop, wait for the thread, and close the loop once it has stopped. A call still
        waiting on it then (submitted by another thread as it stopped) fails with CancelledError
        instead of waiting for ever."""
        self._stopped = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        for fut in list(self._outstanding):
            if not fut.done():
                fut.set_exception(CancelledError(f"{self.name} stopped before this call could finish"))
        if not self.thread.is_alive():
            self.loop.close()
