"""Models with explicit forward and backward passes: softmax regression and a ReLU MLP.

Parameters are an ordered dict of named arrays (``"mlp/w0"``, ``"mlp/b0"``, ...), so each can live
as its own variable on a parameter server task and be sharded round robin. The loss is the mean
cross-entropy over the batch, so gradients of shards average to the gradient of the whole batch
(what synchronous data parallelism relies on). Every function takes arrays of one module (NumPy or
CuPy) and computes with that module: the same code runs on the CPU and the GPU.

Example:
    >>> model = parse_model("mlp:4,8,3")
    >>> params = model.init_params(seed=0)
    >>> list(params)
    ['mlp/w0', 'mlp/b0', 'mlp/w1', 'mlp/b1']
    >>> x, y = np.ones((5, 4), np.float32), np.array([0, 1, 2, 0, 1])
    >>> loss, grads = model.loss_and_grads(params, x, y)
    >>> sorted(grads) == sorted(params)
    True
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, MutableMapping, Protocol

import numpy as np

from compute.backend import array_module

__all__ = ["Params", "Model", "SoftmaxRegression", "MLP", "parse_model", "cross_entropy", "accuracy",
           "softmax_cross_entropy_with_grad"]

#: Named parameter (or gradient) arrays, in a fixed order.
Params = MutableMapping[str, Any]


def _logsumexp(logits: Any, xp: Any) -> Any:
    """Row-wise log-sum-exp, shifted by the row maximum so ``exp`` never overflows."""
    m = xp.max(logits, axis=1, keepdims=True)
    return (m + xp.log(xp.sum(xp.exp(logits - m), axis=1, keepdims=True)))[:, 0]


def _labels(y: Any, n: int, xp: Any) -> Any:
    """Class indices as an integer vector of length ``n`` (accepts ``(n,)`` or ``(n, 1)``)."""
    y = xp.asarray(y).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"{y.shape[0]} labels for {n} examples")
    return y.astype(xp.int64, copy=False)


def cross_entropy(logits: Any, y: Any) -> float:
    """Mean cross-entropy of integer labels ``y`` under ``softmax(logits)``, computed stably."""
    xp = array_module(logits)
    yi = _labels(y, logits.shape[0], xp)
    picked = logits[xp.arange(logits.shape[0]), yi]
    return float(xp.mean(_logsumexp(logits, xp) - picked))


def softmax_cross_entropy_with_grad(logits: Any, y: Any) -> tuple[float, Any]:
    """The mean cross-entropy and its gradient with respect to ``logits``: ``(softmax - onehot) / n``."""
    xp = array_module(logits)
    n = logits.shape[0]
    yi = _labels(y, n, xp)
    lse = _logsumexp(logits, xp)
    rows = xp.arange(n)
    loss = float(xp.mean(lse - logits[rows, yi]))
    grad = xp.exp(logits - lse[:, None])  # softmax, from the same stable log-sum-exp
    grad[rows, yi] -= 1
    grad /= n
    return loss, grad


def accuracy(logits: Any, y: Any) -> float:
    """Fraction of rows whose largest logit is the label."""
    xp = array_module(logits)
    yi = _labels(y, logits.shape[0], xp)
    return float(xp.mean(xp.argmax(logits, axis=1) == yi))


class Model(Protocol):
    """What trainers need from a model."""

    name: str

    def init_params(self, seed: int = 0, dtype: Any = np.float32) -> "OrderedDict[str, np.ndarray]":
        """Fresh parameters (NumPy arrays), the same for the same seed."""

    def forward(self, params: Any, x: Any) -> Any:
        """Logits for a batch."""

    def loss_and_grads(self, params: Any, x: Any, y: Any) -> tuple[float, "OrderedDict[str, Any]"]:
        """Mean cross-entropy and its gradient for every parameter."""


class MLP:
    """A multilayer perceptron: dense layers with ReLU between them, logits out.

    Args:
        sizes: layer widths, inputs first and classes last, e.g. ``[784, 1024, 1024, 10]``.
        name: the prefix of the parameter names.

    Parameters are ``{name}/w{i}`` of shape ``(sizes[i], sizes[i+1])`` and ``{name}/b{i}``. Hidden
    layers use He initialisation (variance ``2 / fan_in``, suited to ReLU); the output layer uses
    Glorot's uniform initialisation. Biases start at zero.
    """

    def __init__(self, sizes: list[int], name: str = "mlp") -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(f"an MLP needs at least two positive layer sizes, got {sizes}")
        self.sizes = sizes
        self.name = name

    @property
    def num_layers(self) -> int:
        """Dense layers (weight matrices)."""
        return len(self.sizes) - 1

    def __repr__(self) -> str:
        return f"MLP({self.spec})"

    @property
    def spec(self) -> str:
        """The spec string :func:`parse_model` reads back."""
        return f"{self.name}:" + ",".join(map(str, self.sizes))

    def init_params(self, seed: int = 0, dtype: Any = np.float32) -> "OrderedDict[str, np.ndarray]":
        """He-initialised hidden layers, a Glorot-initialised output layer, zero biases."""
        rng = np.random.default_rng(seed)
        params: OrderedDict[str, np.ndarray] = OrderedDict()
        for i, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            if i < self.num_layers - 1:
                w = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                w = rng.uniform(-limit, limit, (fan_in, fan_out))
            params[f"{self.name}/w{i}"] = w.astype(dtype)
            params[f"{self.name}/b{i}"] = np.zeros(fan_out, dtype)
        return params

    def _forward(self, params: Any, x: Any) -> tuple[Any, list]:
        xp = array_module(x)
        activations = [x]
        h = x
        for i in range(self.num_layers):
            z = h @ params[f"{self.name}/w{i}"] + params[f"{self.name}/b{i}"]
            h = xp.maximum(z, 0) if i < self.num_layers - 1 else z
            activations.append(h)
        return h, activations

    def forward(self, params: Any, x: Any) -> Any:
        """Logits, shape ``(batch, classes)``."""
        return self._forward(params, x)[0]

    def layer_names(self, start: int, end: int) -> list[str]:
        """The parameter names of dense layers ``start..end-1``, in :meth:`init_params` order."""
        self._check_range(start, end)
        return [f"{self.name}/{kind}{i}" for i in range(start, end) for kind in ("w", "b")]

    def _check_range(self, start: int, end: int) -> None:
        if not 0 <= start < end <= self.num_layers:
            raise ValueError(f"layers {start}..{end - 1} are not a non-empty range of {self}'s "
                             f"{self.num_layers} layers (0..{self.num_layers - 1})")

    def forward_range(self, params: Any, x: Any, start: int, end: int) -> tuple[Any, list]:
        """Run dense layers ``start..end-1`` only (one stage of a model split by layers).

        Args:
            params: at least the parameters of those layers (see :meth:`layer_names`).
            x: the input of layer ``start``: the features, or the previous stage's output.
            start: the first layer.
            end: one past the last layer.

        Returns:
            The output of layer ``end - 1`` (after its ReLU, or the logits for the last layer) and
            the activations :meth:`backward_range` needs: ``[x, output of start, ..., output of end-1]``.
        """
        self._check_range(start, end)
        xp = array_module(x)
        activations = [x]
        h = x
        for i in range(start, end):
            z = h @ params[f"{self.name}/w{i}"] + params[f"{self.name}/b{i}"]
            h = xp.maximum(z, 0) if i < self.num_layers - 1 else z
            activations.append(h)
        return h, activations

    def backward_range(self, params: Any, activations: list, grad_out: Any, start: int, end: int,
                       input_grad: bool = True) -> tuple["OrderedDict[str, Any]", Any]:
        """Backpropagate through dense layers ``start..end-1`` (the same operations as
        :meth:`loss_and_grads`, so stages chained end to end give its gradients).

        Args:
            params: the parameters of those layers.
            activations: what :meth:`forward_range` returned for them.
            grad_out: the gradient with respect to the range's output (the logits for the last layer;
                else the output after the ReLU, which this range owns and applies here).
            start, end: the range, as for :meth:`forward_range`.
            input_grad: also return the gradient with respect to the range's input.

        Returns:
            The parameters' gradients (in :meth:`layer_names` order) and the input's gradient (None
            without ``input_grad``). The input's gradient does not go through the previous layer's
            ReLU: the stage that owns that layer applies it.
        """
        deltas, grad_in = self.backward_deltas(params, activations, grad_out, start, end, input_grad)
        return self.weight_grads(activations, deltas, start, end), grad_in

    def backward_deltas(self, params: Any, activations: list, grad_out: Any, start: int, end: int,
                        input_grad: bool = True) -> tuple[list, Any]:
        """The first half of :meth:`backward_range`: the gradient with respect to each layer's
        pre-activation (its "delta") and to the range's input, without the weights' gradients.

        A pipeline stage sends the input's gradient back at once and computes the weights' gradients
        later, for all of a minibatch's micro-batches together (:meth:`weight_grads` of the stacked
        activations and deltas): one large product instead of one per micro-batch.

        Returns:
            ``[delta of layer start, ..., delta of layer end-1]`` and the input's gradient (or None).
        """
        self._check_range(start, end)
        acts = activations
        delta = grad_out
        if end - 1 < self.num_layers - 1:
            delta = delta * (acts[-1] > 0)  # this range's last ReLU
        deltas: list[Any] = [None] * (end - start)
        grad_in = None
        for i in reversed(range(start, end)):
            deltas[i - start] = delta
            if i > start:
                delta = (delta @ params[f"{self.name}/w{i}"].T) * (acts[i - start] > 0)
            elif input_grad:
                grad_in = delta @ params[f"{self.name}/w{i}"].T
        return deltas, grad_in

    def weight_grads(self, activations: list, deltas: list, start: int, end: int) -> "OrderedDict[str, Any]":
        """The second half of :meth:`backward_range`: the weights' and biases' gradients from each
        layer's input activations and deltas (rows: examples; any number of them).

        Returns:
            The gradients, in :meth:`layer_names` order.
        """
        self._check_range(start, end)
        grads: OrderedDict[str, Any] = OrderedDict()
        for i in range(start, end):
            grads[f"{self.name}/w{i}"] = activations[i - start].T @ deltas[i - start]
            grads[f"{self.name}/b{i}"] = deltas[i - start].sum(axis=0)
        return grads

    def loss_and_grads(self, params: Any, x: Any, y: Any) -> tuple[float, "OrderedDict[str, Any]"]:
        """Mean cross-entropy and gradients, by backpropagation through the stored activations."""
        logits, acts = self._forward(params, x)
        loss, delta = softmax_cross_entropy_with_grad(logits, y)
        grads: OrderedDict[str, Any] = OrderedDict()
        for i in reversed(range(self.num_layers)):
            grads[f"{self.name}/w{i}"] = acts[i].T @ delta
            grads[f"{self.name}/b{i}"] = delta.sum(axis=0)
            if i > 0:
                # ReLU passes the gradient where its output was positive; acts[i] is that output.
                delta = (delta @ params[f"{self.name}/w{i}"].T) * (acts[i] > 0)
        return loss, OrderedDict((k, grads[k]) for k in params)


class SoftmaxRegression(MLP):
    """Multinomial logistic regression: one dense layer and a softmax.

    Args:
        inputs: input features.
        classes: output classes.
        name: the prefix of the parameter names (``softmax/w0``, ``softmax/b0``).
    """

    def __init__(self, inputs: int, classes: int, name: str = "softmax") -> None:
        super().__init__([inputs, classes], name=name)

    def __repr__(self) -> str:
        return f"SoftmaxRegression({self.sizes[0]}, {self.sizes[1]})"


def parse_model(spec: str) -> MLP:
    """Build a model from ``"mlp:784,1024,1024,10"`` or ``"softmax:784,10"``.

    Args:
        spec: ``kind:sizes`` with kind ``mlp`` (two or more sizes) or ``softmax`` (exactly two).

    Raises:
        ValueError: an unknown kind or malformed sizes, with the expected form in the message.
    """
    kind, _, sizes_text = spec.partition(":")
    try:
        sizes = [int(s) for s in sizes_text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    kind = kind.strip().lower()
    if kind == "mlp" and len(sizes) >= 2:
        return MLP(sizes)
    if kind in ("softmax", "logreg") and len(sizes) == 2:
        return SoftmaxRegression(sizes[0], sizes[1])
    raise ValueError(f"bad model spec {spec!r}: use 'mlp:784,1024,1024,10' or 'softmax:784,10'")
