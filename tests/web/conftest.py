"""Fixtures for the dashboard and HTTP API: ``leaseq web`` as a subprocess, and an
in-process client of the app on each Redis lane."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
import redis.asyncio as aioredis

from leaseq.testing import RedisServer, WebProcess
from leaseq.web import create_app

ARTIFACTS = Path(__file__).parent.parent.parent / "test-artifacts"
"""Screenshots and reports a run leaves behind (ignored by git, kept by CI)."""


@pytest.fixture
def start_web(redis_server: RedisServer, tmp_path: Path) -> Iterator[Any]:
    """Start ``leaseq web`` processes against the session's real redis-server; every one
    is stopped at the end, and must exit 0 on SIGTERM."""
    started: list[WebProcess] = []

    def start(*args: str, env: Mapping[str, str] | None = None) -> WebProcess:
        proc = WebProcess(redis_server.url, *args, env=env,
                          log_path=tmp_path / f"web-{len(started)}.log")
        started.append(proc)
        proc.start()
        proc.wait_ready()
        return proc

    yield start
    codes = [proc.terminate(timeout=30) for proc in started]
    assert codes == [0] * len(codes), [p.log_path.read_text() for p in started]


@pytest.fixture
async def api(redis: aioredis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app, in process, on the ``redis`` fixture's lane."""
    async with client_of(redis) as client:
        yield client


@pytest.fixture
async def fake_redis() -> AsyncIterator[aioredis.Redis]:
    """fakeredis, for tests of the HTTP layer alone."""
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7, 0)))
    try:
        yield client
    finally:
        await client.aclose()


def client_of(redis: aioredis.Redis, *, queues: Sequence[str] | None = None,
              token: str | None = None, max_body: int = 64 * 1024) -> httpx.AsyncClient:
    """An in-process HTTP client of ``create_app(redis, ...)``."""
    app = create_app(redis, queues=queues, token=token, max_body=max_body)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web")
