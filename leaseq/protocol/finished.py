"""Hearing that jobs ended, for :meth:`~leaseq.Queue.wait` and :meth:`~leaseq.Queue.map`
without polling: every step that ends a job (the ack transaction, a fail or bury that
buries it, a cancel, the reaper's moves, a purge) publishes its id on the queue's
``finished`` channel in the same step. One subscription per queue object serves every
waiter of the process, so ten thousand waiters cost one connection, not ten thousand.

A message can be missed (the subscription was down, or came up after the job ended):
each waiter reads the state of its jobs once after it registered, the subscription asks
every waiter to look again after each (re)subscribe, and a slow fallback check runs
every :data:`FALLBACK` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

import anyio
import structlog

from .wire import error_text, is_cluster, redis_failure, text

__all__ = ["FALLBACK", "Coalesced", "FinishWatch", "Poke"]

T = TypeVar("T")

log = structlog.get_logger("leaseq.queue")

FALLBACK = 5.0
"""Seconds between a waiter's checks of its jobs when no message came (a lost one)."""
_POLL = 1.0
_MAX_BACKOFF = 5.0


class Coalesced(Generic[T]):
    """Reads asked for by many waiters in one turn of the event loop, sent as one:
    ``fetch`` reads many ids at once (in one pipeline). Ten thousand ``wait()`` calls
    started together then cost a few round trips and one connection, not ten thousand
    of each."""

    def __init__(self, fetch: Callable[[list[str]], Awaitable[dict[str, T]]]) -> None:
        self._fetch = fetch
        self._asks: list[tuple[list[str], asyncio.Future[dict[str, T]]]] = []
        self._flush: asyncio.Task[None] | None = None

    async def __call__(self, ids: list[str]) -> dict[str, T]:
        """What ``fetch`` says of ``ids``, read with every other ask of this turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, T]] = loop.create_future()
        self._asks.append((ids, future))
        if self._flush is None:
            self._flush = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        await asyncio.sleep(0)  # let the other waiters of this turn ask too
        asks, self._asks, self._flush = self._asks, [], None
        wanted = list(dict.fromkeys(i for ids, _ in asks for i in ids))
        try:
            got = await self._fetch(wanted)
        except BaseException as exc:
            for _, future in asks:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for ids, future in asks:
            if not future.done():  # its waiter may have been cancelled meanwhile
                future.set_result({i: got[i] for i in ids if i in got})


class Poke:
    """One waiter's wake-up: the ids heard of since it last looked (``everything`` when
    it should look at all of its jobs again), and the event that wakes it."""

    __slots__ = ("event", "everything", "ids")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.ids: set[str] = set()
        self.everything = False

    def take(self) -> tuple[set[str], bool]:
        """What was heard, and whether to look at everything; ready for the next."""
        heard, everything = self.ids, self.everything
        self.ids, self.everything = set(), False
        self.event = anyio.Event()
        return heard, everything


class FinishWatch:
    """The subscription of one queue's ``finished`` channel, shared by its waiters; it
    runs while some waiter is registered."""

    def __init__(self, redis: Any, channel: str) -> None:
        self.redis = redis
        self.channel = channel
        self._waiters: dict[str, set[Poke]] = {}
        self._everyone: set[Poke] = set()
        self._task: asyncio.Task[None] | None = None
        self.subscribed = anyio.Event()
        """Set once the subscription is up (a waiter looks again then)."""

    def register(self, job_ids: Iterable[str], poke: Poke) -> None:
        """Set ``poke`` when one of ``job_ids`` ends, or when every waiter should look
        again (after a resubscribe); start the subscription if it is not running."""
        for job_id in job_ids:
            self._waiters.setdefault(job_id, set()).add(poke)
        self._everyone.add(poke)
        if self._task is None or self._task.done():
            self.subscribed = anyio.Event()
            self._task = asyncio.get_running_loop().create_task(self._listen())

    def unregister(self, job_ids: Iterable[str], poke: Poke) -> None:
        """Forget ``poke``; the subscription stops with its last waiter."""
        for job_id in job_ids:
            pokes = self._waiters.get(job_id)
            if pokes is not None:
                pokes.discard(poke)
                if not pokes:
                    del self._waiters[job_id]
        self._everyone.discard(poke)
        if not self._everyone and self._task is not None:
            self._task.cancel()
            self._task = None

    def _poke(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            for poke in self._waiters.get(job_id, ()):
                poke.ids.add(job_id)
                poke.event.set()

    def _poke_everyone(self) -> None:
        for poke in self._everyone:
            poke.everything = True
            poke.event.set()

    async def _listen(self) -> None:
        cluster = is_cluster(self.redis)
        backoff = 0.05
        while True:
            pubsub = self.redis.pubsub()
            try:
                if cluster:
                    await pubsub.ssubscribe(self.channel)
                else:
                    await pubsub.subscribe(self.channel)
                self.subscribed.set()
                # What ended before the subscription was up is looked at again.
                self._poke_everyone()
                backoff = 0.05
                while True:
                    if cluster:
                        message = await pubsub.get_sharded_message(
                            ignore_subscribe_messages=True, timeout=_POLL)
                    else:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=_POLL)
                    if message is not None and message.get("type") in ("message",
                                                                          "smessage"):
                        self._poke(text(message["data"]).split(" "))
            except Exception as exc:
                if not redis_failure(exc):
                    log.error("finished_watch_failed", channel=self.channel,
                              error=error_text(exc))
                    raise
                # Waiters fall back to their slow checks meanwhile.
                log.debug("finished_watch_down", channel=self.channel,
                          error=error_text(exc), retry_in=backoff)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    try:
                        await pubsub.aclose()
                    except Exception as exc:
                        if not redis_failure(exc):
                            raise
