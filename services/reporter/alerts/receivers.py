"""The configured receivers, resolved: URL and secret read, filters ready to match problems."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from services.reporter.alerts.events import Event
from services.reporter.alerts.problems import Problem
from shared.alerts_config import SEVERITY_RANK, AlertmanagerReceiver, Receiver, SlackReceiver, WebhookReceiver

Kind = Literal["webhook", "slack", "alertmanager"]


@dataclass(frozen=True)
class Target:
    name: str
    kind: Kind
    url: str = field(repr=False)  # a credential for Slack: never logged, never in an exception
    secret: str | None = field(default=None, repr=False)
    min_severity: int = 0
    segments: frozenset[str] = frozenset()
    zones: frozenset[str] = frozenset()
    codes: frozenset[str] = frozenset()
    timeout: float = 10.0
    valid_for: float | None = None

    @classmethod
    def of(cls, receiver: Receiver) -> Target:
        """Raises ConfigError (naming the key, never the value) when a URL or secret is missing."""
        kind: Kind
        if isinstance(receiver, WebhookReceiver):
            kind = "webhook"
        elif isinstance(receiver, SlackReceiver):
            kind = "slack"
        else:
            kind = "alertmanager"
        url = receiver.resolve_url()
        if isinstance(receiver, AlertmanagerReceiver):
            url = url.rstrip("/").removesuffix("/api/v2/alerts") + "/api/v2/alerts"
        return cls(
            name=receiver.name,
            kind=kind,
            url=url,
            secret=receiver.resolve_secret() if isinstance(receiver, WebhookReceiver) else None,
            min_severity=SEVERITY_RANK[receiver.min_severity],
            segments=frozenset(receiver.segments),
            zones=receiver.zone_set(),
            codes=frozenset(receiver.codes),
            timeout=receiver.timeout,
            valid_for=receiver.valid_for if isinstance(receiver, AlertmanagerReceiver) else None,
        )

    @property
    def url_fingerprint(self) -> str:
        """Remembers which URL answered 410 without storing the URL (a new URL re-enables)."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    def matches(self, problem: Problem) -> bool:
        return (
            SEVERITY_RANK[problem.severity] >= self.min_severity
            and (not self.segments or problem.segment in self.segments)
            and (not self.zones or problem.zone in self.zones)
            and (not self.codes or problem.code in self.codes)
        )

    def sees(self, event: Event) -> bool:
        """A receiver hears of a problem that passes its filters, or passed them before a change
        (so an error-only receiver learns that its error became a warning)."""
        return self.matches(event.problem) or (event.previous is not None and self.matches(event.previous))
