"""The operator's questions, answered by the dashboard in headless Chromium: where is job
X and what happened to it (its attempts after its first worker was SIGKILLed), which
workers are alive, what waits in each state, why a job failed, and what the page says
while Redis is down; and that it stays usable on a phone, from the keyboard, in
contrast."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import JobContext, Queue, Reaper, Worker
from leaseq.testing import RedisServer, WebProcess, WorkerProcess

from ..conftest import wait_for
from .conftest import ARTIFACTS, SLOW

pytestmark = [pytest.mark.real_redis, pytest.mark.browser]


async def test_a_job_whose_worker_was_killed_shows_both_attempts_and_is_cancelled_from_its_view(
    start_web: Any, r: aioredis.Redis, redis_server: RedisServer, page: Any, tmp_path: Path,
):
    from playwright.async_api import expect

    q = Queue(r, "crash", lease_timeout=1.0)
    job_id = await q.enqueue("work", {"s": 60, "v": "never"}, job_id="order-17")
    # Heartbeats every 0.2 s: a killed worker's entry expires a second after its last.
    proc = WorkerProcess(redis_server.url, "tests.web.workers:quick_presence", "crash",
                         lease_timeout=1.0, record=False, log_path=tmp_path / "worker.log")
    web = start_web()
    try:
        proc.start()
        await page.goto(web.url + "/#queue=crash")
        await anyio.to_thread.run_sync(proc.wait_ready)
        worker_row = page.locator(f'#workers tr[data-pid="{proc.pid}"]')
        await expect(worker_row).to_contain_text(f"{socket.gethostname()}:{proc.pid}",
                                                 timeout=SLOW)
        await expect(page.locator(f'#leases tr[data-job="{job_id}"]')).to_have_count(
            1, timeout=SLOW)
        first_owner = f"{socket.gethostname()}:{proc.pid}"
        proc.kill()  # SIGKILL mid-job: it cannot release the lease or say goodbye
    finally:
        proc.kill()
    await expect(worker_row).to_have_count(0, timeout=SLOW)

    async def lease_gone() -> bool:
        return not await r.exists(q.keys.lease(job_id))

    await wait_for(lease_gone, timeout=SLOW / 1000)
    assert (await Reaper(q).sweep_report()).requeued == 1

    started = anyio.Event()

    async def work(ctx: JobContext, payload: Any) -> None:
        started.set()
        await anyio.sleep(120)  # until the cancel stops it

    worker = Worker(q, {"work": work}, reaper=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        with anyio.fail_after(SLOW / 1000):
            await started.wait()
        # Found by its exact id from the search box.
        await page.fill("#search-text", job_id)
        await page.press("#search-text", "Enter")
        await expect(page.locator("#job-id")).to_have_text(job_id, timeout=SLOW)
        first = page.locator('#job-attempts tr[data-attempt="1"]')
        await expect(first).to_contain_text("lease expired", timeout=SLOW)
        await expect(first).to_contain_text(first_owner)
        await expect(first).to_contain_text("→ requeued")
        second = page.locator('#job-attempts tr[data-attempt="2"]')
        await expect(second).to_contain_text("running", timeout=SLOW)
        await expect(second).to_contain_text(f"{socket.gethostname()}:")
        await expect(page.locator("#job-state")).to_have_text("in_progress")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "job-attempts.png"), full_page=True)

        # Cancelled from the job's view: asked first, then its worker stops it.
        page.once("dialog", lambda dialog: dialog.accept())
        await page.locator("#job-actions button.cancel").click()
        await expect(page.locator("#toast")).to_contain_text(f"Cancel of {job_id}: delivered",
                                                             timeout=SLOW)
        await expect(page.locator("#job-state")).to_have_text("cancelled", timeout=SLOW)
        await expect(second).to_contain_text("cancelled", timeout=SLOW)
        await expect(page.locator("#job-actions button")).to_have_count(0)
        worker.stop()
    info = await q.job(job_id)
    assert info is not None
    assert (info.state, info.attempts, info.lease_expiries) == ("cancelled", 2, 1)


async def test_while_redis_is_down_a_banner_says_why_and_since_when(page: Any, tmp_path: Path):
    from playwright.async_api import expect

    # A server of its own: stopping the session's would break the other tests.
    with RedisServer() as server:
        client = aioredis.Redis.from_url(server.url)
        try:
            await Queue(client, "mail").enqueue("send", None)
            web = WebProcess(server.url, "--queue", "mail", log_path=tmp_path / "web.log")
            web.start()
            await anyio.to_thread.run_sync(web.wait_ready)
            try:
                await page.goto(web.url + "/#queue=mail")
                await expect(page.locator("#status")).to_have_text("live", timeout=SLOW)
                banner = page.locator("#banner")
                await expect(banner).to_be_hidden()

                server.kill()
                await expect(banner).to_be_visible(timeout=SLOW)
                reason = page.locator("#banner-reason")
                await expect(reason).to_contain_text("Redis error", timeout=SLOW)
                await expect(reason).to_contain_text("onnect")  # "Error 111 connecting ..."
                await expect(page.locator("#banner-since")).to_contain_text("last answered at")
                # The API answers the same reason as a 503.
                reply = await page.request.get(web.url + "/queues/mail")
                assert reply.status == 503 and "Redis error" in (await reply.json())["detail"]
                await page.screenshot(path=str(ARTIFACTS / "redis-down.png"))

                await anyio.to_thread.run_sync(server.start)
                await expect(banner).to_be_hidden(timeout=SLOW)
                await expect(page.locator("#status")).to_have_text("live", timeout=SLOW)
            finally:
                assert web.terminate(timeout=30) == 0, web.log_path.read_text()
        finally:
            await client.aclose()


def _check(n: int) -> None:
    if n >= 0:
        shelves = "\n".join(f"shelf {i}: -1" for i in range(12))
        raise ValueError(f"stock went negative\n{shelves}")


async def _count_stock(ctx: JobContext, payload: Any) -> None:
    _check(payload)


async def test_jobs_are_listed_by_state_found_by_prefix_and_their_errors_readable(
    start_web: Any, r: aioredis.Redis, page: Any,
):
    from playwright.async_api import expect

    q = Queue(r, "inventory", lease_timeout=30.0)
    done_ids = [f"inv-{n:03d}" for n in range(60)]
    await q.enqueue_many("count", range(60), job_ids=done_ids)
    await q.ack_many([(lease, None) for lease in await q.claim_many(60)])
    # A run that fails in the handler, through a real worker: its error holds the
    # handler's frames and one of leaseq's (the job runner's).
    await q.enqueue("stock", 3, job_id="boom-1", max_attempts=1)
    await Worker(q, {"stock": _count_stock}, reaper=False).run(burst=True,
                                                                handle_signals=False)
    await q.enqueue_many("count", range(5), job_ids=[f"inv-05{c}" for c in "abcde"])
    await q.enqueue("pick", None, job_id="pick-1")

    web = start_web()
    await page.goto(web.url + "/#queue=inventory")
    # The chart: labelled axes, a legend, the acks and the failure of this minute.
    chart = page.locator("#chart")
    await expect(chart.locator('[data-legend="acked"]')).to_contain_text("acks (60)",
                                                                       timeout=SLOW)
    await expect(chart.locator('[data-legend="failed"]')).to_contain_text("failures (1)",
                                                                        timeout=SLOW)
    await expect(chart.locator('[data-legend="expired"]')).to_contain_text("lease expiries (0)")
    await expect(chart.locator(".axis-label")).to_have_text(
        ["jobs/min", "minutes ago (0: the current minute)"])

    # Done jobs, page by page.
    rows = page.locator("#jobs tbody tr[data-job]")
    await page.locator('#state-tabs button[data-state="done"]').click()
    await expect(rows).to_have_count(50, timeout=SLOW)
    await page.locator("#jobs-next").click()
    await expect(rows).to_have_count(10, timeout=SLOW)
    await expect(page.locator("#jobs-page")).to_have_text("page 2")
    await expect(page.locator("#jobs-next")).to_be_hidden()
    # Waiting jobs of one task.
    await page.locator('#state-tabs button[data-state="todo"]').click()
    await expect(rows).to_have_count(6, timeout=SLOW)
    await page.fill("#task-filter", "pick")
    await page.press("#task-filter", "Enter")
    await expect(rows).to_have_count(1, timeout=SLOW)
    await expect(rows).to_contain_text("pick-1")

    # No job is called inv-05: the search finds those whose id starts so.
    await page.fill("#search-text", "inv-05")
    await page.press("#search-text", "Enter")
    found = page.locator("#found-table tbody tr[data-job]")
    await expect(found).to_have_count(15, timeout=SLOW)
    await expect(page.locator('#found-table tr[data-job="inv-05a"]')).to_contain_text("todo")
    await expect(page.locator('#found-table tr[data-job="inv-050"]')).to_contain_text("done")
    await page.locator('#found-table tr[data-job="inv-05a"] button.link').click()
    await expect(page.locator("#job-state")).to_have_text("todo", timeout=SLOW)

    # The dead job's error: leaseq's frame left out, the long text folded.
    await page.locator('#dead tr[data-job="boom-1"] button.link').click()
    await expect(page.locator("#job-state")).to_have_text("dead", timeout=SLOW)
    error = page.locator("#job-error")
    await expect(error).to_contain_text("1 leaseq frame hidden")
    await expect(error.locator("summary")).to_contain_text("ValueError: stock went negative")
    shown = error.locator("pre")
    await expect(shown).to_be_hidden()
    await error.locator("summary").click()
    await expect(shown).to_contain_text("in _check")
    await expect(shown).to_contain_text("in _count_stock")
    assert "leaseq/runtime" not in await shown.inner_text()
    await expect(page.locator('#job-attempts tr[data-attempt="1"]')).to_contain_text("failed")
    await expect(page.locator("#job-actions button")).to_have_text(["Requeue", "Purge"])
    await page.screenshot(path=str(ARTIFACTS / "job-error.png"), full_page=True)


# The WCAG contrast of every piece of visible text against the background behind it
# (4.5:1; 3:1 for large text), composited over the page's own background.
CONTRAST = """() => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (node) => {
    const layers = [];
    for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
      const [r, g, b, a = 1] = parse(getComputedStyle(n).backgroundColor);
      if (a > 0) layers.push([r, g, b, a]);
      if (a >= 1) break;
    }
    let out = [255, 255, 255];
    for (const [r, g, b, a] of layers.reverse()) {
      out = [r * a + out[0] * (1 - a), g * a + out[1] * (1 - a), b * a + out[2] * (1 - a)];
    }
    return out;
  };
  const bad = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const node = t.parentElement;
    if (!t.textContent.trim() || !node.getClientRects().length) continue;
    const style = getComputedStyle(node);
    if (style.visibility === "hidden" || node.closest("[hidden]")) continue;
    const isSvg = node instanceof SVGElement;
    const fg = parse(isSvg ? style.fill : style.color);
    const bg = background(isSvg ? node.closest("svg") : node);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      bad.push(`${t.textContent.trim().slice(0, 40)}: ${ratio.toFixed(2)}`);
    }
  }
  return bad;
}"""


async def test_the_page_draws_at_once_and_is_usable_narrow_by_keyboard_and_in_contrast(
    start_web: Any, r: aioredis.Redis, page: Any,
):
    from playwright.async_api import expect

    q = Queue(r, "phone", lease_timeout=60.0, owner="a-rather-long-host-name.example:4242")
    await q.enqueue("t", None)
    lease = await q.claim()
    assert lease is not None
    await q.bury(lease, "payload is not an order, and this reason is long enough to wrap")
    await q.enqueue("t", None, job_id="held-" + "x" * 60)
    assert await q.claim() is not None
    await q.enqueue_many("t", range(2))
    web = start_web()

    # Before the first snapshot arrives (the stream held back), the chart's axes are there.
    async def hold(route: Any) -> None:
        return None  # never answered: the page waits for its first snapshot

    await page.route("**/live*", hold)
    await page.goto(web.url + "/#queue=phone")
    await expect(page.locator("#chart .axis-label")).to_have_count(2)
    await expect(page.locator("#chart [data-series]")).to_have_count(3)
    await expect(page.locator("#status")).to_have_text("connecting…")
    await page.unroute("**/live*")

    await page.set_viewport_size({"width": 420, "height": 900})
    await page.goto(web.url + "/#queue=phone&state=dead")
    await expect(page.locator("#status")).to_have_text("live", timeout=SLOW)
    await expect(page.locator("#jobs tbody tr[data-job]")).to_have_count(1, timeout=SLOW)
    await expect(page.locator("#leases tbody tr[data-job]")).to_have_count(1, timeout=SLOW)
    # Nothing makes the page itself scroll sideways; wide tables scroll in their box.
    widths = await page.evaluate("""() => ({
        page: document.documentElement.scrollWidth, view: window.innerWidth,
        box: document.querySelector('#leases').parentElement.clientWidth,
        table: document.querySelector('#leases').scrollWidth,
        overflow: getComputedStyle(document.querySelector('#leases').parentElement).overflowX})""")
    assert widths["page"] <= widths["view"], widths
    assert widths["overflow"] == "auto" and widths["table"] > widths["box"], widths
    await page.screenshot(path=str(ARTIFACTS / "dashboard-420.png"), full_page=True)

    # From the keyboard: the search box, then its button, with a visible focus ring.
    await page.focus("#search-text")
    await page.keyboard.type("held-")
    await page.keyboard.press("Tab")
    focused = await page.evaluate("""() => ({tag: document.activeElement.tagName,
        text: document.activeElement.textContent,
        outline: getComputedStyle(document.activeElement).outlineStyle,
        width: parseFloat(getComputedStyle(document.activeElement).outlineWidth)})""")
    assert focused == {"tag": "BUTTON", "text": "Find job", "outline": "solid",
                       "width": 3.0}, focused
    await page.keyboard.press("Enter")
    match = page.locator("#found-table tbody tr[data-job] button.link")
    await expect(match).to_have_count(1, timeout=SLOW)
    await match.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#job-state")).to_have_text("in_progress", timeout=SLOW)
    await expect(page.locator("#job-heading")).to_be_focused()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    for width in (420, 1400):
        await page.set_viewport_size({"width": width, "height": 900})
        assert await page.evaluate(CONTRAST) == [], width
