"""The full scan's parts that are not SSLyze's handshakes: what its connectivity test would learn,
taken from the engine's own handshake, and the chains its CERTIFICATE_INFO jobs received.

SSLyze's connectivity test makes two connections (TLS 1.3, then a check for ECDH that
CERTIFICATE_INFO never reads) to learn the highest TLS version and one cipher suite; its
CERTIFICATE_INFO analysis judges every chain (and the no-SNI one, which no finding reports) against
every trust store, twice per endpoint. The engine's one handshake (``handshake``), which is the
reachability test anyway, already knows the version and suite when it negotiated TLS 1.3, and its
chain is what CERTIFICATE_INFO's first job (TLS 1.3, SNI, OCSP requested) would receive. So a full
scan of a TLS 1.3 server is that handshake plus CERTIFICATE_INFO's other three (TLS 1.2 RSA-only,
TLS 1.2 non-RSA, no SNI): 4 connections instead of 7, and each distinct chain is judged by the
engine's ``ChainJudge`` (cached by chain), as the fast path judges it. A server that negotiated
less than TLS 1.3 or asked for a client certificate gets SSLyze's own connectivity test, which
tells the version, the suite and whether a client certificate is optional or required.
"""

from __future__ import annotations

from collections.abc import Sequence

from nassl._nassl import OpenSSLError
from sslyze.errors import TlsHandshakeFailed
from sslyze.plugins.plugin_base import ScanJobResult
from sslyze.server_connectivity import ClientAuthRequirementEnum, ServerTlsProbingResult, TlsVersionEnum

from services.scanner.handshake import Served


def probing_from(served: Served) -> ServerTlsProbingResult | None:
    """What SSLyze's connectivity test would find, when the handshake tells it: TLS 1.3 negotiated
    (OpenSSL names only TLS 1.3 suites ``TLS_*``) and no client certificate asked for; else None."""
    if not served.cipher.startswith("TLS_") or served.asked_for_client_certificate:
        return None
    return ServerTlsProbingResult(
        highest_tls_version_supported=TlsVersionEnum.TLS_1_3,
        cipher_suite_supported=served.cipher,
        client_auth_requirement=ClientAuthRequirementEnum.DISABLED,
        # OpenSSL 1.1.1 offers only elliptic-curve groups by default: the handshake was ECDHE
        supports_ecdh_key_exchange=True,
    )


def first_job_result(served: Served) -> ScanJobResult:
    """The handshake as CERTIFICATE_INFO's first job (TLS 1.3, SNI) would have returned it (the CA
    file it also carries is only for SSLyze's analysis, which ``sni_chains`` replaces)."""
    return ScanJobResult(_return_value=(list(served.chain_pem), served.ocsp, None, True), _exception=None)


def sni_chains(results: Sequence[ScanJobResult]) -> list[Served]:
    """The distinct chains CERTIFICATE_INFO's jobs received with SNI (by leaf, in the order first
    seen, the last one received for a leaf kept), with SSLyze's own rules for failed jobs
    (``CertificateInfoImplementation.result_for_completed_scan_jobs``): a handshake that failed, a
    name the server does not know without SNI, or no certificate at all (anonymous suites) is a job
    without a chain; when every job failed and some certificate was sent, the first failure is raised
    (a ``ConnectionToServerFailed``); anything else a job raised is raised. The no-SNI chain only
    counts as a job that succeeded: no finding reports it."""
    chains: dict[str, Served] = {}
    failures: list[Exception] = []
    anonymous = False
    for result in results:
        try:
            chain, ocsp, _, with_sni = result.get_result()
        except TlsHandshakeFailed as exc:
            failures.append(exc)
            continue
        except OpenSSLError as exc:
            if "unrecognized name" not in exc.args[0]:
                raise
            failures.append(exc)
            continue
        except ValueError as exc:
            if "peer did not present a certificate" not in exc.args[0]:
                raise
            anonymous = True
            failures.append(exc)
            continue
        if with_sni:
            chains[chain[0]] = Served(tuple(chain), ocsp)
    if len(failures) == len(results) and not anonymous:
        raise failures[0]
    if not chains and not anonymous:
        # SSLyze's "Should never happen": the SNI jobs failed, the no-SNI one worked
        raise ValueError("no handshake with SNI received a certificate chain")
    return list(chains.values())
