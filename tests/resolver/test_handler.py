"""The resolver handler: zone snapshot → scan jobs and a zone plan (pure, no network)."""

from __future__ import annotations

import msgspec
import pytest

from services.resolver.dns_lookup import LookupAnswer
from services.resolver.handler import ResolverHandler
from shared import findings
from shared.config import Config
from shared.messages import LocatedFinding, ScanJob, ZonePlan, ZoneRecord, ZoneSnapshot, job_id
from shared.runner import PermanentError
from shared.transport.base import REPORT


def snap(records: list[tuple[str, str, str]], zone: str = "example.test") -> ZoneSnapshot:
    return ZoneSnapshot(run_id="r1", zone=zone, records=[ZoneRecord(t, n, v, 300) for t, n, v in records])


class RecordingLookup:
    def __init__(self, answers: dict[str, LookupAnswer] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[str] = []

    def __call__(self, name: str) -> LookupAnswer:
        self.asked.append(name)
        return self.answers.get(name, LookupAnswer(nxdomain=True))


def plan(records, config: Config | None = None, lookup=None, zone="example.test") -> tuple[list[ScanJob], ZonePlan]:
    handler = ResolverHandler(config or Config(), lookup or RecordingLookup())
    return handler.plan(snap(records, zone))


def endpoints(jobs: list[ScanJob]) -> set[tuple[str, int, str, str]]:
    return {(j.ip_address, j.port, j.fqdn, j.sni) for j in jobs}


def codes(p: ZonePlan) -> list[tuple[str, str]]:
    return [(f.fqdn, f.finding.code) for f in p.findings]


def test_a_aaaa_and_apex_give_one_job_per_address_and_port():
    jobs, p = plan(
        [
            ("A", "@", "192.0.2.1"),
            ("A", "www", "192.0.2.2"),
            ("AAAA", "www", "2001:db8::2"),
            ("A", "abs.other.", "192.0.2.3"),
        ],
        Config(ssl_ports=[443, 8443]),
    )
    assert endpoints(jobs) == {
        (ip, port, name, name)
        for ip, name in [
            ("192.0.2.1", "example.test"),
            ("192.0.2.2", "www.example.test"),
            ("2001:db8::2", "www.example.test"),
            ("192.0.2.3", "abs.other"),
        ]
        for port in (443, 8443)
    }
    assert sorted(j.job_id for j in p.jobs) == sorted(j.job_id for j in jobs)
    assert p.findings == []


def test_job_ids_are_deterministic_and_match_the_shared_formula():
    jobs1, _ = plan([("A", "www", "192.0.2.2")])
    jobs2, _ = plan([("A", "www", "192.0.2.2")])
    assert [j.job_id for j in jobs1] == [j.job_id for j in jobs2]
    assert jobs1[0].job_id == job_id("r1", "192.0.2.2", 443, "www.example.test", "www.example.test")


def test_cname_chain_inside_zone_is_followed_without_lookups():
    lookup = RecordingLookup()
    jobs, p = plan([("CNAME", "a", "b"), ("CNAME", "b", "c.example.test."), ("A", "c", "192.0.2.9")], lookup=lookup)
    assert {(j.fqdn, j.ip_address) for j in jobs} == {
        ("a.example.test", "192.0.2.9"),
        ("b.example.test", "192.0.2.9"),
        ("c.example.test", "192.0.2.9"),
    }
    assert lookup.asked == []
    assert p.findings == []


def test_cname_loop_and_dangling_become_findings_not_crashes():
    jobs, p = plan([("CNAME", "x", "y"), ("CNAME", "y", "x"), ("CNAME", "gone", "nothing"), ("A", "ok", "192.0.2.1")])
    assert endpoints(jobs) == {("192.0.2.1", 443, "ok.example.test", "ok.example.test")}
    found = dict(codes(p))
    assert found["x.example.test"] == findings.Code.CNAME_LOOP
    assert found["y.example.test"] == findings.Code.CNAME_LOOP
    assert found["gone.example.test"] == findings.Code.DANGLING_CNAME
    loop = next(f for f in p.findings if f.fqdn == "x.example.test")
    assert loop.finding.status == "error"
    assert "x.example.test -> y.example.test -> x.example.test" in loop.finding.message


def test_out_of_zone_targets_use_the_lookup_once_per_name():
    lookup = RecordingLookup({"cdn.provider.net": LookupAnswer(addresses=("198.51.100.7", "2001:db8::7"))})
    jobs, p = plan(
        [("CNAME", "a", "cdn.provider.net."), ("CNAME", "b", "cdn.provider.net."), ("CNAME", "c", "missing.net.")],
        lookup=lookup,
    )
    assert {(j.fqdn, j.ip_address) for j in jobs} == {
        ("a.example.test", "198.51.100.7"),
        ("a.example.test", "2001:db8::7"),
        ("b.example.test", "198.51.100.7"),
        ("b.example.test", "2001:db8::7"),
    }
    assert sorted(lookup.asked) == ["cdn.provider.net", "missing.net"]
    assert codes(p) == [("c.example.test", findings.Code.DANGLING_CNAME)]


def test_lookup_failure_is_reported_with_its_cause():
    lookup = RecordingLookup({"slow.net": LookupAnswer(error="timed out resolving slow.net")})
    jobs, p = plan([("CNAME", "a", "slow.net.")], lookup=lookup)
    assert jobs == []
    assert codes(p) == [("a.example.test", findings.Code.LOOKUP_FAILED)]
    assert "timed out" in p.findings[0].finding.message


def test_wildcard_is_scanned_with_a_synthetic_sni_and_reported_as_star():
    jobs, _ = plan([("A", "*", "192.0.2.5"), ("A", "*.dev", "192.0.2.6")])
    assert endpoints(jobs) == {
        ("192.0.2.5", 443, "*.example.test", "dcc-wildcard-probe.example.test"),
        ("192.0.2.6", 443, "*.dev.example.test", "dcc-wildcard-probe.dev.example.test"),
    }


def test_cname_into_a_wildcard_covered_name_resolves_in_zone():
    lookup = RecordingLookup()
    jobs, p = plan([("A", "*.apps", "192.0.2.8"), ("CNAME", "portal", "foo.apps")], lookup=lookup)
    assert ("192.0.2.8", "portal.example.test") in {(j.ip_address, j.fqdn) for j in jobs}
    assert lookup.asked == [] and p.findings == []


def test_name_filters_drop_matches_but_never_wildcards():
    config = Config(name_filters=[r"^internal\.", r"\*"])
    jobs, _ = plan([("A", "internal", "192.0.2.1"), ("A", "public", "192.0.2.2"), ("A", "*", "192.0.2.3")], config)
    assert {j.fqdn for j in jobs} == {"public.example.test", "*.example.test"}


def test_segments_route_by_most_specific_network_and_report_unclaimed():
    config = Config(
        segments={"dmz": ["192.0.2.0/24"], "lab": ["192.0.2.128/25"], "v6": ["2001:db8::/32"]}, default_segment=None
    )
    handler = ResolverHandler(config, RecordingLookup())
    out = handler.handle(
        snap(
            [
                ("A", "a", "192.0.2.1"),
                ("A", "b", "192.0.2.200"),
                ("AAAA", "c", "2001:db8::1"),
                ("A", "d", "203.0.113.9"),
            ]
        )
    )
    routed = {(o.destination, o.message.fqdn) for o in out if isinstance(o.message, ScanJob)}
    assert routed == {
        ("scan.dmz", "a.example.test"),
        ("scan.lab", "b.example.test"),
        ("scan.v6", "c.example.test"),
    }
    plan_msg = out[-1]
    assert plan_msg.destination == REPORT and isinstance(plan_msg.message, ZonePlan)
    unclaimed = plan_msg.message.findings
    assert [(f.ip_address, f.port, f.finding.code) for f in unclaimed] == [
        ("203.0.113.9", 443, findings.Code.NO_SEGMENT)
    ]
    assert set(handler.queues()) == {REPORT, "scan.dmz", "scan.lab", "scan.v6"}


def test_unclaimed_addresses_go_to_the_default_segment():
    handler = ResolverHandler(Config(segments={"dmz": ["192.0.2.0/24"]}), RecordingLookup())
    out = handler.handle(snap([("A", "d", "203.0.113.9")]))
    assert [o.destination for o in out] == ["scan.default", REPORT]


def test_invalid_addresses_are_findings():
    jobs, p = plan([("A", "bad", "not-an-ip"), ("A", "v6ina", "2001:db8::1"), ("A", "good", "192.0.2.1")])
    assert {j.fqdn for j in jobs} == {"good.example.test"}
    assert sorted(codes(p)) == [
        ("bad.example.test", findings.Code.INVALID_RECORD),
        ("v6ina.example.test", findings.Code.INVALID_RECORD),
    ]


def test_a_failed_zone_passes_its_failure_to_the_report():
    failure = LocatedFinding(
        ip_address="127.0.0.1",
        port=53,
        fqdn="broken.test",
        finding=findings.error(findings.Code.ZONE_TRANSFER_REFUSED, "zone transfer refused"),
    )
    handler = ResolverHandler(Config(), RecordingLookup())
    out = handler.handle(ZoneSnapshot(run_id="r1", zone="broken.test", failure=failure))
    assert len(out) == 1 and out[0].destination == REPORT
    assert out[0].message == ZonePlan(run_id="r1", zone="broken.test", jobs=[], findings=[failure])


def test_other_messages_are_permanent_errors():
    handler = ResolverHandler(Config(), RecordingLookup())
    job = ScanJob(job_id="j", run_id="r", zone="z", ip_address="127.0.0.1", port=443, fqdn="a", sni="a")
    with pytest.raises(PermanentError):
        handler.handle(job)


def test_plans_survive_the_wire():
    from shared.messages import decode, encode

    _, p = plan([("A", "www", "192.0.2.2"), ("CNAME", "x", "x")])
    assert decode(encode(p)) == p
    assert msgspec.json.decode(encode(p))["type"] == "zone_plan.v1"
