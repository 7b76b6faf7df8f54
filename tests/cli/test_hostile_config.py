"""Bad config and input files through the real entry point: one line on stderr, exit 2, never a
traceback, a hang or a MemoryError (issue 10, defect 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli import EXIT_BAD_INPUT, main

DEV_ZERO = Path("/dev/zero")
ZONES = {"a.test": [{"type": "CNAME", "name": "x", "ttl": 60, "target": "nowhere"}]}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], config: object, *extra: str) -> tuple[int, list[str]]:
    """``run`` with ``config`` (a dict written as JSON, or a path) on a small zones JSON."""
    config_path = config if isinstance(config, Path) else _write(tmp_path / "config.json", json.dumps(config))
    zones = _write(tmp_path / "zones.json", json.dumps(ZONES))
    args = ["run", "--config", str(config_path), "--from-zones-json", str(zones), "-o", str(tmp_path / "o.csv")]
    code = main([*args, "--quiet", "--no-progress", *extra])
    err = capsys.readouterr().err
    return code, err.splitlines()


def assert_one_line(code: int, lines: list[str], *expected: str) -> str:
    assert code == EXIT_BAD_INPUT, lines
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("dns-cert-checker: ")
    assert "Traceback" not in line
    for text in expected:
        assert text in line, line
    return line


# --- custom_ca_file -----------------------------------------------------------------------------


def test_a_missing_custom_ca_file_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.pem"
    code, lines = run_cli(tmp_path, capsys, {"custom_ca_file": str(missing)})
    assert_one_line(code, lines, "custom_ca_file", str(missing))


def test_a_directory_as_custom_ca_file_is_one_line(tmp_path, capsys):
    code, lines = run_cli(tmp_path, capsys, {"custom_ca_file": str(tmp_path)})
    assert_one_line(code, lines, "custom_ca_file", str(tmp_path))


@pytest.mark.parametrize(
    "content",
    [
        "just some text\n",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        "",
    ],
    ids=["text", "garbage-in-pem-armour", "empty"],
)
def test_a_custom_ca_file_that_is_not_pem_is_one_line(tmp_path, capsys, content):
    path = _write(tmp_path / "ca.pem", content)
    code, lines = run_cli(tmp_path, capsys, {"custom_ca_file": str(path)})
    assert_one_line(code, lines, "custom_ca_file", str(path))


def test_dev_zero_as_custom_ca_file_is_one_line(tmp_path, capsys):
    code, lines = run_cli(tmp_path, capsys, {"custom_ca_file": str(DEV_ZERO)})
    assert_one_line(code, lines, "custom_ca_file", "/dev/zero")


def test_a_real_ca_file_is_accepted(tmp_path):
    from shared.config import load_config

    pem = tmp_path / "ca.pem"
    pem.write_bytes(_self_signed_pem())
    config = load_config(_write(tmp_path / "c.json", json.dumps({"custom_ca_file": str(pem)})))
    assert config.custom_ca_file == str(pem)


def _self_signed_pem() -> bytes:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


# --- endless and huge files ---------------------------------------------------------------------


def test_dev_zero_as_config_is_one_line(tmp_path, capsys):
    code, lines = run_cli(tmp_path, capsys, DEV_ZERO)
    assert_one_line(code, lines, "/dev/zero")


def test_dev_zero_as_zones_json_is_one_line(tmp_path, capsys):
    config = _write(tmp_path / "config.json", "{}")
    code = main(["--from-zones-json", str(DEV_ZERO), "--config", str(config), "-o", str(tmp_path / "o.csv")])
    lines = capsys.readouterr().err.splitlines()
    assert_one_line(code, lines, "/dev/zero")
    assert not (tmp_path / "o.csv").exists()


def test_dev_zero_as_a_zone_file_is_one_finding_and_the_other_zones_go_on(tmp_path, capsys):
    good = _write(tmp_path / "good.zone", "$ORIGIN good.test.\n$TTL 60\n@ SOA ns hm 1 1 1 1 1\nx CNAME nowhere\n")
    config = _write(
        tmp_path / "config.json",
        json.dumps(
            {
                "log_level": 50,
                "zone_data_sources": {
                    "git": {"type": "FILE", "files": {"zero.test": str(DEV_ZERO), "good.test": str(good)}}
                },
            }
        ),
    )
    out = tmp_path / "o.csv"
    main(["run", "--config", str(config), "-o", str(out), "--quiet", "--no-progress"])
    capsys.readouterr()
    rows = out.read_text().splitlines()[1:]
    zero = [r for r in rows if ",zero.test," in r]
    assert len(zero) == 1 and "/dev/zero" in zero[0] and "larger than" in zero[0], rows
    assert any("x.good.test" in r and "does not exist" in r for r in rows), rows


# --- name_filters -------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a*)*b", r"^(\w+\.?)+corp$", r"(a|aa)+$", r"\w+\w+\w+\d$"])
def test_a_catastrophically_backtracking_name_filter_is_refused_naming_it(tmp_path, capsys, pattern):
    code, lines = run_cli(tmp_path, capsys, {"name_filters": [r"^internal\.", pattern]})
    assert_one_line(code, lines, "name_filters", repr(pattern))


# --- ranges -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("network_timeout", 0),
        ("network_timeout", -1),
        ("network_timeout", 1e9),
        ("scan_timeout", 0),
        ("dns_timeout", -0.5),
        ("run_deadline", 0),
        ("scan_concurrency", 0),
        ("max_connections_per_ip", 0),
        ("min_time_to_expiration", -1),
        ("min_time_to_expiration", 10**15),
        ("log_level", -1),
        ("log_level", 51),
        ("log_level", 1000),
    ],
)
def test_every_numeric_key_has_a_range_and_the_error_names_the_key(tmp_path, capsys, key, value):
    code, lines = run_cli(tmp_path, capsys, {key: value})
    assert_one_line(code, lines, key)


@pytest.mark.parametrize(
    ("server", "key"),
    [
        ({"server_ip": "127.0.0.1", "timeout": 0}, "timeout"),
        ({"server_ip": "127.0.0.1", "lifetime": -1}, "lifetime"),
        ({"server_ip": "127.0.0.1", "retries": -1}, "retries"),
        ({"server_ip": "127.0.0.1", "retries": 1000}, "retries"),
        ({"server_ip": "127.0.0.1", "server_port": 0}, "server_port"),
    ],
)
def test_axfr_source_numbers_have_ranges(tmp_path, capsys, server, key):
    config = {"zone_data_sources": {"ns": {"type": "BIND", "config": server, "zones": ["a.test"]}}}
    code, lines = run_cli(tmp_path, capsys, config)
    assert_one_line(code, lines, key)


def test_no_ssl_ports_is_an_error_not_an_empty_run(tmp_path, capsys):
    code, lines = run_cli(tmp_path, capsys, {"ssl_ports": []})
    assert_one_line(code, lines, "ssl_ports")
    assert not (tmp_path / "o.csv").exists()


def test_a_port_out_of_range_is_named(tmp_path, capsys):
    code, lines = run_cli(tmp_path, capsys, {"ssl_ports": [443, 0]})
    assert_one_line(code, lines, "ssl_ports", "0 is not a TCP port")


def test_a_bad_wildcard_probe_label_is_named(tmp_path, capsys):
    code, lines = run_cli(tmp_path, capsys, {"wildcard_probe_label": "not a.label"})
    assert_one_line(code, lines, "wildcard_probe_label")


def test_a_control_character_in_a_key_cannot_make_a_second_line(tmp_path, capsys):
    code, lines = run_cli(tmp_path, capsys, _write(tmp_path / "c.json", '{"bad\\nforged line": 1}'))
    assert_one_line(code, lines, "unknown field", "bad\\nforged line")


def test_a_megabyte_key_is_not_echoed(tmp_path, capsys):
    code, lines = run_cli(tmp_path, capsys, _write(tmp_path / "c.json", json.dumps({"k" * 2**20: 1})))
    line = assert_one_line(code, lines, "unknown field")
    assert len(line) < 2000


def test_defaults_and_the_documented_bounds_are_accepted(tmp_path):
    from shared.config import load_config

    edge = {
        "log_level": 0,
        "network_timeout": 300,
        "scan_timeout": 3600,
        "dns_timeout": 0.1,
        "run_deadline": 2592000,
        "scan_concurrency": 1,
        "max_connections_per_ip": 1,
        "min_time_to_expiration": 0,
        "ssl_ports": [1, 65535],
    }
    load_config(_write(tmp_path / "c.json", json.dumps(edge)))
    load_config(_write(tmp_path / "d.json", "{}"))


def test_dev_zero_as_tsig_secret_file_is_one_line(tmp_path):
    from shared.config import ConfigError, TsigKey

    key = TsigKey(name="k", secret_file=str(DEV_ZERO))
    with pytest.raises(ConfigError) as info:
        key.secret()
    assert "/dev/zero" in str(info.value) and "\n" not in str(info.value)
