"""Operator commands of the command line: ``jobs``, ``workers``, ``queue purge`` and
``check`` (registered on the ``leaseq`` group by :mod:`leaseq.cli`)."""

from __future__ import annotations

import datetime
import json
import math
import sys
import time
from dataclasses import asdict
from typing import Any

import click
import redis.asyncio as aioredis

from ..models import JobInfo, JobState
from ..protocol.admin import health, registered_queues, server_ms
from ..protocol.queue import Queue
from ..protocol.taskstats import json_ready
from . import exits, util
from .params import QUEUE, QUEUES, Command, Group

_STATES = click.Choice(["todo", "delayed", "in_progress", "done", "dead"])


def _job_row(info: JobInfo, now: float) -> dict[str, Any]:
    return {"job_id": info.job_id, "state": info.state, "task": info.task,
            "attempts": info.attempts, "max_attempts": info.max_attempts,
            "enqueued_at": info.enqueued_at, "finished_at": info.finished_at,
            "lease_ttl": info.lease_ttl, "owner": info.owner,
            "age": None if info.enqueued_at is None else round(now - info.enqueued_at, 3),
            "error": info.error, "dead_reason": info.dead_reason}


@click.command("jobs", cls=Command)
@QUEUE
@click.option("--state", type=_STATES, default="todo", show_default=True,
              help="Which jobs: waiting, delayed (soonest first), running, done (newest "
                   "first) or dead.")
@click.option("--task", default=None, help="Only jobs of this task.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Jobs per page (about: a set is walked one SSCAN step at a time).")
@click.option("--cursor", default=None, help="Where the previous page ended.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def jobs(settings: util.Settings, queue: str, state: JobState, task: str | None, limit: int,
         cursor: str | None, as_json: bool) -> None:
    """List one page of a queue's jobs in one state, with a bounded cost per page on a
    queue of millions; the next page's cursor goes to stderr (or `next_cursor`)."""

    async def go(client: aioredis.Redis) -> int:
        await util.warn_unknown_queues(client, [queue])
        q = Queue(client, queue)
        infos, following = await q.list_jobs(state, task=task, limit=limit, cursor=cursor)
        now = await server_ms(client) / 1000
        rows = [_job_row(info, now) for info in infos]
        if as_json:
            click.echo(json.dumps({"queue": queue, "state": state, "jobs": rows,
                                   "next_cursor": following}))
            return exits.EXIT_OK
        click.echo(f"{'JOB':36}  {'TASK':20}  {'ATTEMPTS':>8}  {'AGE':>7}  DETAIL")
        for row, info in zip(rows, infos, strict=True):
            detail = {"in_progress": f"lease {util.duration(info.lease_ttl)} left, {info.owner}",
                      "dead": info.dead_reason or "", "delayed": "",
                      "done": "", "todo": ""}.get(state, "")
            attempts = f"{row['attempts']}/{row['max_attempts'] or '-'}"
            click.echo(f"{info.job_id:36}  {(info.task or '-'):20}  {attempts:>8}  "
                       f"{util.duration(row['age']):>7}  {detail}")
        if following is not None:
            click.echo(f"more: --cursor {following}", err=True)
        return exits.EXIT_OK

    sys.exit(util.run(settings, go))


@click.command("workers", cls=Command)
@QUEUES
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def workers(settings: util.Settings, queues: tuple[str, ...], as_json: bool) -> None:
    """List the live workers of the given queues (default: every known queue). A worker
    that died drops out within its presence time to live (10 s by default)."""

    async def go(client: aioredis.Redis) -> int:
        names = list(queues) or await registered_queues(client)
        await util.warn_unknown_queues(client, list(queues))
        found: dict[str, Any] = {}
        for name in names:
            for w in await Queue(client, name).workers():
                found.setdefault(w.id, w)
        listed = sorted(found.values(), key=lambda w: w.started_at)
        if as_json:
            click.echo(json.dumps({"workers": [asdict(w) for w in listed]}))
            return exits.EXIT_OK
        now = time.time()
        click.echo(f"{'WORKER':40}  {'QUEUES':20}  {'BUSY':>7}  {'UP':>7}  {'SEEN':>6}  VERSION")
        for w in listed:
            busy = f"{w.in_flight}/{w.concurrency}"
            up, seen = util.duration(now - w.started_at), util.duration(now - w.last_seen)
            click.echo(f"{w.id:40}  {','.join(w.queues):20}  {busy:>7}  {up:>7}  {seen:>6}  "
                       f"{w.version}")
        if not listed:
            click.echo("no live workers", err=True)
        return exits.EXIT_OK

    sys.exit(util.run(settings, go))


