"""Commands as RESP bytes, for the exchanges leaseq writes on a connection itself (the
ack transaction). redis-py's own packer checks every argument's size to avoid copying
large ones; for the ack's many short arguments that cost more than the copy it saves
(a fifth of a worker's CPU per acked job, measured). hiredis's packer, in C, is three
times faster again than the Python one here; it encodes text as UTF-8 only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis comes with redis[hiredis]
    _hiredis_pack = None

__all__ = ["pack"]


def pack(commands: Sequence[Sequence[Any]], encoder: Any) -> bytes:
    """The commands, in order, as one buffer to write. ``encoder`` is the connection's
    (redis-py's ``Encoder``): text is encoded as the client asks, and any argument of
    another type is passed to it, so numbers and refusals (a ``bool``, ``None``) are the
    ones redis-py gives."""
    encoding, errors = encoder.encoding, encoder.encoding_errors
    if _hiredis_pack is not None and encoding in ("utf-8", "utf8") and errors == "strict":
        try:
            return b"".join([_hiredis_pack(tuple(command)) for command in commands])
        except TypeError:
            pass  # an argument hiredis does not take: redis-py's encoder says why below
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, str):
                data = arg.encode(encoding, errors)
            elif type(arg) is bytes:
                data = arg
            elif type(arg) is int:
                data = b"%d" % arg
            else:
                data = bytes(encoder.encode(arg))  # a memoryview or bytearray copied
            out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)
