"""``RevocationChecker``, the active check (opt-in): asks the leaf's CA, by OCSP or by CRL, whether
the leaf is revoked, from many scan threads at once. It holds what keeps that cheap and polite
towards the CA: answers cached per issuer until their nextUpdate (an hour at most), failures
remembered per (URL, issuer) for a while, and per-key locks so that concurrent checks needing the
same CRL, the same OCSP answer or a responder that has not answered yet wait for one fetch instead
of each paying for it. Fetching is ``fetch``'s, believing what came back is ``verify``'s.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Literal, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp

from services.scanner.revocation.fetch import Fetcher
from services.scanner.revocation.messages import Unavailable, shown, unknown
from services.scanner.revocation.urls import crl_urls, http_url, ocsp_urls
from services.scanner.revocation.verify import crl_problem, crl_verdict, parse_crl, responder_verdict
from shared import findings
from shared.messages import Finding

__all__ = ["CACHE_MAX_AGE", "FAILURE_TTL", "MAX_ANSWERS", "MAX_CRLS", "MAX_FAILURES", "RevocationChecker"]

CACHE_MAX_AGE = 3600.0  # seconds an answer is reused at most, whatever its nextUpdate says
FAILURE_TTL = 120.0  # seconds a failed responder or CRL is not asked again (per issuer)
MAX_ANSWERS = 10_000  # cached OCSP answers, one per (issuer, serial)
MAX_CRLS = 32  # cached CRLs (each up to max_bytes), one per (URL, issuer)
MAX_FAILURES = 1024  # remembered failures and healthy responders, one per (URL, issuer)

_OCSP_HEADERS = {"Content-Type": "application/ocsp-request", "Accept": "application/ocsp-response"}
_CRL_HEADERS = {"Accept": "application/pkix-crl"}

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


@dataclass(frozen=True)
class _Failed:
    """A source that gave no answer (the finding says why): the next URL of the leaf may."""

    finding: Finding


class RevocationChecker:
    """Active checks, opt-in: ``ocsp`` asks the OCSP responder named in the leaf's AIA, ``crl``
    fetches the CRL named in its CRL distribution points.

    Thread-safe: many scan threads call ``check`` at once. Answers are cached per issuer: a CRL
    per (URL, issuer) until its nextUpdate, shared by every leaf of that issuer; an OCSP answer per
    (issuer, serial) until its nextUpdate; neither longer than ``CACHE_MAX_AGE``. Concurrent checks
    that need the same CRL or the same OCSP answer wait for one fetch. A failure is remembered per
    (URL, issuer) for ``FAILURE_TTL``, and until a responder has answered once its checks go one at
    a time: a dead responder costs one timeout per issuer, not one per endpoint.

    ``resolve_names``: whether a URL whose host is a name (not an address) is resolved with the
    system resolver and fetched; pass the config's ``use_system_resolver``. False (the default):
    such a URL is a REVOCATION_UNKNOWN warning and nothing is asked of any resolver.
    """

    def __init__(
        self,
        mode: Literal["ocsp", "crl"],
        timeout: float,
        *,
        max_bytes: int = 10 * 2**20,
        resolve_names: bool = False,
    ) -> None:
        if mode not in ("ocsp", "crl"):
            raise ValueError(f"revocation mode {mode!r}: expected 'ocsp' or 'crl'")
        self._mode = mode
        self._timeout = timeout
        self._fetcher = Fetcher(timeout, max_bytes, resolve_names=resolve_names)
        self._answers: _Expiring[tuple[bytes, int], tuple[Finding, ...]] = _Expiring(MAX_ANSWERS)
        self._crls: _Expiring[tuple[str, bytes], x509.CertificateRevocationList] = _Expiring(MAX_CRLS)
        self._failures: _Expiring[tuple[str, bytes], Finding] = _Expiring(MAX_FAILURES)
        self._healthy: _Expiring[tuple[str, bytes], bool] = _Expiring(MAX_FAILURES)
        self._locks = _KeyLocks()
        self._closed = False

    def check(self, chain: Sequence[x509.Certificate], deadline: float | None = None) -> list[Finding]:
        """Findings about ``chain[0]`` from its issuer ``chain[1]`` (the verified chain, leaf first):
        CERT_REVOKED, REVOCATION_UNKNOWN when no source answered, [] when good or nothing to check.
        ``deadline`` (a ``time.monotonic()`` value): no fetch goes past it."""
        if len(chain) < 2:
            return []
        leaf, issuer = chain[0], chain[1]
        urls = ocsp_urls(leaf) if self._mode == "ocsp" else crl_urls(leaf)
        if not urls:
            return []
        kind = "OCSP responder" if self._mode == "ocsp" else "CRL"
        fetchable = [url for url in urls if http_url(url) is not None]
        if not fetchable:
            listed = ", ".join(shown(url) for url in urls[:3])
            return [
                findings.warning(
                    findings.Code.REVOCATION_UNKNOWN,
                    f"could not check revocation: the certificate names no http:// {kind} ({listed}); only plain"
                    " http:// is fetched (OCSP and CRLs are plain HTTP by design)",
                )
            ]
        if leaf.issuer != issuer.subject:
            return [unknown(kind, fetchable[0], "the chain's second certificate is not the leaf's issuer")]
        if self._closed:
            return [unknown(kind, fetchable[0], "the scanner is stopping")]
        status = self._ocsp_status if self._mode == "ocsp" else self._crl_status
        failures: list[_Failed] = []
        for url in fetchable:  # the next URL only when one gave no answer
            answer = status(url, leaf, issuer, deadline)
            if not isinstance(answer, _Failed):
                return list(answer)
            failures.append(answer)
        return [failures[0].finding]

    def close(self) -> None:
        """Stop: later checks report REVOCATION_UNKNOWN; fetches in flight fail."""
        self._closed = True
        self._fetcher.close()

    # --- OCSP --------------------------------------------------------------------------------

    def _ocsp_status(
        self, url: str, leaf: x509.Certificate, issuer: x509.Certificate, deadline: float | None
    ) -> tuple[Finding, ...] | _Failed:
        issuer_id = _issuer_id(issuer)
        answer_key = (issuer_id, leaf.serial_number)
        responder = (url, issuer_id)
        wait_until = self._wait_limit(deadline)
        while True:
            known = self._recall_ocsp(answer_key, responder)
            if known is not None:
                return known
            healthy = self._healthy.get(responder) is not None
            # A responder that has not answered yet is asked one leaf at a time: if it is dead, the
            # first check pays the timeout and the others read the failure it left.
            gate = ("answer", answer_key) if healthy else ("responder", responder)
            with self._locks.held(gate, wait_until) as acquired:
                if not acquired:
                    return _Failed(
                        unknown("OCSP responder", url, "it had not answered earlier checks when time ran out")
                    )
                known = self._recall_ocsp(answer_key, responder)
                if known is not None:
                    return known
                if healthy or self._healthy.get(responder) is None:
                    return self._ask_responder(url, leaf, issuer, deadline, answer_key, responder)
            # it answered another check while this one waited: ask alongside the others

    def _recall_ocsp(
        self, answer_key: tuple[bytes, int], responder: tuple[str, bytes]
    ) -> tuple[Finding, ...] | _Failed | None:
        answer = self._answers.get(answer_key)
        if answer is not None:
            return answer
        failure = self._failures.get(responder)
        return _Failed(failure) if failure is not None else None

    def _ask_responder(
        self,
        url: str,
        leaf: x509.Certificate,
        issuer: x509.Certificate,
        deadline: float | None,
        answer_key: tuple[bytes, int],
        responder: tuple[str, bytes],
    ) -> tuple[Finding, ...] | _Failed:
        # SHA-1 CertIDs: the one hash every responder understands (it names, it does not protect)
        request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
        try:
            body = self._fetcher.fetch(url, "POST", request.public_bytes(Encoding.DER), _OCSP_HEADERS, deadline)
            try:
                response = ocsp.load_der_ocsp_response(body)
            except ValueError:
                raise Unavailable("its answer is not an OCSP response") from None
            found, next_update = responder_verdict(url, response, leaf, issuer, datetime.now(UTC))
        except Unavailable as exc:
            return self._failed(responder, unknown("OCSP responder", url, exc.reason), exc.cacheable)
        self._healthy.put(responder, True, time.monotonic() + CACHE_MAX_AGE)
        self._answers.put(answer_key, found, _cache_until(next_update))
        return found

    # --- CRL ---------------------------------------------------------------------------------

    def _crl_status(
        self, url: str, leaf: x509.Certificate, issuer: x509.Certificate, deadline: float | None
    ) -> tuple[Finding, ...] | _Failed:
        key = (url, _issuer_id(issuer))
        crl = self._recall_crl(key)
        if crl is None:
            with self._locks.held(("crl", key), self._wait_limit(deadline)) as acquired:
                if not acquired:
                    return _Failed(unknown("CRL", url, "another check was still downloading it when time ran out"))
                crl = self._recall_crl(key)  # (a CRL with no entries is falsy: compare with None)
                if crl is None:
                    crl = self._download_crl(url, issuer, deadline, key)
        if isinstance(crl, _Failed):
            return crl
        return crl_verdict(url, crl, leaf)

    def _recall_crl(self, key: tuple[str, bytes]) -> x509.CertificateRevocationList | _Failed | None:
        crl = self._crls.get(key)
        if crl is not None:
            return crl
        failure = self._failures.get(key)
        return _Failed(failure) if failure is not None else None

    def _download_crl(
        self, url: str, issuer: x509.Certificate, deadline: float | None, key: tuple[str, bytes]
    ) -> x509.CertificateRevocationList | _Failed:
        try:
            crl = parse_crl(self._fetcher.fetch(url, "GET", None, _CRL_HEADERS, deadline))
            problem = crl_problem(crl, issuer, datetime.now(UTC))
            if problem is not None:
                raise Unavailable(problem)
        except Unavailable as exc:
            return self._failed(key, unknown("CRL", url, exc.reason), exc.cacheable)
        self._crls.put(key, crl, _cache_until(crl.next_update_utc))
        return crl

    # --- both ---------------------------------------------------------------------------------

    def _failed(self, key: tuple[str, bytes], finding: Finding, cacheable: bool) -> _Failed:
        if cacheable:
            self._failures.put(key, finding, time.monotonic() + FAILURE_TTL)
            self._healthy.discard(key)
        return _Failed(finding)

    def _wait_limit(self, deadline: float | None) -> float:
        # whoever holds the fetch is done within one timeout; waiting longer means something is wrong
        limit = time.monotonic() + 2 * self._timeout
        return limit if deadline is None else min(limit, deadline)


def _cache_until(next_update: datetime | None) -> float:
    age = CACHE_MAX_AGE
    if next_update is not None:
        age = min(age, (next_update - datetime.now(UTC)).total_seconds())
    return time.monotonic() + age


def _issuer_id(issuer: x509.Certificate) -> bytes:
    # name and key, as an OCSP CertID names an issuer: a cross-signed copy of the CA is the same issuer
    spki = issuer.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(issuer.subject.public_bytes())
    digest.update(spki)
    return digest.finalize()


# --- the caches and locks ------------------------------------------------------------------------


class _Expiring(Generic[_K, _V]):
    """A bounded, thread-safe map whose entries expire (``time.monotonic()``); the least recently
    used entry goes first when it is full."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[_K, tuple[float, _V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] <= time.monotonic():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: _K, value: _V, until: float) -> None:
        if until <= time.monotonic():
            return
        with self._lock:
            self._items[key] = (until, value)
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def discard(self, key: _K) -> None:
        with self._lock:
            self._items.pop(key, None)


class _KeyLocks:
    """One lock per key, alive while someone holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Hashable, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def held(self, key: Hashable, until: float) -> Iterator[bool]:
        """Hold ``key``'s lock for the block; yields False (not holding it) when ``until`` passed first."""
        with self._guard:
            lock, users = self._locks.get(key) or (threading.Lock(), 0)
            self._locks[key] = (lock, users + 1)
        acquired = lock.acquire(timeout=max(0.0, until - time.monotonic()))
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()
            with self._guard:
                lock, users = self._locks[key]
                if users > 1:
                    self._locks[key] = (lock, users - 1)
                else:
                    del self._locks[key]
