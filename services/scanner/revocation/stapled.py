"""The stapled OCSP response: what the response the server sent in its handshake says about the leaf,
as SSLyze parsed it and judged its trust. Pure (no network, no state): a revoked verdict that
verifies is an error, a must-staple leaf without a staple is an error, and a staple clients cannot
use (unsuccessful, for another certificate, out of date, untrusted) is a warning.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509 import ocsp

from services.scanner.revocation.messages import revoked_at, status_name
from services.scanner.revocation.verify import timing_problem
from shared import findings
from shared.messages import Finding

__all__ = ["stapled_findings"]


def stapled_findings(
    leaf: x509.Certificate,
    must_staple: bool,
    response: ocsp.OCSPResponse | None,
    response_trusted: bool | None,
) -> list[Finding]:
    """What the stapled OCSP response says about ``leaf``: CERT_REVOKED when it says revoked (and
    verifies), MUST_STAPLE_MISSING when a must-staple leaf came without one, OCSP_STAPLE_UNVERIFIED
    when it is unsuccessful, for another certificate, out of date or not trusted; [] when it is good.

    ``must_staple``, ``response`` and ``response_trusted`` are SSLyze's (``CertificateDeploymentAnalysisResult``):
    ``response_trusted`` is None when no trust store validated the chain, so none could check the staple.
    """
    if response is None:
        if not must_staple:
            return []
        return [
            findings.error(
                findings.Code.MUST_STAPLE_MISSING,
                "the certificate requires OCSP stapling (must-staple) but the server sent no OCSP response:"
                " clients that enforce must-staple refuse the connection; enable OCSP stapling on the server",
            )
        ]
    finding = _staple_verdict(leaf, response, response_trusted, datetime.now(UTC))
    if finding is None:
        return []
    if must_staple and finding.status == "warning":
        # a staple clients cannot use is, to a must-staple client, no staple at all
        finding = findings.warning(
            findings.Code(finding.code), f"{finding.message}; clients that enforce must-staple refuse the connection"
        )
    return [finding]


def _staple_verdict(
    leaf: x509.Certificate, response: ocsp.OCSPResponse, trusted: bool | None, now: datetime
) -> Finding | None:
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return _unverified(
            f"is unsuccessful ({status_name(response.response_status)}) and says nothing about the certificate:"
            " the server staples an error its CA's responder returned"
        )
    single = next((s for s in response.responses if s.serial_number == leaf.serial_number), None)
    if single is None:
        others = ", ".join(_serial(s.serial_number) for s in response.responses) or "none"
        return _unverified(
            f"is for another certificate (serial {others}, not the certificate's {_serial(leaf.serial_number)}):"
            " the server staples a response it fetched for a previous certificate"
        )
    if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
        revoked = revoked_at(single.revocation_time_utc, single.revocation_reason)
        if trusted:
            return findings.error(
                findings.Code.CERT_REVOKED,
                f"the stapled OCSP response says the certificate was revoked {revoked}: replace the certificate",
            )
        # an unverifiable "revoked" is worth a look, not an error: nobody can tell who signed it
        return _unverified(f"says the certificate was revoked {revoked}, but {_why_untrusted(trusted)}")
    if trusted is None:
        return _unverified(f"cannot be checked: {_why_untrusted(trusted)}")
    if not trusted:
        return _unverified(f"is not trusted: {_why_untrusted(trusted)}")
    timing = timing_problem(single.this_update_utc, single.next_update_utc, now)
    if timing is not None:
        return _unverified(f"{timing}: the server is not refreshing its staple")
    if single.certificate_status is ocsp.OCSPCertStatus.UNKNOWN:
        return _unverified("says the responder does not know the certificate (status unknown)")
    return None


def _why_untrusted(trusted: bool | None) -> str:
    if trusted is None:
        return "no trust store validated the certificate chain, so none could verify the response's signature"
    return "its signature does not verify with the trust store that validated the chain"


def _unverified(what: str) -> Finding:
    return findings.warning(findings.Code.OCSP_STAPLE_UNVERIFIED, f"the stapled OCSP response {what}")


def _serial(number: int) -> str:
    return f"0x{number:X}"
