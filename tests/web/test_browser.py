"""The dashboard in headless Chromium (Debian's ``chromium``, driven by Playwright): the
counts follow the queue live, an operator requeues a dead job with a click, pauses the
queue, and cancels a running job whose progress the page shows."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import Every, JobContext, Queue, Reaper, Scheduler, Worker
from leaseq.protocol import scheduling

from ..test_protocol import expire_lease
from .conftest import ARTIFACTS, SLOW

pytestmark = [pytest.mark.real_redis, pytest.mark.browser]


async def test_the_page_follows_the_queue_and_requeues_a_dead_job(
    start_web: Any, r: aioredis.Redis, page: Any,
):
    from playwright.async_api import expect

    q = Queue(r, "shop", lease_timeout=60.0, owner="worker-7:1234")
    await q.enqueue_many("ship", range(5))
    web = start_web()
    await page.goto(web.url + "/")
    todos = page.locator('#queues tr[data-queue="shop"] [data-col="todos"]')
    await expect(todos).to_have_text("5", timeout=SLOW)
    await expect(page.locator("#status")).to_have_text("live")

    # New jobs show up without a reload...
    await q.enqueue_many("ship", range(3))
    await expect(todos).to_have_text("8", timeout=SLOW)
    # ...and so does draining them.
    leases = await q.claim_many(8)
    await q.ack_many([(lease, None) for lease in leases[:5]])
    await expect(page.locator('#detail [data-count="done"]')).to_have_text("5", timeout=SLOW)
    await expect(page.locator("#leases tbody tr[data-job]")).to_have_count(3, timeout=SLOW)
    await expect(page.locator("#leases tbody")).to_contain_text("worker-7:1234")

    # One job dies of a bad payload, one of a worker that vanished (its lease expired).
    await q.bury(leases[6], "payload is not an order")
    await expire_lease(r, q, leases[7].job_id)
    await Reaper(q).sweep()
    await expect(page.locator("#events tbody")).to_contain_text(leases[7].job_id,
                                                               timeout=SLOW)
    row = page.locator(f'#dead tr[data-job="{leases[6].job_id}"]')
    await expect(row).to_contain_text("payload is not an order", timeout=SLOW)
    await expect(page.locator("#leases tbody tr[data-job]")).to_have_count(1, timeout=SLOW)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # Purge asks first; saying no keeps the job.
    page.once("dialog", lambda dialog: dialog.dismiss())
    await row.locator("button.purge").click()
    await page.wait_for_timeout(300)
    assert (await q.job(leases[6].job_id)) is not None

    page.once("dialog", lambda dialog: dialog.accept())
    await row.locator("button.requeue").click()
    await expect(page.locator("#toast")).to_contain_text("Requeued: 1 job(s)", timeout=SLOW)
    await expect(row).to_have_count(0, timeout=SLOW)
    info = await q.job(leases[6].job_id)
    assert info is not None and info.state == "todo"
    await expect(page.locator('#detail [data-count="todos"]')).to_have_text("2", timeout=SLOW)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-after-requeue.png"), full_page=True)

    # A schedule some scheduler runs shows up with its last job.
    schedule = Every(3600, "report", name="hourly-report")
    scheduler = Scheduler(q, [schedule])
    await scheduler.tick_once()  # declares it, and starts it at the next tick
    await scheduling.fire(q, schedule, await scheduling.last_tick(q, schedule), "run",
                          schedule.next_tick(await scheduling.last_tick(q, schedule) or 0))
    sched_row = page.locator('#schedules tr[data-schedule="hourly-report"]')
    await expect(sched_row).to_contain_text("every 3600s", timeout=SLOW)
    await expect(sched_row).to_contain_text("hourly-report@", timeout=SLOW)
    await expect(sched_row).to_contain_text("todo")


async def test_pause_asks_first_then_pause_and_resume_change_the_shown_state(
    start_web: Any, r: aioredis.Redis, page: Any,
):
    from playwright.async_api import expect

    q = Queue(r, "held")
    await q.configure(max_in_flight=4)
    await q.enqueue_many("t", range(3))
    web = start_web()
    await page.goto(web.url + "/#queue=held")
    toggle = page.locator("#pause-toggle")
    tag = page.locator('#queues tr[data-queue="held"] .paused-tag')
    await expect(toggle).to_have_text("Pause", timeout=SLOW)
    await expect(page.locator("#limits")).to_contain_text("max in flight 4 (0 holding)")
    await expect(tag).to_have_count(0)

    # Pausing asks first; saying no leaves the queue running.
    page.once("dialog", lambda dialog: dialog.dismiss())
    await toggle.click()
    await page.wait_for_timeout(300)
    assert not await q.is_paused()

    page.once("dialog", lambda dialog: dialog.accept())
    await toggle.click()
    await expect(page.locator("#toast")).to_contain_text("Paused queue held", timeout=SLOW)
    await expect(toggle).to_have_text("Resume", timeout=SLOW)
    await expect(page.locator("#detail-paused")).to_be_visible()
    await expect(tag).to_have_text("paused")
    await expect(page.locator('#detail [data-count="waiting_on_limits"]')).to_have_text(
        "3", timeout=SLOW)
    await expect(page.locator("#limits")).to_contain_text("3 jobs held back by the pause")
    assert await q.is_paused()
    await page.screenshot(path=str(ARTIFACTS / "dashboard-paused.png"), full_page=True)

    # Resuming asks nothing, and the button works from the keyboard.
    await toggle.focus()
    await page.keyboard.press("Enter")
    await expect(toggle).to_have_text("Pause", timeout=SLOW)
    await expect(page.locator("#detail-paused")).to_be_hidden()
    await expect(tag).to_have_count(0)
    assert not await q.is_paused()


async def test_a_running_jobs_progress_shows_and_it_is_cancelled_from_the_page(
    start_web: Any, r: aioredis.Redis, page: Any,
):
    from playwright.async_api import expect

    q = Queue(r, "copies", lease_timeout=60.0)
    started = anyio.Event()

    async def copy(ctx: JobContext, payload: Any) -> None:
        await ctx.progress(0.4, "copying part 2 of 5")
        started.set()
        await anyio.sleep(120)  # until the cancel stops it

    job_id = await q.enqueue("copy", None)
    blocked = await q.enqueue("copy", None, after=[job_id])
    worker = Worker(q, {"copy": copy}, reaper=False)
    web = start_web()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        with anyio.fail_after(SLOW / 1000):
            await started.wait()
        await page.goto(web.url + "/#queue=copies")
        row = page.locator(f'#leases tr[data-job="{job_id}"]')
        await expect(row.locator("td.progress")).to_have_text("40% copying part 2 of 5",
                                                              timeout=SLOW)
        await expect(page.locator('#detail [data-count="blocked"]')).to_have_text("1")

        # Cancel asks first; saying no leaves the job running.
        page.once("dialog", lambda dialog: dialog.dismiss())
        await row.locator("button.cancel").click()
        await page.wait_for_timeout(300)
        assert (await q.job(job_id)).state == "in_progress"  # type: ignore[union-attr]

        page.once("dialog", lambda dialog: dialog.accept())
        await row.locator("button.cancel").click()
        await expect(page.locator("#toast")).to_contain_text(f"Cancel of {job_id}: delivered",
                                                             timeout=SLOW)
        await expect(row).to_have_count(0, timeout=SLOW)
        await expect(page.locator('#detail [data-count="cancelled"]')).to_have_text(
            "1", timeout=SLOW)
        await page.screenshot(path=str(ARTIFACTS / "dashboard-cancelled.png"), full_page=True)
        worker.stop()
    info = await q.job(job_id)
    assert info is not None
    assert (info.state, info.cancel_reason) == ("cancelled", "cancelled from the dashboard")
    await Reaper(q).sweep_report()  # ends the job after it, if no claim did yet
    after = await q.job(blocked)
    assert after is not None and after.dead_reason == f"dependency {job_id} ended cancelled"
