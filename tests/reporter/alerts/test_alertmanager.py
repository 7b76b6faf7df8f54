"""Alertmanager receivers against a real Alertmanager on loopback (API v2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.alerts_config import AlertmanagerReceiver
from shared.messages import Finding
from tests.reporter.alerts.runs import Endpoint, certificate, expired, healthy, report

pytestmark = pytest.mark.slow  # starts an Alertmanager process


def real_now() -> datetime:
    return datetime.now(UTC)


def am(alertmanager, **options) -> AlertmanagerReceiver:
    return AlertmanagerReceiver(name="am", url=alertmanager.url, timeout=5.0, **options)


def held(alertmanager, zone: str) -> list[dict]:
    return sorted(
        (a for a in alertmanager.alerts() if a["labels"].get("zone") == zone), key=lambda a: a["labels"]["fqdn"]
    )


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_alertmanager_holds_one_firing_alert_per_open_problem_with_its_labels(alertmanager, open_alerting):
    alerting = open_alerting([am(alertmanager)], now=real_now)
    www = expired("www.am1.test", segment="dmz")
    alerting.on_report(report("r1", [www, expired("api.am1.test", "127.0.0.2")]))
    posted = real_now()
    assert alerting.flush(10) == 0
    api, firing = held(alertmanager, "am1.test")
    assert firing["labels"] == {
        "alertname": "TLSCertificateProblem", "code": "CERT_EXPIRED", "severity": "error", "fqdn": "www.am1.test",
        "ip": "127.0.0.1", "port": "443", "zone": "am1.test", "segment": "dmz",
    }  # fmt: skip
    assert firing["annotations"] == {"summary": "certificate has expired", "not_after": "2026-11-27T03:40:00Z"}
    assert firing["status"]["state"] == "active"
    assert abs((when(firing["startsAt"]) - posted).total_seconds()) < 5
    assert abs((when(firing["endsAt"]) - posted - timedelta(seconds=3600)).total_seconds()) < 5  # first run: 1 h
    assert api["labels"]["ip"] == "127.0.0.2"


def test_a_resolved_problem_disappears_from_alertmanagers_active_alerts(alertmanager, open_alerting):
    alerting = open_alerting([am(alertmanager, valid_for=7200)], now=real_now)
    alerting.on_report(report("r1", [expired("www.am2.test"), expired("api.am2.test", "127.0.0.2")]))
    assert alerting.flush(10) == 0
    assert [a["labels"]["fqdn"] for a in held(alertmanager, "am2.test")] == ["api.am2.test", "www.am2.test"]
    alerting.on_report(report("r2", [expired("www.am2.test"), healthy("api.am2.test", "127.0.0.2")]))
    reposted = real_now()
    assert alerting.flush(10) == 0
    (still,) = held(alertmanager, "am2.test")
    assert still["labels"]["fqdn"] == "www.am2.test"
    assert abs((when(still["endsAt"]) - reposted - timedelta(seconds=7200)).total_seconds()) < 5  # re-posted


def test_a_severity_change_replaces_the_alert_instead_of_adding_one(alertmanager, open_alerting):
    alerting = open_alerting([am(alertmanager)], now=real_now)
    cert = certificate("www.am3.test")
    warning = Finding(code="CERT_INVALID", status="warning", message="certificate rejected: weak key")
    error = Finding(code="CERT_INVALID", status="error", message="certificate rejected: weak key")
    alerting.on_report(report("r1", [Endpoint("www.am3.test", found=[warning], cert=cert)]))
    assert alerting.flush(10) == 0
    assert [a["labels"]["severity"] for a in held(alertmanager, "am3.test")] == ["warning"]
    alerting.on_report(report("r2", [Endpoint("www.am3.test", found=[error], cert=cert)]))
    assert alerting.flush(10) == 0
    assert [a["labels"]["severity"] for a in held(alertmanager, "am3.test")] == ["error"]
