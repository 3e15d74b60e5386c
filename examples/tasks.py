"""Task handlers of the examples and of docker-compose's workers.

Run them with:  leaseq worker examples.tasks:HANDLERS --queue demo
"""

from __future__ import annotations

import re
import urllib.request
from typing import Any

import anyio

from leaseq import JobContext, Task

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)


async def add(ctx: JobContext, payload: dict[str, int]) -> int:
    """The seed's work pool: a sum of (a, b)."""
    return payload["a"] + payload["b"]


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - user's URLs
        return bytes(response.read(1_000_000))


async def get_title(ctx: JobContext, url: str) -> str | None:
    """The seed's URL map: fetch a page (in a thread: urllib blocks) and return its title."""
    body = await anyio.to_thread.run_sync(_fetch, url)
    match = _TITLE.search(body)
    return match.group(1).decode("utf-8", "replace").strip() if match else None


async def work(ctx: JobContext, payload: dict[str, Any]) -> int:
    """Pretend to work for ``payload["ms"]`` milliseconds (the producer's jobs)."""
    await anyio.sleep(payload.get("ms", 10) / 1000)
    return int(payload.get("i", 0))


HANDLERS = {
    "add": add,
    # Fetching can hang on a slow site: bound each run and its lease.
    "get_title": Task(get_title, timeout=20.0, lease_timeout=30.0),
    "work": work,
}
