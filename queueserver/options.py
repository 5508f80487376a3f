"""A server's and a client's options: one frozen, keyword-only, validated value each.

:class:`ServerOptions` is built once (by :class:`~queueserver.runtime.Server`, the daemon's CLI or
a test) and handed down to the service, so no parameter list is copied from layer to layer and a
bad option fails at construction, naming itself. :class:`ClientOptions` does the same for the
clients.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from queueserver.cluster import ClusterSpec
from queueserver.core.timeouts import check_timeout
from queueserver.errors import InvalidArgumentError
from queueserver.wire import DEFAULT_MAX_MESSAGE_BYTES

# A connection whose blocked enqueues hold more than this has further enqueues refused (with
# ResourceExhausted) until they drain, so a fast producer cannot grow the server's memory without
# bound; its dequeues, cancels and acks are still read, so it can never block itself.
PENDING_BYTES_LIMIT = 64 * 1024 * 1024
# A client's report older than this is dropped from status and metrics (the client stopped reporting).
REPORT_TTL_S = 60.0
# How long a client without an operation timeout keeps reconnecting to a server that went away.
RECONNECT_S = 10.0


def _positive(name: str, value: float, *, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value <= 0:
        raise InvalidArgumentError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """How one server runs.

    Args:
        host, port: where to listen when no cluster is given (loopback by default: nothing is
            exposed unless asked for; port 0 picks a free one).
        token: the shared secret every client must present (``None``: none).
        max_message_bytes: the largest frame accepted (header plus body).
        metrics: keep per-call statistics and serve ``/metrics``.
        report_ttl_s: seconds after which a client's last report is dropped from status.
        pending_bytes_limit: bytes of one connection's waiting enqueues past which it is refused more.
        grace_s: on stop, how long open connections get to take their last replies.
        hello_timeout_s: with a token, how long a new connection has to present it before it is
            closed.
        idle_timeout_s: a connection that sends nothing for this long while no call of its waits
            is closed (what the server held for it goes back to its queues); 0 never closes one.
        cluster, job, index: this server's cluster and its task in it (none: a lone task).
        data_dir: keep the state in this directory (a durable log plus snapshots), so it survives
            the server's death; ``None`` keeps it in memory only.
        fsync: with ``data_dir``, when changes reach the disk: ``"always"`` (before each is
            acknowledged), ``"everysec"`` (at least once a second) or ``"no"`` (when the OS does).
    """

    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    metrics: bool = True
    report_ttl_s: float = REPORT_TTL_S
    pending_bytes_limit: int = PENDING_BYTES_LIMIT
    grace_s: float = 2.0
    hello_timeout_s: float = 10.0
    idle_timeout_s: float = 3600.0
    cluster: ClusterSpec | None = None
    job: str = "localhost"
    index: int = 0
    data_dir: str | None = None
    fsync: str = "everysec"

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise InvalidArgumentError(f"port must be an integer in 0..65535, got {self.port!r}")
        _positive("max_message_bytes", self.max_message_bytes, integer=True)
        _positive("report_ttl_s", self.report_ttl_s)
        _positive("pending_bytes_limit", self.pending_bytes_limit, integer=True)
        _positive("grace_s", self.grace_s)
        _positive("hello_timeout_s", self.hello_timeout_s)
        if self.idle_timeout_s != 0:
            _positive("idle_timeout_s", self.idle_timeout_s)
        if self.token is not None and not isinstance(self.token, str):
            raise InvalidArgumentError("token must be a string")
        object.__setattr__(self, "token", self.token or None)
        if self.fsync not in ("always", "everysec", "no"):
            raise InvalidArgumentError(f"fsync must be one of always, everysec, no; got {self.fsync!r}")
        if self.data_dir is not None:
            if not isinstance(self.data_dir, (str, os.PathLike)) or not str(self.data_dir):
                raise InvalidArgumentError(f"data_dir must be a directory path, got {self.data_dir!r}")
            from queueserver.durability.records import MAX_RECORD_BYTES

            if self.max_message_bytes > MAX_RECORD_BYTES // 2:
                # One message makes one record of the log (plus its header), and a record the
                # writer cannot frame would stop the log for good.
                raise InvalidArgumentError(
                    f"with a data directory, max_message_bytes may be at most {MAX_RECORD_BYTES // 2} bytes"
                    f" (a log record holds {MAX_RECORD_BYTES}), got {self.max_message_bytes}")
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if self.cluster is not None:
            self.cluster.task_address(self.job, self.index)  # raises, naming the job or task, if absent

    @classmethod
    def for_task(cls, cluster: ClusterSpec, job: str, index: int, **options: object) -> "ServerOptions":
        """The options of task ``/job:{job}/task:{index}`` of ``cluster``: it listens on the
        address the cluster gives it."""
        address = cluster.task_address(job, index)
        host, _, port = address.rpartition(":")
        return cls(host=host.strip("[]"), port=int(port), cluster=cluster, job=job, index=index, **options)  # type: ignore[arg-type]


def token_from_env(token: str | None) -> str | None:
    """``token``, else ``QUEUESERVER_TOKEN`` from the environment, else none."""
    return token if token is not None else (os.environ.get("QUEUESERVER_TOKEN") or None)


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """How a client talks to its server.

    Args:
        operation_timeout: default timeout in seconds of every blocking call (``None``: wait).
        token: the server's shared secret (default: ``QUEUESERVER_TOKEN``).
        client_name: shown in the server's logs and status (default: ``pid N``).
        max_message_bytes: the largest frame accepted from the server.
        allow_soft_placement: place a resource pinned to a task that does not exist on the task
            the client talks to, with a warning (TensorFlow's soft placement).
        log_device_placement: print where each resource is placed.
        route_direct: in a cluster, call each resource's home task directly.
        reconnect: when the connection is lost (the server restarts), connect again by itself,
            with backoff, within the operation timeout (:data:`RECONNECT_S` without one), and
            repeat the calls that may be repeated: stamped enqueues are applied once, dequeues
            stay at least once (see :mod:`queueserver.channel`).
    """

    operation_timeout: float | None = None
    token: str | None = field(default=None)
    client_name: str | None = None
    max_message_bytes: int = 256 * 1024 * 1024
    allow_soft_placement: bool = False
    log_device_placement: bool = False
    route_direct: bool = True
    reconnect: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "operation_timeout", check_timeout(self.operation_timeout, "operation_timeout"))
        _positive("max_message_bytes", self.max_message_bytes, integer=True)
        object.__setattr__(self, "token", token_from_env(self.token))
        if self.client_name is None:
            object.__setattr__(self, "client_name", f"pid {os.getpid()}")
