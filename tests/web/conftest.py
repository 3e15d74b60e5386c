"""Fixtures for the dashboard and HTTP API: ``leaseq web`` as a subprocess, an in-process
client of the app on each Redis lane, and a page of headless Chromium."""

from __future__ import annotations

import os
import shutil
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

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = os.path.exists(CHROMIUM)
# Without the background-networking flags Chromium keeps trying to reach Google's hosts,
# which a machine without network refuses, many at a time.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SLOW = 20_000
"""ms: a bound for the page to catch up, never a measure of speed."""


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


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    """A page of headless Chromium (1280 x 1000), its browser closed afterwards."""
    if not HAVE_CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (Debian: apt-get install chromium)")
        pytest.skip("Chromium not installed (Debian: apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield await browser.new_page(viewport={"width": 1280, "height": 1000})
        finally:
            await browser.close()


@pytest.fixture
async def r(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's real redis-server, flushed first."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()
