"""The ``dead`` group: list dead jobs, put them back in the queue or delete them."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import redis.asyncio as aioredis

from ..protocol.queue import Queue
from . import exits, util
from .params import QUEUE, Group


@click.group(cls=Group)
def dead() -> None:
    """List, requeue or purge dead jobs."""


@dead.command("list")
@QUEUE
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per job (times in Unix seconds).")
@click.pass_obj
def dead_list(settings: util.Settings, queue: str, limit: int, as_json: bool) -> None:
    """Show dead jobs: id, task, time of death and reason, under a header."""
    from . import stats as _clistats

    async def go(client: aioredis.Redis) -> None:
        await util.warn_unknown_queues(client, [queue])
        q = Queue(client, queue)
        await _clistats.print_dead(client, queue, await q.dead_jobs(limit), as_json)

    util.run(settings, go)


def _dead_jobs(n: int) -> str:
    return f"{n} dead job" if n == 1 else f"{n} dead jobs"


def _confirm(action: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise exits.Failure(f"refusing to {action} without --yes (stdin is not a terminal)")
    if not click.confirm(f"{action}?"):
        raise exits.Failure("aborted")


async def _dead_among(q: Queue, job_ids: list[str]) -> list[bool]:
    async with q.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.sismember(q.keys.dead, job_id)
        return [bool(found) for found in await pipe.execute()]


def _dead_action(verb: str) -> Any:
    @dead.command(verb)
    @QUEUE
    @click.argument("job_ids", nargs=-1)
    @click.option("--all", "all_", is_flag=True, help="Every dead job of the queue.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--json", "as_json", is_flag=True,
                  help=f'Print {{"{verb}d": N, "not_found": [IDS]}}.')
    @click.pass_obj
    def action(settings: util.Settings, queue: str, job_ids: tuple[str, ...], all_: bool,
               yes: bool, as_json: bool) -> None:
        if bool(job_ids) == all_:
            raise click.UsageError("give JOB_IDS or --all (not both)")

        async def go(client: aioredis.Redis) -> int:
            q = Queue(client, queue)
            ids: list[str] | None = None
            missing: list[str] = []
            if all_:
                count = int(await client.scard(q.keys.dead))
            else:
                asked = list(dict.fromkeys(job_ids))
                found = await _dead_among(q, asked)
                ids = [i for i, ok in zip(asked, found, strict=True) if ok]
                missing = [i for i, ok in zip(asked, found, strict=True) if not ok]
                count = len(ids)
            n = 0
            if count:
                _confirm(f"{verb} {_dead_jobs(count)} of queue {queue}", yes)
                n = await (q.requeue_dead(ids) if verb == "requeue" else q.purge_dead(ids))
            if as_json:
                click.echo(json.dumps({f"{verb}d": n, "not_found": missing}))
            elif count or all_:
                click.echo(f"{verb}d {n} job(s)")
            if missing:
                exits.notice(f"not found: {', '.join(missing)} (no dead job of queue {queue} "
                             "has this id)")
                return exits.EXIT_FAILURE
            return exits.EXIT_OK

        sys.exit(util.run(settings, go))

    action.__doc__ = {
        "requeue": "Put dead jobs back in todos with fresh attempts (exit 1 if an id is "
                   "not a dead job of the queue).",
        "purge": "Delete dead jobs for good (exit 1 if an id is not a dead job of the "
                 "queue).",
    }[verb]
    return action


dead_requeue = _dead_action("requeue")
dead_purge = _dead_action("purge")

COMMANDS = (dead,)
"""What this module adds to the ``leaseq`` group."""
