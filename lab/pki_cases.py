"""Lab cases for the checks beyond the original's: a private CA with non-critical basicConstraints,
SHA-1 and MD5 signatures, weak RSA keys, a leaf without SAN, imminent expiry, a stale cross-signed
root still sent, a long validity period.

``cryptography`` refuses to sign with SHA-1 or MD5 and to make RSA keys under 1024 bits, so those
leaves are made by the ``openssl`` command (Debian's OpenSSL 3, on every machine that runs this).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.certs import DAY, Authority, Issued, issue
from shared import findings

CHECK_CASES = (
    "lax_ca",
    "lax_ca_sha1",
    "sha1",
    "md5",
    "rsa1024",
    "rsa512",
    "no_san",
    "expiring_critical",
    "stale_cross_sign",
    "long_validity",
)


@dataclass(frozen=True)
class Built:
    chain: list[Issued]  # as served, leaf first
    expected: tuple[tuple[str, str], ...]  # with the default config and the lab's CA file
    extra_roots: tuple[Issued, ...] = ()  # roots the lab's CA file must also hold


@dataclass(frozen=True)
class _Extras:
    lax_root: Issued
    lax_intermediate: Issued
    rsa_intermediate: Issued


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def openssl_leaf(
    workdir: Path, hostname: str, issuer: Issued, *, key: str = "rsa:2048", digest: str = "sha256", days: int = 300
) -> Issued:
    """A server certificate for ``hostname`` made by ``openssl``: any key size and digest."""
    workdir.mkdir(parents=True, exist_ok=True)
    files = {
        kind: str(workdir / f"{hostname}.{kind}") for kind in ("issuer.pem", "issuer.key", "ext", "csr", "key", "pem")
    }
    Path(files["issuer.pem"]).write_bytes(issuer.pem)
    Path(files["issuer.key"]).write_bytes(issuer.key_pem)
    Path(files["ext"]).write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        f"subjectAltName=DNS:{hostname}\n"
    )
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec" else ["-newkey", key]
    _openssl(
        "req", "-new", *new_key, "-nodes", "-keyout", files["key"], "-out", files["csr"], "-subj", f"/CN={hostname}"
    )
    serial = str(x509.random_serial_number())
    _openssl(
        "x509", "-req", "-in", files["csr"], "-CA", files["issuer.pem"], "-CAkey", files["issuer.key"],
        "-set_serial", serial, f"-{digest}", "-days", str(days), "-extfile", files["ext"], "-out", files["pem"],
    )  # fmt: skip
    cert = x509.load_pem_x509_certificate(Path(files["pem"]).read_bytes())
    key_pem = Path(files["key"]).read_bytes()
    private = serialization.load_pem_private_key(key_pem, password=None, unsafe_skip_rsa_key_validation=True)
    return Issued(cert, private)  # type: ignore[arg-type]


def _extras(pki: Authority) -> _Extras:
    start, end = pki.now - 30 * DAY, pki.now + 3650 * DAY
    lax_root = issue("Lax Root CA", ca=True, bc_critical=False, not_before=start, not_after=end)
    lax_intermediate = issue(
        "Lax Intermediate CA", issuer=lax_root, ca=True, bc_critical=False, not_before=start, not_after=end
    )
    rsa_intermediate = issue(
        "Lab RSA Intermediate CA",
        issuer=pki.root,
        ca=True,
        key=rsa.generate_private_key(65537, 2048),
        not_before=start,
        not_after=end,
    )
    return _Extras(lax_root, lax_intermediate, rsa_intermediate)


def _subject(cert: Issued) -> str:
    return cert.cert.subject.rfc4514_string()


def _not_strict(cert: Issued) -> tuple[str, str]:
    return (
        findings.Code.CA_NOT_STRICT,
        f'certificate "{_subject(cert)}" is a CA certificate whose basicConstraints is not marked critical '
        "(RFC 5280 §4.2.1.9); OpenSSL and browsers accept it, strict RFC 5280 verifiers reject it",
    )


def _weak_signature(cert: Issued, weak: str, algorithm: str) -> tuple[str, str]:
    message = f'certificate "{_subject(cert)}" is signed with {weak} ({algorithm}), which clients reject'
    return findings.Code.WEAK_SIGNATURE, message


def _weak_key(cert: Issued, bits: int) -> tuple[str, str]:
    message = f'certificate "{_subject(cert)}" has a {bits}-bit RSA key: at least 2048 bits are needed'
    return findings.Code.WEAK_KEY, message


def build(name: str, hostname: str, pki: Authority, workdir: Path) -> Built:
    """What a check case serves and what a scan with the lab's CA file must report."""
    return _BUILDERS[name](hostname, pki, workdir / "openssl", _extras_for(pki))


