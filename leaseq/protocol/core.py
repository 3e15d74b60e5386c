"""What every part of :class:`~leaseq.Queue` shares: its name, client, keys and
settings (given, stored with the queue, or the defaults), the one-time server checks
(:meth:`QueueCore.prepare`), and the durability knob's wait for replicas."""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

import structlog
from redis.exceptions import RedisError, ResponseError

from ..exceptions import InvalidInput, LeaseqError
from . import controls as _controls
from . import scripts, tx, validate
from . import settings as _settings
from .codec import JsonSerializer, Serializer
from .controls import UNSET, Controls, Rate
from .finished import FinishWatch
from .keys import QUEUES_KEY, QueueKeys, validate_queue_name
from .settings import STORED, Stored
from .wire import (
    AnyRedis,
    is_cluster,
    text,
)

__all__ = ["EnqueueTracer", "QueueCore"]

log = structlog.get_logger("leaseq.queue")



async def _cluster_wait(cluster: Any, key: str, replicas: int, timeout_ms: int) -> int:
    """The marker write and ``WAIT`` on one connection to the master of ``key``'s slot
    (redis-py's cluster client would send ``WAIT`` to every node and add the replies)."""

    async def marker_then_wait(conn: Any) -> int:
        await conn.send_packed_command(conn.pack_commands([
            ("HINCRBY", key, "sync", 1), ("WAIT", replicas, timeout_ms)]))
        await conn.read_response()
        return int(await conn.read_response())

    return await tx.on_slot_node(cluster, key, marker_then_wait)


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _decodes_responses(redis: Any) -> bool:
    get_encoder = getattr(redis, "get_encoder", None)
    return bool(get_encoder is not None and getattr(get_encoder(), "decode_responses", False))


class EnqueueTracer(Protocol):
    """What a queue asks of a tracer (:class:`leaseq.otel.Tracing` is one): a span
    around each enqueue call, and the trace context (text) to store with its jobs."""

    def enqueued(self, queue: str, task: str, jobs: int) -> AbstractContextManager[str]:
        """Entered around one enqueue call; yields the context to store ('' = none)."""


