"""Operator actions on dead jobs: list, requeue with fresh attempts, purge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from . import _scripts
from ._inspect import read_jobs
from ._keys import QUEUES_KEY
from ._types import AnyRedis, text
from .models import JobInfo

if TYPE_CHECKING:
    from .queue import Queue

_BATCH = 256


async def scan_members(redis: AnyRedis, key: str, limit: int) -> list[str]:
    """Up to ``limit`` members of the set ``key``, by SSCAN pages (never the whole set at
    once), each once (SSCAN may return a member twice)."""
    ids: list[str] = []
    cursor = 0
    while len(ids) < limit:
        cursor, raw = await redis.sscan(key, cursor, count=_BATCH)
        ids.extend(text(i) for i in raw)
        if int(cursor) == 0:
            break
    return list(dict.fromkeys(ids))[:limit]


async def registered_queues(redis: AnyRedis, limit: int | None = None) -> list[str]:
    """Names in the ``leaseq:queues`` registry, sorted; with ``limit``, at most that many,
    read by SSCAN pages."""
    if limit is None:
        names = [text(n) for n in await redis.smembers(QUEUES_KEY)]
    else:
        names = await scan_members(redis, QUEUES_KEY, limit)
    return sorted(names)


async def server_ms(redis: AnyRedis) -> int:
    """Redis's clock in ms: ages and times left are measured by the clock leases use.
    (TIME on its own: a cluster pipeline refuses keyless commands.)"""
    secs, micros = await redis.time()
    return int(secs) * 1000 + int(micros) // 1000


async def dead_jobs(queue: Queue, limit: int) -> list[JobInfo]:
    """Up to ``limit`` dead jobs, read with their details."""
    ids = await scan_members(queue.redis, queue.keys.dead, limit)
    return [info for info in await read_jobs(queue, ids) if info is not None]


async def lease_ages(queue: Queue, limit: int = 10_000) -> list[float]:
    """Ages in seconds (by Redis's clock) of up to ``limit`` held leases, oldest first."""
    k = queue.keys
    ids = await scan_members(queue.redis, k.in_progress, limit)
    now_ms = await server_ms(queue.redis)
    async with queue.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(k.job(job_id), "claimed_at")
        claimed = await pipe.execute()
    return sorted(((now_ms - int(c)) / 1000 for c in claimed if c is not None), reverse=True)


async def requeue_dead(queue: Queue, job_ids: list[str] | None) -> int:
    """Move dead jobs back to todos with fresh attempts; returns how many moved."""
    k = queue.keys
    moved = 0
    async for batch in _batches(queue, job_ids):
        moved += int(await _scripts.REVIVE(
            queue.redis, [k.dead, k.todos, k.wake, *(k.job(i) for i in batch), k.reply()],
            batch))
    return moved


async def purge_dead(queue: Queue, job_ids: list[str] | None) -> int:
    """Delete dead jobs; returns how many."""
    k = queue.keys
    purged = 0
    async for batch in _batches(queue, job_ids):
        purged += int(await _scripts.PURGE(
            queue.redis, [k.dead, *(k.job(i) for i in batch), k.reply()], batch))
    return purged


async def _batches(queue: Queue, job_ids: list[str] | None) -> AsyncIterator[list[str]]:
    if job_ids is None:
        # Moving members while SSCAN walks the set is allowed; a member may be returned
        # twice, which the scripts' membership checks absorb.
        async for batch in _scan_dead(queue):
            yield batch
    else:
        for start in range(0, len(job_ids), _BATCH):
            yield job_ids[start:start + _BATCH]


async def _scan_dead(queue: Queue) -> AsyncIterator[list[str]]:
    cursor = 0
    while True:
        cursor, raw = await queue.redis.sscan(queue.keys.dead, cursor, count=_BATCH)
        if raw:
            yield [text(i) for i in raw]
        if int(cursor) == 0:
            return
