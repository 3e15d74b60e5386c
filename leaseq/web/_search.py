"""Finding a queue's jobs by the start of their id, at a bounded cost per request.

The ids are looked for where the queue keeps them: its state sets and the ``delayed``
sorted set, with ``SSCAN``/``ZSCAN ... MATCH <prefix>*``. That walks the queue's own ids
only, on the queue's one Cluster slot; a ``SCAN`` over ``job:<prefix>*`` keys would walk
every key of the database (other queues', leases, other applications') to find the same
ids, and on a cluster would have to ask the node of the slot by name.

One request makes at most :data:`MAX_STEPS` scan calls of ``COUNT`` :data:`STEP_COUNT`
(about 5,000 ids looked at; ``COUNT`` is a hint, Redis may look at a few more) and stops
early once it has ``limit`` matches; the cursor it returns goes on where it stopped. A
scan step is never split (only whole steps keep SSCAN's promise that an id present all
along is found), so a page may hold up to one step's matches more than ``limit``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..models import JobState
from ..protocol.queue import Queue
from ..protocol.wire import opt_int, opt_text, text

STEP_COUNT = 250
"""``COUNT`` of each scan call."""
MAX_STEPS = 20
"""Scan calls per request at most."""
ORDER: tuple[JobState, ...] = ("in_progress", "todo", "delayed", "blocked", "dead",
                               "cancelled", "done")
"""The states in the order they are searched: the live ones first."""
# 19 digits: any SSCAN cursor (64 bits) fits, and no longer number reaches Redis to be
# refused there (a 503 for bad input).
CURSOR_PATTERN = rf"^s:[0-{len(ORDER) - 1}]:[0-9]{{1,19}}$"
"""What a search cursor looks like: ``s:<state index>:<scan cursor>``."""

_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")
_FIELDS = ("task", "attempts", "max_attempts", "enqueued_at", "finished_at")


def glob_escape(prefix: str) -> str:
    """``prefix`` with the characters a Redis ``MATCH`` pattern treats specially escaped,
    so an id holding ``*`` or ``[`` is matched as written."""
    return _GLOB_SPECIAL.sub(r"\\\1", prefix)


@dataclass(frozen=True, slots=True)
class Found:
    """A page of matches, and how far the search went."""

    ids: list[tuple[str, JobState]]
    """The matching ids and the state each was found in, in the order found."""
    steps: int
    """Scan calls made."""
    cursor: str | None
    """Where to go on; ``None`` when every state was searched."""


def _key(q: Queue, state: JobState) -> str:
    k = q.keys
    return {"todo": k.todos, "in_progress": k.in_progress, "done": k.done, "dead": k.dead,
            "delayed": k.delayed, "cancelled": k.cancelled, "blocked": k.blocked}[state]


def _position(cursor: str | None) -> tuple[int, int]:
    if cursor is None:
        return 0, 0
    _, index, at = cursor.split(":")
    return int(index), int(at)


async def find(q: Queue, prefix: str, limit: int, cursor: str | None = None,
               state: JobState | None = None) -> Found:
    """Ids of ``q`` starting with ``prefix`` (in ``state`` only, when given): at least
    ``limit`` of them unless the search ends first, from ``cursor`` on (a
    :data:`CURSOR_PATTERN` string from an earlier page)."""
    index, at = _position(cursor)
    pattern = glob_escape(prefix) + "*"
    wanted = ORDER if state is None else (state,)
    # With ``state`` the search has one state, index 0; a cursor past it (from a search
    # of every state) finds nothing more.
    ids: list[tuple[str, JobState]] = []
    seen: set[str] = set()
    steps = 0
    while index < len(wanted) and steps < MAX_STEPS and len(ids) < limit:
        current = wanted[index]
        raw: Any
        if current == "delayed":
            at, pairs = await q.redis.zscan(_key(q, current), at, match=pattern,
                                            count=STEP_COUNT)
            raw = [member for member, _ in pairs]
        else:
            at, raw = await q.redis.sscan(_key(q, current), at, match=pattern,
                                          count=STEP_COUNT)
        steps += 1
        for member in raw:
            job_id = text(member)
            if job_id not in seen:  # SSCAN may return an id twice while the set grows
                seen.add(job_id)
                ids.append((job_id, current))
        at = int(at)
        if at == 0:
            index += 1
    following = None if index >= len(wanted) else f"s:{index}:{at}"
    # A scan returns ids in no order; by state (live ones first), then by id, reads better.
    ids.sort(key=lambda hit: (ORDER.index(hit[1]), hit[0]))
    return Found(ids, steps, following)


async def rows(q: Queue, found: list[tuple[str, JobState]]) -> list[dict[str, Any]]:
    """The light rows of the search's matches (one ``HMGET`` each, in one round trip);
    an id whose hash is gone meanwhile is left out."""
    if not found:
        return []
    async with q.redis.pipeline(transaction=False) as pipe:
        for job_id, _ in found:
            pipe.hmget(q.keys.job(job_id), _FIELDS)
        replies = await pipe.execute()
    out = []
    for (job_id, state), fields in zip(found, replies, strict=True):
        task, attempts, max_attempts, enqueued_at, finished_at = fields
        if task is None and attempts is None:
            continue
        out.append({
            "job_id": job_id, "state": state, "task": opt_text(task),
            "attempts": opt_int(attempts) or 0, "max_attempts": opt_int(max_attempts),
            "enqueued_at": _seconds(enqueued_at), "finished_at": _seconds(finished_at),
        })
    return out


def _seconds(ms: Any) -> float | None:
    value = opt_int(ms)
    return None if value is None else value / 1000
