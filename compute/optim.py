"""Optimizers that apply gradients to parameter dicts: SGD and momentum.

Each optimizer turns gradients into *updates* (``delta``, the amount to add to each parameter) and
can apply them in place. Trainers that own their parameters call :meth:`apply`; asynchronous
replicas call :meth:`delta` and push it to the parameter servers with ``assign_add``, so the
addition happens atomically where the variable lives.

Example:
    >>> params = {"w": np.ones(2, np.float32)}
    >>> SGD(lr=0.5).apply(params, {"w": np.float32([1.0, -1.0])})
    >>> params["w"].tolist()
    [0.5, 1.5]
"""

from __future__ import annotations

from typing import Any, Mapping, MutableMapping

import numpy as np

from compute.backend import array_module

__all__ = ["Optimizer", "SGD", "Momentum", "make_optimizer"]


class Optimizer:
    """Base class: subclasses define :meth:`delta`."""

    def delta(self, grads: Mapping[str, Any], scale: float = 1.0) -> dict[str, Any]:
        """The update to add to each parameter for these gradients.

        Args:
            grads: gradient per parameter name.
            scale: multiplies the learning rate for this step (staleness-aware scaling uses it).
        """
        raise NotImplementedError

    def apply(self, params: MutableMapping[str, Any], grads: Mapping[str, Any], scale: float = 1.0) -> None:
        """Add :meth:`delta` to ``params`` in place."""
        for name, d in self.delta(grads, scale).items():
            params[name] += d.astype(params[name].dtype, copy=False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays to checkpoint (slot variables), keyed by name."""
        return {}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` returned."""


class SGD(Optimizer):
    """Plain gradient descent: ``delta = -lr * grad``.

    Args:
        lr: the learning rate.
    """

    def __init__(self, lr: float = 0.1) -> None:
        if not lr > 0:
            raise ValueError(f"the learning rate must be positive, got {lr}")
        self.lr = float(lr)

    def delta(self, grads: Mapping[str, Any], scale: float = 1.0) -> dict[str, Any]:
        """``-lr * scale * grad`` for each parameter."""
        step = -self.lr * scale
        return {name: g * step for name, g in grads.items()}

    def __repr__(self) -> str:
        return f"SGD(lr={self.lr})"


class Momentum(SGD):
    """Gradient descent with momentum: ``v = momentum * v + grad; delta = -lr * v``.

    The velocity ``v`` is this optimizer's own state (TensorFlow's slot variable); it is kept where
    the optimizer runs and checkpointed with the parameters.

    Args:
        lr: the learning rate.
        momentum: how much of the previous velocity to keep, in ``[0, 1)``.
        nesterov: use Nesterov's look-ahead form ``delta = -lr * (grad + momentum * v)``.
    """

    def __init__(self, lr: float = 0.1, momentum: float = 0.9, nesterov: bool = False) -> None:
        super().__init__(lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.nesterov = nesterov
        self.velocity: dict[str, Any] = {}

    def delta(self, grads: Mapping[str, Any], scale: float = 1.0) -> dict[str, Any]:
        """Update the velocities and return ``-lr * scale * v`` (or the Nesterov form)."""
        out = {}
        for name, g in grads.items():
            v = self.velocity.get(name)
            # Restored velocities are host arrays: move them to the gradients' device first.
            v = g.copy() if v is None else array_module(g).asarray(v) * self.momentum + g
            self.velocity[name] = v
            step = g + self.momentum * v if self.nesterov else v
            out[name] = step * (-self.lr * scale)
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """The velocities, as host arrays, under ``"momentum:<param name>"``."""
        return {f"momentum:{k}": _host(v) for k, v in self.velocity.items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore the velocities saved by :meth:`state_dict`."""
        self.velocity = {k[len("momentum:"):]: np.array(v) for k, v in state.items() if k.startswith("momentum:")}

    def __repr__(self) -> str:
        return f"Momentum(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov})"


def _host(x: Any) -> np.ndarray:
    xp = array_module(x)
    return xp.asnumpy(x) if xp is not np else np.asarray(x)


def make_optimizer(name: str, lr: float, momentum: float = 0.9) -> Optimizer:
    """``"sgd"`` or ``"momentum"`` (``"nesterov"``) with the given learning rate.

    Raises:
        ValueError: an unknown optimizer name.
    """
    name = name.lower()
    if name == "sgd":
        return SGD(lr)
    if name in ("momentum", "nesterov"):
        return Momentum(lr, momentum, nesterov=name == "nesterov")
    raise ValueError(f"unknown optimizer {name!r}: use sgd, momentum or nesterov")
