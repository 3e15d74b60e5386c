"""Loading the handlers a ``leaseq worker`` runs, from ``module:attribute``."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    pass


from .exits import EXIT_USAGE, fail


def load_target(spec: str) -> Any:
    """Import ``MODULE:ATTR`` (the current directory is importable, as with uvicorn); a
    target that cannot serve is one line on stderr and :data:`EXIT_USAGE`."""
    obj = import_target(spec)
    expected = ("expected a dict of task handlers ({'name': handler, ...}) or a function "
                "that takes a Queue and returns a Worker")
    if not isinstance(obj, Mapping) and not callable(obj):
        _bad_target(spec, f" is of type {type(obj).__name__}; {expected}")
    if not isinstance(obj, Mapping) and not _takes_one_argument(obj):
        what = "a handler" if inspect.iscoroutinefunction(obj) else "a callable"
        _bad_target(spec, f" is {what} taking {_parameters(obj)}; {expected}")
    return obj


def import_target(spec: str) -> Any:
    """The object ``MODULE:ATTR`` names (the current directory is importable); one
    that cannot be imported is one line on stderr and :data:`EXIT_USAGE`."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        _bad_target(spec, ": expected MODULE:ATTR")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        _bad_target(spec, f": cannot import {module_name!r}: {exc}")
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            _bad_target(spec, f": {module_name!r} has no attribute {attr!r}")
    return obj


def _bad_target(spec: str, problem: str) -> NoReturn:
    fail(f"TARGET {spec!r}{problem}", EXIT_USAGE)


def _takes_one_argument(obj: Any) -> bool:
    try:
        inspect.signature(obj).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature to read (some builtins): let the call decide
        return True
    return True


def _parameters(obj: Any) -> str:
    try:
        names = list(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return "unknown arguments"
    return f"({', '.join(names)})"
