"""Worker presence, the reading side: the live workers of a queue, from the short-lived
descriptions each worker renews (written by :mod:`leaseq.runtime.presence`)."""

from __future__ import annotations

import json
import time

from ..models import WorkerInfo
from .core import QueueCore
from .wire import text

_MAX_LISTED = 1000


async def live_workers(queue: QueueCore) -> list[WorkerInfo]:
    """The workers whose description has not expired, newest first (at most 1,000)."""
    k = queue.keys
    ids = [text(i) for i in await queue.redis.zrevrange(k.workers, 0, _MAX_LISTED - 1)]
    if not ids:
        return []
    # Two calls, not a pipeline: a cluster client refuses MGET in a pipeline.
    raw = await queue.redis.mget([k.worker(i) for i in ids])
    seen = await queue.redis.zmscore(k.workers, ids)
    out = []
    for worker_id, value, last in zip(ids, raw, seen, strict=True):
        if value is None:
            continue  # expired: the worker died or left
        try:
            d = json.loads(value)
            out.append(WorkerInfo(
                id=worker_id, host=str(d["host"]), pid=int(d["pid"]),
                queues=tuple(d["queues"]), concurrency=int(d["concurrency"]),
                in_flight=int(d["in_flight"]), started_at=float(d["started_at"]),
                last_seen=(float(last) if last is not None else time.time() * 1000) / 1000,
                version=str(d["version"]), counters=dict(d.get("counters", {}))))
        except (ValueError, KeyError, TypeError):
            continue  # not written by a leaseq worker
    return out
