"""A queue's controls through the CLI as a subprocess, against a real redis-server:
``queue pause|resume|limits``, ``enqueue --priority/--key/--expires-in`` and what
``stats`` and ``inspect`` show of them."""

from __future__ import annotations

import json
import re
import time

import anyio
import pytest
import redis as syncredis
import redis.asyncio as aioredis

from leaseq import Lease, Queue, Reaper
from leaseq.testing import RedisServer

from .test_cli import cli

pytestmark = pytest.mark.real_redis


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    """The session's server, flushed first (every test owns its queues)."""
    client = syncredis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


def claim(url: str, queue: str) -> Lease | None:
    """One claim from ``queue``, as a worker would make it."""

    async def go() -> Lease | None:
        client = aioredis.Redis.from_url(url)
        try:
            return await Queue(client, queue).claim()
        finally:
            await client.aclose()

    return anyio.run(go)


def sweep(url: str, queue: str) -> None:
    """One reaper sweep of ``queue`` (it ends jobs whose start deadline passed)."""

    async def go() -> None:
        client = aioredis.Redis.from_url(url)
        try:
            await Reaper(Queue(client, queue)).sweep()
        finally:
            await client.aclose()

    anyio.run(go)


def stats_row(url: str, queue: str) -> dict[str, object]:
    run = cli(url, "stats", "-q", queue, "--json")
    assert run.returncode == 0, run.stderr
    (row,) = json.loads(run.stdout)
    return row


def header(table: str) -> str:
    """The header line of a ``stats`` table that fits on one."""
    return next(line for line in table.splitlines() if "todos" in line)


def test_a_paused_queue_gives_no_claims_until_it_is_resumed(url: str):
    assert cli(url, "enqueue", "-q", "held", "t", "1").returncode == 0
    paused = cli(url, "queue", "pause", "-q", "held", "--json")
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout) == {"queue": "held", "paused": True}
    assert claim(url, "held") is None
    row = stats_row(url, "held")
    assert (row["paused"], row["todos"], row["waiting_on_limits"]) == (True, 1, 1)
    wide = cli(url, "stats", "-q", "held", env={"COLUMNS": "200"}).stdout
    assert "held paused" in wide and "on limits" in header(wide)
    # At 80 columns the count goes under the table rather than widening it.
    narrow = cli(url, "stats", "-q", "held", env={"COLUMNS": "80"}).stdout
    assert "on limits" not in header(narrow) and "on limits: held 1" in narrow
    assert max(len(line) for line in narrow.splitlines()) <= 80

    resumed = cli(url, "queue", "resume", "-q", "held")
    assert (resumed.returncode, resumed.stdout) == (0, "resumed queue held\n")
    lease = claim(url, "held")
    assert lease is not None and lease.payload == 1
    assert stats_row(url, "held")["paused"] is False
    # A queue with nothing held back shows the table it always did.
    assert "on limits" not in cli(url, "stats", "-q", "held", env={"COLUMNS": "200"}).stdout


def test_queue_limits_are_set_and_shown_and_none_removes_one(url: str):
    fresh = cli(url, "queue", "limits", "-q", "lim", "--json")
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout) == {
        "queue": "lim", "paused": False, "ordering": "set", "max_in_flight": None,
        "key_concurrency": None, "rate_limit": None, "key_rate": None}
    assert "not known on this server" in fresh.stderr  # showing registers nothing

    stored = {"queue": "lim", "paused": False, "ordering": "fifo", "max_in_flight": 4,
              "key_concurrency": 2, "rate_limit": {"count": 50, "per": 1.0, "burst": 5},
              "key_rate": {"count": 10, "per": 60.0, "burst": 5}}
    set_ = cli(url, "queue", "limits", "-q", "lim", "--ordering", "fifo",
               "--max-in-flight", "4", "--rate", "50/1", "--key-rate", "10/60s:5",
               "--json", env={"LEASEQ_QUEUE_LIMITS_KEY_CONCURRENCY": "2"})
    assert set_.returncode == 0, set_.stderr
    assert json.loads(set_.stdout) == stored
    shown = cli(url, "queue", "limits", "-q", "lim", "--json")
    assert json.loads(shown.stdout) == stored

    # A rate without :BURST gets the library's default burst (50/1: 5). Only the named
    # control changes; the others stay as stored.
    cleared = cli(url, "queue", "limits", "-q", "lim", "--max-in-flight", "none")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.splitlines() == [
        "queue lim: not paused", "  ordering         fifo", "  max in flight    none",
        "  key concurrency  2", "  rate             50/1s",
        "  key rate         10/60s, burst 5"]
    assert stats_row(url, "lim")["ordering"] == "fifo"


