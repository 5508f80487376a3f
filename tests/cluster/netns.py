"""A small network of Linux network namespaces: one namespace per host, joined by a bridge.

The bridge lives in a namespace of its own (the "hub"), and each host is a veth pair from the hub's
bridge to the host's ``eth0``. Every address exists only inside namespaces this harness creates,
and :meth:`NamespaceNetwork.close` deletes them all: the machine's own network is never touched.

Names resolve the way a pod's do without DNS: ``ip netns exec NS`` bind-mounts
``/etc/netns/NS/hosts`` over ``/etc/hosts`` for the process it starts, so each namespace gets a
hosts file with every host's names (Kubernetes StatefulSet names such as
``qs-ps-0.qs-ps.ml.svc`` included). Those per-namespace files are created and removed with the
namespaces.

The test process itself stays in the machine's namespace; what must run on the network runs as a
child process inside one of its hosts: servers, loaders, trainers, and :class:`Agent`, a Python
process that runs the test's client calls there and answers each in JSON.

Needs root and ``ip`` (iproute2) with network-namespace support; :func:`unavailable` says why not.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

_NETNS_ETC = Path("/etc/netns")
_counter = itertools.count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be built here (``None``: they can)."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    if os.geteuid() != 0:
        return "building network namespaces needs root (CI runs these tests as root)"
    probe = f"qsprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"`ip netns add` fails here: {getattr(exc, 'stderr', '') or exc}".strip()
    _ip("netns", "del", probe)
    return None


class NamespaceNetwork:
    """Hosts on one bridged subnet, each in its own network namespace.

    Args:
        hosts: host name -> extra names it answers to (written into every host's hosts file).
        subnet: the addresses the hosts get, in order (only inside the namespaces).
    """

    def __init__(self, hosts: dict[str, Sequence[str]], subnet: str = "10.217.0.0/24") -> None:
        self.tag = f"qs{os.getpid()}n{next(_counter)}"
        self.hub = f"{self.tag}-hub"
        net = ipaddress.ip_network(subnet)
        self.prefixlen = net.prefixlen
        self.addresses = {host: str(addr) for host, addr in zip(hosts, itertools.islice(net.hosts(), len(hosts)))}
        self.names = {host: [host, *extra] for host, extra in hosts.items()}
        self._ports = {host: f"v{i}" for i, host in enumerate(hosts)}
        self.namespaces: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def ns(self, host: str) -> str:
        """The namespace of ``host``."""
        return f"{self.tag}-{list(self.addresses).index(host)}"

    def _build(self) -> None:
        _ip("netns", "add", self.hub)
        self.namespaces.append(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        hosts_file = "127.0.0.1 localhost\n" + "".join(
            f"{self.addresses[h]} {' '.join(names)}\n" for h, names in self.names.items())
        for host in self.addresses:
            ns, port = self.ns(host), self._ports[host]
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            _ip("-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{self.addresses[host]}/{self.prefixlen}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            (_NETNS_ETC / ns).mkdir(parents=True, exist_ok=True)
            (_NETNS_ETC / ns / "hosts").write_text(hosts_file)

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def popen(self, host: str, argv: Sequence[str], env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` on ``host`` (with ``env`` added to this process's environment)."""
        return subprocess.Popen(self.command(host, argv), env={**os.environ, **(env or {})}, **kwargs)

    def link_down(self, host: str) -> None:
        """Cut ``host`` off the bridge (its own interface keeps its address: a pulled cable)."""
        _ip("-n", self.hub, "link", "set", self._ports[host], "down")

    def link_up(self, host: str) -> None:
        """Plug ``host`` back in."""
        _ip("-n", self.hub, "link", "set", self._ports[host], "up")

    def close(self) -> None:
        """Delete every namespace (their interfaces go with them) and hosts file."""
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            shutil.rmtree(_NETNS_ETC / ns, ignore_errors=True)
        self.namespaces.clear()
        try:
            _NETNS_ETC.rmdir()  # only when no other network left files there
        except OSError:
            pass


_AGENT = r"""
import json, sys
scope = {}
for line in sys.stdin:
    try:
        exec(compile(json.loads(line), "<agent>", "exec"), scope)
        out = {"ok": True, "value": scope.pop("result", None)}
    except BaseException as exc:
        out = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    sys.stdout.write(json.dumps(out, default=repr) + "\n")
    sys.stdout.flush()
"""


class AgentError(Exception):
    """A call the agent ran raised: ``error`` is the class name, ``message`` its text."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(f"{error}: {message}")
        self.error, self.message = error, message


class Agent:
    """A Python process on one host of the network that runs the test's client code there.

    ``run(code)`` executes ``code`` in the agent's one persistent scope (connections opened by one
    call stay open for the next) and returns what it assigned to ``result``; an exception comes
    back as :class:`AgentError` with its class name.
    """

    def __init__(self, net: NamespaceNetwork, host: str, env: dict[str, str] | None = None) -> None:
        self.proc = net.popen(host, [sys.executable, "-c", _AGENT], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])

    def run(self, code: str) -> Any:
        """Run ``code`` on the agent's host; returns its ``result``."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(code) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the agent exited ({self.proc.wait()})")
        reply = json.loads(line)
        if not reply["ok"]:
            raise AgentError(reply["error"], reply["message"])
        return reply["value"]

    def close(self) -> None:
        """Stop the agent (its connections close with it)."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
