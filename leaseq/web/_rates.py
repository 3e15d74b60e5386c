"""Jobs per minute for the dashboard's chart: acks, failures and lease expiries over the
last minutes, each minute a whole minute of Redis's clock.

- acks: ``ZCOUNT`` over ``done_at`` per minute (retained done jobs);
- failures: the workers' per-task statistics (:mod:`leaseq.protocol.taskstats`), one
  hash per minute; summed over tasks, ``failed`` (retried) plus ``dead``;
- lease expiries: the ``at`` of the reaper's recorded expiries (the last 200), which
  the snapshot reads anyway for its table.

The statistics' hashes hold a field per task and counter, so on a queue of many tasks
they are the largest of these reads; workers add to them every 5 s, so they are read at
most once per :data:`FAILURES_TTL` per queue and app, however many pages watch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..protocol.queue import Queue
from ..protocol.taskstats import SEP
from ..protocol.wire import text

FAILURES_TTL = 5.0
"""Seconds a read of the failure counts is reused."""
_FAILURES = (SEP + "failed", SEP + "dead")


class FailureCounts:
    """Failures per minute of each queue, read from Redis at most every
    :data:`FAILURES_TTL` seconds."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, int, int], tuple[float, list[int]]] = {}

    async def read(self, q: Queue, first_minute: int, minutes: int) -> list[int]:
        """Failures in each minute from ``first_minute`` (Unix minutes), oldest first."""
        now = time.monotonic()
        # Old entries go, so the cache holds a few entries per queue, not one per minute.
        self._kept = {key: kept for key, kept in self._kept.items()
                      if now - kept[0] < FAILURES_TTL}
        key = (q.name, first_minute, minutes)
        kept = self._kept.get(key)
        if kept is not None:
            return kept[1]
        async with q.redis.pipeline(transaction=False) as pipe:
            for minute in range(first_minute, first_minute + minutes):
                pipe.hgetall(q.keys.taskstats(minute))
            hashes = await pipe.execute()
        counts = [sum(int(value) for field, value in row.items()
                      if text(field).endswith(_FAILURES)) for row in hashes]
        self._kept[key] = (now, counts)
        return counts


async def rates(q: Queue, now_ms: int, minutes: int, expiries: Sequence[dict[str, Any]],
                failures: FailureCounts, *, recorded: int) -> dict[str, Any]:
    """The chart's data (see :class:`~leaseq.web._schemas.Rates`). ``expiries``: the
    reaper's recorded expiries, newest first, as read (``recorded`` entries asked for)."""
    first = now_ms // 60_000 - minutes + 1
    starts = [(first + i) * 60_000 for i in range(minutes)]
    async with q.redis.pipeline(transaction=False) as pipe:
        for start in starts:
            pipe.zcount(q.keys.done_at, start, f"({start + 60_000}")
        acked = [int(c) for c in await pipe.execute()]
    expired = [0] * minutes
    for event in expiries:
        at = event.get("at")
        if isinstance(at, int) and at >= starts[0]:
            expired[min(minutes - 1, (at - starts[0]) // 60_000)] += 1
    oldest = expiries[-1].get("at") if expiries else None
    capped = (len(expiries) >= recorded and isinstance(oldest, int) and oldest > starts[0])
    return {"minute_starts": starts, "acked": acked,
            "failed": await failures.read(q, first, minutes),
            "expired": expired, "expired_capped": capped}
