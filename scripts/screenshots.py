#!/usr/bin/env python
"""Regenerate the dashboard's screenshots in docs/img/ (referenced from docs/web.md).

Run from the repository, after ``scripts/setup`` (it needs the dev extra, redis-server
and Chromium)::

    .venv/bin/python scripts/screenshots.py [--out docs/img] [--chromium /usr/bin/chromium]

It starts a private redis-server and ``leaseq web`` on free ports, makes a queue go
through what an operator looks at (a worker process SIGKILLed mid-job and its job's
second attempt, a handler that fails, dead and waiting jobs), drives headless Chromium
with Playwright, writes the PNGs and stops everything it started. Everything on the
pages is real but the chart's history: a fresh queue has only its current minute, so
the finish times of the acked jobs are spread over the last 15 minutes and per-minute
failure counts written for those minutes, as 15 minutes of work would have left them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis
import structlog

from leaseq import JobContext, Queue, Reaper, Worker
from leaseq.protocol.keys import QueueKeys
from leaseq.protocol.taskstats import KEEP_S, SEP
from leaseq.testing import RedisServer, WebProcess, WorkerProcess

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "orders"
WIDE = {"width": 1400, "height": 1000}
NARROW = {"width": 420, "height": 900}


def _reserve(order: int) -> None:
    raise LookupError(f"no stock left for order {order}: warehouse 'north' is empty")


async def charge(ctx: JobContext, payload: Any) -> None:
    """A handler that fails (its error, with the frames leading to it, is what the job
    view shows)."""
    _reserve(int(payload["order"]))


async def pack(ctx: JobContext, payload: Any) -> None:
    """A long job that reports its progress."""
    await ctx.progress(0.4, "packing item 4 of 10")
    await anyio.sleep(3600)


HANDLERS = {"pack": pack, "charge": charge}
"""What the worker processes run (``leaseq worker scripts.screenshots:HANDLERS``)."""


async def _wait(condition: Any, timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not await condition():  # noqa: ASYNC110 - Redis state offers no event
            await anyio.sleep(0.02)


async def _history(r: aioredis.Redis, now_ms: int) -> None:
    """Spread the acked jobs' finish times over the last 15 minutes, and write the
    failure counts of those minutes, as a quarter of an hour of work would have."""
    k = QueueKeys(QUEUE)
    done = [m.decode() for m in await r.zrange(k.done_at, 0, -1)]
    moved: dict[str, float] = {}
    for i, job_id in enumerate(done):
        # More work a few minutes ago than now: a wave, not noise.
        minute = int(14 * (0.5 + 0.5 * math.sin(i / 9)) ** 2)
        moved[job_id] = now_ms - minute * 60_000 - (i * 7_919) % 55_000
    async with r.pipeline(transaction=False) as pipe:
        pipe.zadd(k.done_at, moved)
        for job_id, at in moved.items():
            pipe.hset(k.job(job_id), "finished_at", int(at))
        for ago, failed in ((12, 2), (9, 1), (8, 4), (5, 1), (3, 2)):
            key = k.taskstats(now_ms // 60_000 - ago)
            pipe.hincrby(key, f"charge{SEP}failed", failed)
            pipe.expire(key, KEEP_S)
        await pipe.execute()


async def _fill(server: RedisServer, r: aioredis.Redis, logs: Path) -> tuple[str, str]:
    """The queue as the pages show it; returns the ids of the job whose first worker was
    killed and of the job that failed."""
    # A worker process claims a long job and is SIGKILLed mid-job (short leases, so its
    # lease soon expires).
    crashed = await Queue(r, QUEUE, lease_timeout=1.0).enqueue(
        "pack", {"order": 1042, "items": 10}, job_id="order-1042")
    proc = WorkerProcess(server.url, "scripts.screenshots:HANDLERS", QUEUE, record=False,
                         concurrency=1, lease_timeout=1.0, reaper=False,
                         log_path=logs / "worker.log")
    try:
        proc.start()

        async def claimed() -> bool:
            info = await Queue(r, QUEUE).job(crashed)
            return info is not None and info.progress is not None

        await _wait(claimed)
    finally:
        proc.kill()

    async def expired() -> bool:
        return not await r.exists(QueueKeys(QUEUE).lease(crashed))

    await _wait(expired)
    q = Queue(r, QUEUE, lease_timeout=30.0, max_attempts=3)
    # Work done (its history is spread below).
    ids = await q.enqueue_many("ship", [{"order": 2000 + i} for i in range(180)],
                               job_ids=[f"order-{2000 + i}" for i in range(180)])
    for _ in range(0, len(ids), 60):
        await q.ack_many([(lease, {"shipped": True}) for lease in await q.claim_many(60)])
    # A handler that fails, run by a real worker: its error holds real frames. (Alone in
    # todos: a worker buries the jobs of tasks it has no handler for.)
    failed = await q.enqueue("charge", {"order": 1045}, job_id="order-1045", max_attempts=1)
    await Worker(q, {"charge": charge}, reaper=False).run(burst=True, handle_signals=False)
    await Reaper(q).sweep()  # the killed worker's lease: attempt 1 expired, requeued
    await _history(r, int((await r.time())[0]) * 1000)
    return crashed, failed


async def _waiting(r: aioredis.Redis) -> None:
    """Jobs waiting: todos, a delayed one, one enqueued after another."""
    q = Queue(r, QUEUE)
    await q.enqueue_many("ship", [{"order": 3000 + i} for i in range(24)],
                         job_ids=[f"order-{3000 + i}" for i in range(24)])
    await q.enqueue("ship", {"order": 4000}, job_id="order-4000", delay=600)
    await q.enqueue("notify", {"order": 3001}, job_id="mail-3001", after=["order-3001"])


async def _shoot(page: Any, url: str, out: Path, crashed: str, failed: str,
                 server: RedisServer) -> list[Path]:
    from playwright.async_api import expect

    wait = 20_000
    written = []

    async def save(name: str, target: Any = None) -> None:
        # The job view takes the focus when it opens; its ring would be in the picture.
        await page.evaluate("document.activeElement && document.activeElement.blur()")
        path = out / name
        await (target or page).screenshot(path=str(path), **({} if target else {
            "full_page": True}))
        written.append(path)

    await page.goto(f"{url}/#queue={QUEUE}")
    await expect(page.locator("#status")).to_have_text("live", timeout=wait)
    await expect(page.locator(f'#leases tr[data-job="{crashed}"]')).to_contain_text(
        "40%", timeout=wait)
    await expect(page.locator("#workers tbody tr[data-worker]")).to_have_count(1,
                                                                            timeout=wait)
    await save("dashboard.png")

    await page.fill("#search-text", crashed)
    await page.press("#search-text", "Enter")
    await expect(page.locator('#job-attempts tr[data-attempt="2"]')).to_contain_text(
        "running", timeout=wait)
    await save("job.png", page.locator("#job"))

    await page.goto(f"{url}/#queue={QUEUE}&job={failed}")
    await expect(page.locator("#job-error")).to_contain_text("LookupError", timeout=wait)
    await save("job-error.png", page.locator("#job"))

    await page.goto(f"{url}/#queue={QUEUE}&search=order-10")
    await expect(page.locator("#found-table tbody tr[data-job]")).to_have_count(
        2, timeout=wait)
    await save("search.png", page.locator("#found"))

    await page.goto(f"{url}/#queue={QUEUE}&state=todo")
    await expect(page.locator("#jobs tbody tr[data-job]")).to_have_count(24, timeout=wait)
    await save("jobs.png", page.locator("#jobs-panel"))

    await page.set_viewport_size(NARROW)
    await page.goto(f"{url}/#queue={QUEUE}")
    await expect(page.locator("#status")).to_have_text("live", timeout=wait)
    await save("phone.png")

    await page.set_viewport_size(WIDE)
    await page.goto(f"{url}/#queue={QUEUE}")
    await expect(page.locator("#status")).to_have_text("live", timeout=wait)
    server.kill()
    await expect(page.locator("#banner-reason")).to_contain_text("Redis error", timeout=wait)
    await page.wait_for_timeout(1500)  # so the banner's "ago" reads as time passing
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(out / "redis-down.png"),
                          clip={"x": 0, "y": 0, "width": WIDE["width"], "height": 420})
    written.append(out / "redis-down.png")
    return written


async def main(out: Path, chromium: str) -> list[Path]:
    """Make the queue, serve it, and write the screenshots to ``out``."""
    from playwright.async_api import async_playwright

    logs = Path(tempfile.mkdtemp(prefix="leaseq-screenshots-"))
    with RedisServer() as server:
        r = aioredis.Redis.from_url(server.url)
        web = WebProcess(server.url, "--queue", QUEUE, log_path=logs / "web.log")
        try:
            crashed, failed = await _fill(server, r, logs)
            # The second attempt of the killed worker's job, running here.
            running = Worker(Queue(r, QUEUE), {"pack": pack}, reaper=False, concurrency=1)
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: running.run(handle_signals=False))

                async def second_attempt() -> bool:
                    info = await Queue(r, QUEUE).job(crashed)
                    return info is not None and info.attempts == 2 and info.progress is not None

                await _wait(second_attempt)
                await _waiting(r)  # the running worker is full: they stay waiting
                web.start()
                await anyio.to_thread.run_sync(web.wait_ready)
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(
                        executable_path=chromium,
                        args=["--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-background-networking", "--no-first-run"])
                    try:
                        page = await browser.new_page(viewport=WIDE)
                        written = await _shoot(page, web.url, out, crashed, failed, server)
                    finally:
                        await browser.close()
                tg.cancel_scope.cancel()
        finally:
            web.terminate(timeout=10)
            await r.aclose()
            shutil.rmtree(logs, ignore_errors=True)
    return written


def cli() -> None:
    """Parse the command line and run :func:`main`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img",
                        help="Where the PNGs go (default: docs/img).")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium",
                        help="The Chromium to drive (default: chromium on PATH).")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    # Worker processes import this file as scripts.screenshots, from the repository.
    os.chdir(ROOT)
    # The workers here would log every outage of the Redis that the last picture stops.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    started = time.monotonic()
    written = asyncio.run(main(args.out, args.chromium))
    for path in written:
        sys.stdout.write(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}\n")
    sys.stdout.write(f"{len(written)} screenshots in {time.monotonic() - started:.1f} s\n")


if __name__ == "__main__":
    sys.exit(cli())
