"""Lua scripts of the protocol: loaded once from the package, called by SHA.

redis-py's own ``Script`` objects run ``SCRIPT EXISTS`` before every pipeline execution;
that costs a round trip per batch, so scripts here are called with ``EVALSHA`` directly
and loaded only when the server answers ``NOSCRIPT`` (first use, or after a restart or a
``SCRIPT FLUSH``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from . import prelude
from .resp import pack
from .wire import AnyPipeline, AnyRedis, connection_errors, is_cluster

KeyT = str | bytes
ArgT = str | bytes | int | float


class Script:
    """One Lua script of the package, identified by its SHA1; with ``reply_record``,
    behind the reply-record prelude (``lua/_reply.lua``), with ``controls`` behind the
    controls prelude (``lua/_ctl.lua``), with ``creates_jobs`` behind both it and the
    job-creation prelude (``lua/_job.lua``); of those two, only the statements the
    script reaches (:func:`~leaseq.protocol.prelude.shake`)."""

    __slots__ = ("name", "sha", "source")

    def __init__(
        self, name: str, *, reply_record: bool = False, controls: bool = False,
        creates_jobs: bool = False,
    ) -> None:
        self.name = name
        files = resources.files(__package__)
        body = files.joinpath(f"lua/{name}.lua").read_text()
        # Lua scripts cannot import: the shared preludes are put in front of them, cut
        # to the statements the script reaches (see prelude.py).
        shared = ""
        if controls or creates_jobs:
            shared += files.joinpath("lua/_ctl.lua").read_text()
        if creates_jobs:
            shared += files.joinpath("lua/_job.lua").read_text()
        self.source = prelude.shake(shared, body) + body
        if reply_record:
            # Kept whole: it is statements that run (a reply record read back), not
            # definitions.
            self.source = files.joinpath("lua/_reply.lua").read_text() + self.source
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()  # noqa: S324 - Redis's script id

    async def __call__(
        self, client: AnyRedis, keys: Sequence[KeyT], args: Sequence[ArgT]
    ) -> Any:
        """Run the script; on ``NOSCRIPT`` load it and run it once more."""
        with connection_errors():
            try:
                return await self._send(client, keys, args)
            except NoScriptError:
                await client.script_load(self.source)
                return await self._send(client, keys, args)

    async def _send(
        self, client: AnyRedis, keys: Sequence[KeyT], args: Sequence[ArgT]
    ) -> Any:
        if is_cluster(client):
            if not keys:
                return await client.evalsha(self.sha, 0, *args)
            # Name the node of the keys' slot: otherwise redis-py hashes every key of the
            # call to check that they share a slot (the server checks that too), which
            # for a cluster claim's candidate keys costs the worker ~10% of its CPU.
            cluster: Any = client
            await cluster.initialize()  # a no-op once the slot map is known
            return await cluster.execute_command(
                "EVALSHA", self.sha, len(keys), *keys, *args,
                target_nodes=cluster.get_node_from_key(keys[0]))
        if getattr(client, "connection", None) is not None:
            # A single-connection client: only redis-py may lend its one connection.
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        return await _evalsha(client, ("EVALSHA", self.sha, len(keys), *keys, *args))

    def queue(self, pipe: AnyPipeline, keys: Sequence[KeyT], args: Sequence[ArgT]) -> None:
        """Add a call to a (non-transactional) pipeline; see :func:`execute`."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)


async def _evalsha(client: AnyRedis, command: tuple[Any, ...]) -> Any:
    """One script call on a pooled connection of a plain or Sentinel client, packed by
    :func:`~leaseq.protocol.resp.pack` (a claim names some thirty keys: redis-py's packer
    and command path cost the worker more CPU than the script costs Redis).

    Re-sent after a connection error exactly as redis-py's own ``execute_command`` does
    it, with the client's ``Retry``: the scripts are written to be safe when re-sent
    after they ran (reply records, the claim's nonce, idempotent writes)."""
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        packed = pack([command], conn.encoder)

        async def exchange() -> Any:
            await conn.send_packed_command(packed)
            return await conn.read_response()

        return await conn.retry.call_with_retry(exchange, lambda _: conn.disconnect())
    finally:
        await pool.release(conn)


