"""The shared Lua preludes, cut down to what each script uses.

Lua scripts cannot import, so a script's preludes (``lua/_ctl.lua``, ``lua/_job.lua``) are
put in front of it. Redis runs a script's whole text on every call, and each
``local function`` of a prelude makes a new closure then, used or not: the two
preludes whole cost ~36,000 of redis-server's instructions per call (callgrind), a sixth
of a single enqueue. So a script carries only the prelude statements it reaches: the
ones it names, the ones those name, and so on, in the preludes' order.

The preludes are written so that this is a matter of lines: every top-level statement
starts at column 0 (``local name ...`` or ``name = function``), a function ends at the
first line that is exactly ``end``, and nothing else starts at column 0 but comments.
:func:`missing` checks a finished text the other way round, for the tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["defined", "missing", "shake", "without_comments"]

_TOP = re.compile(r"(?:local function (\w+)\(|local (\w+)\b|(\w+) = function\()")
_WORD = re.compile(r"[A-Za-z_]\w*")


def without_comments(text: str) -> str:
    """``text`` without its comments: a ``--`` on a line that quotes nothing before it
    starts one (a line that does is kept whole)."""
    out = []
    for line in text.splitlines():
        head, sep, _ = line.partition("--")
        out.append(head if sep and "'" not in head and '"' not in head else line)
    return "\n".join(out)


def _statements(prelude: str) -> list[tuple[str, str]]:
    """The prelude's top-level statements as (name defined, text with the comment lines
    above it), in order."""
    found: list[tuple[str, list[str]]] = []
    above: list[str] = []
    in_function = False
    for line in prelude.splitlines(keepends=True):
        if in_function:
            found[-1][1].append(line)
            in_function = line.rstrip("\n") != "end"
            continue
        top = _TOP.match(line)
        if top:
            found.append((top.group(1) or top.group(2) or top.group(3), [*above, line]))
            above = []
            in_function = top.group(2) is None
        elif line[:1] in (" ", "\t") and found and not above:
            found[-1][1].append(line)  # a continuation line of a statement
        elif line.startswith("--") or not line.strip():
            above.append(line)
        else:
            raise ValueError(f"a prelude line outside any statement: {line!r}")
    if in_function:
        raise ValueError(f"the prelude's function {found[-1][0]!r} has no closing 'end'")
    tail = "".join(above)
    if tail.strip():
        found.append(("", [tail]))  # trailing comments: kept with no name
    return [(name, "".join(lines)) for name, lines in found]


def defined(source: str) -> set[str]:
    """The names a Lua text defines at its top level (column 0)."""
    return {m.group(1) or m.group(2) or m.group(3)
            for m in re.finditer(rf"^{_TOP.pattern}", source, re.M)}


def _named(text: str, names: Iterable[str]) -> set[str]:
    words = set(_WORD.findall(without_comments(text)))
    return words.intersection(names)


def shake(prelude: str, body: str) -> str:
    """The statements of ``prelude`` that ``body`` reaches, in order."""
    statements = _statements(prelude)
    names = {name for name, _ in statements if name}
    texts: dict[str, list[str]] = {}
    for name, text in statements:
        texts.setdefault(name, []).append(text)
    needed: set[str] = set()
    todo = list(_named(body, names))
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        for text in texts[name]:
            todo += _named(text, names) - needed
    return "".join(text for name, text in statements if name in needed)


def missing(prelude: str, source: str) -> set[str]:
    """Names the full ``prelude`` defines that ``source`` uses but does not define: a
    script cut from it wrongly would call a global Redis refuses to look up."""
    return _named(source, defined(prelude)) - defined(source)
