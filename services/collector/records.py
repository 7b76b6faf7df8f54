"""dnspython's zone data as the pipeline's ``ZoneRecord``: one conversion for AXFR and zone files.

The kept types come from ``shared.messages.RECORD_TYPES``, the project's one record-type
definition. Names and targets are relative to the zone exactly as ``str()`` of dnspython's
relativized names (``@``, ``www``, ``a.b``), as the original's zones JSON had them.
"""

from __future__ import annotations

from typing import cast

import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.SOA

from shared.messages import RECORD_TYPES, RecordType, ZoneRecord, normalise_zone

_KEPT: dict[dns.rdatatype.RdataType, RecordType] = {dns.rdatatype.from_text(kind): kind for kind in RECORD_TYPES}


def zone_origin(zone: str) -> dns.name.Name:
    """The zone's absolute name; raises ``dns.exception.DNSException`` for a name DNS cannot spell."""
    return dns.name.from_text(normalise_zone(zone) + ".")


def zone_records(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> list[ZoneRecord]:
    """The records of one rdataset owned by ``name`` (relative to the zone); empty unless a kept IN type."""
    kind = _KEPT.get(rdataset.rdtype)
    if kind is None or rdataset.rdclass != dns.rdataclass.IN:
        return []
    owner = name.to_text()
    ttl = int(rdataset.ttl)
    return [ZoneRecord(kind, owner, rdata.to_text(), ttl) for rdata in rdataset]


def soa_serial(rdataset: dns.rdataset.Rdataset) -> int:
    """The serial of an SOA rdataset (dnspython's rdataset items are untyped: this one is an SOA)."""
    return cast(dns.rdtypes.ANY.SOA.SOA, rdataset[0]).serial
