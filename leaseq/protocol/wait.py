"""Waiting for results without polling: a waiter registers its jobs with the queue's
:class:`~.finished.FinishWatch` (one subscription per queue object, however many
waiters), reads their state once, and then reads again only the jobs it hears ended;
a slow fallback check covers a lost message."""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any

import anyio

from ..exceptions import JobCancelled, JobDead, JobNotFound, WaitTimeout
from .core import QueueCore
from .finished import FALLBACK, Coalesced, Poke
from .wire import redis_failure, text

_UNSUBSCRIBED_POLL = 0.05
"""Seconds between looks while the subscription is not up yet (the first wait of a
process, or Redis was away): the jobs may end meanwhile unheard."""
# Seconds between looks while Redis does not answer, doubling.
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 1.0
_FIRST_LOOK = 1.0
"""Seconds the first look at the jobs may take past a shorter timeout: it is always made,
so a job already done is returned and an id the queue does not know fails as unknown,
not as not finished yet, however short the timeout and slow the round trips."""


async def wait_all(queue: QueueCore, job_ids: Sequence[str], timeout: float | None) -> list[Any]:
    """Results of ``job_ids`` in order, once all are done (see :meth:`Queue.wait`)."""
    results: list[Any] = [None] * len(job_ids)
    pending: dict[str, list[int]] = {}
    for i, job_id in enumerate(job_ids):
        pending.setdefault(job_id, []).append(i)
    watch = queue.finish_watch()
    poke = Poke()
    names = list(pending)
    watch.register(names, poke)
    start = anyio.current_time()
    next_known = start + FALLBACK
    end = math.inf if timeout is None else start + timeout
    backoff = _FIRST_BACKOFF
    try:
        with anyio.CancelScope(deadline=max(end, start + _FIRST_LOOK)) as scope:
            look = names
            first = True
            while pending:
                try:
                    finished = await _states(queue, look)
                    if finished:
                        await _collect(queue, finished, pending, results)
                    if pending and first:  # an id the queue does not know fails now
                        await _check_known(queue, list(pending))
                except Exception as exc:
                    if not redis_failure(exc):
                        raise
                    # Redis went away (or refuses): waiting goes on until the timeout,
                    # looking at everything again once it answers.
                    await anyio.sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    look = list(pending)
                    continue
                backoff = _FIRST_BACKOFF
                first = False
                if scope.deadline != end:
                    scope.deadline = end  # the first look was made
                if not pending:
                    break
                interval = FALLBACK if watch.subscribed.is_set() else _UNSUBSCRIBED_POLL
                await watch.wait(poke, interval)
                heard, everything = poke.take()
                if everything or not heard:
                    # A resubscribe, or no word for a while: look at all of them, and
                    # now and then fail for an id the queue no longer knows (done and
                    # trimmed, or purged, while its message was lost).
                    look = list(pending)
                    if anyio.current_time() >= next_known:
                        first = True  # the next look checks that they are known
                        next_known = anyio.current_time() + FALLBACK
                else:
                    look = [i for i in heard if i in pending]
        if scope.cancelled_caught:
            left = sum(len(v) for v in pending.values())
            raise WaitTimeout(
                f"{left} of {len(job_ids)} jobs in queue {queue.name!r} not finished "
                f"after {timeout} s")
    finally:
        watch.unregister(names, poke)
    return results


class _Reads:
    """The reads of one queue's waiters, each coalesced over the waiters of a turn."""

    def __init__(self, queue: QueueCore) -> None:
        k = queue.keys
        redis = queue.redis

        async def states(ids: list[str]) -> dict[str, str]:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.smismember(k.done, ids)
                pipe.smismember(k.dead, ids)
                pipe.smismember(k.cancelled, ids)
                done, dead, cancelled = await pipe.execute()
            return {i: "done" if d else "dead" if x else "cancelled"
                    for i, d, x, c in zip(ids, done, dead, cancelled, strict=True)
                    if d or x or c}

        async def rows(ids: list[str]) -> dict[str, list[Any]]:
            async with redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hmget(k.job(job_id), ["result", "dead_reason", "cancel_reason"])
                return dict(zip(ids, await pipe.execute(), strict=True))

        async def known(ids: list[str]) -> dict[str, bool]:
            async with redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.exists(k.job(job_id))
                return {i: bool(e) for i, e in zip(ids, await pipe.execute(), strict=True)}

        self.states = Coalesced(states)
        self.rows = Coalesced(rows)
        self.known = Coalesced(known)


_READS: weakref.WeakKeyDictionary[QueueCore, _Reads] = weakref.WeakKeyDictionary()


def _reads(queue: QueueCore) -> _Reads:
    reads = _READS.get(queue)
    if reads is None:
        reads = _READS[queue] = _Reads(queue)
    return reads


async def _states(queue: QueueCore, ids: list[str]) -> list[tuple[str, str]]:
    """The ids of ``ids`` that ended, each with where: done, dead or cancelled."""
    if not ids:
        return []
    ended = await _reads(queue).states(ids)
    return [(i, ended[i]) for i in ids if i in ended]


async def _collect(
    queue: QueueCore, finished: list[tuple[str, str]], pending: dict[str, list[int]],
    results: list[Any],
) -> None:
    """Store the results of ``finished`` jobs and drop them from ``pending``; raise for the
    first (in the caller's order) that is dead or cancelled."""
    got = await _reads(queue).rows([j for j, _ in finished])
    ended = sorted(((min(pending[j]), j, state, got[j]) for j, state in finished))
    # Dead and cancelled jobs raise in input order: the first one the caller passed wins.
    for _, job_id, state, (result, reason, why) in ended:
        if state == "cancelled":
            raise JobCancelled(queue.name, job_id, text(why) if why else "")
        if state == "dead":
            raise JobDead(queue.name, job_id, text(reason) if reason else "unknown")
        if result is None:
            raise JobNotFound(queue.name, job_id)
        value = queue.serializer.loads(result)
        for i in pending.pop(job_id):
            results[i] = value


async def _check_known(queue: QueueCore, ids: list[str]) -> None:
    """Fail for an id the queue does not know (never enqueued, or finished and trimmed
    since), rather than waiting for nothing."""
    if not ids:
        return
    known = await _reads(queue).known(ids)
    for job_id in ids:
        if not known.get(job_id, False):
            raise JobNotFound(queue.name, job_id)
