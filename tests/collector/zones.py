"""Generated zone files for the collector's tests and benchmark (RFC 1035 master format)."""

from __future__ import annotations

LABEL_63 = "l" + "0123456789" * 6 + "xy"  # exactly 63 octets, the longest legal label
assert len(LABEL_63) == 63


def _soa(zone: str, serial: int) -> str:
    return (
        f"$ORIGIN {zone}.\n$TTL 300\n@ IN SOA ns1 hostmaster {serial} 3600 600 86400 300\n@ NS ns1\nns1 A 127.0.0.1\n"
    )


def small_zone(zone: str = "small.test", serial: int = 2024010101) -> str:
    """A/AAAA/CNAME chains, a wildcard, out-of-zone targets and names that break naive code."""
    return _soa(zone, serial) + (
        "@ A 127.0.0.10\n"
        "@ AAAA fd00::10\n"
        "www CNAME @\n"
        "chain1 CNAME chain2\n"
        "chain2 CNAME chain3.small.test.\n"  # absolute in-zone target: comes back relative
        "chain3 600 A 127.0.0.11\n"
        "chain3 A 127.0.0.12\n"
        "* A 127.0.0.13\n"
        "*.wild AAAA fd00::13\n"
        "ext CNAME www.example.net.\n"
        "deep.sub.tree A 127.0.0.14\n"
        "dual A 127.0.0.15\n"
        "dual AAAA fd00::15\n"
        "esc\\.dot A 127.0.0.16\n"  # a dot inside one label
        "sp\\032ace A 127.0.0.17\n"  # a space
        'quote\\"s AAAA fd00::17\n'
        "bin\\195\\188r A 127.0.0.18\n"  # raw UTF-8 octets in a label (not IDNA)
        "xn--bcher-kva A 127.0.0.19\n"  # IDN "bücher" in punycode
        f"{LABEL_63} A 127.0.0.20\n"
        f"{LABEL_63}.{LABEL_63} CNAME {LABEL_63}\n"
        "under_score CNAME chain1\n"
        # types the collector ignores
        "@ MX 10 mail\n"
        "mail A 127.0.0.21\n"
        '@ TXT "v=spf1 -all"\n'
        "_https._tcp SRV 0 0 443 www\n"
        '@ CAA 0 issue "letsencrypt.org"\n'
    )


def bulk_zone(zone: str, records: int, serial: int = 1) -> str:
    """``records`` A/AAAA/CNAME records (8 of 10 A, 1 AAAA, 1 CNAME) plus the SOA/NS/ns1 head."""
    lines = [_soa(zone, serial)]
    for i in range(records):
        kind = i % 10
        if kind == 8:
            lines.append(f"h{i} AAAA fd00::{i >> 16:x}:{i & 0xFFFF:x}\n")
        elif kind == 9:
            lines.append(f"h{i} CNAME h{i - 1}\n")
        else:
            lines.append(f"h{i} A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}\n")
    return "".join(lines)


def tsig_zone(zone: str = "secret.test") -> str:
    return _soa(zone, 7) + "@ A 127.0.0.30\nvault A 127.0.0.31\n"


def refused_zone(zone: str = "refused.test") -> str:
    return _soa(zone, 9) + "@ A 127.0.0.40\n"
