"""Worker presence: each running worker keeps a short-lived description of itself in
every queue it serves, so operators can list the live workers (``leaseq workers``, the
dashboard) and a worker that died disappears once its description expires."""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ..models import WorkerInfo
from ..protocol import scripts
from ..protocol.wire import text
from .outage import Outage

if TYPE_CHECKING:
    from ..protocol.queue import Queue

_MAX_LISTED = 1000


def new_worker_id() -> str:
    """``host:pid:nonce``: unique per run, readable in a list."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class Presence:
    """Renews a worker's description every ``interval`` seconds (time to live: five
    intervals) until cancelled, then removes it."""

    def __init__(
        self, queues: Sequence[Queue], describe: Callable[[], dict[str, Any]],
        interval: float,
    ) -> None:
        self.queues = queues
        self.describe = describe
        self.interval = interval
        self.ttl_ms = max(1, round(interval * 5 * 1000))
        self.worker_id = new_worker_id()
        self.outage = Outage("presence")
        self.leave_by: Callable[[], float] = lambda: math.inf
        """When (anyio's clock) the goodbye write must give up (a stopping worker's
        clean-up deadline)."""

    async def run(self) -> None:
        """Say the worker is alive until cancelled; then say it left (bounded)."""
        try:
            while True:
                await self._beat(json.dumps({"id": self.worker_id, **self.describe()}))
                await anyio.sleep(self.interval)
        finally:
            with anyio.CancelScope(shield=True, deadline=min(
                    anyio.current_time() + 2.0, self.leave_by())):
                await self._beat("")

    async def _beat(self, description: str) -> None:
        for q in self.queues:
            try:
                await scripts.PRESENCE(
                    q.redis, [q.keys.workers, q.keys.worker(self.worker_id)],
                    [self.worker_id, description, self.ttl_ms])
                self.outage.ok()
            except Exception as exc:  # presence is advisory: it must never stop a worker
                self.outage.failed(exc, queue=q.name)


async def live_workers(queue: Queue) -> list[WorkerInfo]:
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
