"""Handlers of the chaos scenarios (run by worker processes under fault injection)."""

from __future__ import annotations

import sys
from typing import Any

import anyio

from leaseq import Every, JobContext, Task


async def work(ctx: JobContext, payload: Any) -> Any:
    """Sleep ``payload["s"]`` seconds (default 0) and return ``payload["v"]``."""
    if isinstance(payload, dict):
        await anyio.sleep(payload.get("s", 0))
        return payload.get("v")
    return len(payload) if isinstance(payload, str) else payload


async def fail(ctx: JobContext, payload: Any) -> None:
    """Poison: always raises."""
    raise RuntimeError("poison: this job always fails")


async def hang(ctx: JobContext, payload: Any) -> None:
    """Poison: never returns (bounded by its task timeout)."""
    await anyio.sleep(3600)


async def leave(ctx: JobContext, payload: Any) -> None:
    """Poison: calls sys.exit."""
    sys.exit(7)


HANDLERS = {
    "work": work,
    "fail": fail,
    "hang": Task(hang, timeout=0.5),
    "exit": leave,
}

SCHEDULES = [Every(1, "work", {"s": 0.01, "v": "tick"}, name="tick")]
"""A one-second schedule of ``work`` jobs, fired by the scheduler processes."""
