"""Schedules in Redis: firing one tick (``tick.lua``), declaring the schedules a process
runs, and reading them back for operators."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..models import ScheduleInfo
from . import scripts, validate
from .admin import server_ms
from .codec import encode
from .core import QueueCore
from .schedule import Schedule, from_timing
from .views import read_jobs
from .wire import opt_int, text

__all__ = ["STALE_AFTER", "declare", "fire", "last_tick", "read_schedules"]

STALE_AFTER = 60.0
"""Seconds without a declaration after which a schedule is reported stale."""
_MAX_LISTED = 1000


async def last_tick(queue: QueueCore, schedule: Schedule) -> int | None:
    """The schedule's last decided tick (ms), or ``None`` before its first."""
    return opt_int(await queue.redis.hget(queue.keys.schedule(schedule.name), "last_tick"))


async def fire(
    queue: QueueCore, schedule: Schedule, expected: int | None, mode: str, tick: int,
    count: int = 0,
) -> str:
    """One ``tick.lua`` call (see its header): ``mode`` ``run`` enqueues the job of
    ``tick``, ``missed`` records ``count`` ticks up to ``tick`` as skipped, ``baseline``
    starts the schedule at ``tick``; only while the last tick is still ``expected``.
    Returns the script's outcome (``raced`` when another call decided first)."""
    k = queue.keys
    job_id = schedule.job_id(tick)
    payload = encode(queue.serializer, schedule.payload, "payload") if mode == "run" else b""
    attempts = schedule.max_attempts or queue.max_attempts
    lease_ms: int | str = ("" if schedule.lease_timeout is None
                           else validate.millis(schedule.lease_timeout, "lease_timeout"))
    await queue.prepare()
    reply = await scripts.TICK(
        queue.redis,
        [k.schedule(schedule.name), k.todos, k.in_progress, k.delayed, k.done, k.dead,
         k.wake, k.job(job_id), *k.control],
        ["" if expected is None else expected, mode, tick, job_id, schedule.task, payload,
         attempts, lease_ms, schedule.overlap, count])
    return text(reply)


async def declare(queue: QueueCore, schedules: Sequence[Schedule]) -> None:
    """Say which schedules this process runs, with Redis's time: one not declared for
    :data:`STALE_AFTER` seconds is reported stale. Idempotent (a re-sent call writes
    the same fields)."""
    if not schedules:
        return
    now = await server_ms(queue.redis)
    fields: dict[Any, Any] = {
        s.name: json.dumps({**s.describe(), "declared_at": now}) for s in schedules}
    await queue.redis.hset(queue.keys.schedules, mapping=fields)


async def read_schedules(queue: QueueCore, known: Sequence[Schedule] = ()) -> list[ScheduleInfo]:
    """Every schedule declared for the queue (at most 1,000, by name), with its state.
    ``known`` schedules (declared in this process) give the next tick; for the others
    it is read from their declaration when that is still fresh."""
    now = await server_ms(queue.redis)
    raw = await queue.redis.hgetall(queue.keys.schedules)
    declared = {}
    for name, value in raw.items():
        try:
            declared[text(name)] = json.loads(value)
        except ValueError:
            continue  # not written by a leaseq scheduler
    names = sorted(declared)[:_MAX_LISTED]
    by_name = {s.name: s for s in known}
    async with queue.redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(queue.keys.schedule(name))
        states = await pipe.execute()
    state_of = {name: {text(f): text(v) for f, v in st.items()}
                for name, st in zip(names, states, strict=True)}
    last_jobs = [state_of[n].get("last_job") for n in names]
    infos = await read_jobs(queue, [j for j in last_jobs if j])
    job_state = {info.job_id: info.state for info in infos if info is not None}
    out = []
    for name in names:
        d, st = declared[name], state_of[name]
        seen = d.get("declared_at")
        stale = not isinstance(seen, int) or now - seen > STALE_AFTER * 1000
        last = opt_int(st.get("last_tick"))
        nxt = None
        if not stale:
            sched = by_name.get(name) or from_timing(d.get("timing"), str(d.get("task", "")))
            if sched is not None:
                nxt = sched.next_tick(max(last or now, now)) / 1000
        job = st.get("last_job")
        out.append(ScheduleInfo(
            name=name, task=str(d.get("task", "")), spec=str(d.get("spec", "")),
            overlap=str(d.get("overlap", "")), catch_up=int(d.get("catch_up", 0)),
            declared_at=seen / 1000 if isinstance(seen, int) else None, stale=stale,
            next_tick=nxt, last_tick=None if last is None else last / 1000, last_job=job,
            last_job_state=job_state.get(job) if job else None,
            enqueued=opt_int(st.get("enqueued")) or 0,
            skipped_overlap=opt_int(st.get("skipped_overlap")) or 0,
            skipped_missed=opt_int(st.get("skipped_missed")) or 0))
    return out