@click.group("queue", cls=Group)
def queue_group() -> None:
    """Act on a whole queue."""


@queue_group.command("purge")
@QUEUE
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def queue_purge(settings: util.Settings, queue: str, yes: bool, as_json: bool) -> None:
    """Delete every waiting and delayed job of a queue (running, done and dead jobs are
    untouched)."""

    async def go(client: aioredis.Redis) -> int:
        await util.warn_unknown_queues(client, [queue])
        q = Queue(client, queue)
        stats = await q.stats()
        waiting = stats.todos + stats.delayed
        if not yes and not click.confirm(
                f"delete {waiting} waiting and delayed jobs of queue {queue}?",
                err=True):
            click.echo("nothing deleted", err=True)
            return exits.EXIT_FAILURE
        purged = await q.purge_waiting()
        if as_json:
            click.echo(json.dumps({"queue": queue, "purged": purged}))
        else:
            click.echo(f"purged {purged}")
        return exits.EXIT_OK

    sys.exit(util.run(settings, go))


@click.command("check", cls=Command)
@QUEUE
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def check(settings: util.Settings, queue: str, as_json: bool) -> None:
    """Exit 0 when Redis answers, the queue is known, a reaper swept it in the last
    minute and at least one worker serves it; 1 otherwise, saying why (for container
    health checks). Exit 3 when Redis cannot be reached."""

    async def go(client: aioredis.Redis) -> int:
        checks = await health(Queue(client, queue))
        now_ms = await server_ms(client)
        healthy = all(ok for ok, _ in checks.values())
        if as_json:
            click.echo(json.dumps({
                "queue": queue, "ok": healthy,
                "checks": {k: {"ok": ok, "detail": d} for k, (ok, d) in checks.items()},
                "at": datetime.datetime.fromtimestamp(now_ms / 1000,
                                                      datetime.timezone.utc).isoformat()}))
        else:
            for name, (ok, detail) in checks.items():
                click.echo(f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}")
        return exits.EXIT_OK if healthy else exits.EXIT_FAILURE

    sys.exit(util.run(settings, go))


async def show_task_stats(client: aioredis.Redis, queue: str, minutes: int,
                          as_json: bool) -> int:
    """``leaseq stats --by-task``: one row per task, or the JSON document."""
    await util.warn_unknown_queues(client, [queue])
    stats = await Queue(client, queue).task_stats(minutes=minutes)
    if as_json:
        click.echo(json.dumps(json_ready(stats)))
        return exits.EXIT_OK

    def seconds(value: float | None) -> str:
        if value is None:
            return "-"
        if value == math.inf:
            return ">300s"
        return f"≤{value * 1000:.0f}ms" if value < 1 else f"≤{value:g}s"

    click.echo(f"{'TASK':24} {'WAIT':>6} {'DELAY':>6} {'RUN':>5} {'DEAD':>5}  "
               f"{'ACKED':>6} {'FAILED':>6} {'DIED':>5}  {'P50':>8} {'P95':>8}")
    for task, row in stats["tasks"].items():
        st, tot = row["states"], row["totals"]
        click.echo(f"{task[:24]:24} {st['todo']:>6} {st['delayed']:>6} "
                   f"{st['in_progress']:>5} {st['dead']:>5}  {tot['acked']:>6} "
                   f"{tot['failed']:>6} {tot['dead']:>5}  {seconds(row['p50_s']):>8} "
                   f"{seconds(row['p95_s']):>8}")
    click.echo(f"outcomes over the last {minutes} min; run times are histogram bucket "
               "bounds" + ("; states counted on a sample of 10,000 per state"
                           if stats["sampled"] else ""), err=True)
    return exits.EXIT_OK


COMMANDS = (jobs, workers, queue_group, check)
"""The commands this module adds to the ``leaseq`` group."""
