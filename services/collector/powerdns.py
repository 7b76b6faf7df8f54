"""The PowerDNS Authoritative HTTP API: which zones a server has, and each zone's records.

``GET {api_url}/api/v1/servers/{server_id}/zones`` lists the zones (with their SOA serials, so
``--skip-unchanged`` needs no extra query); ``GET …/zones/{zone_id}`` gives one zone's rrsets,
of which A, AAAA and CNAME are kept, as from AXFR (disabled records are not served, so not kept).

Every request carries the key in ``X-API-Key`` and nowhere else: it is never logged, never in
an exception or a finding (a refused key is "PowerDNS API … refused the key"). Requests are
bounded (``timeout`` per connect and per wait for data, ``REQUEST_LIFETIME`` in all, bodies at
most ``MAX_BODY_BYTES``), never follow a redirect (it would carry the key elsewhere), never use
a proxy or the system resolver: an ``api_url`` host name is resolved through ``lookup_nameservers``
(the system resolver only with ``use_system_resolver``), and the request goes to that address
with the name as ``Host`` (and as SNI over https). Timeouts, resets and 5xx
answers are tried again (tenacity, ``retries`` times); a 4xx is not.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.nameserver
import dns.resolver
import httpx
import msgspec
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from services.collector.axfr import ZoneTransferError
from shared import findings
from shared.config import ConfigError, PowerDnsSource, api_url_host_name, one_line, shorten
from shared.messages import RECORD_TYPES, LocatedFinding, RecordType, ZoneRecord, ZoneSnapshot, normalise_zone

log = logging.getLogger("dcc.collector.powerdns")

MAX_BODY_BYTES = 256 * 2**20  # one zone's JSON (about a million records) or the zone list
REQUEST_LIFETIME = 300.0  # seconds for one request and its body, however slowly it drips
CATALOG_KINDS = frozenset({"producer", "consumer"})  # PowerDNS's own catalog zones: not content
_KEPT: dict[str, RecordType] = {kind: kind for kind in RECORD_TYPES}


class _ListedZone(msgspec.Struct, frozen=True):
    id: str
    name: str
    kind: str = ""
    serial: int | None = None


class _Record(msgspec.Struct, frozen=True):
    content: str
    disabled: bool = False


class _RRset(msgspec.Struct, frozen=True):
    name: str
    type: str
    ttl: int | None = None
    records: list[_Record] = []


class _Zone(msgspec.Struct, frozen=True):
    name: str = ""
    serial: int | None = None
    rrsets: list[_RRset] = []


_list_decoder = msgspec.json.Decoder(list[_ListedZone])
_zone_decoder = msgspec.json.Decoder(_Zone)


@dataclass(frozen=True)
class ListedZone:
    """One zone as the server lists it: ``zone_id`` names it in the API, ``zone`` is its name."""

    zone_id: str
    zone: str
    serial: int | None
    kind: str


class _Transient(Exception):
    """Worth another try: a timeout, a reset, a 5xx."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # "timeout" | "network" | "server"
        self.detail = detail


@dataclass(frozen=True)
class Api:
    """Where a PowerDNS source's API is; the key is read when a request is made, never kept here."""

    source: PowerDnsSource
    nameservers: tuple[tuple[str, int], ...] = ()  # where a host name in api_url is resolved
    system_resolver: bool = False  # without nameservers: may the system resolver be asked?

    @property
    def base(self) -> str:
        return self.source.api_url.strip().rstrip("/")

    @property
    def label(self) -> str:
        """``powerdns:http://127.0.0.1:8081/localhost`` (logs and serial keys)."""
        return f"powerdns:{self.base}/{self.source.server_id}"

    def location(self) -> tuple[str, int | None]:
        """The API's (ip, port), where its findings are placed."""
        url = httpx.URL(self.base)
        port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
        return url.host, port

    def zones_url(self) -> str:
        return f"{self.base}/api/v1/servers/{urllib.parse.quote(self.source.server_id, safe='')}/zones"

    def zone_url(self, zone_id: str) -> str:
        return f"{self.zones_url()}/{urllib.parse.quote(zone_id, safe='.=-_~')}"


def list_zones(api: Api) -> list[ListedZone]:
    """Every zone of the server (PowerDNS's catalog zones left out). Raises ``ZoneTransferError``."""
    body = _get(api, api.zones_url(), "the zone list")
    try:
        listed = _list_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _unexpected(api, "the zone list", exc) from None
    zones = [ListedZone(z.id, normalise_zone(z.name), z.serial, z.kind) for z in listed]
    return [z for z in zones if z.zone and z.kind.lower() not in CATALOG_KINDS]


