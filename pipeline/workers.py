"""Worker threads made on first use, one set per process.

A ``ThreadPoolExecutor`` copied into a forked child keeps its record of the parent's threads but
not the threads: work submitted there would wait for ever. :class:`ProcessWorker` hands out an
executor of the current process, making a new one (and a new lock) in a forked child.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["ProcessWorker"]


class ProcessWorker:
    """A lazily made ``ThreadPoolExecutor`` of ``threads`` workers, one per process.

    Args:
        name: the worker threads' name prefix.
        threads: how many worker threads.

    Example:
        >>> checker = ProcessWorker("csv-check")
        >>> checker.executor().submit(sum, [1, 2]).result()
        3
    """

    def __init__(self, name: str, threads: int = 1) -> None:
        self.name, self.threads = name, threads
        self._forget()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # In a forked child: the parent's executor has no thread here, and its lock may have
        # been held by a parent thread at the fork.
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def executor(self) -> ThreadPoolExecutor:
        """This process's executor (made on the first call)."""
        pool = self._pool
        if pool is None:
            with self._lock:
                pool = self._pool
                if pool is None:
                    pool = self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
        return pool
