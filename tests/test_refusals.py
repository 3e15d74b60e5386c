"""A Redis that answers but refuses — OOM, BUSY, MISCONF, READONLY — is waited out, not
fatal: the worker keeps running, each part of it logs one ``redis_unavailable`` per
refusal episode and one ``redis_recovered`` after it, and once the refusal ends every job
is done. Each test runs on a redis-server of its own (``tests/helpers/refusals.py``)."""

from __future__ import annotations

import inspect
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError
from structlog.testing import capture_logs

from leaseq import Backoff, JobContext, Queue, Worker
from leaseq.testing import RedisServer

from .helpers.refusals import (
    REFUSALS,
    Busy,
    OutOfMemory,
    ReadOnly,
    Refusal,
    error_code,
    refusal_server,
)

pytestmark = pytest.mark.real_redis

COMPONENTS = {"claim", "ack", "heartbeat", "settle", "release", "reaper", "wait",
              "presence"}
"""The parts of a worker that report refusals (the ``component`` field)."""

MEETS: dict[str, set[str]] = {
    # Claims, heartbeats, settles and sweeps still go through under OOM (their scripts'
    # first write is not a deny-oom command); the ack's MULTI starts with HSET.
    "OOM": {"ack"},
    # The claim loop may sit in a BLPOP that the busy server answers only afterwards.
    "BUSY": {"ack", "settle", "heartbeat", "reaper"},
    "MISCONF": {"claim", "ack", "settle", "heartbeat"},
    "READONLY": {"claim", "ack", "settle", "heartbeat"},
}
"""The components that surely meet each refusal in the scenario of
:func:`test_worker_rides_out_a_refusal_and_logs_it_once_per_component` (the reaper
writes, and so meets OOM, MISCONF and READONLY, only when a lease has expired)."""

JOBS = 20
CONCURRENCY = 8
HELD = 6
"""Runs that wait for the refusal: 0-1 keep running through it (heartbeats), 2-3 fail
(a settle), 4-5 return (an ack)."""
LEASE = 5.0
HOLD_REFUSALS = 12
"""Replies the server must have refused before a refusal is healed: more than one per
component, so that one event per component proves the rest were suppressed."""
NO_WAIT = Backoff(base=0.0, jitter=0.0)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server of the test's own that every refusal helper can be applied to."""
    with refusal_server() as s:
        yield s


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(server.url)
    try:
        yield c
    finally:
        await c.aclose()


def make_refusal(kind: type[Refusal], server: RedisServer) -> Refusal:
    # A busy loop long enough for every component to meet it, ending by itself.
    return Busy(server, seconds=2.5) if kind is Busy else kind(server)


# -- the helpers themselves -----------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", REFUSALS, ids=lambda k: k.code)
async def test_helper_makes_writes_fail_with_its_error_and_heals_keeping_the_data(
    server: RedisServer, client: aioredis.Redis, kind: type[Refusal],
):
    """Each helper really produces its refusal: a plain ``SET`` (and one inside MULTI)
    raises the redis-py exception of that error code; after ``off`` writes are accepted
    and the data written before are still there. Twice in a row, as the chaos scenario
    cycles them."""
    async def set_in_multi() -> None:
        async with client.pipeline(transaction=True) as pipe:
            pipe.set("x", "2")
            await pipe.execute()

    await client.set("kept", "before")
    for _ in range(2):
        refusal = kind(server)
        await refusal.on()
        with pytest.raises(kind.error) as refused:
            await client.set("x", "1")
        assert error_code(refused.value) == kind.code
        with pytest.raises(kind.error) as in_multi:
            await set_in_multi()
        assert error_code(in_multi.value) == kind.code
        await refusal.off()
        assert await client.set("x", "3")
        assert await client.get("kept") == b"before"
        assert await refusal.refused() >= 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", REFUSALS, ids=lambda k: k.code)
