"""``BACKENDS_DISAGREE``: the addresses of one name serve different leaf certificates.

A name with several addresses (load-balancer backends, anycast) is scanned once per address, each
result on its own, possibly by different scanners on different segments. Only the reporter sees
all of a run's results, so it compares them here: per (fqdn, port), the leaf fingerprints of the
results that carry certificate facts. More than one fingerprint is one warning about the name (a
row with no address), e.g. ``2 of 3 backends of www.example.com:443 serve a certificate expiring
2026-12-05 (127.0.0.1, 127.0.0.2); 1 serves one expiring 2027-11-30 (127.0.0.3)``.

Results without facts (the connection failed) are not backends that disagree: they have their
own findings and are left out of the count. Pure and deterministic (whatever order the results
came in), and linear in the number of results: one pass groups them by name, and only the names
with more than one address are looked at again.
"""

from __future__ import annotations

import heapq
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from services.reporter.report import Row
from shared import findings
from shared.messages import CertificateFacts, ScanResult

LISTED = 5  # addresses named per group; the rest are "and N more"
SHORT_FINGERPRINT = 8  # hex digits shown when two groups expire the same day

_Name = tuple[str, int]  # fqdn, port


class _Backends:
    """The results with facts of one (fqdn, port): the leaf each address served."""

    __slots__ = ("zones", "served")

    def __init__(self) -> None:
        self.zones: set[str] = set()
        self.served: dict[str, CertificateFacts] = {}  # address → leaf facts


class _Group:
    """The addresses that serve one leaf."""

    __slots__ = ("fingerprint", "facts", "addresses")

    def __init__(self, fingerprint: str, facts: CertificateFacts) -> None:
        self.fingerprint = fingerprint
        self.facts = facts
        self.addresses: list[str] = []


def disagreements(results: Iterable[ScanResult], zone_order: Mapping[str, int] | None = None) -> list[Row]:
    """One ``BACKENDS_DISAGREE`` row per (fqdn, port) whose backends serve more than one leaf.

    ``zone_order`` (zone → position in the run) picks the row's zone when one name is in several
    zones of the run: the first in the run, else the first by name. Rows come sorted by zone, name
    and port.
    """
    order = zone_order or {}
    first: dict[_Name, ScanResult] = {}  # most names have one address: nothing more is kept for them
    several: dict[_Name, list[ScanResult]] = {}
    for result in results:
        facts = result.certificate
        if facts is None or not facts.sha256:
            continue
        name = (result.fqdn, result.port)
        seen = first.setdefault(name, result)
        if seen is not result:
            others = several.get(name)
            if others is None:
                several[name] = [seen, result]
            else:
                others.append(result)

    def zone_key(zone: str) -> tuple[int, str]:
        return (order.get(zone, len(order)), zone)

    rows: list[Row] = []
    for (fqdn, port), named in several.items():
        if _alike(named):
            continue  # the usual case, decided without building anything
        backends = _backends(named)
        if len(backends.served) < 2:
            continue
        groups = _groups(backends.served)
        if len(groups) < 2:
            continue
        zone = min(backends.zones, key=zone_key)
        message = _describe(fqdn, port, groups, len(backends.served))
        rows.append(Row(zone, "", port, fqdn, findings.warning(findings.Code.BACKENDS_DISAGREE, message)))
    rows.sort(key=lambda r: (zone_key(r.zone), r.fqdn, r.port or 0))
    return rows


def _alike(results: list[ScanResult]) -> bool:
    """Whether every result served one leaf, its fingerprint spelt one way (the usual case)."""
    fingerprints = {result.certificate.sha256 for result in results if result.certificate is not None}
    return len(fingerprints) == 1


def _backends(results: list[ScanResult]) -> _Backends:
    backends = _Backends()
    for result in results:
        facts = result.certificate
        assert facts is not None  # only results with facts are compared
        backends.zones.add(result.zone)
        known = backends.served.get(result.ip_address)
        # One address of a name has one job (and so one result): should it ever come twice, the
        # smaller fingerprint stands, so the outcome does not depend on arrival order.
        if known is None or _fingerprint(facts) < _fingerprint(known):
            backends.served[result.ip_address] = facts
    return backends


def _groups(served: Mapping[str, CertificateFacts]) -> list[_Group]:
    """The addresses by the leaf they serve: the largest group first, then the later expiry."""
    by_fingerprint: dict[str, _Group] = {}
    for address, facts in served.items():
        fingerprint = _fingerprint(facts)
        group = by_fingerprint.get(fingerprint)
        if group is None:
            group = by_fingerprint[fingerprint] = _Group(fingerprint, facts)
        group.addresses.append(address)
    return sorted(
        by_fingerprint.values(),
        key=lambda g: (-len(g.addresses), -_utc(g.facts.not_after).timestamp(), g.fingerprint),
    )


def _describe(fqdn: str, port: int, groups: list[_Group], total: int) -> str:
    """The message: each group's size, its leaf's expiry date and its first few addresses."""
    dates = [_utc(g.facts.not_after).date().isoformat() for g in groups]
    labels = _short_fingerprints(groups, dates)
    parts: list[str] = []
    for i, (group, date) in enumerate(zip(groups, dates, strict=True)):
        count = len(group.addresses)
        verb = "serves" if count == 1 else "serve"
        label = f", sha256 {labels[i]}…" if i in labels else ""
        what = f"expiring {date}{label} ({_addresses(group.addresses)})"
        if i == 0:
            parts.append(f"{count} of {total} backends of {fqdn}:{port} {verb} a certificate {what}")
        else:
            parts.append(f"{count} {verb} one {what}")
    return "; ".join(parts)


def _short_fingerprints(groups: list[_Group], dates: list[str]) -> dict[int, str]:
    """For the groups that share an expiry date with another: a fingerprint prefix that tells them apart."""
    same_day: dict[str, list[int]] = {}
    for i, date in enumerate(dates):
        same_day.setdefault(date, []).append(i)
    labels: dict[int, str] = {}
    for members in same_day.values():
        if len(members) < 2:
            continue
        width = SHORT_FINGERPRINT
        while width < 64 and len({groups[i].fingerprint[:width] for i in members}) < len(members):
            width += 8
        labels.update((i, groups[i].fingerprint[:width]) for i in members)
    return labels


def _addresses(addresses: list[str]) -> str:
    """``a, b, c`` in address order (IPv4 first); past ``LISTED`` of them, ``a, b, c, d, e and N more``."""
    if len(addresses) <= LISTED:
        return ", ".join(sorted(addresses, key=_address_order))
    shown = heapq.nsmallest(LISTED, addresses, key=_address_order)  # no full sort of a huge group
    return f"{', '.join(shown)} and {len(addresses) - LISTED} more"


def _address_order(address: str) -> tuple[int, bytes, str]:
    """IPv4 before IPv6, each in numeric order (packed bytes compare as the numbers do)."""
    for version, family in ((4, socket.AF_INET), (6, socket.AF_INET6)):
        try:
            return (version, socket.inet_pton(family, address), address)
        except OSError:
            continue
    return (9, b"", address)  # not a plain address (the resolver sends none): after every address


def _fingerprint(facts: CertificateFacts) -> str:
    """Lower-case hex without separators (``AB:CD`` and ``abcd`` are one fingerprint)."""
    return facts.sha256.replace(":", "").lower()


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
