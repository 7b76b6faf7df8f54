"""Zone files (RFC 1035 master format) as a source."""

from __future__ import annotations

from pathlib import Path

from services.collector import zonefile
from shared import findings
from tests.collector.zones import small_zone


def test_zone_file_records(tmp_path: Path) -> None:
    path = tmp_path / "small.zone"
    path.write_text(small_zone("files.test", serial=42))
    result = zonefile.read_zone_file("files.test", path)
    assert result.serial == 42
    got = {(r.type, r.name, r.target) for r in result.records}
    assert ("CNAME", "www", "@") in got and ("A", "*", "127.0.0.13") in got
    assert {r.type for r in result.records} == {"A", "AAAA", "CNAME"}


def test_zone_file_without_soa_has_no_serial(tmp_path: Path) -> None:
    path = tmp_path / "bare.zone"
    path.write_text("$ORIGIN bare.test.\n$TTL 60\nwww A 192.0.2.1\n")
    result = zonefile.read_zone_file("bare.test", path)
    assert result.serial is None
    assert [(r.type, r.name, r.target, r.ttl) for r in result.records] == [("A", "www", "192.0.2.1", 60)]


def test_broken_zone_file_is_a_finding_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.zone"
    path.write_text("$ORIGIN broken.test.\n$TTL 60\n@ SOA ns hm 1 1 1 1 1\nwww A 999.1.1.1\nok A 192.0.2.2\n")
    snap = zonefile.snapshot("broken.test", path, "run-1")
    assert snap.records == []
    assert snap.failure is not None
    assert snap.failure.finding.code == findings.Code.ZONE_FILE_INVALID
    assert snap.failure.fqdn == "broken.test"
    assert str(path) in snap.failure.finding.message
    assert "line 5" in snap.failure.finding.message or "line 4" in snap.failure.finding.message


def test_missing_zone_file(tmp_path: Path) -> None:
    snap = zonefile.snapshot("gone.test", tmp_path / "nope.zone", "run-1")
    assert snap.failure is not None
    assert snap.failure.finding.code == findings.Code.ZONE_FILE_INVALID
    assert "cannot read" in snap.failure.finding.message


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    path = tmp_path / "z.zone"
    path.write_text("a")
    first = zonefile.fingerprint(path)
    path.write_text("b")
    assert first and first != zonefile.fingerprint(path)
    assert zonefile.fingerprint(tmp_path / "missing") is None


def test_only_kept_types_whatever_the_zone_name_spelling(tmp_path: Path) -> None:
    path = tmp_path / "mixed.zone"
    path.write_text(
        "$ORIGIN Mixed.Test.\n$TTL 60\n"
        "@ SOA ns hm 9 1 1 1 1\n"
        "@ NS ns\n"
        "ns A 192.0.2.53\n"
        "Www CNAME @\n"
        "v6 120 AAAA 2001:db8::1\n"
        "mx MX 10 ns\n"
        "txt TXT hello\n"
        "abs CNAME elsewhere.example.\n"
    )
    expected = [
        ("A", "ns", "192.0.2.53", 60),
        ("AAAA", "v6", "2001:db8::1", 120),
        ("CNAME", "Www", "@", 60),
        ("CNAME", "abs", "elsewhere.example.", 60),
    ]
    for spelling in ("mixed.test", "Mixed.TEST.", "mixed.test."):
        result = zonefile.read_zone_file(spelling, path)
        assert result.serial == 9
        assert sorted((r.type, r.name, r.target, r.ttl) for r in result.records) == expected
