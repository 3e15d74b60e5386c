"""The dashboard's HTML documents (the page itself is static; its script fetches data)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

STATIC = Path(__file__).parent / "static"
"""The dashboard's files: HTML, script and style sheet, served under ``/static``."""


@cache
def dashboard_page() -> str:
    """The dashboard."""
    return (STATIC / "index.html").read_text(encoding="utf-8")


@cache
def login_page() -> str:
    """Asks for the token and keeps it in a same-site cookie."""
    return (STATIC / "login.html").read_text(encoding="utf-8")
