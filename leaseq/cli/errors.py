"""What a Redis error means to someone at a terminal: a one-line message and the exit
code, and whether waiting can fix it."""

from __future__ import annotations

import re
import ssl
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    InvalidResponse,
    NoPermissionError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..exceptions import LeaseqError

if TYPE_CHECKING:
    pass


from .connect import redact
from .exits import EXIT_FAILURE, EXIT_UNREACHABLE


def single(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups of one member each (a task
    group wraps what a task raised), else ``exc`` itself."""
    while True:
        inner = getattr(exc, "exceptions", None)
        if not isinstance(inner, tuple) or len(inner) != 1:
            return exc
        exc = inner[0]


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    return next((e for e in _chain(exc) if isinstance(e, ssl.SSLError)), None)


def _unknown_command(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and "unknown command" in str(exc).lower()


def permanent(exc: BaseException) -> bool:
    """Whether a Redis error cannot heal by waiting, so a worker or reaper must not start
    (and retry forever): credentials or permissions refused, a server that does not speak
    the Redis protocol, a TLS failure, a command leaseq needs is missing, or a server that
    denies clients (protected mode). Connection refused, timeouts, a loading, read-only,
    out-of-memory or busy server do heal."""
    if isinstance(exc, (AuthenticationError, AuthenticationWrongNumberOfArgsError,
                        NoPermissionError, InvalidResponse)):
        return True
    if _tls_error(exc) is not None or _unknown_command(exc):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith("DENIED")


def describe(exc: BaseException, url: str) -> tuple[str, int] | None:
    """The one-line message and exit code for an error of a command, or ``None`` for an
    error this module does not know (a bug: the traceback is worth having)."""
    where = redact(url)
    if isinstance(exc, (AuthenticationError, AuthenticationWrongNumberOfArgsError)):
        return f"Redis at {where} refused the credentials: {first_line(exc)}", \
            EXIT_UNREACHABLE
    if isinstance(exc, NoPermissionError):
        return f"Redis at {where} refused a command (ACL): {first_line(exc)}", \
            EXIT_UNREACHABLE
    if isinstance(exc, InvalidResponse):
        return (f"cannot reach Redis at {where}: what answered does not speak the Redis "
                f"protocol ({first_line(exc)})"), EXIT_UNREACHABLE
    tls = _tls_error(exc)
    if tls is not None:
        return f"cannot reach Redis at {where}: TLS error: {first_line(tls)}", \
            EXIT_UNREACHABLE
    if isinstance(exc, MasterNotFoundError):
        return f"cannot reach Redis at {where}: {_short_sentinel(str(exc))}", \
            EXIT_UNREACHABLE
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, ConnectionError)):
        return f"cannot reach Redis at {where}: {first_line(exc)}", EXIT_UNREACHABLE
    if _unknown_command(exc):
        return (f"Redis at {where} lacks a command leaseq needs: {first_line(exc)}",
                EXIT_UNREACHABLE)
    if isinstance(exc, ResponseError) and str(exc).startswith("DENIED"):
        return f"Redis at {where} denied the connection: {first_line(exc)}", \
            EXIT_UNREACHABLE
    if isinstance(exc, (ResponseError, RedisClusterException)):
        return f"Redis error: {first_line(exc)}", EXIT_FAILURE
    if isinstance(exc, RedisError):
        return f"Redis error: {type(exc).__name__}: {first_line(exc)}", EXIT_FAILURE
    if isinstance(exc, LeaseqError):
        return str(exc), EXIT_FAILURE
    return None


def _short_sentinel(message: str) -> str:
    """redis-py's "No master found" lists the repr of every sentinel client (1,000
    characters each); keep the service, each sentinel's address and what went wrong."""
    head, _, rest = message.partition(" : ")
    asked = re.findall(r"host=([^,>]+),port=(\d+),.*?\)>\)>\)> - ([^,]+)", rest)
    if not asked:
        return head
    return f"{head} (" + "; ".join(f"sentinel {h}:{p}: {_sentinel_error(e, h, p)}"
                                   for h, p, e in asked) + ")"


def _sentinel_error(error: str, host: str, port: str) -> str:
    """One sentinel's error without what the line says already: redis-py 8.2's
    category and class ("network:ConnectionError: "), the address again."""
    error = re.sub(r"^\w+:\w+: ", "", error.strip())
    error = error.replace(f" connecting to {host}:{port}", "")
    # The address as a tuple too ("Connect call failed ('127.0.0.1', 1)"); the list
    # was split at commas, so the tuple may be cut short.
    return re.sub(r" \('[^']*'(?:, \d+\))?", "", error)[:80]


_PIPELINE_ERROR = re.compile(r"^Command # \d+ \((?P<command>.*?)\) of pipeline caused error: "
                             r"(?:\('(?P<quoted>.*)',\)|(?P<plain>.*))$")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    # redis-py's pipelines wrap an error as "Command # 1 (SADD k v) of pipeline caused
    # error: ('message',)"; say "message (SADD k v)".
    match = _PIPELINE_ERROR.match(line)
    if match:
        return f"{match['quoted'] or match['plain']} ({match['command']})"
    return line


def hint(exc: BaseException, url: str) -> dict[str, str]:
    """Advice for the start-up log line when an error that may heal smells of a TLS
    mismatch (both look like a server that hangs up or never answers)."""
    scheme = urlsplit(url).scheme
    if scheme == "redis" and isinstance(exc, RedisConnectionError) and any(
            isinstance(e, ConnectionResetError) for e in _chain(exc)):
        return {"hint": "a TLS-only port resets plain connections: rediss:// ?"}
    if scheme == "rediss" and isinstance(exc, RedisTimeoutError):
        return {"hint": "a TLS handshake with a plain-text port times out: redis:// ?"}
    return {}
