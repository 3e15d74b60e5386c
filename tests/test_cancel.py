"""Cancelling a job (``Queue.cancel``, docs/protocol.md "cancel"): what a user sees for a
waiting, delayed, running, dead-worker and already-finished job, on every Redis lane, plus
the command line, the HTTP API and a lost reply of ``cancel.lua``."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from leaseq import JobCancelled, JobContext, LeaseLost, Queue, Reaper, Worker
from leaseq.protocol import scripts
from leaseq.protocol.doctor import Report, check_queue
from leaseq.protocol.wire import is_cluster, text
from leaseq.testing import RedisServer, WorkerProcess, check_invariants
from leaseq.testing._record import log_key

from .conftest import wait_for
from .test_cli import cli
from .test_lost_replies import direct, lose_reply, proxied, sha
from .web.conftest import client_of

__all__ = ["direct"]  # a fixture, imported to be used here

HANDLERS = "tests.chaos.handlers:HANDLERS"


# -- helpers -----------------------------------------------------------------------------------

@asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` in the background (ready once started) until the block ends."""
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: worker.run(handle_signals=False,
                                                      task_status=task_status))
        try:
            yield worker
        finally:
            worker.stop()


async def listening(redis: aioredis.Redis, q: Queue) -> None:
    """Wait until a worker's subscription hears ``q``'s cancels channel (a shard channel on
    a cluster): from then on a published cancel reaches it."""
    channel = q.keys.cancels

    async def subscribed() -> bool:
        if is_cluster(redis):
            node = redis.get_node_from_key(channel)  # type: ignore[attr-defined]
            reply = await redis.pubsub_shardnumsub(channel, target_nodes=node)  # type: ignore[call-arg]
        else:
            reply = await redis.pubsub_numsub(channel)
        return any(text(name) == channel and int(n) > 0 for name, n in reply)

    await wait_for(subscribed, timeout=5)


async def state_of(q: Queue, job_id: str) -> str | None:
    info = await q.job(job_id)
    return None if info is None else info.state


async def ends(q: Queue, job_id: str, state: str, timeout: float = 5.0) -> None:
    """Wait (at most ``timeout`` s) until the job is in ``state``."""
    async def there() -> bool:
        return await state_of(q, job_id) == state

    await wait_for(there, timeout=timeout)


async def silent_cancel(q: Queue, job_id: str, reason: str) -> str:
    """What ``q.cancel`` does, but with its message published on a channel nobody
    listens to (a subscription that missed it): only the heartbeat can find the cancel."""
    k = q.keys
    command = "SPUBLISH" if is_cluster(q.redis) else "PUBLISH"
    reply = await scripts.CANCEL(
        q.redis,
        [k.todos, k.in_progress, k.done, k.dead, k.delayed, k.job(job_id),
         k.lease(job_id), *k.control, k.reply()],
        [job_id, reason, command, k.prefix + "nobody-listens"])
    return text(reply)


async def publish(redis: aioredis.Redis, channel: str, message: str) -> None:
    if is_cluster(redis):
        await redis.spublish(channel, message)  # type: ignore[attr-defined]
    else:
        await redis.publish(channel, message)


