"""The ``alerts`` key: bad receivers are one-line config errors that name the key, never the secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.reporter.alerts import Alerting
from shared.config import ConfigError, load_config

SLACK_URL = "https://hooks.slack.example/services/T000/B000/NotARealSecret123"


def config_file(tmp_path: Path, *receivers: dict[str, object], **alerts: object) -> Path:
    path = tmp_path / "config.json"
    body = {"state_file": str(tmp_path / "state.db"), "receivers": list(receivers), **alerts}
    path.write_text(json.dumps({"alerts": body}))
    return path


def start(path: Path) -> Alerting | None:
    return Alerting.from_config(load_config(path))


def test_without_alerts_there_is_no_alerting(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert start(tmp_path / "config.json") is None


def test_the_issue_example_config_loads(tmp_path, monkeypatch, secret):
    monkeypatch.setenv("DCC_SLACK_URL", SLACK_URL)
    path = config_file(
        tmp_path,
        {"name": "ops", "type": "webhook", "url": "https://hooks.example/dcc", "secret_env": "DCC_TEST_WEBHOOK_SECRET"},
        {"name": "chat", "type": "slack", "url_env": "DCC_SLACK_URL", "min_severity": "error"},
        {"name": "am", "type": "alertmanager", "url": "http://alertmanager:9093"},
        renotify_after=86400,
    )
    alerting = start(path)
    assert alerting is not None
    alerting.close()


def test_an_unknown_receiver_type_is_a_config_error_naming_the_key(tmp_path):
    path = config_file(tmp_path, {"name": "x", "type": "pager", "url": "https://p.example/"})
    with pytest.raises(ConfigError, match=r"Invalid value 'pager' - at `\$\.alerts\.receivers\[0\]\.type`"):
        load_config(path)


def test_a_receiver_without_a_url_is_a_config_error(tmp_path):
    path = config_file(tmp_path, {"name": "chat", "type": "slack"})
    with pytest.raises(ConfigError, match=r"receiver chat: give exactly one of url, url_env or url_file"):
        load_config(path)


def test_a_webhook_without_a_secret_is_a_config_error(tmp_path):
    path = config_file(tmp_path, {"name": "ops", "type": "webhook", "url": "https://h.example/"})
    with pytest.raises(ConfigError, match=r"receiver ops: give exactly one of secret_env or secret_file"):
        load_config(path)


def test_an_unset_url_variable_names_the_key_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("DCC_SLACK_URL", raising=False)
    path = config_file(tmp_path, {"name": "chat", "type": "slack", "url_env": "DCC_SLACK_URL"})
    with pytest.raises(ConfigError) as caught:
        start(path)
    assert str(caught.value) == "alerts.receivers[chat].url_env: environment variable DCC_SLACK_URL is not set"


def test_a_url_that_is_not_http_is_an_error_that_does_not_quote_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DCC_SLACK_URL", "hooks.slack.example/services/T000/NotARealSecret123")
    path = config_file(tmp_path, {"name": "chat", "type": "slack", "url_env": "DCC_SLACK_URL"})
    with pytest.raises(ConfigError) as caught:
        start(path)
    assert str(caught.value) == "alerts.receivers[chat].url_env: the value is not an http(s) URL"
    literal = config_file(tmp_path, {"name": "chat", "type": "slack", "url": "ftp://x.example/NotARealSecret123"})
    with pytest.raises(ConfigError) as caught:
        load_config(literal)
    assert "NotARealSecret123" not in str(caught.value)


def test_a_malformed_secret_is_an_error_that_does_not_quote_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DCC_TEST_WEBHOOK_SECRET", "whsec_tooshort")
    path = config_file(
        tmp_path,
        {"name": "ops", "type": "webhook", "url": "https://h.example/", "secret_env": "DCC_TEST_WEBHOOK_SECRET"},
    )
    with pytest.raises(ConfigError) as caught:
        start(path)
    assert str(caught.value) == ("alerts.receivers[ops].secret_env: not a whsec_ base64 secret of 24 to 64 bytes")


def test_a_secret_file_that_cannot_be_read_names_the_key_and_the_file(tmp_path):
    missing = tmp_path / "nope.secret"
    path = config_file(
        tmp_path, {"name": "ops", "type": "webhook", "url": "https://h.example/", "secret_file": str(missing)}
    )
    with pytest.raises(ConfigError, match=rf"^alerts.receivers\[ops\].secret_file: cannot read {missing}: "):
        start(path)


def test_secrets_and_urls_may_come_from_files(tmp_path, secret):
    (tmp_path / "url").write_text(SLACK_URL + "\n")
    (tmp_path / "secret").write_text(secret + "\n")
    path = config_file(
        tmp_path,
        {"name": "chat", "type": "slack", "url_file": str(tmp_path / "url")},
        {"name": "ops", "type": "webhook", "url": "https://h.example/", "secret_file": str(tmp_path / "secret")},
    )
    alerting = start(path)
    assert alerting is not None
    alerting.close()


def test_two_receivers_with_one_name_are_a_config_error(tmp_path):
    slack = {"name": "chat", "type": "slack", "url": "https://a.example/"}
    with pytest.raises(ConfigError, match=r"receivers: the name 'chat' is used twice - at `\$\.alerts`"):
        load_config(config_file(tmp_path, slack, slack))


def test_an_unknown_finding_code_in_a_filter_is_a_config_error(tmp_path):
    path = config_file(
        tmp_path, {"name": "chat", "type": "slack", "url": "https://a.example/", "codes": ["CERT_EXPIRD"]}
    )
    with pytest.raises(ConfigError, match=r"receiver chat: codes: unknown finding code 'CERT_EXPIRD'"):
        load_config(path)


def test_an_unknown_key_in_a_receiver_is_a_config_error(tmp_path):
    path = config_file(tmp_path, {"name": "chat", "type": "slack", "url": "https://a.example/", "secret_env": "X"})
    with pytest.raises(ConfigError, match=r"unknown field `secret_env` - at `\$\.alerts\.receivers\[0\]`"):
        load_config(path)
