"""Slack receivers: one digest per run, within Slack's limits, paced, honouring 429 Retry-After."""

from __future__ import annotations

import json

from shared.alerts_config import SlackReceiver
from tests.reporter.alerts.receiver import Answer
from tests.reporter.alerts.runs import expired, healthy, report

SLACK_PATH = "/services/T0000/B0000/NotARealSecret123"


def slack(receiver, **options) -> SlackReceiver:
    return SlackReceiver(name="chat", url=receiver.url(SLACK_PATH), timeout=2.0, **options)


def test_a_run_sends_one_digest_with_text_and_blocks_and_an_identical_run_sends_none(receiver, open_alerting):
    alerting = open_alerting([slack(receiver)])
    run = [expired("www.a.test"), expired("api.a.test", "127.0.0.2")]
    alerting.on_report(report("r1", run))
    alerting.on_report(report("r2", run))
    assert alerting.flush(5) == 0
    (request,) = receiver.requests
    message = json.loads(request.body)
    assert message["text"] == "TLS certificate problems: 2 opened — run r1"
    assert [b["type"] for b in message["blocks"]] == ["section", "section"]
    lines = message["blocks"][1]["text"]["text"].splitlines()
    assert lines[0] == "*Opened (2)*"
    assert lines[1] == "• :red_circle: `127.0.0.2:443` api.a.test — certificate has expired (`CERT_EXPIRED`)"


def test_a_digest_of_many_events_stays_within_slacks_limits(receiver, open_alerting):
    alerting = open_alerting([slack(receiver)])
    many = [expired(f"h{i}.a.test", f"127.0.{i // 250}.{i % 250 + 1}") for i in range(500)]
    alerting.on_report(report("r1", many))
    alerting.on_report(report("r2", [healthy(e.fqdn, e.ip) for e in many]))
    assert alerting.flush(10) == 0
    opened, resolved = (json.loads(r.body) for r in receiver.requests)
    for message in (opened, resolved):
        assert len(message["text"]) <= 3000 and len(message["blocks"]) <= 50
        assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"])
    assert opened["blocks"][1]["text"]["text"].endswith("… and 490 more")
    assert resolved["text"] == "TLS certificate problems: 500 resolved — run r2"


def test_digests_are_paced_and_a_429_waits_for_retry_after(receiver, open_alerting):
    receiver.answer(Answer(429, {"Retry-After": "1"}))
    alerting = open_alerting([slack(receiver)])
    alerting.on_report(report("r1", [expired("www.a.test")]))
    alerting.on_report(report("r2", [healthy("www.a.test")]))
    assert alerting.flush(10) == 0
    throttled, first, second = receiver.requests
    assert first.body == throttled.body
    assert first.at - throttled.at >= 0.95  # Retry-After: 1
    assert second.at - first.at >= 0.95  # about one message per second
    assert json.loads(second.body)["text"] == "TLS certificate problems: 1 resolved — run r2"


def test_an_incomplete_run_says_so_in_its_digest(receiver, open_alerting):
    alerting = open_alerting([slack(receiver)])
    alerting.on_report(report("r1", [expired("www.a.test")], complete=False))
    assert alerting.flush(5) == 0
    assert json.loads(receiver.requests[0].body)["text"].endswith("(incomplete run: nothing resolved)")
