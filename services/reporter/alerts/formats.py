"""What receivers are sent: Standard Webhooks events, Slack digests, Alertmanager v2 alerts.

Bodies are rendered when the run is committed and stored in the outbox as bytes, so every retry
sends exactly the same body (a webhook's signature covers it; only the signing time is fresh).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import msgspec

from services.reporter.alerts.events import Event, EventKind
from services.reporter.alerts.problems import Problem
from shared.messages import CertificateFacts, Status

ALERTNAME = "TLSCertificateProblem"
ALERTMANAGER_BATCH = 1000  # alerts per POST: 100k open problems are 100 requests
SLACK_LINES = 10  # per kind of event in one digest
SLACK_SECTION_CHARS = 3000  # Slack's limit for a section's text
SLACK_TEXT_CHARS = 3000  # the notification fallback; Slack cuts ``text`` far later, readers sooner

_encoder = msgspec.json.Encoder()


@functools.lru_cache(maxsize=4096)  # a run's events share a few instants (now, first seen)
def when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def delivery_id(*parts: str) -> str:
    """Deterministic, so committing the same run twice could never send twice under new ids."""
    return "msg_" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:26]


# -- webhook (Standard Webhooks) ---------------------------------------------------------------
class Previous(msgspec.Struct, frozen=True):
    severity: Status
    message: str
    certificate_sha256: str | None


class EventData(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str  # the problem: every event about one problem carries the same id
    ip_address: str
    port: int | None
    fqdn: str
    code: str
    detail: str
    zone: str
    segment: str
    severity: Status
    status: Status  # as in the CSV and JSONL (= severity)
    state: str  # open | resolved
    message: str
    first_seen: datetime
    last_seen: datetime
    run_id: str
    certificate: CertificateFacts | None
    previous: Previous | None = None  # problem.changed only
    reason: str = ""  # problem.resolved only, when it says more than "no longer found": "zone removed"


class WebhookEvent(msgspec.Struct, frozen=True):
    type: str
    timestamp: datetime
    data: EventData


def webhook_body(event: Event, now: float) -> bytes:
    p, prev = event.problem, event.previous
    data = EventData(
        id=p.id,
        ip_address=p.ip_address,
        port=p.port,
        fqdn=p.fqdn,
        code=p.code,
        detail=p.detail,
        zone=p.zone,
        segment=p.segment,
        severity=p.severity,
        status=p.severity,
        state="resolved" if event.kind == "resolved" else "open",
        message=p.message,
        first_seen=when(p.first_seen),
        last_seen=when(p.last_seen),
        run_id=p.run_id,
        certificate=p.certificate,
        previous=None if prev is None else Previous(prev.severity, prev.message, prev.sha256),
        reason=event.reason,
    )
    return _encoder.encode(WebhookEvent(type=f"problem.{event.kind}", timestamp=when(now), data=data))


# -- Slack ---------------------------------------------------------------------------------------
_SLACK_TITLES: dict[EventKind, str] = {
    "opened": "Opened",
    "changed": "Changed",
    "resolved": "Resolved",
    "reminder": "Still open",
}
_ICONS = {"error": ":red_circle:", "warning": ":large_orange_circle:"}


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_line(event: Event) -> str:
    p = event.problem
    icon = ":white_check_mark:" if event.kind == "resolved" else _ICONS[p.severity]
    where = f"`{p.endpoint()}` " if p.ip_address else ""
    why = f" — {event.reason}" if event.reason else ""
    return f"• {icon} {where}{_mrkdwn(p.fqdn)} — {_mrkdwn(p.message)} (`{p.code}`){why}"


def _urgency(event: Event) -> tuple[int, float, str]:
    p = event.problem
    not_after = p.certificate.not_after.timestamp() if p.certificate else float("inf")
    return (0 if p.severity == "error" else 1, not_after, p.fqdn)


def _section(title: str, events: Sequence[Event]) -> str:
    lines = [f"*{title} ({len(events)})*"]
    size = len(lines[0])
    for line in (_slack_line(e)[:500] for e in sorted(events, key=_urgency)[:SLACK_LINES]):
        if size + len(line) + 1 > SLACK_SECTION_CHARS - 40:  # leaves room for "… and N more"
            break
        lines.append(line)
        size += len(line) + 1
    hidden = len(events) - (len(lines) - 1)
    if hidden:
        lines.append(f"… and {hidden} more")
    return "\n".join(lines)


def slack_digest(run_id: str, complete: bool, events: Sequence[Event]) -> bytes | None:
    """One message for a run's events (None when there is nothing to say: no storm every run)."""
    if not events:
        return None
    by_kind: dict[EventKind, list[Event]] = {}
    for event in events:
        by_kind.setdefault(event.kind, []).append(event)
    counts = ", ".join(f"{len(by_kind[k])} {_SLACK_TITLES[k].lower()}" for k in _SLACK_TITLES if k in by_kind)
    state = "" if complete else " (incomplete run: nothing resolved)"
    if not complete and "resolved" in by_kind:  # only what zone discovery says is gone
        state = " (incomplete run: only the problems of removed zones resolved)"
    headline = f"TLS certificate problems: {counts} — run {run_id}{state}"
    blocks: list[dict[str, object]] = [{"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(headline)}}]
    blocks += [
        {"type": "section", "text": {"type": "mrkdwn", "text": _section(_SLACK_TITLES[kind], by_kind[kind])}}
        for kind in _SLACK_TITLES
        if kind in by_kind
    ]
    return _encoder.encode({"text": headline[:SLACK_TEXT_CHARS], "blocks": blocks})


# -- Alertmanager (API v2) -------------------------------------------------------------------------
class Alert(msgspec.Struct, frozen=True):
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: datetime  # Alertmanager's spelling
    endsAt: datetime


def alert_labels(p: Problem) -> dict[str, str]:
    """Labels identify an alert; an empty value is the same as no label, so none is sent."""
    labels = {"alertname": ALERTNAME, "code": p.code, "severity": p.severity, "fqdn": p.fqdn}
    if p.ip_address:
        labels["ip"] = p.ip_address
    if p.port is not None:
        labels["port"] = str(p.port)
    if p.zone:
        labels["zone"] = p.zone
    if p.segment:
        labels["segment"] = p.segment
    if p.detail:
        labels["detail"] = p.detail  # keeps apart two trust stores' rows about one endpoint
    return labels


def _alert(p: Problem, ends: float) -> Alert:
    not_after = p.certificate.not_after.isoformat().replace("+00:00", "Z") if p.certificate else ""
    annotations = {"summary": p.message, "not_after": not_after} if not_after else {"summary": p.message}
    return Alert(labels=alert_labels(p), annotations=annotations, startsAt=when(p.first_seen), endsAt=when(ends))


class AlertmanagerEntry(msgspec.Struct, frozen=True):
    """An outbox row for Alertmanager: the alerts a run ended, and how long its firing ones last.

    The firing alerts themselves are rendered when sent, from the open problems in the state:
    a 100k-problem estate would otherwise store a 50 MB snapshot per run, and a late delivery
    would post a stale one.
    """

    valid_for: float
    ended: list[Alert]


def alertmanager_entry(ended: Iterable[Problem], now: float, valid_for: float) -> bytes:
    return _encoder.encode(AlertmanagerEntry(valid_for=valid_for, ended=[_alert(p, now) for p in ended]))


def alertmanager_posts(entry: bytes, firing: Iterable[Problem], now: float) -> list[bytes]:
    """The bodies to POST for an entry: the open problems (valid for ``valid_for`` from now), then
    the ended alerts, except any whose labels fire again (a problem resolved, then reopened)."""
    stored = msgspec.json.decode(entry, type=AlertmanagerEntry)
    alerts = [_alert(p, now + stored.valid_for) for p in firing]
    again = {tuple(sorted(a.labels.items())) for a in alerts}
    alerts += [a for a in stored.ended if tuple(sorted(a.labels.items())) not in again]
    return [_encoder.encode(alerts[i : i + ALERTMANAGER_BATCH]) for i in range(0, len(alerts), ALERTMANAGER_BATCH)]
