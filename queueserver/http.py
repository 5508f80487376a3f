"""The HTTP side of the server's port: ``/healthz``, ``/status``, ``/metrics`` and the status page.

aiohttp serves a connection whose first byte is not the data-plane preamble (see
:class:`queueserver.connection.Sniffer`). Status and metrics need the token when the server has
one (``Authorization: Bearer`` or ``?token=``).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from queueserver.service import QueueService

STATIC_DIR = Path(__file__).with_name("static")


def build_app(service: QueueService) -> web.Application:
    """The aiohttp application serving ``service``'s HTTP endpoints."""
    app = web.Application()
    app.router.add_get("/healthz", functools.partial(_health, service))
    app.router.add_get("/status", functools.partial(_status, service))
    app.router.add_get("/metrics", functools.partial(_metrics, service))
    app.router.add_get("/", functools.partial(_page, service))
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    return app


def _authorized(service: QueueService, request: web.Request) -> bool:
    if service.token is None:
        return True
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    given = given or request.query.get("token", "")
    return hmac.compare_digest(given.encode(), service.token.encode())


async def _health(service: QueueService, request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "task": service.task})


async def _status(service: QueueService, request: web.Request) -> web.Response:
    """This task's status as JSON; with ``?cluster=1``, every task's too, under ``"cluster"``."""
    if not _authorized(service, request):
        return _unauthorized()
    from queueserver.status import build, encode_json

    out = await build(service)
    if request.query.get("cluster", "") not in ("", "0", "false"):
        out["cluster"] = await service.cluster_status() if service.cluster is not None else [{"up": True, **out}]
    # Megabytes of JSON for a big server: encoded in a worker thread, not on the event loop.
    body = await asyncio.get_running_loop().run_in_executor(None, encode_json, out)
    return web.Response(body=body, content_type="application/json")


async def _metrics(service: QueueService, request: web.Request) -> web.StreamResponse:
    """Prometheus text format, read from the live state now (see :mod:`queueserver.metrics`)."""
    if not _authorized(service, request):
        return _unauthorized()
    if service.metrics_registry is None:
        return web.json_response({"error": "metrics are off on this server (it runs with --no-metrics)"},
                                 status=404)
    from queueserver.metrics import CONTENT_TYPE, scrape

    pieces = await scrape(service)
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
    response.content_length = sum(map(len, pieces))
    await response.prepare(request)
    for piece in pieces:  # one at a time: a 50 MB write would hold the loop while it is copied
        await response.write(piece)
    await response.write_eof()
    return response


async def _page(service: QueueService, request: web.Request) -> web.StreamResponse:
    """The status page (static: it holds no data; its script fetches ``/status?cluster=1``).

    A client that asks for JSON only gets the status JSON, as ``GET /`` answered before the page.
    """
    accept = request.headers.get("Accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return await _status(service, request)
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def _unauthorized() -> web.Response:
    return web.json_response({"error": "Unauthenticated: this server needs its token"}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="queueserver"'})
