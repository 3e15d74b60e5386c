"""The HTTP API, in process, on fakeredis, a real redis-server and a cluster (the ``redis``
fixture's lanes): what an operator's script would see."""

from __future__ import annotations

import json

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from leaseq import Every, Queue, Rate, Reaper, Scheduler
from leaseq.protocol import scheduling
from leaseq.testing import free_port

from ..test_protocol import expire_lease
from .conftest import client_of


async def test_overview_lists_registered_queues_with_their_counts(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    assert (await api.get("/queues")).json()["queues"] == []
    q = Queue(redis, "emails")
    await q.enqueue_many("send", range(3))
    await Queue(redis, "reports").enqueue("build", None, delay=60)

    body = (await api.get("/queues")).json()
    assert isinstance(body["server_time_ms"], int)
    rows = {row["name"]: row for row in body["queues"]}
    assert list(rows) == ["emails", "reports"]
    assert (rows["emails"]["todos"], rows["emails"]["delayed"]) == (3, 0)
    assert (rows["reports"]["todos"], rows["reports"]["delayed"]) == (0, 1)
    assert rows["emails"]["reaper_seen_ms"] is None  # no reaper ever swept


async def test_queue_detail_shows_leases_dead_jobs_throughput_and_expiries(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    q = Queue(redis, "jobs", lease_timeout=30.0, max_attempts=1, owner="host-a:42")
    ids = await q.enqueue_many("work", [1, 2, 3, 4])
    leases = {lease.job_id: lease for lease in await q.claim_many(4)}
    await q.ack(leases[ids[0]], result="ok")
    await q.bury(leases[ids[1]], "payload is nonsense")
    await expire_lease(redis, q, ids[2])
    await Reaper(q).sweep()  # max_attempts=1: the expired lease sends ids[2] to dead

    detail = (await api.get("/queues/jobs")).json()
    summary = detail["summary"]
    assert (summary["in_progress"], summary["done"], summary["dead"]) == (1, 1, 2)
    assert summary["done_last_minute"] == 1 and summary["reaper_seen_ms"] is not None
    assert len(detail["throughput"]) == 15 and detail["throughput"][-1] == 1
    assert sum(detail["throughput"]) == 1

    (lease,) = detail["leases"]
    assert lease["job_id"] == ids[3] and lease["owner"] == "host-a:42"
    assert lease["token"] == leases[ids[3]].token
    assert (lease["task"], lease["attempt"], lease["max_attempts"]) == ("work", 1, 1)
    assert 0 < lease["time_left"] <= 30 and lease["age"] >= 0

    reasons = {job["job_id"]: job["dead_reason"] for job in detail["dead"]}
    assert reasons == {ids[1]: "payload is nonsense", ids[2]: "lease expired 1 times"}

    (event,) = detail["events"]
    assert (event["job_id"], event["outcome"], event["owner"], event["token"]) == (
        ids[2], "dead", "host-a:42", leases[ids[2]].token)

    # The same data, one part at a time.
    assert [x["token"] for x in (await api.get("/queues/jobs/leases")).json()] == [
        lease["token"]]
    assert (await api.get("/queues/jobs/events?limit=5")).json() == detail["events"]
    assert {j["job_id"] for j in (await api.get("/queues/jobs/dead")).json()} == set(reasons)


async def test_enqueue_then_read_the_job_until_its_result(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    await Queue(redis, "mail").prepare()  # registered, as any queue a worker serves
    reply = await api.post("/queues/mail/jobs", json={
        "task": "send", "payload": {"to": "ann@example.com"}, "max_attempts": 3})
    assert reply.status_code == 201
    job_id = reply.json()["job_id"]

    job = (await api.get(f"/jobs/{job_id}")).json()
    assert (job["queue"], job["state"], job["task"]) == ("mail", "todo", "send")
    assert (job["payload"], job["max_attempts"]) == ({"to": "ann@example.com"}, 3)

    q = Queue(redis, "mail")
    lease = await q.claim()
    assert lease is not None and lease.payload == {"to": "ann@example.com"}
    await q.ack(lease, result={"sent": True})
    job = (await api.get(f"/queues/mail/jobs/{job_id}")).json()
    assert (job["state"], job["result"]) == ("done", {"sent": True})


async def test_enqueue_with_job_id_is_idempotent_and_ids_may_hold_slashes(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    await Queue(redis, "mail").prepare()
    for payload in (1, 2):
        reply = await api.post("/queues/mail/jobs",
                               json={"task": "t", "payload": payload, "job_id": "order/7"})
        assert reply.json() == {"queue": "mail", "job_id": "order/7"}
    job = (await api.get("/jobs/order/7")).json()
    assert job["payload"] == 1  # the second enqueue changed nothing
    assert (await Queue(redis, "mail").stats()).todos == 1


async def test_a_job_id_known_to_two_queues_needs_the_queue(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    for name in ("a", "b"):
        await Queue(redis, name).enqueue("t", name, job_id="same")
    assert (await api.get("/jobs/same")).status_code == 409
    assert (await api.get("/jobs/same?queue=b")).json()["payload"] == "b"
    assert (await api.get("/jobs/other")).status_code == 404


async def test_dead_jobs_are_requeued_or_purged_by_id_or_requeued_all(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    q = Queue(redis, "d", lease_timeout=30.0)
    ids = await q.enqueue_many("t", range(4))
    for lease in await q.claim_many(4):
        await q.bury(lease, "broken")

    reply = await api.post("/queues/d/dead/requeue", json={"job_ids": [ids[0], "nope"]})
    assert reply.json() == {"queue": "d", "count": 1}
    reply = await api.post("/queues/d/dead/purge", json={"job_ids": [ids[1]]})
    assert reply.json() == {"queue": "d", "count": 1}
    assert await q.job(ids[1]) is None
    stats = await q.stats()
    assert (stats.todos, stats.dead) == (1, 2)

    reply = await api.post("/queues/d/dead/requeue", json={"all": True})
    assert reply.json() == {"queue": "d", "count": 2}
    stats = await q.stats()
    assert (stats.todos, stats.dead) == (3, 0)
    # Requeued jobs start again with fresh attempts.
    info = await q.job(ids[2])
    assert info is not None and (info.state, info.attempts) == ("todo", 0)


async def test_jobs_are_listed_page_by_page_and_by_task(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    q = Queue(redis, "listed")
    ids = set(await q.enqueue_many("a", range(7)))
    await q.enqueue_many("b", range(3))
    seen: set[str] = set()
    cursor = None
    for _ in range(100):
        params = {"state": "todo", "task": "a", "limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await api.get("/queues/listed/jobs", params=params)).json()
        seen |= {job["job_id"] for job in page["jobs"]}
        assert all(job["task"] == "a" and job["state"] == "todo" for job in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert (await api.get("/queues/listed/jobs", params={"state": "nope"})).status_code == 422


async def test_a_result_is_waited_for_and_a_queue_checked(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    q = Queue(redis, "waits")
    job = await q.enqueue("t", {"n": 1})
    pending = await api.get(f"/queues/waits/jobs/{job}/result", params={"timeout": 0.05})
    assert pending.json() == {"queue": "waits", "job_id": job, "finished": False,
                              "result": None}
    lease = await q.claim()
    assert lease is not None
    await q.ack(lease, result=[1, 2])
    done = await api.get(f"/queues/waits/jobs/{job}/result", params={"timeout": 5})
    assert done.json() == {"queue": "waits", "job_id": job, "finished": True,
                           "result": [1, 2]}
    assert (await api.get("/queues/waits/jobs/nope/result")).status_code == 404
    assert (await api.get("/queues/waits/jobs", params={"cursor": "c:²:0"})).status_code == 422
    check = (await api.get("/queues/waits/check")).json()
    assert check["ok"] is False and check["checks"]["queue"]["ok"] is True
    assert check["checks"]["workers"] == {"ok": False, "detail": "0 live"}
    await Reaper(q).sweep()
    assert (await api.get("/queues/waits/check")).json()["checks"]["reaper"]["ok"] is True


async def test_workers_are_listed_and_waiting_jobs_purged_with_confirmation(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    from leaseq.runtime.presence import Presence

    q = Queue(redis, "ops")
    await q.enqueue_many("t", range(4))
    presence = Presence([q], lambda: {
        "host": "h", "pid": 7, "queues": ["ops"], "concurrency": 3, "in_flight": 1,
        "started_at": 1.0, "version": "v"}, interval=60)
    await presence._beat(json.dumps({"id": presence.worker_id, "host": "h", "pid": 7,
                                     "queues": ["ops"], "concurrency": 3, "in_flight": 1,
                                     "started_at": 1.0, "version": "v"}))
    (worker,) = (await api.get("/queues/ops/workers")).json()
    assert (worker["id"], worker["pid"], worker["in_flight"]) == (presence.worker_id, 7, 1)
    refused = await api.post("/queues/ops/purge", json={"confirm": False})
    assert refused.status_code == 422 and (await q.stats()).todos == 4
    done = await api.post("/queues/ops/purge", json={"confirm": True})
    assert done.json() == {"queue": "ops", "count": 4} and (await q.stats()).todos == 0


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("get", "/queues/nope", None, 404),
    ("get", "/queues/bad%20name", None, 422),
    ("get", "/queues/%7Bbrace%7D/dead", None, 422),
    ("post", "/queues/nope/jobs", {"task": "t"}, 404),
    ("get", "/queues/known?leases=0", None, 422),
    ("get", "/queues/known/dead?limit=100000", None, 422),
    ("post", "/queues/known/jobs", {}, 422),
    ("post", "/queues/known/jobs", {"task": ""}, 422),
    ("post", "/queues/known/jobs", {"task": "t", "surprise": 1}, 422),
    ("post", "/queues/known/jobs", {"task": "t", "delay": False}, 422),
    ("post", "/queues/known/jobs", {"task": "t", "delay": -1}, 422),
    ("post", "/queues/known/jobs", {"task": "t", "max_attempts": "3"}, 422),
    ("post", "/queues/known/jobs", {"task": "t", "max_attempts": 0}, 422),
    ("post", "/queues/known/jobs", {"task": "t", "lease_timeout": 0}, 422),
    ("post", "/queues/known/jobs", {"task": "t", "job_id": "x" * 1025}, 422),
    ("post", "/queues/known/dead/requeue", {}, 422),
    ("post", "/queues/known/dead/requeue", {"all": False}, 422),
    ("post", "/queues/known/dead/requeue", {"all": True, "job_ids": ["a"]}, 422),
    ("post", "/queues/known/dead/purge", {"all": True}, 422),
    ("post", "/queues/known/dead/purge", {"job_ids": []}, 422),
    ("get", "/jobs/x?queue=no%20spaces", None, 422),
    ("post", "/queues/known/pause", None, 422),
    ("post", "/queues/known/pause", {}, 422),
    ("post", "/queues/known/pause", {"confirm": False}, 422),
    ("post", "/queues/known/resume", None, 422),
    ("post", "/queues/known/resume", {"confirm": True}, 422),
    ("post", "/queues/nope/pause", {"confirm": True}, 404),
    ("get", "/nowhere", None, 404),
])
async def test_bad_input_gets_a_clear_4xx(
    fake_redis: aioredis.Redis, method: str, path: str, body: object, status: int,
):
    redis = fake_redis
    await Queue(redis, "known").prepare()
    async with client_of(redis) as api:
        reply = await api.request(method, path, json=body)
    assert reply.status_code == status, reply.text
    assert reply.json()["detail"]
    stats = await Queue(redis, "known").stats()
    assert (stats.total, stats.paused) == (0, False)  # nothing was written


async def test_bodies_that_are_not_json_too_large_or_not_unicode_are_refused(
    redis: aioredis.Redis,
):
    await Queue(redis, "known").prepare()
    async with client_of(redis, max_body=4096) as api:
        reply = await api.post("/queues/known/jobs", content=b"{not json",
                               headers={"content-type": "application/json"})
        assert reply.status_code in (400, 422), reply.text
        reply = await api.post("/queues/known/jobs",
                               json={"task": "t", "payload": "x" * 5000})
        assert reply.status_code == 413
        # A lone surrogate is valid JSON but not Unicode Redis can store.
        for body in (b'{"task": "\\udb61"}', b'{"task": "t", "payload": ["\\udb61"]}',
                     b'{"task": "t", "job_id": "\\ud800"}'):
            reply = await api.post("/queues/known/jobs", content=body,
                                   headers={"content-type": "application/json"})
            assert reply.status_code == 422, reply.text
            assert json.loads(reply.text)["detail"]
    assert (await Queue(redis, "known").stats()).total == 0


async def test_schedules_are_listed_with_their_last_job(redis: aioredis.Redis):
    q = Queue(redis, "timed")
    schedule = Every(60, "report", name="minutely")
    scheduler = Scheduler(q, [schedule])
    await scheduler.tick_once()
    last = await scheduling.last_tick(q, schedule)
    assert last is not None
    await scheduling.fire(q, schedule, last, "run", schedule.next_tick(last))
    async with client_of(redis) as api:
        (row,) = (await api.get("/queues/timed/schedules")).json()
        detail = (await api.get("/queues/timed")).json()
        missing = await api.get("/queues/nope/schedules")
    assert row["name"] == "minutely" and row["spec"] == "every 60s" and not row["stale"]
    assert row["enqueued"] == 1 and row["last_job_state"] == "todo"
    assert row["last_job"] == f"minutely@{schedule.next_tick(last)}"
    assert detail["schedules"] == [row]
    assert missing.status_code == 404


async def test_a_wrong_method_is_a_405_that_names_every_allowed_one(
    fake_redis: aioredis.Redis,
):
    await Queue(fake_redis, "known").prepare()
    async with client_of(fake_redis) as api:
        reply = await api.delete("/queues/known/jobs")
        assert reply.status_code == 405
        assert sorted(reply.headers["allow"].replace(" ", "").split(",")) == ["GET", "POST"]
        reply = await api.get("/queues/known/purge")
        assert reply.status_code == 405
        assert reply.headers["allow"] == "POST"


async def test_fixed_queues_are_the_only_ones_served(redis: aioredis.Redis):
    await Queue(redis, "other").enqueue("t", None)
    async with client_of(redis, queues=["mine"]) as api:
        names = [row["name"] for row in (await api.get("/queues")).json()["queues"]]
        assert names == ["mine"]
        assert (await api.get("/queues/other")).status_code == 404
        for route in ("check", "workers", "tasks", "jobs"):
            assert (await api.get(f"/queues/other/{route}")).status_code == 404, route
        assert (await api.post("/queues/mine/jobs", json={"task": "t"})).status_code == 201


async def test_a_token_guards_every_route_but_healthz(redis: aioredis.Redis):
    await Queue(redis, "q").prepare()
    async with client_of(redis, token="s3cret/=") as api:
        for path in ("/queues", "/queues/q", "/openapi.json", "/static/app.js", "/nowhere"):
            reply = await api.get(path)
            assert reply.status_code == 401, path
            assert reply.headers["www-authenticate"].startswith("Bearer")
        assert (await api.post("/queues/q/jobs", json={"task": "t"})).status_code == 401
        for action, body in (("pause", {"confirm": True}), ("resume", {})):
            reply = await api.post(f"/queues/q/{action}", json=body)
            assert reply.status_code == 401, action
        assert not await Queue(redis, "q").is_paused()
        assert (await api.get("/queues", headers={"Authorization": "Bearer wrong"})
                ).status_code == 401
        page = await api.get("/")
        assert page.status_code == 401 and 'id="login"' in page.text
        assert (await api.get("/healthz")).json() == {"status": "ok"}

        ok = {"Authorization": "Bearer s3cret/="}
        assert (await api.get("/queues", headers=ok)).status_code == 200
        paused = await api.post("/queues/q/pause", json={"confirm": True}, headers=ok)
        assert paused.json() == {"queue": "q", "paused": True}
        assert (await api.post("/queues/q/resume", json={}, headers=ok)).json()[
            "paused"] is False
        schema = (await api.get("/openapi.json", headers=ok)).json()
        assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        # The page's login form stores the token URL-encoded in a cookie.
        api.cookies.set("leaseq_token", "s3cret%2F%3D")
        assert (await api.get("/queues")).status_code == 200
        assert 'id="queues"' in (await api.get("/")).text
    assert (await Queue(redis, "q").stats()).total == 0


@pytest.mark.real_redis
async def test_unreachable_redis_is_a_503_not_a_500():
    # A port nothing listens on: every read fails to connect (at once: no retries).
    redis = aioredis.Redis(port=free_port(), socket_connect_timeout=1,
                           retry=Retry(NoBackoff(), 0))
    try:
        async with client_of(redis, queues=["q"]) as api:
            for path in ("/healthz", "/queues", "/queues/q"):
                reply = await api.get(path)
                assert reply.status_code == 503, path
                assert "Redis error" in reply.json()["detail"]
    finally:
        await redis.aclose()


async def test_the_openapi_document_describes_every_route(api: httpx.AsyncClient):
    schema = (await api.get("/openapi.json")).json()
    assert set(schema["paths"]) == {
        "/healthz", "/queues", "/queues/{name}", "/queues/{name}/leases",
        "/queues/{name}/dead", "/queues/{name}/events", "/queues/{name}/jobs",
        "/queues/{name}/jobs/{job_id}", "/jobs/{job_id}", "/queues/{name}/dead/requeue",
        "/queues/{name}/dead/purge", "/queues/{name}/workers", "/queues/{name}/purge",
        "/queues/{name}/tasks", "/queues/{name}/check", "/queues/{name}/jobs/{job_id}/result",
        "/queues/{name}/schedules", "/queues/{name}/pause", "/queues/{name}/resume",
        "/queues/{name}/cancel", "/queues/{name}/search", "/queues/{name}/inspect"}
    assert "securitySchemes" not in schema.get("components", {})


async def test_pause_and_resume_stop_and_restart_every_claim(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    q = Queue(redis, "held")
    await q.enqueue_many("t", [1, 2])
    reply = await api.post("/queues/held/pause", json={"confirm": True})
    assert reply.status_code == 200 and reply.json() == {"queue": "held", "paused": True}
    assert await q.claim() is None
    (row,) = (await api.get("/queues")).json()["queues"]
    assert (row["paused"], row["todos"], row["waiting_on_limits"]) == (True, 2, 2)
    # Pausing again changes nothing.
    assert (await api.post("/queues/held/pause", json={"confirm": True})).json()["paused"]

    reply = await api.post("/queues/held/resume", json={})
    assert reply.json() == {"queue": "held", "paused": False}
    assert await q.claim() is not None
    summary = (await api.get("/queues/held")).json()["summary"]
    assert (summary["paused"], summary["waiting_on_limits"]) == (False, 0)


async def test_the_summary_shows_the_stored_controls_and_jobs_their_placing(
    redis: aioredis.Redis, api: httpx.AsyncClient,
):
    q = Queue(redis, "fair")
    plain = (await api.get("/queues")).json()["queues"]
    assert plain == []
    await q.configure(ordering="fifo", max_in_flight=2, key_concurrency=1,
                      rate_limit=Rate(50), key_rate=Rate(10, per=60, burst=5))
    job_id = await q.enqueue("t", 1, priority=5, key="customer-1", expires_in=600)
    summary = (await api.get("/queues/fair")).json()["summary"]
    assert {k: summary[k] for k in ("ordering", "max_in_flight", "key_concurrency",
                                    "rate_limit", "key_rate", "paused")} == {
        "ordering": "fifo", "max_in_flight": 2, "key_concurrency": 1,
        "rate_limit": "50/1s", "key_rate": "10/60s, burst 5", "paused": False}
    assert (summary["keys_waiting"], summary["keys_parked"], summary["holding"],
            summary["expired"]) == (1, 0, 0, 0)
    job = (await api.get(f"/queues/fair/jobs/{job_id}")).json()
    assert (job["priority"], job["key"]) == (5, "customer-1")
    assert job["expires_at"] > (await api.get("/queues")).json()["server_time_ms"] / 1000

    # Another process changes the limits: the app's next read shows it (no stale copy).
    await Queue(redis, "fair").configure(max_in_flight=None, rate_limit=None)
    summary = (await api.get("/queues/fair")).json()["summary"]
    assert (summary["max_in_flight"], summary["rate_limit"]) == (None, None)
    assert summary["key_concurrency"] == 1
