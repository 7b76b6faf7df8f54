"""config.json: the original's keys with their meaning, plus ours. Unknown keys are errors.

Loading never raises a traceback at users: ``ConfigError`` carries one line naming the file,
the place (``$.ssl_ports[1]``) and the problem, and the CLI exits 2 with it.

Every input is bounded before it is parsed: a config file is read up to ``MAX_CONFIG_BYTES``,
a zones JSON up to ``MAX_ZONES_JSON_BYTES``, a secret or CA file up to its own cap, so an endless
or huge file (``/dev/zero``) is one clear error instead of a hang or a MemoryError. Every number
has a range (``msgspec.Meta`` on the field), every ``name_filters`` pattern must be cheap to match
(``regex_problem``), and names longer than DNS allows are rejected where they come in
(``name_length_problem``), quoting only their start (``shorten``).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
import stat
import warnings
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

import msgspec

from shared.alerts_config import AlertsConfig
from shared.logging import escape_controls
from shared.messages import RECORD_TYPES, RecordType, ZoneRecord

# --- limits (the README's config table lists them) ----------------------------------------------

MAX_CONFIG_BYTES = 10 * 2**20  # config.json
MAX_ZONES_JSON_BYTES = 2**30  # --from-zones-json (load_zones_json takes another limit)
MAX_CA_FILE_BYTES = 10 * 2**20  # custom_ca_file
MAX_SECRET_BYTES = 64 * 2**10  # a TSIG key's secret_file
MAX_ERROR_CHARS = 1000  # a ConfigError line is cut (in its middle) beyond this

MAX_NAME_LENGTH = 253  # octets of a name without the root's final dot (255 on the wire)
MAX_LABEL_LENGTH = 63
MAX_NAME_SPELLING = 4 * MAX_NAME_LENGTH + 1  # the longest text any valid name can be (every octet as \DDD)

MAX_FILTER_LENGTH = 1000  # characters of one name_filters pattern
MAX_FILTER_NESTING = 32  # groups within groups
FILTER_BUDGET = 300_000  # worst-case backtracking paths per start position (regex_problem)

Seconds = Annotated[float, msgspec.Meta(gt=0, le=300)]  # one network operation
LongSeconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]


class ConfigError(ValueError):
    """A config or input file that cannot be used; ``str()`` is the whole user-facing line.

    Whatever the message quotes, it stays one line (control characters are escaped) and short
    (a message longer than ``MAX_ERROR_CHARS`` loses its middle).
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` as one bounded line: control characters escaped, the middle cut when too long."""
    if len(text) > limit:
        text = f"{text[: limit // 2]} ... {text[-(limit // 4) :]}"  # the start says what, the end where
    return escape_controls(text)


def shorten(text: str, limit: int = 60) -> str:
    """``text`` itself when short, else its first ``limit`` characters and ``...``."""
    return text if len(text) <= limit else text[:limit] + "..."


def quote(text: str, limit: int = 60) -> str:
    """``repr`` of ``shorten(text)``: for messages that quote input."""
    return repr(shorten(text, limit))


# --- bounded reading ----------------------------------------------------------------------------


def _size(limit: int) -> str:
    if limit >= 2**30 and limit % 2**30 == 0:
        return f"{limit // 2**30} GiB"
    if limit >= 2**20 and limit % 2**20 == 0:
        return f"{limit // 2**20} MiB"
    if limit >= 2**10 and limit % 2**10 == 0:
        return f"{limit // 2**10} KiB"
    return f"{limit} bytes"


def read_capped(path: str | Path, limit: int, what: str, *, first: bytes = b"") -> bytes:
    """The bytes of ``path``, at most ``limit`` of them; ``ConfigError`` naming ``path`` when it
    cannot be read or is larger (``what`` names the cap: "a config file").

    A regular file is measured before it is read; anything else (a device, a pipe) is read in
    chunks and refused as soon as it passes the cap, so ``/dev/zero`` costs ``limit`` bytes at most.
    ``first``: bytes one of which must open the content (after whitespace); checked on the first
    chunk, so a file that cannot be what was asked for fails at once.
    """
    too_large = ConfigError(f"{path}: larger than {_size(limit)} (the limit for {what})")
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISREG(info.st_mode):
                if info.st_size > limit:
                    raise too_large
                data = handle.read(info.st_size + 1)  # one buffer; +1 notices a file that grew
            else:
                data = _read_stream(handle, limit, path, first)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise too_large
    if first:
        _check_opening(path, data[:4096], first)
    return data


def _read_stream(handle: BinaryIO, limit: int, path: str | Path, first: bytes) -> bytes:
    """At most ``limit + 1`` bytes of a device or pipe, in chunks (never more than that is held);
    the first chunk must open with one of ``first`` (``/dev/zero`` fails on its first KiB)."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = handle.read(min(1 << 20, limit + 1 - total))
        if not chunk:
            break
        if not chunks and first:
            _check_opening(path, chunk[:4096], first)
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _check_opening(path: str | Path, chunk: bytes, first: bytes) -> None:
    opening = chunk.lstrip(b" \t\r\n")[:1]
    if opening and opening not in first:
        raise ConfigError(f"{path}: not a JSON object (it starts with {opening!r})")


# --- DNS names at the input ---------------------------------------------------------------------

_TOO_LONG = f"is longer than DNS allows ({MAX_NAME_LENGTH} characters)"
_LABEL_TOO_LONG = f"has a label longer than DNS allows ({MAX_LABEL_LENGTH} characters)"


def name_length_problem(name: str, origin: str = "") -> str | None:
    """Why ``name`` is longer than DNS allows (a phrase: "is longer than DNS allows (253
    characters)"), or None when it is not.

    ``name`` is as a zone spells it: relative to ``origin`` unless it ends with a dot, ``@`` (or
    nothing) for the origin itself, ``\\.`` and ``\\DDD`` one octet each. The limits are those of
    the whole absolute name: 253 characters without the final dot, 63 per label. Linear in the
    length of ``name``, and constant for a name longer than any DNS name can be spelt.
    """
    if len(name) <= MAX_LABEL_LENGTH and len(name) + len(origin) < MAX_NAME_LENGTH:
        if _origin(origin)[0] is None:
            return None  # the common case, decided on lengths alone: characters bound octets from above
    elif len(name) > MAX_NAME_SPELLING:
        return _TOO_LONG
    origin_problem, origin_octets = _origin(origin)
    text = name.strip()
    if text in ("", "@"):
        return origin_problem
    if _ends_with_dot(text):
        text, base = text[:-1], 0
    elif origin_problem is not None:
        return origin_problem
    else:
        base = origin_octets + 1 if origin_octets else 0
    if len(text) <= MAX_LABEL_LENGTH and len(text) + base <= MAX_NAME_LENGTH:
        return None
    octets, longest = _measure(text)
    if longest > MAX_LABEL_LENGTH:
        return _LABEL_TOO_LONG
    if octets + base > MAX_NAME_LENGTH:
        return _TOO_LONG
    return None


def zone_name_problem(zone: str) -> str | None:
    """``name_length_problem`` of a zone's name (absolute, with or without its final dot)."""
    return name_length_problem(zone.strip().rstrip(".") + ".") if zone.strip() else None


def _origin(origin: str) -> tuple[str | None, int]:
    """(problem, octets) of a zone name used as origin: one count per zone, not per record."""
    if len(origin) > MAX_NAME_SPELLING + 1:
        return _TOO_LONG, MAX_NAME_SPELLING  # not remembered: the cache holds short names only
    return _measured_origin(origin)


@functools.lru_cache(maxsize=64)
def _measured_origin(origin: str) -> tuple[str | None, int]:
    text = origin.strip().rstrip(".")
    if not text:
        return None, 0
    octets, longest = _measure(text)
    if longest > MAX_LABEL_LENGTH:
        return _LABEL_TOO_LONG, octets
    return (_TOO_LONG if octets > MAX_NAME_LENGTH else None), octets


def _ends_with_dot(text: str) -> bool:
    """Ends with a dot that is not escaped (``a\\.`` is a label ending in a dot, ``a\\\\.`` is absolute)."""
    if not text.endswith("."):
        return False
    backslashes = len(text) - 1 - len(text[:-1].rstrip("\\"))
    return backslashes % 2 == 0


def _measure(text: str) -> tuple[int, int]:
    """(octets, longest label in octets) of a name in presentation format, without a final dot."""
    if "\\" not in text:
        return len(text), max(map(len, text.split(".")))
    octets = label = longest = 0
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char == "\\":
            i += 4 if text[i + 1 : i + 4].isdigit() and len(text[i + 1 : i + 4]) == 3 else 2
            label += 1
        elif char == ".":
            longest = max(longest, label)
            octets += label + 1
            label = 0
            i += 1
        else:
            label += 1
            i += 1
    return octets + label, max(longest, label)


def bounded_name(name: str) -> str:
    """``name``, or, when longer than any DNS name can be spelt, a prefix that is still too long:
    what an invalid name costs downstream is bounded, and it is still rejected as invalid."""
    return name if len(name) <= MAX_NAME_SPELLING + 1 else name[: MAX_NAME_SPELLING + 1]


# --- name_filters: bounded regex work ------------------------------------------------------------

_UNBOUNDED = MAX_NAME_LENGTH  # a repetition cannot match more characters than a name has
_QUANTIFIER = re.compile(r"\{(\d*)(,(\d*))?\}")
_SATURATED = FILTER_BUDGET + 1


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a name filter (not a regular expression, or matching it against a
    name could take unbounded time), or None.

    Python's ``re`` backtracks: ``(a+)+$`` takes minutes on a 30-character name, and so do three
    unbounded repetitions of overlapping atoms in a row (``\\w+\\w+\\w+\\d$``) on a 253-character
    one. The worst case is estimated from the pattern alone: a repetition up to ``m`` times of
    something with ``c`` ways to match has ``(m + 1) * c ** m`` (``*`` and ``+`` count as up to
    253, the longest name), alternatives add, a sequence multiplies. More than
    ``FILTER_BUDGET`` is refused: in practice, a repetition (or alternation) inside a repeated
    group, or more than two unbounded repetitions in one pattern.
    """
    if len(pattern) > MAX_FILTER_LENGTH:
        return f"is longer than {MAX_FILTER_LENGTH} characters"
    if _nesting(pattern) > MAX_FILTER_NESTING:
        return f"nests groups deeper than {MAX_FILTER_NESTING}"
    try:
        with warnings.catch_warnings():  # "possible nested set" and the like: the pattern still works
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"is not a regular expression ({exc})"
    if _RegexCost(pattern).total() > FILTER_BUDGET:
        return (
            "could backtrack for minutes on one long name (a repetition or alternation inside a repeated "
            "group, or more than two unbounded repetitions): rewrite it without them"
        )
    return None


def _skip_class(pattern: str, i: int) -> int:
    """The index after the character class that opens at ``pattern[i] == '['``."""
    j = i + 1
    if pattern.startswith("^", j):
        j += 1
    if pattern.startswith("]", j):
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1


def _nesting(pattern: str) -> int:
    depth = deepest = i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            i = _skip_class(pattern, i)
            continue
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def _mul(a: int, b: int) -> int:
    return min(a * b, _SATURATED)


def _repeat(cost: int, times: int) -> int:
    times = min(times, _UNBOUNDED)
    if times <= 0:
        return 1
    if cost > 1 and times * math.log2(cost) > math.log2(_SATURATED):
        return _SATURATED
    return _mul(times + 1, cost**times)


class _RegexCost:
    """A recursive-descent walk of a pattern ``re.compile`` accepted, computing ``regex_problem``'s
    estimate. It never raises: anything it does not understand counts as one literal character."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def total(self) -> int:
        cost = self.alternation()
        while self.i < len(self.p):  # a stray ')' (as in a verbose pattern's comment): go on after it
            self.i += 1
            cost = _mul(cost, self.alternation())
        return cost

    def alternation(self) -> int:
        cost = self.sequence()
        while self.i < len(self.p) and self.p[self.i] == "|":
            self.i += 1
            cost = min(cost + self.sequence(), _SATURATED)
        return cost

    def sequence(self) -> int:
        cost = 1
        while self.i < len(self.p) and self.p[self.i] not in "|)":
            atom = self.atom()
            times = self.quantifier()
            cost = _mul(cost, atom if times is None else _repeat(atom, times))
        return cost

    def atom(self) -> int:
        p, i = self.p, self.i
        char = p[i]
        if char == "\\":
            self.i = i + 2
            return 1
        if char == "[":
            self.i = _skip_class(p, i)
            return 1
        if char != "(":
            self.i = i + 1
            return 1
        i += 1
        if p.startswith("?", i):
            if p.startswith(("?#", "?P=", "?("), i):  # comment, named backreference, condition
                close = p.find(")", i)
                self.i = len(p) if close < 0 else close + 1
                if not p.startswith("?(", i):
                    return 1
                i = self.i
            elif p.startswith(("?<=", "?<!"), i):
                i += 3
            elif p.startswith("?P<", i) or p.startswith("?<", i):
                close = p.find(">", i)
                i = len(p) if close < 0 else close + 1
            elif p.startswith((":", "=", "!", ">"), i + 1):
                i += 2
            else:  # inline flags: (?i) or (?i-s:...)
                i += 1
                while i < len(p) and (p[i].isalpha() or p[i] == "-"):
                    i += 1
                if p.startswith(")", i):
                    self.i = i + 1
                    return 1
                i += 1  # the ':'
        self.i = i
        cost = self.alternation()
        if self.p.startswith(")", self.i):
            self.i += 1
        return cost

    def quantifier(self) -> int | None:
        p, i = self.p, self.i
        if i >= len(p):
            return None
        char = p[i]
        if char in "*+":
            times, i = _UNBOUNDED, i + 1
        elif char == "?":
            times, i = 1, i + 1
        elif char == "{":
            match = _QUANTIFIER.match(p, i)
            if match is None or not (match[1] or match[2]):
                return None  # a literal '{'
            low, comma, high = match[1], match[2], match[3]
            times = int(high) if comma and high else _UNBOUNDED if comma else int(low)
            i = match.end()
        else:
            return None
        if p.startswith(("?", "+"), i):  # lazy or possessive: as many paths in the worst case
            i += 1
        self.i = i
        return times


# --- config.json --------------------------------------------------------------------------------


class TsigKey(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A TSIG key. The secret never sits in the config text: it is read from env or a file."""

    name: str
    algorithm: str = "hmac-sha256"
    secret_env: str | None = None
    secret_file: str | None = None

    def secret(self) -> str:
        """The base64 secret; raises ConfigError (without the secret) when it is missing."""
        return read_secret(f"TSIG key {self.name}", self.secret_env, self.secret_file)


def read_secret(
    owner: str, env: str | None, file: str | None, keys: tuple[str, str] = ("secret_env", "secret_file")
) -> str:
    """A secret from the environment variable ``env`` or the file ``file`` (at most
    ``MAX_SECRET_BYTES``), stripped; ConfigError naming ``owner`` (never the secret) when it is
    missing. ``keys`` are the config keys that name them, for the message."""
    if env:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"{owner}: environment variable {env} is not set")
        return value.strip()
    if file:
        try:
            data = read_capped(file, MAX_SECRET_BYTES, "a secret file")
        except ConfigError as exc:
            raise ConfigError(f"{owner}: {exc}") from None
        try:
            return data.decode().strip()
        except UnicodeDecodeError:
            raise ConfigError(f"{owner}: {file} is not text") from None
    raise ConfigError(f"{owner}: give {keys[0]} or {keys[1]}")


class BindServer(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The original's BIND source ``config``: where to ask for AXFR, and how patiently."""

    server_ip: str
    server_port: int = 53
    tsig_key: TsigKey | None = None
    timeout: LongSeconds = 5.0  # connect and per-read idle timeout, seconds
    lifetime: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 300.0  # whole transfer, seconds
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2  # extra attempts on transient failures

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.server_ip)
        except ValueError:
            raise ValueError(f"server_ip {quote(self.server_ip)} is not an IP address") from None
        if not 0 < self.server_port < 65536:
            raise ValueError(f"server_port {self.server_port} is not a port")


def _check_zones(place: str, zones: object) -> None:
    for zone in zones if isinstance(zones, (list, dict)) else ():
        problem = zone_name_problem(zone)
        if problem is not None:
            raise ValueError(f"{place}: zone {quote(zone)} {problem}")


# Discovered zones matching one of these are not collected: reverse zones have no A/CNAME worth scanning.
DEFAULT_EXCLUDE_ZONES = ("*.in-addr.arpa", "*.ip6.arpa")


def _check_globs(place: str, patterns: list[str]) -> None:
    for pattern in patterns:
        if not pattern.strip() or len(pattern) > MAX_NAME_SPELLING:
            raise ValueError(f"{place}: {quote(pattern)} is not a zone name or glob pattern")


class BindSource(msgspec.Struct, tag_field="type", tag="BIND", forbid_unknown_fields=True, frozen=True):
    config: BindServer
    zones: list[str] = []
    # RFC 9432 catalog zone on the same server: its member zones are transferred too
    catalog: str | None = None
    exclude_zones: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_EXCLUDE_ZONES))

    def __post_init__(self) -> None:
        _check_zones("zones", self.zones)
        if self.catalog is not None:
            if not self.catalog.strip():
                raise ValueError("catalog: give the catalog zone's name")
            _check_zones("catalog", [self.catalog])
        _check_globs("exclude_zones", self.exclude_zones)


class PowerDnsSource(msgspec.Struct, tag_field="type", tag="POWERDNS", forbid_unknown_fields=True, frozen=True):
    """A PowerDNS Authoritative server's HTTP API: its zones are listed, and each read from the API."""

    api_url: str  # http(s)://<ip or name>[:port][/path], the webserver of pdns_server
    api_key_env: str | None = None
    api_key_file: str | None = None
    server_id: str = "localhost"
    zones: list[str] = []  # empty: every zone of the server; else zone names or glob patterns
    exclude_zones: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_EXCLUDE_ZONES))
    timeout: LongSeconds = 10.0  # connect and each wait for data, seconds
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2  # extra attempts on timeouts, resets and 5xx

    def __post_init__(self) -> None:
        problem = api_url_problem(self.api_url)
        if problem is not None:
            shown = re.sub(r"//[^/]*@", "//***@", self.api_url)  # never quote credentials
            raise ValueError(f"api_url {quote(shown)} {problem}")
        if (self.api_key_env is None) == (self.api_key_file is None):
            raise ValueError("give exactly one of api_key_env or api_key_file")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", self.server_id):
            raise ValueError(f"server_id {quote(self.server_id)} is not a PowerDNS server id")
        _check_globs("zones", self.zones)
        _check_globs("exclude_zones", self.exclude_zones)

    def api_key(self) -> str:
        """The API key; ConfigError (without the key) when it is missing."""
        return read_secret("PowerDNS API key", self.api_key_env, self.api_key_file, ("api_key_env", "api_key_file"))


_API_URL = re.compile(r"(https?)://(\[[0-9A-Fa-f:.]+\]|[^/:@?#\[\]]+)(?::(\d{1,5}))?(/[^?#@]*)?")
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def api_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a PowerDNS API base URL, or None: http(s), an IP address or a host
    name (resolved through ``lookup_nameservers``), an optional path (a reverse proxy's), no
    credentials, query or fragment."""
    match = _API_URL.fullmatch(url.strip())
    if match is None:
        return "is not http(s)://<host>[:port][/path] (no credentials, query or fragment)"
    if api_url_host_name(url) is not None and not _HOST_NAME.fullmatch(match[2]):
        return "does not name a host (an IP address or a DNS name)"
    if match[3] is not None and not 0 < int(match[3]) < 65536:
        return "has a port out of range"
    return None


def api_url_host_name(url: str) -> str | None:
    """The host of ``url`` when it is a name (to be resolved), None when it is an IP address."""
    match = _API_URL.fullmatch(url.strip())
    if match is None:
        return None
    try:
        ipaddress.ip_address(match[2].strip("[]"))
    except ValueError:
        return match[2]
    return None


class ZoneFileSource(msgspec.Struct, tag_field="type", tag="FILE", forbid_unknown_fields=True, frozen=True):
    """RFC 1035 master files, e.g. kept in git: ``{"zone": "path/to/file"}``."""

    files: dict[str, str]

    def __post_init__(self) -> None:
        _check_zones("files", self.files)


ZoneSource = BindSource | ZoneFileSource | PowerDnsSource

_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")

ExpiryScope = Literal["chain", "served"]
RevocationMode = Literal["off", "ocsp", "crl"]
ScanMode = Literal["fast", "full"]
PUBLIC_MAX_VALIDITY_DAYS = 398  # CA/Browser Forum limit for publicly trusted server certificates

# STARTTLS by port unless the config says otherwise ("none": direct TLS on that port).
STARTTLS_PROTOCOLS = ("smtp", "imap", "pop3", "ftp", "ldap", "xmpp", "xmpp_server", "postgres", "rdp")
DEFAULT_STARTTLS: dict[int, str] = {
    25: "smtp",
    587: "smtp",
    143: "imap",
    110: "pop3",
    21: "ftp",
    389: "ldap",
    5222: "xmpp",
    5269: "xmpp_server",
    5432: "postgres",
    3389: "rdp",
}


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # --- the original's keys, same meaning ---
    log_level: Annotated[int, msgspec.Meta(ge=0, le=50)] = 30  # a logging level: 10 DEBUG … 50 CRITICAL
    ssl_ports: list[int] = msgspec.field(default_factory=lambda: [443])
    min_time_to_expiration: Annotated[int, msgspec.Meta(ge=0, le=100 * 365 * 86400)] = 2592000
    zone_data_sources: dict[str, ZoneSource] = {}
    nameserver_zones: dict[str, list[str]] = {}
    lookup_nameservers: list[str] = []
    name_filters: list[str] = []
    # --- ours ---
    custom_ca_file: str | None = None
    dns_timeout: Seconds = 3.0  # per out-of-zone lookup (resolver)
    use_system_resolver: bool = False  # without lookup_nameservers: resolve via /etc/resolv.conf?
    wildcard_probe_label: str = "dcc-wildcard-probe"  # SNI for *.zone is <label>.zone
    network_timeout: Seconds = 5.0  # a silent endpoint costs about this much (scanner)
    scan_timeout: LongSeconds = 20.0  # hard deadline per endpoint (scanner)
    scan_concurrency: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100  # endpoints scanned at once by one scanner
    max_connections_per_ip: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5  # never knock a server over
    segments: dict[str, list[str]] = {}  # segment name -> CIDRs it scans
    default_segment: str | None = "default"  # None: unclaimed addresses become findings
    # reporter: a run with results missing this long is incomplete (at most 30 days)
    run_deadline: Annotated[float, msgspec.Meta(gt=0, le=30 * 86400)] = 3600.0
    state_dir: str | None = None  # collector: remembered SOA serials and the records they named
    # services: /healthz, /readyz and /metrics on this port (all interfaces); None: no health server
    health_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    alerts: AlertsConfig | None = None  # reporter: problem state, webhooks, Alertmanager, Slack
    # --- certificate checks (scanner); the README's findings table says what each reports ---
    critical_time_to_expiration: Annotated[int, msgspec.Meta(ge=0, le=100 * 365 * 86400)] = 7 * 86400  # error
    expiry_scope: ExpiryScope = "chain"  # "chain": leaf + the chain clients verify; "served": every cert sent
    max_validity_days: Annotated[int, msgspec.Meta(ge=0, le=100 * 365)] | None = None  # None: 398, public only
    min_rsa_key_bits: Annotated[int, msgspec.Meta(ge=0, le=16384)] = 2048
    min_ec_key_bits: Annotated[int, msgspec.Meta(ge=0, le=571)] = 256
    strict_rfc5280_warnings: bool = True  # CA_NOT_STRICT: RFC 5280 violations that clients accept
    revocation: RevocationMode = "off"  # active checks: "ocsp" or "crl" (stapled OCSP is always read)
    revocation_timeout: Seconds = 5.0  # one OCSP or CRL fetch
    starttls: dict[str, str] = {}  # port -> protocol (or "none"), over DEFAULT_STARTTLS
    # --- how endpoints are scanned (scanner) ---
    scan_mode: ScanMode = "fast"  # "fast": one handshake per endpoint; "full": SSLyze's CERTIFICATE_INFO
    scan_mode_by_port: dict[str, ScanMode] = {}  # port -> mode, over scan_mode
    scan_mode_by_segment: dict[str, ScanMode] = {}  # segment -> mode, over scan_mode (a port's wins)
    full_scan_on_change: bool = True  # fast path: a chain that changed since last seen gets the full scan once

    def __post_init__(self) -> None:
        if not self.ssl_ports:
            raise ValueError("ssl_ports: give at least one port (an empty list would scan nothing)")
        for port in self.ssl_ports:
            if not 0 < port < 65536:
                raise ValueError(f"ssl_ports: {port} is not a TCP port")
        for pattern in self.name_filters:
            problem = regex_problem(pattern)
            if problem is not None:
                raise ValueError(f"name_filters: {quote(pattern, 100)} {problem}")
        if not _LABEL.match(self.wildcard_probe_label):
            raise ValueError(
                f"wildcard_probe_label: {quote(self.wildcard_probe_label)} is not a DNS label"
                " (letters, digits, '-', '_'; at most 63)"
            )
        for entry in [*self.lookup_nameservers, *self.nameserver_zones]:
            parse_host_port(entry, 53)
        for name, source in self.zone_data_sources.items():
            host = api_url_host_name(source.api_url) if isinstance(source, PowerDnsSource) else None
            if host is not None and not self.lookup_nameservers and not self.use_system_resolver:
                raise ValueError(
                    f"zone_data_sources.{shorten(name)}: api_url names the host {quote(host)}: give"
                    " lookup_nameservers to resolve it (or an IP address; the system resolver is asked"
                    " only with use_system_resolver)"
                )
        for entry, zones in self.nameserver_zones.items():
            _check_zones(f"nameserver_zones.{shorten(entry)}", zones)
        for segment, cidrs in self.segments.items():
            for cidr in cidrs:
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    raise ValueError(f"segments.{shorten(segment)}: {quote(cidr)} is not a network") from None

        for port_text in self.scan_mode_by_port:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ValueError(f"scan_mode_by_port: {quote(port_text)} is not a TCP port")
        for port_text, protocol in self.starttls.items():
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ValueError(f"starttls: {quote(port_text)} is not a TCP port")
            if protocol != "none" and protocol not in STARTTLS_PROTOCOLS:
                raise ValueError(
                    f"starttls.{port_text}: {quote(protocol)} is not one of {', '.join(STARTTLS_PROTOCOLS)} or none"
                )

    def starttls_ports(self) -> dict[int, str]:
        """Port -> STARTTLS protocol: the defaults with the config's overrides ("none" removes one)."""
        ports = dict(DEFAULT_STARTTLS)
        for port_text, protocol in self.starttls.items():
            if protocol == "none":
                ports.pop(int(port_text), None)
            else:
                ports[int(port_text)] = protocol
        return ports

    def compiled_name_filters(self) -> list[re.Pattern[str]]:
        return [re.compile(p) for p in self.name_filters]

    def nameservers(self) -> list[tuple[str, int]]:
        return [parse_host_port(entry, 53) for entry in self.lookup_nameservers]


def parse_host_port(entry: str, default_port: int) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1``, ``[::1]:5353`` → (ip, port)."""
    text = entry.strip()
    host, port = text, default_port
    shown = quote(entry)
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{shown}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{shown}: expected [address]:port")
            port = int(rest[1:]) if len(rest) < 8 else 0
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"{shown}: port is not a number")
        port = int(port_text) if len(port_text) < 8 else 0
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{shown} is not an IP address (names would need the system resolver)") from None
    if not 0 < port < 65536:
        raise ValueError(f"{shown}: port out of range")
    return host, port


def _problem(path: str | Path, exc: Exception | str) -> ConfigError:
    return ConfigError(f"{path}: {exc}")


def load_config(path: str | Path | None) -> Config:
    """Read config.json (at most ``MAX_CONFIG_BYTES``); ``None`` gives the defaults. Raises ConfigError."""
    if path is None:
        return Config()
    data = read_capped(path, MAX_CONFIG_BYTES, "a config file", first=b"{")
    try:
        config = msgspec.json.decode(data, type=Config)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _problem(path, exc) from None
    if config.custom_ca_file is not None:
        check_ca_file(config.custom_ca_file, path)
    return config


def check_ca_file(ca_file: str, config_path: str | Path) -> None:
    """``custom_ca_file`` must be a readable PEM file of certificates (OpenSSL reads it in the
    scanner; a bad one there would be a traceback per endpoint): ConfigError otherwise."""
    place = f"{config_path}: custom_ca_file"
    try:
        data = read_capped(ca_file, MAX_CA_FILE_BYTES, "a CA file")
    except ConfigError as exc:
        raise ConfigError(f"{place}: {exc}") from None
    from cryptography import x509  # only when a CA file is configured

    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ConfigError(f"{place}: {ca_file} has no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"{place}: {ca_file} is not a PEM certificate file ({exc})") from None


def default_config_path(explicit: str | None) -> str | None:
    """``--config``, else ``$DCC_CONFIG``, else ./config.json when it exists (as the original read it)."""
    if explicit:
        return explicit
    if os.environ.get("DCC_CONFIG"):
        return os.environ["DCC_CONFIG"]
    return "config.json" if Path("config.json").is_file() else None


# --- the zones JSON of the original: {"zone": [{"type", "name", "ttl", "target"}, ...]} --------


class ZonesJsonRecord(msgspec.Struct, frozen=True, gc=False):
    """One record as the zones JSON spells it (an object); only lives while its zone is converted."""

    type: str
    name: str
    target: str = ""
    ttl: int | None = None


ZonesJson = dict[str, list[ZoneRecord]]
_KEPT: dict[str, RecordType] = {kind: kind for kind in RECORD_TYPES}
_PLACE = re.compile(r" - at `\$")


