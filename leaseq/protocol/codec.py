"""Serialisation of payloads and results (JSON by default, never pickle)."""

from __future__ import annotations

import json
from json import encoder as _json_encoder
from typing import Any, Protocol, runtime_checkable

from ..exceptions import SerializationError


@runtime_checkable
class Serializer(Protocol):
    """What a queue needs to store payloads and results: bytes out, objects back.

    A serializer whose output is always UTF-8 text may say so with a class attribute
    ``text = True``; only such a serializer is accepted on a client created with
    ``decode_responses=True`` (binary output could not be decoded there).
    """

    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj``; raise any exception for values it cannot encode."""
        ...

    def loads(self, data: bytes | str) -> Any:
        """Decode what :meth:`dumps` produced; raise any exception for bad data."""
        ...


class JsonSerializer:
    """Compact UTF-8 JSON; rejects NaN/Infinity so every stored value is standard JSON."""

    __slots__ = ("_c_encoder", "_decoder", "_encoder", "_scan")

    text = True
    """Its output is always UTF-8 text, so it also works on a client that decodes
    responses (``decode_responses=True``)."""

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(
            ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
        self._decoder = json.JSONDecoder()
        # The decoder's own scanner (CPython's C one), called directly: decode() first
        # matches whitespace around the value with two regexes, which took 0.4 of the
        # 0.6 µs of decoding a short payload. Not in typeshed.
        self._scan: Any = getattr(self._decoder, "scan_once")  # noqa: B009
        # CPython's C encoder, made once: JSONEncoder.encode makes one per call, which
        # cost a no-op job's result 2 of its 2.6 µs to encode. Without the markers of
        # check_circular, a value that contains itself ends in RecursionError instead of
        # ValueError: refused all the same (a SerializationError, see encode()).
        make = getattr(_json_encoder, "c_make_encoder", None)  # not in typeshed
        self._c_encoder: Any = None if make is None else make(
            None, self._encoder.default, _json_encoder.encode_basestring, None, ":", ",",
            False, False, False)

    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj`` as compact JSON."""
        if self._c_encoder is not None:
            return "".join(self._c_encoder(obj, 0)).encode()
        return self._encoder.encode(obj).encode()

    def loads(self, data: bytes | str) -> Any:
        """Decode JSON from bytes (must be UTF-8) or str."""
        text = data.decode() if isinstance(data, bytes) else data
        try:
            value, end = self._scan(text, 0)
        except StopIteration:  # not a value where the text starts: decode() says why
            return self._decoder.decode(text)
        if end == len(text):
            return value
        return self._decoder.decode(text)  # whitespace around it, or more after it


def encode(serializer: Serializer, obj: Any, what: str) -> bytes:
    """Encode with a leaseq error instead of whatever the serializer raised."""
    try:
        data = serializer.dumps(obj)
    except Exception as exc:
        raise SerializationError(f"{what} cannot be serialised: {exc}") from exc
    if not isinstance(data, (bytes, str)):
        raise SerializationError(f"serializer returned {type(data).__name__}, not bytes")
    return data if isinstance(data, bytes) else data.encode()
