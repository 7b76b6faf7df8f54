"""Problem semantics, compared run by run: opened, changed, reminder, resolved, and coverage."""

from __future__ import annotations

from services.reporter.alerts.events import Comparison, compare
from services.reporter.alerts.problems import Problem
from services.reporter.report import Row, RunReport
from shared import findings
from shared.messages import Finding
from tests.reporter.alerts.runs import Endpoint, certificate, dangling, expired, healthy, report, zone_failure

DAY = 86400.0


class State:
    """Runs compared one after another, as the state store would keep them."""

    def __init__(self, renotify_after: float = DAY) -> None:
        self.open: dict[str, Problem] = {}
        self.now = 1_000_000.0
        self.renotify_after = renotify_after

    def run(self, run: RunReport, *, after: float = 3600.0) -> Comparison:
        self.now += after
        comparison = compare(run, self.open, self.now, self.renotify_after)
        self.open = comparison.open
        return comparison


def kinds(comparison: Comparison) -> list[tuple[str, str, str]]:
    return sorted((e.kind, e.problem.fqdn, e.problem.code) for e in comparison.events)


def test_two_identical_runs_open_each_problem_once_and_say_nothing_new_the_second_time():
    state = State()
    run = [expired("www.a.test"), expired("api.a.test", "127.0.0.2"), healthy("ok.a.test")]
    first = state.run(report("r1", run))
    assert kinds(first) == [("opened", "api.a.test", "CERT_EXPIRED"), ("opened", "www.a.test", "CERT_EXPIRED")]
    second = state.run(report("r2", run))
    assert second.events == []
    assert len(state.open) == 2
    assert {p.run_id for p in state.open.values()} == {"r2"}


def test_a_fixed_certificate_resolves_its_problem():
    state = State()
    state.run(report("r1", [expired("www.a.test")]))
    fixed = state.run(report("r2", [healthy("www.a.test")]))
    assert kinds(fixed) == [("resolved", "www.a.test", "CERT_EXPIRED")]
    assert state.open == {}


def test_a_warning_that_becomes_an_error_is_changed_with_what_it_was():
    state = State()
    warning = Finding(code="CERT_INVALID", status="warning", message="certificate rejected: weak key")
    error = Finding(code="CERT_INVALID", status="error", message="certificate rejected: weak key")
    cert = certificate("www.a.test")
    state.run(report("r1", [Endpoint("www.a.test", found=[warning], cert=cert)]))
    first_seen = next(iter(state.open.values())).first_seen
    changed = state.run(report("r2", [Endpoint("www.a.test", found=[error], cert=cert)]))
    (event,) = changed.events
    assert event.kind == "changed"
    assert event.problem.severity == "error" and event.previous is not None and event.previous.severity == "warning"
    assert event.problem.first_seen == first_seen


def test_a_new_certificate_with_the_same_problem_is_changed():
    state = State()
    state.run(report("r1", [expired("www.a.test")]))
    renewed_but_wrong = Endpoint(
        "www.a.test", found=[findings.error(findings.Code.CERT_EXPIRED)], cert=certificate("www.a.test", serial=9)
    )
    (event,) = state.run(report("r2", [renewed_but_wrong])).events
    assert event.kind == "changed"
    assert event.previous is not None and event.previous.sha256 != event.problem.sha256


def test_a_problem_still_open_after_renotify_after_is_a_reminder_and_then_quiet_again():
    state = State(renotify_after=DAY)
    run = [expired("www.a.test")]
    state.run(report("r1", run))
    assert state.run(report("r2", run), after=DAY - 7200).events == []
    reminded = state.run(report("r3", run), after=7200)
    assert kinds(reminded) == [("reminder", "www.a.test", "CERT_EXPIRED")]
    assert state.run(report("r4", run), after=3600).events == []


def test_an_incomplete_run_resolves_nothing_but_still_opens_what_it_found():
    state = State()
    state.run(report("r1", [expired("www.a.test")]))
    partial = state.run(report("r2", [expired("new.a.test", "127.0.0.3")], complete=False))
    assert kinds(partial) == [("opened", "new.a.test", "CERT_EXPIRED")]
    assert len(state.open) == 2


