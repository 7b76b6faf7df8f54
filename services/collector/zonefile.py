"""Zones from RFC 1035 master files, for teams that keep their zones in git.

Records come out exactly as from AXFR (same relativization, same text), so a zone read from
its file and the same zone transferred from a server give equal snapshots: both convert
through ``records``. Zone files are parsed whole by dnspython (they are rarely large); only
the kept types (``shared.messages.RECORD_TYPES``) come out.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.zone

from services.collector.records import soa_serial, zone_origin, zone_records
from shared import findings
from shared.messages import LocatedFinding, ZoneRecord, ZoneSnapshot

log = logging.getLogger("dcc.collector.zonefile")

_WHERE = re.compile(r"^(?P<file>.*):(?P<line>\d+): (?P<detail>.*)$", re.S)


class ZoneFileError(Exception):
    """``str()`` names the file and (when known) the line."""


@dataclass(frozen=True)
class ZoneFile:
    records: list[ZoneRecord]
    serial: int | None


def read_zone_file(zone: str, path: str | Path) -> ZoneFile:
    """Parse ``path`` with ``zone`` as origin; raises ``ZoneFileError``."""
    origin = zone_origin(zone)
    try:
        parsed = dns.zone.from_file(str(path), origin=origin, relativize=True, check_origin=False)
    except OSError as exc:
        raise ZoneFileError(f"zone file {path}: cannot read: {exc.strerror}") from None
    except dns.exception.SyntaxError as exc:
        match = _WHERE.match(str(exc))
        if match:
            # dnspython counts the line after the record it was reading when the error is at EOL
            raise ZoneFileError(f"zone file {path}: near line {match['line']}: {match['detail'].strip()}") from None
        raise ZoneFileError(f"zone file {path}: {exc}") from None
    except (dns.exception.DNSException, UnicodeDecodeError, ValueError) as exc:
        raise ZoneFileError(f"zone file {path}: {exc}") from None
    records: list[ZoneRecord] = []
    serial: int | None = None
    for name, node in parsed.nodes.items():
        for rdataset in node.rdatasets:
            if _is_apex_soa(name, rdataset):
                serial = soa_serial(rdataset)
            records.extend(zone_records(name, rdataset))
    return ZoneFile(records, serial)


def _is_apex_soa(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> bool:
    return rdataset.rdtype == dns.rdatatype.SOA and rdataset.rdclass == dns.rdataclass.IN and name == dns.name.empty


def fingerprint(path: str | Path) -> str | None:
    """sha256 of the file's bytes (change detection: zone files in git often keep their serial)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return "sha256:" + digest.hexdigest()


def snapshot(zone: str, path: str | Path, run_id: str) -> ZoneSnapshot:
    """One zone as a snapshot; a broken file becomes a ZONE_FILE_INVALID finding."""
    try:
        result = read_zone_file(zone, path)
    except ZoneFileError as exc:
        failure = LocatedFinding(fqdn=zone, finding=findings.error(findings.Code.ZONE_FILE_INVALID, str(exc)))
        return ZoneSnapshot(run_id=run_id, zone=zone, failure=failure)
    return ZoneSnapshot(run_id=run_id, zone=zone, records=result.records, serial=result.serial)
