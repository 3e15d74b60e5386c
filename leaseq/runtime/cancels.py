"""Hearing cancels of running jobs: a subscription to each served queue's ``cancels``
channel (a shard channel on a cluster), so a worker stops a cancelled job within the
time a message takes, not a heartbeat period. A message can be missed (the subscription
was down): the next renewal of the lease finds the cancel too (``extend.lua`` answers
2), so the subscription only makes it fast."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio
import structlog

from ..protocol.queue import Queue
from ..protocol.wire import (
    close_pubsub,
    error_text,
    is_cluster,
    next_message,
    redis_failure,
    subscribe,
    text,
)
from .heartbeat import Renewable

__all__ = ["listen_for_cancels"]

log = structlog.get_logger("leaseq.worker")

# Seconds a subscription waits for a message before it looks again (a stop cancels it).
_POLL = 1.0
_MAX_BACKOFF = 5.0


async def listen_for_cancels(
    queues: Sequence[Queue], running: Callable[[], Iterable[Renewable]],
) -> None:
    """Until cancelled: on each message ``<id> <token>`` of a served queue's ``cancels``
    channel, stop the running job that holds that very lease (``running`` lists the jobs
    the worker runs now). One subscription per client; Redis errors are waited out."""
    groups: dict[int, list[Queue]] = {}
    for q in queues:
        groups.setdefault(id(q.redis), []).append(q)
    async with anyio.create_task_group() as tg:
        for group in groups.values():
            tg.start_soon(_listen, group, running)


async def _listen(queues: list[Queue], running: Callable[[], Iterable[Renewable]]) -> None:
    by_channel = {q.keys.cancels: q.name for q in queues}
    client: Any = queues[0].redis
    cluster = is_cluster(client)
    backoff = 0.1
    down = False
    while True:
        pubsub = client.pubsub()
        try:
            await subscribe(pubsub, by_channel, cluster)
            if down:
                log.info("redis_recovered", component="cancels")
                down = False
            backoff = 0.1
            while True:
                message = await next_message(pubsub, cluster, _POLL)
                if message is not None:
                    _deliver(by_channel.get(text(message["channel"])),
                             text(message["data"]), running)
        except Exception as exc:
            if not redis_failure(exc):
                raise
            if not down:
                # Renewals still find the cancels: this only slows them down.
                log.warning("redis_unavailable", component="cancels", error=error_text(exc),
                            retry_in=backoff)
                down = True
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
        finally:
            await close_pubsub(pubsub)


def _deliver(queue: str | None, data: str, running: Callable[[], Iterable[Renewable]]) -> None:
    """Stop the running job of ``queue`` that holds the lease named in ``data``."""
    job_id, _, token = data.rpartition(" ")
    if queue is None or not job_id:
        return
    for job in running():
        lease = job.lease
        if lease.queue == queue and lease.job_id == job_id and lease.token == token:
            log.info("job_cancel_received", queue=queue, job_id=job_id, token=token)
            job.request_cancel()
            return
