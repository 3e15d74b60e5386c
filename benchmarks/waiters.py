"""What waiting costs Redis: N concurrent ``Queue.wait()`` calls on one client while the
jobs are drained, against the same drain with nobody waiting, on one redis-server.

    python -m benchmarks.waiters [--quick] [--waiters 1000 10000]

Per case: Redis commands per waited job (the drain's own commands subtracted), the
waiters' round trips per job (counted on the waiting client's connections), the
connections the waiting client opened, and the time from the last ack to the last
waiter's return. Writes ``results/waiters.json`` and ``waiters.md``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from leaseq import Queue
from leaseq.testing import RedisServer

from . import _results

_BATCH = 500


class _Counting(Connection):
    round_trips = 0
    opened = 0

    async def connect(self) -> None:
        _Counting.opened += 1
        await super().connect()

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        _Counting.round_trips += 1
        await super().send_packed_command(command, check_health)


async def _commands(client: aioredis.Redis) -> int:
    return int((await client.info("stats"))["total_commands_processed"])


async def _drain(q: Queue) -> float:
    """Claim and ack everything in batches; return when the last ack went out."""
    while leases := await q.claim_many(_BATCH):
        await q.ack_many([(lease, None) for lease in leases])
    return time.perf_counter()


async def _case(url: str, n: int, waiters: bool) -> dict[str, Any]:
    admin = aioredis.Redis.from_url(url)
    await admin.flushall()
    worker_client = aioredis.Redis.from_url(url)
    wait_client = aioredis.Redis.from_url(url, connection_class=_Counting)
    producer = Queue(worker_client, "w")
    waiting = Queue(wait_client, "w")
    ids = await producer.enqueue_many("t", [None] * n)
    _Counting.round_trips = _Counting.opened = 0
    finished: list[float] = []

    async def wait_one(job_id: str) -> None:
        await waiting.wait(job_id, timeout=120)
        finished.append(time.perf_counter())

    before = await _commands(admin)
    async with anyio.create_task_group() as tg:
        if waiters:
            for job_id in ids:
                tg.start_soon(wait_one, job_id)
            with anyio.fail_after(30):
                while not waiting.finish_watch().subscribed.is_set():
                    await anyio.sleep(0.01)
        last_ack = await _drain(producer)
    after = await _commands(admin)
    result = {"jobs": n, "waiters": n if waiters else 0, "commands": after - before - 2,
              "waiter_round_trips": _Counting.round_trips,
              "waiter_connections": _Counting.opened,
              "last_return_after_last_ack_ms": round(
                  (max(finished) - last_ack) * 1000, 1) if finished else None}
    for c in (admin, worker_client, wait_client):
        await c.aclose()
    return result


async def _run(sizes: list[int]) -> list[dict[str, Any]]:
    out = []
    with RedisServer() as server:
        for n in sizes:
            bare = await _case(server.url, n, waiters=False)
            waited = await _case(server.url, n, waiters=True)
            extra = waited["commands"] - bare["commands"]
            row = {"jobs": n, "drain_commands": bare["commands"],
                   "with_waiters_commands": waited["commands"],
                   "commands_per_waited_job": round(extra / n, 2),
                   "waiter_round_trips_per_job": round(waited["waiter_round_trips"] / n, 3),
                   "waiter_connections": waited["waiter_connections"],
                   "last_return_after_last_ack_ms": waited["last_return_after_last_ack_ms"]}
            print(row)
            out.append(row)
    return out


def _render(doc: dict[str, Any]) -> str:
    lines = ["# Waiting without polling: what it costs Redis", "",
             f"Command: `{doc['command']}` — {doc['date']}, {doc['seconds']} s.", "",
             f"Machine: {doc['machine']}.", "",
             ("N concurrent `wait()` calls on one client while the jobs are claimed and "
              "acked in batches of 500, against the same drain with nobody waiting. "
              "Commands per waited job is the difference, divided by N."), "",
             ("| jobs and waiters | commands/waited job | waiter round trips/job | waiter "
              "connections | last wait() returned after the last ack |"),
             "|---|---|---|---|---|"]
    lines += [f"| {r['jobs']:,} | {r['commands_per_waited_job']} | "
              f"{r['waiter_round_trips_per_job']} | {r['waiter_connections']} | "
              f"{r['last_return_after_last_ack_ms']} ms |" for r in doc["results"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--waiters", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--dir", default=str(_results.Path(__file__).parent / "results"))
    args = parser.parse_args()
    sizes = [50] if args.quick else args.waiters
    started = time.time()
    results = anyio.run(_run, sizes)
    _results.write("benchmarks.waiters", "waiters-quick" if args.quick else "waiters",
                   results, started, args.dir, _render)


if __name__ == "__main__":
    main()