_cache: dict[int, _Extras] = {}


def _extras_for(pki: Authority) -> _Extras:
    # one set of extra CAs per lab PKI: every case of one lab shares them (and the CA file)
    if id(pki) not in _cache:
        _cache.clear()
        _cache[id(pki)] = _extras(pki)
    return _cache[id(pki)]


def extra_roots(pki: Authority) -> tuple[Issued, ...]:
    return (_extras_for(pki).lax_root,)


def _lax_ca(hostname: str, pki: Authority, workdir: Path, x: _Extras) -> Built:
    leaf = pki.leaf(hostname, issuer=x.lax_intermediate)
    return Built([leaf, x.lax_intermediate], (_not_strict(x.lax_intermediate), _not_strict(x.lax_root)))


def _lax_ca_sha1(hostname: str, pki: Authority, workdir: Path, x: _Extras) -> Built:
    leaf = openssl_leaf(workdir, hostname, x.lax_intermediate, key="ec", digest="sha1")
    return Built([leaf, x.lax_intermediate], (_weak_signature(leaf, "SHA-1", "ecdsa-with-SHA1"),))


def _sha1(hostname: str, pki: Authority, workdir: Path, x: _Extras) -> Built:
    leaf = openssl_leaf(workdir, hostname, x.rsa_intermediate, digest="sha1")
    return Built([leaf, x.rsa_intermediate], (_weak_signature(leaf, "SHA-1", "sha1WithRSAEncryption"),))


def _md5(hostname: str, pki: Authority, workdir: Path, x: _Extras) -> Built:
    leaf = openssl_leaf(workdir, hostname, x.rsa_intermediate, digest="md5")
    return Built([leaf, x.rsa_intermediate], (_weak_signature(leaf, "MD5", "md5WithRSAEncryption"),))


def _rsa(bits: int) -> Callable[[str, Authority, Path, _Extras], Built]:
    def build_weak(hostname: str, pki: Authority, workdir: Path, x: _Extras) -> Built:
        leaf = openssl_leaf(workdir, hostname, x.rsa_intermediate, key=f"rsa:{bits}")
        return Built([leaf, x.rsa_intermediate], (_weak_key(leaf, bits),))

    return build_weak


def _no_san(hostname: str, pki: Authority, workdir: Path, x: _Extras) -> Built:
    leaf = issue(hostname, issuer=pki.intermediate, not_before=pki.now - DAY, not_after=pki.now + 300 * DAY)
    message = f'certificate has no subjectAltName, and clients ignore its common name "{hostname}"'
    return Built([leaf, pki.intermediate], ((findings.Code.HOSTNAME_MISMATCH, message),))


def _expiring_critical(hostname: str, pki: Authority, workdir: Path, x: _Extras) -> Built:
    leaf = pki.leaf(hostname, start_days=-87, days=90)  # 3 days left: under the 7-day critical threshold
    when = leaf.cert.not_valid_after_utc.astimezone(UTC).replace(tzinfo=None).isoformat()
    message = f'certificate "{_subject(leaf)}" expiring at {when}, less than 7 days from now'
    return Built([leaf, pki.intermediate], ((findings.Code.CERT_EXPIRING_CRITICAL, message),))


def _stale_cross_sign(hostname: str, pki: Authority, workdir: Path, x: _Extras) -> Built:
    """The AddTrust story: the server still sends an expired cross-signed copy of the root; clients
    build the path to the root in their store and never use it. Nothing to report by default."""
    old_ca = issue("Old Cross-signing CA", ca=True, not_before=pki.now - 900 * DAY, not_after=pki.now - 10 * DAY)
    stale = issue(
        "Lab Root CA",
        issuer=old_ca,
        ca=True,
        key=pki.root.key,
        not_before=pki.now - 800 * DAY,
        not_after=pki.now - 20 * DAY,
    )
    leaf = pki.leaf(hostname)
    return Built([leaf, pki.intermediate, stale], ())


def _long_validity(hostname: str, pki: Authority, workdir: Path, x: _Extras) -> Built:
    # 825 days: over the public 398-day limit, which a private CA's chain is not held to by default
    return Built([pki.leaf(hostname, days=825), pki.intermediate], ())


_BUILDERS: dict[str, Callable[[str, Authority, Path, _Extras], Built]] = {
    "lax_ca": _lax_ca,
    "lax_ca_sha1": _lax_ca_sha1,
    "sha1": _sha1,
    "md5": _md5,
    "rsa1024": _rsa(1024),
    "rsa512": _rsa(512),
    "no_san": _no_san,
    "expiring_critical": _expiring_critical,
    "stale_cross_sign": _stale_cross_sign,
    "long_validity": _long_validity,
}
assert set(_BUILDERS) == set(CHECK_CASES)
