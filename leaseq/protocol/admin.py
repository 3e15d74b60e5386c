"""Operator reads and actions: list jobs by state (paged), dead jobs (list, requeue with
fresh attempts, purge), and purging what waits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

from ..exceptions import InvalidInput
from ..models import JobInfo, JobState
from . import scripts as _scripts
from .core import QueueCore
from .keys import QUEUES_KEY
from .presence import live_workers
from .views import read_jobs
from .wire import AnyRedis, text

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


async def dead_jobs(queue: QueueCore, limit: int) -> list[JobInfo]:
    """Up to ``limit`` dead jobs, read with their details."""
    ids = await scan_members(queue.redis, queue.keys.dead, limit)
    return [info for info in await read_jobs(queue, ids) if info is not None]


async def lease_ages(queue: QueueCore, limit: int = 10_000) -> list[float]:
    """Ages in seconds (by Redis's clock) of up to ``limit`` held leases, oldest first."""
    k = queue.keys
    ids = await scan_members(queue.redis, k.in_progress, limit)
    now_ms = await server_ms(queue.redis)
    async with queue.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(k.job(job_id), "claimed_at")
        claimed = await pipe.execute()
    return sorted(((now_ms - int(c)) / 1000 for c in claimed if c is not None), reverse=True)


async def requeue_dead(queue: QueueCore, job_ids: list[str] | None) -> int:
    """Move dead jobs back to todos with fresh attempts; returns how many moved."""
    k = queue.keys
    moved = 0
    async for batch in _batches(queue, job_ids):
        moved += int(await _scripts.REVIVE(
            queue.redis,
            [k.dead, k.todos, k.wake, *k.control, *(k.job(i) for i in batch), k.reply()],
            batch))
    return moved


async def purge_dead(queue: QueueCore, job_ids: list[str] | None,
                     state: str = "dead") -> int:
    """Delete dead (or, with ``state="cancelled"``, cancelled) jobs; returns how many."""
    k = queue.keys
    key = k.cancelled if state == "cancelled" else k.dead
    purged = 0
    async for batch in _batches(queue, job_ids, key):
        purged += int(await _scripts.PURGE(
            queue.redis, [key, *k.control, *(k.job(i) for i in batch), k.reply()],
            batch))
    return purged


async def _batches(queue: QueueCore, job_ids: list[str] | None, key: str | None = None,
                   ) -> AsyncIterator[list[str]]:
    if job_ids is None:
        # Moving members while SSCAN walks the set is allowed; a member may be returned
        # twice, which the scripts' membership checks absorb.
        async for batch in _scan(queue, key or queue.keys.dead):
            yield batch
    else:
        for start in range(0, len(job_ids), _BATCH):
            yield job_ids[start:start + _BATCH]


async def _scan(queue: QueueCore, key: str) -> AsyncIterator[list[str]]:
    cursor = 0
    while True:
        cursor, raw = await queue.redis.sscan(key, cursor, count=_BATCH)
        if raw:
            yield [text(i) for i in raw]
        if int(cursor) == 0:
            return


def _cursor(cursor: str | None) -> tuple[int, int] | None:
    """A listing's cursor ``c:A:B`` (A: an SSCAN cursor, or the score the last page of
    a sorted state ended at; B: entries of that score already returned), or None. A
    cursor of another shape is refused (InvalidInput), never sent to Redis."""
    if cursor is None:
        return None
    parts = cursor.split(":")
    # 19 digits at most keep an SSCAN cursor below 2**64.
    if len(parts) != 3 or parts[0] != "c" or not all(
            p.isascii() and p.isdigit() and len(p) <= 19 for p in parts[1:]):
        raise InvalidInput(f"cursor {cursor!r} is not one this listing handed out")
    return int(parts[1]), int(parts[2])


async def list_jobs(
    queue: QueueCore, state: JobState, task: str | None, limit: int, cursor: str | None
) -> tuple[list[JobInfo], str | None]:
    """One page of jobs in ``state`` (see :meth:`Queue.list_jobs`)."""
    k = queue.keys
    at = _cursor(cursor)
    if state in ("done", "delayed"):
        ids, following = await _sorted_page(queue, state, limit, at)
    else:
        key = {"todo": k.todos, "in_progress": k.in_progress, "dead": k.dead,
               "cancelled": k.cancelled, "blocked": k.blocked}[state]
        # One SSCAN step per page, never split: COUNT is only a hint (a step may return
        # a few more), and only whole steps keep SSCAN's promise that a member present
        # all along is returned (a set being rehashed answers one cursor differently).
        after, raw = await queue.redis.sscan(key, at[0] if at else 0, count=limit)
        ids = list(dict.fromkeys(text(i) for i in raw))
        following = None if int(after) == 0 else f"c:{int(after)}:0"
    infos = [i for i in await read_jobs(queue, ids) if i is not None and i.state == state]
    if task is not None:
        infos = [i for i in infos if i.task == task]
    return infos, following


async def _sorted_page(
    queue: QueueCore, state: JobState, limit: int, at: tuple[int, int] | None
) -> tuple[list[str], str | None]:
    """done (newest first) or delayed (soonest first), from the score the last page
    ended at, of which ``at[1]`` entries were already returned.
    By score, not position: promotions and trims take entries off the front, and a
    position would then skip jobs."""
    k = queue.keys
    newest_first = state == "done"
    key = k.done_at if newest_first else k.delayed
    edge, skip = at if at is not None else (None, 0)
    if newest_first:
        reply: Any = await queue.redis.zrevrangebyscore(
            key, "+inf" if edge is None else edge, "-inf", start=skip, num=limit,
            withscores=True)
    else:
        reply = await queue.redis.zrangebyscore(
            key, "-inf" if edge is None else edge, "+inf", start=skip, num=limit,
            withscores=True)
    raw = cast(list[tuple[Any, float]], reply)
    ids = [text(member) for member, _ in raw]
    if len(raw) < limit:
        return ids, None
    last = int(raw[-1][1])
    trailing = sum(1 for _, score in raw if int(score) == last)
    # Still inside the tie the cursor pointed into: count on from its skip.
    following_skip = skip + trailing if last == edge else trailing
    return ids, f"c:{last}:{following_skip}"


async def purge_waiting(queue: QueueCore) -> int:
    """Delete every waiting and delayed job; return how many. Jobs enqueued while it runs
    may be left (the walk is by SSCAN pages and delayed slices)."""
    k = queue.keys
    purged = 0

    async def drop(ids: list[str]) -> None:
        nonlocal purged
        if ids:
            purged += int(await _scripts.DROP(
                queue.redis,
                [k.todos, k.delayed, *k.control, *(k.job(i) for i in ids), k.reply()], ids))

    async for batch in _scan(queue, k.todos):
        await drop(batch)
    while ids := [text(i) for i in await queue.redis.zrange(k.delayed, 0, _BATCH - 1)]:
        before = purged
        await drop(ids)
        if purged == before:
            break  # nothing of this slice was still delayed: someone else is moving them
    return purged


REAPER_STALE_S = 60.0
"""A queue whose last sweep is older than this has no live reaper (``health``)."""


async def health(queue: QueueCore) -> dict[str, tuple[bool, str]]:
    """Whether the queue is served: Redis answers (else this raises), the queue is
    known, a reaper swept it in the last minute, and a worker is alive; per check,
    (ok, detail)."""
    k = queue.keys
    known = bool(await queue.redis.sismember(QUEUES_KEY, queue.name))
    seen_raw = await queue.redis.hget(k.meta, "reaper_seen")
    now_ms = await server_ms(queue.redis)
    age = None if seen_raw is None else (now_ms - int(seen_raw)) / 1000
    live = await live_workers(queue) if known else []
    return {
        "redis": (True, "answers"),
        "queue": (known, "known" if known else "not known on this server"),
        "reaper": (age is not None and age <= REAPER_STALE_S,
                   "never swept" if age is None else f"last swept {age:.1f} s ago"),
        "workers": (bool(live), f"{len(live)} live"),
    }
