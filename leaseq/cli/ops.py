"""Operator commands of the command line: ``jobs``, ``workers``, ``queue purge``,
``queue pause|resume|limits`` and ``check`` (registered on the ``leaseq`` group by
:mod:`leaseq.cli`)."""

from __future__ import annotations

import datetime
import json
import math
import re
import sys
import time
from dataclasses import asdict
from typing import Any

import click
import redis.asyncio as aioredis

from ..exceptions import InvalidInput
from ..models import JobInfo, JobState
from ..protocol.admin import health, registered_queues, server_ms
from ..protocol.controls import ORDERINGS, UNSET, Controls, Rate
from ..protocol.queue import Queue
from ..protocol.taskstats import json_ready
from ..protocol.validate import MAX_COUNT
from . import exits, util
from .params import QUEUE, QUEUES, Command, Group

_STATES = click.Choice(["todo", "delayed", "in_progress", "done", "dead", "cancelled",
                        "blocked"])


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
                   "first), dead, cancelled or blocked (waiting for other jobs).")
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


@queue_group.command("pause")
@QUEUE
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def queue_pause(settings: util.Settings, queue: str, as_json: bool) -> None:
    """Stop every worker claiming from a queue (from its next claim). Enqueues go on,
    running jobs finish and are acked, the reaper still requeues expired leases."""
    sys.exit(util.run(settings, lambda client: _set_paused(client, queue, True, as_json)))


@queue_group.command("resume")
@QUEUE
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def queue_resume(settings: util.Settings, queue: str, as_json: bool) -> None:
    """Let workers claim from a paused queue again (idle ones are woken at once)."""
    sys.exit(util.run(settings, lambda client: _set_paused(client, queue, False, as_json)))


async def _set_paused(client: aioredis.Redis, queue: str, paused: bool,
                      as_json: bool) -> int:
    await util.warn_unknown_queues(client, [queue])
    q = Queue(client, queue)
    await (q.pause() if paused else q.resume())
    if as_json:
        click.echo(json.dumps({"queue": queue, "paused": paused}))
    else:
        click.echo(f"{'paused' if paused else 'resumed'} queue {queue}")
    return exits.EXIT_OK


_RATE = re.compile(r"(?P<count>\d{1,10})/(?P<per>\d{1,9}(?:\.\d{1,3})?)s?"
                   r"(?::(?P<burst>\d{1,10}))?")


def _control(kind: str) -> Any:
    """Parse a ``queue limits`` option: ``none`` removes that control; not given, it is
    left as stored (``UNSET``). A bad value ends the command with one line and exit 2
    before anything is sent (``click.BadParameter`` would print four)."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return UNSET
        try:
            return _control_value(kind, value.strip())
        except (ValueError, InvalidInput) as exc:
            flag = max(param.opts, key=len)
            source = ctx.get_parameter_source(param.name or "")
            if source is click.core.ParameterSource.ENVIRONMENT:
                flag = f"{flag} (from {param.envvar})"
            exits.fail(f"{flag}: {exc}", exits.EXIT_USAGE)

    return parse


def _control_value(kind: str, value: str) -> Any:
    if kind == "ordering":
        if value not in ORDERINGS:
            raise ValueError(f"{value!r} is not one of {', '.join(ORDERINGS)}")
        return value
    if value.lower() == "none":
        return None
    if kind == "count":
        if not value.isdigit() or not 1 <= int(value) <= MAX_COUNT:
            raise ValueError(f"{value!r} is not a whole number from 1 to {MAX_COUNT} "
                             "or 'none'")
        return int(value)
    match = _RATE.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not COUNT/SECONDS[:BURST] (like 50/1 or "
                         "10/60:5) or 'none'")
    burst = match["burst"]
    return Rate(int(match["count"]), float(match["per"]), None if burst is None else int(burst))


def _rate_json(rate: Rate | None) -> dict[str, Any] | None:
    return None if rate is None else {"count": rate.count, "per": rate.per,
                                      "burst": rate.burst}


@queue_group.command("limits")
@QUEUE
@click.option("--ordering", metavar="set|fifo", callback=_control("ordering"),
              help="set: any waiting job may run next; fifo: priority, then enqueue "
                   "order, keys taking turns (only while the queue holds no waiting, "
                   "delayed or running job).")
@click.option("--max-in-flight", metavar="N|none", callback=_control("count"),
              help="Jobs running at once across every worker.")
@click.option("--key-concurrency", metavar="N|none", callback=_control("count"),
              help="Jobs of one key running at once (fifo queues).")
@click.option("--rate", metavar="COUNT/SECONDS[:BURST]|none", callback=_control("rate"),
              help="Job starts per period across every worker, with bursts of up to "
                   "BURST (default: a tenth of a second's worth, at least 2; 1 spaces "
                   "starts evenly), e.g. 50/1 or 600/60:10.")
@click.option("--key-rate", metavar="COUNT/SECONDS[:BURST]|none",
              callback=_control("rate"), help="The same per key (fifo queues).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def queue_limits(settings: util.Settings, queue: str, ordering: Any, max_in_flight: Any,
                 key_concurrency: Any, rate: Any, key_rate: Any, as_json: bool) -> None:
    """Show a queue's ordering and limits (stored with the queue, enforced by every
    worker at claim) and whether it is paused; with options, change those named first
    (`none` removes a limit; the others stay as stored)."""
    named = {name: value for name, value in (
        ("ordering", ordering), ("max_in_flight", max_in_flight),
        ("key_concurrency", key_concurrency), ("rate_limit", rate),
        ("key_rate", key_rate)) if value is not UNSET}

    async def go(client: aioredis.Redis) -> int:
        await util.warn_unknown_queues(client, [queue])
        q = Queue(client, queue)
        if named:
            controls = await q.configure(**named)
        else:
            # A read only (refresh_settings, not prepare): showing registers nothing.
            await q.refresh_settings()
            controls = q.controls
        paused = await q.is_paused()
        if as_json:
            click.echo(json.dumps(_limits_json(queue, controls, paused)))
            return exits.EXIT_OK
        click.echo(f"queue {queue}: {'paused' if paused else 'not paused'}")
        for label, value in (("ordering", controls.ordering),
                             ("max in flight", controls.max_in_flight),
                             ("key concurrency", controls.key_concurrency),
                             ("rate", controls.rate_limit), ("key rate", controls.key_rate)):
            click.echo(f"  {label:<16} {'none' if value is None else value}")
        return exits.EXIT_OK

    sys.exit(util.run(settings, go))


def _limits_json(queue: str, controls: Controls, paused: bool) -> dict[str, Any]:
    return {"queue": queue, "paused": paused, "ordering": controls.ordering,
            "max_in_flight": controls.max_in_flight,
            "key_concurrency": controls.key_concurrency,
            "rate_limit": _rate_json(controls.rate_limit),
            "key_rate": _rate_json(controls.key_rate)}


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
