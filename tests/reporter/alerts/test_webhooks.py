"""Webhook receivers over real HTTP on loopback: Standard Webhooks, retries, crashes, 410, dead letters."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from services.reporter.alerts.report_view import report_main
from services.reporter.handler import ReporterHandler
from services.reporter.outputs import CsvFileSink
from shared import findings
from shared.alerts_config import AlertsConfig, WebhookReceiver
from shared.config import Config
from shared.messages import Finding, PlannedJob, RunStarted, ScanResult, ZonePlan
from tests.reporter.alerts.conftest import SECRET_ENV, webhook
from tests.reporter.alerts.receiver import Answer, Receiver, Request
from tests.reporter.alerts.runs import T0, Endpoint, certificate, expired, healthy, report

DAY = 86400.0


def events(requests: list[Request], secret: str) -> list[dict[str, object]]:
    """Every request's body, verified with the reference library (raises if a signature is wrong)."""
    return [Webhook(secret).verify(r.body, r.headers) for r in requests]


def summary(requests: list[Request], secret: str) -> list[tuple[str, str]]:
    return sorted((str(e["type"]), str(e["data"]["fqdn"])) for e in events(requests, secret))


def test_a_run_from_the_reporter_handler_opens_one_signed_event_per_problem(tmp_path, receiver, secret, open_alerting):
    alerting = open_alerting([webhook(receiver)])
    handler = ReporterHandler(Config(), CsvFileSink(tmp_path / "out.csv"), on_report=alerting.on_report)
    cert = certificate("www.a.test", days_left=-1)
    handler.handle(RunStarted(run_id="r1", started_at=T0, zones=["a.test"]))
    handler.handle(ZonePlan(run_id="r1", zone="a.test", jobs=[PlannedJob("j1", "127.0.0.1", 443, "www.a.test")]))
    handler.handle(
        ScanResult(
            job_id="j1", run_id="r1", zone="a.test", ip_address="127.0.0.1", port=443, fqdn="www.a.test",
            findings=[findings.error(findings.Code.CERT_EXPIRED)], scanned_at=T0, certificate=cert, segment="dmz",
        )
    )  # fmt: skip
    assert alerting.flush(5) == 0
    (event,) = events(receiver.requests, secret)
    assert event["type"] == "problem.opened"
    data = event["data"]
    assert {k: data[k] for k in ("ip_address", "port", "fqdn", "code", "zone", "segment", "severity", "state")} == {
        "ip_address": "127.0.0.1", "port": 443, "fqdn": "www.a.test", "code": "CERT_EXPIRED", "zone": "a.test",
        "segment": "dmz", "severity": "error", "state": "open",
    }  # fmt: skip
    assert data["message"] == "certificate has expired"
    assert data["certificate"]["sha256"] == cert.sha256 and data["certificate"]["san"] == ["www.a.test"]
    assert data["first_seen"] == data["last_seen"] == "2026-11-29T03:40:00Z"


def test_two_identical_runs_deliver_one_opened_per_problem_and_nothing_on_the_second(receiver, secret, open_alerting):
    alerting = open_alerting([webhook(receiver)])
    alerting.start()
    run = [expired("www.a.test"), expired("api.a.test", "127.0.0.2"), healthy("ok.a.test", "127.0.0.3")]
    assert alerting.on_report(report("r1", run)).opened == 2
    assert alerting.flush(5) == 0
    outcome = alerting.on_report(report("r2", run))
    assert (outcome.opened, outcome.changed, outcome.reminders, outcome.resolved, outcome.queued) == (0, 0, 0, 0, 0)
    assert alerting.flush(5) == 0
    assert summary(receiver.requests, secret) == [("problem.opened", "api.a.test"), ("problem.opened", "www.a.test")]
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 2


def test_fixing_a_certificate_delivers_problem_resolved(receiver, secret, open_alerting):
    alerting = open_alerting([webhook(receiver)])
    alerting.on_report(report("r1", [expired("www.a.test")]))
    alerting.on_report(report("r2", [healthy("www.a.test")]))
    assert alerting.flush(5) == 0
    opened, resolved = events(receiver.requests, secret)
    assert (opened["type"], resolved["type"]) == ("problem.opened", "problem.resolved")
    assert resolved["data"]["state"] == "resolved" and resolved["data"]["id"] == opened["data"]["id"]


def test_a_reminder_is_delivered_once_renotify_after_has_passed(receiver, secret, open_alerting, clock):
    alerting = open_alerting([webhook(receiver)], renotify_after=DAY)
    run = [expired("www.a.test")]
    alerting.on_report(report("r1", run))
    clock.advance(DAY / 2)
    alerting.on_report(report("r2", run))
    clock.advance(DAY / 2)
    assert alerting.on_report(report("r3", run)).reminders == 1
    assert alerting.flush(5) == 0
    assert [e["type"] for e in events(receiver.requests, secret)] == ["problem.opened", "problem.reminder"]


