"""Reading jobs: their hash, which set holds them, and their live lease, pipelined."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..models import JobInfo, JobState
from .core import QueueCore
from .wire import opt_int, opt_text, text

_READS_PER_JOB = 11


async def read_jobs(queue: QueueCore, job_ids: Sequence[str]) -> list[JobInfo | None]:
    """One :class:`JobInfo` per id (``None`` for unknown ids), in one round trip."""
    if not job_ids:
        return []
    k = queue.keys
    async with queue.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hgetall(k.job(job_id))
            pipe.sismember(k.todos, job_id)
            pipe.sismember(k.in_progress, job_id)
            pipe.sismember(k.done, job_id)
            pipe.sismember(k.dead, job_id)
            pipe.zscore(k.delayed, job_id)
            pipe.sismember(k.cancelled, job_id)
            pipe.sismember(k.blocked, job_id)
            pipe.hget(k.after, job_id)
            pipe.get(k.lease(job_id))
            pipe.pttl(k.lease(job_id))
        replies = await pipe.execute()
    return [
        _info(queue, job_id, replies[i * _READS_PER_JOB:(i + 1) * _READS_PER_JOB])
        for i, job_id in enumerate(job_ids)
    ]


def _info(queue: QueueCore, job_id: str, replies: list[Any]) -> JobInfo | None:
    raw, todo, inp, done, dead, delayed, cancelled, blocked, left, token, pttl = replies
    state: JobState | None = None
    flags: tuple[tuple[Any, JobState], ...] = (
        (todo, "todo"), (inp, "in_progress"), (done, "done"), (dead, "dead"),
        (delayed is not None, "delayed"), (cancelled, "cancelled"), (blocked, "blocked"))
    for flag, name in flags:
        if flag:
            state = name
    if not raw and state is None:
        return None
    h = {text(f): v for f, v in raw.items()}
    return JobInfo(
        job_id=job_id, state=state, task=opt_text(h.get("task")),
        payload=_decode_or_raw(queue, h.get("payload")),
        attempts=opt_int(h.get("attempts")) or 0,
        max_attempts=opt_int(h.get("max_attempts")),
        failures=opt_int(h.get("failures")) or 0,
        lease_expiries=opt_int(h.get("expiries")) or 0,
        result=_decode_or_raw(queue, h.get("result")) if state == "done" else None,
        error=opt_text(h.get("error")),
        dead_reason=opt_text(h.get("dead_reason")) if state == "dead" else None,
        enqueued_at=_ms_to_s(h.get("enqueued_at")),
        finished_at=_ms_to_s(h.get("finished_at")),
        # A cancel pending on a running job marks its lease '<token>!' (cancel.lua).
        lease_token=None if token is None else text(token).rstrip("!"),
        lease_ttl=int(pttl) / 1000 if token is not None and int(pttl) >= 0 else None,
        owner=opt_text(h.get("owner")),
        priority=opt_int(h.get("priority")) or 0,
        key=opt_text(h.get("key")),
        expires_at=_ms_to_s(h.get("expires_at")),
        cancel_reason=opt_text(h.get("cancel_reason")),
        progress=stored_progress(h.get("progress")),
        after=_after(h.get("after")),
        # lua/_ctl.lua: after holds '<left>\x1f<policy>' while the job is blocked.
        waiting_for=int(text(left).split("\x1f")[0])
        if state == "blocked" and left is not None and text(left)[:1].isdigit() else 0,
    )


def _decode_or_raw(queue: QueueCore, data: Any) -> Any:
    """Decoded value, or the raw bytes when they cannot be decoded (corrupt data is
    shown, not hidden)."""
    if data is None:
        return None
    try:
        return queue.serializer.loads(data)
    except Exception:
        return data


def stored_progress(raw: Any) -> dict[str, Any] | None:
    """A job's stored progress (its hash's ``progress``), or ``None`` (also for a value
    that is not one)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _after(raw: Any) -> tuple[str, ...]:
    """The ids a job was enqueued after (its hash's ``after``: a JSON list)."""
    if not raw:
        return ()
    try:
        ids = json.loads(raw)
    except ValueError:
        return ()
    return tuple(str(i) for i in ids) if isinstance(ids, list) else ()


def _ms_to_s(value: Any) -> float | None:
    return None if value is None else int(value) / 1000