def zone_records(api: Api, zone_id: str, zone: str) -> tuple[list[ZoneRecord], int | None]:
    """The zone's A/AAAA/CNAME records (names relative to the zone, as from AXFR) and its serial."""
    body = _get(api, api.zone_url(zone_id), f"zone {zone}")
    try:
        data = _zone_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _unexpected(api, f"zone {zone}", exc) from None
    records: list[ZoneRecord] = []
    for rrset in data.rrsets:
        kind = _KEPT.get(rrset.type.upper())
        if kind is None:
            continue
        owner = relative(rrset.name, zone)
        for record in rrset.records:
            if record.disabled:
                continue
            target = relative(record.content, zone) if kind == "CNAME" else record.content
            records.append(ZoneRecord(kind, owner, target, rrset.ttl))
    return records, data.serial


def snapshot(api: Api, zone_id: str, zone: str, run_id: str) -> ZoneSnapshot:
    """One zone as a snapshot; a failure becomes the snapshot's finding."""
    try:
        records, serial = zone_records(api, zone_id, zone)
    except ZoneTransferError as exc:
        return ZoneSnapshot(run_id=run_id, zone=zone, failure=failure_finding(api, zone, exc))
    return ZoneSnapshot(run_id=run_id, zone=zone, records=records, serial=serial)


def failure_finding(api: Api, fqdn: str, exc: ZoneTransferError) -> LocatedFinding:
    ip, port = api.location()
    return LocatedFinding(ip_address=ip, port=port, fqdn=fqdn, finding=findings.error(exc.code, exc.message))


def relative(name: str, zone: str) -> str:
    """``www.example.com.`` in ``example.com`` → ``www``; the apex → ``@``; others stay absolute."""
    if not name.endswith(".") or name.endswith("\\."):
        return name
    bare = name[:-1]
    folded = bare.lower()
    if folded == zone:
        return "@"
    if zone and folded.endswith("." + zone):
        return bare[: -len(zone) - 1]
    return name


# --- requests -----------------------------------------------------------------------------------


def _get(api: Api, url: str, what: str) -> bytes:
    """The body of one GET, retried when that can help; ``ZoneTransferError`` otherwise."""
    try:
        key = api.source.api_key()
    except ConfigError as exc:
        raise ZoneTransferError(findings.Code.ZONE_TRANSFER_FAILED, str(exc)) from None
    source = api.source
    attempts = 0
    started = time.monotonic()

    def attempt() -> bytes:
        nonlocal attempts
        attempts += 1
        return _attempt(api, url, key, what)

    retrying = Retrying(
        stop=stop_after_attempt(source.retries + 1),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        retry=retry_if_exception_type(_Transient),
        before_sleep=lambda state: log.info(
            "%s from %s: attempt %d failed (%s), retrying",
            what,
            api.base,
            state.attempt_number,
            state.outcome.exception() if state.outcome else "?",
        ),
        reraise=True,
    )
    try:
        return retrying(attempt)
    except _Transient as exc:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}, {time.monotonic() - started:.1f} s"
        if exc.kind == "timeout":
            raise ZoneTransferError(
                findings.Code.ZONE_TRANSFER_TIMEOUT,
                f"PowerDNS API at {api.base}: {what} {exc.detail} (timeout {source.timeout:g} s; {tries})",
            ) from None
        raise ZoneTransferError(
            findings.Code.ZONE_TRANSFER_FAILED, f"PowerDNS API at {api.base}: {what}: {exc.detail} ({tries})"
        ) from None


def _attempt(api: Api, url: str, key: str, what: str) -> bytes:
    deadline = time.monotonic() + REQUEST_LIFETIME
    url, routing, extensions = _by_address(api, url)
    headers = {"X-API-Key": key, "Accept": "application/json", **routing}
    try:
        with (
            httpx.Client(timeout=api.source.timeout, trust_env=False, follow_redirects=False) as client,
            client.stream("GET", url, headers=headers, extensions=extensions) as response,
        ):
            _check_status(api, response, what)
            return _body(response.iter_bytes(), deadline, api, what)
    except httpx.TimeoutException:
        raise _Transient("timeout", "did not answer in time") from None
    except httpx.ConnectError as exc:
        refused = "refused" in str(exc).lower()
        raise _Transient("network", "nothing listens there" if refused else _reason(exc)) from None
    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise _Transient("network", f"the connection failed ({_reason(exc)})") from None
    except httpx.HTTPError as exc:
        raise ZoneTransferError(
            findings.Code.ZONE_TRANSFER_FAILED, f"PowerDNS API at {api.base}: {what}: {_reason(exc)}"
        ) from None


