"""Which zones a config names, isolation per zone, and serving unchanged zones from the cache."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from services.collector import axfr, sources, zonefile
from services.collector.serials import SerialStore
from shared import findings
from shared.config import BindServer
from shared.messages import ZoneSnapshot
from tests.collector.collecting import collect, zone_names
from tests.collector.knot import KnotServer, KnotZone, start_knot
from tests.collector.zones import small_zone
from tests.configs import config_from


def test_zone_names_from_every_kind_of_source(tmp_path: Path) -> None:
    config = config_from(
        {
            "zone_data_sources": {
                "primary": {
                    "type": "BIND",
                    "config": {"server_ip": "127.0.0.1", "server_port": 5353},
                    "zones": ["Example.COM.", "b.test"],
                },
                "git": {"type": "FILE", "files": {"files.test.": str(tmp_path / "f.zone")}},
            },
            "nameserver_zones": {"[::1]:5300": ["v6.test"], "127.0.0.2": ["legacy.test", "b.test"]},
        }
    )
    assert zone_names(config) == ["example.com", "b.test", "files.test", "v6.test", "legacy.test"]
    tasks = {t.zone: t for t in sources.zone_tasks(config)}
    assert tasks["b.test"].source == "axfr:127.0.0.1:5353"  # first source wins
    assert tasks["v6.test"].server is not None and tasks["v6.test"].server.server_port == 5300
    assert tasks["legacy.test"].server is not None and tasks["legacy.test"].server.server_port == 53
    assert tasks["files.test"].path == str(tmp_path / "f.zone")


def test_bad_legacy_nameserver_is_a_config_error_not_a_crash() -> None:
    with pytest.raises(msgspec.ValidationError, match="not an IP address"):
        config_from({"nameserver_zones": {"ns1.example.test": ["x.test"]}})


def test_one_failing_zone_does_not_stop_the_others(
    knot: KnotServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.zone"
    broken.write_text("$ORIGIN broken.test.\nwww A not-an-address\n")
    good_file = tmp_path / "files.zone"
    good_file.write_text(small_zone("files.test"))
    config = config_from(
        {
            "zone_data_sources": {
                "knot": {
                    "type": "BIND",
                    "config": {"server_ip": knot.address, "server_port": knot.port, "timeout": 2, "retries": 0},
                    "zones": ["small.test", "refused.test", "secret.test", "also.test"],
                },
                "files": {"type": "FILE", "files": {"broken.test": str(broken), "files.test": str(good_file)}},
            },
            "nameserver_zones": {f"{knot.address}:{knot.port}": ["not-served.test", "bulk.test"]},
        }
    )
    caplog.set_level("INFO", logger="dcc")
    snaps = {s.zone: s for s in collect(config, "run-1")}
    assert list(snaps) == zone_names(config)
    failed = {zone: s.failure.finding.code for zone, s in snaps.items() if s.failure}
    assert failed == {
        "refused.test": findings.Code.ZONE_TRANSFER_REFUSED,
        "secret.test": findings.Code.ZONE_TRANSFER_REFUSED,
        "not-served.test": findings.Code.ZONE_TRANSFER_REFUSED,
        "broken.test": findings.Code.ZONE_FILE_INVALID,
    }
    assert len(snaps["bulk.test"].records) > 10_000
    assert snaps["small.test"].records and snaps["also.test"].records and snaps["files.test"].records
    assert {s.run_id for s in snaps.values()} == {"run-1"}
    # one error line per failed zone, naming it
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 4
    assert all(any(zone in line and code in line for line in errors) for zone, code in failed.items())
    summary = sources.summary_line("run-1", 5, [s for s in snaps.values() if s.failure])
    assert "4 failed" in summary and "refused.test (ZONE_TRANSFER_REFUSED)" in summary


class Counting:
    """Counts the real transfers (AXFR) and zone file reads; each call still does the real thing."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[str] = Counter()
        real_transfer, real_read = axfr.transfer, zonefile.read_zone_file

        def transfer(server: BindServer, zone: str) -> axfr.Transfer:
            self.calls[zone] += 1
            return real_transfer(server, zone)

        def read_zone_file(zone: str, path: str | Path) -> zonefile.ZoneFile:
            self.calls[zone] += 1
            return real_read(zone, path)

        monkeypatch.setattr(axfr, "transfer", transfer)
        monkeypatch.setattr(zonefile, "read_zone_file", read_zone_file)


