"""Resolver: a zone snapshot → one scan job per (address, port, name), plus the zone's plan.

Pure apart from the injected ``lookup`` (names outside the zone). In-zone CNAME chains are
followed from the snapshot itself, so a zone costs no DNS traffic unless it points outside.

Every record's name (and CNAME target) is checked against DNS's length limits before anything
else touches it (``shared.config.name_length_problem``): a longer one is an ``INVALID_RECORD``
finding that quotes only its start, and is never made absolute, filtered, looked up or logged.
The index keeps CNAME targets as the snapshot spells them (made absolute when followed), and
findings share their code strings, so a large zone costs little more than its snapshot.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.resolver.dns_lookup import Lookup, LookupAnswer
from services.resolver.names import absolute, covering_wildcards, in_zone, is_wildcard, wildcard_parent
from services.resolver.segments import SegmentMap
from shared import findings
from shared.config import MAX_NAME_SPELLING, Config, name_length_problem, quote, shorten
from shared.messages import (
    Finding,
    LocatedFinding,
    Message,
    PlannedJob,
    ScanJob,
    ZonePlan,
    ZoneSnapshot,
    job_id,
    normalise_zone,
)
from shared.runner import Handler, PermanentError
from shared.transport.base import REPORT, Outgoing, scan_queue

log = logging.getLogger("dcc.resolver")

MAX_CNAME_DEPTH = 16


@dataclass
class _Zone:
    """A snapshot indexed by absolute name (only records whose names DNS can carry)."""

    name: str
    addresses: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    cnames: dict[str, str] = field(default_factory=dict)  # owner → target as the record spells it
    invalid: list[LocatedFinding] = field(default_factory=list)
    wildcards: bool = False  # any wildcard owner (else no name needs the covering-wildcard search)

    def target(self, owner: str) -> str:
        return absolute(self.cnames[owner], self.name)


_LONGEST_ADDRESS = 45  # characters of the longest textual IPv6 address with an IPv4 tail


def _index(snapshot: ZoneSnapshot) -> _Zone:
    zone = _Zone(normalise_zone(snapshot.zone))
    for record in snapshot.records:
        problem = name_length_problem(record.name, zone.name)
        if problem is not None:
            zone.invalid.append(_invalid(_shown(record.name, zone.name), f"record name {quote(record.name)} {problem}"))
            continue
        owner = absolute(record.name, zone.name)
        if record.type == "CNAME":
            problem = name_length_problem(record.target, zone.name)
            if problem is not None:
                zone.invalid.append(_invalid(owner, f"CNAME target {quote(record.target)} {problem}"))
                continue
            zone.cnames[owner] = record.target
            zone.wildcards = zone.wildcards or is_wildcard(owner)
            continue
        try:
            if len(record.target) > _LONGEST_ADDRESS + 16:  # room for surrounding blanks
                raise ValueError("too long")
            address = ipaddress.ip_address(record.target.strip())
        except ValueError:
            zone.invalid.append(_invalid(owner, f"{record.type} record has invalid address {quote(record.target)}"))
            continue
        if (record.type == "A") != (address.version == 4):
            zone.invalid.append(
                _invalid(owner, f"{record.type} record has a v{address.version} address {record.target}")
            )
            continue
        zone.addresses[owner].append(address.compressed)
        zone.wildcards = zone.wildcards or is_wildcard(owner)
    return zone


def _shown(name: str, zone: str) -> str:
    """The fqdn a finding about an over-long name gives: the start of the absolute name."""
    return shorten(absolute(name[: MAX_NAME_SPELLING + 1], zone), 80)


_CODES = {code: str(code) for code in findings.Code}  # one string per code, shared by every finding


def _name_finding(fqdn: str, code: findings.Code, message: str) -> LocatedFinding:
    """``findings.error`` for the resolver's many findings, with the code's one string."""
    return LocatedFinding(fqdn=fqdn, finding=Finding(code=_CODES[code], status="error", message=message))


def _invalid(fqdn: str, message: str) -> LocatedFinding:
    return _name_finding(fqdn, findings.Code.INVALID_RECORD, message)


class ResolverHandler(Handler):
    def __init__(self, config: Config, lookup: Lookup) -> None:
        self._ports = list(dict.fromkeys(config.ssl_ports))
        self._filters = config.compiled_name_filters()
        self._segments = SegmentMap(config.segments, config.default_segment)
        self._probe_label = config.wildcard_probe_label
        self._lookup = lookup

    def queues(self) -> list[str]:
        """Every queue this handler may publish to (declare them before serving)."""
        return [REPORT] + [scan_queue(s) for s in self._segments.names()]

    def handle(self, message: Message) -> list[Outgoing]:
        if not isinstance(message, ZoneSnapshot):
            raise PermanentError(f"resolver cannot handle {type(message).__name__}")
        jobs, plan = self.plan(message)
        out = [Outgoing(scan_queue(job.segment), job) for job in jobs]
        out.append(Outgoing(REPORT, plan))
        return out

    def plan(self, snapshot: ZoneSnapshot) -> tuple[list[ScanJob], ZonePlan]:
        """The scan jobs of a zone and the plan that tells the reporter to expect them."""
        if snapshot.failure is not None:
            zone = normalise_zone(snapshot.zone)
            return [], ZonePlan(run_id=snapshot.run_id, zone=zone, jobs=[], findings=[snapshot.failure])
        indexed = _index(snapshot)
        targets, problems = self._targets(indexed)
        jobs, unrouted = self._jobs(snapshot.run_id, indexed.name, targets)
        problems = [*indexed.invalid, *problems, *unrouted]
        plan = ZonePlan(
            run_id=snapshot.run_id,
            zone=indexed.name,
            jobs=[PlannedJob(j.job_id, j.ip_address, j.port, j.fqdn) for j in jobs],
            findings=problems,
            serial=snapshot.serial,
            records=len(snapshot.records),
        )
        log.info(
            "zone %s: %d records, %d jobs, %d findings",
            shorten(indexed.name),
            len(snapshot.records),
            len(jobs),
            len(problems),
        )
        return jobs, plan

    def _targets(self, zone: _Zone) -> tuple[dict[str, list[str]], list[LocatedFinding]]:
        """Every name of the zone that is not filtered out → its addresses; why others have none."""
        targets: dict[str, list[str]] = {}
        problems: list[LocatedFinding] = []
        cache: dict[str, LookupAnswer] = {}  # one lookup per out-of-zone name per zone
        answers: dict[LookupAnswer, LookupAnswer] = {}  # equal answers (all "no nameservers") kept once
        for owner in [*zone.addresses, *zone.cnames]:
            if owner in targets or (self._filters and _filtered(owner, self._filters)):
                continue
            addresses, problem = self._addresses_of(owner, zone, cache, answers)
            if problem is not None:
                problems.append(problem)
            if addresses:
                targets[owner] = addresses
        return targets, problems

    def _jobs(
        self, run_id: str, zone: str, targets: dict[str, list[str]]
    ) -> tuple[list[ScanJob], list[LocatedFinding]]:
        """One job per (address, port, name); an address no segment scans is a finding instead."""
        jobs: dict[str, ScanJob] = {}  # by job id: a name reached twice is scanned once
        unrouted: list[LocatedFinding] = []
        for fqdn, addresses in targets.items():
            sni = f"{self._probe_label}.{wildcard_parent(fqdn)}" if is_wildcard(fqdn) else fqdn
            for address in dict.fromkeys(addresses):
                segment = self._segments.segment_of(address)
                for port in self._ports:
                    if segment is None:
                        finding = findings.error(findings.Code.NO_SEGMENT, f"no network segment scans {address}")
                        unrouted.append(LocatedFinding(ip_address=address, port=port, fqdn=fqdn, finding=finding))
                        continue
                    jid = job_id(run_id, address, port, fqdn, sni)
                    jobs[jid] = ScanJob(
                        job_id=jid,
                        run_id=run_id,
                        zone=zone,
                        ip_address=address,
                        port=port,
                        fqdn=fqdn,
                        sni=sni,
                        segment=segment,
                    )
        return list(jobs.values()), unrouted

    def _addresses_of(
        self, owner: str, zone: _Zone, cache: dict[str, LookupAnswer], answers: dict[LookupAnswer, LookupAnswer]
    ) -> tuple[list[str], LocatedFinding | None]:
        """Follow ``owner`` through in-zone CNAMEs (and wildcards) to addresses."""
        chain = [owner]
        name = owner
        while True:
            if name in zone.addresses:
                return zone.addresses[name], None
            if name in zone.cnames:
                target = zone.target(name)
                if target in chain:
                    path = " -> ".join(chain + [target])
                    return [], _name_finding(owner, findings.Code.CNAME_LOOP, f"CNAME loop: {path}")
                if len(chain) > MAX_CNAME_DEPTH:
                    return [], _name_finding(
                        owner, findings.Code.CNAME_TOO_DEEP, f"CNAME chain longer than {MAX_CNAME_DEPTH}: {owner}"
                    )
                chain.append(target)
                name = target
                continue
            if in_zone(name, zone.name):
                covered = (
                    next(
                        (w for w in covering_wildcards(name, zone.name) if w in zone.addresses or w in zone.cnames),
                        None,
                    )
                    if zone.wildcards
                    else None
                )
                if covered is not None and covered not in chain:
                    chain.append(covered)
                    name = covered
                    continue
                if name == owner:  # an owner with no A/AAAA/CNAME of its own cannot reach here
                    return [], None
                return [], _name_finding(
                    owner, findings.Code.DANGLING_CNAME, f"CNAME target {name} does not exist in zone {zone.name}"
                )
            answer = cache.get(name)
            if answer is None:
                answer = self._lookup(name)
                answer = cache[name] = answers.setdefault(answer, answer)
            if answer.addresses:
                return list(answer.addresses), None
            if answer.nxdomain:
                return [], _name_finding(owner, findings.Code.DANGLING_CNAME, f"CNAME target {name} does not exist")
            reason = answer.error or f"{name} has no A or AAAA records"
            code = findings.Code.LOOKUP_FAILED if answer.error else findings.Code.DANGLING_CNAME
            return [], _name_finding(owner, code, f"cannot resolve CNAME target {name}: {reason}")


def _filtered(fqdn: str, filters: Sequence[re.Pattern[str]]) -> bool:
    """The original's rule: a matching filter drops the name; wildcard names are never filtered."""
    return not is_wildcard(fqdn) and any(f.search(fqdn) for f in filters)
