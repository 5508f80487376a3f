"""A queue server daemon with shared named queues and resource containers (TensorFlow 1 style)."""

from queueserver.errors import *  # noqa: F401,F403
from queueserver.errors import __all__ as _errors_all

__all__ = list(_errors_all)
