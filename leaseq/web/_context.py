"""What every route of one app shares: the Redis client, the queues it serves and the
serializer of their payloads. Routes take it as the :data:`Ctx` dependency."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request

from ..protocol.codec import Serializer
from ..protocol.keys import QUEUES_KEY
from ..protocol.queue import Queue
from ..protocol.wire import AnyRedis
from . import _reads as reads
from ._rates import FailureCounts


@dataclasses.dataclass
class Context:
    """The queues one app serves, on the caller's Redis client."""

    redis: AnyRedis
    fixed: Sequence[str] | None
    """The queues served when fixed; ``None`` serves every registered queue."""
    serializer: Serializer | None = None
    failures: FailureCounts = dataclasses.field(default_factory=FailureCounts, init=False,
                                                repr=False)
    """The chart's failure counts, shared by every page the app serves."""
    _queues: dict[str, Queue] = dataclasses.field(default_factory=dict, init=False,
                                                  repr=False)

    def queue_of(self, name: str) -> Queue:
        """The :class:`~leaseq.Queue` called ``name``, made once per app."""
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = Queue(self.redis, name, serializer=self.serializer)
        return q

    async def names(self) -> list[str]:
        """The names of the served queues."""
        if self.fixed is not None:
            return list(self.fixed)
        return await reads.registered_queues(self.redis)

    async def known(self, name: str) -> Queue:
        """The served queue ``name``; a 404 when it is not served."""
        if not (name in self.fixed if self.fixed is not None
                else await self.redis.sismember(QUEUES_KEY, name)):
            raise HTTPException(404, f"unknown queue {name!r}")
        return self.queue_of(name)


def attach(app: FastAPI, ctx: Context) -> None:
    """Make ``ctx`` what :data:`Ctx` gives the routes of ``app``."""
    app.state.leaseq = ctx


# async: FastAPI runs a plain function dependency in a worker thread, once per request.
async def _context_of(request: Request) -> Context:
    ctx: Context = request.app.state.leaseq
    return ctx


Ctx = Annotated[Context, Depends(_context_of)]
"""A route parameter that receives the app's :class:`Context`."""
