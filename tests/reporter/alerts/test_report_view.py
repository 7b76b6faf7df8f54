"""``dns-cert-checker report``: open problems, certificates and deliveries, read beside the owner."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from services.reporter.alerts import report_main
from shared import findings
from shared.alerts_config import AlertsConfig, WebhookReceiver
from shared.config import Config, ConfigError
from tests.reporter.alerts.conftest import SECRET_ENV
from tests.reporter.alerts.runs import Endpoint, certificate, dangling, expired, healthy, report


def show(state_file, **options) -> str:
    out = io.StringIO()
    config = Config(alerts=AlertsConfig(state_file=str(state_file)))
    options = {"format": "table", "by": "endpoint", "deliveries": False, **options}
    assert report_main(config, out=out, **options) == 0
    return out.getvalue()


@pytest.fixture
def estate(open_alerting):
    """An owned state: two errors, a warning expiring soonest, a name problem, a shared certificate."""
    alerting = open_alerting([])
    shared = certificate("*.a.test", serial=5, days_left=300)
    soon = findings.expiring("CN=soon.a.test", datetime(2026, 12, 5, tzinfo=UTC))
    alerting.on_report(
        report(
            "r1",
            [
                Endpoint("soon.a.test", "127.0.0.3", found=[soon], cert=certificate("soon.a.test", 3, days_left=6)),
                expired("www.a.test"),
                Endpoint(
                    "api.a.test", "127.0.0.2", found=[findings.error(findings.Code.HOSTNAME_MISMATCH)], cert=shared
                ),
                Endpoint("img.a.test", "127.0.0.4", cert=shared),
            ],
            name_rows=[dangling("old.a.test")],
        )
    )
    return alerting


def test_open_problems_come_most_urgent_first_errors_then_the_soonest_expiry(estate, state_file):
    problems = json.loads(show(state_file, format="json"))
    assert [(p["severity"], p["fqdn"]) for p in problems] == [
        ("error", "www.a.test"),  # expired two days ago
        ("error", "api.a.test"),
        ("error", "old.a.test"),  # no certificate
        ("warning", "soon.a.test"),
    ]
    assert problems[0]["first_seen"] == problems[0]["last_seen"] == "2026-11-29T03:40:00Z"
    assert problems[0]["endpoint"] == "127.0.0.1:443" and problems[2]["endpoint"] == ""


def test_the_table_has_one_line_per_problem_under_a_header(estate, state_file):
    lines = show(state_file).splitlines()
    assert lines[0].split() == [
        "SEVERITY",
        "CODE",
        "ENDPOINT",
        "FQDN",
        "MESSAGE",
        "NOT",
        "AFTER",
        "FIRST",
        "SEEN",
        "LAST",
        "SEEN",
    ]
    assert lines[1].split()[:4] == ["error", "CERT_EXPIRED", "127.0.0.1:443", "www.a.test"]
    assert len(lines) == 5


def test_by_certificate_lists_every_endpoint_still_serving_each_certificate(estate, state_file):
    certificates = json.loads(show(state_file, format="json", by="certificate"))
    by_subject = {c["subject"]: c for c in certificates}
    wildcard = by_subject["CN=*.a.test"]
    assert [(e["fqdn"], e["problems"]) for e in wildcard["endpoints"]] == [
        ("api.a.test", ["HOSTNAME_MISMATCH"]),
        ("img.a.test", []),
    ]
    assert wildcard["sha256"] == "05" * 32 and wildcard["not_after"] == "2027-09-25T03:40:00Z"
    rows = list(csv.DictReader(io.StringIO(show(state_file, format="csv", by="certificate"))))
    assert sorted(r["fqdn"] for r in rows if r["subject"] == "CN=*.a.test") == ["api.a.test", "img.a.test"]
    assert "127.0.0.4:443  img.a.test  ok" in show(state_file, by="certificate")


def test_deliveries_lists_pending_ones_per_receiver(open_alerting, state_file, secret):
    alerting = open_alerting([WebhookReceiver(name="ops", url="http://127.0.0.1:9/", secret_env=SECRET_ENV)])
    alerting.on_report(report("r1", [expired("www.a.test"), healthy("ok.a.test", "127.0.0.2")]))
    rows = list(csv.DictReader(io.StringIO(show(state_file, format="csv", deliveries=True))))
    assert [(r["receiver"], r["state"], r["what"], r["attempts"]) for r in rows] == [
        ("ops", "pending", "problem.opened", "0")
    ]
    table = show(state_file, deliveries=True).splitlines()
    assert table[1].split()[:3] == ["ops", "1", "2026-11-29T03:40:00Z"]


def test_report_needs_alerts_in_the_config():
    with pytest.raises(ConfigError, match="report needs alerts.state_file in the config"):
        report_main(Config(), format="table", by="endpoint", deliveries=False)


def test_report_before_any_run_says_there_is_no_state_yet(tmp_path):
    config = Config(alerts=AlertsConfig(state_file=str(tmp_path / "none.db")))
    with pytest.raises(ConfigError, match=r"none.db does not exist \(no run has recorded one yet\)"):
        report_main(config, format="table", by="endpoint", deliveries=False)