class QueueCore:
    """The configuration and server state of a queue; see :class:`~leaseq.Queue`, which
    documents the arguments. The modules that read or administer a queue take a
    ``QueueCore``, so they never depend on the whole of ``Queue``."""

    def __init__(
        self,
        redis: AnyRedis,
        name: str,
        *,
        lease_timeout: float | None = None,
        max_attempts: int | None = None,
        serializer: Serializer | None = None,
        done_ttl: float | Stored | None = STORED,
        done_max: int | Stored | None = STORED,
        owner: str | None = None,
        replicas: int = 0,
        replica_timeout: float = 1.0,
        tracer: EnqueueTracer | None = None,
        ordering: str = UNSET,
        max_in_flight: int | None = UNSET,
        key_concurrency: int | None = UNSET,
        rate_limit: Rate | None = UNSET,
        key_rate: Rate | None = UNSET,
        events: int | None = UNSET,
    ) -> None:
        self.name = validate_queue_name(name)
        # Controls named here must agree with those stored with the queue (see prepare).
        self._named_controls = _controls.given(ordering, max_in_flight, key_concurrency,
                                               rate_limit, key_rate, events)
        self.controls = Controls(**self._named_controls)
        """The queue's ordering and limits as stored with it (read by :meth:`prepare`;
        before that, the ones named here)."""
        self.redis = redis
        # Settings given here are stored with the queue; the others are read from it (see
        # prepare), so every process applies the same ones.
        self._explicit: dict[str, int | None] = {}
        if lease_timeout is not None:
            self._explicit["lease_ms"] = validate.millis(lease_timeout, "lease_timeout")
        if max_attempts is not None:
            self._explicit["max_attempts"] = validate.positive_int(max_attempts, "max_attempts")
        if done_ttl is not STORED:
            self._explicit["done_ttl_ms"] = None if done_ttl is None else math.ceil(
                validate.seconds(done_ttl, "done_ttl", allow_zero=True) * 1000)
        if done_max is not STORED:
            if done_max is not None and (isinstance(done_max, bool)
                                         or not isinstance(done_max, int)
                                         or not 0 <= done_max <= validate.MAX_COUNT):
                raise InvalidInput(f"done_max must be an integer from 0 to "
                                   f"{validate.MAX_COUNT}, got {done_max!r}")
            self._explicit["done_max"] = done_max
        self.lease_timeout = 30.0
        """The default lease length in seconds (explicit, stored with the queue, or 30)."""
        self.lease_ms = 30_000
        self.max_attempts = 5
        """The default attempts per job (explicit, stored with the queue, or 5)."""
        self.done_ttl: float | None = 86_400.0
        """Seconds done jobs are kept (explicit, stored, or a day); ``None``: no limit."""
        self.done_max: int | None = 100_000
        """Done jobs kept at most (explicit, stored, or 100,000); ``None``: no limit."""
        self._apply({**_settings.DEFAULTS, **self._explicit})
        self.serializer: Serializer = serializer if serializer is not None else JsonSerializer()
        if not isinstance(self.serializer, Serializer):
            raise LeaseqError("serializer must have dumps() and loads() methods")
        if _decodes_responses(redis) and getattr(self.serializer, "text", False) is not True:
            # The client would decode every reply as UTF-8: a binary payload in a claim's
            # reply would fail the whole reply (its leases orphaned), so refuse up front.
            raise InvalidInput(
                "this client decodes responses (decode_responses=True), which only works "
                "with a serializer whose output is UTF-8 text (one with text = True, like "
                "the default JSON serializer); use a client without decode_responses")
        self.owner = validate.owner(_default_owner() if owner is None else owner)
        self.replicas = 0 if replicas == 0 else validate.positive_int(replicas, "replicas")
        self.replica_timeout_ms = validate.millis(replica_timeout, "replica_timeout")
        self.tracer = tracer
        """Traces enqueues and says what trace context to store with each job (see
        :class:`~leaseq.otel.Tracing`); ``None``: no tracing, nothing stored."""
        self.unconfirmed_writes = 0
        """Writes that ``replicas`` replicas did not confirm within ``replica_timeout``."""
        self.keys = QueueKeys(self.name)
        self.publish = "SPUBLISH" if is_cluster(redis) else "PUBLISH"
        self._finish_watch: FinishWatch | None = None
        """The command that publishes on the queue's channels (shard channels on a
        cluster)."""
        self.held_back = ""
        """Why the last claim could take no more: ``""`` (it took what it asked for,
        nothing waits, or it stopped early with more to look at: a cluster claim out of
        named candidates, or one that used its share of tries and woke the next),
        ``"paused"``, ``"full"`` (``max_in_flight``), ``"limited"`` (``rate_limit``)
        or ``"keys"`` (every key with waiting jobs at its limit)."""
        self.held_back_until: float | None = None
        """``time.monotonic()`` when a limit next lets a job start (``None``: when a
        slot frees or a job is enqueued, which wakes the workers)."""
        self.nothing_waiting = False
        """Whether the last claim found ``todos`` empty as it ended (``False`` also when
        it did not look, or answered from the record of a call whose reply was lost):
        a claim now would find nothing until a job comes, which wakes the workers."""
        self.recovered_leases = 0
        """Leases of claim calls whose reply was lost that a later claim took over."""
        self._lost_claims: list[str] = []
        self._server_checked = False
        self.epoch: str | None = None
        """The queue's epoch marker as this object first saw it (see :meth:`prepare`)."""

    def finish_watch(self) -> FinishWatch:
        """The subscription that tells this object's waiters which jobs ended."""
        if self._finish_watch is None:
            self._finish_watch = FinishWatch(self.redis, self.keys.finished)
        return self._finish_watch

    def _apply(self, settings: Mapping[str, int | None]) -> None:
        lease_ms = settings["lease_ms"] or _settings.DEFAULTS["lease_ms"]
        assert lease_ms is not None
        self.lease_ms = lease_ms
        self.lease_timeout = lease_ms / 1000
        self.max_attempts = settings["max_attempts"] or 5
        ttl = settings["done_ttl_ms"]
        self.done_ttl = None if ttl is None else ttl / 1000
        self.done_max = settings["done_max"]

    async def refresh_settings(self) -> None:
        """Read the settings stored with the queue again and apply those this object was
        not given explicitly (a long-running reaper calls it every sweep, so a change made
        by another process takes effect)."""
        stored = await self.redis.hgetall(self.keys.settings)
        applied, _ = _settings.merge(self.name, {}, stored)
        self._apply({**applied, **self._explicit})
        controls = Controls.read(stored)
        if controls != self.controls:
            log.info("queue_controls_changed", queue=self.name, stored=str(controls))
        self.controls = controls

    async def _store_controls(self, mode: str, named: Mapping[str, Any]) -> Controls:
        fields = Controls(**named).stored() if named else {}
        args: list[scripts.ArgT] = [mode]
        for name in named:
            field = _controls.FIELDS[name]
            args += (field, fields[field])
        k = self.keys
        reply = await scripts.CONFIGURE(
            self.redis, [k.settings, k.todos, k.in_progress, k.delayed, k.active, k.parked],
            args)
        stored = dict(zip(reply[1::2], reply[2::2], strict=True))
        if text(reply[0]) == "busy":
            raise InvalidInput(
                f"queue {self.name!r} holds jobs: its ordering cannot change (it is "
                f"{Controls.read(stored).ordering!r}); drain or purge it first")
        return Controls.read(stored)

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, lease_timeout={self.lease_timeout})"

    def forget_server_state(self) -> None:
        """Make the next call run :meth:`prepare` again (after the server lost its data)."""
        self._server_checked = False
        self.epoch = None

    async def prepare(self) -> None:
        """Register the queue by name, create or read its epoch marker, store the settings
        given explicitly and apply the stored ones for the others (see
        ``docs/protocol.md``, "Settings"), and check the server's eviction policy (a
        structured warning unless ``noeviction``).

        Runs once, before the first enqueue or claim; call it to fail fast at start-up.
        """
        if self._server_checked:
            return
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            # The registry lets `leaseq stats` and dashboards find queues by name.
            pipe.sadd(QUEUES_KEY, self.name)
            # The epoch marker tells a reaper when the server lost its data.
            pipe.hsetnx(k.meta, "epoch", uuid.uuid4().hex)
            # Which publish command the scripts use for the queue's channels: a cluster
            # needs shard channels, Redis < 7 has only PUBLISH.
            pipe.hsetnx(k.meta, "publish", self.publish)
            pipe.hget(k.meta, "epoch")
            pipe.hgetall(k.settings)
            *_, epoch, stored = await pipe.execute()
        self.epoch = text(epoch)
        controls = Controls.read(stored)
        if self._named_controls:
            have = {text(f) for f in stored}
            if any(_controls.FIELDS[n] not in have for n in self._named_controls):
                controls = await self._store_controls("nx", self._named_controls)
            self.controls = _controls.check(self.name, self._named_controls, controls)
        else:
            self.controls = controls
        applied, to_store = _settings.merge(self.name, self._explicit, stored)
        if to_store:
            fields: dict[Any, Any] = dict(to_store)
            await self.redis.hset(k.settings, mapping=fields)
        self._apply(applied)
        self._server_checked = True
        try:
            conf = await self.redis.config_get("maxmemory-policy")
        except (ResponseError, RedisError):
            # CONFIG is often disabled on managed Redis; the check is advice, not a gate.
            log.debug("maxmemory_policy_unknown", queue=self.name)
            return
        policy = next((text(v) for v in conf.values()), None)
        if policy is not None and policy != "noeviction":
            log.warning(
                "maxmemory_policy_evicts", queue=self.name, policy=policy,
                advice="set maxmemory-policy noeviction: eviction drops leases and jobs",
            )

    async def _replicated(self, what: str) -> None:
        """With the durability knob on, wait until ``replicas`` replicas have this
        client's writes so far: a marker write, then WAIT on the same connection (the
        replication stream is ordered, so covering the marker covers what came before)."""
        if not self.replicas:
            return
        if is_cluster(self.redis):
            confirmed = await _cluster_wait(self.redis, self.keys.meta, self.replicas,
                                            self.replica_timeout_ms)
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(self.keys.meta, "sync", 1)
                pipe.execute_command("WAIT", self.replicas, self.replica_timeout_ms)
                _, confirmed = await pipe.execute()
        if int(confirmed) < self.replicas:
            self.unconfirmed_writes += 1
            log.warning("replication_not_confirmed", queue=self.name, write=what,
                        confirmed=int(confirmed), wanted=self.replicas,
                        timeout_ms=self.replica_timeout_ms)
