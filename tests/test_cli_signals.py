"""The command line's signals: one receiver for a command's whole life, so a SIGTERM that
arrives as one stage ends (waiting for Redis, building the worker) is not dropped but
stops the next one.

The signals are sent to this test process itself, always while a receiver is open."""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from leaseq import JobContext, Queue, Worker
from leaseq.cli.signals import stop_signals

pytestmark = pytest.mark.real_redis


async def test_a_signal_as_a_stage_ends_is_kept_for_the_next_stage():
    with stop_signals(signal.SIGUSR1) as signals:
        for _ in range(20):
            async def body() -> str:
                # Sent as the body returns: the receiver of a stage that closed here
                # would drop it (the loop reads its self-pipe a tick later).
                os.kill(os.getpid(), signal.SIGUSR1)
                return "done"

            result, got = await signals.until(body)
            if got is None:
                assert result == "done"
                with anyio.fail_after(10):
                    got = await signals.next()
            assert got == signal.SIGUSR1


async def test_until_returns_the_signal_that_ended_the_body():
    with stop_signals(signal.SIGUSR1) as signals:
        async def body() -> str:
            os.kill(os.getpid(), signal.SIGUSR1)
            await anyio.sleep_forever()
            return "never"

        with anyio.fail_after(10):
            assert await signals.until(body) == (None, signal.SIGUSR1)


async def test_a_signal_before_the_worker_was_ready_stops_it_once_it_is(
        real_redis: aioredis.Redis):
    queue = Queue(real_redis, "sig")
    await queue.enqueue_many("t", [None] * 3)
    ran: list[Any] = []

    async def handler(ctx: JobContext, payload: Any) -> None:
        ran.append(payload)

    worker = Worker(queue, {"t": handler}, reaper=False)
    with stop_signals() as signals:
        # Before the worker runs at all: a run that did not see it would never return.
        os.kill(os.getpid(), signal.SIGTERM)
        with anyio.fail_after(30):
            await signals.run_worker(worker)
    stats = await queue.stats()
    assert stats.in_progress == 0 and stats.todos + stats.done == 3


async def test_a_second_signal_stops_the_worker_at_once(real_redis: aioredis.Redis):
    queue = Queue(real_redis, "sig2")
    await queue.enqueue("t", None)
    started = anyio.Event()

    async def handler(ctx: JobContext, payload: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    # A grace period longer than the test's limit: only the second signal ends the run.
    worker = Worker(queue, {"t": handler}, reaper=False, grace_period=600)
    with stop_signals() as signals, anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(signals.run_worker, worker)
            await started.wait()
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
    stats = await queue.stats()
    assert (stats.todos, stats.in_progress) == (1, 0)
