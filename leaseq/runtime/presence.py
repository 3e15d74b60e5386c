"""Worker presence, the writing side: each running worker keeps a short-lived description
of itself in every queue it serves (read by :mod:`leaseq.protocol.presence`), and a worker
that died disappears once its description expires."""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ..protocol import scripts
from .outage import Outage

if TYPE_CHECKING:
    from ..protocol.queue import Queue


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
