"""Secrets never reach logs or error messages: ``shared.logging.redact`` and a bad ``AMQP_URL``."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import ConfigError
from shared.logging import redact, setup_logging
from shared.transport.amqp import AmqpTransport, parse_amqp_url

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amqp://dcc:secret@broker:5672/", "amqp://dcc:***@broker:5672/"),
        # a raw "@" in the password: the authority ends at the last "@"
        ("amqp://dcc:p@ssw0rd@broker:5672/", "amqp://dcc:***@broker:5672/"),
        ("amqp://dcc:p@ss:w@rd@broker:5672/vh", "amqp://dcc:***@broker:5672/vh"),
        # a raw "/" (base64 secrets): ambiguous, masked up to the last "@"
        ("amqp://dcc:Zm9v/YmFy@127.0.0.1:5672/", "amqp://dcc:***@127.0.0.1:5672/"),
        ("amqp://dcc:a/b@c/d@broker/", "amqp://dcc:***@broker/"),
        ("amqp://dcc:Zm9v%2FYmFy@broker:5672/%2F?heartbeat=10", "amqp://dcc:***@broker:5672/%2F?heartbeat=10"),
        ("amqps://dcc:s3cret@broker:5671/prod", "amqps://dcc:***@broker:5671/prod"),
        ("AMQPS://dcc:s3cret@broker/", "AMQPS://dcc:***@broker/"),
        ("http://dcc:s3cret@rabbitmq:15672/api", "http://dcc:***@rabbitmq:15672/api"),
        ("amqp://dcc:@broker/", "amqp://dcc:***@broker/"),
        # nothing to mask
        ("amqp://broker:5672/", "amqp://broker:5672/"),
        ("amqp://dcc@broker:5672/", "amqp://dcc@broker:5672/"),
        ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"),
        ("connecting to broker:5672 as dcc@example.org", "connecting to broker:5672 as dcc@example.org"),
        # several URLs in one line
        (
            "from amqp://a:one@h1:5672/ to amqps://b:t@o@h2:5671/ via http://c:three@h3/",
            "from amqp://a:***@h1:5672/ to amqps://b:***@h2:5671/ via http://c:***@h3/",
        ),
        ('["amqp://a:one@h1/","amqp://b:t/wo@h2/"]', '["amqp://a:***@h1/","amqp://b:***@h2/"]'),
        # as a repr in a log line
        (
            "serving scan.dmz on AmqpTransport('amqp://dcc:p@ss/w0rd@broker:5672/', prefix='')",
            "serving scan.dmz on AmqpTransport('amqp://dcc:***@broker:5672/', prefix='')",
        ),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("password", ["p@ssw0rd", "Zm9v/YmFy", "a:b@c/d", "pa%2Fss"])
def test_redact_never_shows_the_password(password: str) -> None:
    line = f"connect amqp://dcc:{password}@broker:5672/vhost failed: timeout"
    assert password not in redact(line)
    assert "broker:5672/vhost failed: timeout" in redact(line)


def test_log_records_are_redacted() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging(logging.INFO, stream)
        logging.getLogger("dcc.test").warning("broker %s is down", "amqp://dcc:p@ss/w@broker:5672/")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert "amqp://dcc:***@broker:5672/" in stream.getvalue()
    assert "p@ss" not in stream.getvalue()


def test_transport_repr_hides_a_password_with_at_signs() -> None:
    transport = AmqpTransport("amqp://dcc:p@ssw0rd@127.0.0.1:5672/", prefix="t.")
    assert "ssw0rd" not in repr(transport)
    assert parse_amqp_url("amqp://dcc:p@ssw0rd@127.0.0.1:5672/").credentials.password == "p@ssw0rd"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    [
        "amqp://dcc:Zm9v/YmFy@127.0.0.1:5672/",  # raw "/" in the password
        "amqp://dcc:Zm9v@127.0.0.1:Zm9vport/",
        "amqp://dcc:Zm9vYmFy@127.0.0.1:5672/?heartbeat=Zm9v",
        "http://dcc:Zm9vYmFy@127.0.0.1:5672/",
        "dcc:Zm9vYmFy@127.0.0.1",
    ],
)
def test_a_bad_url_is_a_config_error_without_the_secret(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        AmqpTransport(url)
    assert "Zm9v" not in str(info.value)
    error = info.value  # no chained pika error (its text quotes the URL) in a traceback either
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


@pytest.mark.parametrize(
    "command", [["reporter", "--output-dir", "out"], ["scanner", "--segment", "dmz"], ["resolver"]]
)
def test_cli_with_a_bad_amqp_url_exits_2_with_one_line(tmp_path: Path, command: list[str]) -> None:
    secret = "Zm9vc2VjcmV0/YmFy"
    env = {**os.environ, "AMQP_URL": f"amqp://dcc:{secret}@127.0.0.1:5672/", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *command],
        cwd=tmp_path,  # no ./config.json: built-in defaults
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dns-cert-checker: AMQP_URL is not a valid amqp:// ")
    for fragment in (secret, "Zm9v", "YmFy"):
        assert fragment not in done.stdout + done.stderr
