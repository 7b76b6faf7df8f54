"""Catalog zones (RFC 9432) from a real Knot: the members are discovered, transferred and followed
from run to run (a zone added is scanned from the next run on, a zone removed is reported once)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.collector import catalog, fetch_zones, sources
from services.collector.known_zones import FILE_NAME
from services.collector.runs import CollectOptions, plan_run, start_run
from services.collector.serials import SerialStore
from shared import findings
from shared.config import BindServer, Config
from shared.messages import RunStarted, ZoneSnapshot
from shared.transport.base import REPORT, RESOLVE
from shared.transport.memory import InMemoryTransport
from tests.collector.collecting import collect, drain
from tests.collector.knot import DENY, KnotServer, KnotZone, reload_knot, start_knot
from tests.configs import config_from

pytestmark = pytest.mark.slow  # a real Knot


def member_zone(zone: str, last_octet: int, serial: int = 1) -> str:
    return (
        f"$ORIGIN {zone}.\n$TTL 300\n@ SOA ns1 hostmaster {serial} 3600 600 86400 300\n@ NS ns1\n"
        f"ns1 A 127.0.0.1\n@ A 127.0.0.{last_octet}\nwww CNAME @\n"
    )


def static_catalog(zone: str, version: str) -> str:
    """A catalog written by hand (served as a plain zone): version 1 layout, properties, oddities."""
    return (
        f"$ORIGIN {zone}.\n$TTL 0\n@ SOA invalid. invalid. 1 3600 600 86400 0\n@ NS invalid.\n"
        f'version TXT "{version}"\n'
        "m1.zones PTR one.test.\n"
        "m2.zones PTR two.test.\n"
        "again.zones PTR two.test.\n"  # one zone under two unique ids: one zone
        'group.m2.zones TXT "blue"\n'  # a property: ignored
        "coo.m1.zones PTR elsewhere.catalog.\n"  # a property (change of ownership): ignored
        "dup.zones PTR x.test.\n"  # two PTRs at one member node: that member is ignored
        "dup.zones PTR y.test.\n"
        "rev.zones PTR 2.0.192.in-addr.arpa.\n"  # a reverse zone: excluded by default
        'serial TXT "not a member"\n'
    )


MEMBERS = ["one.test", "two.test", "three.test"]


def knot_zones(members: list[str]) -> list[KnotZone]:
    zones = [KnotZone("catalog.test", "", catalog_role="generate")]
    for i, name in enumerate(members):
        zones.append(KnotZone(name, member_zone(name, 50 + i), catalog_role="member", catalog_zone="catalog.test"))
    return zones


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    """catalog.test (generated: one, two, three and denied.test, which refuses transfers), v1cat.test and
    v9cat.test (hand-written, versions 1 and 9), refused-cat.test (a catalog nobody may transfer)."""
    zones = [
        *knot_zones(MEMBERS),
        KnotZone("denied.test", member_zone("denied.test", 60), DENY, "member", "catalog.test"),
        KnotZone("v1cat.test", static_catalog("v1cat.test", "1")),
        KnotZone("v9cat.test", static_catalog("v9cat.test", "9")),
        KnotZone("refused-cat.test", static_catalog("refused-cat.test", "2"), DENY),
        KnotZone("2.0.192.in-addr.arpa", member_zone("2.0.192.in-addr.arpa", 70)),
        KnotZone("named.test", member_zone("named.test", 80)),
    ]
    server = start_knot(tmp_path_factory.mktemp("knot-catalog"), zones)
    try:
        yield server
    finally:
        server.stop()


def server_of(knot: KnotServer) -> dict[str, object]:
    return {"server_ip": knot.address, "server_port": knot.port, "timeout": 2, "lifetime": 30, "retries": 1}


def catalog_config(
    knot: KnotServer, catalog_zone: str, zones: list[str] | None = None, state_dir: Path | None = None, **source: object
) -> Config:
    entry = {"type": "BIND", "config": server_of(knot), "catalog": catalog_zone, "zones": zones or [], **source}
    data: dict[str, object] = {"zone_data_sources": {"cat": entry}}
    if state_dir is not None:
        data["state_dir"] = str(state_dir)
    return config_from(data)


def by_zone(snapshots: list[ZoneSnapshot]) -> dict[str, ZoneSnapshot]:
    return {s.zone: s for s in snapshots}


def test_the_members_of_a_catalog_knot_generates_are_collected_after_the_named_zones(catalogs: KnotServer) -> None:
    config = catalog_config(catalogs, "catalog.test", ["named.test"])
    plan = sources.plan(config)
    assert plan.zones == ["named.test", "catalog.test", "denied.test", "one.test", "three.test", "two.test"]
    assert plan.discovered == {"cat": ["denied.test", "one.test", "three.test", "two.test"]}
    snaps = by_zone(collect(config, "run-1", tasks=plan.collect))
    assert sorted((r.type, r.name, r.target) for r in snaps["one.test"].records) == [
        ("A", "@", "127.0.0.50"),
        ("A", "ns1", "127.0.0.1"),
        ("CNAME", "www", "@"),
    ]
    assert snaps["three.test"].failure is None and snaps["named.test"].records
    # the catalog itself is in the run, with nothing to scan
    assert snaps["catalog.test"].records == [] and snaps["catalog.test"].failure is None


def test_a_member_that_refuses_the_transfer_is_one_finding_and_the_others_go_on(catalogs: KnotServer) -> None:
    snaps = by_zone(collect(catalog_config(catalogs, "catalog.test"), "run-1"))
    failed = [zone for zone, snap in snaps.items() if snap.failure is not None]
    assert failed == ["denied.test"]
    failure = snaps["denied.test"].failure
    assert failure is not None and failure.finding.code == findings.Code.ZONE_TRANSFER_REFUSED
    assert (failure.ip_address, failure.port, failure.fqdn) == (catalogs.address, catalogs.port, "denied.test")
    assert all(snaps[zone].records for zone in MEMBERS)


def test_a_version_1_catalog_is_read_and_its_properties_and_oddities_are_ignored(catalogs: KnotServer) -> None:
    read = catalog.read(BindServer(catalogs.address, catalogs.port, timeout=2.0), "v1cat.test")
    assert read.version == "1"
    assert read.members == ["2.0.192.in-addr.arpa", "one.test", "two.test"]  # not x.test / y.test (two PTRs)
    assert read.serial == 1


def test_a_discovered_reverse_zone_is_excluded_by_default_and_collected_when_named(catalogs: KnotServer) -> None:
    assert sources.plan(catalog_config(catalogs, "v1cat.test")).zones == ["v1cat.test", "one.test", "two.test"]
    named = catalog_config(catalogs, "v1cat.test", ["2.0.192.in-addr.arpa"])
    assert sources.plan(named).zones == ["2.0.192.in-addr.arpa", "v1cat.test", "one.test", "two.test"]
    everything = catalog_config(catalogs, "v1cat.test", exclude_zones=["t*.test"])
    assert sources.plan(everything).zones == ["v1cat.test", "2.0.192.in-addr.arpa", "one.test"]


def test_a_catalog_of_an_unknown_version_is_one_finding_and_the_named_zones_go_on(catalogs: KnotServer) -> None:
    config = catalog_config(catalogs, "v9cat.test", ["named.test"])
    plan = sources.plan(config)
    assert plan.zones == ["named.test", "v9cat.test"] and plan.discovered == {"cat": None}
    snaps = by_zone(collect(config, "run-1", tasks=plan.collect))
    failure = snaps["v9cat.test"].failure
    assert failure is not None and failure.finding.code == findings.Code.ZONE_TRANSFER_FAILED
    assert "schema version '9'" in failure.finding.message and "only version 1 or 2" in failure.finding.message
    assert snaps["named.test"].records


def test_a_catalog_the_server_refuses_is_one_finding_for_the_catalog(catalogs: KnotServer) -> None:
    snaps = collect(catalog_config(catalogs, "refused-cat.test", ["named.test"]), "run-1")
    assert [s.zone for s in snaps] == ["named.test", "refused-cat.test"]
    failure = snaps[1].failure
    assert failure is not None and failure.finding.code == findings.Code.ZONE_TRANSFER_REFUSED
    assert (failure.ip_address, failure.port, failure.fqdn) == (catalogs.address, catalogs.port, "refused-cat.test")
    assert failure.finding.message.startswith(f"zone transfer refused by {catalogs.address}:{catalogs.port}")


def test_fetch_zones_writes_the_discovered_zones_and_not_the_catalog(catalogs: KnotServer, tmp_path: Path) -> None:
    out = tmp_path / "zones.json"
    assert fetch_zones.main(catalog_config(catalogs, "v1cat.test", ["named.test"]), str(out)) == 0
    written = json.loads(out.read_text())
    assert list(written) == ["named.test", "one.test", "two.test"]
    assert {"type": "A", "name": "@", "ttl": 300, "target": "127.0.0.50"} in written["one.test"]
    # a failing member makes fetch-zones exit 1, after writing the others
    assert fetch_zones.main(catalog_config(catalogs, "catalog.test"), str(out)) == 1
    assert sorted(json.loads(out.read_text())) == sorted(MEMBERS)
    assert not (tmp_path / FILE_NAME).exists()  # fetch-zones records no discovery


def test_a_config_without_catalog_plans_exactly_as_before(catalogs: KnotServer, tmp_path: Path) -> None:
    config = config_from(
        {
            "state_dir": str(tmp_path),
            "zone_data_sources": {"ns": {"type": "BIND", "config": server_of(catalogs), "zones": ["named.test"]}},
        }
    )
    planned = plan_run(config, CollectOptions())
    assert planned.zones == ["named.test"] and planned.discovered == {} and planned.known is None
    transport = InMemoryTransport()
    transport.declare([REPORT, RESOLVE])
    start_run(transport, planned)
    consumer = transport.consumer(REPORT, prefetch=10)
    delivery = consumer.get(timeout=0)
    assert delivery is not None and b"new_zones" not in delivery.body and b"removed_zones" not in delivery.body
    assert not (tmp_path / FILE_NAME).exists()


# --- from run to run: Knot's config changes between runs ------------------------------------------


def run_once(config: Config, skip_unchanged: bool = True) -> tuple[RunStarted, dict[str, ZoneSnapshot]]:
    transport = InMemoryTransport()
    transport.declare([REPORT, RESOLVE])
    start_run(transport, plan_run(config, CollectOptions(skip_unchanged=skip_unchanged)))
    started = drain(transport, REPORT)
    assert len(started) == 1 and isinstance(started[0], RunStarted)
    snaps = [s for s in drain(transport, RESOLVE) if isinstance(s, ZoneSnapshot)]
    return started[0], by_zone(snaps)


def wait_for_members(knot: KnotServer, expected: list[str], timeout: float = 20.0) -> None:
    """Knot regenerates its catalog after a reload: until then the old members are served."""
    server = BindServer(knot.address, knot.port, timeout=2.0)
    deadline = time.monotonic() + timeout
    while (members := catalog.read(server, "catalog.test").members) != sorted(expected):
        assert time.monotonic() < deadline, f"catalog still lists {members}, not {sorted(expected)}"
        time.sleep(0.1)


def test_a_zone_added_to_knot_is_scanned_from_the_next_run_and_a_removed_one_reported_once(tmp_path: Path) -> None:
    knot = start_knot(tmp_path / "knot", knot_zones(MEMBERS))
    try:
        config = catalog_config(knot, "catalog.test", state_dir=tmp_path / "state")
        first, snaps = run_once(config)
        assert first.zones == ["catalog.test", "one.test", "three.test", "two.test"]
        assert first.new_zones == ["one.test", "three.test", "two.test"] and first.removed_zones == []
        assert all(snaps[zone].records for zone in MEMBERS)
        catalog_reads = knot.transfers("catalog.test")

        reload_knot(knot, knot_zones([*MEMBERS, "four.test"]))
        wait_for_members(knot, [*MEMBERS, "four.test"])
        second, snaps = run_once(config)
        assert "four.test" in second.zones and snaps["four.test"].records  # scanned from this run on
        assert second.new_zones == ["four.test"] and second.removed_zones == []
        assert knot.transfers("catalog.test") > catalog_reads  # its serial changed: read again

        reload_knot(knot, knot_zones(["two.test", "three.test", "four.test"]))
        wait_for_members(knot, ["two.test", "three.test", "four.test"])
        third, snaps = run_once(config)
        assert "one.test" not in third.zones and "one.test" not in snaps
        assert third.removed_zones == ["one.test"] and third.new_zones == []

        catalog_reads = knot.transfers("catalog.test")
        fourth, _ = run_once(config)
        assert fourth.removed_zones == [] and fourth.new_zones == []  # reported once
        assert knot.transfers("catalog.test") == catalog_reads  # unchanged catalog: members from state_dir
        recorded = json.loads((tmp_path / "state" / FILE_NAME).read_text())
        assert recorded["cat"]["zones"] == ["four.test", "three.test", "two.test"]
    finally:
        knot.stop()


def test_an_unchanged_catalog_is_read_from_state_dir_but_its_members_are_still_collected(
    catalogs: KnotServer, tmp_path: Path
) -> None:
    config = catalog_config(catalogs, "v1cat.test")
    store = SerialStore(tmp_path / "serials.json")
    before = catalogs.transfers("v1cat.test")
    assert sources.plan(config, store).zones == ["v1cat.test", "one.test", "two.test"]
    store.save()
    assert catalogs.transfers("v1cat.test") == before + 1
    again = SerialStore(tmp_path / "serials.json")
    assert sources.plan(config, again).zones == ["v1cat.test", "one.test", "two.test"]
    assert catalogs.transfers("v1cat.test") == before + 1  # the SOA query said: unchanged
    assert len(collect(config, "run-2", again)) == 3
