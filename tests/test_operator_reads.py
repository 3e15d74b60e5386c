"""Operators list jobs page by page and purge what waits, without touching what runs."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import InvalidInput, Queue


async def _all_pages(q: Queue, state, **kw) -> list[str]:  # type: ignore[no-untyped-def]
    ids: list[str] = []
    cursor = None
    for _ in range(1000):
        page, cursor = await q.list_jobs(state, cursor=cursor, **kw)
        ids += [info.job_id for info in page]
        if cursor is None:
            return ids
    raise AssertionError("the pages never ended")


async def test_every_state_is_listed_completely_in_bounded_pages(redis: aioredis.Redis):
    q = Queue(redis, "pages")
    waiting = await q.enqueue_many("a", list(range(25)))
    later = await q.enqueue_many("b", list(range(7)), delay=60)
    leases = await q.claim_many(10)
    for lease in leases[:4]:
        await q.ack(lease)
    running = {lease.job_id for lease in leases[4:]}
    for state, expected in (
        ("todo", set(waiting) - {lease.job_id for lease in leases}),
        ("in_progress", running),
        ("done", {lease.job_id for lease in leases[:4]}),
        ("delayed", set(later)),
        ("dead", set()),
    ):
        listed = await _all_pages(q, state, limit=3)
        assert set(listed) == expected, state


async def test_a_page_of_a_big_set_costs_about_its_limit(redis: aioredis.Redis):
    """SSCAN's COUNT is a hint, so a page of a set may hold a few more than the limit,
    but never anything like the whole set."""
    q = Queue(redis, "big")
    await q.enqueue_many("t", list(range(10_000)))
    page, cursor = await q.list_jobs("todo", limit=5)
    assert len(page) < 50 and cursor is not None
    assert all(info.state == "todo" for info in page)


async def test_listing_by_task_and_in_order(redis: aioredis.Redis):
    q = Queue(redis, "order")
    soon = await q.enqueue("b", 1, delay=10)
    late = await q.enqueue("b", 2, delay=100)
    other = await q.enqueue("c", 3, delay=50)
    assert await _all_pages(q, "delayed", limit=2) == [soon, other, late]
    assert await _all_pages(q, "delayed", task="b", limit=2) == [soon, late]


async def test_bad_listing_arguments_are_refused(redis: aioredis.Redis):
    q = Queue(redis, "bad")
    with pytest.raises(InvalidInput, match="state"):
        await q.list_jobs("waiting")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="limit"):
        await q.list_jobs("todo", limit=1001)


async def test_purge_waiting_removes_waiting_and_delayed_but_not_running(
    redis: aioredis.Redis,
):
    q = Queue(redis, "purge")
    await q.enqueue_many("t", list(range(600)))
    await q.enqueue_many("t", list(range(300)), delay=60)
    (lease,) = await q.claim_many(1)
    assert await q.purge_waiting() == 899
    stats = await q.stats()
    assert (stats.todos, stats.delayed, stats.in_progress) == (0, 0, 1)
    await q.ack(lease)  # the running job finishes normally
    assert (await q.stats()).done == 1
    assert await q.job(lease.job_id) is not None
    keys = [k async for k in redis.scan_iter(match=q.keys.prefix + "job:*")]
    assert len(keys) == 1


async def test_delayed_pages_skip_no_job_while_earlier_ones_are_promoted(
    redis: aioredis.Redis,
):
    """Pages of delayed jobs go by due time, not position: jobs promoted between two
    pages (taken off the front) make no later job disappear; ties of one due time are
    walked whole."""
    q = Queue(redis, "promoting")
    soon = await q.enqueue_many("t", list(range(4)), delay=0.2)  # one due time: a tie
    later = await q.enqueue_many("t", list(range(6)), delay=600)
    page, cursor = await q.list_jobs("delayed", limit=5)
    seen = [info.job_id for info in page]
    await anyio.sleep(0.25)
    await q.claim_many(1)  # promotes the due ones (and claims one)
    while cursor is not None:
        page, cursor = await q.list_jobs("delayed", limit=5, cursor=cursor)
        seen += [info.job_id for info in page]
    assert set(later) <= set(seen)
    assert set(seen) <= set(soon) | set(later)


@pytest.mark.parametrize("cursor", ["c:²:0", "c:¹:0", "c:99999999999999999999999:0", "c:1",
                                    "x", "c:a:1", "s:1:2", "c:1:2:3"])
async def test_a_cursor_this_listing_did_not_hand_out_is_refused(
    redis: aioredis.Redis, cursor: str,
):
    q = Queue(redis, "cursors")
    for state in ("todo", "delayed"):
        with pytest.raises(InvalidInput, match="cursor"):
            await q.list_jobs(state, cursor=cursor)
