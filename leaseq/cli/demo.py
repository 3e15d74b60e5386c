"""``leaseq demo``: a queue survives a SIGKILLed worker, shown live.

Uses the Redis given by ``--redis``/``LEASEQ_REDIS_URL`` when it answers, else starts a
private redis-server. Runs real worker processes and a reaper process, kills one worker
while it holds leases, and reports what was redone and what was lost.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import uuid

import anyio
import redis.asyncio as aioredis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..protocol.keys import QUEUES_KEY
from ..protocol.queue import Queue
from ..protocol.wire import redis_failure, text
from ..testing import RedisServer, RedisServerError
from . import connect, exits, util

__all__ = ["run"]

_LEASE = 2.0
_TIMEOUT = 300.0


def run(settings: util.Settings, jobs: int, workers: int, keep: bool = False) -> int:
    """Run the demo; return the process exit code."""
    console = Console()
    server: RedisServer | None = None
    url = settings.redis_url
    if not (settings.redis_url_given and anyio.run(_reachable, url)):
        try:
            server = RedisServer()
            server.start()
        except RedisServerError as exc:
            exits.fail(f"{exc}; or point LEASEQ_REDIS_URL at a running Redis",
                       exits.EXIT_UNREACHABLE)
        url = server.url
        console.print(f"started a private redis-server on {url}")
    else:
        console.print(f"using Redis at {connect.redact(url)}")
    try:
        # A private server dies with the demo: nothing to keep then.
        return anyio.run(_demo, console, url, jobs, workers, keep and server is None)
    finally:
        if server is not None:
            server.close()


async def _reachable(url: str) -> bool:
    client = connect.make_client(url)
    try:
        return bool(await client.ping())
    except Exception as exc:
        if not redis_failure(exc):
            raise
        return False
    finally:
        await client.aclose()


def _spawn(url: str, *args: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "leaseq", "--redis", url, "--log-format", "json",
            "--log-level", "warning", *args]
    return subprocess.Popen(argv,  # noqa: S603 - our own interpreter and module
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def _demo(console: Console, url: str, n: int, workers: int, keep: bool) -> int:
    client = aioredis.Redis.from_url(url)
    name = f"demo-{uuid.uuid4().hex[:8]}"
    q = Queue(client, name, lease_timeout=_LEASE)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ids = await q.enqueue_many(
            "demo.work", [{"i": i, "ms": random.randint(5, 40)} for i in range(n)])
        console.print(f"enqueued {n} jobs on queue [bold]{name}[/] (lease {_LEASE:g} s)")
        _start_processes(url, name, workers, procs)
        console.print(f"started {workers} worker processes and a reaper process")
        started = time.monotonic()
        await _watch(console, q, n, procs[0])
        return await _summary(console, q, ids, n, time.monotonic() - started)
    finally:
        _stop(procs)
        if keep:
            console.print(f"kept queue [bold]{name}[/]: look at it with "
                          f"`leaseq web --queue {name}` or `leaseq stats -q {name}`")
        else:
            await _delete_queue(client, q)
        await client.aclose()


def _start_processes(url: str, name: str, workers: int,
                     procs: list[subprocess.Popen[bytes]]) -> None:
    """Start ``workers`` worker processes, then a reaper process, adding each to ``procs``
    as it starts (so a failed start still stops those already running)."""
    procs.extend(
        _spawn(url, "worker", "leaseq.cli.demo_tasks:HANDLERS", "--queue", name,
               "--concurrency", "20", "--lease-timeout", str(_LEASE), "--no-reaper")
        for _ in range(workers))
    procs.append(_spawn(url, "reaper", "--queue", name, "--interval", "0.5"))


async def _watch(console: Console, q: Queue, n: int, victim: subprocess.Popen[bytes]) -> None:
    """Show progress until all ``n`` jobs are done or dead, SIGKILLing ``victim`` once a
    third of them is done."""
    killed = False
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task("done", total=n)
        with anyio.fail_after(_TIMEOUT):
            while True:
                s = await q.stats()
                progress.update(bar, completed=s.done + s.dead, description=(
                    f"todo {s.todos:>5}  running {s.in_progress:>3}  done"))
                if not killed and s.done >= n // 3:
                    await _kill(progress.console, q, victim)
                    killed = True
                if s.done + s.dead >= n:
                    break
                await anyio.sleep(0.1)


async def _kill(console: Console, q: Queue, victim: subprocess.Popen[bytes]) -> None:
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    # Counted after the kill: a dead process settles nothing, so these are exactly the
    # leases it died holding.
    held_at_kill = await _held_by(q, victim.pid)
    console.print(f"[red]SIGKILL[/] worker pid {victim.pid} while it held "
                  f"{held_at_kill} leases")


async def _summary(console: Console, q: Queue, ids: list[str], n: int,
                   elapsed: float) -> int:
    """Print what became of the ``n`` jobs; return the exit code (a failure if any was
    lost)."""
    infos = await q.jobs(ids)
    done = sum(1 for i in infos if i is not None and i.state == "done")
    dead = sum(1 for i in infos if i is not None and i.state == "dead")
    redone = sum(1 for i in infos if i is not None and i.attempts > 1)
    lost = n - done - dead
    console.print(
        f"\n[bold]summary[/]  jobs {n}  done {done}  dead {dead}  "
        f"redone after the kill {redone}  [bold]lost {lost}[/]  "
        f"throughput {n / elapsed:,.0f} jobs/s  ({elapsed:.1f} s)")
    return exits.EXIT_OK if lost == 0 else exits.EXIT_FAILURE


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the processes still running, then wait for each (SIGKILL after 15 s)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def _delete_queue(client: aioredis.Redis, q: Queue) -> None:
    """Delete every key of the queue and its registry entry."""
    keys = [k async for k in client.scan_iter(match=q.keys.prefix + "*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.srem(QUEUES_KEY, q.name)


async def _held_by(q: Queue, pid: int | None) -> int:
    suffix = f":{pid}"
    ids = [text(m) for m in await q.redis.smembers(q.keys.in_progress)]
    infos = await q.jobs(ids)
    return sum(1 for i in infos if i is not None and (i.owner or "").endswith(suffix)
               and i.lease_token)

