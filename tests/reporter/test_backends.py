"""BACKENDS_DISAGREE: the pure comparison (services/reporter/backends.py) and build_report's use of it."""

from __future__ import annotations

import csv
import json
import random
from datetime import UTC, datetime
from pathlib import Path

from services.reporter.alerts.problems import problems_of
from services.reporter.backends import disagreements
from services.reporter.handler import ReporterHandler
from services.reporter.outputs import DirectorySink
from services.reporter.report import Row, RunReport
from shared import findings
from shared.config import Config
from shared.messages import CertificateFacts, PlannedJob, RunStarted, ScanResult, ZonePlan, job_id

NOW = datetime(2026, 11, 29, tzinfo=UTC)
CURRENT = datetime(2027, 11, 30, 8, 15, tzinfo=UTC)
OLD = datetime(2026, 12, 5, 23, 59, tzinfo=UTC)
CODE = findings.Code.BACKENDS_DISAGREE


def facts(fingerprint: str, not_after: datetime = CURRENT) -> CertificateFacts:
    return CertificateFacts(
        subject="CN=www.example.com",
        issuer="CN=Lab Intermediate CA",
        not_before=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=not_after,
        sha256=fingerprint * (64 // len(fingerprint)),
    )


def scanned(
    ip: str,
    certificate: CertificateFacts | None,
    fqdn: str = "www.example.com",
    port: int = 443,
    zone: str = "example.com",
    found: tuple[findings.Finding, ...] = (),
) -> ScanResult:
    return ScanResult(
        job_id=job_id("r1", ip, port, fqdn, fqdn),
        run_id="r1",
        zone=zone,
        ip_address=ip,
        port=port,
        fqdn=fqdn,
        findings=list(found),
        scanned_at=NOW,
        certificate=certificate,
        segment="default",
    )


def messages(rows: list[Row]) -> list[str]:
    return [row.finding.message for row in rows]


def test_three_backends_of_which_two_share_a_leaf_give_one_warning_about_the_name():
    results = [
        scanned("127.0.0.3", facts("cc", CURRENT)),
        scanned("127.0.0.1", facts("aa", OLD)),
        scanned("127.0.0.2", facts("aa", OLD)),
    ]

    [row] = disagreements(results)

    assert row == Row(
        "example.com",
        "",
        443,
        "www.example.com",
        findings.Finding(
            code="BACKENDS_DISAGREE",
            status="warning",
            message=(
                "2 of 3 backends of www.example.com:443 serve a certificate expiring 2026-12-05 "
                "(127.0.0.1, 127.0.0.2); 1 serves one expiring 2027-11-30 (127.0.0.3)"
            ),
        ),
    )
    assert findings.category(row.finding.code) is findings.Category.CERTIFICATE
    assert row.csv() == ("", "443", "www.example.com", "warning", row.finding.message)


def test_backends_that_all_serve_one_leaf_give_nothing():
    results = [scanned(f"127.0.0.{n}", facts("aa")) for n in range(1, 5)]
    assert disagreements(results) == []


def test_a_single_address_gives_nothing():
    assert disagreements([scanned("127.0.0.1", facts("aa"))]) == []


def test_a_backend_without_certificate_facts_is_not_a_backend_that_disagrees():
    refused = findings.error(findings.Code.CONNECT_REFUSED, "connection refused")
    agreeing = [scanned("127.0.0.1", facts("aa")), scanned("127.0.0.2", facts("aa")), scanned("127.0.0.3", None)]
    assert disagreements(agreeing) == []

    differing = [scanned("127.0.0.1", facts("aa")), scanned("127.0.0.2", facts("bb", OLD))]
    differing.append(scanned("127.0.0.3", None, found=(refused,)))
    assert messages(disagreements(differing)) == [
        "1 of 2 backends of www.example.com:443 serves a certificate expiring 2027-11-30 (127.0.0.1); "
        "1 serves one expiring 2026-12-05 (127.0.0.2)"
    ]


def test_two_names_and_two_ports_are_compared_independently():
    results = [
        # www: disagrees on 443, agrees on 8443
        scanned("127.0.0.1", facts("aa"), port=443),
        scanned("127.0.0.2", facts("bb", OLD), port=443),
        scanned("127.0.0.1", facts("aa"), port=8443),
        scanned("127.0.0.2", facts("aa"), port=8443),
        # api: the same two leaves but each on both of its addresses: it agrees
        scanned("127.0.0.1", facts("aa"), fqdn="api.example.com"),
        scanned("127.0.0.2", facts("aa"), fqdn="api.example.com"),
        # mail: disagrees too
        scanned("127.0.0.5", facts("dd"), fqdn="mail.example.com"),
        scanned("127.0.0.6", facts("ee", OLD), fqdn="mail.example.com"),
    ]

    rows = disagreements(results)

    assert [(r.fqdn, r.port, r.ip_address) for r in rows] == [
        ("mail.example.com", 443, ""),
        ("www.example.com", 443, ""),
    ]
    assert messages(rows) == [
        "1 of 2 backends of mail.example.com:443 serves a certificate expiring 2027-11-30 (127.0.0.5); "
        "1 serves one expiring 2026-12-05 (127.0.0.6)",
        "1 of 2 backends of www.example.com:443 serves a certificate expiring 2027-11-30 (127.0.0.1); "
        "1 serves one expiring 2026-12-05 (127.0.0.2)",
    ]


def test_the_rows_are_the_same_whatever_order_the_results_arrive_in():
    results = [scanned(f"10.0.{n // 250}.{n % 250 + 1}", facts("ab"[n % 2], [CURRENT, OLD][n % 2])) for n in range(40)]
    results += [scanned(f"10.1.0.{n}", facts("c", OLD), fqdn="other.example.com") for n in range(1, 4)]
    results.append(scanned("10.1.0.9", facts("d", OLD), fqdn="other.example.com"))
    expected = disagreements(results)
    assert len(expected) == 2
    shuffler = random.Random(7)
    for _ in range(20):
        shuffler.shuffle(results)
        assert disagreements(results) == expected


def test_groups_of_equal_size_put_the_later_expiry_first():
    results = [
        scanned("127.0.0.1", facts("aa", OLD)),
        scanned("127.0.0.2", facts("bb", CURRENT)),
        scanned("127.0.0.3", facts("cc", datetime(2027, 3, 1, tzinfo=UTC))),
    ]
    assert messages(disagreements(results)) == [
        "1 of 3 backends of www.example.com:443 serves a certificate expiring 2027-11-30 (127.0.0.2); "
        "1 serves one expiring 2027-03-01 (127.0.0.3); 1 serves one expiring 2026-12-05 (127.0.0.1)"
    ]


def test_two_leaves_expiring_the_same_day_are_told_apart_by_a_short_fingerprint():
    same_day = datetime(2027, 11, 30, 18, tzinfo=UTC)
    results = [
        scanned("127.0.0.1", facts("ab12cd34", CURRENT)),
        scanned("127.0.0.2", facts("ab12cd34", CURRENT)),
        scanned("127.0.0.3", facts("9f8e7d6c", same_day)),
        scanned("127.0.0.4", facts("0123", OLD)),
    ]
    assert messages(disagreements(results)) == [
        "2 of 4 backends of www.example.com:443 serve a certificate expiring 2027-11-30, sha256 ab12cd34… "
        "(127.0.0.1, 127.0.0.2); 1 serves one expiring 2027-11-30, sha256 9f8e7d6c… (127.0.0.3); "
        "1 serves one expiring 2026-12-05 (127.0.0.4)"
    ]


def test_fingerprints_alike_in_their_first_digits_get_a_longer_prefix():
    first = CertificateFacts(
        subject="CN=x", issuer="CN=y", not_before=NOW, not_after=CURRENT, sha256="ab12cd34" + "0" * 56
    )
    second = CertificateFacts(
        subject="CN=x", issuer="CN=y", not_before=NOW, not_after=CURRENT, sha256="ab12cd34" + "f" * 56
    )
    [message] = messages(disagreements([scanned("127.0.0.1", first), scanned("127.0.0.2", second)]))
    assert "sha256 ab12cd3400000000… (127.0.0.1)" in message
    assert "sha256 ab12cd34ffffffff… (127.0.0.2)" in message


def test_a_fingerprint_spelt_with_colons_and_capitals_is_the_same_fingerprint():
    plain = facts("ab")
    spelt = CertificateFacts(
        subject=plain.subject,
        issuer=plain.issuer,
        not_before=plain.not_before,
        not_after=plain.not_after,
        sha256=":".join(["AB"] * 32),
    )
    assert disagreements([scanned("127.0.0.1", plain), scanned("127.0.0.2", spelt)]) == []


def test_a_large_group_lists_five_addresses_then_how_many_more():
    results = [scanned(f"10.0.0.{n}", facts("aa")) for n in range(30, 0, -1)]  # 10.0.0.1 … 10.0.0.30
    results.append(scanned("10.0.1.1", facts("bb", OLD)))
    assert messages(disagreements(results)) == [
        "30 of 31 backends of www.example.com:443 serve a certificate expiring 2027-11-30 "
        "(10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5 and 25 more); "
        "1 serves one expiring 2026-12-05 (10.0.1.1)"
    ]


def test_ipv6_backends_are_listed_after_ipv4_ones_in_address_order():
    results = [
        scanned("2001:db8::10", facts("aa")),
        scanned("2001:db8::9", facts("aa")),
        scanned("192.0.2.1", facts("aa")),
        scanned("::1", facts("bb", OLD)),
    ]
    assert messages(disagreements(results)) == [
        "3 of 4 backends of www.example.com:443 serve a certificate expiring 2027-11-30 "
        "(192.0.2.1, 2001:db8::9, 2001:db8::10); 1 serves one expiring 2026-12-05 (::1)"
    ]


def test_the_date_is_the_utc_day_of_the_expiry():
    from datetime import timedelta, timezone

    east = timezone(timedelta(hours=10))
    results = [
        scanned("127.0.0.1", facts("aa", datetime(2027, 1, 1, 5, tzinfo=east))),  # 2026-12-31 19:00 UTC
        scanned("127.0.0.2", facts("bb", datetime(2026, 6, 1))),  # no zone: UTC
    ]
    assert messages(disagreements(results)) == [
        "1 of 2 backends of www.example.com:443 serves a certificate expiring 2026-12-31 (127.0.0.1); "
        "1 serves one expiring 2026-06-01 (127.0.0.2)"
    ]


def test_a_name_in_two_zones_is_reported_once_in_the_first_zone_of_the_run():
    results = [
        scanned("127.0.0.1", facts("aa"), fqdn="www.sub.example.com", zone="sub.example.com"),
        scanned("127.0.0.2", facts("bb", OLD), fqdn="www.sub.example.com", zone="example.com"),
    ]
    [row] = disagreements(results, {"example.com": 0, "sub.example.com": 1})
    assert row.zone == "example.com"
    [row] = disagreements(results, {"sub.example.com": 0, "example.com": 1})
    assert row.zone == "sub.example.com"


def test_a_hundred_thousand_results_give_one_warning_per_name_that_disagrees():
    # 25k names of four backends each; every fifth name has one backend on an older leaf
    # (the time this takes is measured by bench/backends_compare.py, not asserted here)
    results = [
        scanned(f"10.{n // 250 % 250}.{n % 250}.{b + 1}", facts("ab"[b == 3 and n % 5 == 0]), fqdn=f"n{n}.example.com")
        for n in range(25_000)
        for b in range(4)
    ]
    rows = disagreements(results)
    assert len(rows) == 5_000
    assert {row.fqdn for row in rows} == {f"n{n}.example.com" for n in range(0, 25_000, 5)}


# -- build_report, through the reporter handler ----------------------------------------------------


def run_with(tmp_path: Path, results: list[ScanResult]) -> RunReport:
    reports: list[RunReport] = []
    handler = ReporterHandler(Config(), DirectorySink(tmp_path), on_report=reports.append)
    handler.handle(RunStarted(run_id="r1", started_at=NOW, zones=["example.com"]))
    jobs = [PlannedJob(r.job_id, r.ip_address, r.port, r.fqdn) for r in results]
    handler.handle(ZonePlan(run_id="r1", zone="example.com", jobs=jobs))
    for result in results:
        handler.handle(result)
    [report] = reports
    return report


def test_build_report_adds_the_warning_to_the_csv_and_jsonl_as_a_row_about_the_name(tmp_path):
    expired = findings.error(findings.Code.CERT_EXPIRED)
    results = [
        scanned("127.0.0.1", facts("aa")),
        scanned("127.0.0.2", facts("aa")),
        scanned("127.0.0.3", facts("bb", OLD), found=(expired,)),
    ]

    report = run_with(tmp_path, results)

    message = (
        "2 of 3 backends of www.example.com:443 serve a certificate expiring 2027-11-30 (127.0.0.1, 127.0.0.2); "
        "1 serves one expiring 2026-12-05 (127.0.0.3)"
    )
    with (tmp_path / "r1.csv").open(newline="") as handle:
        assert list(csv.reader(handle)) == [
            ["ip_address", "port", "fqdn", "status", "message"],
            ["", "443", "www.example.com", "warning", message],
            ["127.0.0.3", "443", "www.example.com", "error", "certificate has expired"],
        ]
    lines = [json.loads(line) for line in (tmp_path / "r1.jsonl").read_text().splitlines()]
    [line] = [line for line in lines if line["code"] == CODE]
    assert line == {
        "run_id": "r1",
        "zone": "example.com",
        "ip_address": "",
        "port": 443,
        "fqdn": "www.example.com",
        "status": "warning",
        "severity": "warning",
        "code": "BACKENDS_DISAGREE",
        "message": message,
        "certificate": None,
    }
    assert report.counts_by_code()[CODE] == 1
    assert "1 warnings" in report.summary_line()


def test_build_report_of_backends_that_agree_has_no_warning(tmp_path):
    report = run_with(tmp_path, [scanned("127.0.0.1", facts("aa")), scanned("127.0.0.2", facts("aa"))])
    assert report.rows == []


def test_the_warning_is_one_alert_problem_whose_id_outlives_a_changed_message(tmp_path):
    first = run_with(tmp_path / "1", [scanned("127.0.0.1", facts("aa")), scanned("127.0.0.2", facts("bb", OLD))])
    later = datetime(2027, 2, 1, tzinfo=UTC)
    second = run_with(tmp_path / "2", [scanned("127.0.0.1", facts("aa")), scanned("127.0.0.2", facts("cc", later))])

    [(first_id, problem)] = problems_of(first.rows, "r1", 0.0).items()
    [second_id] = problems_of(second.rows, "r2", 1.0)

    assert first_id == second_id
    assert (problem.ip_address, problem.port, problem.fqdn, problem.code) == ("", 443, "www.example.com", CODE)
    assert problem.endpoint() == ""
