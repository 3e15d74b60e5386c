"""Waiting for work: block on the queues' wake-up lists until a job is enqueued or the
poll interval passes."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from ..protocol.queue import Queue
from ..protocol.wire import is_cluster, redis_failure
from .outage import Outage

__all__ = ["wait_for_work"]


async def wait_for_work(queues: Sequence[Queue], poll_interval: float, outage: Outage) -> None:
    """Block until a job is enqueued in one of ``queues`` or ``poll_interval`` passes:
    one BLPOP over every queue when they share a client (and a slot-less server), else
    one per client, the first to wake ends the wait. Redis errors are reported to
    ``outage`` and waited out for one interval."""
    groups: dict[int, list[Queue]] = {}
    for q in queues:
        groups.setdefault(id(q.redis), []).append(q)
    first = queues[0]
    try:
        if len(groups) == 1 and not is_cluster(first.redis):
            await first.redis.blpop([q.keys.wake for q in queues], timeout=poll_interval)
            outage.ok()
            return
        async with anyio.create_task_group() as tg:
            for q in queues:
                tg.start_soon(_blpop_then_cancel, q, tg.cancel_scope, poll_interval, outage)
    except Exception as exc:
        if not redis_failure(exc):
            raise
        outage.failed(exc, retry_in=poll_interval)
        await anyio.sleep(poll_interval)


async def _blpop_then_cancel(
    q: Queue, scope: anyio.CancelScope, poll_interval: float, outage: Outage,
) -> None:
    # Errors are handled here, in the child: escaping the task group they would come
    # out as an ExceptionGroup that wait_for_work's except clause does not match,
    # and a failing-over cluster node would take the whole worker down.
    try:
        await q.redis.blpop([q.keys.wake], timeout=poll_interval)
        outage.ok()
    except Exception as exc:
        if not redis_failure(exc):
            raise
        outage.failed(exc, queue=q.name, retry_in=poll_interval)
        await anyio.sleep(poll_interval)
    scope.cancel()
