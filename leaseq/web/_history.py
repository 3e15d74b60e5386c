"""A job's attempts, put together from what the queue keeps about them.

No single record holds a job's history; four hold parts of it:

- the job hash: ``token``/``owner``/``claimed_at`` of the latest claim, ``settled`` and
  ``settled_by`` of the latest settlement (an ack says ``ack``), ``releases``, and
  ``settles``, the last 8 fails, releases, buries and cancels as ``token:mode:outcome;``
  entries, newest first;
- the queue's ``events`` list: the last 200 leases the reaper found expired, each with
  its attempt, owner, token and claim time;
- the queue's lifecycle stream, when it keeps one (``Queue(events=N)``): a ``started``
  event per claim, and how each ended;
- the live lease, for the claim running now.

Claims are told apart by their token, ``<fence>-<nonce>``, whose fence grows with every
claim of the queue: sorting by it puts them in the order they were made. Reading costs
one ``HMGET``, one ``LRANGE`` of at most 200 entries and one ``XREVRANGE`` of at most
500, whatever the queue's size.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ..models import JobInfo
from ..protocol.queue import Queue
from ..protocol.wire import opt_int, opt_text, text
from . import _reads as reads

EXPIRIES_READ = 200
"""Entries of the reaper's list read: all it keeps (``reap.lua`` trims it to 200)."""
STREAM_READ = 500
"""Newest entries of the lifecycle stream looked through for the job's events."""
PREVIEW_CHARS = 16_384
"""The most characters of a payload or result the job view shows."""

_FIELDS = ("token", "owner", "claimed_at", "settles", "releases", "settled", "settled_by")
_ENDS = {"fail": "failed", "release": "released", "bury": "buried", "cancel": "cancelled"}


@dataclasses.dataclass
class _Claim:
    token: str | None
    attempt: int | None = None
    owner: str | None = None
    claimed_at: int | None = None
    ended_at: int | None = None
    end: str = "unknown"
    outcome: str | None = None
    detail: str | None = None
    lease_ttl: float | None = None
    sources: list[str] = dataclasses.field(default_factory=list)

    def seen_in(self, source: str) -> None:
        if source not in self.sources:
            self.sources.append(source)


def preview(value: Any) -> dict[str, Any]:
    """``value`` as indented JSON, cut at :data:`PREVIEW_CHARS`."""
    if value is None:
        return {"text": None, "size": 0, "truncated": False}
    shown = json.dumps(reads.jsonable(value), indent=2, ensure_ascii=False)
    # What UTF-8 cannot carry (a lone surrogate from a custom serializer) is escaped.
    shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")
    return {"text": shown[:PREVIEW_CHARS], "size": len(shown),
            "truncated": len(shown) > PREVIEW_CHARS}


def actions(state: str | None) -> list[str]:
    """What the dashboard offers for a job in ``state``."""
    if state == "dead":
        return ["requeue", "purge"]
    if state in ("todo", "delayed", "in_progress", "blocked"):
        return ["cancel"]
    return []


def settlements(raw: str | None) -> list[dict[str, str]]:
    """The ``settles`` field's entries, newest first (malformed ones left out)."""
    out = []
    for entry in (raw or "").split(";"):
        parts = entry.rsplit(":", 2)
        if len(parts) == 3 and all(parts):
            out.append({"token": parts[0], "mode": parts[1], "outcome": parts[2]})
    return out


def _fence(token: str | None) -> int | None:
    head = (token or "").partition("-")[0]
    return int(head) if head.isdigit() else None


async def detail(q: Queue, info: JobInfo, now_ms: int) -> dict[str, Any]:
    """The job view's data for ``info`` (see :class:`~leaseq.web._schemas.JobDetail`)."""
    k = q.keys
    async with q.redis.pipeline(transaction=False) as pipe:
        pipe.hmget(k.job(info.job_id), _FIELDS)
        pipe.lrange(k.events, 0, EXPIRIES_READ - 1)
        pipe.xrevrange(k.stream, count=STREAM_READ)
        fields, raw_events, raw_stream = await pipe.execute()
    token, owner, claimed_at, settles, releases, settled, settled_by = (
        opt_text(f) for f in fields)
    expiries = [e for e in reads.parse_events(raw_events) if e.get("job_id") == info.job_id]
    timeline = []
    for entry_id, entry in raw_stream:
        data = {text(key): text(value) for key, value in entry.items()}
        if data.pop("job", None) == info.job_id:
            eid = text(entry_id)
            timeline.append({"id": eid, "at": int(eid.partition("-")[0]),
                             "type": data.pop("type", ""), "data": data})
    settled_list = settlements(settles)
    released = opt_int(releases) or 0
    claims = _claims(info, token, owner, opt_int(claimed_at), settled, settled_by,
                     settled_list, expiries, timeline)
    numbered = _number(claims, info.attempts + released)
    return {
        "job": {**reads.job_view(q, info), "payload": None, "result": None},
        "server_time_ms": now_ms,
        "payload": preview(info.payload), "result": preview(info.result),
        "last_claim": {"token": token, "owner": owner, "claimed_at": opt_int(claimed_at)},
        "releases": released,
        "attempts": [dataclasses.asdict(c) for c in claims], "numbered": numbered,
        "settlements": settled_list, "expiries": expiries,
        "stream": bool(raw_stream), "timeline": timeline,
        "actions": actions(info.state),
    }


