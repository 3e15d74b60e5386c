"""``leaseq stats``: one table, a JSON document, or a live table with rich."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import anyio
import click
import redis.asyncio as aioredis
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ._admin import registered_queues
from .queue import Queue

_COLUMNS = ("todos", "in_progress", "delayed", "done", "dead")


async def _rows(queues: Sequence[Queue]) -> list[dict[str, Any]]:
    rows = []
    for q in queues:
        s = await q.stats()
        rows.append({
            "queue": q.name, **{c: getattr(s, c) for c in _COLUMNS},
            "oldest_lease_age": await q.oldest_lease_age(),
            "acked_per_second": round(s.done_last_minute / 60, 2),
        })
    return rows


def _table(rows: list[dict[str, Any]], rates: dict[str, float] | None) -> Table:
    table = Table(title="leaseq queues")
    table.add_column("queue")
    for c in _COLUMNS:
        table.add_column(c, justify="right")
    table.add_column("oldest lease", justify="right")
    table.add_column("acked/s" + (" (now)" if rates is not None else " (1 min)"),
                     justify="right")
    for row in rows:
        age = row["oldest_lease_age"]
        rate = rates.get(row["queue"], 0.0) if rates is not None else row["acked_per_second"]
        table.add_row(row["queue"], *(str(row[c]) for c in _COLUMNS),
                      "-" if age is None else f"{age:.1f}s", f"{rate:.1f}")
    return table


async def show(client: aioredis.Redis, names: Sequence[str], watch: bool, interval: float,
               as_json: bool) -> None:
    """Print stats of ``names`` (every registered queue when empty)."""
    if not names:
        names = await registered_queues(client)
    queues = [Queue(client, n) for n in names]
    if not watch:
        rows = await _rows(queues)
        if as_json:
            click.echo(json.dumps(rows))
        elif not rows:
            click.echo("no queues yet")
        else:
            Console().print(_table(rows, None))
        return
    previous: dict[str, tuple[float, int]] = {}
    with Live(_table([], {}), refresh_per_second=4) as live:
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
            live.update(_table(rows, rates))
            await anyio.sleep(interval)
