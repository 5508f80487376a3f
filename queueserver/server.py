"""The server: one port, two protocols, one core.

A connection that starts with the data-plane preamble (see :mod:`queueserver.wire`) speaks framed
msgpack with raw array bodies; anything else is handed to aiohttp, which serves the plain HTTP
endpoints. Every operation is a thin adapter over the core in :mod:`queueserver.core`: no queue
rule is written in the server. Its parts, each a module:

* :mod:`queueserver.service`: one server's state (resources, connections, status);
* :mod:`queueserver.connection`: a client's connection (transport, frames, replies);
* :mod:`queueserver.session`: what a connection holds and owes, with no I/O (held deliveries,
  acknowledgements, the pending-bytes budget, compact handles);
* :mod:`queueserver.ops`: one handler per operation; :mod:`queueserver.protocol` names them;
* :mod:`queueserver.forwarding`: routing calls to the task that owns the resource;
* :mod:`queueserver.http`: ``/healthz``, ``/status``, ``/metrics`` and the status page;
* :mod:`queueserver.runtime`: the embedded :class:`Server` thread and the daemon.

Delivery is at least once: a dequeued batch is *held* for the connection that received it until
that client acknowledges it; if the connection drops first, held batches go back to the front of
their queues. This module keeps the names it has always offered.
"""

from queueserver.connection import DataConnection
from queueserver.loops import new_event_loop
from queueserver.runtime import Server, serve_forever
from queueserver.options import PENDING_BYTES_LIMIT, REPORT_TTL_S, ClientOptions, ServerOptions
from queueserver.service import QueueService

__all__ = ["Server", "ServerOptions", "ClientOptions", "QueueService", "DataConnection", "serve_forever", "new_event_loop", "PENDING_BYTES_LIMIT",
           "REPORT_TTL_S"]
