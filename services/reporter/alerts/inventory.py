"""What each endpoint served at its last handshake: the expiry metric and ``report --by certificate``.

An endpoint keeps its last known certificate while it is unreachable (a dead host is not a
renewed certificate), and is dropped only once a run covered it and it is gone from the DNS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from sys import intern

import msgspec

from services.reporter.alerts.events import Coverage
from services.reporter.alerts.problems import Endpoint
from services.reporter.report import RunReport


class Served(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    ip_address: str
    port: int
    fqdn: str
    zone: str
    segment: str
    sha256: str
    subject: str
    issuer: str
    not_after: float  # UNIX seconds

    @property
    def endpoint(self) -> Endpoint:
        return (self.ip_address, self.port, self.fqdn)


@dataclass(frozen=True)
class InventoryChange:
    served: dict[Endpoint, Served]  # after the run
    upserts: list[Served]
    removed: list[Endpoint]


def update_inventory(current: Mapping[Endpoint, Served], report: RunReport, coverage: Coverage) -> InventoryChange:
    served = dict(current)
    upserts: list[Served] = []
    for result in report.results:
        cert = result.certificate
        if cert is None:
            continue  # unreachable this time: keep what it served before
        record = Served(
            ip_address=result.ip_address,
            port=result.port,
            fqdn=result.fqdn,
            zone=intern(result.zone),
            segment=intern(result.segment),
            sha256=cert.sha256,
            subject=cert.subject,
            issuer=intern(cert.issuer),  # few issuers, 100k endpoints
            not_after=cert.not_after.timestamp(),
        )
        if served.get(record.endpoint) != record:
            served[record.endpoint] = record
            upserts.append(record)
    removed = [
        endpoint
        for endpoint, record in current.items()
        if endpoint not in coverage.scanned and coverage.covers_endpoint(record.zone, endpoint)
    ]
    for endpoint in removed:
        del served[endpoint]
    return InventoryChange(served=served, upserts=upserts, removed=removed)
