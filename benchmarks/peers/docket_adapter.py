"""docket (``pydocket``): ``python docket_adapter.py MODE URL N [CONCURRENCY]`` (the second
peers' virtualenv; see ``_clock.py`` for the modes). CONCURRENCY is the worker's
``concurrency`` (default 10); a drain runs ``Worker.run_until_finished``."""

from __future__ import annotations

import asyncio

from docket import Docket, Worker

from _clock import produce, ready, start

args = start()
clock = args.clock()
done = asyncio.Event()


async def noop(stamp: int) -> None:
    if clock.tick(stamp):
        done.set()


async def main() -> None:
    async with Docket(name="bench", url=args.url) as docket:
        docket.register(noop)
        if args.mode == "produce":
            await produce(lambda stamp: docket.add(noop)(stamp), args.n)
            return
        options = {} if args.concurrency is None else {"concurrency": args.concurrency}
        async with Worker(docket, **options) as worker:
            if args.mode == "drain":
                await docket.add_many([docket.call(noop)(0) for _ in range(args.n)])
                ready()
                clock.go()
                await worker.run_until_finished()
            else:
                task = asyncio.ensure_future(worker.run_forever())
                await done.wait()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            clock.report("docket", concurrency=worker.concurrency)


asyncio.run(main())
