"""A producer for failover tests: enqueues in batches with fixed ids through a failover,
and sorts the batches by whether a replica confirmed them (the durability knob); and the
run that puts a fault in the middle of its traffic."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from redis.exceptions import RedisError

from leaseq import JobContext, Queue, Worker
from leaseq.testing import wait_drained

T = TypeVar("T")


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


async def short_work(ctx: JobContext, payload: int) -> int:
    """The failover tests' handler: a few milliseconds at most, then the payload back."""
    await anyio.sleep(random.uniform(0, 0.005))
    return payload


async def run_through_fault(
    worker: Worker, producer: FailoverProducer, fault: Callable[[], Awaitable[T]], *,
    ready_timeout: float | None = 120, drain_timeout: float = 120,
) -> T:
    """Run ``worker`` and ``producer``; once the producer is ready (an event, not a time),
    await ``fault()`` while its traffic goes on; when every job is enqueued, wait for the
    queue to drain and stop the worker. Returns what ``fault`` returned."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        async with anyio.create_task_group() as producers:
            producers.start_soon(producer.run)
            with anyio.fail_after(ready_timeout):
                await producer.ready.wait()
            result = await fault()
        await wait_drained(producer.queue.redis, producer.queue.name, timeout=drain_timeout)
        worker.stop()
    return result