async def test_which_queue_calls_each_refusal_refuses(
    server: RedisServer, client: aioredis.Redis, kind: type[Refusal],
):
    """What the worker meets under each refusal: every queue call either goes through or
    is refused with the refusal's own code; OOM refuses at least enqueues and acks (a
    script is refused only if its first write is a deny-oom command, so claims, settles
    and heartbeats may pass: why ``MEETS['OOM']`` is only the ack); BUSY, MISCONF and
    READONLY refuse them all."""
    q = Queue(client, "calls", lease_timeout=30.0)
    await q.enqueue_many("t", list(range(10)))
    held = await q.claim_many(3)
    outcome: dict[str, str | None] = {}

    async def attempt(name: str, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            await call()
            outcome[name] = None
        except ResponseError as exc:
            outcome[name] = error_code(exc)

    async with make_refusal(kind, server):
        await attempt("enqueue", lambda: q.enqueue("t", 99))
        await attempt("claim", lambda: q.claim_many(1))
        await attempt("extend", lambda: q.extend_many(held[:1]))
        await attempt("ack", lambda: q.ack_many([(held[0], "r")]))
        await attempt("fail", lambda: q.fail(held[1], "boom", retry_in=0))
        await attempt("release", lambda: q.release(held[2]))
    refused = {name for name, code in outcome.items() if code is not None}
    assert {code for code in outcome.values() if code is not None} <= {kind.code}, outcome
    if kind is OutOfMemory:
        # Whether a script is refused depends on its first write (claim, settle, extend
        # may pass); the ack's MULTI and the enqueue start with deny-oom writes.
        assert {"enqueue", "ack"} <= refused, outcome
    else:
        assert refused == set(outcome), outcome


# -- the worker under a refusal ---------------------------------------------------------------


class Run:
    """``worker.run()`` in a task, recording how it ended instead of raising."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.returned = anyio.Event()

    async def __call__(self) -> None:
        try:
            await self.worker.run(handle_signals=False)
        except Exception as exc:  # reported by the test, with where it came from
            self.error = exc
        finally:
            self.returned.set()

    def check(self) -> None:
        if self.error is not None:
            pytest.fail(f"Worker.run raised {describe(self.error)}")
        if self.returned.is_set():
            pytest.fail("Worker.run returned before it was stopped")


def describe(exc: BaseException) -> str:
    """``Type: message (leaseq frames)`` for each leaf of an exception group."""
    inner = getattr(exc, "exceptions", None)  # an exception group
    if isinstance(inner, tuple):
        return "; ".join(describe(e) for e in inner)
    frames = [f"{Path(f.filename).stem}.{f.name}"
              for f in traceback.extract_tb(exc.__traceback__) if "/leaseq/" in f.filename]
    message = str(exc)
    message = message if len(message) <= 160 else message[:157] + "..."
    return f"{type(exc).__name__}: {message} (via {' > '.join(dict.fromkeys(frames))})"


async def until(run: Run | None, condition: Callable[[], bool | Awaitable[bool]], what: str,
                timeout: float = 20.0) -> None:
    """Wait for ``condition``; fail at once if the worker crashed, or after ``timeout``."""
    with anyio.move_on_after(timeout):
        while True:
            if run is not None:
                run.check()
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return
            await anyio.sleep(0.01)
    pytest.fail(f"no {what} within {timeout} s")


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def per_component(logs: list[dict[str, Any]], name: str) -> Counter[str | None]:
    return Counter(e.get("component") for e in events(logs, name))


async def drained(q: Queue, done: int) -> bool:
    try:
        s = await q.stats()
    except RedisError:
        return False
    return (s.done, s.todos, s.in_progress, s.delayed) == (done, 0, 0, 0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", REFUSALS, ids=lambda k: k.code)
async def test_worker_rides_out_a_refusal_and_logs_it_once_per_component(
    server: RedisServer, client: aioredis.Redis, kind: type[Refusal],
):
    """A worker whose acks, settles, heartbeats, claims and sweeps meet a refusal
    mid-run keeps running (``run()`` never raises); each component logs exactly one
    ``redis_unavailable`` (with ``component`` and ``error``) for the whole episode,
    though the server refused many of its calls, and one ``redis_recovered`` (with
    ``failures`` and ``seconds``) after it; once the refusal ends all 20 jobs are done."""
    q = Queue(client, f"refusal-{kind.code.lower()}", lease_timeout=LEASE, max_attempts=10)
    await q.enqueue_many("work", [{"n": i} for i in range(JOBS)])
    refusal = make_refusal(kind, server)
    gate, healed = anyio.Event(), anyio.Event()
    started: list[str] = []

    # `logs` is the capture_logs() list below (the closures read it at call time).
    def recovered(component: str) -> bool:
        return any(e.get("component") == component for e in events(logs, "redis_recovered"))

    def unavailable(component: str) -> bool:
        return any(e.get("component") == component for e in events(logs, "redis_unavailable"))

    async def work(ctx: JobContext, payload: dict[str, int]) -> int:
        index = len(started)
        started.append(ctx.job_id)
        if ctx.attempt == 1 and index < HELD:
            await gate.wait()
            if index < 2:
                # Keep running through the refusal and past the heartbeat's recovery.
                await healed.wait()
                with anyio.move_on_after(10):
                    await until(None, lambda: not unavailable("heartbeat")
                                or recovered("heartbeat"), "heartbeat recovery")
            elif index < 4:
                raise RuntimeError("failed while Redis refuses: the settle meets it")
        return payload["n"]

    worker = Worker(q, {"work": work}, concurrency=CONCURRENCY, reaper=True,
                    reaper_interval=0.1, poll_interval=0.2, heartbeat_fraction=0.1,
                    backoff=NO_WAIT, grace_period=5.0)
    run = Run(worker)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            try:
                # Mid-run: the held jobs wait, every other job is done, slots are free.
                await until(run, lambda: len(started) >= HELD, "held jobs started")
                await until(run, lambda: drained_but(q, HELD), "the other jobs done")
                await refusal.on()
                gate.set()
                for component in sorted(MEETS[kind.code]):
                    await until(run, lambda c=component: unavailable(c),
                                f"redis_unavailable from {component}")
                if isinstance(refusal, Busy):
                    await refusal.wait_over()  # the loop ends by itself; INFO is refused
                else:
                    await until(run, _refused_at_least(refusal, HOLD_REFUSALS),
                                f"{HOLD_REFUSALS} refused replies")
            finally:
                await refusal.off()
                healed.set()
            assert await refusal.refused() >= HOLD_REFUSALS
            await until(run, lambda: drained(q, JOBS), "every job done", timeout=60)
            hit = set(per_component(logs, "redis_unavailable"))
            for component in sorted(c for c in hit if c is not None):
                await until(run, lambda c=component: recovered(c),
                            f"redis_recovered from {component}")
            run.check()
            worker.stop()
            with anyio.fail_after(30):
                await run.returned.wait()
    assert run.error is None, describe(run.error)
    stats = await q.stats()
    assert (stats.done, stats.dead, stats.todos, stats.in_progress) == (JOBS, 0, 0, 0)

    down = per_component(logs, "redis_unavailable")
    assert set(down) <= COMPONENTS, f"redis_unavailable without a known component: {down}"
    assert MEETS[kind.code] <= set(down), down
    assert all(n == 1 for n in down.values()), f"more than one event per episode: {down}"
    for event in events(logs, "redis_unavailable"):
        assert event["log_level"] == "warning" and event.get("error"), event
    up = events(logs, "redis_recovered")
    assert Counter(e["component"] for e in up) == Counter(dict.fromkeys(down, 1)), up
    for event in up:
        first_down = next(i for i, e in enumerate(logs) if e["event"] == "redis_unavailable"
                          and e.get("component") == event["component"])
        assert logs.index(event) > first_down, event
        assert event["log_level"] == "info" and event["failures"] >= 1, event
        assert event["seconds"] >= 0, event
    # More failed calls than events: the repeats of the episode were suppressed.
    assert sum(e["failures"] for e in up) > len(up), up


async def drained_but(q: Queue, running: int) -> bool:
    s = await q.stats()
    return (s.done, s.todos, s.in_progress) == (JOBS - running, 0, running)


def _refused_at_least(refusal: Refusal, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await refusal.refused() >= n

    return check


@pytest.mark.timeout(90)
async def test_stop_during_a_refusal_returns_promptly_and_loses_nothing(
    server: RedisServer, client: aioredis.Redis,
):
    """``stop()`` while the server is READONLY: running jobs are cancelled after the grace
    period and their releases are refused; ``run()`` still returns within the grace
    period plus a bounded release time, the ``release`` component logs one
    ``redis_unavailable`` for all four refused releases, and after the refusal another
    worker finds the unreleased jobs (their leases expired) and finishes all of them."""
    q = Queue(client, "refusal-stop", lease_timeout=2.0)
    ids = await q.enqueue_many("work", list(range(8)))
    started: list[str] = []
    first_phase = True

    async def work(ctx: JobContext, payload: int) -> int:
        started.append(ctx.job_id)
        if first_phase:
            await anyio.sleep(60)
        return payload

    worker = Worker(q, {"work": work}, concurrency=4, reaper=False, grace_period=0.5,
                    poll_interval=0.2)
    run = Run(worker)
    refusal = ReadOnly(server)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            try:
                await until(run, lambda: len(started) >= 4, "four jobs running")
                await refusal.on()
                worker.stop()
                with anyio.move_on_after(30) as bound:
                    await run.returned.wait()
                assert not bound.cancelled_caught, (
                    "Worker.run did not return within 30 s of stop() while Redis refused "
                    "writes")
            finally:
                await refusal.off()
    assert run.error is None, describe(run.error)
    down = per_component(logs, "redis_unavailable")
    assert down["release"] == 1, down
    assert all(n == 1 for n in down.values()), down

    first_phase = False
    rescuer = Worker(q, {"work": work}, concurrency=4, reaper=True, reaper_interval=0.1,
                     poll_interval=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: rescuer.run(handle_signals=False))
        await until(None, lambda: drained(q, len(ids)), "every job done", timeout=30)
        rescuer.stop()
    stats = await q.stats()
    assert (stats.done, stats.dead) == (8, 0)
