"""``Alerting``: what the reporter calls once per finished run, and the senders behind it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

import httpx

from services.reporter.alerts import formats
from services.reporter.alerts.delivery import Render, RetryPolicy, SecretFilter, Sender, as_stored
from services.reporter.alerts.events import ZONE_REMOVED, Comparison, compare
from services.reporter.alerts.inventory import update_inventory
from services.reporter.alerts.metrics import AlertMetrics
from services.reporter.alerts.receivers import Target
from services.reporter.alerts.state import Delivery, OutboxEntry, StateStore
from services.reporter.report import RunReport
from shared.alerts_config import AlertsConfig
from shared.config import Config

log = logging.getLogger("dcc.alerts")

MIN_VALID_FOR = 3600.0  # an Alertmanager alert outlives a missed run or two, at least an hour
_FLUSH_POLL = 0.05


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    opened: int = 0
    changed: int = 0
    reminders: int = 0
    resolved: int = 0
    queued: int = 0  # deliveries committed for this run, over all receivers

    def summary(self) -> str:
        return (
            f"alerts: {self.opened} opened, {self.changed} changed, {self.reminders} reminders, "
            f"{self.resolved} resolved; {self.queued} deliveries queued"
        )


class Alerting:
    """The alerting half of the reporter; see the package docstring for the life cycle."""

    def __init__(
        self,
        config: AlertsConfig,
        targets: list[Target],
        *,
        clock: Callable[[], datetime] | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self._clock = clock or (lambda: datetime.now(UTC))
        self._transport = transport
        self._retry = retry or RetryPolicy()
        self._store = StateStore(config.state_file)  # AlertStateLocked when another process owns it
        try:
            self._targets = self._enabled(targets)
            retired = self._store.retire_unknown_receivers([t.name for t in targets])
            if retired:
                log.warning("alerts: %d pending deliveries to receivers no longer configured were given up", retired)
            self._problems = self._store.load_problems()
            self._served = self._store.load_inventory()
        except BaseException:
            self._store.close()
            raise
        self._redact = SecretFilter(targets)
        self._redact.attach()
        self._metrics = AlertMetrics((t.name for t in targets), self._store.pending_counts)
        self._metrics.restore(self._problems, self._served, self._store.last_completed_at())
        self.registry = self._metrics.registry
        self._stopping = threading.Event()
        self._senders: list[Sender] = []
        self._mutex = threading.Lock()
        self._closed = False

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        clock: Callable[[], datetime] | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> Alerting | None:
        """None without ``alerts``. ConfigError for a missing URL or secret (before the state opens);
        AlertStateLocked when another reporter owns the state file."""
        if config.alerts is None:
            return None
        targets = [Target.of(receiver) for receiver in config.alerts.receivers]
        return cls(config.alerts, targets, clock=clock, transport=transport, retry=retry)

    def _enabled(self, targets: list[Target]) -> list[Target]:
        disabled = self._store.disabled()
        enabled = []
        for target in targets:
            if target.name not in disabled:
                enabled.append(target)
            elif disabled[target.name] != target.url_fingerprint:
                self._store.enable(target.name)
                log.warning("alert receiver %s: URL changed since it answered 410 Gone; enabled again", target.name)
                enabled.append(target)
            else:
                log.error(
                    "alert receiver %s is disabled (it answered 410 Gone); change its URL to enable it", target.name
                )
        return enabled

    # -- once per finished run -------------------------------------------------------------------
    def on_report(self, report: RunReport) -> RunOutcome:
        """Compare the run with the state and queue its deliveries, all in one transaction."""
        with self._mutex:
            if self._closed:
                raise RuntimeError("alerting is closed")
            if self._store.run_recorded(report.run_id):
                log.info("alerts: run %s was already recorded", report.run_id)
                return RunOutcome(report.run_id)
            now = self._clock().timestamp()
            comparison = compare(report, self._problems, now, self.config.renotify_after)
            inventory = update_inventory(self._served, report, comparison.coverage)
            outbox = self._outbox(report, comparison, now, self._store.last_recorded_at())
            queued = self._store.commit_run(
                run_id=report.run_id,
                complete=report.complete,
                finished_at=report.finished_at.timestamp(),
                now=now,
                comparison=comparison,
                inventory=inventory,
                outbox=outbox,
            )
            self._problems, self._served = comparison.open, inventory.served
        self._metrics.observe_run(report, comparison.open, inventory.served)
        for sender in self._senders:
            sender.wake.set()
        outcome = RunOutcome(
            report.run_id,
            opened=comparison.count("opened"),
            changed=comparison.count("changed"),
            reminders=comparison.count("reminder"),
            resolved=comparison.count("resolved"),
            queued=queued,
        )
        log.info("run %s %s", report.run_id, outcome.summary())
        gone = sum(1 for e in comparison.events if e.reason == ZONE_REMOVED)
        if report.removed_zones:
            log.info(
                "run %s: %d open problems of removed zones (%s) resolved: %s",
                report.run_id,
                gone,
                ", ".join(report.removed_zones),
                ZONE_REMOVED,
            )
        return outcome

    def _outbox(
        self, report: RunReport, comparison: Comparison, now: float, previous_run: float | None
    ) -> Iterator[OutboxEntry]:
        """Rendered while the transaction consumes them: 100k webhook bodies never sit in memory at once."""
        run_id, events = report.run_id, comparison.events
        disabled = self._store.disabled()  # a receiver may have answered 410 since the last run
        targets = [t for t in self._targets if t.name not in disabled]
        hooks = [t for t in targets if t.kind == "webhook"]
        for event in events:
            listeners = [t for t in hooks if t.sees(event)]
            if listeners:
                body = formats.webhook_body(event, now)  # one rendering for every webhook receiver
                for target in listeners:
                    msg_id = formats.delivery_id(run_id, target.name, event.problem.id, event.kind)
                    yield OutboxEntry(target.name, msg_id, f"problem.{event.kind}", body)
        for target in targets:
            if target.kind == "slack":
                digest = formats.slack_digest(run_id, report.complete, [e for e in events if target.sees(e)])
                if digest is not None:
                    yield OutboxEntry(target.name, formats.delivery_id(run_id, target.name, "digest"), "digest", digest)
            elif target.kind == "alertmanager":
                entry = self._alertmanager_entry(target, comparison, now, previous_run)
                if entry is not None:
                    yield OutboxEntry(target.name, formats.delivery_id(run_id, target.name, "alerts"), "alerts", entry)

    @staticmethod
    def _alertmanager_entry(
        target: Target, comparison: Comparison, now: float, previous_run: float | None
    ) -> bytes | None:
        """The alerts this run ended; the firing ones are rendered when sent (``_alertmanager_render``)."""
        events = comparison.events
        ended = [e.problem for e in events if e.kind == "resolved" and target.matches(e.problem)]
        ended += [  # a change of severity changes the alert's labels: end the old one
            e.previous
            for e in events
            if e.previous is not None
            and target.matches(e.previous)
            and (not target.matches(e.problem) or formats.alert_labels(e.previous) != formats.alert_labels(e.problem))
        ]
        if not ended and not any(target.matches(p) for p in comparison.open.values()):
            return None
        interval = now - previous_run if previous_run is not None else 0.0
        valid_for = target.valid_for or max(MIN_VALID_FOR, 3 * interval)
        return formats.alertmanager_entry(ended, now, valid_for)

    # -- delivery ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start one sender thread per receiver (idempotent)."""
        with self._mutex:
            if self._senders or self._closed:
                return
            self._senders = [
                Sender(
                    target,
                    self._store,
                    policy=self._retry,
                    max_age=self.config.max_delivery_age,
                    clock=lambda: self._clock().timestamp(),
                    stopping=self._stopping,
                    transport=self._transport,
                    metrics=self._metrics,
                    render=self._alertmanager_render(target) if target.kind == "alertmanager" else as_stored,
                )
                for target in self._targets
            ]
            for sender in self._senders:
                sender.start()

    def _alertmanager_render(self, target: Target) -> Render:
        def render(delivery: Delivery) -> list[bytes]:
            # Only the newest entry posts the firing alerts: older ones in a backlog would repeat them.
            newest = not self._store.pending_after(target.name, delivery.seq)
            firing = [p for p in self._problems.values() if target.matches(p)] if newest else []
            return formats.alertmanager_posts(delivery.body, firing, self._clock().timestamp())

        return render

    def pending(self) -> int:
        """Deliveries committed and not yet delivered nor given up."""
        return sum(self._store.pending_counts().values())

    def flush(self, timeout: float) -> int:
        """Deliver for at most ``timeout`` seconds (retrying with backoff); how many are still pending."""
        self.start()
        deadline = time.monotonic() + timeout
        while True:
            left = self.pending()
            if left == 0 or time.monotonic() >= deadline:
                return left
            time.sleep(min(_FLUSH_POLL, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        """Stop the senders (pending deliveries stay in the state) and release the state file."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
        self._stopping.set()
        for sender in self._senders:
            sender.wake.set()
        for sender in self._senders:
            sender.join(timeout=sender.target.timeout + 1)  # a request in flight ends by its timeout
        self._store.close()
        self._redact.detach()

    def __enter__(self) -> Alerting:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
