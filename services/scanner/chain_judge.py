"""Judging a served chain once: trust per store, order and the stapled response, cached by chain.

Many endpoints share a chain (a wildcard on many names, backends of one name, one certificate on
many services), and what a chain's verdicts are does not depend on the name it was served for:
the name is matched per endpoint (``analysis.hostname_matches``), and so is expiry. So the
expensive part (SSLyze's deployment analysis against every trust store, and OpenSSL's verdict per
store, ~1 ms) is done once per (chain, stapled response) and reused for a short while: a
verdict can change with time alone (a certificate expires), so entries live ``MAX_AGE`` seconds.

The analysis is SSLyze's own (``CertificateDeploymentAnalyzer``, the one CERTIFICATE_INFO uses),
run offline on what one handshake received, so the fast path and the full scan judge a chain by
the same code (``chains.deployment_from``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.oid import ExtensionOID
from nassl._nassl import OCSP_RESPONSE
from sslyze.plugins.certificate_info._cert_chain_analyzer import (
    CertificateDeploymentAnalysisResult,
    CertificateDeploymentAnalyzer,
)
from sslyze.plugins.certificate_info.trust_stores.trust_store import TrustStore
from sslyze.plugins.certificate_info.trust_stores.trust_store_repository import TrustStoresRepository

from services.scanner.analysis import CheckPolicy, Deployment, certificate_facts, chain_verdict, hostname_matches
from services.scanner.chains import CUSTOM_STORE_NAME, deployment_from
from shared.messages import CertificateFacts

MAX_AGE = 60.0  # seconds a verdict is reused: a chain may expire, a staple be refreshed
MAX_ENTRIES = 10_000  # distinct chains remembered (a few KB each)

_Key = tuple[bytes, ...]


@dataclass(frozen=True)
class Judged:
    """A chain as served for one name: its deployment (verdict included) and the facts it carries."""

    deployment: Deployment
    facts: CertificateFacts | None


class ChainJudge:
    """Thread-safe: many scan threads judge at once; a chain seen first by two threads is judged twice
    at worst (no lock is held while judging)."""

    def __init__(
        self,
        custom_ca_file: Path | None,
        policy: CheckPolicy,
        max_age: float = MAX_AGE,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._custom_ca_file = custom_ca_file
        self._policy = policy
        stores = TrustStoresRepository.get_default().get_all_stores()
        self._custom_store: TrustStore | None = None
        if custom_ca_file is not None:
            self._custom_store = TrustStore(custom_ca_file, CUSTOM_STORE_NAME, "N/A")  # CERTIFICATE_INFO's name
            stores.append(self._custom_store)
        self._stores = stores
        self._max_age = max_age
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._cache: OrderedDict[_Key, tuple[float, Judged]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def judge(self, chain_pem: Sequence[str], ocsp: OCSP_RESPONSE | None, sni: str) -> Judged:
        """The chain as served for ``sni``: its (cached) verdicts and facts, the name matched for ``sni``."""
        key = _key(chain_pem, ocsp)
        now = time.monotonic()
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and now - entry[0] < self._max_age:
                self._cache.move_to_end(key)
                self.hits += 1
                cached = entry[1]
            else:
                cached = None
        if cached is None:
            cached = self._analyse(chain_pem, ocsp)
            with self._lock:
                self.misses += 1
                self._cache[key] = (now, cached)
                self._cache.move_to_end(key)
                while len(self._cache) > self._max_entries:
                    self._cache.popitem(last=False)
        deployment = cached.deployment
        named = dataclasses.replace(deployment, hostname_ok=hostname_matches(deployment.received_chain[0], sni))
        return Judged(named, cached.facts)

    def _analyse(self, chain_pem: Sequence[str], ocsp: OCSP_RESPONSE | None) -> Judged:
        leaf = x509.load_pem_x509_certificate(chain_pem[0].encode("ascii"))
        deployment = None
        if self._custom_store is not None:
            # A chain anchored in custom_ca_file is judged by that file alone (``deployment_from``),
            # so the public stores (five, the costly part) are asked only about the other chains.
            mine = deployment_from(
                self._analysis(leaf, chain_pem, ocsp, [self._custom_store]), "", self._custom_ca_file
            )
            if mine.anchored_in_custom:
                deployment = mine
        if deployment is None:
            deployment = deployment_from(self._analysis(leaf, chain_pem, ocsp, self._stores), "", self._custom_ca_file)
        deployment = dataclasses.replace(deployment, verdict=chain_verdict(deployment, self._policy))
        return Judged(deployment, certificate_facts(deployment.received_chain))

    @staticmethod
    def _analysis(
        leaf: x509.Certificate, chain_pem: Sequence[str], ocsp: OCSP_RESPONSE | None, stores: list[TrustStore]
    ) -> CertificateDeploymentAnalysisResult:
        return CertificateDeploymentAnalyzer(
            server_subject=_covered_name(leaf),
            server_certificate_chain_as_pem=list(chain_pem),
            server_ocsp_response=ocsp,
            trust_stores_for_validation=stores,
        ).perform()


def _key(chain_pem: Sequence[str], ocsp: OCSP_RESPONSE | None) -> _Key:
    parts = [hashlib.sha256(pem.encode("ascii")).digest() for pem in chain_pem]
    parts.append(hashlib.sha256(ocsp.as_der_bytes()).digest() if ocsp is not None else b"")
    return tuple(parts)


def _covered_name(leaf: x509.Certificate) -> DNSName | IPAddress:
    """A name the leaf covers, so the strict verifier's verdict is about the chain, not a name: the
    name an endpoint was scanned for is matched per endpoint."""
    try:
        san = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except (x509.ExtensionNotFound, ValueError):
        return DNSName("no-subject-alternative-name.invalid")  # no name verifies: hostname_ok is False anyway
    assert isinstance(san, x509.SubjectAlternativeName)
    names = san.get_values_for_type(x509.DNSName)
    if names:
        name = names[0]
        return DNSName("dcc-wildcard-probe" + name[1:] if name.startswith("*.") else name)
    addresses = [
        a
        for a in san.get_values_for_type(x509.IPAddress)
        if isinstance(a, ipaddress.IPv4Address | ipaddress.IPv6Address)
    ]
    if addresses:
        return IPAddress(addresses[0])
    return DNSName("no-subject-alternative-name.invalid")
