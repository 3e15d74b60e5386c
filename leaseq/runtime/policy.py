"""How a worker serving several queues shares its free slots between them.

A policy turns a number of free slots into an ordered plan of claims: ``[(queue name,
up to n), ...]``. The worker claims in that order and hands slots a queue could not use
to the queues after it, so no slot stays idle while any served queue has work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ..exceptions import InvalidInput

__all__ = ["Policy", "Priority", "Weighted"]

# The most slots Weighted gives one queue at a time. Slot by slot, the free slots of a
# busy worker (a few at a time, as acks come back) went one to each queue: a claim call
# and an ack transaction for every one or two jobs over ten queues. A chunk keeps
# batches whole where several slots are free, and is a single slot where one is.
_CHUNK = 8


class Policy(Protocol):
    """Decides which queue a free slot goes to."""

    def plan(self, free: int, queues: Sequence[str]) -> list[tuple[str, int]]:
        """Claims to try, in order, for ``free`` slots over ``queues`` (served order)."""
        ...


class Priority:
    """Strict priority in the order the queues were given: a queue gets slots only when
    every queue before it has no waiting job."""

    def plan(self, free: int, queues: Sequence[str]) -> list[tuple[str, int]]:
        """All free slots to the first queue, whatever it leaves to the next, ..."""
        return [(name, free) for name in queues]


class Weighted:
    """Slots shared in proportion to weights (smooth weighted round robin), e.g.
    ``Weighted({"high": 3, "low": 1})``. Every queue with a positive weight gets its share
    whenever it has work, so none starves; slots a queue cannot use go to the others.
    The slots free at one time go out in chunks of up to 8: over many claims the shares
    follow the weights slot for slot, while within one claim a queue may get a chunk
    where its share was less."""

    def __init__(self, weights: Mapping[str, int]) -> None:
        if not weights:
            raise InvalidInput("Weighted needs at least one queue weight")
        for name, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                raise InvalidInput(f"weight of queue {name!r} must be an integer >= 1")
        self.weights = dict(weights)
        self._current = dict.fromkeys(weights, 0)

    def _next(self, names: Sequence[str], slots: int) -> str:
        """The queue furthest behind its share, charged ``slots`` (every queue is
        credited its weight's part of them)."""
        total = 0
        best = names[0]
        for name in names:
            self._current[name] += self.weights[name] * slots
            total += self.weights[name]
            if self._current[name] > self._current[best]:
                best = name
        self._current[best] -= total * slots
        return best

    def plan(self, free: int, queues: Sequence[str]) -> list[tuple[str, int]]:
        """The slots in chunks of up to 8, each chunk to the queue that is furthest
        behind its share; then, in case some cannot use theirs, every queue again for
        all slots (work-conserving)."""
        names = [q for q in queues if q in self.weights]
        if not names:
            return [(q, free) for q in queues]
        shares = dict.fromkeys(names, 0)
        left = free
        while left > 0:
            chunk = min(_CHUNK, left)
            shares[self._next(names, chunk)] += chunk
            left -= chunk
        order = sorted(names, key=lambda n: -shares[n])
        return [(n, shares[n]) for n in order if shares[n]] + [(n, free) for n in order]