def _by_address(api: Api, url: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``url`` with its host name (if it has one) replaced by the address it resolves to, the
    ``Host`` header naming it, and the name as SNI over https: httpx would ask the system resolver."""
    name = api_url_host_name(api.base)
    if name is None:
        return url, {}, {}
    parsed = httpx.URL(url)
    address = _resolve(api, name)
    extensions: dict[str, Any] = {"sni_hostname": name} if parsed.scheme == "https" else {}
    return str(parsed.copy_with(host=address)), {"Host": parsed.netloc.decode("ascii")}, extensions


def _resolve(api: Api, name: str) -> str:
    """The first address of ``name`` (A, then AAAA) from the config's nameservers."""
    resolver = dns.resolver.Resolver(configure=not api.nameservers and api.system_resolver)
    if api.nameservers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in api.nameservers]
    resolver.lifetime = api.source.timeout
    for rdtype in ("A", "AAAA"):
        try:
            return str(resolver.resolve(name, rdtype, search=False)[0])
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.Timeout:
            raise _Transient("timeout", f"resolving {name} timed out") from None
        except dns.exception.DNSException as exc:
            raise _Transient("network", f"cannot resolve {name} ({_reason(exc)})") from None
    raise ZoneTransferError(findings.Code.ZONE_TRANSFER_FAILED, f"PowerDNS API at {api.base}: {name} has no address")


def _check_status(api: Api, response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if status in (401, 403):
        source = api.source
        named = f"api_key_env {source.api_key_env}" if source.api_key_env else f"api_key_file {source.api_key_file}"
        raise ZoneTransferError(
            findings.Code.ZONE_TRANSFER_REFUSED,
            f"PowerDNS API at {api.base} refused the key (HTTP {status}) for {what}: check {named}",
        )
    if status >= 500:
        raise _Transient("server", f"the server answered HTTP {status}")
    if 300 <= status < 400:
        raise ZoneTransferError(
            findings.Code.ZONE_TRANSFER_FAILED,
            f"PowerDNS API at {api.base} answered a redirect (HTTP {status}) for {what}: "
            "give api_url where the API itself answers (redirects are not followed: they would carry the key)",
        )
    detail = _error_text(response)
    if status == 404:
        raise ZoneTransferError(
            findings.Code.ZONE_TRANSFER_FAILED,
            f"PowerDNS API at {api.base}: {what} not found (HTTP 404{detail}; server_id {api.source.server_id!r})",
        )
    raise ZoneTransferError(
        findings.Code.ZONE_TRANSFER_FAILED, f"PowerDNS API at {api.base} answered HTTP {status} for {what}{detail}"
    )


def _error_text(response: httpx.Response) -> str:
    """``: <the API's error>`` from a small error body, or nothing."""
    try:
        raw = _body(response.iter_bytes(), time.monotonic() + 5, None, "", limit=4096)
        error = msgspec.json.decode(raw, type=dict[str, object]).get("error")
    except (ZoneTransferError, _Transient, httpx.HTTPError, msgspec.DecodeError, msgspec.ValidationError):
        return ""
    return f": {one_line(shorten(error, 200))}" if isinstance(error, str) and error else ""


def _body(chunks: Iterator[bytes], deadline: float, api: Api | None, what: str, limit: int = MAX_BODY_BYTES) -> bytes:
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            where = api.base if api is not None else "the API"
            raise ZoneTransferError(
                findings.Code.ZONE_TRANSFER_FAILED,
                f"PowerDNS API at {where}: {what} is larger than {limit // 2**20} MiB",
            )
        if time.monotonic() > deadline:
            raise _Transient("timeout", f"did not finish within {REQUEST_LIFETIME:g} s")
        parts.append(chunk)
    return b"".join(parts)


def _unexpected(api: Api, what: str, exc: Exception) -> ZoneTransferError:
    return ZoneTransferError(
        findings.Code.ZONE_TRANSFER_FAILED,
        f"PowerDNS API at {api.base}: {what} is not what the API answers ({one_line(shorten(str(exc), 120))})",
    )


def _reason(exc: Exception) -> str:
    return one_line(shorten(str(exc) or type(exc).__name__, 120))
