"""What a doctor run reports: one :class:`Finding` per check, collected in a
:class:`Report` that renders for a terminal or as JSON.

A finding holds a count, at most :data:`EXAMPLES` example ids and how many items were
repaired, never the items themselves, so a report stays small on a queue of millions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["EXAMPLES", "INTEGRITY", "Finding", "Report", "Severity", "Status"]

Severity = Literal["ok", "info", "warning", "error"]
"""How bad a finding is, as the check that made it judged."""
Status = Literal["ok", "warn", "problem"]
"""What a finding means for the run once repairs are counted (see :attr:`Finding.status`)."""
EXAMPLES = 10
"""Example ids a finding keeps, however many items its check found."""
INTEGRITY = {
    # check: (message when clean, what was found)
    "multiple_sets": ("every id in at most one set",
                      ("id(s) in more than one set (not repairable automatically: decide "
                       "which state is right)")),
    "missing_hash": ("every id with its job hash", "id(s) in a set without a job hash"),
    "orphan_lease": ("every lease key held by an id of in_progress",
                     "lease key(s) whose id is not in in_progress"),
    "lease_without_expiry": ("every lease key expiring", "lease key(s) without an expiry"),
    "orphan_job": ("every job hash with its id in a set", "job hash(es) whose id is in no set"),
}
"""A queue's integrity checks: for each, the message when it found nothing and what it
counts. A terminal report sums up the clean ones in one ``integrity`` line."""


@dataclass(frozen=True, slots=True)
class Finding:
    """The result of one check: of the server, or of one queue (then ``queue`` is set)."""

    severity: Severity
    """``ok``/``info`` need nothing; ``warning`` deserves attention; ``error`` is broken."""
    check: str
    """Which check produced it (``maxmemory-policy``, ``orphan_lease``, ``reaper``, ...)."""
    message: str
    """What was found, for a person (with the count and examples)."""
    queue: str | None = None
    """The queue checked; ``None`` for a check of the server."""
    count: int = 0
    """Items the check found (ids or keys); 0 when there is nothing to count."""
    repaired_count: int = 0
    """How many of them ``repair=True`` fixed."""
    examples: tuple[str, ...] = ()
    """At most :data:`EXAMPLES` of the ids found, in the order found."""
    details: Mapping[str, float | int | None] = field(default_factory=dict)
    """Measurements of the check (``oldest_claim_age_s``, ``last_sweep_age_s``)."""

    @property
    def repaired(self) -> bool:
        """Whether ``repair=True`` fixed every item the check found."""
        return self.count > 0 and self.repaired_count == self.count

    @property
    def status(self) -> Status:
        """``problem`` for an error not (wholly) repaired, ``warn`` for a warning, else
        ``ok``."""
        if self.severity == "error" and not self.repaired:
            return "problem"
        return "warn" if self.severity == "warning" else "ok"

    def as_dict(self) -> dict[str, Any]:
        """The finding as plain JSON values."""
        return {"check": self.check, "queue": self.queue, "status": self.status,
                "severity": self.severity, "count": self.count,
                "repaired": self.repaired_count, "examples": list(self.examples),
                "message": self.message, "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """The finding :meth:`as_dict` described."""
        return cls(data["severity"], data["check"], data["message"], queue=data["queue"],
                   count=data["count"], repaired_count=data["repaired"],
                   examples=tuple(data["examples"]), details=dict(data["details"]))


@dataclass(slots=True)
class Report:
    """All findings of a doctor run: one per check, so its size does not grow with the
    queues' sizes."""

    findings: list[Finding] = field(default_factory=list)
    """In the order the checks ran."""

    @property
    def problems(self) -> list[Finding]:
        """Findings whose status is ``problem`` (errors not wholly repaired)."""
        return [f for f in self.findings if f.status == "problem"]

    @property
    def warnings(self) -> list[Finding]:
        """Findings whose status is ``warn``."""
        return [f for f in self.findings if f.status == "warn"]

    def add(self, severity: Severity, check: str, message: str, *, queue: str | None = None,
            count: int = 0, repaired_count: int = 0, examples: Iterable[str] = (),
            details: Mapping[str, float | int | None] | None = None) -> None:
        """Record a finding."""
        self.findings.append(Finding(severity, check, message, queue, count, repaired_count,
                                     tuple(examples)[:EXAMPLES], dict(details or {})))

    def as_dict(self) -> dict[str, Any]:
        """The report as one JSON document: ``ok`` (no problem), the numbers of problems
        and warnings, and every check's finding."""
        return {"ok": not self.problems, "problems": len(self.problems),
                "warnings": len(self.warnings),
                "checks": [f.as_dict() for f in self.findings]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """The report :meth:`as_dict` described."""
        return cls([Finding.from_dict(f) for f in data["checks"]])

    def lines(self) -> list[str]:
        """The report for a terminal, one line per check; a queue's integrity checks that
        found nothing are summed up by its ``integrity`` line."""
        marks = {"ok": "ok  ", "warn": "WARN", "problem": "FAIL"}
        out = []
        for f in self.findings:
            if f.check in INTEGRITY and f.count == 0:
                continue
            mark = "info" if f.severity == "info" else marks[f.status]
            suffix = ""
            if f.repaired:
                suffix = " (repaired)"
            elif f.repaired_count:
                suffix = f" ({f.repaired_count} of {f.count} repaired)"
            out.append(f"{mark}  {f.check}: {f.message}{suffix}")
        return out