def test_a_failing_hanging_then_throttling_receiver_gets_the_event_exactly_once_under_one_webhook_id(
    receiver, secret, open_alerting
):
    receiver.answer(
        Answer(500), Answer(hang=1.5), Answer(429, {"Retry-After": "1"}), Answer(204)
    )  # the client's timeout is 0.5 s
    alerting = open_alerting([webhook(receiver, timeout=0.5)])
    alerting.on_report(report("r1", [expired("www.a.test")]))
    assert alerting.flush(10) == 0
    alerting.on_report(report("r2", [expired("www.a.test")]))  # nothing new: nothing more is sent
    assert alerting.flush(2) == 0
    attempts = receiver.requests
    assert len(attempts) == 4
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    assert len({a.body for a in attempts}) == 1
    assert attempts[3].at - attempts[2].at >= 0.95  # Retry-After: 1 honoured
    assert [e["type"] for e in events(attempts[-1:], secret)] == ["problem.opened"]


def test_a_redirect_is_a_failed_attempt_not_a_delivery(receiver, secret, open_alerting):
    receiver.answer(Answer(302, {"Location": receiver.url("/elsewhere")}))
    alerting = open_alerting([webhook(receiver)])
    alerting.on_report(report("r1", [expired("www.a.test")]))
    assert alerting.flush(5) == 0
    assert [r.path for r in receiver.requests] == ["/ops", "/ops"]


def test_closing_without_flushing_leaves_the_deliveries_for_the_next_owner_who_sends_each_once(
    receiver, secret, open_alerting
):
    first = open_alerting([webhook(receiver)])
    first.on_report(report("r1", [expired("www.a.test"), expired("api.a.test", "127.0.0.2")]))
    first.close()  # as if the process had died between the commit and any delivery
    assert receiver.requests == []
    second = open_alerting([webhook(receiver)])
    assert second.flush(5) == 0
    assert summary(receiver.requests, secret) == [("problem.opened", "api.a.test"), ("problem.opened", "www.a.test")]
    second.close()
    third = open_alerting([webhook(receiver)])
    assert third.flush(1) == 0
    assert len(receiver.requests) == 2


def test_a_reporter_killed_after_its_commit_has_its_events_sent_once_after_restart(
    tmp_path, receiver, secret, open_alerting, state_file
):
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reporter.alerts.crashing_reporter", str(state_file), receiver.url("/ops")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, SECRET_ENV: secret},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "committed 2"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert receiver.requests == []
    restarted = open_alerting([webhook(receiver)])  # the kernel released the dead owner's lock
    assert restarted.flush(5) == 0
    assert summary(receiver.requests, secret) == [("problem.opened", "api.a.test"), ("problem.opened", "www.a.test")]


def test_a_receiver_answering_410_is_disabled_loudly_and_sent_nothing_more(receiver, secret, open_alerting, caplog):
    receiver.answer(Answer(410))
    alerting = open_alerting([webhook(receiver)])
    alerting.on_report(report("r1", [expired("www.a.test"), expired("api.a.test", "127.0.0.2")]))
    with caplog.at_level(logging.ERROR, logger="dcc.alerts"):
        assert alerting.flush(5) == 0
    assert "ALERT RECEIVER ops DISABLED" in caplog.text
    assert alerting.on_report(report("r2", [expired("new.a.test", "127.0.0.3")])).queued == 0
    alerting.close()
    again = open_alerting([webhook(receiver)])  # same URL: still disabled
    again.on_report(report("r3", [expired("other.a.test", "127.0.0.4")]))
    assert again.flush(1) == 0
    assert len(receiver.requests) == 1
    again.close()
    moved = open_alerting([WebhookReceiver(name="ops", url=receiver.url("/v2"), secret_env=SECRET_ENV)])
    moved.on_report(report("r4", [expired("other.a.test", "127.0.0.4"), expired("last.a.test", "127.0.0.5")]))
    assert moved.flush(5) == 0
    assert [r.path for r in receiver.requests] == ["/ops", "/v2"]


def test_a_delivery_failing_past_max_delivery_age_is_dead_logged_counted_and_listed(
    receiver, secret, open_alerting, clock, caplog, capsys, state_file
):
    receiver.answer(*[Answer(503)] * 1000)
    alerting = open_alerting([webhook(receiver)], max_delivery_age=3 * DAY)
    alerting.on_report(report("r1", [expired("www.a.test")]))
    clock.advance(3 * DAY + 1)  # the receiver has been down since
    with caplog.at_level(logging.ERROR, logger="dcc.alerts"):
        assert alerting.flush(5) == 0
    assert "alert receiver ops: gave up delivery msg_" in caplog.text and "HTTP 503" in caplog.text
    assert alerting.registry.get_sample_value("dcc_alert_deliveries_dead_total", {"receiver": "ops"}) == 1
    config = Config(alerts=AlertsConfig(state_file=str(state_file)))
    assert report_main(config, format="json", by="endpoint", deliveries=True) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["receivers"] == [{"receiver": "ops", "pending": 0, "dead": 1, "oldest_pending": "", "disabled": ""}]
    (dead,) = listed["deliveries"]
    assert (dead["state"], dead["what"], dead["last_error"]) == ("dead", "problem.opened", "HTTP 503")


