"""A TCP proxy in front of Redis that loses replies *after* the server applied the call.

``ReplyDropProxy`` forwards every byte both ways and parses the RESP stream in each
direction, so it knows which reply answers which command. A doomed connection has its
commands forwarded as usual; the proxy then waits until the server's replies to them
have arrived (the server has applied them), throws those replies away and resets the
client's connection (``SO_LINGER`` 0, an RST). The client sees a connection error for a
call the server already ran: exactly the case in which redis-py sends the call again.

Faults:

- :meth:`ReplyDropProxy.arm`: the next ``times`` commands whose bytes contain ``match``
  (a script's SHA, ``b"EXEC"``, ``b"EVALSHA"``) doom their connection. A pipelined
  chunk holding several commands is handled: the proxy waits for the replies to every
  command the client had sent on that connection, none of which reaches the client.
- :meth:`ReplyDropProxy.hold` / :meth:`ReplyDropProxy.release`: while held, new client
  connections are accepted but neither connected upstream nor forwarded, so a client's
  retry waits while a test changes the queue through another client.
- :meth:`ReplyDropProxy.drop_rate`: every client->server chunk is doomed with
  probability ``p`` (a seeded ``random.Random``), for chaos runs.

Tests wait for a drop with :meth:`ReplyDropProxy.wait_dropped`, never with a sleep.
"""

from __future__ import annotations

import random
import socket
import struct
from types import TracebackType

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from leaseq.testing import free_port

__all__ = ["ReplyDropProxy", "resp_end"]

_AGGREGATES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}
"""RESP aggregate types and how many values each announced element counts for."""
_LINES = frozenset(b"+-:_,#(")
"""RESP types that are one line: simple string, error, integer, RESP3 null, double,
boolean, big number."""
_BLOBS = frozenset(b"$!=")
"""RESP types with a length prefix: bulk string, RESP3 blob error and verbatim string."""
_NOT_A_REPLY = frozenset(b">|")
"""RESP3 push messages and attributes: sent by the server but answering no command."""


def resp_end(buf: bytes | bytearray, pos: int = 0) -> int | None:
    """The offset just past the one complete RESP value starting at ``buf[pos]``, or
    ``None`` while the value is incomplete. A line that does not start with a RESP type
    byte is taken as an inline command (one line)."""
    if pos >= len(buf):
        return None
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return None
    kind = buf[pos]
    if kind in _LINES:
        return eol + 2
    if kind in _BLOBS:
        length = int(buf[pos + 1:eol])
        if length < 0:
            return eol + 2  # RESP2 null bulk string
        end = eol + 2 + length + 2
        return end if end <= len(buf) else None
    if kind in _AGGREGATES:
        count = int(buf[pos + 1:eol])
        cursor: int | None = eol + 2
        for _ in range(max(count, 0) * _AGGREGATES[kind]):
            assert cursor is not None
            cursor = resp_end(buf, cursor)
            if cursor is None:
                return None
        return cursor
    return eol + 2  # inline command


