"""Handlers for CLI tests: ``leaseq worker tests.helpers.tasks:HANDLERS``."""

from __future__ import annotations

import os
from typing import Any

import anyio

from leaseq import JobContext, Queue, Worker


async def echo(ctx: JobContext, payload: Any) -> Any:
    """Return the payload."""
    return payload


async def sleep(ctx: JobContext, payload: Any) -> dict[str, Any]:
    """Sleep ``payload["s"]`` seconds; return the pid that ran it.

    With ``payload["mark"]``, first create that file, so a test can tell the handler has
    started: a claimed job is in ``in_progress`` before its handler runs.
    """
    if "mark" in payload:
        await anyio.Path(payload["mark"]).touch()
    await anyio.sleep(payload.get("s", 0))
    return {"pid": os.getpid()}


HANDLERS = {"echo": echo, "sleep": sleep}


def make_worker(queue: Queue) -> Worker:
    """A Worker factory, as ``leaseq worker tests.helpers.tasks:make_worker`` takes it."""
    return Worker(queue, HANDLERS, concurrency=3, reaper=False)


def quick_presence(queue: Queue) -> Worker:
    """A worker whose entry in the list of live workers is renewed every 0.2 s, so it
    expires (five intervals) a second after the worker died."""
    return Worker(queue, HANDLERS, reaper=False, presence_interval=0.2)


NOT_HANDLERS = 42