def test_a_hanging_receiver_never_holds_up_the_others(receiver, secret, open_alerting):
    hanging = Receiver()
    try:
        hanging.answer(*[Answer(hang=3)] * 10)  # every request outlasts the client's timeout
        down = WebhookReceiver(name="down", url=hanging.url("/down"), secret_env=SECRET_ENV, timeout=0.3)
        alerting = open_alerting([down, webhook(receiver, name="up")])
        alerting.on_report(report("r1", [expired("www.a.test")]))
        assert alerting.flush(1.5) == 1  # only the hanging one's delivery is left
        assert [r.path for r in receiver.requests] == ["/up"]
        assert len(hanging.requests) >= 2
        alerting.close()
    finally:
        hanging.close()


def test_a_receiver_only_hears_of_problems_that_pass_its_filters(receiver, secret, open_alerting):
    expiring = findings.expiring("CN=soon.a.test", datetime(2026, 12, 10, tzinfo=UTC))
    run = [
        expired("www.a.test"),
        expired("www.b.test", "127.0.0.2", segment="dmz"),
        Endpoint("soon.a.test", "127.0.0.3", found=[expiring], cert=certificate("soon.a.test", days_left=11)),
    ]
    alerting = open_alerting(
        [
            webhook(receiver, name="errors", min_severity="error"),
            webhook(receiver, name="dmz", segments=["dmz"]),
            webhook(receiver, name="a", zones=["A.test."], codes=["CERT_EXPIRING"]),
        ]
    )
    alerting.on_report(report("r1", run))
    assert alerting.flush(5) == 0
    heard: dict[str, list[str]] = {}
    for request, event in zip(receiver.requests, events(receiver.requests, secret), strict=True):
        heard.setdefault(request.path, []).append(event["data"]["fqdn"])
    assert {k: sorted(v) for k, v in heard.items()} == {
        "/errors": ["www.a.test", "www.b.test"],
        "/dmz": ["www.b.test"],
        "/a": ["soon.a.test"],
    }


def test_a_warning_that_becomes_an_error_is_delivered_as_changed_with_what_it_was(receiver, secret, open_alerting):
    cert = certificate("www.a.test")
    weak = "certificate rejected: weak key"
    alerting = open_alerting([webhook(receiver)])
    for run_id, status in (("r1", "warning"), ("r2", "error")):
        found = [Finding(code="CERT_INVALID", status=status, message=weak)]
        alerting.on_report(report(run_id, [Endpoint("www.a.test", found=found, cert=cert)]))
    assert alerting.flush(5) == 0
    opened, changed = events(receiver.requests, secret)
    assert changed["type"] == "problem.changed" and changed["data"]["id"] == opened["data"]["id"]
    assert changed["data"]["severity"] == "error"
    assert changed["data"]["previous"] == {"severity": "warning", "message": weak, "certificate_sha256": cert.sha256}
    assert "previous" not in opened["data"]


def test_an_incomplete_run_and_a_failed_zone_deliver_no_resolved_event(receiver, secret, open_alerting):
    alerting = open_alerting([webhook(receiver)])
    alerting.on_report(report("r1", [expired("www.a.test"), expired("www.b.test", "127.0.0.2")]))
    alerting.on_report(report("r2", [], zones=["a.test", "b.test"], complete=False))
    alerting.on_report(report("r3", [healthy("www.a.test")], zones=["a.test", "b.test"], failed_zones=["b.test"]))
    assert alerting.flush(5) == 0
    assert summary(receiver.requests, secret) == [
        ("problem.opened", "www.a.test"),
        ("problem.opened", "www.b.test"),
        ("problem.resolved", "www.a.test"),  # r3 scanned it; b.test failed, so www.b.test stays open
    ]


def test_deliveries_to_a_receiver_removed_from_the_config_are_given_up_not_waited_for(
    receiver, secret, open_alerting, caplog
):
    first = open_alerting([webhook(receiver, name="old")])
    first.on_report(report("r1", [expired("www.a.test")]))
    first.close()
    with caplog.at_level(logging.WARNING, logger="dcc.alerts"):
        renamed = open_alerting([webhook(receiver, name="new")])
    assert "1 pending deliveries to receivers no longer configured were given up" in caplog.text
    assert renamed.flush(1) == 0
    assert receiver.requests == []
