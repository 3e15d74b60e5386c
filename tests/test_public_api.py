"""The public surface: everything in ``__all__`` is documented, and nothing else is."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import leaseq

API_DOC = Path(__file__).parent.parent / "docs" / "api.md"


def documented_names() -> set[str]:
    return set(re.findall(r"^### `([A-Za-z_]+)`", API_DOC.read_text(), flags=re.M))


def test_all_matches_docs_api_md():
    exported = set(leaseq.__all__) - {"__version__"}
    assert documented_names() == exported


def test_every_public_name_and_method_has_a_docstring():
    missing = []
    for name in leaseq.__all__:
        obj = getattr(leaseq, name)
        if name == "__version__" or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not callable(member):
                    continue
                if not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    assert not missing, missing


def test_version_is_a_string():
    assert isinstance(leaseq.__version__, str)
    assert leaseq.__version__


def test_leaseq_web_names_are_documented():
    import leaseq.web

    documented = set(re.findall(r"^### `leaseq\.web\.([A-Za-z_]+)`", API_DOC.read_text(),
                                flags=re.M))
    assert documented == set(leaseq.web.__all__)
    for name in leaseq.web.__all__:
        obj = getattr(leaseq.web, name)
        if inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
