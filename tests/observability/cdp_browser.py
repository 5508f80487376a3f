"""Headless Chromium driven over the Chrome DevTools protocol, with aiohttp's websocket client.

Just enough of the protocol for the status page tests: open a page, evaluate JavaScript, wait for
a condition on the page, take a screenshot. No Selenium, no chromedriver.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless_shell")


def find_chromium() -> str | None:
    """The browser binary: ``$QUEUESERVER_CHROMIUM`` if set, else the first of CANDIDATES on PATH."""
    given = os.environ.get("QUEUESERVER_CHROMIUM")
    if given:
        return given if shutil.which(given) else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium process with one page, controlled over its DevTools websocket."""

    def __init__(self, binary: str, profile_dir: Path, *, width: int = 1500, height: int = 1000) -> None:
        self.binary = binary
        self.profile_dir = profile_dir
        self.size = (width, height)
        self.proc: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future] = {}
        self._events: dict[str, list[asyncio.Future]] = {}
        self._tasks: list[asyncio.Task] = []
        self.stderr_tail: list[str] = []

    async def start(self, timeout: float = 30.0) -> "Browser":
        """Launch the browser and attach to its first page."""
        args = [
            self.binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
            f"--user-data-dir={self.profile_dir}", "--remote-debugging-port=0",
            f"--window-size={self.size[0]},{self.size[1]}", "about:blank",
        ]
        self.proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL,
                                                         stdout=asyncio.subprocess.DEVNULL,
                                                         stderr=asyncio.subprocess.PIPE)
        endpoint: asyncio.Future = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.ensure_future(self._read_stderr(endpoint)))
        try:
            browser_ws = await asyncio.wait_for(endpoint, timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise RuntimeError("Chromium printed no DevTools endpoint:\n" + "\n".join(self.stderr_tail[-20:])) from None
        host_port = re.match(r"ws://([^/]+)/", browser_ws).group(1)
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://{host_port}/json/list") as r:
            targets = await r.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._tasks.append(asyncio.ensure_future(self._read_ws()))
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        return self

    async def _read_stderr(self, endpoint: asyncio.Future) -> None:
        # Drained for the browser's whole life, so its stderr pipe never fills up and stalls it.
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.stderr_tail = (self.stderr_tail + [line])[-50:]
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match and not endpoint.done():
                endpoint.set_result(match.group(1))

    async def _read_ws(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._replies.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
            else:
                for fut in self._events.pop(data.get("method"), []):
                    if not fut.done():
                        fut.set_result(data.get("params", {}))
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(RuntimeError("the browser closed its DevTools connection"))

    async def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict:
        """Call one DevTools method; returns its result or raises its error."""
        assert self.ws is not None
        rid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._replies[rid] = fut
        await self.ws.send_str(json.dumps({"id": rid, "method": method, "params": params}))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def next_event(self, method: str) -> asyncio.Future:
        """A future for the next DevTools event named ``method`` (register it before causing the event)."""
        fut = asyncio.get_running_loop().create_future()
        self._events.setdefault(method, []).append(fut)
        return fut

    async def open(self, url: str, timeout: float = 30.0) -> None:
        """Navigate to ``url`` and wait for its load event."""
        loaded = self.next_event("Page.loadEventFired")
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded, timeout)

    async def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page; returns its value (JSON-able), raising the page's exception."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0, interval: float = 0.1) -> Any:
        """Evaluate ``expression`` until it is truthy (the page updates itself); returns that value.

        Polling with a bounded deadline: the page gives no event to wait on.
        """
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(interval)
        raise AssertionError(f"page condition not met within {timeout} s: {expression}\nlast value: {value!r}")

    async def screenshot(self, path: Path) -> Path:
        """Save a PNG of the whole page."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": max(self.size[0], size["width"]), "height": size["height"], "scale": 1}
        result = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    async def close(self) -> None:
        """Quit the browser and release everything."""
        if self.ws is not None:
            try:
                await self.send("Browser.close", timeout=5)
            except (RuntimeError, asyncio.TimeoutError, ConnectionError):
                pass
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for task in self._tasks:
            task.cancel()
