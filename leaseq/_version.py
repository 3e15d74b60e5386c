"""The installed package's version (kept apart so any module can import it)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("leaseq")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    VERSION = "0.0.0"
