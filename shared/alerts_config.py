"""The ``alerts`` key of config.json: where the alert state lives and who receives what.

Structure is checked when config.json is decoded (a ``ValueError`` here becomes a ``ConfigError``
naming the place); URLs and secrets are read only when alerting starts (``resolve_url`` /
``resolve_secret``), so ``report`` and ``--help`` never need them. No message ever quotes a URL
or a secret: both may be credentials (a Slack URL is one).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import msgspec

from shared.findings import Code
from shared.messages import normalise_zone

if TYPE_CHECKING:
    from shared.config import ConfigError

Severity = Literal["warning", "error"]
SEVERITY_RANK: dict[str, int] = {"warning": 0, "error": 1}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # it labels metrics and names state rows
_SECRET_BYTES = (24, 64)  # Standard Webhooks: whsec_ + base64 of 24 to 64 random bytes


def _config_error(message: str) -> ConfigError:
    from shared.config import ConfigError  # shared.config imports this module: import when needed

    return ConfigError(message)


def _read(place: str, env: str | None, file: str | None) -> str | None:
    """The value named by ``<place>_env`` / ``<place>_file``; None when neither is given."""
    if env:
        value = os.environ.get(env, "").strip()
        if not value:
            raise _config_error(f"{place}_env: environment variable {env} is not set")
        return value
    if file:
        try:
            value = Path(file).read_text().strip()
        except OSError as exc:
            raise _config_error(f"{place}_file: cannot read {file}: {exc.strerror}") from None
        if not value:
            raise _config_error(f"{place}_file: {file} is empty")
        return value
    return None


class _Receiver(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True, kw_only=True):
    name: str
    url: str | None = None
    url_env: str | None = None
    url_file: str | None = None
    min_severity: Severity = "warning"
    segments: list[str] = []  # empty: all
    zones: list[str] = []
    codes: list[str] = []
    timeout: float = 10.0  # seconds per request phase (connect, read, write)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"name {self.name[:80]!r}: letters, digits, '.', '_', '-' (at most 63)")
        if sum(v is not None for v in (self.url, self.url_env, self.url_file)) != 1:
            raise ValueError(f"receiver {self.name}: give exactly one of url, url_env or url_file")
        if self.url is not None and not _is_http_url(self.url):
            raise ValueError(f"receiver {self.name}: url is not an http(s) URL")  # never quote it
        unknown = [c for c in self.codes if c not in Code.__members__]
        if unknown:
            raise ValueError(f"receiver {self.name}: codes: unknown finding code {unknown[0]!r}")
        if self.timeout <= 0:
            raise ValueError(f"receiver {self.name}: timeout must be positive")

    @property
    def place(self) -> str:
        return f"alerts.receivers[{self.name}]"

    def resolve_url(self) -> str:
        """The URL, read from the config, the environment or a file; ConfigError without the value."""
        url = self.url or _read(f"{self.place}.url", self.url_env, self.url_file)
        if url is None or not _is_http_url(url):
            source = "url_env" if self.url_env else "url_file"
            raise _config_error(f"{self.place}.{source}: the value is not an http(s) URL")
        return url

    def zone_set(self) -> frozenset[str]:
        return frozenset(normalise_zone(z) for z in self.zones)


class WebhookReceiver(_Receiver, tag="webhook", frozen=True, kw_only=True):
    """A Standard Webhooks endpoint: one signed JSON event per request."""

    secret_env: str | None = None
    secret_file: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError(f"receiver {self.name}: give exactly one of secret_env or secret_file")

    def resolve_secret(self) -> str:
        """The ``whsec_…`` signing secret; ConfigError (never quoting it) when missing or malformed."""
        secret = _read(f"{self.place}.secret", self.secret_env, self.secret_file)
        source = "secret_env" if self.secret_env else "secret_file"
        if secret is None or not _valid_secret(secret):
            low, high = _SECRET_BYTES
            raise _config_error(f"{self.place}.{source}: not a whsec_ base64 secret of {low} to {high} bytes")
        return secret


class SlackReceiver(_Receiver, tag="slack", frozen=True, kw_only=True):
    """A Slack incoming webhook: one digest message per run."""


class AlertmanagerReceiver(_Receiver, tag="alertmanager", frozen=True, kw_only=True):
    """Prometheus Alertmanager (API v2): every open problem re-posted after each run."""

    valid_for: float | None = None  # seconds; default 3 × the interval between the last two runs, ≥ 1 h

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.valid_for is not None and self.valid_for <= 0:
            raise ValueError(f"receiver {self.name}: valid_for must be positive")


Receiver = WebhookReceiver | SlackReceiver | AlertmanagerReceiver


class AlertsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    state_file: str
    renotify_after: float = 86400.0  # seconds between reminders of a problem still open
    flush_timeout: float = 30.0  # ``run``: how long to keep delivering before exiting
    max_delivery_age: float = 3 * 86400.0  # a delivery failing for this long is given up (dead)
    receivers: list[Receiver] = []

    def __post_init__(self) -> None:
        for key in ("renotify_after", "max_delivery_age"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive")
        if self.flush_timeout < 0:
            raise ValueError("flush_timeout must not be negative")
        names = [r.name for r in self.receivers]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ValueError(f"receivers: the name {duplicate!r} is used twice")


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _valid_secret(secret: str) -> bool:
    text = secret.removeprefix("whsec_")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return _SECRET_BYTES[0] <= len(raw) <= _SECRET_BYTES[1]
