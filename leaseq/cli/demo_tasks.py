"""The handlers of ``leaseq demo`` (imported by its worker processes)."""

from __future__ import annotations

from typing import Any

import anyio

from ..runtime.task import JobContext


async def work(ctx: JobContext, payload: dict[str, Any]) -> int:
    """Pretend to work for ``payload["ms"]`` milliseconds; return twice ``payload["i"]``."""
    await anyio.sleep(payload["ms"] / 1000)
    return int(payload["i"]) * 2


HANDLERS = {"demo.work": work}
"""Task name -> handler, as ``leaseq worker leaseq.cli.demo_tasks:HANDLERS`` loads it."""
