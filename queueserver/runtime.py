"""Running a server: in a background thread of this process (:class:`Server`, the embedded
``tf.train.Server``), or as the daemon in the foreground until a signal (:func:`serve_forever`).
Both run one :class:`~queueserver.service.QueueService` on a loop from :mod:`queueserver.loops`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from typing import Any, Callable

from queueserver.cluster import ClusterSpec, server_task
from queueserver.errors import FailedPreconditionError, UnavailableError
from queueserver.logs import event
from queueserver.loops import LoopThread, new_event_loop
from queueserver.service import QueueService
from queueserver.options import ServerOptions, token_from_env


class Server:
    """A queue server running in a background thread of this process.

    ``Server.create_local_server()`` is the seed's first notebook cell: an embedded server on a free
    loopback port. A cluster task (``Server(cluster, job_name="ps", task_index=0)``) binds the address
    its ClusterSpec gives it.

    Args:
        cluster: a ClusterSpec (or its dict) when this server is one task of a cluster.
        job_name: this task's job in ``cluster``; may be omitted when the cluster has one job.
        task_index: this task's index in its job; may be omitted when the job has one task
            (TensorFlow's rules: otherwise ValueError "Must specify an explicit ...").
        host: address to bind when no cluster is given (loopback by default: nothing is exposed
            unless asked for).
        port: port to bind when no cluster is given; 0 picks a free one.
        token: shared secret every client must present (default: ``QUEUESERVER_TOKEN``, else none).
        options: any other field of :class:`~queueserver.options.ServerOptions` (``max_message_bytes``,
            ``metrics``, ``grace_s``, ...), checked when the server is built.
        start: start serving now (as ``tf.train.Server`` does).

    Example:
        >>> server = Server.create_local_server()
        >>> server.target  # doctest: +SKIP
        'http://127.0.0.1:40123'
        >>> server.stop()
    """

    def __init__(self, cluster: Any = None, job_name: str | None = None, task_index: int | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, token: str | None = None, start: bool = True,
                 **options: Any) -> None:
        token = token_from_env(token)
        if cluster is not None:
            spec = cluster if isinstance(cluster, ClusterSpec) else ClusterSpec(cluster)
            job_name, task_index = server_task(spec, job_name, task_index)
            self.options = ServerOptions.for_task(spec, job_name, task_index, token=token, **options)
        else:
            self.options = ServerOptions(host=host, port=port, token=token, **options)
        self.cluster_spec: ClusterSpec | None = self.options.cluster
        self.service = QueueService(self.options)
        self._loop_thread: LoopThread | None = None
        self._stopped = threading.Event()
        if start:
            self.start()

    @classmethod
    def create_local_server(cls, **options: Any) -> "Server":
        """Start an embedded server on a free loopback port, in a background thread."""
        return cls(**{"host": "127.0.0.1", "port": 0, **options})

    @property
    def target(self) -> str:
        """The address to give ``connect()``, e.g. ``http://127.0.0.1:40123``.

        Raises:
            UnavailableError: the server is not started, or was stopped.
        """
        if self._stopped.is_set():
            raise UnavailableError(f"the server {self.service.task} was stopped")
        if self._loop_thread is None:
            raise UnavailableError("the server is not started: call start() first")
        return self.service.target

    def start(self) -> None:
        """Start serving in a background thread; returns once the port accepts connections.

        Raises:
            UnavailableError: the address cannot be bound.
            FailedPreconditionError: the server was stopped (a stopped server is not restarted,
                as in TensorFlow: create a new one).
        """
        if self._stopped.is_set():
            raise FailedPreconditionError(
                f"the server {self.service.task} was stopped and cannot be started again: create a new Server")
        if self._loop_thread is not None:
            return
        loop_thread = LoopThread(f"queueserver {self.service.task}")
        try:
            loop_thread.run(self.service.start())
        except BaseException as exc:  # report bind errors to the caller of start()
            loop_thread.stop()
            raise UnavailableError(f"cannot serve on {self.options.host}:{self.options.port}: {exc}") from exc
        self._loop_thread = loop_thread

    def join(self) -> None:
        """Block until the server stops."""
        if self._loop_thread is None and not self._stopped.is_set():
            raise UnavailableError("the server is not started: call start() first")
        self._stopped.wait()

    def stop(self) -> None:
        """Stop the server; waiting callers are told it is shutting down. Stopping twice is fine."""
        loop_thread, self._loop_thread = self._loop_thread, None
        if loop_thread is None or self._stopped.is_set():
            return
        try:
            loop_thread.run(self.service.stop())
        finally:
            loop_thread.stop(10.0)
            self._stopped.set()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_forever(options: ServerOptions, *, on_ready: Callable[[QueueService], None] | None = None) -> None:
    """Run a server in this thread until SIGINT or SIGTERM (the ``queueserver serve`` daemon)."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    service = QueueService(options)
    stop = asyncio.Event()

    async def main() -> None:
        try:
            await service.start()
        except OSError as exc:  # a busy port, an address not on this machine
            raise UnavailableError(f"cannot serve on {options.host}:{options.port}: {exc.strerror or exc}") from None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if on_ready is not None:
            on_ready(service)
        await stop.wait()
        event(logging.INFO, service.task, "signal_received", "signal received, stopping")
        await service.stop()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
