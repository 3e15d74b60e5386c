"""The default JSON codec: its decoder answers as ``json.loads`` does, value or error,
for any text, and what it encodes comes back equal."""

from __future__ import annotations

import json
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from leaseq import JsonSerializer, SerializationError
from leaseq.protocol.codec import encode

CODEC = JsonSerializer()

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)

# Valid JSON with whitespace around it or text after it, JSON's own edge cases (NaN,
# huge numbers, lone surrogates), and text that is no JSON at all.
texts = st.one_of(
    st.builds(lambda ws1, v, ws2, tail: ws1 + json.dumps(v) + ws2 + tail,
              st.sampled_from(["", " ", "\n\t"]), values, st.sampled_from(["", " ", "\r\n"]),
              st.sampled_from(["", "x", "0", "]", ",1"])),
    st.sampled_from(["NaN", "-Infinity", "1e400", "12345678901234567890123", '"\\ud800"',
                     "", "  ", "{", '{"a":}', "[1,]", "tru", "0x10", "01"]),
    st.text(max_size=20),
)


def _outcome(decode: Any, text: str) -> tuple[str, Any]:
    try:
        value = decode(text)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return "value", json.dumps(value, allow_nan=True)  # NaN != NaN: compare the text


@given(texts)
def test_the_decoder_answers_as_json_loads_does(text: str):
    expected = _outcome(json.loads, text)
    assert _outcome(CODEC.loads, text) == expected
    assert _outcome(CODEC.loads, text.encode()) == expected  # as Redis returns it


@given(values)
def test_what_it_encodes_comes_back_equal(value: Any):
    assert CODEC.loads(encode(CODEC, value, "payload")) == value


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1j: 1}, object()])
def test_what_json_cannot_hold_is_refused_with_a_leaseq_error(bad: Any):
    with pytest.raises(SerializationError):
        encode(CODEC, bad, "payload")
