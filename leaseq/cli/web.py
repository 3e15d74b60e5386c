"""``leaseq web``: the app under uvicorn, on the CLI's Redis client."""

from __future__ import annotations

import ipaddress
import signal
import socket
from collections.abc import Sequence

import anyio
import structlog
import uvicorn

from ..protocol.wire import AnyRedis
from ..web._app import create_app
from . import exits, util

log = structlog.get_logger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket: bound here, not by uvicorn, so that a port in use is one
    line and not a traceback."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0]
    # proto must be IPPROTO_TCP (socket.create_server leaves it 0): asyncio sets
    # TCP_NODELAY only on sockets that say they are TCP, and without it every response
    # on a kept-alive connection waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def serve(settings: util.Settings, *, host: str, port: int, queues: Sequence[str],
          token: str | None, max_body: int) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn's handlers: finish open requests, then stop)."""

    # uvicorn stops gracefully on SIGINT/SIGTERM and then re-raises the signal to the
    # handlers it found, which by default kill the process (exit -15). Handlers that do
    # nothing make a graceful stop exit 0, as `leaseq worker` does.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)

    try:
        sock = listen(host, port)
    except OSError as exc:
        exits.fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")

    async def main(client: AnyRedis) -> None:
        await client.ping()  # unreachable Redis: one line and exit code 3, before binding
        await util.warn_unknown_queues(client, list(queues))
        app = create_app(client, queues=list(queues) or None, token=token, max_body=max_body)
        # log_config=None leaves logging alone; leaseq's own lines are structlog's.
        server = uvicorn.Server(uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False,
            lifespan="off", timeout_graceful_shutdown=5))
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            while not server.started:
                if server.should_exit:
                    return
                await anyio.sleep(0.05)
            bound = sock.getsockname()[1]
            log.info("web_started", url=f"http://{host}:{bound}/", port=bound,
                     queues=list(queues) or "all registered", auth=token is not None)

    with sock:
        util.run(settings, main)