def content(snap: ZoneSnapshot) -> list[tuple[str, str, str, int | None]]:
    return sorted((r.type, r.name, r.target, r.ttl) for r in snap.records)


def reload_zone(server: KnotServer, zone: str) -> None:
    subprocess.run(
        ["knotc", "-c", str(server.workdir / "knot.conf"), "-b", "zone-reload", zone],
        check=True,
        capture_output=True,
        timeout=10,
    )


def test_unchanged_zones_are_served_from_the_cache_and_still_in_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # a server of its own: this test changes a zone and counts its transfers in Knot's log
    server = start_knot(tmp_path / "knot", [KnotZone("moving.test", small_zone("moving.test", serial=1))])
    try:
        zone_file = tmp_path / "git.zone"
        zone_file.write_text(small_zone("git.test", serial=1))
        config = config_from(
            {
                "state_dir": str(tmp_path / "state"),
                "zone_data_sources": {
                    "knot": {
                        "type": "BIND",
                        "config": {"server_ip": server.address, "server_port": server.port},
                        "zones": ["moving.test"],
                    },
                    "git": {"type": "FILE", "files": {"git.test": str(zone_file)}},
                },
            }
        )
        counting = Counting(monkeypatch)
        caplog.set_level("INFO", logger="dcc")

        def run(run_id: str) -> tuple[dict[str, ZoneSnapshot], list[str]]:
            serials = SerialStore.for_config(config)
            assert serials is not None
            plan = sources.plan(config, serials)
            assert plan.zones == ["moving.test", "git.test"]  # every zone, every run
            from_cache: list[str] = []
            snaps = {s.zone: s for s in collect(config, run_id, serials, tasks=plan.collect, from_cache=from_cache)}
            assert list(snaps) == plan.zones
            assert all(s.run_id == run_id and s.failure is None and s.records for s in snaps.values())
            return snaps, from_cache

        first, from_cache = run("r1")
        assert from_cache == [] and counting.calls == {"moving.test": 1, "git.test": 1}
        assert server.transfers("moving.test") == 1
        assert (tmp_path / "state" / "collector-serials.json").is_file()
        assert len(list((tmp_path / "state" / "collector-zones").glob("*.msgpack"))) == 2

        caplog.clear()
        second, from_cache = run("r2")
        assert from_cache == ["moving.test", "git.test"]
        assert counting.calls == {"moving.test": 1, "git.test": 1}  # no transfer, no file read
        assert server.transfers("moving.test") == 1  # Knot served no AXFR
        for zone in ("moving.test", "git.test"):
            assert content(second[zone]) == content(first[zone]) and second[zone].serial == first[zone].serial == 1
            assert any(zone in r.getMessage() and "from the cache" in r.getMessage() for r in caplog.records)
        # the cache holds what the server serves
        direct = axfr.transfer(BindServer(server_ip=server.address, server_port=server.port), "moving.test")
        assert content(second["moving.test"]) == content(ZoneSnapshot(run_id="x", zone="z", records=direct.records))
        counting.calls.clear()

        # without a store every zone is transferred
        assert [s.zone for s in collect(config, "r")] == ["moving.test", "git.test"]
        assert counting.calls == {"moving.test": 1, "git.test": 1}
        counting.calls.clear()
        transfers = server.transfers("moving.test")

        # a new serial (and a new record) on the server: transferred again, the new record is in
        server.zone_file("moving.test").write_text(small_zone("moving.test", serial=2) + "new A 127.0.0.99\n")
        reload_zone(server, "moving.test")
        third, from_cache = run("r3")
        assert from_cache == ["git.test"] and counting.calls == {"moving.test": 1}
        assert server.transfers("moving.test") == transfers + 1
        assert third["moving.test"].serial == 2 and ("A", "new", "127.0.0.99", 300) in content(third["moving.test"])
        counting.calls.clear()

        # new bytes in the file (same SOA serial): read again; the server's zone now from the cache
        zone_file.write_text(small_zone("git.test", serial=1) + "new A 192.0.2.9\n")
        fourth, from_cache = run("r4")
        assert from_cache == ["moving.test"] and counting.calls == {"git.test": 1}
        assert content(fourth["moving.test"]) == content(third["moving.test"]) and fourth["moving.test"].serial == 2
        assert ("A", "new", "192.0.2.9", 300) in content(fourth["git.test"])
        counting.calls.clear()

        # a cache file gone (say, state_dir from before the cache existed): transferred, cached again
        store = SerialStore.for_config(config)
        assert store is not None
        store.cache_path(server_source(server), "moving.test").unlink()
        fifth, from_cache = run("r5")
        assert from_cache == ["git.test"] and counting.calls == {"moving.test": 1}
        assert server.transfers("moving.test") == transfers + 2
        assert content(fifth["moving.test"]) == content(fourth["moving.test"])
        assert store.cache_path(server_source(server), "moving.test").is_file()
        counting.calls.clear()

        # an unreadable cache file: read the zone file again
        store.cache_path("file:" + str(zone_file), "git.test").write_bytes(b"\x00not msgpack")
        sixth, from_cache = run("r6")
        assert from_cache == ["moving.test"] and counting.calls == {"git.test": 1}
        assert content(sixth["git.test"]) == content(fourth["git.test"])
        counting.calls.clear()
        _, from_cache = run("r7")
        assert from_cache == ["moving.test", "git.test"] and not counting.calls
    finally:
        server.stop()


