"""The import contracts of ``pyproject.toml`` (see ``docs/architecture.md``) hold for the
package, and each one fails when a change breaks it: ``lint-imports`` is run on a copy of
the package with one deliberate violation at a time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the package found in ``root``, with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the package and its ``pyproject.toml``, to break on purpose."""
    shutil.copytree(ROOT / "leaseq", tmp_path / "leaseq",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(root: Path, module: str, line: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    source = path.read_text()
    marker = "from __future__ import annotations\n"
    assert marker in source
    path.write_text(source.replace(marker, marker + line + "\n", 1))


def test_the_package_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    # The protocol reaching up into the runtime.
    ("leaseq.protocol.keys", "from ..runtime import outage",
     "The command line uses the library, the library never the command line"),
    # The runtime reaching up into the command line.
    ("leaseq.runtime.heartbeat", "from ..cli import exits",
     "The command line uses the library, the library never the command line"),
    # The dashboard and the test kit are independent of each other.
    ("leaseq.web._reads", "from ..testing import _record",
     "Only the pytest plugin and the demo use the test kit"),
    # A circle inside the protocol: the queue's views importing the queue.
    ("leaseq.protocol.views", "from . import queue",
     "No import circles between the modules of a part"),
    # A circle inside the runtime: the job runner importing the worker again.
    ("leaseq.runtime.job", "from . import worker",
     "No import circles between the modules of a part"),
])
def test_a_violation_breaks_its_contract(copy: Path, module: str, line: str, contract: str):
    add_import(copy, module, line)
    result = lint_imports(copy)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout, result.stdout
