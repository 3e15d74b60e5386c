"""Redis clients for the URLs the command line takes: plain, TLS, unix socket, Cluster
and Sentinel."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import click
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

if TYPE_CHECKING:
    pass


_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel")


def redact(url: str) -> str:
    """The URL with its password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def make_client(url: str, max_connections: int | None = None) -> aioredis.Redis:
    """A client for ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs, or a Redis
    Cluster client for ``redis+cluster://host:port`` (any node as the seed); user and
    password (ACL) may be given in the URL. ``max_connections`` sizes the pool."""
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise click.BadParameter(
            f"{redact(url)!r}: use redis://, rediss://, unix://, redis+cluster:// or "
            "redis+sentinel://",
            param_hint="--redis")
    if scheme == "redis+sentinel":
        return sentinel_client(url, max_connections)
    if scheme.endswith("+cluster"):
        plain = url.replace("+cluster", "", 1)
        return RedisCluster.from_url(  # type: ignore[return-value]
            plain, socket_connect_timeout=5.0, max_connections=max_connections or 2**31)
    if scheme == "rediss":
        _check_tls_files(url)
    try:
        return aioredis.Redis.from_url(url, socket_connect_timeout=5.0,
                                       max_connections=max_connections)
    except ValueError as exc:
        raise click.BadParameter(f"{redact(url)!r}: {exc}", param_hint="--redis") from exc


def _check_tls_files(url: str) -> None:
    """A certificate or key named in the URL that is not a readable file is a usage error
    (redis-py would report it at every connection attempt, as a connection error)."""
    query = parse_qs(urlsplit(url).query)
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        for path in query.get(name, []):
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise click.BadParameter(f"{name}={path}: no such readable file",
                                         param_hint="--redis")


class _Sentinel(Sentinel):
    """redis-py's ``Sentinel``, with its list of sentinels kept whole.

    redis-py moves the sentinel that answered a discovery to the front of ``sentinels``
    by the index it had before the await. In a failover every pooled connection
    rediscovers the master at once, and a discovery that ends after another has already
    reordered the list writes one sentinel twice and drops another: the dropped client's
    connections are never closed, and the list has one fallback fewer.
    """

    def __init__(self, sentinels: list[tuple[str, int]], **kwargs: Any) -> None:
        # Untyped before redis-py 8.2.
        super().__init__(sentinels, **kwargs)  # type: ignore[no-untyped-call, unused-ignore]
        self._every = tuple(self.sentinels)

    async def discover_master(self, service_name: str) -> Any:
        """The master's address, as redis-py finds it; the list is mended afterwards."""
        try:
            return await super().discover_master(service_name)
        finally:
            # No await between redis-py's reordering and this: no other discovery sees
            # the list broken.
            self._mend()

    def _mend(self) -> None:
        # In place, and only the slots of repeated entries: a discovery still going over
        # the list by index then passes no sentinel by (a shift would skip one).
        seen: set[int] = set()
        repeats: list[int] = []
        for i, sentinel in enumerate(self.sentinels):
            if id(sentinel) in seen:
                repeats.append(i)
            seen.add(id(sentinel))
        missing = [s for s in self._every if id(s) not in seen]
        for i, sentinel in zip(repeats, missing, strict=True):
            self.sentinels[i] = sentinel


def sentinel_client(url: str, max_connections: int | None = None) -> aioredis.Redis:
    """``redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[/DB]``: a client
    of the service's current master, which follows failovers."""
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise click.BadParameter(f"{redact(url)!r}: name the master: .../SERVICE[/DB]",
                                 param_hint="--redis")
    hosts = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise click.BadParameter(f"{redact(url)!r}: sentinel hosts are host:port",
                                     param_hint="--redis")
        hosts.append((host, int(port)))
    kwargs: dict[str, Any] = {"socket_connect_timeout": 5.0, "db": int(path[1])
                              if len(path) > 1 and path[1].isdigit() else 0}
    if parts.password is not None:
        kwargs["password"] = parts.password
    if parts.username:
        kwargs["username"] = parts.username
    if max_connections:
        kwargs["max_connections"] = max_connections
    sentinel = _Sentinel(hosts, socket_connect_timeout=5.0)
    client: aioredis.Redis = sentinel.master_for(path[0], **kwargs)
    return client


async def close_client(client: aioredis.Redis) -> None:
    """Close a client, and for a Sentinel client the connections to the sentinels too."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    # A copy: a discovery still running may reorder the list while this awaits.
    for sentinel in tuple(getattr(manager, "sentinels", ())):
        await sentinel.aclose()
