"""A producer for failover tests: enqueues in batches with fixed ids through a failover,
and sorts the batches by whether a replica confirmed them (the durability knob)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from redis.exceptions import RedisError

from leaseq import Queue


@dataclass
class FailoverProducer:
    """``await producer.run()`` enqueues ``total`` jobs of ``task``; ``ready`` is set once
    ``ready_when(producer)`` holds (the moment to kill the master)."""

    queue: Queue
    """Its own Queue object, so that its unconfirmed count is its enqueues alone."""
    total: int
    ready_when: Callable[[FailoverProducer], bool]
    task: str = "work"
    batch: int = 20
    pause: float = 0.0
    confirmed: list[str] = field(default_factory=list)
    """Ids whose enqueue a replica confirmed (or, without the knob, that returned)."""
    unconfirmed: list[str] = field(default_factory=list)
    """Ids whose enqueue returned but that the knob said no replica confirmed in time."""
    ready: anyio.Event = field(default_factory=anyio.Event)

    @property
    def acknowledged(self) -> list[str]:
        """Every id whose enqueue returned normally."""
        return self.confirmed + self.unconfirmed

    async def run(self) -> None:
        for start in range(0, self.total, self.batch):
            ids = [f"job-{j}" for j in range(start, min(start + self.batch, self.total))]
            payloads: list[Any] = list(range(start, start + len(ids)))
            while True:
                before = self.queue.unconfirmed_writes
                try:
                    await self.queue.enqueue_many(self.task, payloads, job_ids=ids)
                    break
                except (RedisError, OSError):
                    await anyio.sleep(0.05)  # failing over: retry (the ids make it safe)
            # After a failover the new master has no replica: those writes are reported
            # unconfirmed; so may one before it be, on a loaded machine.
            unconfirmed = self.queue.unconfirmed_writes > before
            (self.unconfirmed if unconfirmed else self.confirmed).extend(ids)
            if self.ready_when(self):
                self.ready.set()
            await anyio.sleep(self.pause)
