"""config.json: the original's keys with their meaning, plus ours. Unknown keys are errors.

Loading never raises a traceback at users: ``ConfigError`` carries one line naming the file,
the place (``$.ssl_ports[1]``) and the problem, and the CLI exits 2 with it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import msgspec

from shared.alerts_config import AlertsConfig


class ConfigError(ValueError):
    """A config or input file that cannot be used; ``str()`` is the whole user-facing line."""


class TsigKey(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A TSIG key. The secret never sits in the config text: it is read from env or a file."""

    name: str
    algorithm: str = "hmac-sha256"
    secret_env: str | None = None
    secret_file: str | None = None

    def secret(self) -> str:
        """The base64 secret; raises ConfigError (without the secret) when it is missing."""
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if not value:
                raise ConfigError(f"TSIG key {self.name}: environment variable {self.secret_env} is not set")
            return value.strip()
        if self.secret_file:
            try:
                return Path(self.secret_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"TSIG key {self.name}: cannot read {self.secret_file}: {exc.strerror}") from None
        raise ConfigError(f"TSIG key {self.name}: give secret_env or secret_file")


class BindServer(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The original's BIND source ``config``: where to ask for AXFR, and how patiently."""

    server_ip: str
    server_port: int = 53
    tsig_key: TsigKey | None = None
    timeout: float = 5.0  # connect and per-read idle timeout, seconds
    lifetime: float = 300.0  # whole transfer, seconds
    retries: int = 2  # extra attempts on transient failures (timeout, reset, EOF)

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.server_ip)
        except ValueError:
            raise ValueError(f"server_ip {self.server_ip!r} is not an IP address") from None
        if not 0 < self.server_port < 65536:
            raise ValueError(f"server_port {self.server_port} is not a port")


class BindSource(msgspec.Struct, tag_field="type", tag="BIND", forbid_unknown_fields=True, frozen=True):
    config: BindServer
    zones: list[str] = []


class ZoneFileSource(msgspec.Struct, tag_field="type", tag="FILE", forbid_unknown_fields=True, frozen=True):
    """RFC 1035 master files, e.g. kept in git: ``{"zone": "path/to/file"}``."""

    files: dict[str, str]


ZoneSource = BindSource | ZoneFileSource


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # --- the original's keys, same meaning ---
    log_level: int = 30
    ssl_ports: list[int] = msgspec.field(default_factory=lambda: [443])
    min_time_to_expiration: int = 2592000
    zone_data_sources: dict[str, ZoneSource] = {}
    nameserver_zones: dict[str, list[str]] = {}
    lookup_nameservers: list[str] = []
    name_filters: list[str] = []
    # --- ours ---
    custom_ca_file: str | None = None
    dns_timeout: float = 3.0  # per out-of-zone lookup (resolver)
    use_system_resolver: bool = False  # without lookup_nameservers: resolve via /etc/resolv.conf?
    wildcard_probe_label: str = "dcc-wildcard-probe"  # SNI for *.zone is <label>.zone
    network_timeout: float = 5.0  # a silent endpoint costs about this much (scanner)
    scan_timeout: float = 20.0  # hard deadline per endpoint (scanner)
    scan_concurrency: int = 100  # endpoints scanned at once by one scanner
    max_connections_per_ip: int = 5  # never knock a server over
    segments: dict[str, list[str]] = {}  # segment name -> CIDRs it scans
    default_segment: str | None = "default"  # None: unclaimed addresses become findings
    run_deadline: float = 3600.0  # reporter: a run with results missing this long is incomplete
    state_dir: str | None = None  # collector: remembered SOA serials and the records they named
    alerts: AlertsConfig | None = None  # reporter: problem state, webhooks, Alertmanager, Slack

    def __post_init__(self) -> None:
        for port in self.ssl_ports:
            if not 0 < port < 65536:
                raise ValueError(f"ssl_ports: {port} is not a TCP port")
        for pattern in self.name_filters:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"name_filters: {pattern!r} is not a regular expression ({exc})") from None
        for entry in [*self.lookup_nameservers, *self.nameserver_zones]:
            parse_host_port(entry, 53)
        for segment, cidrs in self.segments.items():
            for cidr in cidrs:
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    raise ValueError(f"segments.{segment}: {cidr!r} is not a network") from None

    def compiled_name_filters(self) -> list[re.Pattern[str]]:
        return [re.compile(p) for p in self.name_filters]

    def nameservers(self) -> list[tuple[str, int]]:
        return [parse_host_port(entry, 53) for entry in self.lookup_nameservers]


def parse_host_port(entry: str, default_port: int) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1``, ``[::1]:5353`` → (ip, port)."""
    text = entry.strip()
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{entry!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{entry!r}: expected [address]:port")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"{entry!r}: port is not a number")
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{entry!r} is not an IP address (names would need the system resolver)") from None
    if not 0 < port < 65536:
        raise ValueError(f"{entry!r}: port out of range")
    return host, port


def _problem(path: str | Path, exc: Exception) -> ConfigError:
    return ConfigError(f"{path}: {exc}")


def load_config(path: str | Path | None) -> Config:
    """Read config.json; ``None`` gives the defaults. Raises ConfigError."""
    if path is None:
        return Config()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return msgspec.json.decode(data, type=Config)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _problem(path, exc) from None


def default_config_path(explicit: str | None) -> str | None:
    """The original read ./config.json; we do when it exists and none is named."""
    if explicit:
        return explicit
    return "config.json" if Path("config.json").is_file() else None


# The zones JSON of the original: {"zone": [{"type", "name", "ttl", "target"}, ...]}
class ZonesJsonRecord(msgspec.Struct, frozen=True):
    type: str
    name: str
    target: str = ""
    ttl: int | None = None


ZonesJson = dict[str, list[ZonesJsonRecord]]


def load_zones_json(path: str | Path) -> dict[str, list[ZonesJsonRecord]]:
    """Read the original's zones JSON; unknown record types are kept here and ignored later."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return msgspec.json.decode(data, type=ZonesJson)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _problem(path, exc) from None
