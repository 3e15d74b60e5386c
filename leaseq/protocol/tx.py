"""The ack transaction: WATCH keys, read them, then MULTI ... EXEC on the same connection;
and, for that and for the durability knob's WAIT, talking to a cluster slot's master.

On a plain or Sentinel client this is redis-py's transactional pipeline. On a cluster
the same commands are sent on one connection to the node that serves the keys' slot:
redis-py's asyncio cluster transactions run every command in a new thread with its own
event loop and *join* it, which blocks the caller's event loop (heartbeats included) for
each round trip and made an ack cost several times more than on a plain client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
from redis.exceptions import AskError, MovedError, TryAgainError, WatchError

from .resp import pack
from .wire import AnyRedis, connection_errors, is_cluster

T = TypeVar("T")
Command = tuple[Any, ...]
Decide = Callable[[list[Any]], "list[Command] | None"]
"""Given the watched keys' values, the commands to run in MULTI/EXEC, or ``None`` for
nothing to do."""

_REDIRECT_TRIES = 50
"""Tries while the slot moves (MOVED, ASK, TRYAGAIN); 50 ms apart for ASK/TRYAGAIN."""


async def watch_read_exec(redis: AnyRedis, keys: Sequence[str], decide: Decide) -> bool | None:
    """WATCH ``keys``, read them (MGET), and run ``decide(values)`` in MULTI/EXEC.

    Returns ``None`` when ``decide`` found nothing to do, ``True`` when EXEC committed and
    ``False`` when a watched key changed after the read (nothing was written).

    Two round trips on one connection (WATCH and MGET written together), packed by
    :func:`~leaseq.protocol.resp.pack`. Never re-sent here: on a new connection the WATCH
    would be gone and the EXEC unfenced, so a connection error reaches the caller, which
    starts again from the WATCH.
    """

    async def transaction(conn: Any) -> bool | None:
        encoder = conn.encoder
        await conn.send_packed_command(pack([("WATCH", *keys), ("MGET", *keys)], encoder))
        await conn.read_response()
        commands = decide(await conn.read_response())
        if commands is None:
            await conn.send_packed_command(pack([("UNWATCH",)], encoder))
            await conn.read_response()
            return None
        await conn.send_packed_command(pack([("MULTI",), *commands, ("EXEC",)], encoder))
        for _ in range(len(commands) + 1):  # OK, then QUEUED per command
            await conn.read_response()
        replies = await conn.read_response()
        if replies is None:
            return False  # EXEC answers nil when a watched key changed
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply  # a command that failed as it ran; the others did run
        return True

    with connection_errors():
        if is_cluster(redis):
            return await on_slot_node(redis, keys[0], transaction)
        if getattr(redis, "connection", None) is not None:
            return await _pipelined(redis, keys, decide)
        return await on_pool_connection(redis, transaction)


async def _pipelined(redis: AnyRedis, keys: Sequence[str], decide: Decide) -> bool | None:
    """The same through redis-py's pipeline, for a client with a single connection
    (``single_connection_client=True``), whose one connection only redis-py may lend."""
    async with redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(*keys)
            commands = decide(await pipe.mget(keys))
            if commands is None:
                await pipe.reset()  # type: ignore[no-untyped-call]
                return None
            pipe.multi()  # type: ignore[no-untyped-call]
            for command in commands:
                pipe.execute_command(*command)
            await pipe.execute()
            return True
        except WatchError:
            return False


async def on_pool_connection(redis: AnyRedis, talk: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``talk(connection)`` on one connection of a plain or Sentinel client's pool.

    ``talk`` must read every reply it asked for; if it raises, the connection is closed
    rather than reused (a reply may still be on its way)."""
    pool = redis.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    clean = False
    try:
        result = await talk(conn)
        clean = True
        return result
    finally:
        try:
            if not clean:
                await conn.disconnect()
        finally:
            # Back to the pool whatever happened: a connection the pool no longer lends
            # out would stay open until collected.
            await pool.release(conn)


async def on_slot_node(cluster: Any, key: str, talk: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``talk(connection)`` on one connection to the master serving ``key``'s slot,
    for exchanges redis-py's cluster client cannot route (a transaction whose commands
    depend on a read; ``WAIT`` after a write on the same connection).

    ``talk`` must read every reply it asked for; if it raises, the connection is closed
    rather than reused. While the slot moves (MOVED, ASK, TRYAGAIN) it is tried again.
    """
    redirect: Exception | None = None
    for _ in range(_REDIRECT_TRIES):
        await cluster.initialize()  # a no-op once the slot map is known
        node = cluster.get_node_from_key(key)
        conn = node.acquire_connection()
        clean = False  # whether every reply was read: only then may the connection be reused
        try:
            result = await talk(conn)
            clean = True
            return result
        except (MovedError, AskError, TryAgainError) as exc:
            redirect = exc
        finally:
            if not clean:
                await conn.disconnect()
            node.release(conn)
        if isinstance(redirect, MovedError):
            # The slot moved: a keyed call through the client follows the redirect and
            # refreshes its slot map for the next try.
            await cluster.exists(key)
        else:
            await anyio.sleep(0.05)  # the slot is being migrated: wait for it to settle
    assert redirect is not None
    raise redirect
