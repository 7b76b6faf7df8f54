"""What the leaf names: the OCSP responders of its Authority Information Access, the CRLs of its CRL
distribution points, and which of those URLs may be fetched at all (``http://``, a host, printable
ASCII, not too long). The leaf comes from the scanned server, so a URL is only ever a candidate:
anything odd about it makes it one the checker reports instead of fetching.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

__all__ = ["MAX_URL_CHARS", "crl_urls", "http_url", "ocsp_urls"]

MAX_URL_CHARS = 2048


def ocsp_urls(leaf: x509.Certificate) -> list[str]:
    try:
        access = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):  # ValueError: malformed extensions (other checks say so)
        return []
    return [
        entry.access_location.value
        for entry in access
        if entry.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(entry.access_location, x509.UniformResourceIdentifier)
    ]


def crl_urls(leaf: x509.Certificate) -> list[str]:
    try:
        points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [
        name.value
        for point in points
        if point.crl_issuer is None  # an indirect CRL, signed by someone else: not supported
        for name in point.full_name or ()
        if isinstance(name, x509.UniformResourceIdentifier)
    ]


def http_url(url: str) -> SplitResult | None:
    """``url`` split, when it is one we fetch: http://, a host, printable ASCII, not too long."""
    if len(url) > MAX_URL_CHARS or not url.isascii() or not url.isprintable() or " " in url:
        return None
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port out of range
    except ValueError:
        return None
    if parts.scheme.lower() != "http" or not parts.hostname:
        return None
    return parts
