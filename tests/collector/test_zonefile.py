"""Zone files (RFC 1035 master format) as a source."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- hostile input (issue 10: defects 6 and 7) ---------------------------------------------------


def test_an_invalid_zone_name_is_a_finding_not_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "z.zone"
    path.write_text("$TTL 60\nwww A 192.0.2.1\n")
    zone = "l" * 64 + ".test"
    snap = zonefile.snapshot(zone, path, "run-1")
    assert snap.failure is not None
    assert snap.failure.finding.code == findings.Code.ZONE_FILE_INVALID
    assert "zone name" in snap.failure.finding.message
    huge = "h" * 2**20 + ".test"
    snap = zonefile.snapshot(huge, path, "run-1")
    assert snap.failure is not None and snap.failure.finding.code == findings.Code.ZONE_FILE_INVALID
    assert len(snap.failure.finding.message) < 500


def test_dev_zero_is_a_finding_without_reading_it_all(tmp_path: Path) -> None:
    snap = zonefile.snapshot("zero.test", "/dev/zero", "run-1")
    assert snap.failure is not None
    assert snap.failure.finding.code == findings.Code.ZONE_FILE_INVALID
    assert "/dev/zero" in snap.failure.finding.message and "larger than" in snap.failure.finding.message


def test_a_zone_file_over_the_cap_is_a_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zonefile, "MAX_ZONE_FILE_BYTES", 1000)
    path = tmp_path / "big.zone"
    path.write_text("$ORIGIN big.test.\n$TTL 60\n" + "".join(f"h{i} A 192.0.2.1\n" for i in range(200)))
    snap = zonefile.snapshot("big.test", path, "run-1")
    assert snap.failure is not None and "larger than" in snap.failure.finding.message
    path.write_text("$ORIGIN big.test.\n$TTL 60\nwww A 192.0.2.1\n")
    assert zonefile.snapshot("big.test", path, "run-1").failure is None


def test_an_included_endless_file_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "inc.zone"
    path.write_text("$ORIGIN inc.test.\n$TTL 60\nwww A 192.0.2.1\n$INCLUDE /dev/zero\n")
    snap = zonefile.snapshot("inc.test", path, "run-1")
    assert snap.failure is not None and snap.failure.finding.code == findings.Code.ZONE_FILE_INVALID
    assert "/dev/zero" in snap.failure.finding.message


def test_an_include_loop_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "loop.zone"
    path.write_text(f"$ORIGIN loop.test.\n$TTL 60\nwww A 192.0.2.1\n$INCLUDE {path}\n")
    snap = zonefile.snapshot("loop.test", path, "run-1")
    assert snap.failure is not None and snap.failure.finding.code == findings.Code.ZONE_FILE_INVALID


def test_an_ordinary_include_still_works(tmp_path: Path) -> None:
    part = tmp_path / "part.zone"
    part.write_text("extra A 192.0.2.7\n")
    path = tmp_path / "main.zone"
    path.write_text(f'$ORIGIN main.test.\n$TTL 60\nwww A 192.0.2.1\n$include "{part}"\n')
    result = zonefile.read_zone_file("main.test", path)
    assert sorted(r.name for r in result.records) == ["extra", "www"]


def test_a_generate_directive_that_would_make_billions_of_records_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "gen.zone"
    path.write_text("$ORIGIN gen.test.\n$TTL 60\n$GENERATE 1-4000000000 h$ A 192.0.2.1\n")
    snap = zonefile.snapshot("gen.test", path, "run-1")
    assert snap.failure is not None and "$GENERATE" in snap.failure.finding.message
    path.write_text("$ORIGIN gen.test.\n$TTL 60\n$GENERATE 1-3 h$ A 192.0.2.$\n")
    result = zonefile.read_zone_file("gen.test", path)
    assert sorted(r.name for r in result.records) == ["h1", "h2", "h3"]


def test_fingerprint_of_an_endless_file_ends(tmp_path: Path) -> None:
    assert zonefile.fingerprint("/dev/zero") is None


def test_generate_ranges_dnspython_would_choke_on_are_findings(tmp_path: Path) -> None:
    path = tmp_path / "gen.zone"
    for directive in ("$GENERATE 1-10/0 h$ A 192.0.2.1", "$GENERATE 0-" + "9" * 5000 + " h$ A 192.0.2.1"):
        path.write_text(f"$ORIGIN gen.test.\n$TTL 60\n{directive}\n")
        snap = zonefile.snapshot("gen.test", path, "run-1")
        assert snap.failure is not None and snap.failure.finding.code == findings.Code.ZONE_FILE_INVALID
        assert len(snap.failure.finding.message) < 500


_LINES = st.sampled_from(
    [
        "$ORIGIN fz.test.",
        "$TTL 60",
        "$TTL x",
        "@ SOA ns hm 1 1 1 1 1",
        "www A 192.0.2.1",
        "www A 999.0.0.1",
        "v6 AAAA ::1",
        "c CNAME www",
        "c CNAME " + "l" * 64,
        "* A 192.0.2.2",
        "$GENERATE 1-3 h$ A 192.0.2.$",
        "$GENERATE 1-3/0 h$ A 192.0.2.$",
        "$GENERATE 3-1 h$ A 192.0.2.$",
        "$INCLUDE /dev/null",
        "$INCLUDE",
        "( multi",
        ")",
        '"',
        "\\",
        ";",
    ]
)


@settings(max_examples=150, deadline=timedelta(seconds=2), database=None)
@given(st.lists(_LINES | st.text(max_size=30), max_size=8))
def test_whatever_a_zone_file_holds_it_is_records_or_a_finding(lines: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.zone"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
        snap = zonefile.snapshot("fz.test", path, "run-1")
        assert (snap.failure is None) or snap.failure.finding.code == findings.Code.ZONE_FILE_INVALID
