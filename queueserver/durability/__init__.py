"""Durable state (``queueserver serve --data-dir DIR``): an append-only log of every change plus
snapshots, written off the event loop and replayed at start.

* :mod:`~queueserver.durability.records` frames and checksums records (no I/O);
* :mod:`~queueserver.durability.state` says what each change records and replays records through
  the core (no I/O);
* :mod:`~queueserver.durability.log` keeps the files: the writer thread, the fsync modes,
  compaction into snapshots, and recovery of a torn or corrupt tail.
"""

from queueserver.durability.log import FSYNC_MODES, DurableLog, Recovery, check_fsync  # noqa: F401
from queueserver.durability.state import Recorder, Replay, snapshot  # noqa: F401
