"""A queue's lease length, attempts and retention are stored with the queue: every
process applies the same ones, whoever runs the reaper."""

from __future__ import annotations

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from leaseq import Queue, Reaper

WEEK = 7 * 86_400.0


async def test_a_process_without_settings_applies_the_stored_ones(redis: aioredis.Redis):
    """The application sets a week's retention and no count limit; a reaper sidecar's
    Queue(redis, name) applies those instead of its built-in one day / 100,000."""
    app = Queue(redis, "reports", done_ttl=WEEK, done_max=None, lease_timeout=90,
                max_attempts=3)
    await app.prepare()
    sidecar = Queue(redis, "reports")
    await sidecar.prepare()
    assert (sidecar.done_ttl, sidecar.done_max, sidecar.lease_timeout,
            sidecar.max_attempts) == (WEEK, None, 90.0, 3)


async def test_nothing_stored_means_the_built_in_defaults(redis: aioredis.Redis):
    q = Queue(redis, "fresh")
    await q.prepare()
    assert (q.done_ttl, q.done_max, q.lease_timeout, q.max_attempts) == (
        86_400.0, 100_000, 30.0, 5)
    assert await redis.hgetall(q.keys.settings) == {}


async def test_the_reaper_trims_by_the_stored_retention(redis: aioredis.Redis):
    """A reaper that was given no retention keeps the three newest done jobs the
    application asked for, not its default 100,000."""
    app = Queue(redis, "trim", done_max=3)
    ids = await app.enqueue_many("t", list(range(5)))
    for _ in ids:
        lease = await app.claim()
        assert lease is not None
        await app.ack(lease)
    sidecar = Queue(redis, "trim")
    report = await Reaper(sidecar).sweep_report()
    assert report.trimmed == 2
    assert (await app.stats()).done == 3


async def test_a_long_running_reaper_follows_a_later_change(redis: aioredis.Redis):
    sidecar = Queue(redis, "later")
    reaper = Reaper(sidecar)
    await reaper.sweep()
    assert sidecar.done_max == 100_000
    await Queue(redis, "later", done_max=7).prepare()
    await reaper.sweep()
    assert sidecar.done_max == 7


async def test_an_explicit_setting_that_differs_from_the_stored_one_is_said(
    redis: aioredis.Redis,
):
    """Two processes disagree about the queue: the later explicit one is stored, with a
    warning naming the setting and both values."""
    await Queue(redis, "argue", lease_timeout=10).prepare()
    with capture_logs() as logs:
        q = Queue(redis, "argue", lease_timeout=20)
        await q.prepare()
    changed = [e for e in logs if e["event"] == "queue_settings_changed"]
    assert [(e["setting"], e["stored"], e["now"]) for e in changed] == [
        ("lease_ms", 10_000, 20_000)]
    other = Queue(redis, "argue")
    await other.prepare()
    assert other.lease_timeout == 20.0


async def test_the_same_explicit_setting_again_is_not_a_change(redis: aioredis.Redis):
    await Queue(redis, "same", done_ttl=60).prepare()
    with capture_logs() as logs:
        await Queue(redis, "same", done_ttl=60).prepare()
    assert not [e for e in logs if e["event"] == "queue_settings_changed"]


async def test_the_reaper_sidecar_applies_what_the_application_stored(redis_server):
    """`leaseq reaper -q NAME` started with no retention flags keeps what the application
    set (done_max=2), not the CLI's old built-in 100,000; a worker started with
    --done-max stores its value, and says it replaced another."""
    import signal
    import sys

    import anyio

    from leaseq.testing import ReaperProcess

    from .conftest import wait_for

    client = aioredis.Redis.from_url(redis_server.url)
    try:
        app = Queue(client, "sidecar", done_max=2)
        for _ in await app.enqueue_many("t", list(range(5))):
            lease = await app.claim()
            assert lease is not None
            await app.ack(lease)
        reaper = ReaperProcess(redis_server.url, "sidecar", interval=0.05)
        reaper.start()
        try:
            async def trimmed() -> bool:
                return (await app.stats()).done == 2
            await wait_for(trimmed, timeout=30)
        finally:
            reaper.send(signal.SIGTERM)
            reaper.wait(timeout=30)
        run = await anyio.run_process(
            [sys.executable, "-m", "leaseq", "--redis", redis_server.url, "--log-format",
             "json", "worker", "tests.helpers.tasks:HANDLERS", "-q", "sidecar",
             "--done-max", "1", "--burst", "--no-reaper"], check=False)
        stderr = run.stderr.decode()
        assert run.returncode == 0, stderr
        assert '"event": "queue_settings_changed"' in stderr
        assert await client.hget(app.keys.settings, "done_max") == b"1"
    finally:
        await client.aclose()