@pytest.mark.parametrize("args", [
    ["--rate", "5/x"], ["--rate", "0/1"], ["--rate", "5/0"], ["--key-rate", "5"],
    ["--max-in-flight", "0"], ["--key-concurrency", "-1"], ["--ordering", "lifo"],
])
def test_a_bad_limit_is_one_line_and_exit_2_before_anything_is_stored(
    url: str, args: list[str],
):
    run = cli(url, "queue", "limits", "-q", "bad", *args)
    assert run.returncode == 2, run.stdout
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"leaseq: {args[0]}: ")
    client = syncredis.Redis.from_url(url)
    try:
        assert client.keys("leaseq:{bad}:*") == []
    finally:
        client.close()


def test_the_ordering_of_a_queue_with_jobs_does_not_change(url: str):
    assert cli(url, "enqueue", "-q", "busy", "t", "1").returncode == 0
    run = cli(url, "queue", "limits", "-q", "busy", "--ordering", "fifo")
    assert run.returncode == 1
    assert "cannot change" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_priority_key_and_start_deadline_show_in_inspect(url: str):
    assert cli(url, "queue", "limits", "-q", "ordered", "--ordering", "fifo").returncode == 0
    before = time.time()
    run = cli(url, "enqueue", "-q", "ordered", "t", '{"n": 1}', "--priority", "7",
              "--key", "customer-9", "--expires-in", "3600")
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.strip()
    info = json.loads(cli(url, "inspect", job_id, "--json").stdout)
    assert (info["priority"], info["key"]) == (7, "customer-9")
    assert before + 3590 < info["expires_at"] < time.time() + 3610
    lines = dict(line.split(None, 1) for line in cli(url, "inspect", job_id).stdout
                 .splitlines())
    # Shown as enqueued_at is: local ISO-8601 with its distance by Redis's clock.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[0-9:.]+[+-]\d\d:\d\d \(in (59|60) min\)",
                        lines["expires_at"]), lines["expires_at"]

    streamed = cli(url, "enqueue", "-q", "ordered", "t", "--priority", "9", "--key", "k",
                   stdin="1\n2\n")
    assert streamed.returncode == 0, streamed.stderr
    first = json.loads(cli(url, "inspect", streamed.stdout.split()[0], "--json").stdout)
    assert (first["priority"], first["key"]) == (9, "k")

    on_a_set_queue = cli(url, "enqueue", "-q", "plain", "t", "1", "--priority", "1")
    assert on_a_set_queue.returncode == 1 and "ordering='fifo'" in on_a_set_queue.stderr
    too_high = cli(url, "enqueue", "-q", "ordered", "t", "1", "--priority", "1001")
    assert too_high.returncode == 2


def test_a_job_past_its_start_deadline_is_counted_as_expired(url: str):
    run = cli(url, "enqueue", "-q", "late", "t", "1", "--expires-in", "0.05")
    assert run.returncode == 0, run.stderr
    time.sleep(0.2)
    sweep(url, "late")
    row = stats_row(url, "late")
    assert (row["expired"], row["dead"], row["todos"]) == (1, 1, 0)
    table = cli(url, "stats", "-q", "late", env={"COLUMNS": "200"}).stdout
    assert "expired" in header(table) and "on limits" not in header(table)
