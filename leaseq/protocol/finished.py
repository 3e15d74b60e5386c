"""Hearing that jobs ended, for :meth:`~leaseq.Queue.wait` and :meth:`~leaseq.Queue.map`
without polling: every step that ends a job (the ack transaction, a fail or bury that
buries it, a cancel, the reaper's moves, a purge) publishes its id on the queue's
``finished`` channel in the same step. One subscription per queue object serves every
waiter of the process, so ten thousand waiters cost one connection, not ten thousand.

A message can be missed (the subscription was down, or came up after the job ended):
each waiter reads the state of its jobs once after it registered, every waiter looks
again after each (re)subscribe, and a slow fallback check runs every :data:`FALLBACK`
seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

import anyio
import structlog

from .wire import (
    close_pubsub,
    error_text,
    is_cluster,
    next_message,
    redis_failure,
    subscribe,
    text,
)

__all__ = ["FALLBACK", "Coalesced", "FinishWatch", "Poke"]

T = TypeVar("T")

log = structlog.get_logger("leaseq.queue")

FALLBACK = 5.0
"""Seconds between a waiter's checks of its jobs when no message came (a lost one)."""
_POLL = 1.0
_BACKOFF = 0.2


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
    """The subscription of one queue's ``finished`` channel, shared by its waiters.

    No task runs in the background: one waiter at a time reads the subscription (the one
    that finds nobody reading) and wakes the others whose jobs it hears of; when it is
    done, it hands the reading over to another waiter. The subscription's connection
    stays open between waits (a new ``wait()`` costs no new connection)."""

    def __init__(self, redis: Any, channel: str) -> None:
        self.redis = redis
        self.channel = channel
        self._waiters: dict[str, set[Poke]] = {}
        self._everyone: set[Poke] = set()
        self._reader = anyio.Lock()
        self._pubsub: Any = None
        self.subscribed = anyio.Event()
        """Set while the subscription is up (waiters then wait longer between looks)."""

    def register(self, job_ids: Iterable[str], poke: Poke) -> None:
        """Wake ``poke`` when one of ``job_ids`` ends, or when it should look again."""
        for job_id in job_ids:
            self._waiters.setdefault(job_id, set()).add(poke)
        self._everyone.add(poke)

    def unregister(self, job_ids: Iterable[str], poke: Poke) -> None:
        """Forget ``poke``; with nobody reading, another waiter is woken to read next."""
        for job_id in job_ids:
            pokes = self._waiters.get(job_id)
            if pokes is not None:
                pokes.discard(poke)
                if not pokes:
                    del self._waiters[job_id]
        self._everyone.discard(poke)
        if not self._reader.locked():
            self._hand_over(poke)

    def _hand_over(self, leaving: Poke) -> None:
        """Wake another waiter, which takes over the reading when it next waits (one
        that is about to leave hands it on in turn, when it unregisters)."""
        for other in self._everyone:
            if other is not leaving:
                other.event.set()
                return

    async def wait(self, poke: Poke, timeout: float) -> None:
        """Wait until ``poke`` is woken or ``timeout`` passes, reading the subscription
        meanwhile if no other waiter does."""
        if self._reader.locked():
            with anyio.move_on_after(timeout):
                await poke.event.wait()
            return
        try:
            async with self._reader:
                # No cancel scope around the read: a read cancelled halfway would cost
                # the subscription its connection; the reads end by their own timeout.
                await self._read_until(poke, anyio.current_time() + timeout)
        finally:
            # Another waiter reads next: it wakes, looks at its jobs, and takes over.
            self._hand_over(poke)

    async def _read_until(self, poke: Poke, deadline: float) -> None:
        cluster = is_cluster(self.redis)
        try:
            if self._pubsub is None:
                # Kept before it subscribes: a failed subscribe is closed below too.
                self._pubsub = pubsub = self.redis.pubsub()
                await subscribe(pubsub, [self.channel], cluster)
                self.subscribed.set()
                # What ended before the subscription was up is looked at again.
                self._poke_everyone()
            while not poke.event.is_set():
                left = deadline - anyio.current_time()
                if left <= 0:
                    return
                message = await next_message(self._pubsub, cluster, min(_POLL, left))
                if message is not None:
                    self._poke(text(message["data"]).split(" "))
        except BaseException as exc:
            # A failed or interrupted read leaves the connection in an unknown state:
            # the next reader subscribes anew (and everyone looks again then).
            broken, self._pubsub = self._pubsub, None
            self.subscribed = anyio.Event()
            if broken is not None:
                await close_pubsub(broken)
            if isinstance(exc, Exception) and redis_failure(exc):
                # Waiters fall back to their slow checks meanwhile.
                log.debug("finished_watch_down", channel=self.channel,
                          error=error_text(exc))
                await anyio.sleep(_BACKOFF)
                return
            raise

    def _poke(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            for poke in self._waiters.get(job_id, ()):
                poke.ids.add(job_id)
                poke.event.set()

    def _poke_everyone(self) -> None:
        for poke in self._everyone:
            poke.everything = True
            poke.event.set()