async def evalsha_many(client: AnyRedis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Several ``EVALSHA`` calls on one pooled connection of a plain or Sentinel client,
    written together (one round trip), packed as :func:`_evalsha` packs one; each reply
    in order, an error reply (``NOSCRIPT``, a refusal) as its exception, not raised.
    Re-sent whole after a connection error, as :func:`_evalsha` is: every call must be
    safe when re-sent after it ran."""
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        packed = pack(list(commands), conn.encoder)

        async def exchange() -> list[Any]:
            await conn.send_packed_command(packed)
            replies: list[Any] = []
            for _ in commands:  # every reply read, so the connection stays usable
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
            return replies

        replies: list[Any] = await conn.retry.call_with_retry(
            exchange, lambda _: conn.disconnect())
        return replies
    finally:
        await pool.release(conn)


async def execute(
    client: AnyRedis, calls: Sequence[tuple[Script, Sequence[KeyT], Sequence[ArgT]]]
) -> list[Any]:
    """Run many script calls in one round trip and return their replies in order.

    Calls answered ``NOSCRIPT`` did not run, so after loading the missing scripts exactly
    those are sent again; no call runs twice. Other errors are raised. A cluster client
    (whose pipelines refuse scripts) runs the calls one after another instead.
    """
    if is_cluster(client):
        return [await script(client, keys, args) for script, keys, args in calls]
    with connection_errors():
        replies = await _run(client, calls)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            for script in {calls[i][0].sha: calls[i][0] for i in missing}.values():
                await client.script_load(script.source)
            again = await _run(client, [calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def _run(
    client: AnyRedis, calls: Sequence[tuple[Script, Sequence[KeyT], Sequence[ArgT]]]
) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            script.queue(pipe, keys, args)
        return list(await pipe.execute(raise_on_error=False))


ENQUEUE = Script("enqueue", creates_jobs=True)
CLAIM = Script("claim", controls=True)
CANDIDATES = Script("candidates", controls=True)
EXTEND = Script("extend", controls=True)
SETTLE = Script("settle", controls=True)
REAP = Script("reap", reply_record=True, controls=True)
PROMOTE = Script("promote", reply_record=True, controls=True)
EXPIRE = Script("expire", reply_record=True, controls=True)
TRIM = Script("trim", reply_record=True)
STATS = Script("stats", controls=True)
REVIVE = Script("revive", reply_record=True, controls=True)
PURGE = Script("purge", reply_record=True, controls=True)
REPAIR = Script("repair", reply_record=True, controls=True)
PRESENCE = Script("presence")
DROP = Script("drop", reply_record=True, controls=True)
TASKSTATS = Script("taskstats")
TICK = Script("tick", creates_jobs=True)
CONFIGURE = Script("configure")
REINDEX = Script("reindex", reply_record=True, controls=True)
CANCEL = Script("cancel", reply_record=True, controls=True)
PROGRESS = Script("progress", controls=True)
RESOLVE = Script("resolve", controls=True)
RESULTS = Script("results")
"""Sent as ``EVAL`` inside the ack's ``MULTI`` (see ``lua/results.lua``), as
:data:`RESULTS_SENT`."""
RESULTS_SENT = "\n".join(
    line.strip() for line in prelude.without_comments(RESULTS.source).splitlines()
    if line.strip())
"""``lua/results.lua`` without its comments and indentation: Redis hashes an ``EVAL``'s
whole source on every call (SHA1, 64 bytes at a time), and for the full text (2 KB)
that was a fifth of its instructions per job acked one at a time (callgrind); the
0.7 KB sent hashes in about a third of that time.
(The file has no long strings or block comments, which a line filter would break.)"""
ALL = (ENQUEUE, CLAIM, CANDIDATES, EXTEND, SETTLE, REAP, PROMOTE, EXPIRE, TRIM, STATS,
       REVIVE, PURGE, REPAIR, PRESENCE, DROP, TASKSTATS, TICK, CONFIGURE, REINDEX, CANCEL,
       PROGRESS, RESOLVE)

