"""The command line's JSON log lines: the renderer's serializer writes exactly what
``json.dumps`` writes, for every value a log line may carry, and fails as it fails."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from leaseq.cli.logsetup import JsonDumps


def fallback(obj: Any) -> Any:
    """As structlog's: what has no JSON form is written as its repr."""
    return repr(obj)


_leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
           | st.text() | st.builds(object) | st.sets(st.integers(), max_size=3)
           | st.binary(max_size=8) | st.decimals(allow_nan=False).map(Decimal))
_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=6) | st.integers() | st.booleans() | st.none(),
                      inner, max_size=4),
    max_leaves=12)


@given(st.dictionaries(st.text(max_size=10), _values, max_size=8))
def test_it_writes_what_json_dumps_writes(event: dict[str, Any]) -> None:
    """Unicode (lone surrogates too) escaped as ASCII, floats, NaN and infinities,
    non-string keys, nested values and values without a JSON form, byte for byte."""
    assert JsonDumps()(event, default=fallback) == json.dumps(event, default=fallback)


def test_a_value_that_contains_itself_is_refused_as_json_dumps_refuses_it() -> None:
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    dumps = JsonDumps()
    with pytest.raises(ValueError, match="Circular reference detected"):
        dumps({"event": "x", "loop": loop}, default=fallback)
    # The failure leaves nothing behind: the next line is written as usual.
    assert dumps({"event": "y"}, default=fallback) == '{"event": "y"}'


def test_a_default_that_raises_raises_through_as_with_json_dumps() -> None:
    def refuse(obj: Any) -> Any:
        raise TypeError(f"no JSON for {type(obj).__name__}")

    with pytest.raises(TypeError, match="no JSON for object"):
        JsonDumps()({"event": "x", "v": object()}, default=refuse)


def test_structlogs_renderer_uses_it_with_its_own_fallback() -> None:
    """Through structlog's JSONRenderer: the renderer passes its fallback (``__structlog__``
    or repr), and the line is what the renderer's default serializer writes."""
    class Shown:
        def __structlog__(self) -> str:
            return "shown"

    event = {"event": "job_acked", "duration": 0.00876, "job_id": "é\udc80", "obj": Shown(),
             "plain": object()}
    fast = structlog.processors.JSONRenderer(serializer=JsonDumps())
    plain = structlog.processors.JSONRenderer()
    line = fast(None, "info", dict(event))
    assert line == plain(None, "info", dict(event))
    assert json.loads(line)["obj"] == "shown"
