"""Is the leaf revoked? What its stapled OCSP response says, and (opt-in) what its CA says.

``stapled_findings`` is pure: it judges the OCSP response the server stapled, as SSLyze parsed and
verified it. ``RevocationChecker`` asks the CA itself, by one of the two means a leaf names:
``ocsp`` POSTs an OCSP request to the responder in its Authority Information Access, ``crl``
downloads the CRL in its CRL distribution points. Both answers are cached per issuer.

The URLs come from the certificate the server sent, and the scanner meets certificates nobody
vouches for: whoever controls a scanned server chooses where the scanner connects and what it reads
back. So every fetch is fenced in:
- only ``http://`` (OCSP and CRLs are plain HTTP by design: what they carry is signed, and https
  would need a revocation check of its own); any other scheme is reported, never fetched;
- a URL whose host is a name, not an address, is fetched only when the user opted in to the system
  resolver (``use_system_resolver: true``, passed as ``resolve_names``); otherwise it is reported
  and nothing is asked of any resolver;
- no redirects, no proxy settings from the environment, no cookies kept, no compressed bodies;
- one time limit for the whole fetch, name resolution included (the smaller of ``timeout`` and what
  the caller's deadline leaves): httpx's timeouts bound each socket operation, so a server that
  drip-feeds its answer never trips them, and a watchdog shuts the socket down at the limit;
- at most ``max_bytes`` of body, streamed and cut off there;
- an answer counts only once its signature verifies with the issuer's key (or, for OCSP, with a
  responder certificate the issuer signed for that purpose) and its dates are sane.
A fetch that fails for any reason is a ``REVOCATION_UNKNOWN`` warning, never an exception.

The modules: ``stapled`` (the stapled response), ``checker`` (``RevocationChecker``, its caches and
locks), ``fetch`` (the bounded HTTP fetch), ``verify`` (OCSP signer and delegation checks, CRL
checks), ``urls`` (what the leaf names), ``messages`` (how reasons and findings are worded).
"""

from __future__ import annotations

from services.scanner.revocation.checker import (
    CACHE_MAX_AGE,
    FAILURE_TTL,
    MAX_ANSWERS,
    MAX_CRLS,
    MAX_FAILURES,
    RevocationChecker,
)
from services.scanner.revocation.fetch import MAX_CONNECTIONS, USER_AGENT
from services.scanner.revocation.stapled import stapled_findings
from services.scanner.revocation.urls import MAX_URL_CHARS
from services.scanner.revocation.verify import CLOCK_SKEW, signed_for_issuer

__all__ = [
    "CACHE_MAX_AGE",
    "CLOCK_SKEW",
    "FAILURE_TTL",
    "MAX_ANSWERS",
    "MAX_CONNECTIONS",
    "MAX_CRLS",
    "MAX_FAILURES",
    "MAX_URL_CHARS",
    "USER_AGENT",
    "RevocationChecker",
    "signed_for_issuer",
    "stapled_findings",
]
