"""Writing a benchmark's results: ``STEM.json`` (with the command, date, duration and
machine) and ``STEM.md`` rendered from it."""

from __future__ import annotations

import datetime
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .run import machine


def write(module: str, stem: str, results: Any, started: float, directory: str,
          render: Callable[[dict[str, Any]], str]) -> None:
    """Write ``results`` of ``python -m MODULE`` (begun at ``started``) to ``directory``."""
    doc = {"command": f"python -m {module} " + " ".join(sys.argv[1:]),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "seconds": round(time.time() - started, 1), "machine": machine(),
           "results": results}
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / f"{stem}.md").write_text(render(doc))
    print(f"written to {out / (stem + '.json')} and {stem}.md")
