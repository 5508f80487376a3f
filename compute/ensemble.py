"""An ensemble with between-graph replication (the seed's section 3.2).

Each member is its own client with its own model: it reads examples from its input queue and writes
class probabilities to its prediction queue. A dispatcher copies every input to every member's input
queue; the :class:`Aggregator` collects each member's predictions with a deadline and averages those
that arrived, so a dead or slow member costs accuracy, never an answer.

Every example carries an int64 request id; predictions that arrive after their request was answered
(a slow member catching up) are recognised by their old ids and discarded.

Example:
    >>> # member processes: await serve_member(target, "member0", model, params)     # doctest: +SKIP
    >>> agg = await Aggregator.open(target, ["member0", "member1"], timeout=1.0)      # doctest: +SKIP
    >>> probs, answered = await agg.predict(x)                                         # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Sequence

import numpy as np

import queueserver as qs
from compute.models import MLP

__all__ = ["input_queue_name", "prediction_queue_name", "serve_member", "Aggregator"]


def input_queue_name(member: str) -> str:
    """The name of a member's input queue."""
    return f"ensemble/{member}/inputs"


def prediction_queue_name(member: str) -> str:
    """The name of a member's prediction queue."""
    return f"ensemble/{member}/predictions"


async def _queues(client: Any, member: str, features: int, classes: int, capacity: int) -> tuple[Any, Any]:
    inputs = await client.fifo_queue(input_queue_name(member), capacity, [np.int64, np.float32], [[], [features]])
    preds = await client.fifo_queue(prediction_queue_name(member), capacity, [np.int64, np.float32],
                                    [[], [classes]])
    return inputs, preds


async def serve_member(target: str, member: str, model: MLP, params: Any, *, batch: int = 256,
                       capacity: int = 10_000, delay: float = 0.0) -> int:
    """Answer a member's input queue until it is closed and drained; returns examples answered.

    Args:
        target: the server.
        member: this member's name (it picks the queues).
        model: the member's model.
        params: its parameters.
        batch: examples taken per dequeue.
        capacity: queue capacity if this call creates the queues.
        delay: seconds to stall before each answer (to play a slow member in demos and tests).
    """
    answered = 0
    async with qs.connect_async(target, client_name=f"ensemble {member}") as c:
        inputs, preds = await _queues(c, member, model.sizes[0], model.sizes[-1], capacity)
        while True:
            try:
                # On an open queue dequeue_up_to waits for a full batch, as TensorFlow's does; a
                # member must answer whatever has arrived: block for one example, then take the rest.
                one_id, one_x = await inputs.dequeue()
                waiting = min(await inputs.size(), batch - 1)
                ids, x = np.array([one_id]), one_x[None]
                if waiting:
                    more_ids, more_x = await inputs.dequeue_many(waiting)
                    ids, x = np.concatenate([ids, more_ids]), np.concatenate([x, more_x])
            except qs.OutOfRangeError:
                return answered
            logits = model.forward(params, x)
            z = np.exp(logits - logits.max(axis=1, keepdims=True))
            if delay:
                await asyncio.sleep(delay)  # deliberate: simulates a slow member
            await preds.enqueue_many((ids, (z / z.sum(axis=1, keepdims=True)).astype(np.float32)))
            answered += len(ids)


async def _none() -> None:
    return None


class Aggregator:
    """Sends inputs to every member and averages the predictions that arrive before the deadline.

    Create it with :meth:`open`.

    Args:
        client: an open AsyncClient.
        members: member names.
        queues: ``(inputs, predictions)`` per member.
        timeout: seconds to wait for a member's answer to one request.
    """

    def __init__(self, client: Any, members: Sequence[str], queues: list, timeout: float) -> None:
        self.client, self.members, self.queues, self.timeout = client, list(members), queues, timeout
        self._next_id = 0

    @classmethod
    async def open(cls, client: Any, members: Sequence[str], features: int, classes: int, *,
                   timeout: float = 1.0, capacity: int = 10_000) -> "Aggregator":
        """Get or create every member's queues."""
        queues = [await _queues(client, m, features, classes, capacity) for m in members]
        return cls(client, members, queues, timeout)

    async def _collect(self, preds: Any, first: int, n: int, deadline: float) -> np.ndarray | None:
        """This member's probabilities for ids ``first..first+n-1``, or None if it missed the deadline."""
        out: np.ndarray | None = None
        got = 0
        while got < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                ids, probs = await preds.dequeue_up_to(n - got, timeout=remaining)
            except (qs.DeadlineExceededError, qs.OutOfRangeError):
                return None
            keep = ids >= first  # older ids: late answers to requests already answered
            ids, probs = ids[keep], probs[keep]
            if out is None:
                out = np.empty((n, probs.shape[1] if probs.ndim == 2 else 0), np.float32)
            out[ids - first] = probs
            got += len(ids)
        return out

    async def predict(self, x: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Ensemble class probabilities for ``x`` and the members that answered in time.

        Raises:
            queueserver.DeadlineExceededError: no member answered in time.
        """
        x = np.asarray(x, np.float32)
        first, n = self._next_id, len(x)
        self._next_id += n
        ids = np.arange(first, first + n, dtype=np.int64)
        # A dead member's input queue fills up: bound the enqueue too, and skip that member.
        sent = await asyncio.gather(*(inputs.enqueue_many((ids, x), timeout=self.timeout)
                                      for inputs, _ in self.queues), return_exceptions=True)
        deadline = time.monotonic() + self.timeout
        answers = await asyncio.gather(*(self._collect(p, first, n, deadline) if not isinstance(s, Exception)
                                         else _none() for s, (_, p) in zip(sent, self.queues)))
        got = [(m, a) for m, a in zip(self.members, answers) if a is not None]
        if not got:
            raise qs.DeadlineExceededError(f"no ensemble member answered within {self.timeout} s")
        return np.mean([a for _, a in got], axis=0), [m for m, _ in got]

    async def close(self) -> None:
        """Close the input queues: members finish what they have, then stop."""
        await asyncio.gather(*(inputs.close() for inputs, _ in self.queues))