async def run_burst(worker: Worker, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        await worker.run(burst=True, handle_signals=False)


# -- waiting and delayed jobs ------------------------------------------------------------------

async def test_waiting_and_delayed_jobs_are_cancelled_at_once_and_never_run(
        redis: aioredis.Redis):
    q = Queue(redis, "c-wait")
    waiting = await q.enqueue("work", {"v": 1})
    delayed = await q.enqueue("work", {"v": 2}, delay=60)
    kept = await q.enqueue("work", {"v": 3})

    assert await q.cancel(waiting, reason="not needed") == "cancelled"
    assert await q.cancel(delayed, reason="too late") == "cancelled"
    assert await q.cancel(waiting, reason="again") == "finished"
    assert await q.cancel("never-enqueued") == "unknown"

    with pytest.raises(JobCancelled) as raised:
        await q.wait(waiting, timeout=5)
    assert (raised.value.queue, raised.value.job_id, raised.value.reason) == (
        "c-wait", waiting, "not needed")
    with pytest.raises(JobCancelled, match="too late"):
        await q.wait(delayed, timeout=5)

    ran: list[Any] = []

    async def work(ctx: JobContext, payload: Any) -> Any:
        ran.append(payload)
        return payload["v"]

    worker = Worker(q, {"work": work}, reaper=False)
    await run_burst(worker)
    assert ran == [{"v": 3}]
    assert await q.wait(kept, timeout=5) == 3
    assert worker.counters["cancelled"] == 0  # nothing was running when it was cancelled

    stats = await q.stats()
    assert (stats.cancelled, stats.todos, stats.delayed, stats.in_progress, stats.done) == (
        2, 0, 0, 0, 1)
    info = await q.job(waiting)
    assert info is not None
    assert (info.state, info.cancel_reason, info.attempts) == ("cancelled", "not needed", 0)
    assert info.finished_at is not None
    info = await q.job(delayed)
    assert info is not None and (info.state, info.cancel_reason) == ("cancelled", "too late")
    listed, _ = await q.list_jobs("cancelled")
    assert {i.job_id for i in listed} == {waiting, delayed}
    # The cancel kept the first reason: a second cancel of a cancelled job changes nothing.
    assert (await q.job(waiting)).cancel_reason == "not needed"  # type: ignore[union-attr]


async def test_map_raises_job_cancelled_for_a_job_cancelled_while_it_waits(
        redis: aioredis.Redis):
    q = Queue(redis, "c-map")
    got: dict[str, BaseException] = {}

    async def mapping() -> None:
        try:
            await q.map("work", [1, 2, 3], timeout=10)
        except JobCancelled as exc:
            got["exc"] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(mapping)

        async def enqueued() -> bool:
            return (await q.stats()).todos == 3

        await wait_for(enqueued, timeout=5)
        todo, _ = await q.list_jobs("todo")
        victim = sorted(todo, key=lambda i: i.payload)[1].job_id
        assert await q.cancel(victim, reason="stop the map") == "cancelled"
    exc = got["exc"]
    assert isinstance(exc, JobCancelled)
    assert (exc.job_id, exc.reason) == (victim, "stop the map")


async def test_enqueue_of_a_cancelled_id_changes_nothing_and_it_stays_cancelled(
        redis: aioredis.Redis):
    q = Queue(redis, "c-dedup")
    job_id = await q.enqueue("work", {"v": 1}, job_id="order-7")
    assert await q.cancel(job_id, reason="dup test") == "cancelled"
    assert await q.enqueue("work", {"v": 2}, job_id="order-7") == "order-7"
    info = await q.job("order-7")
    assert info is not None
    assert (info.state, info.payload, info.cancel_reason) == ("cancelled", {"v": 1}, "dup test")
    stats = await q.stats()
    assert (stats.todos, stats.cancelled) == (0, 1)
    with pytest.raises(JobCancelled):
        await q.wait("order-7", timeout=5)


# -- running jobs ------------------------------------------------------------------------------

async def test_a_running_job_is_told_at_once_its_handler_is_cancelled_and_it_ends_cancelled(
        redis: aioredis.Redis):
    # lease_timeout=30: the first heartbeat is ~10 s away, so ending within 5 s proves the
    # published message (on a cluster, a shard channel) reached the worker.
    q = Queue(redis, "c-run", lease_timeout=30)
    job_id = await q.enqueue("sleep", None)
    started = anyio.Event()
    seen: list[type[BaseException]] = []

    async def sleep(ctx: JobContext, payload: Any) -> str:
        started.set()
        try:
            await anyio.sleep(60)
        except BaseException as exc:
            seen.append(type(exc))
            raise
        return "finished anyway"

    worker = Worker(q, {"sleep": sleep}, reaper=False, grace_period=1)
    with capture_logs() as logs:
        async with serving(worker):
            await listening(redis, q)
            with anyio.fail_after(5):
                await started.wait()
            assert await q.cancel(job_id, reason="user asked") == "delivered"
            await ends(q, job_id, "cancelled", timeout=5)
    assert seen == [anyio.get_cancelled_exc_class()]
    counters = worker.counters
    assert (counters["cancelled"], counters["acked"], counters["lease_lost"],
            counters["failed"], counters["released"]) == (1, 0, 0, 0, 0)
    assert [e.get("stage") for e in logs if e["event"] == "job_cancelled"] == ["running"]
    info = await q.job(job_id)
    assert info is not None
    assert (info.state, info.cancel_reason, info.result, info.lease_token) == (
        "cancelled", "user asked", None, None)
    with pytest.raises(JobCancelled, match="user asked"):
        await q.wait(job_id, timeout=5)
    assert await q.cancel(job_id) == "finished"
    stats = await q.stats()
    assert (stats.cancelled, stats.in_progress, stats.done) == (1, 0, 0)


async def test_runners_go_on_running_jobs_after_cancels_and_a_lost_lease(
        redis: aioredis.Redis):
    # A runner keeps one cancel scope from job to job and takes a new one after a job's
    # own cancel was delivered in it: cancelled and lost jobs, one after another, must
    # leave the next jobs running and acked, on the same two runners (concurrency 1).
    q = Queue(redis, "c-again", lease_timeout=1.5)
    started: dict[str, anyio.Event] = {}
    stopped: list[str] = []

    async def hold(ctx: JobContext, payload: Any) -> None:
        started[ctx.job_id].set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            stopped.append(ctx.job_id)
            raise

    async def quick(ctx: JobContext, payload: Any) -> Any:
        return payload

    async def held() -> str:
        job_id = await q.enqueue("hold", None)
        started[job_id] = anyio.Event()
        with anyio.fail_after(5):
            await started[job_id].wait()
        return job_id

    async def two_quick_ones_run() -> None:
        ids = await q.enqueue_many("quick", [1, 2])
        for i in ids:
            await ends(q, i, "done")

    worker = Worker(q, {"hold": hold, "quick": quick}, concurrency=1, reaper=False)
    async with serving(worker):
        await listening(redis, q)
        cancelled = []
        for _ in range(3):
            job_id = await held()
            assert await q.cancel(job_id) == "delivered"
            await ends(q, job_id, "cancelled")
            cancelled.append(job_id)
            await two_quick_ones_run()
        lost = await held()
        await redis.delete(q.keys.lease(lost))  # the heartbeat finds it gone

        async def lease_lost() -> bool:
            return worker.counters["lease_lost"] == 1

        await wait_for(lease_lost)
        await two_quick_ones_run()

        async def idle() -> bool:  # the runner counts a job out after its ack's reply
            return worker.in_flight == 0

        await wait_for(idle)
    assert stopped == [*cancelled, lost]
    counters = worker.counters
    assert (counters["cancelled"], counters["lease_lost"], counters["acked"],
            counters["released"]) == (3, 1, 8, 0)


async def test_a_handler_that_catches_its_cancel_and_returns_still_ends_cancelled(
        redis: aioredis.Redis):
    # The cancel stays delivered in the runner's scope after the handler swallowed it: it
    # stops the ack of the handler's result, and the job ends as a cancelled one does.
    q = Queue(redis, "c-swallow", lease_timeout=30)
    started = anyio.Event()

    async def stubborn(ctx: JobContext, payload: Any) -> str:
        started.set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            return "ignored the cancel"
        return "slept"

    async def quick(ctx: JobContext, payload: Any) -> Any:
        return payload

    worker = Worker(q, {"stubborn": stubborn, "quick": quick}, concurrency=1, reaper=False)
    with capture_logs() as logs:
        async with serving(worker):
            await listening(redis, q)
            job_id = await q.enqueue("stubborn", None)
            with anyio.fail_after(5):
                await started.wait()
            assert await q.cancel(job_id) == "delivered"
            await ends(q, job_id, "cancelled")
            for i in await q.enqueue_many("quick", [1, 2]):
                await ends(q, i, "done")
    info = await q.job(job_id)
    assert info is not None and (info.state, info.result) == ("cancelled", None)
    counters = worker.counters
    assert (counters["cancelled"], counters["acked"], counters["released"],
            counters["lease_lost"]) == (1, 2, 0, 0)
    assert [e.get("stage") for e in logs if e["event"] == "job_cancelled"] == ["running"]


async def test_a_cancel_whose_message_nobody_heard_is_found_by_the_heartbeat(
        redis: aioredis.Redis):
    # lease_timeout=1.5 s: the heartbeat renews every ~0.5 s and finds the cancel there.
    q = Queue(redis, "c-quiet", lease_timeout=1.5)
    job_id = await q.enqueue("sleep", None)
    started = anyio.Event()
    seen: list[type[BaseException]] = []

    async def sleep(ctx: JobContext, payload: Any) -> None:
        started.set()
        try:
            await anyio.sleep(60)
        finally:
            seen.append(anyio.get_cancelled_exc_class())

    worker = Worker(q, {"sleep": sleep}, reaper=False, grace_period=1)
    async with serving(worker):
        with anyio.fail_after(5):
            await started.wait()
        assert await silent_cancel(q, job_id, "missed message") == "delivered"
        await ends(q, job_id, "cancelled", timeout=5)
    assert seen == [anyio.get_cancelled_exc_class()]
    assert (worker.counters["cancelled"], worker.counters["acked"]) == (1, 0)
    info = await q.job(job_id)
    assert info is not None and info.cancel_reason == "missed message"


async def test_a_stale_cancel_of_an_earlier_lease_does_not_touch_the_current_run(
        redis: aioredis.Redis):
    q = Queue(redis, "c-stale", lease_timeout=30)
    await q.enqueue("hold", None, job_id="j1")
    old = await q.claim()
    assert old is not None and old.job_id == "j1"
    await redis.delete(q.keys.lease("j1"))  # the first claimer's lease expired
    assert (await Reaper(q).sweep_report()).requeued == 1
    await q.enqueue("hold", None, job_id="j2")

    started: dict[str, str] = {}
    both = anyio.Event()
    release = anyio.Event()
    cancelled: list[str] = []

    async def hold(ctx: JobContext, payload: Any) -> str:
        started[ctx.lease.job_id] = ctx.lease.token
        if len(started) == 2:
            both.set()
        try:
            await release.wait()
        except BaseException:
            cancelled.append(ctx.lease.job_id)
            raise
        return "acked normally"

    worker = Worker(q, {"hold": hold}, concurrency=2, reaper=False, grace_period=1)
    with capture_logs() as logs:
        async with serving(worker):
            await listening(redis, q)
            with anyio.fail_after(5):
                await both.wait()
            assert started["j1"] != old.token
            await publish(redis, q.keys.cancels, f"j1 {old.token}")
            # Messages of one channel reach the subscription in order: once j2's cancel has
            # been acted on, the stale one for j1 was seen (and ignored) before it.
            assert await q.cancel("j2") == "delivered"
            await ends(q, "j2", "cancelled", timeout=5)
            assert cancelled == ["j2"]
            assert await state_of(q, "j1") == "in_progress"
            release.set()
            assert await q.wait("j1", timeout=5) == "acked normally"
    assert (worker.counters["acked"], worker.counters["cancelled"]) == (1, 1)
    heard = [e["job_id"] for e in logs if e["event"] == "job_cancel_received"]
    assert heard == ["j2"]  # the stale message matched no running lease
    info = await q.job("j1")
    assert info is not None and (info.state, info.cancel_reason) == ("done", None)


@pytest.mark.parametrize("heard", [True, False], ids=["message", "no-message"])
async def test_a_def_handler_that_returns_after_the_cancel_is_not_acked(
        redis: aioredis.Redis, heard: bool):
    # A thread cannot be cancelled. Told at once (message), the worker stops waiting for
    # it; not told (no message, and the heartbeat ~10 s away), the handler returns first
    # and its ack is refused: the job ends cancelled either way, never done.
    q = Queue(redis, f"c-sync-{heard}", lease_timeout=30)
    job_id = await q.enqueue("blocking", None)
    entered = threading.Event()
    go_on = threading.Event()
    returned = threading.Event()

    def blocking(ctx: JobContext, payload: Any) -> str:
        entered.set()
        try:
            assert go_on.wait(10)
            return "computed"
        finally:
            returned.set()

    worker = Worker(q, {"blocking": blocking}, reaper=False, grace_period=1)
    try:
        with capture_logs() as logs:
            async with serving(worker):
                if heard:
                    await listening(redis, q)
                await anyio.to_thread.run_sync(entered.wait, 5)
                assert entered.is_set()
                if heard:
                    assert await q.cancel(job_id, reason="stop") == "delivered"
                    await ends(q, job_id, "cancelled", timeout=5)
                    go_on.set()
                else:
                    assert await silent_cancel(q, job_id, "stop") == "delivered"
                    go_on.set()
                    await ends(q, job_id, "cancelled", timeout=5)
                await anyio.to_thread.run_sync(returned.wait, 5)
    finally:
        go_on.set()
    assert (worker.counters["cancelled"], worker.counters["acked"],
            worker.counters["lease_lost"]) == (1, 0, 0)
    stages = [e.get("stage") for e in logs if e["event"] == "job_cancelled"]
    assert stages == (["running"] if heard else ["ack"])
    info = await q.job(job_id)
    assert info is not None and (info.state, info.result) == ("cancelled", None)


async def test_fail_release_bury_and_settle_by_the_holder_of_a_cancelled_lease_end_cancelled(
        redis: aioredis.Redis):
    q = Queue(redis, "c-settle", lease_timeout=30)
    ids = await q.enqueue_many("t", [0, 1, 2, 3, 4])
    leases = {lease.job_id: lease for lease in await q.claim_many(5)}
    failed, released, buried, settled, untouched = ids
    for job_id in (failed, released, buried, settled):
        assert await q.cancel(job_id, reason=f"r-{job_id}") == "delivered"
        # Still running: told again.
        assert await q.cancel(job_id, reason=f"r-{job_id}") == "delivered"

    # The holder's renewal reports the pending cancel; another lease's does not.
    renewed = await q.extend(leases[failed])
    assert renewed.cancel_pending and renewed.token == leases[failed].token
    assert not (await q.extend(leases[untouched])).cancel_pending
    info = await q.job(failed)
    assert info is not None
    assert (info.state, info.lease_token, info.cancel_reason) == (
        "in_progress", leases[failed].token, f"r-{failed}")
    # Its ack is refused: the result must not be stored as if nothing happened.
    with pytest.raises(LeaseLost):
        await q.ack(leases[failed], "result")

    assert await q.fail(leases[failed], "x") == "cancelled"
    assert await q.fail(leases[failed], "x") == "cancelled"  # a retried call: same answer
    assert await q.release(leases[released]) is None
    await q.bury(leases[buried], "never works")
    await q.settle_cancelled(leases[settled])
    with pytest.raises(LeaseLost):  # no cancel is pending on this lease
        await q.settle_cancelled(leases[untouched])

    for job_id in (failed, released, buried, settled):
        info = await q.job(job_id)
        assert info is not None
        assert (info.state, info.cancel_reason, info.dead_reason) == (
            "cancelled", f"r-{job_id}", None), job_id
        with pytest.raises(JobCancelled):
            await q.wait(job_id, timeout=5)
    stats = await q.stats()
    assert (stats.cancelled, stats.in_progress, stats.todos, stats.dead) == (4, 1, 0, 0)
    await q.ack(leases[untouched], "fine")
    assert await q.wait(untouched, timeout=5) == "fine"


async def test_a_cancelled_job_whose_worker_died_ends_cancelled_at_the_reap_never_rerun(
        real_redis: aioredis.Redis, redis_server: RedisServer, tmp_path: Path):
    q = Queue(real_redis, "c-kill", lease_timeout=1.0)
    job_id = await q.enqueue("work", {"s": 60, "v": "never"}, job_id="k1")
    proc = WorkerProcess(redis_server.url, HANDLERS, "c-kill", concurrency=1,
                         lease_timeout=1.0, reaper=False, log_path=tmp_path / "worker.log")
    try:
        proc.start()
        await anyio.to_thread.run_sync(proc.wait_ready)

        async def running() -> bool:  # its handler has started (the recorded start)
            runs = await real_redis.lrange(log_key(q.keys.prefix), 0, -1)
            return any(text(line).startswith(f"start {job_id} ") for line in runs)

        await wait_for(running, timeout=10)
        proc.stop()  # frozen: it can neither hear the cancel nor settle the job
        assert await q.cancel(job_id, reason="kill test") == "delivered"
        proc.kill()
    finally:
        proc.kill()

    async def expired() -> bool:
        return not await real_redis.exists(q.keys.lease(job_id))

    await wait_for(expired, timeout=5)
    report = await Reaper(q).sweep_report()
    assert (report.cancelled, report.requeued, report.dead) == (1, 0, 0)
    info = await q.job(job_id)
    assert info is not None
    assert (info.state, info.cancel_reason, info.lease_expiries) == (
        "cancelled", "kill test", 1)
    assert (await Reaper(q).sweep_report()).cancelled == 0

    ran: list[Any] = []

    async def work(ctx: JobContext, payload: Any) -> None:
        ran.append(payload)

    await run_burst(Worker(q, {"work": work}, reaper=False))
    assert ran == []
    chaos = await check_invariants(real_redis, "c-kill", [job_id])
    assert chaos.problems() == []
    assert (chaos.cancelled, chaos.done, chaos.lost, chaos.executions) == (1, 0, 0, 1)
    events, _ = await q.list_jobs("cancelled")
    assert [i.job_id for i in events] == [job_id]


# -- a lost reply of cancel.lua ----------------------------------------------------------------

async def test_cancel_whose_reply_was_lost_answers_the_first_outcome(
        direct: aioredis.Redis, redis_server: RedisServer):
    producer = Queue(direct, "c-lost", lease_timeout=30)
    await producer.enqueue("t", None, job_id="running")
    lease = await producer.claim()
    assert lease is not None and lease.job_id == "running"
    await producer.enqueue("t", None, job_id="waiting")

    pubsub = direct.pubsub()
    await pubsub.subscribe(producer.keys.cancels)
    assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
    try:
        for job_id, first in (("waiting", "cancelled"), ("running", "delivered")):
            async with proxied(redis_server) as (proxy, client):
                q = Queue(client, "c-lost")
                got = await lose_reply(proxy, sha(scripts.CANCEL),
                                       lambda q=q, job_id=job_id: q.cancel(job_id, reason=job_id))
            assert got == first, job_id  # not "finished", what the re-sent call found
        await direct.publish(producer.keys.cancels, "end")
        messages = []
        with anyio.fail_after(5):
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=1)
                if message is None:
                    continue
                if text(message["data"]) == "end":
                    break
                messages.append(text(message["data"]))
    finally:
        await pubsub.aclose()
    assert messages == [f"running {lease.token}"]  # published once
    assert await direct.get(producer.keys.lease("running")) == f"{lease.token}!".encode()
    assert 0 < await direct.pttl(producer.keys.lease("running")) <= 30_000
    info = await producer.job("waiting")
    assert info is not None and (info.state, info.cancel_reason) == ("cancelled", "waiting")
    assert await producer.fail(lease, "x") == "cancelled"
    stats = await producer.stats()
    assert (stats.cancelled, stats.todos, stats.in_progress) == (2, 0, 0)


