"""What the read commands print: the ``stats`` table (once, as JSON, or live with rich),
a job for ``inspect`` and the ``dead list`` table, with times shown as local ISO-8601
and ages measured by Redis's clock."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import anyio
import click
import redis.asyncio as aioredis
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..models import JobInfo
from ..protocol.admin import registered_queues, server_ms
from ..protocol.queue import Queue
from . import util
from .signals import stop_signals

_COLUMNS = ("todos", "in_progress", "delayed", "done", "dead")
_CONTROLS = ("paused", "ordering", "holding", "waiting_on_limits", "keys_waiting",
             "keys_parked", "expired", "cancelled", "blocked")
"""The stats of a queue's controls (pause, limits, keys) its JSON row also holds."""


# -- times, ages and rates ------------------------------------------------------------------


def local_time(ts: float | None, timespec: str = "seconds") -> str:
    """``ts`` (Unix seconds) as local ISO-8601 with its UTC offset; ``-`` when missing."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec=timespec)


def age(seconds: float) -> str:
    """``3.2 s ago``, ``5 min ago``, ``in 2.0 h`` (negative: in the future)."""
    span = abs(seconds)
    if span < 10:
        shown = f"{span:.1f} s"
    elif span < 60:
        shown = f"{span:.0f} s"
    elif span < 3600:
        shown = f"{span / 60:.0f} min"
    elif span < 86400:
        shown = f"{span / 3600:.1f} h"
    else:
        shown = f"{span / 86400:.1f} d"
    return f"in {shown}" if seconds < 0 else f"{shown} ago"


def moment(ts: float | None, now: float, timespec: str = "seconds") -> str:
    """Local time with its age by ``now`` (Redis's clock), or ``-``."""
    if ts is None:
        return "-"
    return f"{local_time(ts, timespec)} ({age(now - ts)})"


def rate(per_second: float) -> str:
    """A throughput with the digits that matter: 0.03, 4.25, 12.5, 1234."""
    if per_second <= 0:
        return "0"
    if per_second < 0.01:
        return "<0.01"
    if per_second < 10:
        return f"{per_second:.2f}"
    if per_second < 100:
        return f"{per_second:.1f}"
    return f"{per_second:.0f}"


# -- stats ----------------------------------------------------------------------------------


async def _rows(queues: Sequence[Queue]) -> list[dict[str, Any]]:
    rows = []
    for q in queues:
        s = await q.stats()
        rows.append({
            "queue": q.name, **{c: getattr(s, c) for c in _COLUMNS},
            **{c: getattr(s, c) for c in _CONTROLS},
            "oldest_lease_age": await q.oldest_lease_age(),
            "acked_per_second": round(s.done_last_minute / 60, 2),
        })
    return rows


def _table(rows: list[dict[str, Any]], rates: dict[str, float] | None,
           console: Console | None = None) -> Table:
    """The stats table. Columns of the jobs held back by a limit or the pause and of
    those expired before start appear only when a queue shown has any; when they would
    not fit ``console``, the same counts go to a line under the table instead (eight
    columns already fill 80)."""
    held = any(row["paused"] or row["waiting_on_limits"] for row in rows)
    expired = any(row["expired"] for row in rows)
    table = _build(rows, rates, held, expired)
    if console is not None and (held or expired):
        unbounded = console.options.update_width(10_000)
        if console.measure(table, options=unbounded).minimum > console.width:
            table = _build(rows, rates, False, False)
            table.caption = _notes(rows)
    return table


def _build(rows: list[dict[str, Any]], rates: dict[str, float] | None, held: bool,
           expired: bool) -> Table:
    table = Table(title="leaseq queues")
    # Headers may wrap at spaces but are never cut; long queue names fold.
    table.add_column("queue", overflow="fold")
    for c in _COLUMNS:
        table.add_column(c, justify="right", no_wrap=True, min_width=len(c))
    if held:
        table.add_column("on limits", justify="right", min_width=len("limits"))
    if expired:
        table.add_column("expired", justify="right", min_width=len("expired"))
    table.add_column("oldest lease", justify="right", min_width=len("oldest"))
    table.add_column("acked/s" + (" (now)" if rates is not None else " (1 min)"),
                     justify="right", min_width=len("acked/s"))
    for row in rows:
        oldest = row["oldest_lease_age"]
        now = rates.get(row["queue"], 0.0) if rates is not None else row["acked_per_second"]
        # Text, not markup: a queue name is never read as rich's [style] tags.
        name = Text(row["queue"])
        if row["paused"]:
            name.append(" paused", style="bold yellow")
        extra = ([str(row["waiting_on_limits"])] if held else []) + (
            [str(row["expired"])] if expired else [])
        table.add_row(name, *(str(row[c]) for c in _COLUMNS), *extra,
                      "-" if oldest is None else f"{oldest:.1f}s", rate(now))
    return table


def _notes(rows: list[dict[str, Any]]) -> str:
    """The held back and expired counts of the queues that have any, as one line."""
    held = [f"{row['queue']} {row['waiting_on_limits']}" for row in rows
            if row["paused"] or row["waiting_on_limits"]]
    expired = [f"{row['queue']} {row['expired']}" for row in rows if row["expired"]]
    return " · ".join(([f"on limits: {', '.join(held)}"] if held else [])
                      + ([f"expired before start: {', '.join(expired)}"] if expired else []))


async def show(client: aioredis.Redis, names: Sequence[str], watch: bool, interval: float,
               as_json: bool) -> None:
    """Print stats of ``names`` (every registered queue when empty). ``watch`` refreshes
    a live table until Ctrl-C, which ends it quietly."""
    if names:
        await util.warn_unknown_queues(client, names)
    else:
        names = await registered_queues(client)
    queues = [Queue(client, n) for n in names]
    if not watch:
        rows = await _rows(queues)
        if as_json:
            click.echo(json.dumps(rows))
        elif not rows:
            click.echo("no queues yet")
        else:
            console = Console()
            console.print(_table(rows, None, console))
        return

    async def live() -> None:
        previous: dict[str, tuple[float, int]] = {}
        with Live(_table([], {}), refresh_per_second=4) as shown:
            while True:
                rows = await _rows(queues)
                now = time.monotonic()
                rates: dict[str, float] = {}
                for row in rows:
                    finished = row["done"] + row["dead"]
                    if row["queue"] in previous:
                        then, before = previous[row["queue"]]
                        rates[row["queue"]] = max(0.0, (finished - before) / (now - then))
                    previous[row["queue"]] = (now, finished)
                shown.update(_table(rows, rates, shown.console))
                await anyio.sleep(interval)

    with stop_signals(signal.SIGINT) as signals:
        await signals.until(live)


# -- inspect --------------------------------------------------------------------------------


def job_dict(queue: str, info: JobInfo) -> dict[str, Any]:
    """A job as a JSON-ready dict (times stay Unix seconds, for scripts)."""
    out: dict[str, Any] = {"queue": queue}
    for name in info.__slots__:
        value = getattr(info, name)
        out[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return out


def _shown(key: str, value: Any, info: JobInfo, now: float) -> str:
    if key in ("enqueued_at", "finished_at", "expires_at"):
        return moment(value, now, "milliseconds")
    if key == "lease_ttl":
        return "-" if value is None else f"{value:.1f} s left"
    if key == "payload":
        return json.dumps(value, default=str)
    if key == "result":
        return json.dumps(value, default=str) if info.state == "done" else "-"
    if value is None or value == ():
        return "-"
    if isinstance(value, tuple):  # ids, such as those it was enqueued after
        return " ".join(map(str, value))
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)


async def print_job(client: aioredis.Redis, queue: str, info: JobInfo,
                    as_json: bool) -> None:
    """``inspect``'s output: one JSON object, or one aligned ``field  value`` per line."""
    data = job_dict(queue, info)
    if as_json:
        click.echo(json.dumps(data, default=str))
        return
    now = await server_ms(client) / 1000
    width = max(len(k) for k in data)
    for key, value in data.items():
        lines = _shown(key, value, info, now).splitlines() or [""]
        click.echo(f"{key:<{width}}  {lines[0]}")
        for more in lines[1:]:
            click.echo(f"{'':<{width}}  {more}")


# -- dead list ------------------------------------------------------------------------------


async def print_dead(client: aioredis.Redis, queue: str, infos: Sequence[JobInfo],
                     as_json: bool) -> None:
    """``dead list``'s output: JSON lines, or a table with a header: id, task, time of
    death (local, with its age) and the first line of the reason."""
    if as_json:
        for info in infos:
            click.echo(json.dumps(job_dict(queue, info), default=str))
        return
    if not infos:
        click.echo(f"no dead jobs in queue {queue}")
        return
    now = await server_ms(client) / 1000
    rows = [("JOB ID", "TASK", "DIED", "REASON")]
    for info in infos:
        reason = info.dead_reason.splitlines()[0] if info.dead_reason else "?"
        rows.append((info.job_id, info.task or "?", moment(info.finished_at, now), reason))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
                   + "  " + row[3])
