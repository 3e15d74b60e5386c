"""The floor: a bare LPUSH/BRPOP loop, no leases, no acks, no reliability.

``python bare_adapter.py MODE URL N [CONCURRENCY]`` (leaseq's virtualenv: redis.asyncio
with hiredis; see ``_clock.py`` for the modes). CONCURRENCY coroutines (default 1) each
loop on ``BRPOP`` over one connection pool and decode the job's JSON.
"""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from _clock import produce, ready, start

KEY = "bare"
args = start()
clock = args.clock()
done = asyncio.Event()
calls = 0


def job(stamp: int) -> bytes:
    return json.dumps({"task": "t", "payload": stamp}).encode()


async def loop(r: aioredis.Redis) -> None:
    global calls
    while not done.is_set():
        calls += 1
        popped = await r.brpop([KEY], timeout=1)
        if popped is not None and clock.tick(json.loads(popped[1])["payload"]):
            done.set()


async def work(r: aioredis.Redis, concurrency: int) -> None:
    tasks = [asyncio.ensure_future(loop(r)) for _ in range(concurrency)]
    await done.wait()
    clock.report("bare", concurrency=concurrency, round_trips=calls)
    for task in tasks:
        task.cancel()
    # The coroutines still blocked in BRPOP: closing their connections ends them at once.
    await r.connection_pool.disconnect(inuse_connections=True)
    await asyncio.gather(*tasks, return_exceptions=True)


async def main() -> None:
    concurrency = args.concurrency or 1
    r = aioredis.Redis.from_url(args.url, max_connections=concurrency + 2)
    if args.mode == "produce":
        await produce(lambda stamp: r.lpush(KEY, job(stamp)), args.n)
    else:
        if args.mode == "drain":
            for offset in range(0, args.n, 1000):
                await r.lpush(KEY, *[job(0)] * min(1000, args.n - offset))
            ready()
            clock.go()
        await work(r, concurrency)
    await r.aclose()


asyncio.run(main())