# -- the command line and the HTTP API ---------------------------------------------------------

async def test_cli_cancel_reports_each_outcome_and_exits_1_for_an_unknown_id(
        real_redis: aioredis.Redis, redis_server: RedisServer):
    url = redis_server.url
    q = Queue(real_redis, "c-cli")
    a = await q.enqueue("t", None, job_id="a")
    b = await q.enqueue("t", None, job_id="b", delay=60)

    def run(*args: str) -> Any:
        return anyio.to_thread.run_sync(lambda: cli(url, *args))

    said = await run("cancel", "-q", "c-cli", a, "--reason", "by hand")
    assert said.returncode == 0, said.stderr
    assert said.stdout.strip() == "a: cancelled (it had not started)"

    said = await run("cancel", "-q", "c-cli", b, "ghost", a, "--json")
    assert said.returncode == 1, said.stderr
    assert [json.loads(line) for line in said.stdout.splitlines()] == [
        {"queue": "c-cli", "job_id": "b", "outcome": "cancelled"},
        {"queue": "c-cli", "job_id": "ghost", "outcome": "unknown"},
        {"queue": "c-cli", "job_id": "a", "outcome": "finished"}]

    listed = await run("jobs", "-q", "c-cli", "--state", "cancelled", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["jobs"]
    assert {(r["job_id"], r["state"]) for r in rows} == {("a", "cancelled"),
                                                          ("b", "cancelled")}

    stats = await run("stats", "-q", "c-cli", "--json")
    assert stats.returncode == 0, stats.stderr
    (row,) = [r for r in json.loads(stats.stdout) if r["queue"] == "c-cli"]
    assert (row["cancelled"], row["todos"], row["delayed"]) == (2, 0, 0)
    info = await q.job(a)
    assert info is not None and info.cancel_reason == "by hand"


async def test_http_cancel_answers_the_outcome_and_refuses_a_bad_request(
        redis: aioredis.Redis):
    q = Queue(redis, "c-web", lease_timeout=30)
    await q.enqueue("t", None, job_id="w/1")  # ids may hold a slash: it goes in the body
    await q.enqueue("t", None, job_id="r1")
    await q.enqueue("t", None, job_id="w2")
    running = await q.claim_many(3)
    assert {lease.job_id for lease in running} == {"w/1", "r1", "w2"}
    for lease in running:
        if lease.job_id != "r1":
            await q.release(lease)
    async with client_of(redis) as api:
        async def cancel(body: Any, name: str = "c-web") -> Any:
            return await api.post(f"/queues/{name}/cancel", json=body)

        answer = await cancel({"job_id": "w/1", "reason": "from the web"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"queue": "c-web", "job_id": "w/1", "outcome": "cancelled"}
        assert (await cancel({"job_id": "r1"})).json()["outcome"] == "delivered"
        assert (await cancel({"job_id": "w/1"})).json()["outcome"] == "finished"
        assert (await cancel({"job_id": "nope"})).json()["outcome"] == "unknown"

        assert (await api.post("/queues/c-web/cancel")).status_code == 422
        assert (await cancel({})).status_code == 422
        assert (await cancel({"job_id": "w2", "surprise": 1})).status_code == 422
        assert (await cancel({"job_id": "w2", "reason": "x" * 4097})).status_code == 422
        assert (await cancel({"job_id": "w2"}, name="no-such-queue")).status_code == 404
        page = (await api.get("/queues/c-web/jobs", params={"state": "cancelled"})).json()
        assert [(j["job_id"], j["cancel_reason"]) for j in page["jobs"]] == [
            ("w/1", "from the web")]
        assert (await api.get("/queues/c-web")).json()["summary"]["cancelled"] == 1
    info = await q.job("w/1")
    assert info is not None and (info.state, info.cancel_reason) == ("cancelled", "from the web")
    info = await q.job("r1")
    assert info is not None and (info.state, info.cancel_reason) == ("in_progress", "cancelled")
    assert await state_of(q, "w2") == "todo"  # no refused request touched it


async def test_doctor_finds_nothing_wrong_with_cancelled_jobs(redis: aioredis.Redis):
    q = Queue(redis, "c-doctor")
    await q.enqueue("t", None, job_id="gone")
    assert await q.cancel("gone") == "cancelled"
    report = Report()
    await check_queue(q, report, repair=True)
    assert [f.check for f in report.problems] == []
    assert await state_of(q, "gone") == "cancelled"  # the repair left it alone


async def test_cancelled_jobs_are_kept_until_purged(redis: aioredis.Redis):
    q = Queue(redis, "c-purge")
    ids = await q.enqueue_many("work", [1, 2, 3])
    for job_id in ids[:2]:
        assert await q.cancel(job_id) == "cancelled"
    assert await q.purge_cancelled([ids[0], ids[2]]) == 1  # ids[2] waits: left alone
    assert await q.job(ids[0]) is None
    assert await q.purge_cancelled() == 1
    stats = await q.stats()
    assert (stats.cancelled, stats.todos) == (0, 1)
    assert await q.job(ids[1]) is None