class _Stream:
    """One direction of one connection, cut into complete RESP values."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.values = 0
        """Complete values seen so far (for replies: push messages and attributes not
        counted)."""

    def feed(self, data: bytes, replies: bool = False) -> list[bytes]:
        """Add ``data``; return the values it completed."""
        self.buf += data
        out: list[bytes] = []
        pos = 0
        while (end := resp_end(self.buf, pos)) is not None:
            value = bytes(self.buf[pos:end])
            pos = end
            if replies and value[0] in _NOT_A_REPLY:
                continue
            out.append(value)
        del self.buf[:pos]
        self.values += len(out)
        return out

    @property
    def partial(self) -> bool:
        """Whether a value has started but not yet completed."""
        return bool(self.buf)


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: ReplyDropProxy, client: anyio.abc.SocketStream,
                 upstream: anyio.abc.SocketStream) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.commands = _Stream()
        self.replies = _Stream()
        self.doomed_at: int | None = None
        """Replies the server must have sent before the reset (set once doomed)."""
        self.closed = False

    def doom(self, need: int) -> None:
        if self.doomed_at is None:
            self.doomed_at = need

    async def client_to_server(self) -> None:
        async for chunk in self.client:
            before = self.commands.values
            completed = self.commands.feed(chunk)
            for offset, command in enumerate(completed):
                if self.doomed_at is None and self.proxy._take_armed(command):
                    self.doom(before + offset + 1)
            if self.doomed_at is None and self.proxy._roll():
                self.doom(self.commands.values if completed else self.commands.values + 1)
            await self.upstream.send(chunk)

    async def server_to_client(self) -> None:
        async for chunk in self.upstream:
            self.replies.feed(chunk, replies=True)
            if self.doomed_at is None:
                await self.client.send(chunk)
                continue
            # Doomed: no reply byte reaches the client. Reset once the server answered
            # the doomed command and everything else the client sent before it noticed.
            if (self.replies.values >= self.doomed_at
                    and self.replies.values >= self.commands.values
                    and not self.commands.partial):
                self.proxy._count_drop()
                await self.close(reset=True)
                return

    async def close(self, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if reset:
            raw = self.client.extra(SocketAttribute.raw_socket)  # noqa: S610 - anyio, not Django
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for stream in (self.client, self.upstream):
            await stream.aclose()


class ReplyDropProxy:
    """``async with ReplyDropProxy(host, port) as proxy``: clients connect to
    ``proxy.url``; see the module docstring for the faults."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.dropped = 0
        """Connections reset after the server had answered their doomed commands."""
        self.held = 0
        """Client connections waiting for :meth:`release`."""
        self._armed: list[tuple[bytes, int]] = []
        self._rate = 0.0
        self._rng = random.Random(0)
        self._open = anyio.Event()
        self._open.set()
        self._changed = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def url(self) -> str:
        """The proxy's Redis URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    # -- faults -----------------------------------------------------------------------------

    def arm(self, match: bytes, times: int = 1) -> None:
        """Doom the connections of the next ``times`` commands whose bytes contain
        ``match``: each is forwarded, its reply awaited, discarded, and the client reset."""
        if times < 1:
            raise ValueError("times must be >= 1")
        self._armed.append((match, times))

    def disarm(self) -> None:
        """Forget armed matches that have not fired."""
        self._armed.clear()

    def drop_rate(self, p: float, seed: int) -> None:
        """Unstaged mode: doom each client->server chunk with probability ``p``."""
        if not 0.0 <= p <= 1.0:
            raise ValueError("p must be within [0, 1]")
        self._rate = p
        self._rng = random.Random(seed)

    def hold(self) -> None:
        """Accept new client connections but connect and forward none until :meth:`release`
        (connections open already keep flowing)."""
        if self._open.is_set():
            self._open = anyio.Event()

    def release(self) -> None:
        """Let held and new connections through."""
        self._open.set()

    async def wait_dropped(self, n: int, timeout: float = 30.0) -> None:
        """Wait until ``n`` replies in all have been dropped (fail after ``timeout``)."""
        with anyio.fail_after(timeout):
            while self.dropped < n:
                await self._changed.wait()

    # -- internals --------------------------------------------------------------------------

    def _take_armed(self, command: bytes) -> bool:
        for i, (match, times) in enumerate(self._armed):
            if match in command:
                if times == 1:
                    del self._armed[i]
                else:
                    self._armed[i] = (match, times - 1)
                return True
        return False

    def _roll(self) -> bool:
        return self._rate > 0 and self._rng.random() < self._rate

    def _count_drop(self) -> None:
        self.dropped += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def __aenter__(self) -> ReplyDropProxy:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1",
                                                   local_port=self.port)
        self._tg.start_soon(self._serve, listener)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._tg is not None
        self.release()
        self._tg.cancel_scope.cancel()  # each connection's handler closes its streams
        await self._tg.__aexit__(exc_type, exc, tb)

    async def _serve(self, listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        async with listener:
            await listener.serve(self._handle)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            if not self._open.is_set():
                self.held += 1
                try:
                    await self._open.wait()
                finally:
                    self.held -= 1
            try:
                upstream = await anyio.connect_tcp(*self.target)
            except OSError:
                return
            link = _Link(self, client, upstream)
            async with upstream, anyio.create_task_group() as tg:

                async def pump(direction: str) -> None:
                    try:
                        if direction == "up":
                            await link.client_to_server()
                        else:
                            await link.server_to_client()
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError,
                            anyio.EndOfStream, OSError):
                        pass  # either side went away: close the other
                    except ValueError:
                        pass  # not RESP (a length that is no number): drop the connection
                    finally:
                        with anyio.CancelScope(shield=True):
                            await link.close()
                        tg.cancel_scope.cancel()

                tg.start_soon(pump, "up")
                tg.start_soon(pump, "down")