def _claims(info: JobInfo, token: str | None, owner: str | None, claimed_at: int | None,
            settled: str | None, settled_by: str | None,
            settled_list: list[dict[str, str]], expiries: list[dict[str, Any]],
            timeline: list[dict[str, Any]]) -> list[_Claim]:
    """Every claim some record tells of, oldest first."""
    claims: dict[str, _Claim] = {}

    def claim(of: str) -> _Claim:
        return claims.setdefault(of, _Claim(of))

    # Oldest first, so that an event without a token (failed, acked) goes to the latest
    # claim of its attempt number started before it.
    for event in reversed(timeline):
        data, at = event["data"], event["at"]
        attempt = opt_int(data.get("attempt"))
        if event["type"] == "started" and data.get("token"):
            c = claim(data["token"])
            c.attempt, c.owner, c.claimed_at = attempt, data.get("owner"), at
            c.seen_in("stream")
            continue
        if event["type"] not in ("failed", "acked") or attempt is None:
            continue
        started = [c for c in claims.values()
                   if c.attempt == attempt and (c.claimed_at or 0) <= at]
        if started:
            c = started[-1]
            c.ended_at = at
            if event["type"] == "acked":
                c.end, c.outcome = "acked", "done"
            else:
                c.end, c.outcome, c.detail = "failed", data.get("outcome"), data.get("error")
    for event in expiries:
        if not event.get("token"):
            continue
        c = claim(event["token"])
        c.attempt = event.get("attempt") or c.attempt
        c.owner = event.get("owner") or c.owner
        c.claimed_at = event.get("claimed_at") or c.claimed_at
        c.ended_at, c.end = event.get("at"), "lease_expired"
        c.outcome = event.get("outcome")
        c.detail = event.get("reason") or c.detail
        c.seen_in("expiries")
    for entry in settled_list:
        c = claim(entry["token"])
        c.end = "cancelled" if entry["outcome"] == "cancelled" else _ENDS.get(
            entry["mode"], "unknown")
        c.outcome = entry["outcome"]
        c.seen_in("settles")
    if token is not None:
        _last_claim(info, claim(token), owner, claimed_at, settled, settled_by)
    ordered = sorted(claims.values(), key=lambda c: (
        _fence(c.token) is None, _fence(c.token) or 0, c.claimed_at or 0))
    # The last error and the dead reason belong to the newest claim that ended so.
    for end, outcome, text_ in (("failed", None, info.error), (None, "dead", info.dead_reason)):
        for c in reversed(ordered):
            if (end is None or c.end == end) and (outcome is None or c.outcome == outcome):
                c.detail = c.detail or text_
                break
    return ordered


def _last_claim(info: JobInfo, c: _Claim, owner: str | None, claimed_at: int | None,
                settled: str | None, settled_by: str | None) -> None:
    """What the job hash and the live lease say of the latest claim."""
    c.owner = owner or c.owner
    c.claimed_at = claimed_at or c.claimed_at
    c.seen_in("claim")
    if settled == c.token and settled_by == "ack":
        c.end, c.outcome = "acked", "done"
        c.ended_at = None if info.finished_at is None else round(info.finished_at * 1000)
        c.seen_in("ack")
    elif c.end == "unknown" and info.state == "in_progress":
        if info.lease_token == c.token:
            c.end, c.lease_ttl = "running", info.lease_ttl
        else:
            # The lease is gone and no reaper has seen it yet.
            c.end, c.detail = "lease_expired", "not reaped yet"
    if c.attempt is None:
        # Claims add one to attempts and releases take it back; a job requeued from dead
        # starts again at 0, when its latest claim ended dead.
        attempt = info.attempts + (1 if c.end == "released" else 0)
        revived = c.outcome == "dead" and info.state != "dead"
        if attempt >= 1 and not revived:
            c.attempt = attempt


def _number(claims: list[_Claim], total: int) -> bool:
    """Give every claim its number when all the claims since the enqueue are known
    (as many as attempts plus releases, and none of the recorded numbers disagrees);
    return whether they are."""
    numbers = []
    expected = 0
    for c in claims:
        n = expected + 1
        if c.attempt is not None and c.attempt != n:
            return False
        numbers.append(n)
        expected = n - 1 if c.end == "released" else n
    if len(claims) != total:
        return False
    for c, n in zip(claims, numbers, strict=True):
        c.attempt = n
    return True
