"""Per-task statistics, the counting side: outcomes per minute and handler durations,
counted by each worker and added to per-minute hashes in Redis every few seconds (one
script call per queue and flush, not a write per job; read by
:mod:`leaseq.protocol.taskstats`)."""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from ..protocol import scripts
from ..protocol.queue import Queue
from ..protocol.taskstats import KEEP_S, SEP, bucket_of
from .outage import Outage

MAX_PENDING = 64
"""Unconfirmed flushes kept for sending again (the newest; a longer outage loses the
oldest counts)."""
REPLY_KEEP_S = 600
"""How long a flush's reply record is kept: longer than MAX_PENDING flushes take, so no
retry of a flush can find its record gone and count it twice."""


class TaskStats:
    """A worker's counters since its last flush, per queue and task."""

    def __init__(self, queues: Sequence[Queue], interval: float = 5.0) -> None:
        self.queues = {q.name: q for q in queues}
        self.interval = interval
        self.server_offset: float | None = None
        """Redis time minus local monotonic time (from the latest claim)."""
        self.outage = Outage("taskstats")
        self.flush_by: Callable[[], float] = lambda: math.inf
        """When (anyio's clock) the last flush must give up (a stopping worker's
        clean-up deadline)."""
        self._counts: dict[str, Counter[str]] = defaultdict(Counter)
        # A flush whose reply was lost is sent again as it was (same minute, same reply
        # record), so it is counted once whatever happened to the first.
        self._pending: list[tuple[Queue, int, str, list[Any]]] = []

    def outcome(self, queue: str, task: str, outcome: str) -> None:
        """Count an acked, failed or dead job of ``task``."""
        self._counts[queue][f"{task}{SEP}{outcome}"] += 1

    def duration(self, queue: str, task: str, seconds: float) -> None:
        """Count a handler's run time."""
        self._counts[queue][f"{task}{SEP}d{bucket_of(seconds)}"] += 1

    async def run(self) -> None:
        """Flush every ``interval`` seconds until cancelled; then once more (bounded)."""
        try:
            while True:
                await anyio.sleep(self.interval)
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True, deadline=min(
                    anyio.current_time() + 2.0, self.flush_by())):
                await self.flush()

    async def flush(self) -> None:
        """Send what was counted since the last flush (and any flush not confirmed)."""
        if self._counts:
            offset = self.server_offset if self.server_offset is not None else (
                time.time() - time.monotonic())
            minute = int((time.monotonic() + offset) // 60)
            for name, counts in self._counts.items():
                args: list[Any] = [KEEP_S, REPLY_KEEP_S]
                for field, n in counts.items():
                    args += (field, n)
                q = self.queues[name]
                self._pending.append((q, minute, q.keys.reply(), args))
            self._counts = defaultdict(Counter)
        while self._pending:
            q, minute, reply, args = self._pending[0]
            try:
                await scripts.TASKSTATS(q.redis, [q.keys.taskstats(minute), reply], args)
            except Exception as exc:  # statistics must never stop a worker
                self.outage.failed(exc, queue=q.name)
                del self._pending[:-MAX_PENDING]  # a long outage: keep the newest only
                return
            self.outage.ok()
            self._pending.pop(0)
