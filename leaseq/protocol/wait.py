"""Waiting for results: polls the done and dead sets of many jobs in one round trip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio

from ..exceptions import JobCancelled, JobDead, JobNotFound, WaitTimeout
from .core import QueueCore
from .wire import text

_FIRST_POLL = 0.001
_MAX_POLL = 0.05
_KNOWN_EVERY = 1.0
"""Seconds between checks that the pending jobs still exist: one acked and then trimmed
by the retention between two polls is never seen in ``done``."""


async def wait_all(queue: QueueCore, job_ids: Sequence[str], timeout: float | None) -> list[Any]:
    """Results of ``job_ids`` in order, once all are done (see :meth:`Queue.wait`)."""
    results: list[Any] = [None] * len(job_ids)
    pending = list(range(len(job_ids)))
    k = queue.keys
    delay = _FIRST_POLL
    next_known_check = 0.0
    try:
        with anyio.fail_after(timeout):
            while pending:
                ids = [job_ids[i] for i in pending]
                async with queue.redis.pipeline(transaction=False) as pipe:
                    pipe.smismember(k.done, ids)
                    pipe.smismember(k.dead, ids)
                    pipe.smismember(k.cancelled, ids)
                    done, dead, cancelled = await pipe.execute()
                finished = [(i, "done" if d else "dead" if x else "cancelled")
                            for i, d, x, c in zip(pending, done, dead, cancelled, strict=True)
                            if d or x or c]
                if finished:
                    await _collect(queue, job_ids, finished, results)
                finished_idx = {i for i, _ in finished}
                pending = [i for i in pending if i not in finished_idx]
                if pending and anyio.current_time() >= next_known_check:
                    await _check_known(queue, [job_ids[i] for i in pending])
                    next_known_check = anyio.current_time() + _KNOWN_EVERY
                if pending:
                    await anyio.sleep(delay)
                    delay = min(delay * 2, _MAX_POLL)
    except TimeoutError:
        raise WaitTimeout(
            f"{len(pending)} of {len(job_ids)} jobs in queue {queue.name!r} not finished "
            f"after {timeout} s"
        ) from None
    return results


async def _collect(
    queue: QueueCore, job_ids: Sequence[str], finished: list[tuple[int, str]], results: list[Any]
) -> None:
    k = queue.keys
    async with queue.redis.pipeline(transaction=False) as pipe:
        for i, _ in finished:
            pipe.hmget(k.job(job_ids[i]), ["result", "dead_reason", "cancel_reason"])
        rows = await pipe.execute()
    # Dead and cancelled jobs raise in input order: the first one the caller passed wins.
    for (i, state), (result, reason, why) in sorted(zip(finished, rows, strict=True)):
        if state == "cancelled":
            raise JobCancelled(queue.name, job_ids[i], text(why) if why else "")
        if state == "dead":
            raise JobDead(queue.name, job_ids[i], text(reason) if reason else "unknown")
        if result is None:
            raise JobNotFound(queue.name, job_ids[i])
        results[i] = queue.serializer.loads(result)


async def _check_known(queue: QueueCore, ids: list[str]) -> None:
    """Fail for an id the queue does not know (never enqueued, or finished and trimmed
    since), rather than waiting for nothing."""
    k = queue.keys
    async with queue.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(k.job(job_id))
        exists = await pipe.execute()
    for job_id, e in zip(ids, exists, strict=True):
        if not e:
            raise JobNotFound(queue.name, job_id)