def _in_zone(message: str) -> str:
    """A zone's decoding error placed in the whole file: ``at `$[0].ttl``` → ``at `$[...][0].ttl```."""
    placed = _PLACE.sub(" - at `$[...]", message, count=1)
    return placed if placed != message else f"{message} - at `$[...]`"


def load_zones_json(path: str | Path, limit: int = MAX_ZONES_JSON_BYTES) -> ZonesJson:
    """Read the original's zones JSON (at most ``limit`` bytes) straight into wire records.

    Unknown record types are dropped here, as the original ignored them; a name longer than any
    DNS name can be spelt is cut to a prefix that is still too long (``bounded_name``), so the
    resolver rejects it as ``INVALID_RECORD`` without it ever costing more than a kilobyte.
    Decoding goes zone by zone, each zone's decoded objects dropped as soon as its records are
    made, and the file's bytes as soon as it is split into zones. Raises ConfigError.
    """
    data = read_capped(path, limit, "a zones JSON", first=b"{")
    try:
        raw = msgspec.json.decode(data, type=dict[str, msgspec.Raw])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _problem(path, exc) from None
    del data  # each Raw keeps the bytes it needs
    decoder = msgspec.json.Decoder(list[ZonesJsonRecord])
    ttls: dict[int, int] = {}  # one int object per distinct TTL, not one per record
    zones: ZonesJson = {}
    for zone in list(raw):
        try:
            decoded = decoder.decode(raw.pop(zone))
        except msgspec.ValidationError as exc:
            raise _problem(path, _in_zone(str(exc))) from None
        zones[zone] = [
            ZoneRecord(
                _KEPT[r.type],
                bounded_name(r.name),
                bounded_name(r.target),
                None if r.ttl is None else ttls.setdefault(r.ttl, r.ttl),
            )
            for r in decoded
            if r.type in _KEPT
        ]
        del decoded
    return zones
