"""Per-task statistics, the reading side: outcomes per minute and handler durations
(added by each worker's flushes, see :mod:`leaseq.runtime.taskstats`) and counts by state
per task read from the queue's sets.

The durations are kept as a histogram (fixed buckets), so percentiles are the upper
bound of the bucket they fall in: "p95 ≤ 200 ms", not an exact value.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from typing import Any

from .admin import scan_members, server_ms
from .core import QueueCore
from .wire import text

BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000,
              60_000, 300_000)
"""Upper bounds (ms) of the duration histogram's buckets; one more bucket holds the rest."""
OUTCOMES = ("acked", "failed", "dead")
KEEP_S = 2 * 3600
"""How long a minute's hash is kept."""
SEP = "\x1f"
"""Between a task name and its counter in a hash field (names hold no control characters)."""
STATES = ("todo", "delayed", "in_progress", "dead")
"""The states whose jobs are counted per task (done jobs are counted by outcome)."""


def bucket_of(seconds: float) -> int:
    """The histogram bucket of a duration."""
    return bisect.bisect_left(BUCKETS_MS, seconds * 1000)


def json_ready(stats: dict[str, Any]) -> dict[str, Any]:
    """:func:`read`'s result for JSON: a run time beyond the last bucket (``inf``) becomes
    the string ``">300"``."""
    out = {**stats, "tasks": {}}
    for task, row in stats["tasks"].items():
        out["tasks"][task] = {**row, **{
            key: (f">{BUCKETS_MS[-1] // 1000}" if row[key] == math.inf else row[key])
            for key in ("p50_s", "p95_s")}}
    return out


def _percentile(histogram: Counter[int], fraction: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= math.ceil(total * fraction):
            return (BUCKETS_MS[bucket] / 1000 if bucket < len(BUCKETS_MS) else math.inf)
    return math.inf  # pragma: no cover - the loop always reaches the total


async def read(queue: QueueCore, minutes: int, sample: int) -> dict[str, Any]:
    """Per task: jobs acked, failed and dead per minute (oldest first) over the last
    ``minutes`` minutes, p50 and p95 of the handler's run time (bucket upper bounds, in
    seconds), and the jobs per state among at most ``sample`` ids per state (``sampled``
    says whether a state held more)."""
    now_minute = await server_ms(queue.redis) // 60_000
    wanted = list(range(now_minute - minutes + 1, now_minute + 1))
    async with queue.redis.pipeline(transaction=False) as pipe:
        for minute in wanted:
            pipe.hgetall(queue.keys.taskstats(minute))
        rows: list[dict[Any, Any]] = await pipe.execute()
    per_minute: dict[str, dict[str, list[int]]] = defaultdict(
        lambda: {o: [0] * len(wanted) for o in OUTCOMES})
    durations: dict[str, Counter[int]] = defaultdict(Counter)
    for i, row in enumerate(rows):
        for raw_field, raw_value in row.items():
            task, _, counter = text(raw_field).rpartition(SEP)
            value = int(raw_value)
            if counter in OUTCOMES:
                per_minute[task][counter][i] += value
            elif counter[:1] == "d" and counter[1:].isdigit():
                durations[task][int(counter[1:])] += value
    states, sampled = await _state_counts(queue, sample)
    tasks = sorted(set(per_minute) | set(durations) | set(states))
    return {
        "queue": queue.name, "minutes": minutes, "sampled": sampled,
        "tasks": {task: {
            "per_minute": per_minute[task] if task in per_minute
            else {o: [0] * len(wanted) for o in OUTCOMES},
            "totals": {o: sum(per_minute[task][o]) if task in per_minute else 0
                       for o in OUTCOMES},
            "p50_s": _percentile(durations[task], 0.5),
            "p95_s": _percentile(durations[task], 0.95),
            "states": {s: states.get(task, {}).get(s, 0) for s in STATES},
        } for task in tasks},
    }


async def _state_counts(queue: QueueCore, sample: int) -> tuple[dict[str, dict[str, int]], bool]:
    k = queue.keys
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    sampled = False
    for state in STATES:
        if state == "delayed":
            ids = [text(i) for i in await queue.redis.zrange(k.delayed, 0, sample)]
        else:
            key = {"todo": k.todos, "in_progress": k.in_progress, "dead": k.dead}[state]
            ids = await scan_members(queue.redis, key, sample + 1)
        if len(ids) > sample:
            sampled = True
            ids = ids[:sample]
        per_task: Counter[str] = Counter()
        for start in range(0, len(ids), 1000):
            async with queue.redis.pipeline(transaction=False) as pipe:
                for job_id in ids[start:start + 1000]:
                    pipe.hget(k.job(job_id), "task")
                for task in await pipe.execute():
                    if task is not None:
                        per_task[text(task)] += 1
        for task, n in per_task.items():
            counts[task][state] = n
    return counts, sampled
