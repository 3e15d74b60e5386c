"""Each script carries only the prelude statements it reaches (protocol/prelude.py): none
it calls is left out, and the ones it never reaches are not sent."""

from __future__ import annotations

from importlib import resources

import pytest

from leaseq.protocol import prelude, scripts

_LUA = resources.files("leaseq.protocol").joinpath("lua")
_FULL = _LUA.joinpath("_ctl.lua").read_text() + _LUA.joinpath("_job.lua").read_text()

_TOY = """\
-- a header about the whole prelude
local A = {}
local B = 2  -- a trailing comment naming c_unused

-- c's comment
local function c(x)
  return A[x]
end

local late

-- d calls c
local function d(x,
                 y)

  return c(x) + y
end

late = function(x)
  return d(x, B)
end

local function e_unused()
  return B
end
"""


def test_a_script_gets_what_it_names_and_what_that_names_in_the_preludes_order():
    cut = prelude.shake(_TOY, "return late(1)\n")
    assert cut == _TOY.replace(
        "\nlocal function e_unused()\n  return B\nend\n", "")
    # And a body naming only c gets c and the table it reads, with their comments.
    assert prelude.shake(_TOY, "return c(1)") == (
        "-- a header about the whole prelude\nlocal A = {}\n"
        "\n-- c's comment\nlocal function c(x)\n  return A[x]\nend\n")


def test_a_name_in_a_comment_does_not_pull_a_statement_in():
    assert prelude.shake(_TOY, "-- late(1) is not called here\nreturn 1") == ""


@pytest.mark.parametrize("broken", [
    "local function f()\n  return 1\n",  # no closing end
    "local A = {}\nif A then A = nil end\n",  # a statement the cut cannot place
])
def test_a_prelude_the_cut_cannot_read_is_refused(broken: str):
    with pytest.raises(ValueError, match="prelude"):
        prelude.shake(broken, "return A")


@pytest.mark.parametrize("script", [*scripts.ALL], ids=lambda s: s.name)
def test_no_script_uses_a_prelude_name_it_was_not_given(script: scripts.Script):
    assert prelude.missing(_FULL, script.source) == set()


def test_the_cut_leaves_out_what_a_script_never_reaches():
    # The heartbeat's renewal reads the controls but makes no job: none of the fifo
    # index's helpers, nor job creation, is sent with it; the enqueue's is.
    assert "ctl_dependents" not in prelude.defined(scripts.EXTEND.source)
    assert "create_job" not in prelude.defined(scripts.EXTEND.source)
    assert "ctl_init" in prelude.defined(scripts.EXTEND.source)
    assert {"create_job", "flush_jobs", "ctl_new"} <= prelude.defined(scripts.ENQUEUE.source)
    assert len(scripts.ENQUEUE.source) < len(_FULL)


def test_missing_finds_a_helper_left_out():
    cut = prelude.shake(_TOY, "return c(1)")
    assert prelude.missing(_TOY, cut + "return d(1, 2)") == {"d"}
