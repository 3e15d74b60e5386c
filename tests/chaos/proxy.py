"""A TCP proxy that injects network faults between workers and Redis: it drops
connections (orderly close), resets them (RST) and stalls them (stops forwarding for a
while), at random."""

from __future__ import annotations

import random
import socket
import struct
from types import TracebackType

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from leaseq.testing import free_port


class _Link:
    def __init__(self, client: anyio.abc.SocketStream, upstream: anyio.abc.SocketStream
                 ) -> None:
        self.client = client
        self.upstream = upstream
        self.gate = anyio.Event()
        self.gate.set()
        self.closed = False

    async def pump(self, src: anyio.abc.SocketStream, dst: anyio.abc.SocketStream) -> None:
        try:
            async for data in src:
                await self.gate.wait()
                await dst.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            with anyio.CancelScope(shield=True):
                await self.close()

    async def close(self, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in (self.client, self.upstream):
            if reset:
                raw = stream.extra(SocketAttribute.raw_socket)  # noqa: S610 - anyio, not Django
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()

    async def stall(self, seconds: float) -> None:
        self.gate = anyio.Event()
        await anyio.sleep(seconds)
        self.gate.set()


class FaultyProxy:
    """``async with FaultyProxy(host, port) as proxy``: clients connect to ``proxy.url``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.links: list[_Link] = []
        self.faults = 0
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> FaultyProxy:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1",
                                                   local_port=self.port)
        self._tg.start_soon(self._serve, listener)
        return self

    async def _serve(self, listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        async with listener:
            await listener.serve(self._handle)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()  # each connection's handler closes its streams
        await self._tg.__aexit__(exc_type, exc, tb)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        try:
            upstream = await anyio.connect_tcp(*self.target)
        except OSError:
            await client.aclose()
            return
        link = _Link(client, upstream)
        self.links.append(link)
        async with client, upstream, anyio.create_task_group() as tg:
            tg.start_soon(link.pump, client, upstream)
            tg.start_soon(link.pump, upstream, client)

    async def inject_faults(self, interval: float) -> None:
        """Every ``interval`` seconds or so, hit a random live connection with a drop, a
        reset or a stall (0.2-1.5 s), until cancelled."""
        async with anyio.create_task_group() as tg:
            while True:
                await anyio.sleep(random.uniform(0.5, 1.5) * interval)
                live = [link for link in self.links if not link.closed]
                if not live:
                    continue
                link = random.choice(live)
                action = random.choice(("drop", "reset", "stall"))
                self.faults += 1
                if action == "stall":
                    tg.start_soon(link.stall, random.uniform(0.2, 1.5))
                else:
                    await link.close(reset=action == "reset")
