"""Handlers that record their executions, for the chaos harness.

``leaseq worker leaseq.testing._record:HANDLERS`` loads the user's handlers named by
``LEASEQ_TESTING_TARGET`` (``MODULE:ATTR``) and wraps each so that every run appends
``start`` and ``end`` records (job id, attempt, pid, token) to the queue's execution log,
``leaseq:{NAME}:testing:executions``. The ``end`` record is written after the handler's
side effects and before the ack, so the log shows runs whose ack never happened.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from ..runtime.task import Handler, JobContext, Task, normalise_handlers


def log_key(prefix: str) -> str:
    """The execution log of the queue with key prefix ``prefix``."""
    return prefix + "testing:executions"


def _wrap(handler: Handler) -> Handler:
    pid = os.getpid()

    async def recorded(ctx: JobContext, payload: Any) -> Any:
        key = log_key(ctx.queue.keys.prefix)
        who = f"{ctx.job_id} {ctx.attempt} {pid} {ctx.lease.token}"
        await ctx.queue.redis.rpush(key, f"start {who}")
        result = await handler(ctx, payload)
        await ctx.queue.redis.rpush(key, f"end {who}")
        return result

    return recorded


class _Recorded(Mapping[str, Task]):
    """Loads and wraps the target on first use (the CLI imports this module first)."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] | None = None

    def _load(self) -> dict[str, Task]:
        if self._tasks is None:
            spec = os.environ.get("LEASEQ_TESTING_TARGET", "")
            module_name, _, attr = spec.partition(":")
            if not module_name or not attr:
                raise RuntimeError("LEASEQ_TESTING_TARGET must be MODULE:ATTR")
            target = getattr(importlib.import_module(module_name), attr)
            tasks = normalise_handlers(target)
            self._tasks = {
                name: Task(_wrap(t.handler), t.timeout, t.lease_timeout, t.max_attempts,
                           t.backoff)
                for name, t in tasks.items()
            }
        return self._tasks

    def __getitem__(self, name: str) -> Task:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


HANDLERS = _Recorded()
