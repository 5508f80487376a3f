"""A large sparse model trained by moving only the rows a batch touches (the seed's section 3.4.3).

The model: each example is a bag of raw feature ids (int64; negative ids are padding), hashed into
the rows of an embedding table (``buckets x dim``), averaged per example (TensorFlow's
``embedding_lookup_sparse(..., combiner="mean")``), then the existing :class:`~compute.models.MLP`
on the averaged embedding. Cross-entropy loss, plain SGD, in NumPy (the rows a step touches are
few: the host computes them; the GPU backend of :mod:`compute.backend` is not used here).

Training keeps the table on the ps and never moves all of it:

- a step pulls the rows its batch touches (``gather`` of the unique rows) and the MLP;
- asynchronous mode pushes the rows' gradients with ``scatter_sub`` (``lr * grad``);
- synchronous mode (:func:`train_sync`, TensorFlow's SyncReplicasOptimizer) pushes each replica's
  row gradients to a :class:`~queueserver.SparseAccumulator` (``SUM``) and the MLP's gradients to
  dense accumulators; the chief takes ``replicas`` of each, divides the row sums by ``replicas``
  (the same average a dense accumulator takes: rows a replica did not touch count as zeros) and
  applies them with ``scatter_sub``, then releases one token per replica.

``sparse=False`` trains the same model the dense way (the whole table pulled with ``read`` and
its whole gradient pushed with ``assign_sub`` or a dense accumulator): the reference the sparse
runs must equal, and the baseline of ``benchmarks/sparse_updates.py``.

Example:
    >>> import queueserver as qs
    >>> server = qs.Server.create_local_server()
    >>> model = SparseModel(buckets=100, dim=4, hidden=[8], classes=2)
    >>> ids, y = synthetic_data(64, features=3, id_space=1000, classes=2, seed=0)
    >>> with qs.connect(server.target, operation_timeout=10) as c:
    ...     result = train_async(c, model, ids, y, batch_size=16, lr=0.1)
    >>> len(result.losses), result.bytes_pushed / len(result.losses) < result.table_bytes  # per step
    (4, True)
    >>> server.stop()
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np

import queueserver as qs
from compute.models import MLP, softmax_cross_entropy_with_grad

__all__ = ["SparseModel", "Lookup", "hash_ids", "synthetic_data", "SparseParams", "SparseResult", "train_async",
           "train_sync"]

_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def hash_ids(ids: Any, buckets: int) -> np.ndarray:
    """Rows of raw feature ids: SplitMix64's finaliser of each id, modulo ``buckets`` (vectorised;
    the same id gives the same row on every machine). Negative ids (padding) give -1."""
    ids = np.asarray(ids, dtype=np.int64)
    z = ids.astype(np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z ^= z >> np.uint64(31)
    rows = (z % np.uint64(buckets)).astype(np.int64)
    return np.where(ids < 0, -1, rows)


class Lookup(NamedTuple):
    """How a batch reads the table: ``rows`` (unique, increasing) are the rows it touches; each
    valid id ``k`` of example ``example[k]`` reads ``rows[which[k]]`` with weight ``weight[k]``
    (1 / the example's number of ids: the mean)."""

    rows: np.ndarray
    which: np.ndarray
    example: np.ndarray
    weight: np.ndarray
    batch: int


@dataclass(frozen=True)
class SparseModel:
    """An embedding table over hashed feature ids, averaged per example, then an MLP.

    Args:
        buckets: rows of the table (hash buckets).
        dim: the embedding width (the MLP's input).
        hidden: the MLP's hidden layer widths.
        classes: the MLP's outputs.
        name: the prefix of the parameter names (``{name}/emb``, ``{name}/mlp/w0``, ...).
    """

    buckets: int
    dim: int
    hidden: Sequence[int]
    classes: int
    name: str = "sparse"

    @property
    def mlp(self) -> MLP:
        """The dense part."""
        return MLP([self.dim, *self.hidden, self.classes], name=f"{self.name}/mlp")

    @property
    def table_name(self) -> str:
        """The embedding table's variable name."""
        return f"{self.name}/emb"

    def init_params(self, seed: int = 0, dtype: Any = np.float32) -> tuple[np.ndarray, "OrderedDict[str, np.ndarray]"]:
        """A table of N(0, 1/dim) rows and the MLP's initial parameters, the same for the same seed."""
        rng = np.random.default_rng(seed)
        table = (rng.standard_normal((self.buckets, self.dim)) / np.sqrt(self.dim)).astype(dtype)
        return table, self.mlp.init_params(seed + 1, dtype)

    def lookup(self, ids: Any) -> Lookup:
        """The rows a batch of id bags ``(batch, features)`` touches, and how each example averages them."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"feature ids must be (batch, features), got shape {ids.shape}")
        hashed = hash_ids(ids, self.buckets)
        valid = hashed >= 0
        example = np.nonzero(valid)[0]
        counts = np.maximum(valid.sum(axis=1), 1)
        rows, which = np.unique(hashed[valid], return_inverse=True)
        return Lookup(rows, which.reshape(-1), example, 1.0 / counts[example], ids.shape[0])

    def embed(self, rows: np.ndarray, lk: Lookup) -> np.ndarray:
        """Each example's mean embedding from the touched ``rows`` (``len(lk.rows) x dim``)."""
        x = np.zeros((lk.batch, self.dim), rows.dtype)
        np.add.at(x, lk.example, rows[lk.which] * lk.weight[:, None].astype(rows.dtype))
        return x

    def loss_and_grads(self, rows: np.ndarray, lk: Lookup, mlp_params: Any,
                       y: Any) -> tuple[float, np.ndarray, "OrderedDict[str, Any]"]:
        """Mean cross-entropy, the gradient of the touched rows (``len(lk.rows) x dim``) and the MLP's."""
        mlp = self.mlp
        x = self.embed(rows, lk)
        logits, acts = mlp.forward_range(mlp_params, x, 0, mlp.num_layers)
        loss, grad_logits = softmax_cross_entropy_with_grad(logits, y)
        grads, grad_x = mlp.backward_range(mlp_params, acts, grad_logits, 0, mlp.num_layers)
        grad_rows = np.zeros_like(rows)
        np.add.at(grad_rows, lk.which, grad_x[lk.example] * lk.weight[:, None].astype(rows.dtype))
        return loss, grad_rows, grads


def synthetic_data(n: int, *, features: int, id_space: int, classes: int, seed: int = 0,
                   zipf: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """``n`` bags of ``features`` raw ids drawn from a Zipf law over ``[0, id_space)`` (a few ids
    are frequent, most are rare, as in click logs), a few padded with -1, and labels the model can
    learn: each id votes for class ``id % classes``, and the label is the class with most votes
    (the smallest on a tie): a linear function of the bag's mean one-hot vote."""
    rng = np.random.default_rng(seed)
    ids = (rng.zipf(zipf, size=(n, features)) - 1) % id_space
    ids[rng.random((n, features)) < 0.1] = -1  # padding: bags of different sizes
    votes = np.zeros((n, classes), np.int64)
    valid = ids >= 0
    np.add.at(votes, (np.nonzero(valid)[0], ids[valid] % classes), 1)
    return ids.astype(np.int64), votes.argmax(axis=1).astype(np.int64)


class SparseParams:
    """The model's parameters as server variables: the table (one variable, or row shards with
    ``num_shards``) and one variable per MLP parameter. ``init=True`` creates and initializes them
    from ``model.init_params(seed, dtype)``."""

    def __init__(self, client: Any, model: SparseModel, *, dtype: Any = np.float32, seed: int = 0,
                 num_shards: int | None = None, init: bool = True) -> None:
        table, mlp = model.init_params(seed, dtype)
        self.model = model
        self.table: Any
        if num_shards:
            self.table = client.partitioned_variable(model.table_name, table.shape, table.dtype,
                                                     initializer=table, num_shards=num_shards)
        else:
            self.table = client.variable(model.table_name, table)
        self.mlp = OrderedDict((k, client.variable(k, v)) for k, v in mlp.items())
        if init:
            self.table.initialize()
            for v in self.mlp.values():
                v.initialize()

    def read(self) -> tuple[np.ndarray, "OrderedDict[str, np.ndarray]"]:
        """The whole table and the MLP, as they are on the server now."""
        return self.table.read(), OrderedDict((k, v.read()) for k, v in self.mlp.items())


@dataclass
class SparseResult:
    """What a run did: the loss of each step, the bytes of the table's rows it pulled and pushed
    (indices included; the MLP's bytes are counted apart), and the time."""

    losses: list[float] = field(default_factory=list)
    bytes_pulled: int = 0
    bytes_pushed: int = 0
    mlp_bytes: int = 0
    table_bytes: int = 0
    seconds: float = 0.0


def _batches(n: int, batch_size: int) -> list[slice]:
    return [slice(i, i + batch_size) for i in range(0, n - batch_size + 1, batch_size)]


def train_async(client: Any, model: SparseModel, ids: np.ndarray, labels: np.ndarray, *, batch_size: int,
                lr: float, sparse: bool = True, dtype: Any = np.float32, seed: int = 0,
                num_shards: int | None = None, params: SparseParams | None = None) -> SparseResult:
    """One asynchronous worker's pass over ``ids``/``labels`` in batches: pull the touched rows
    (``gather``) and the MLP, compute, push ``lr * grad`` of the rows (``scatter_sub``) and of the
    MLP (``assign_sub``). ``sparse=False``: pull the whole table, push its whole gradient.

    Args:
        client: a synchronous client (``qs.connect``).
        params: the server variables (default: created and initialized here from ``seed``).
    """
    if num_shards and not sparse:
        raise ValueError("a partitioned table (num_shards) trains sparse only: its shards have no assign_sub")
    params = params or SparseParams(client, model, dtype=dtype, seed=seed, num_shards=num_shards)
    result = SparseResult(table_bytes=int(np.prod(params.table.shape)) * np.dtype(params.table.dtype).itemsize)
    t0 = time.perf_counter()
    for part in _batches(len(ids), batch_size):
        lk = model.lookup(ids[part])
        mlp = OrderedDict((k, v.read()) for k, v in params.mlp.items())
        if sparse:
            rows = params.table.gather(lk.rows)
            result.bytes_pulled += lk.rows.nbytes + rows.nbytes
        else:
            rows = params.table.read()[lk.rows]
            result.bytes_pulled += result.table_bytes
        loss, grad_rows, grads = model.loss_and_grads(rows, lk, mlp, labels[part])
        step = lr * grad_rows
        if sparse:
            params.table.scatter_sub(lk.rows, step)
            result.bytes_pushed += lk.rows.nbytes + step.nbytes
        else:
            dense = np.zeros(params.table.shape, step.dtype)
            dense[lk.rows] = step
            params.table.assign_sub(dense)
            result.bytes_pushed += dense.nbytes
        for k, g in grads.items():
            params.mlp[k].assign_sub(lr * g)
        result.mlp_bytes += 2 * sum(v.nbytes for v in mlp.values())
        result.losses.append(loss)
    result.seconds = time.perf_counter() - t0
    return result


def train_sync(target: str, model: SparseModel, ids: np.ndarray, labels: np.ndarray, *, replicas: int,
               batch_size: int, lr: float, sparse: bool = True, dtype: Any = np.float32, seed: int = 0,
               timeout: float = 60.0) -> SparseResult:
    """Synchronous training with ``replicas`` replicas (threads, each with its own connection):
    at step ``s`` replica ``r`` trains on rows ``[(s * replicas + r) * batch_size, ...)`` of the
    data; the chief applies the average of the ``replicas`` gradients. Returns the chief's losses
    and the table bytes of every replica.

    The same model and data give, up to rounding, the parameters one process gets training on
    batches of ``replicas * batch_size``: the loss is a mean, so the average of the replicas'
    gradients is the whole batch's.
    """
    with qs.connect(target, operation_timeout=timeout) as chief:
        params = SparseParams(chief, model, dtype=dtype, seed=seed)
        result = SparseResult(table_bytes=int(np.prod(params.table.shape)) * np.dtype(params.table.dtype).itemsize)
        steps = len(ids) // (replicas * batch_size)
        errors: list[BaseException] = []
        lock = threading.Lock()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=_replica, name=f"sparse replica {r}", daemon=True,
                                    args=(target, model, ids, labels, r, replicas, steps, batch_size, lr, sparse,
                                          dtype, timeout, result, lock, errors)) for r in range(replicas)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result.seconds = time.perf_counter() - t0
        if errors:
            raise errors[0]
    return result


def _replica(target: str, model: SparseModel, ids: np.ndarray, labels: np.ndarray, r: int, replicas: int, steps: int,
             batch_size: int, lr: float, sparse: bool, dtype: Any, timeout: float, result: SparseResult,
             lock: threading.Lock, errors: list) -> None:
    """One replica's steps (and, for replica 0, the chief's updates)."""
    try:
        with qs.connect(target, operation_timeout=timeout, client_name=f"sparse replica {r}") as c:
            params = SparseParams(c, model, dtype=dtype, init=False)
            shape = params.table.shape
            if sparse:
                table_acc: Any = c.sparse_conditional_accumulator(f"{model.name}/emb/grad", shape, dtype,
                                                                  reduction_type="SUM")
            else:
                table_acc = c.conditional_accumulator(f"{model.name}/emb/grad", shape, dtype)
            accs = OrderedDict((k, c.conditional_accumulator(f"{k}/grad", v.shape, dtype)) for k, v in params.mlp.items())
            tokens = [c.fifo_queue(f"{model.name}/token_q/{i}", 1 << 16, [np.int64], [[]]) for i in range(replicas)]
            for step in range(steps):
                if step:
                    got = int(tokens[r].dequeue())  # the chief applied step - 1: the parameters are step's
                    if got != step:  # each replica has its own token queue: tokens come in order
                        raise qs.InternalError(f"sparse replica {r} got token {got} at step {step}")
                part = slice((step * replicas + r) * batch_size, (step * replicas + r + 1) * batch_size)
                lk = model.lookup(ids[part])
                mlp = OrderedDict((k, v.read()) for k, v in params.mlp.items())
                rows = params.table.gather(lk.rows) if sparse else params.table.read()[lk.rows]
                loss, grad_rows, grads = model.loss_and_grads(rows, lk, mlp, labels[part])
                if sparse:
                    table_acc.apply_indexed_slices_grad((grad_rows, lk.rows), step)
                    moved = 2 * lk.rows.nbytes + rows.nbytes + grad_rows.nbytes
                else:
                    dense = np.zeros(shape, grad_rows.dtype)
                    dense[lk.rows] = grad_rows
                    table_acc.apply_grad(dense, step)
                    moved = 2 * dense.nbytes
                for k, g in grads.items():
                    accs[k].apply_grad(g, step)
                with lock:
                    result.bytes_pulled += moved // 2
                    result.bytes_pushed += moved - moved // 2
                    result.mlp_bytes += 2 * sum(v.nbytes for v in mlp.values())
                if r == 0:
                    _chief_update(params, table_acc, accs, tokens, replicas, lr, sparse, step)
                    with lock:
                        result.losses.append(loss)
    except BaseException as exc:  # the caller raises the first
        errors.append(exc)


def _chief_update(params: SparseParams, table_acc: Any, accs: Any, tokens: list, replicas: int, lr: float,
                  sparse: bool, step: int) -> None:
    """Take ``replicas`` gradients of every parameter, apply their average, release the next step."""
    if sparse:
        got = table_acc.take_indexed_slices_grad(replicas)
        params.table.scatter_sub(got.indices, (lr / replicas) * got.values)  # SUM / replicas: the dense mean
    else:
        params.table.assign_sub(lr * table_acc.take_grad(replicas))
    for k, acc in accs.items():
        params.mlp[k].assign_sub(lr * acc.take_grad(replicas))
    for q in tokens:
        q.enqueue(np.int64(step + 1))
