"""Zones from RFC 1035 master files, for teams that keep their zones in git.

Records come out exactly as from AXFR (same relativization, same text), so a zone read from
its file and the same zone transferred from a server give equal snapshots: both convert
through ``records``. Zone files are parsed whole by dnspython (they are rarely large); only
the kept types (``shared.messages.RECORD_TYPES``) come out.

Bounded, so a bad file is one ``ZONE_FILE_INVALID`` finding and never a hang: a file (and each
file it ``$INCLUDE``s, at most ``MAX_INCLUDE_DEPTH`` deep, never in a loop) is read up to
``MAX_ZONE_FILE_BYTES``, and its ``$GENERATE`` ranges may make at most ``MAX_GENERATED`` records
in all. Both are checked before dnspython reads anything.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
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
from shared.config import ConfigError, quote, read_capped, shorten, zone_name_problem
from shared.messages import LocatedFinding, ZoneRecord, ZoneSnapshot

log = logging.getLogger("dcc.collector.zonefile")

_WHERE = re.compile(r"^(?P<file>.*):(?P<line>\d+): (?P<detail>.*)$", re.S)

MAX_ZONE_FILE_BYTES = 64 * 2**20  # per file, included files too
MAX_GENERATED = 1_000_000  # records all $GENERATE lines of a zone may make
MAX_INCLUDE_DEPTH = 8

# directives as dnspython sees them: at the very start of a line, in any case
_INCLUDE = re.compile(r'^\$INCLUDE[ \t]+("[^"\n]*"|[^ \t\r\n;]+)', re.M | re.I)
_GENERATE = re.compile(r"^\$GENERATE[ \t]+([^ \t\r\n;]+)", re.M | re.I)
_RANGE = re.compile(r"^(\d+)-(\d+)(?:/(\d+))?$")


class ZoneFileError(Exception):
    """``str()`` names the file and (when known) the line."""


@dataclass(frozen=True)
class ZoneFile:
    records: list[ZoneRecord]
    serial: int | None


def read_zone_file(zone: str, path: str | Path) -> ZoneFile:
    """Parse ``path`` with ``zone`` as origin; raises ``ZoneFileError``."""
    origin = _origin(zone, path)
    text = _read(path)
    _check_directives(path, text, generated=[0], seen={_identity(path)}, depth=0)
    try:
        parsed = dns.zone.from_file(
            io.StringIO(text), origin=origin, relativize=True, check_origin=False, filename=str(path)
        )
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
    except Exception as exc:  # dnspython on input it did not expect (an assert, a KeyError): still a finding
        raise ZoneFileError(f"zone file {path}: unreadable ({type(exc).__name__}: {shorten(str(exc), 200)})") from None
    records: list[ZoneRecord] = []
    serial: int | None = None
    for name, node in parsed.nodes.items():
        for rdataset in node.rdatasets:
            if _is_apex_soa(name, rdataset):
                serial = soa_serial(rdataset)
            records.extend(zone_records(name, rdataset))
    return ZoneFile(records, serial)


def _origin(zone: str, path: str | Path) -> dns.name.Name:
    problem = zone_name_problem(zone)
    if problem is not None:
        raise ZoneFileError(f"zone file {path}: zone name {quote(zone)} {problem}")
    try:
        return zone_origin(zone)
    except dns.exception.DNSException as exc:
        raise ZoneFileError(f"zone file {path}: invalid zone name {quote(zone)}: {exc}") from None


def _read(path: str | Path) -> str:
    try:
        data = read_capped(path, MAX_ZONE_FILE_BYTES, "a zone file")
    except ConfigError as exc:
        raise ZoneFileError(f"zone file {exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ZoneFileError(f"zone file {path}: {exc}") from None


def _identity(path: str | Path) -> str:
    return os.path.realpath(path)


def _check_directives(path: str | Path, text: str, *, generated: list[int], seen: set[str], depth: int) -> None:
    """Refuse what would make dnspython read without bound: $GENERATE ranges beyond
    ``MAX_GENERATED`` records, and $INCLUDEs of files too large, endless, too deep or in a loop.
    dnspython opens an included name as given (relative to the working directory): so do we."""
    for match in _GENERATE.finditer(text):
        found = _RANGE.match(match[1])
        if found is None:
            continue  # dnspython reports a malformed range itself
        if max(len(found[1]), len(found[2])) > 18:
            generated[0] = MAX_GENERATED + 1
        elif found[3] is not None and int(found[3][:19]) == 0:  # dnspython asserts on it
            raise ZoneFileError(f"zone file {path}: $GENERATE {quote(match[1])}: the step must be at least 1")
        else:
            start, stop, step = int(found[1]), int(found[2]), int(found[3][:19] if found[3] else 1)
            if stop >= start:
                generated[0] += (stop - start) // step + 1
        if generated[0] > MAX_GENERATED:
            raise ZoneFileError(f"zone file {path}: $GENERATE would make more than {MAX_GENERATED:,} records")
    for match in _INCLUDE.finditer(text):
        included = match[1].strip('"')
        if depth + 1 > MAX_INCLUDE_DEPTH:
            raise ZoneFileError(f"zone file {path}: $INCLUDEs nested deeper than {MAX_INCLUDE_DEPTH}")
        identity = _identity(included)
        if identity in seen:
            raise ZoneFileError(f"zone file {path}: $INCLUDE {quote(included)} includes itself")
        try:
            inner = _read(included)
        except ZoneFileError as exc:
            raise ZoneFileError(f"zone file {path}: $INCLUDE: {exc}") from None
        _check_directives(included, inner, generated=generated, seen=seen | {identity}, depth=depth + 1)


def _is_apex_soa(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> bool:
    return rdataset.rdtype == dns.rdatatype.SOA and rdataset.rdclass == dns.rdataclass.IN and name == dns.name.empty


def fingerprint(path: str | Path) -> str | None:
    """sha256 of the file's bytes (change detection: zone files in git often keep their serial);
    None when it cannot be read or is larger than ``MAX_ZONE_FILE_BYTES`` (it is then invalid)."""
    digest = hashlib.sha256()
    total = 0
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                total += len(chunk)
                if total > MAX_ZONE_FILE_BYTES:
                    return None
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
