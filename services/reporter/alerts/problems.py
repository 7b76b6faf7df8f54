"""A problem: a finding with a stable key, and what is known about it across runs.

The key is (ip, port, fqdn, code, detail). ``detail`` separates several rows of one code about
one place: the trust store of ``<Store> - <message>`` rows, the certificate subject of expiry
warnings (one per certificate of the chain). The message is not part of the key, so a message
that changes is a ``changed`` event, not a new problem.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from sys import intern

import msgspec

from services.reporter.report import Row
from shared import findings
from shared.messages import CertificateFacts, Status

Key = tuple[str, int | None, str, str, str]  # ip, port, fqdn, code, detail
Endpoint = tuple[str, int, str]  # ip, port, fqdn


class Problem(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An open problem. Times are UNIX seconds (the injected clock)."""

    id: str
    ip_address: str
    port: int | None
    fqdn: str
    code: str
    detail: str
    zone: str
    segment: str
    severity: Status
    message: str
    certificate: CertificateFacts | None
    first_seen: float
    last_seen: float
    last_notified: float
    run_id: str  # the last run that saw it

    @property
    def sha256(self) -> str | None:
        return self.certificate.sha256 if self.certificate else None

    def endpoint(self) -> str:
        """Empty for problems about a name or a zone."""
        return endpoint_text(self.ip_address, self.port)


def endpoint_text(ip_address: str, port: int | None) -> str:
    """``ip:port`` (``[v6]:port``); empty without an address."""
    if not ip_address:
        return ""
    host = f"[{ip_address}]" if ":" in ip_address else ip_address
    return host if port is None else f"{host}:{port}"


def problem_id(key: Key) -> str:
    """Stable across runs and processes: names the problem in webhooks and in the state."""
    ip, port, fqdn, code, detail = key
    text = "\0".join((ip, "" if port is None else str(port), fqdn, code, detail))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# Codes whose rows name one certificate each (``certificate "<subject>" …``): an endpoint may have
# several, told apart by the subject, which stays when the date or key in the message changes.
_PER_CERTIFICATE = frozenset(
    {
        findings.Code.CERT_EXPIRING,
        findings.Code.CERT_EXPIRING_CRITICAL,
        findings.Code.WEAK_SIGNATURE,
        findings.Code.WEAK_KEY,
        findings.Code.VALIDITY_TOO_LONG,
    }
)


def detail_of(code: str, message: str) -> str:
    if code == findings.Code.TRUST_STORE_DISAGREEMENT:
        return message.partition(" - ")[0]
    if code in _PER_CERTIFICATE and message.startswith('certificate "'):
        return message[len('certificate "') :].rpartition('" ')[0]
    if code == findings.Code.CA_NOT_STRICT:
        return message.partition(";")[0]  # the certificate and the rule it breaks
    return ""


@functools.lru_cache(maxsize=256)  # called per row; codes are few
def category(code: str) -> findings.Category | None:
    return findings.category(code)


def is_alertable(code: str) -> bool:
    """Run-level rows (``RUN_INCOMPLETE``) describe the run, not a place: they are not problems."""
    return category(code) is not findings.Category.RUN


def problems_of(rows: Iterable[Row], run_id: str, now: float) -> dict[str, Problem]:
    """The problems a run found, keyed by id, as if first seen now.

    Two rows with one key (e.g. two served chains with different wording for one code) keep
    apart by their message, so neither is lost.
    """
    found: dict[str, Problem] = {}
    for row in rows:
        code = row.finding.code
        if not is_alertable(code):
            continue
        key: Key = (row.ip_address, row.port, row.fqdn, code, detail_of(code, row.finding.message))
        pid = problem_id(key)
        if pid in found:
            if found[pid].message == row.finding.message:
                continue
            key = (*key[:4], row.finding.message)
            pid = problem_id(key)
        found[pid] = Problem(
            id=pid,
            ip_address=row.ip_address,
            port=row.port,
            fqdn=row.fqdn,
            code=intern(code),
            detail=intern(key[4]),
            zone=intern(row.zone),
            segment=intern(row.segment),
            severity=row.finding.status,
            message=row.finding.message,
            certificate=row.certificate,
            first_seen=now,
            last_seen=now,
            last_notified=now,
            run_id=intern(run_id),
        )
    return found
