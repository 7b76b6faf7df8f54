"""Out-of-zone lookups go to lookup_nameservers (a real Knot here), with timeouts, never elsewhere."""

from __future__ import annotations

import socket
import time

import pytest

from services.resolver.dns_lookup import make_lookup
from services.resolver.handler import ResolverHandler
from shared import findings
from shared.config import Config
from shared.messages import ZoneRecord, ZoneSnapshot
from tests.collector.knot import KnotZone, start_knot

PROVIDER_ZONE = """$ORIGIN provider.test.
$TTL 300
@ SOA ns1 hostmaster 1 3600 600 86400 300
@ NS ns1
ns1 A 127.0.0.1
cdn A 192.0.2.10
cdn AAAA 2001:db8::10
edge CNAME cdn
txt-only TXT "no address here"
"""


@pytest.fixture(scope="module")
def nameserver(tmp_path_factory: pytest.TempPathFactory):
    server = start_knot(tmp_path_factory.mktemp("knot-lookup"), [KnotZone("provider.test", PROVIDER_ZONE)])
    try:
        yield f"{server.address}:{server.port}"
    finally:
        server.stop()


def test_lookup_uses_the_configured_nameserver_and_port(nameserver):
    lookup = make_lookup(Config(lookup_nameservers=[nameserver], dns_timeout=2))
    assert sorted(lookup("cdn.provider.test").addresses) == ["192.0.2.10", "2001:db8::10"]
    assert sorted(lookup("edge.provider.test").addresses) == ["192.0.2.10", "2001:db8::10"]
    gone = lookup("gone.provider.test")
    assert gone.addresses == () and gone.nxdomain
    txt = lookup("txt-only.provider.test")
    assert txt.addresses == () and not txt.nxdomain and txt.error is None


def test_resolver_scans_out_of_zone_targets_and_reports_dangling_ones(nameserver):
    config = Config(lookup_nameservers=[nameserver], dns_timeout=2)
    handler = ResolverHandler(config, make_lookup(config))
    snapshot = ZoneSnapshot(
        run_id="r",
        zone="example.test",
        records=[
            ZoneRecord("CNAME", "www", "edge.provider.test."),
            ZoneRecord("CNAME", "old", "gone.provider.test."),
            ZoneRecord("CNAME", "note", "txt-only.provider.test."),
        ],
    )
    jobs, plan = handler.plan(snapshot)
    assert sorted((j.fqdn, j.ip_address) for j in jobs) == [
        ("www.example.test", "192.0.2.10"),
        ("www.example.test", "2001:db8::10"),
    ]
    assert [(f.fqdn, f.finding.code, f.finding.message) for f in plan.findings] == [
        ("old.example.test", findings.Code.DANGLING_CNAME, "CNAME target gone.provider.test does not exist"),
        (
            "note.example.test",
            findings.Code.DANGLING_CNAME,
            "cannot resolve CNAME target txt-only.provider.test: txt-only.provider.test has no A or AAAA records",
        ),
    ]


def test_a_silent_nameserver_costs_about_the_dns_timeout():
    # a bound UDP socket that never answers: the lookup must give up, not hang
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        lookup = make_lookup(Config(lookup_nameservers=[f"127.0.0.1:{port}"], dns_timeout=1))
        start = time.monotonic()
        answer = lookup("anything.example")
        elapsed = time.monotonic() - start
    assert answer.addresses == () and answer.error is not None and "timed out" in answer.error
    assert elapsed < 5  # A and AAAA, each bounded by dns_timeout (generous bound, not a benchmark)


def test_without_nameservers_nothing_is_asked_of_the_system_resolver():
    answer = make_lookup(Config())("example.com")
    assert answer.addresses == () and answer.error == "no lookup_nameservers configured"


def test_a_dead_first_nameserver_does_not_hide_a_working_second_one(nameserver):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{silent.getsockname()[1]}"
        lookup = make_lookup(Config(lookup_nameservers=[dead, nameserver], dns_timeout=1))
        answer = lookup("cdn.provider.test")
    assert sorted(answer.addresses) == ["192.0.2.10", "2001:db8::10"]
