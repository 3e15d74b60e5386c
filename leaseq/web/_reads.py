"""What the dashboard and the HTTP API read from Redis, bounded per call.

Every read here costs O(1), O(log n) or O(limit) in the size of the queue: counts come
from SCARD/ZCARD (the ``stats`` script), throughput from ZCOUNT over ``done_at``, leases and
dead jobs from SSCAN stopped at ``limit``, events from LRANGE. So a queue with a million
jobs costs a refresh what an empty one does.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

from ..protocol import admin
from ..protocol.admin import scan_members
from ..protocol.controls import Controls, Rate
from ..protocol.queue import Queue
from ..protocol.views import stored_progress
from ..protocol.wire import AnyRedis, opt_int, opt_text

MAX_QUEUES = 1000
"""The most queue names the registry read returns (a registry is small; this bounds it)."""


async def registered_queues(redis: AnyRedis) -> list[str]:
    """Names from the ``leaseq:queues`` registry, sorted, at most :data:`MAX_QUEUES`."""
    return await admin.registered_queues(redis, MAX_QUEUES)


async def summary(q: Queue) -> dict[str, Any]:
    """Counts per state, recent throughput, the last reaper sweep, the pause and the
    stored ordering and limits of one queue."""
    s = await q.stats()
    async with q.redis.pipeline(transaction=False) as pipe:
        pipe.hget(q.keys.meta, "reaper_seen")
        # Read from Redis each time, not q.controls: the app's Queue is made once and
        # prepared once, and `leaseq queue limits` may change them meanwhile.
        pipe.hgetall(q.keys.settings)
        seen, stored = await pipe.execute()
    controls = Controls.read(stored)
    return {
        "name": q.name, "todos": s.todos, "in_progress": s.in_progress,
        "delayed": s.delayed, "done": s.done, "dead": s.dead,
        "done_last_minute": s.done_last_minute,
        "reaper_seen_ms": opt_int(seen),
        "paused": s.paused, "ordering": s.ordering, "holding": s.holding,
        "waiting_on_limits": s.waiting_on_limits, "keys_waiting": s.keys_waiting,
        "keys_parked": s.keys_parked, "expired": s.expired, "cancelled": s.cancelled,
        "blocked": s.blocked,
        "max_in_flight": controls.max_in_flight,
        "key_concurrency": controls.key_concurrency,
        "rate_limit": _rate(controls.rate_limit), "key_rate": _rate(controls.key_rate),
    }


def _rate(rate: Rate | None) -> str | None:
    return None if rate is None else str(rate)


_LEASE_FIELDS = ("task", "attempts", "max_attempts", "owner", "claimed_at", "expiries",
                 "token", "progress")


async def leases(q: Queue, limit: int, now_ms: int) -> list[dict[str, Any]]:
    """Up to ``limit`` held leases, oldest claim first (of those read)."""
    k = q.keys
    ids = await scan_members(q.redis, k.in_progress, limit)
    if not ids:
        return []
    async with q.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(k.job(job_id), _LEASE_FIELDS)
            pipe.get(k.lease(job_id))
            pipe.pttl(k.lease(job_id))
        replies = await pipe.execute()
    out: list[dict[str, Any]] = []
    for i, job_id in enumerate(ids):
        fields, token, pttl = replies[3 * i:3 * i + 3]
        (task, attempts, max_attempts, owner, claimed_at, expiries, claim_token,
         progress) = fields
        claimed = opt_int(claimed_at)
        held = opt_text(token)
        out.append({
            "job_id": job_id, "task": opt_text(task), "attempt": opt_int(attempts) or 0,
            "max_attempts": opt_int(max_attempts), "owner": opt_text(owner),
            # A cancel bound to the lease marks its value '<token>!' (cancel.lua).
            "token": held.rstrip("!") if held is not None else opt_text(claim_token),
            "cancel_pending": held is not None and held.endswith("!"),
            "progress": stored_progress(progress),
            "age": None if claimed is None else max(0, now_ms - claimed) / 1000,
            # None: the lease is gone and the reaper has not requeued the job yet.
            "time_left": int(pttl) / 1000 if token is not None and int(pttl) >= 0 else None,
            "lease_expiries": opt_int(expiries) or 0,
        })
    out.sort(key=lambda lease: -(lease["age"] or 0))
    return out


async def dead(q: Queue, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` dead jobs with their reasons, most recent first (of those read)."""
    infos = await q.dead_jobs(limit)
    infos.sort(key=lambda info: -(info.finished_at or 0))
    return [job_view(q, info) for info in infos]


async def throughput(q: Queue, minutes: int, now_ms: int) -> list[int]:
    """Jobs acked in each of the last ``minutes`` whole minutes, oldest first (retained
    done jobs only: the retention's trims drop out)."""
    edges = [now_ms - 60_000 * m for m in range(minutes, -1, -1)]
    async with q.redis.pipeline(transaction=False) as pipe:
        for low, high in itertools.pairwise(edges):
            pipe.zcount(q.keys.done_at, f"({low}", high)
        counts = await pipe.execute()
    return [int(c) for c in counts]


async def events(q: Queue, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` lease expiries the reaper recorded, newest first."""
    return parse_events(await q.redis.lrange(q.keys.events, 0, limit - 1))


def parse_events(entries: Sequence[Any]) -> list[dict[str, Any]]:
    """Entries of the reaper's ``events`` list as data (others left out)."""
    out = []
    for raw in entries:
        try:
            event = json.loads(raw)
        except ValueError:
            continue  # not written by reap.lua; nothing to show
        if isinstance(event, dict):
            # Lua's cjson writes false for a missing value.
            out.append({key: (None if value is False else value)
                        for key, value in event.items()})
    return out


def job_view(q: Queue, info: Any) -> dict[str, Any]:
    """A :class:`~leaseq.JobInfo` as JSON-ready data (payloads and results that are not
    JSON are shown as their ``repr``)."""
    return {
        "queue": q.name, "job_id": info.job_id, "state": info.state, "task": info.task,
        "payload": jsonable(info.payload), "attempts": info.attempts,
        "max_attempts": info.max_attempts, "failures": info.failures,
        "lease_expiries": info.lease_expiries, "result": jsonable(info.result),
        "error": info.error, "dead_reason": info.dead_reason,
        "enqueued_at": info.enqueued_at, "finished_at": info.finished_at,
        "lease_token": info.lease_token, "lease_ttl": info.lease_ttl, "owner": info.owner,
        "priority": info.priority, "key": info.key, "expires_at": info.expires_at,
        "cancel_reason": info.cancel_reason, "progress": info.progress,
        "after": list(info.after), "waiting_for": info.waiting_for,
    }


def jsonable(value: Any) -> Any:
    """``value`` if JSON can carry it, else its ``repr``."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


async def find_job(queues: Sequence[Queue], job_id: str) -> list[dict[str, Any]]:
    """The job ``job_id`` in every queue of ``queues`` that knows it."""
    found = []
    for q in queues:
        info = await q.job(job_id)
        if info is not None:
            found.append(job_view(q, info))
    return found
