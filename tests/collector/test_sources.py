"""Which zones a config names, isolation per zone, and skipping unchanged zones."""

from __future__ import annotations

import subprocess
from pathlib import Path

import msgspec
import pytest

from services.collector import sources
from services.collector.serials import SerialStore
from shared import findings
from shared.config import Config
from tests.collector.knot import KnotServer, KnotZone, start_knot
from tests.collector.zones import small_zone


def config_from(data: dict[str, object]) -> Config:
    return msgspec.json.decode(msgspec.json.encode(data), type=Config)


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
    assert sources.zone_names(config) == ["example.com", "b.test", "files.test", "v6.test", "legacy.test"]
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
    snaps = {s.zone: s for s in sources.collect(config, "run-1")}
    assert list(snaps) == sources.zone_names(config)
    failed = {zone: s.failure.finding.code for zone, s in snaps.items() if s.failure}
    assert failed == {
        "refused.test": findings.ZONE_TRANSFER_REFUSED,
        "secret.test": findings.ZONE_TRANSFER_REFUSED,
        "not-served.test": findings.ZONE_TRANSFER_REFUSED,
        "broken.test": findings.ZONE_FILE_INVALID,
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


def test_skip_unchanged_zones_by_serial_and_file_hash(tmp_path: Path) -> None:
    # a server of its own: this test changes a zone
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

        def run() -> tuple[list[str], list[str]]:
            serials = SerialStore.for_config(config)
            assert serials is not None
            plan = sources.plan(config, serials)
            collected = [s.zone for s in sources.collect_tasks(plan.collect, "r", serials)]
            return collected, [task.zone for task, _ in plan.skipped]

        assert run() == (["moving.test", "git.test"], [])
        assert (tmp_path / "state" / "collector-serials.json").is_file()
        assert run() == ([], ["moving.test", "git.test"])
        # without a store nothing is skipped
        assert [s.zone for s in sources.collect(config, "r")] == ["moving.test", "git.test"]

        # a new serial on the server, new bytes in the file
        server.zone_file("moving.test").write_text(small_zone("moving.test", serial=2))
        subprocess.run(
            ["knotc", "-c", str(server.workdir / "knot.conf"), "-b", "zone-reload", "moving.test"],
            check=True,
            capture_output=True,
            timeout=10,
        )
        assert run() == (["moving.test"], ["git.test"])
        zone_file.write_text(small_zone("git.test", serial=1) + "new A 192.0.2.9\n")
        assert run() == (["git.test"], ["moving.test"])
    finally:
        server.stop()


def test_failed_zone_is_not_recorded_and_is_tried_again(knot: KnotServer, tmp_path: Path) -> None:
    config = config_from(
        {
            "state_dir": str(tmp_path),
            "nameserver_zones": {f"{knot.address}:{knot.port}": ["refused.test", "small.test"]},
        }
    )
    store = SerialStore.for_config(config)
    assert store is not None
    list(sources.collect(config, "r", store))
    again = SerialStore.for_config(config)
    assert again is not None
    plan = sources.plan(config, again)
    # refused.test answers its SOA query but its transfer failed: collected again
    assert plan.zones == ["refused.test"]
    assert [t.zone for t, _ in plan.skipped] == ["small.test"]
