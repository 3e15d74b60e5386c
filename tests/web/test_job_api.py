"""The API's job search (by id prefix, bounded per request), job view with its attempts,
and the chart's per-minute rates and the workers in a queue's detail, on every Redis
lane; bad input is a 4xx with a problem body, and the token guards the new routes."""

from __future__ import annotations

import json

import httpx
import pytest
import redis.asyncio as aioredis

from leaseq import Queue, Reaper
from leaseq.protocol.taskstats import SEP
from leaseq.web import _search

from ..test_protocol import expire_lease
from .conftest import client_of


async def test_a_prefix_finds_the_jobs_in_every_state_and_only_those(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    q = Queue(redis, "orders", lease_timeout=30.0)
    await q.enqueue("ship", 0, job_id="order-0")
    running = await q.claim()
    await q.enqueue("ship", 1, job_id="order-1")
    dead = await q.claim()
    assert running is not None and dead is not None and dead.job_id == "order-1"
    await q.bury(dead, "broken")
    for n in range(2, 6):
        await q.enqueue("ship", n, job_id=f"order-{n}")
    await q.enqueue("ship", None, job_id="other-1")
    await q.enqueue("ship", None, job_id="order*x", delay=60)

    page = (await api.get("/queues/orders/search", params={"prefix": "order-"})).json()
    assert {j["job_id"]: j["state"] for j in page["jobs"]} == {
        "order-0": "in_progress", "order-1": "dead", **{f"order-{n}": "todo" for n in range(2, 6)}}
    assert page["next_cursor"] is None and 1 <= page["scan_steps"] <= _search.MAX_STEPS
    assert all(j["task"] == "ship" and j["max_attempts"] == 5 for j in page["jobs"])

    # Glob characters in a prefix are matched as written.
    starred = (await api.get("/queues/orders/search", params={"prefix": "order*"})).json()
    assert [(j["job_id"], j["state"]) for j in starred["jobs"]] == [("order*x", "delayed")]
    one_state = (await api.get("/queues/orders/search",
                               params={"prefix": "order", "state": "dead"})).json()
    assert [j["job_id"] for j in one_state["jobs"]] == ["order-1"]
    none = (await api.get("/queues/orders/search", params={"prefix": "zzz"})).json()
    assert none["jobs"] == [] and none["next_cursor"] is None


async def test_a_search_stops_at_its_limit_and_its_cursor_goes_on(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    q = Queue(redis, "many")
    ids = {f"job-{n:04d}" for n in range(600)}
    for start in range(0, 600, 200):
        batch = sorted(ids)[start:start + 200]
        await q.enqueue_many("t", [None] * len(batch), job_ids=batch)
    await q.enqueue("t", None, job_id="stray")
    seen: set[str] = set()
    cursor = None
    pages = 0
    while pages < 100:
        pages += 1
        params = {"prefix": "job-", "limit": 5, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/queues/many/search", params=params)).json()
        # A page stops once it has the limit, one whole scan step past it at most.
        assert len(page["jobs"]) <= 5 + 2 * _search.STEP_COUNT
        assert page["scan_steps"] <= _search.MAX_STEPS
        seen |= {j["job_id"] for j in page["jobs"]}
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages > 1


async def test_the_job_view_tells_each_attempt_after_an_expired_lease(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    q = Queue(redis, "crashy", lease_timeout=30.0, owner="first-host:111")
    job_id = await q.enqueue("work", {"n": 1}, job_id="order/17")
    first = await q.claim()
    assert first is not None
    await expire_lease(redis, q, job_id)  # its claimer died
    await Reaper(q).sweep()
    second = await Queue(redis, "crashy", owner="second-host:222").claim()
    assert second is not None and second.attempt == 2

    detail = (await api.get("/queues/crashy/inspect", params={"job_id": job_id})).json()
    assert detail["job"]["job_id"] == "order/17" and detail["job"]["state"] == "in_progress"
    assert detail["job"]["lease_token"] == second.token and detail["job"]["payload"] is None
    assert json.loads(detail["payload"]["text"]) == {"n": 1}
    one, two = detail["attempts"]
    assert (one["attempt"], one["owner"], one["end"], one["outcome"], one["token"]) == (
        1, "first-host:111", "lease_expired", "requeued", first.token)
    assert one["ended_at"] >= one["claimed_at"] > 0 and "expiries" in one["sources"]
    assert (two["attempt"], two["owner"], two["end"], two["token"]) == (
        2, "second-host:222", "running", second.token)
    assert 0 < two["lease_ttl"] <= 30
    assert detail["numbered"] is True and detail["actions"] == ["cancel"]
    (expiry,) = detail["expiries"]
    assert (expiry["owner"], expiry["attempt"]) == ("first-host:111", 1)

    # It fails, runs again and dies: the settlements say so, newest first.
    await q.fail(second, "RuntimeError: boom")
    third = await q.claim()
    assert third is not None
    await q.bury(third, "payload is not an order")
    detail = (await api.get("/queues/crashy/inspect", params={"job_id": job_id})).json()
    assert [(s["token"], s["mode"], s["outcome"]) for s in detail["settlements"]] == [
        (third.token, "bury", "dead"), (second.token, "fail", "todo")]
    assert [(a["attempt"], a["end"], a["outcome"]) for a in detail["attempts"]] == [
        (1, "lease_expired", "requeued"), (2, "failed", "todo"), (3, "buried", "dead")]
    assert detail["attempts"][1]["detail"] == "RuntimeError: boom"
    assert detail["attempts"][2]["detail"] == "payload is not an order"
    assert detail["actions"] == ["requeue", "purge"]


async def test_the_job_view_of_a_done_job_and_an_unknown_one(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    q = Queue(redis, "plain")
    job_id = await q.enqueue("t", "x" * 40_000)
    lease = await q.claim()
    assert lease is not None
    await q.ack(lease, result={"ok": True})
    detail = (await api.get("/queues/plain/inspect", params={"job_id": job_id})).json()
    (attempt,) = detail["attempts"]
    assert (attempt["attempt"], attempt["end"], attempt["outcome"]) == (1, "acked", "done")
    assert detail["payload"]["truncated"] and detail["payload"]["size"] > 40_000
    assert len(detail["payload"]["text"]) == 16_384
    assert json.loads(detail["result"]["text"]) == {"ok": True}
    assert detail["actions"] == [] and detail["stream"] is False

    missing = await api.get("/queues/plain/inspect", params={"job_id": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert (await api.get("/queues/nope/inspect", params={"job_id": "x"})).status_code == 404


async def test_a_queue_that_keeps_a_stream_shows_the_jobs_events(redis: aioredis.Redis):
    q = Queue(redis, "told", events=1000, lease_timeout=30.0, owner="h:1")
    job_id = await q.enqueue("t", None)
    lease = await q.claim()
    assert lease is not None
    await q.release(lease)
    again = await q.claim()
    assert again is not None
    await q.ack(again, result=None)
    async with client_of(redis) as api:
        detail = (await api.get("/queues/told/inspect", params={"job_id": job_id})).json()
    assert detail["stream"] is True
    assert [e["type"] for e in detail["timeline"]][:2] == ["acked", "started"]
    assert [(a["attempt"], a["end"]) for a in detail["attempts"]] == [
        (1, "released"), (1, "acked")]
    assert detail["releases"] == 1 and detail["numbered"] is True


async def test_the_queue_detail_has_the_charts_rates_and_its_workers(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    from leaseq.runtime.presence import Presence

    q = Queue(redis, "charted", lease_timeout=30.0, max_attempts=1)
    ids = await q.enqueue_many("t", range(3))
    leases = {lease.job_id: lease for lease in await q.claim_many(3)}
    await q.ack(leases[ids[0]], result=None)
    await expire_lease(redis, q, ids[1])
    await Reaper(q).sweep()
    now_minute = (await api.get("/queues")).json()["server_time_ms"] // 60_000
    await redis.hset(q.keys.taskstats(now_minute), mapping={
        f"t{SEP}failed": 2, f"t{SEP}dead": 1, f"t{SEP}acked": 9, f"t{SEP}d3": 4})
    description = {"host": "h", "pid": 7, "queues": ["charted"], "concurrency": 3,
                   "in_flight": 1, "started_at": 1.0, "version": "v"}
    presence = Presence([q], lambda: description, interval=60)
    await presence._beat(json.dumps({"id": presence.worker_id, **description}))

    detail = (await api.get("/queues/charted")).json()
    rates = detail["rates"]
    assert len(rates["minute_starts"]) == 15 and rates["minute_starts"][-1] == now_minute * 60_000
    assert (rates["acked"][-1], rates["failed"][-1], rates["expired"][-1]) == (1, 3, 1)
    assert sum(rates["acked"]) + sum(rates["failed"]) + sum(rates["expired"]) == 5
    assert rates["expired_capped"] is False
    (worker,) = detail["workers"]
    assert (worker["pid"], worker["in_flight"], detail["workers_total"]) == (7, 1, 1)


async def test_a_cancelled_job_whose_worker_died_is_listed_and_its_result_is_a_409(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    q = Queue(redis, "cx", lease_timeout=30.0)
    job_id = await q.enqueue("t", None)
    assert await q.claim() is not None
    assert await q.cancel(job_id, reason="stop it") == "delivered"
    await expire_lease(redis, q, job_id)  # its worker died before it could stop the job
    await Reaper(q).sweep()
    (event,) = (await api.get("/queues/cx/events")).json()
    assert (event["job_id"], event["outcome"]) == (job_id, "cancelled")
    detail = (await api.get("/queues/cx/inspect", params={"job_id": job_id})).json()
    assert [(a["end"], a["outcome"]) for a in detail["attempts"]] == [
        ("lease_expired", "cancelled")]
    assert detail["job"]["cancel_reason"] == "stop it" and detail["actions"] == []
    result = await api.get(f"/queues/cx/jobs/{job_id}/result")
    assert result.status_code == 409 and "cancelled" in result.json()["detail"]


@pytest.mark.parametrize(("path", "status"), [
    ("/queues/known/search", 422),
    ("/queues/known/search?prefix=", 422),
    ("/queues/known/search?prefix=a%00b", 422),
    ("/queues/known/search?prefix=a&limit=0", 422),
    ("/queues/known/search?prefix=a&limit=101", 422),
    ("/queues/known/search?prefix=a&state=nope", 422),
    ("/queues/known/search?prefix=a&cursor=c:1:0", 422),
    ("/queues/known/search?prefix=a&cursor=s:9:0", 422),
    ("/queues/nope/search?prefix=a", 404),
    ("/queues/known/inspect", 422),
    ("/queues/known/inspect?job_id=", 422),
    ("/queues/known/inspect?job_id=" + "x" * 1025, 422),
    ("/queues/bad%20name/inspect?job_id=x", 422),
])
async def test_bad_input_to_the_new_routes_is_a_4xx_problem(
    fake_redis: aioredis.Redis, path: str, status: int,
):
    await Queue(fake_redis, "known").prepare()
    async with client_of(fake_redis) as api:
        reply = await api.get(path)
    assert reply.status_code == status, reply.text
    assert reply.json()["detail"]


async def test_an_unknown_job_or_queue_is_a_one_line_404(fake_redis: aioredis.Redis):
    await Queue(fake_redis, "known").prepare()
    async with client_of(fake_redis) as api:
        for path in ("/queues/known/inspect?job_id=a%0Ab", "/queues/nope/search?prefix=a"):
            reply = await api.get(path)
            detail = reply.json()["detail"]
            assert reply.status_code in (404, 422) and detail, path
            if reply.status_code == 404:
                assert isinstance(detail, str) and "\n" not in detail, path
        # A cursor past the one state searched finds nothing more.
        reply = await api.get("/queues/known/search",
                              params={"prefix": "a", "state": "todo", "cursor": "s:3:0"})
        assert reply.json() == {"queue": "known", "prefix": "a", "jobs": [],
                                "scan_steps": 0, "next_cursor": None}


async def test_the_token_guards_the_new_routes(fake_redis: aioredis.Redis):
    await Queue(fake_redis, "q").enqueue("t", None, job_id="j")
    async with client_of(fake_redis, token="tok") as api:
        for path in ("/queues/q/search?prefix=j", "/queues/q/inspect?job_id=j",
                     "/static/jobs.js"):
            assert (await api.get(path)).status_code == 401, path
        ok = {"Authorization": "Bearer tok"}
        assert (await api.get("/queues/q/search?prefix=j", headers=ok)).json()["jobs"]
        assert (await api.get("/queues/q/inspect?job_id=j", headers=ok)).status_code == 200
