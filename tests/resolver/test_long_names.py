"""Names longer than DNS allows never get past the resolver's index (issue 10, defect 6).

Whatever produced the snapshot (a zones JSON, a zone file, a foreign producer on the broker), an
owner or CNAME target over 253 characters, or with a label over 63, is an ``INVALID_RECORD``
finding quoting a short prefix; it is never looked up, filtered, scanned or logged whole.
"""

from __future__ import annotations

import logging

import pytest

from services.resolver.handler import ResolverHandler
from shared import findings
from shared.config import Config
from shared.messages import ZoneRecord, ZoneSnapshot
from tests.resolver.test_handler import RecordingLookup

MEGA = 2**20
ZONE = "example.test"  # 12 characters: a relative name of 240 fits (240 + 1 + 12 = 253)


def plan_of(records: list[ZoneRecord], config: Config | None = None, zone: str = ZONE):
    lookup = RecordingLookup()
    handler = ResolverHandler(config or Config(), lookup)
    jobs, plan = handler.plan(ZoneSnapshot(run_id="r1", zone=zone, records=records))
    return jobs, plan, lookup


def invalid(plan) -> list:
    return [f for f in plan.findings if f.finding.code == findings.Code.INVALID_RECORD]


def test_a_megabyte_owner_is_one_short_invalid_record(caplog):
    caplog.set_level(logging.DEBUG)
    jobs, plan, lookup = plan_of([ZoneRecord("A", "a" * MEGA, "192.0.2.1"), ZoneRecord("A", "ok", "192.0.2.2")])
    [bad] = invalid(plan)
    assert bad.fqdn.startswith("aaaa") and len(bad.fqdn) < 100
    assert "longer than DNS allows" in bad.finding.message and len(bad.finding.message) < 300
    assert [j.fqdn for j in jobs] == [f"ok.{ZONE}"]
    assert lookup.asked == []
    assert all(len(r.getMessage()) < 1000 for r in caplog.records)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("l" * 63, True),
        ("l" * 64, False),
        ("x" * 240, False),  # every label ≤ 63 is checked too: this one is a single 240-character label
        (".".join(["x" * 63] * 3) + "." + "y" * 48, True),  # 240 relative, 253 absolute
        (".".join(["x" * 63] * 3) + "." + "y" * 49, False),  # 254 absolute
        (".".join(["x" * 63] * 3) + "." + "y" * 61 + ".", True),  # absolute, 253 characters
        (".".join(["x" * 63] * 3) + "." + "y" * 62 + ".", False),  # absolute, 254 characters
        ("\\065" * 63, True),  # an escape is one octet: 252 characters, one 63-octet label
        ("\\065" * 64, False),
        ("a\\.b" * 20, True),  # an escaped dot does not end a label: 80 characters, 60 octets
        ("a\\.b" * 30, False),
    ],
)
def test_limits_are_octets_of_the_absolute_name(name, ok):
    jobs, plan, _ = plan_of([ZoneRecord("A", name, "192.0.2.1")])
    assert bool(jobs) is ok, plan.findings
    assert (invalid(plan) == []) is ok


def test_an_over_long_cname_target_is_invalid_and_never_looked_up():
    jobs, plan, lookup = plan_of([ZoneRecord("CNAME", "www", "t" * MEGA + "."), ZoneRecord("CNAME", "w2", "u" * 64)])
    assert jobs == []
    assert sorted(f.fqdn for f in invalid(plan)) == [f"w2.{ZONE}", f"www.{ZONE}"]
    assert all("CNAME target" in f.finding.message and len(f.finding.message) < 300 for f in invalid(plan))
    assert lookup.asked == []
    assert [f for f in plan.findings if f not in invalid(plan)] == []


def test_a_chain_through_an_invalid_name_ends_there():
    records = [
        ZoneRecord("CNAME", "a", "b"),
        ZoneRecord("CNAME", "b", "c" * 64),
        ZoneRecord("A", "c" * 64, "192.0.2.9"),
    ]
    jobs, plan, lookup = plan_of(records)
    assert jobs == []
    assert lookup.asked == []
    codes = sorted((f.fqdn, f.finding.code) for f in plan.findings)
    assert codes == [
        (f"a.{ZONE}", findings.Code.DANGLING_CNAME),
        (f"b.{ZONE}", findings.Code.INVALID_RECORD),
        (f"{'c' * 64}.{ZONE}", findings.Code.INVALID_RECORD),
    ]


def test_an_over_long_name_is_never_matched_against_the_filters():
    class Exploding:
        def search(self, _text: str) -> None:
            raise AssertionError("a filter saw an invalid name")

    handler = ResolverHandler(Config(), RecordingLookup())
    handler._filters = [Exploding()]  # type: ignore[list-item]
    _, plan = handler.plan(ZoneSnapshot(run_id="r1", zone=ZONE, records=[ZoneRecord("A", "a" * 300, "192.0.2.1")]))
    assert len(invalid(plan)) == 1


def test_a_megabyte_address_is_quoted_short():
    _, plan, _ = plan_of([ZoneRecord("A", "www", "9" * MEGA)])
    [bad] = invalid(plan)
    assert bad.fqdn == f"www.{ZONE}"
    assert "invalid address" in bad.finding.message and len(bad.finding.message) < 300


def test_an_over_long_zone_from_a_foreign_producer_makes_every_record_invalid_and_logs_short(caplog):
    caplog.set_level(logging.DEBUG)
    zone = "z" * MEGA + ".test"
    jobs, plan, lookup = plan_of([ZoneRecord("A", "www", "192.0.2.1"), ZoneRecord("A", "@", "192.0.2.2")], zone=zone)
    assert jobs == [] and lookup.asked == []
    assert len(invalid(plan)) == 2
    assert all(len(f.fqdn) < 100 and len(f.finding.message) < 300 for f in plan.findings)
    assert all(len(r.getMessage()) < 1000 for r in caplog.records)
