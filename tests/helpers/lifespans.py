"""Lifespans that ``leaseq worker --lifespan tests.helpers.lifespans:ATTR`` loads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from leaseq import JobContext


@asynccontextmanager
async def pool(worker: Any) -> AsyncIterator[dict[str, str]]:
    """Yields a stand-in for a database pool."""
    yield {"pool": "pg://example"}


@asynccontextmanager
async def broken(worker: Any) -> AsyncIterator[None]:
    """Fails to start, as a lifespan whose database refuses connections would."""
    raise ConnectionRefusedError("database at db:5432 refused the connection")
    yield


async def pool_name(ctx: JobContext, payload: Any) -> str:
    """Returns what the lifespan put in ``ctx.state``."""
    return str(ctx.state["pool"])


HANDLERS = {"pool_name": pool_name}
