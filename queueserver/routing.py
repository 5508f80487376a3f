"""Cluster-wide resources: placement, the name directory, and connections to the other tasks.

Every resource has a *home* task, chosen when it is created (from the client's placement scope,
or the task the client talks to). Names are cluster-wide: the directory records ``(container,
name) -> home`` on one task chosen by hashing the name, so any task can find any resource and a
second client asking for ``x`` through another task gets the first one's ``x``. Servers cache what
they looked up; a reset reaches every task and clears those caches.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import TYPE_CHECKING

from queueserver import protocol as P
from queueserver.cluster import ClusterSpec, DeviceSpec, task_name
from queueserver.errors import (
    DeadlineExceededError, InvalidArgumentError, NotFoundError, QueueServerError, UnavailableError,
)

if TYPE_CHECKING:  # pragma: no cover
    from queueserver.channel import Channel
    from queueserver.core.resources import ResourceManager

log = logging.getLogger("queueserver")

# A task that does not answer is tried this many times, with these pauses, before calls fail.
CONNECT_ATTEMPTS = 3
CONNECT_BACKOFF_S = (0.1, 0.3)
# How long a task may take to answer a new link's hello (a hung task accepts TCP but never answers),
# and the directory's questions: the other tasks must not wait on a hung one longer than this.
PEER_CONNECT_TIMEOUT_S = 2.0
PEER_CALL_TIMEOUT_S = 3.0


class Placement:
    """Turns requested device names into home tasks, for one server."""

    def __init__(self, cluster: ClusterSpec | None, job: str, index: int) -> None:
        self.cluster = cluster
        self.job, self.index = job, index
        self.task = task_name(job, index)

    def all_tasks(self) -> list[str]:
        """Every task of the cluster (just this one without a cluster), sorted."""
        if self.cluster is None:
            return [self.task]
        return [task_name(job, i) for job in self.cluster.jobs for i in self.cluster.task_indices(job)]

    def exists(self, job: str, index: int) -> bool:
        if self.cluster is None:
            return (job, index) == (self.job, self.index)
        return job in self.cluster.jobs and index in self.cluster.task_indices(job)

    def resolve(self, device: str | None, soft: bool) -> tuple[str, str | None]:
        """The home task for a requested device, and a warning if soft placement moved it.

        TensorFlow's partial-name rules: no job means the task the client talks to; a job without
        a task means task 0.

        Raises:
            InvalidArgumentError: the named task does not exist and soft placement is off.
        """
        spec = DeviceSpec.parse(device)
        if spec.job is None:
            job, index = self.job, spec.task if spec.task is not None else self.index
        else:
            job, index = spec.job, spec.task if spec.task is not None else 0
        if self.exists(job, index):
            return task_name(job, index), None
        known = ", ".join(self.all_tasks())
        message = f"Cannot place on {task_name(job, index)}: no such task in this cluster (tasks: {known})"
        if not soft:
            raise InvalidArgumentError(message + "; pass allow_soft_placement=True to fall back to the client's task")
        return self.task, message + f"; placed on {self.task} instead (soft placement)"

    def directory_task(self, container: str, name: str) -> str:
        """The task that records where ``(container, name)`` lives: a stable hash of the name."""
        return self.arbiters(container, name)[0]

    def arbiters(self, container: str, name: str) -> list[str]:
        """The tasks that may record where ``(container, name)`` lives, in the order they are asked:
        the task the name hashes to, then the ones after it (a fixed ring, the same on every task)."""
        tasks = self.all_tasks()
        first = zlib.crc32(f"{container}\0{name}".encode()) % len(tasks)
        return tasks[first:] + tasks[:first]

    def address(self, task: str) -> str:
        """``host:port`` of a task."""
        spec = DeviceSpec.parse(task)
        if self.cluster is None or spec.job is None or spec.task is None:
            raise NotFoundError(f"no address for task {task}")
        return self.cluster.task_address(spec.job, spec.task)


class Peers:
    """Connections from this server to the other tasks, opened on first use, reopened after failures."""

    def __init__(self, placement: Placement, token: str | None, max_message_bytes: int) -> None:
        self.placement = placement
        self.token = token
        self.max_message_bytes = max_message_bytes
        self._clients: dict[str, Channel] = {}
        self._connecting: dict[str, asyncio.Future] = {}

    async def get(self, task: str) -> "Channel":
        """A live connection to ``task``.

        Raises:
            UnavailableError: the task did not answer after a bounded number of tries; names it.
        """
        client = self._clients.get(task)
        if client is not None and client.connected:
            return client
        pending = self._connecting.get(task)
        if pending is not None:
            return await asyncio.shield(pending)
        fut = asyncio.get_running_loop().create_future()
        self._connecting[task] = fut
        try:
            client = await self._connect(task)
            self._clients[task] = client
            fut.set_result(client)
            return client
        except BaseException as exc:
            # The caller that opened the connection may have been cancelled; the others waiting
            # on it were not, so they get an error they can answer their own callers with.
            shared = exc if isinstance(exc, QueueServerError) else UnavailableError(
                f"connecting to task {task} was interrupted: {exc!r}")
            fut.set_exception(shared)
            fut.exception()  # retrieved: concurrent waiters get it through shield
            raise
        finally:
            del self._connecting[task]

    async def _connect(self, task: str) -> "Channel":
        from queueserver.channel import Channel

        address = self.placement.address(task)
        last: Exception | None = None
        for attempt in range(CONNECT_ATTEMPTS):
            client = Channel(address, token=self.token, client_name=f"peer {self.placement.task}",
                             max_message_bytes=self.max_message_bytes)
            client.label = f"task {task} at {address}"
            try:
                return await client.open(timeout=PEER_CONNECT_TIMEOUT_S)
            except QueueServerError as exc:
                last = exc
                if isinstance(exc, UnavailableError) and attempt < CONNECT_ATTEMPTS - 1:
                    await asyncio.sleep(CONNECT_BACKOFF_S[min(attempt, len(CONNECT_BACKOFF_S) - 1)])
                    continue
                break
        raise UnavailableError(f"{last} (tried {CONNECT_ATTEMPTS} times)") from last

    async def close(self) -> None:
        """Close every peer connection."""
        for client in list(self._clients.values()):
            try:
                await asyncio.wait_for(client.close(), 2.0)
            except (QueueServerError, asyncio.TimeoutError, OSError):
                pass
        self._clients.clear()


class Directory:
    """Where each cluster-wide name lives, with no single task whose death hides it.

    The truth is on the home tasks: a resource exists where it was created. The directory only
    decides, once, which task a new name is created on (first registration wins), and remembers
    it so lookups are one call. Its entries for a name live on the name's *arbiters*: the task the
    name hashes to, then the tasks after it in a fixed ring. The first arbiter that answers
    decides, so a dead task delays (by its bounded connection attempts) but does not hide names
    homed elsewhere. An arbiter that does not know a name (it restarted, or stands in for a dead
    one) has the tasks asked whether they hold it before anything is registered, so an existing
    name never gets a second home: the one exception is a name held only by a task that cannot
    be reached at that moment, which then cannot be told apart from a new name (see README).
    """

    def __init__(self, placement: Placement, peers: Peers, resources: ResourceManager | None = None) -> None:
        self.placement = placement
        self.peers = peers
        self.resources = resources
        self.entries: dict[tuple[str, str], str] = {}  # names this task has arbitrated
        self.cache: dict[tuple[str, str], str] = {}    # homes this task learnt elsewhere

    def local_register(self, container: str, name: str, home: str) -> str:
        """First registration wins; returns the name's home."""
        return self.entries.setdefault((container, name), home)

    def local_lookup(self, container: str, name: str) -> str:
        home = self.entries.get((container, name))
        if home is None:
            raise NotFoundError(_missing(container, name))
        return home

    def holds(self, container: str, name: str) -> bool:
        """Whether this task holds ``(container, name)`` itself."""
        if self.resources is None:
            return False
        try:
            self.resources.get(container, name)
        except NotFoundError:
            return False
        return True

    async def register(self, container: str, name: str, home: str) -> str:
        """Record ``home`` for a new name, or learn the existing home of a known one."""
        key = (container, name)
        if key in self.cache:
            return self.cache[key]
        unreachable: dict[str, str] = {}
        try:
            winner = await self._known_home(container, name, unreachable)
        except NotFoundError:
            holder = await self._find_holder(container, name, unreachable)
            winner = await self._arbitrate("register", container, name, holder or home, unreachable)
        self.cache[key] = winner
        return winner

    async def lookup(self, container: str, name: str) -> str:
        """The home of an existing name.

        Raises:
            NotFoundError: no task holds it.
            UnavailableError: no reachable task holds it, and a task that may hold it is down (named).
        """
        key = (container, name)
        if key in self.cache:
            return self.cache[key]
        unreachable: dict[str, str] = {}
        try:
            home = await self._known_home(container, name, unreachable)
        except NotFoundError:
            holder = await self._find_holder(container, name, unreachable)
            if holder is None:
                if unreachable:
                    down = "; ".join(f"{task} at {why}" for task, why in sorted(unreachable.items()))
                    raise UnavailableError(f"{_what(container, name)} is on no reachable task, and a task that "
                                           f"may hold it is unavailable: {down}") from None
                raise
            home = await self._arbitrate("register", container, name, holder, unreachable)
        self.cache[key] = home
        return home

    async def _known_home(self, container: str, name: str, unreachable: dict[str, str]) -> str:
        """What the first answering arbiter has recorded. Raises NotFoundError if it has nothing."""
        return await self._arbitrate("lookup", container, name, None, unreachable)

    async def _arbitrate(self, action: str, container: str, name: str, home: str | None,
                         unreachable: dict[str, str]) -> str:
        """Ask the name's arbiters in turn; the first that answers decides."""
        for task in self.placement.arbiters(container, name):
            if task in unreachable:
                continue
            if task == self.placement.task:
                if action == "lookup":
                    return self.local_lookup(container, name)
                assert home is not None
                return self.local_register(container, name, home)
            try:
                peer = await self.peers.get(task)
                reply, _ = await peer.call(P.directory(action, container, name, home), wait=PEER_CALL_TIMEOUT_S)
            except (UnavailableError, DeadlineExceededError) as exc:
                unreachable[task] = _why(self.placement, task, exc)
                continue
            return reply["r"]
        down = "; ".join(f"{task} at {why}" for task, why in sorted(unreachable.items()))
        raise UnavailableError(f"no task can say where {_what(container, name)} lives: {down}")

    async def _find_holder(self, container: str, name: str, unreachable: dict[str, str]) -> str | None:
        """The task that holds ``(container, name)``, asking every reachable task at once."""
        if self.holds(container, name):
            return self.placement.task
        others = [t for t in self.placement.all_tasks() if t != self.placement.task and t not in unreachable]
        answers = await asyncio.gather(*(self._holds_on(t, container, name) for t in others),
                                       return_exceptions=True)
        for task, answer in zip(others, answers):
            if answer is True:
                return task
            if isinstance(answer, (UnavailableError, DeadlineExceededError)):
                unreachable[task] = _why(self.placement, task, answer)
            elif isinstance(answer, BaseException) and not isinstance(answer, QueueServerError):
                raise answer
        return None

    async def _holds_on(self, task: str, container: str, name: str) -> bool:
        peer = await self.peers.get(task)
        try:
            await peer.call({**P.spec(name, container), P.HOME: task, P.LOCAL: True}, wait=PEER_CALL_TIMEOUT_S)
        except NotFoundError:
            return False
        return True

    def forget(self, containers: list[str]) -> None:
        """Drop every entry and cached home in ``containers`` (after a reset)."""
        drop = set(containers)
        for table in (self.entries, self.cache):
            for key in [k for k in table if k[0] in drop]:
                del table[key]


def _what(container: str, name: str) -> str:
    return f"resource '{name}'" + (f" in container '{container}'" if container else "")


def _missing(container: str, name: str) -> str:
    return _what(container, name) + " does not exist anywhere in the cluster"


def _why(placement: Placement, task: str, exc: BaseException) -> str:
    """``task at host:port (error)`` for a task that did not answer."""
    try:
        where = placement.address(task)
    except NotFoundError:
        where = "?"
    return f"{where} ({exc})"


def check_device_name(device: object) -> str | None:
    """Validate the wire field holding a requested device."""
    if device is None or device == "":
        return None
    if not isinstance(device, str):
        raise InvalidArgumentError("device must be a string like /job:ps/task:0")
    DeviceSpec.parse(device)
    return device
