"""Receiver URLs and secrets never show: not in logs (at any level), metrics, reports or errors."""

from __future__ import annotations

import io
import logging

from services.reporter.alerts import report_main
from shared.alerts_config import AlertsConfig, SlackReceiver, WebhookReceiver
from shared.config import Config
from tests.reporter.alerts.conftest import SECRET_ENV
from tests.reporter.alerts.receiver import Answer
from tests.reporter.alerts.runs import expired, healthy, report
from tests.reporter.alerts.test_metrics import scrape

SLACK_TOKEN = "NotARealSlackToken0123456789"


def test_no_url_or_secret_reaches_logs_metrics_or_reports_even_when_deliveries_fail(
    receiver, secret, open_alerting, state_file, caplog
):
    slack_url = receiver.url(f"/services/T0000/B0000/{SLACK_TOKEN}")
    hook_url = receiver.url("/hook-with-token-in-path")
    receiver.answer(
        Answer(500), Answer(hang=1.0), Answer(429, {"Retry-After": "0"}), Answer(302, {"Location": slack_url})
    )
    caplog.set_level(logging.DEBUG)  # httpx logs every request line, URL included, at INFO
    caplog.set_level(logging.DEBUG, logger="httpx")  # setup_logging (any CLI test before) quietens httpx
    alerting = open_alerting(
        [
            SlackReceiver(name="chat", url=slack_url, timeout=0.3),
            WebhookReceiver(name="ops", url=hook_url, secret_env=SECRET_ENV, timeout=0.3),
        ]
    )
    alerting.on_report(report("r1", [expired("www.a.test")]))
    alerting.on_report(report("r2", [healthy("www.a.test")]))
    assert alerting.flush(5) == 0
    exposed = str(scrape(alerting.registry))
    config = Config(alerts=AlertsConfig(state_file=str(state_file)))
    printed = io.StringIO()
    report_main(config, format="json", by="endpoint", deliveries=True, out=printed)
    report_main(config, format="table", by="endpoint", deliveries=True, out=printed)
    assert len(receiver.requests) >= 4  # the failures above were really exercised
    assert "HTTP Request: POST" in caplog.text  # httpx did log its request lines, masked
    for text in (caplog.text, exposed, printed.getvalue()):
        for leak in (SLACK_TOKEN, "hook-with-token-in-path", secret, secret.removeprefix("whsec_")):
            assert leak not in text