def server_source(server: KnotServer) -> str:
    return f"axfr:{server.address}:{server.port}"


def test_stale_cache_is_not_served(knot: KnotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache file from another collection than the recorded one (e.g. a crash between the two writes)."""
    config = config_from(
        {"state_dir": str(tmp_path), "nameserver_zones": {f"{knot.address}:{knot.port}": ["also.test"]}}
    )
    store = SerialStore.for_config(config)
    assert store is not None
    list(collect(config, "r1", store))
    # the recorded serial says 5, the cache file now says 4
    assert store.record(server_source(knot), "also.test", 4, None, [])
    store = SerialStore.for_config(config)  # the serials file still says 5: record() did not save
    assert store is not None and store.unchanged(server_source(knot), "also.test", 5)
    counting = Counting(monkeypatch)
    from_cache: list[str] = []
    (snap,) = collect(config, "r2", store, from_cache=from_cache)
    assert from_cache == [] and counting.calls == {"also.test": 1} and snap.serial == 5 and snap.records


def test_failed_zone_is_not_recorded_and_is_tried_again(
    knot: KnotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_from(
        {
            "state_dir": str(tmp_path),
            "nameserver_zones": {f"{knot.address}:{knot.port}": ["refused.test", "small.test"]},
        }
    )
    store = SerialStore.for_config(config)
    assert store is not None
    list(collect(config, "r", store))
    assert store.get(server_source(knot), "refused.test") is None
    assert not store.cache_path(server_source(knot), "refused.test").exists()
    again = SerialStore.for_config(config)
    assert again is not None
    plan = sources.plan(config, again)
    # refused.test answers its SOA query but its transfer failed: transferred again; both in the run
    assert plan.zones == ["refused.test", "small.test"]
    assert [t.zone for t in plan.unchanged] == ["small.test"]
    counting = Counting(monkeypatch)
    snaps = list(collect(config, "r2", again, tasks=plan.collect))
    assert counting.calls == {"refused.test": 1}
    assert snaps[0].failure is not None and snaps[0].failure.finding.code == findings.Code.ZONE_TRANSFER_REFUSED
    assert snaps[1].failure is None and snaps[1].records
