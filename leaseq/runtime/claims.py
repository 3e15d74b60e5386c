"""Claims over the queues a worker serves, as its policy plans them: a queue whose Redis
fails is skipped for a growing backoff while the others are served."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import structlog

from ..models import Lease
from ..protocol.claiming import can_claim_together, claim_together
from ..protocol.wire import error_text, redis_failure
from .policy import Policy
from .served import Served

__all__ = ["EMPTY_RECHECK", "Claims"]

log = structlog.get_logger("leaseq.worker")

EMPTY_RECHECK = 0.01
"""Seconds a served queue whose last claim left nothing waiting is passed over, while
another queue of the worker still has work. Asked anyway, an empty queue ahead of the
one with work cost a claim call and a round trip per claim: a worker over an empty
high queue and a full low one drained at 0.75x of the low one alone. Work that comes
to a passed-over queue starts at most this much later (an idle worker, whose queues
all are empty, asks them all and waits for a wake-up as before; so does a claim that
found nothing in the other queues)."""


class Claims:
    """Claims for one worker over its served queues (by name, in the worker's order)."""

    def __init__(self, served: Mapping[str, Served], policy: Policy) -> None:
        self.served = served
        self.policy = policy
        self._names = list(served)
        self._down_until: dict[str, float] = {}
        self._down_backoff: dict[str, float] = {}
        self._down_logged: set[str] = set()
        self._empty_until: dict[str, float] = {}

    @property
    def can_wait(self) -> bool:
        """Whether :meth:`claim` can wait for work itself (one served queue)."""
        return len(self._names) == 1

    async def claim(
        self, free: int, *, wait: float | None = None, interrupt: anyio.Event | None = None,
    ) -> list[Lease]:
        """Claim up to ``free`` leases over the served queues, as the policy plans.
        ``wait`` and ``interrupt`` (one served queue only, see :attr:`can_wait`): block
        until a job is enqueued first, as :meth:`~leaseq.Queue.claim_many` does.

        With several queues a Redis error is handled per queue: the leases already
        claimed from other queues are kept (dropping them would cost their jobs an attempt
        and a lease timeout), and the failing queue is skipped for a growing backoff while
        the others are served. Raises only when every queue it tried failed. A queue whose
        last claim left nothing waiting is asked only if the others give nothing, for
        :data:`EMPTY_RECHECK` after that claim.
        """
        if len(self._names) == 1:
            only = self.served[self._names[0]]
            return await only.queue.claim_many(free, max_attempts=only.caps, wait=wait,
                                               interrupt=interrupt)
        leases: list[Lease] = []
        tried = failed = 0
        error: BaseException | None = None
        now = anyio.current_time()
        plan = self.policy.plan(free, self._names)
        passed = self._passed_over(now)
        rounds = [[(name, n) for name, n in plan if name not in passed]]
        if passed:
            # Asked only when the others gave nothing: no claim comes back empty without
            # having asked every queue (a burst worker ends on one).
            rounds.append([(name, n) for name, n in plan if name in passed])
        for entries in rounds:
            if leases:
                break
            entries = [(name, n) for name, n in entries
                       if n > 0 and self._down_until.get(name, 0.0) <= now]
            together = self._together(entries, free)
            if together:
                # The planned shares (Weighted's) go out in one round trip; what the
                # plan lists after them is asked one queue at a time, for what is left.
                tried += len(together)
                for (name, _), got in zip(together, await self._claim_together(together),
                                          strict=True):
                    if isinstance(got, Exception):
                        if not redis_failure(got):
                            raise got
                        failed, error = failed + 1, got
                        self._down(name, now, got)
                    else:
                        self._claimed(name)
                        leases += got
                entries = entries[len(together):]
            for name, n in entries:
                if len(leases) >= free:
                    break
                if self._down_until.get(name, 0.0) > now:
                    continue  # failed just now (a queue may be listed twice)
                tried += 1
                try:
                    leases += await self._claim_from(name, min(n, free - len(leases)))
                except Exception as exc:
                    if not redis_failure(exc):
                        raise
                    failed, error = failed + 1, exc
                    self._down(name, now, exc)
        if error is not None and failed == tried and not leases:
            raise error
        return leases

    def nothing_waiting(self) -> bool:
        """Whether the last claim (one served queue) was held back by nothing and left
        nothing waiting: the next claim should wait for work rather than ask at once."""
        if len(self._names) != 1:
            return False
        queue = self.served[self._names[0]].queue
        return queue.nothing_waiting and not queue.held_back

    def held_back(self) -> dict[str, tuple[str, float | None]]:
        """The served queues whose last claim was held back by the pause or a limit:
        the reason, and the ``time.monotonic()`` when a limit next lets a job start
        (``None``: when a slot frees or a job arrives, which wakes the workers)."""
        return {name: (s.queue.held_back, s.queue.held_back_until)
                for name, s in self.served.items() if s.queue.held_back}

    def _passed_over(self, now: float) -> set[str]:
        """The queues whose last claim left nothing waiting, less than
        :data:`EMPTY_RECHECK` ago; none when that is every queue (all are asked then)."""
        empty = {name for name, until in self._empty_until.items() if until > now}
        return set() if len(empty) == len(self._names) else empty

    def _together(self, entries: list[tuple[str, int]], free: int) -> list[tuple[str, int]]:
        """The longest start of ``entries`` (two or more) that can be claimed in one
        round trip: together they ask for no more than ``free`` (so none of them needs
        to know what the others got), on queues :func:`can_claim_together` can serve."""
        asked, count = 0, 0
        for _, n in entries:
            if asked + n > free:
                break
            asked, count = asked + n, count + 1
        head = entries[:count]
        if count < 2 or not can_claim_together([self.served[name].queue for name, _ in head]):
            return []
        return head

    async def _claim_together(self, entries: list[tuple[str, int]]
                              ) -> list[list[Lease] | Exception]:
        """:func:`claim_together` over ``entries``; a connection error is each one's."""
        try:
            return await claim_together(
                [(self.served[name].queue, n, self.served[name].caps) for name, n in entries])
        except Exception as exc:
            return [exc for _ in entries]

    async def _claim_from(self, name: str, want: int) -> list[Lease]:
        served = self.served[name]
        leases = await served.queue.claim_many(want, max_attempts=served.caps)
        self._claimed(name)
        return leases

    def _claimed(self, name: str) -> None:
        """After a claim from ``name`` that did not fail: whether it was left empty,
        and the end of an outage."""
        served = self.served[name]
        if served.queue.nothing_waiting and not served.queue.held_back:
            self._empty_until[name] = anyio.current_time() + EMPTY_RECHECK
        else:
            self._empty_until.pop(name, None)
        self._down_backoff.pop(name, None)
        if name in self._down_logged:
            self._down_logged.discard(name)
            log.info("redis_recovered", component="claim", queue=name)

    def _down(self, name: str, now: float, exc: BaseException) -> None:
        backoff = self._down_backoff.get(name, 0.05)
        self._down_until[name] = now + backoff
        self._down_backoff[name] = min(backoff * 2, 5.0)
        if name not in self._down_logged:
            self._down_logged.add(name)
            log.warning("redis_unavailable", component="claim", queue=name,
                        error=error_text(exc), retry_in=backoff)
