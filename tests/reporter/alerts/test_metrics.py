"""/metrics scraped over HTTP, and the textfile for node_exporter."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.reporter.alerts import serve_metrics, write_textfile
from shared import findings
from shared.alerts_config import WebhookReceiver
from tests.reporter.alerts.conftest import SECRET_ENV, webhook
from tests.reporter.alerts.receiver import Answer
from tests.reporter.alerts.runs import T0, Endpoint, certificate, expired, healthy, report

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(registry) -> Samples:
    server = serve_metrics(registry, 0, addr="127.0.0.1")
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    return parse(response.text)


def endpoint(fqdn: str, ip: str, segment: str = "default", zone: str = "a.test") -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"zone": zone, "fqdn": fqdn, "ip": ip, "port": "443", "segment": segment}.items()))


def problem(fqdn: str, ip: str, code: str, severity: str, segment: str = "default") -> tuple[tuple[str, str], ...]:
    labels = dict(endpoint(fqdn, ip, segment))
    return tuple(sorted({**labels, "code": code, "severity": severity}.items()))


NOT_AFTER = "dcc_certificate_not_after_timestamp_seconds"


def test_metrics_scraped_over_http_show_certificates_problems_runs_and_deliveries(receiver, secret, open_alerting):
    receiver.answer(Answer(500))
    alerting = open_alerting([webhook(receiver)])
    www = expired("www.a.test", segment="dmz")
    alerting.on_report(report("r1", [www, healthy("ok.a.test", "127.0.0.2")]))
    assert alerting.flush(5) == 0
    samples = scrape(alerting.registry)
    assert samples[(NOT_AFTER, endpoint("www.a.test", "127.0.0.1", "dmz"))] == www.cert.not_after.timestamp()
    assert samples[(NOT_AFTER, endpoint("ok.a.test", "127.0.0.2"))] > T0.timestamp()
    assert samples[("dcc_problem", problem("www.a.test", "127.0.0.1", "CERT_EXPIRED", "error", "dmz"))] == 1
    assert samples[("dcc_findings", (("code", "CERT_EXPIRED"), ("severity", "error")))] == 1
    assert samples[("dcc_endpoints_scanned", (("segment", "default"),))] == 1
    assert samples[("dcc_endpoints_scanned", (("segment", "dmz"),))] == 1
    assert samples[("dcc_run_last_completed_timestamp_seconds", ())] == T0.timestamp()
    assert samples[("dcc_run_duration_seconds", ())] == 300
    assert samples[("dcc_runs_total", (("outcome", "complete"),))] == 1
    assert samples[("dcc_runs_total", (("outcome", "incomplete"),))] == 0
    assert samples[("dcc_alert_deliveries_total", (("outcome", "failed"), ("receiver", "ops")))] == 1
    assert samples[("dcc_alert_deliveries_total", (("outcome", "delivered"), ("receiver", "ops")))] == 1
    assert samples[("dcc_alert_deliveries_pending", (("receiver", "ops"),))] == 0
    assert samples[("dcc_alert_deliveries_dead_total", (("receiver", "ops"),))] == 0


def test_a_resolved_problem_leaves_metrics_and_a_renewed_certificate_moves_its_expiry(open_alerting):
    alerting = open_alerting([])
    alerting.on_report(report("r1", [expired("www.a.test")]))
    alerting.on_report(report("r2", [healthy("www.a.test", serial=7)]))
    samples = scrape(alerting.registry)
    assert not [key for key in samples if key[0] == "dcc_problem"]
    assert (
        samples[(NOT_AFTER, endpoint("www.a.test", "127.0.0.1"))] == certificate("www.a.test", 7).not_after.timestamp()
    )
    assert ("dcc_findings", (("code", "CERT_EXPIRED"), ("severity", "error"))) not in samples


def test_the_expiry_series_stays_while_the_certificate_is_expired_or_its_host_unreachable(open_alerting):
    alerting = open_alerting([])
    www = expired("www.a.test")
    alerting.on_report(report("r1", [www]))
    timeout = findings.error(findings.Code.CONNECT_TIMEOUT, "connection timed out")
    alerting.on_report(report("r2", [Endpoint("www.a.test", found=[timeout])]))
    samples = scrape(alerting.registry)
    assert samples[(NOT_AFTER, endpoint("www.a.test", "127.0.0.1"))] == www.cert.not_after.timestamp()
    assert samples[("dcc_problem", problem("www.a.test", "127.0.0.1", "CONNECT_TIMEOUT", "error"))] == 1


def test_a_restarted_reporter_serves_the_open_problems_and_expiry_before_its_first_run(open_alerting):
    first = open_alerting([])
    first.on_report(report("r1", [expired("www.a.test")]))
    first.close()
    samples = scrape(open_alerting([]).registry)
    assert samples[("dcc_problem", problem("www.a.test", "127.0.0.1", "CERT_EXPIRED", "error"))] == 1
    assert (NOT_AFTER, endpoint("www.a.test", "127.0.0.1")) in samples
    assert samples[("dcc_run_last_completed_timestamp_seconds", ())] == T0.timestamp()


def test_the_textfile_holds_the_series_and_no_completion_time_before_a_run_completed(tmp_path, open_alerting):
    alerting = open_alerting([])
    alerting.on_report(report("r1", [expired("www.a.test")], complete=False))
    path = tmp_path / "dcc.prom"
    write_textfile(alerting.registry, path)
    samples = parse(path.read_text())
    assert samples[("dcc_runs_total", (("outcome", "incomplete"),))] == 1
    assert samples[("dcc_problem", problem("www.a.test", "127.0.0.1", "CERT_EXPIRED", "error"))] == 1
    assert not [key for key in samples if key[0] in ("dcc_findings", "dcc_run_last_completed_timestamp_seconds")]


def test_the_textfile_can_be_written_after_closing_with_the_last_pending_count(tmp_path, secret, open_alerting):
    alerting = open_alerting([WebhookReceiver(name="ops", url="http://127.0.0.1:9/", secret_env=SECRET_ENV)])
    alerting.on_report(report("r1", [expired("www.a.test")]))
    scrape(alerting.registry)  # a scrape while open counts the outbox
    alerting.close()
    write_textfile(alerting.registry, tmp_path / "dcc.prom")
    samples = parse((tmp_path / "dcc.prom").read_text())
    assert samples[("dcc_alert_deliveries_pending", (("receiver", "ops"),))] == 1