def test_a_zone_that_failed_to_transfer_resolves_nothing_and_resolves_normally_when_it_comes_back():
    state = State()
    state.run(
        report("r1", [expired("www.a.test"), expired("www.b.test", "127.0.0.2")], name_rows=[dangling("x.b.test")])
    )
    failed = state.run(
        report("r2", [expired("www.a.test")], name_rows=[zone_failure("b.test")], failed_zones=["b.test"])
    )
    assert kinds(failed) == [("opened", "b.test", "ZONE_TRANSFER_REFUSED")]
    back = state.run(
        report("r3", [expired("www.a.test"), healthy("www.b.test", "127.0.0.2")], zones=["a.test", "b.test"])
    )
    assert kinds(back) == [
        ("resolved", "b.test", "ZONE_TRANSFER_REFUSED"),
        ("resolved", "www.b.test", "CERT_EXPIRED"),
        ("resolved", "x.b.test", "DANGLING_CNAME"),
    ]


def test_an_endpoint_whose_name_failed_to_resolve_this_run_keeps_its_problem():
    state = State()
    state.run(report("r1", [expired("www.a.test")]))
    lookup_failed = Row("a.test", "", None, "www.a.test", findings.error(findings.Code.LOOKUP_FAILED, "SERVFAIL"))
    unresolved = state.run(report("r2", [], zones=["a.test"], name_rows=[lookup_failed]))
    assert kinds(unresolved) == [("opened", "www.a.test", "LOOKUP_FAILED")]
    assert {p.code for p in state.open.values()} == {"CERT_EXPIRED", "LOOKUP_FAILED"}


def test_an_endpoint_gone_from_the_dns_of_a_cleanly_collected_zone_is_resolved():
    state = State()
    state.run(report("r1", [expired("old.a.test", "127.0.0.9"), healthy("www.a.test")]))
    gone = state.run(report("r2", [healthy("www.a.test")]))
    assert kinds(gone) == [("resolved", "old.a.test", "CERT_EXPIRED")]


def test_problems_of_a_zone_the_run_did_not_include_stay_open():
    state = State()
    state.run(report("r1", [expired("www.a.test"), expired("www.b.test", "127.0.0.2")]))
    only_a = state.run(report("r2", [expired("www.a.test")], zones=["a.test"]))
    assert only_a.events == []
    assert len(state.open) == 2


def test_trust_stores_that_disagree_are_one_problem_each():
    state = State()
    inner = findings.error(findings.Code.MISSING_ISSUER)
    rows = [findings.store_disagreement("Mozilla", inner), findings.store_disagreement("Apple", inner)]
    cert = certificate("www.a.test")
    state.run(report("r1", [Endpoint("www.a.test", found=rows, cert=cert)]))
    assert sorted(p.detail for p in state.open.values()) == ["Apple", "Mozilla"]
    one_fixed = state.run(report("r2", [Endpoint("www.a.test", found=rows[:1], cert=cert)]))
    assert [(e.kind, e.problem.detail) for e in one_fixed.events] == [("resolved", "Apple")]


def test_the_run_incomplete_rows_are_not_problems():
    state = State()
    missing = Row("a.test", "127.0.0.1", 443, "www.a.test", findings.error(findings.Code.RUN_INCOMPLETE, "no result"))
    assert state.run(report("r1", [], zones=["a.test"], name_rows=[missing], complete=False)).events == []


def test_weak_keys_of_two_certificates_are_two_problems_and_a_new_date_only_changes_one():
    state = State()
    leaf = findings.error(findings.Code.WEAK_KEY, 'certificate "CN=www.a.test" has a 1024-bit RSA key: more needed')
    inter = findings.error(findings.Code.WEAK_KEY, 'certificate "CN=Lab CA" has a 1024-bit RSA key: more needed')
    cert = certificate("www.a.test")
    state.run(report("r1", [Endpoint("www.a.test", found=[leaf, inter], cert=cert)]))
    assert sorted(p.detail for p in state.open.values()) == ["CN=Lab CA", "CN=www.a.test"]
    soon = findings.expiring_critical("CN=www.a.test", certificate("www.a.test").not_after, 7 * 86400)
    later = findings.expiring_critical("CN=www.a.test", certificate("www.a.test").not_after.replace(year=2030), 86400)
    state.run(report("r2", [Endpoint("www.a.test", found=[soon], cert=cert)]))
    renewed = state.run(report("r3", [Endpoint("www.a.test", found=[later], cert=cert)]))
    assert [(e.kind, e.problem.detail) for e in renewed.events] == [("changed", "CN=www.a.test")]
