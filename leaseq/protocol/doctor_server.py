"""Doctor's checks of the server: its version, its eviction policy and its persistence,
each as advice (on a cluster, for every master)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from .doctor_report import Report
from .queue import Queue
from .wire import is_cluster, text

__all__ = ["check_server"]

_MIN_VERSION = (6, 2)


async def check_server(queue: Queue, report: Report) -> None:
    """Version, eviction policy and persistence of the server behind ``queue`` (on a
    cluster: of every master, each finding naming its node)."""
    r = queue.redis
    if not is_cluster(r):
        await _check_node(report, "", lambda: r.info("server"), lambda: r.config_get("*"))
        return
    cluster: Any = r
    await cluster.initialize()
    for node in cluster.get_primaries():
        await _check_node(report, f" [{node.name}]",
                          partial(cluster.info, "server", target_nodes=node),
                          partial(cluster.config_get, "*", target_nodes=node))


async def _check_node(report: Report, where: str, info_of: Callable[[], Awaitable[Any]],
                      config_of: Callable[[], Awaitable[Any]]) -> None:
    """The checks of one server; ``where`` names it in the messages (empty for the only
    one)."""
    _check_version(report, where, await info_of())
    try:
        conf = {text(k): text(v) for k, v in (await config_of()).items()}
    except Exception as exc:  # CONFIG is often disabled on managed services
        report.add("info", "config",
                   f"CONFIG GET not allowed{where} ({exc}); skipped config checks")
        return
    _check_policy(report, where, conf)
    _check_persistence(report, where, conf)


def _check_version(report: Report, where: str, info: Any) -> None:
    version = text(info.get("redis_version", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < _MIN_VERSION:
        report.add("error", "version", f"Redis {version}{where}: leaseq needs 6.2 or newer")
    else:
        report.add("ok", "version", f"Redis {version}{where}")


def _check_policy(report: Report, where: str, conf: dict[str, str]) -> None:
    policy = conf.get("maxmemory-policy", "?")
    if policy == "noeviction":
        report.add("ok", "maxmemory-policy", f"noeviction{where}")
    else:
        report.add("warning", "maxmemory-policy",
                   f"{policy}{where}: under memory pressure Redis may evict lease keys and "
                   "job hashes; set maxmemory-policy noeviction")


def _check_persistence(report: Report, where: str, conf: dict[str, str]) -> None:
    aof = conf.get("appendonly") == "yes"
    fsync = conf.get("appendfsync", "?")
    save = conf.get("save", "")
    if aof and fsync == "always":
        report.add("ok", "persistence", f"AOF with appendfsync always{where}: acknowledged "
                   "writes survive a crash of the server")
    elif aof:
        report.add("info", "persistence", f"AOF with appendfsync {fsync}{where}: a crash of "
                   "the server can lose about the last second of enqueues and acks")
    elif save:
        report.add("warning", "persistence", f"RDB snapshots only (save {save!r}){where}: a "
                   "crash loses every change since the last snapshot")
    else:
        report.add("warning", "persistence", f"no persistence{where}: a restart of the "
                   "server loses every job")
