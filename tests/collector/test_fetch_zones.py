"""``fetch-zones`` writes the original's zones JSON; it round-trips to the same snapshots."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from services import cli
from services.collector import fetch_zones
from services.collector.zones_json import snapshots_from_zones_json
from shared.config import Config, load_zones_json
from tests.collector.collecting import collect
from tests.collector.knot import KnotServer
from tests.configs import config_from


def knot_config(knot: KnotServer, zones: list[str]) -> Config:
    data = {
        "zone_data_sources": {
            "knot": {
                "type": "BIND",
                "config": {"server_ip": knot.address, "server_port": knot.port, "timeout": 2, "retries": 0},
                "zones": zones,
            }
        }
    }
    return config_from(data)


def by_zone(snaps: list) -> dict[str, list[tuple[str, str, str, int | None]]]:
    return {s.zone: sorted((r.type, r.name, r.target, r.ttl) for r in s.records) for s in snaps if s.failure is None}


def test_round_trip_through_zones_json(knot: KnotServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = knot_config(knot, ["small.test", "refused.test", "bulk.test", "also.test"])
    out = tmp_path / "zones.json"
    caplog.set_level(logging.INFO, logger="dcc")
    status = fetch_zones.main(config, str(out))
    assert status == 1  # refused.test failed, the others are written
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "refused.test" in errors[0] and "ZONE_TRANSFER_REFUSED" in errors[0]

    raw = json.loads(out.read_text())
    assert list(raw) == ["small.test", "bulk.test", "also.test"]
    assert set(raw["small.test"][0]) == {"type", "name", "ttl", "target"}

    loaded = snapshots_from_zones_json("run-2", load_zones_json(out))
    direct = collect(config, "run-1")
    assert by_zone(loaded) == by_zone(direct)
    assert len(by_zone(loaded)["bulk.test"]) > 10_000


def test_all_good_exits_zero_and_writes_stdout(knot: KnotServer, capsys: pytest.CaptureFixture[str]) -> None:
    config = knot_config(knot, ["also.test"])
    assert fetch_zones.main(config, "-") == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["also.test"]
    assert {"type": "CNAME", "name": "www", "ttl": 300, "target": "@"} in data["also.test"]


def test_no_zones_configured_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("{}")
    assert cli.main(["fetch-zones", "--config", str(config), "-o", str(tmp_path / "z.json")]) == 2
    assert not (tmp_path / "z.json").exists()


def test_all_zones_failing_still_writes_valid_json(knot: KnotServer, tmp_path: Path) -> None:
    out = tmp_path / "zones.json"
    assert fetch_zones.main(knot_config(knot, ["refused.test"]), str(out)) == 1
    assert json.loads(out.read_text()) == {}
