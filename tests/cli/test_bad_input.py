"""Bad config.json / zones JSON: one clear line naming file, place and problem; exit 2; no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import EXIT_BAD_INPUT, main
from shared.config import ConfigError, load_config, parse_host_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"ssl_ports": [443, "x"]}', "Expected `int`, got `str` - at `$.ssl_ports[1]`"),
        ('{"ssl_port": [443]}', "unknown field `ssl_port`"),
        ('{"ssl_ports": [70000]}', "70000 is not a TCP port"),
        ('{"name_filters": ["("]}', "is not a regular expression"),
        ('{"lookup_nameservers": ["ns1.example.com"]}', "is not an IP address"),
        ('{"segments": {"dmz": ["10.0.0.0/33"]}}', "segments.dmz"),
        ('{"zone_data_sources": {"x": {"type": "ROUTE53"}}}', "$.zone_data_sources[...].type"),
        ('{"log_level": 30,', "truncated"),
        ('{"nameserver_zones": {"ns1.example.com": ["a.test"]}}', "'ns1.example.com' is not an IP address"),
        (
            '{"zone_data_sources": {"x": {"type": "BIND", "config": {"server_ip": "ns1"}, "zones": ["a.test"]}}}',
            "server_ip 'ns1' is not an IP address",
        ),
    ],
)
def test_config_errors_name_the_place(tmp_path, text, expected):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_original_config_example_loads():
    config = json.loads(
        '{"log_level": 30, "ssl_ports": [443], "min_time_to_expiration": 2592000,'
        ' "nameserver_zones": {"10.0.0.2": ["company.com", "internal_domain.lan"]},'
        ' "lookup_nameservers": ["10.0.0.2", "1.1.1.1", "127.0.0.1:5353", "[::1]:5353"]}'
    )
    path = Path("/tmp") / "dcc-original-config.json"
    path.write_text(json.dumps(config))
    loaded = load_config(path)
    assert loaded.nameservers() == [("10.0.0.2", 53), ("1.1.1.1", 53), ("127.0.0.1", 5353), ("::1", 5353)]
    assert loaded.nameserver_zones == {"10.0.0.2": ["company.com", "internal_domain.lan"]}


def test_parse_host_port_forms():
    assert parse_host_port("::1", 53) == ("::1", 53)
    assert parse_host_port("[2001:db8::1]:5300", 53) == ("2001:db8::1", 5300)
    with pytest.raises(ValueError):
        parse_host_port("[::1", 53)


def test_cli_reports_bad_zones_json_in_one_line(tmp_path, capsys):
    zones = tmp_path / "zones.json"
    zones.write_text('{"example.com": [{"type": "A", "name": "www", "ttl": "soon", "target": "192.0.2.1"}]}')
    code = main(["--from-zones-json", str(zones), "-o", str(tmp_path / "out.csv")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT
    assert err == f"dns-cert-checker: {zones}: Expected `int | null`, got `str` - at `$[...][0].ttl`"
    assert not (tmp_path / "out.csv").exists()


def test_cli_process_exits_2_without_traceback(tmp_path):
    (tmp_path / "config.json").write_text('{"bogus_key": true}')
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "-o", "out.csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == EXIT_BAD_INPUT
    assert proc.stderr.strip() == "dns-cert-checker: config.json: Object contains unknown field `bogus_key`"
    assert "Traceback" not in proc.stderr


def test_cli_without_zones_says_what_to_do(tmp_path, capsys):
    code = main(["run", "--config", str(_write(tmp_path / "c.json", "{}")), "-o", str(tmp_path / "o.csv")])
    assert code == EXIT_BAD_INPUT
    assert "no zones to scan" in capsys.readouterr().err


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_an_unwritable_csv_fails_the_run_in_one_line_instead_of_hanging(tmp_path, capsys):
    zones = _write(tmp_path / "zones.json", '{"a.test": [{"type": "CNAME", "name": "x", "ttl": 60, "target": "x"}]}')
    config = _write(tmp_path / "config.json", "{}")
    unwritable = tmp_path / "not-a-dir"
    unwritable.write_text("a file where the CSV's directory should be")
    code = main(["--from-zones-json", str(zones), "--config", str(config), "-o", str(unwritable / "out.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("dns-cert-checker: run ") and "could not be processed" in err[-1]


def test_the_config_named_by_dcc_config_is_used_when_no_config_flag_is_given(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "from-env.json"
    bad.write_text('{"ssl_ports": []}')
    monkeypatch.setenv("DCC_CONFIG", str(bad))
    monkeypatch.chdir(tmp_path)
    assert main(["fetch-zones", "-o", str(tmp_path / "zones.json")]) == EXIT_BAD_INPUT
    assert str(bad) in capsys.readouterr().err
    flag = tmp_path / "flag.json"
    flag.write_text('{"log_level": 300}')
    assert main(["fetch-zones", "--config", str(flag), "-o", str(tmp_path / "zones.json")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert str(flag) in err and str(bad) not in err, "--config wins over DCC_CONFIG"
