"""Zones from a real PowerDNS Authoritative server's HTTP API: listed, filtered, read, and every way
the API can fail is one finding for the source (never the key)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.collector import discovery, fetch_zones, sources
from services.collector.serials import SerialStore
from shared import findings
from shared.config import Config, ConfigError, PowerDnsSource
from shared.messages import ZoneSnapshot
from tests.collector.collecting import collect
from tests.collector.fakes import closed_port, silent, tcp_server
from tests.collector.pdns import PdnsServer, start_pdns
from tests.configs import config_from

pytestmark = pytest.mark.slow  # a real pdns_server

KEY_ENV = "DCC_TEST_PDNS_API_KEY"
ENTRY = discovery.entry_name("pdns")  # the zone the source's own findings go by


def rrset(name: str, kind: str, *contents: str, ttl: int = 300, disabled: bool = False) -> dict[str, object]:
    return {
        "name": name,
        "type": kind,
        "ttl": ttl,
        "records": [{"content": content, "disabled": disabled} for content in contents],
    }


@pytest.fixture(scope="module")
def pdns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PdnsServer]:
    """one.test and two.test (made through the API), and a reverse zone."""
    server = start_pdns(tmp_path_factory.mktemp("pdns"))
    try:
        server.create_zone(
            "one.test",
            [
                rrset("one.test.", "A", "127.0.0.5"),
                rrset("one.test.", "AAAA", "fd00::5"),
                rrset("www.one.test.", "CNAME", "one.test."),
                rrset("ext.one.test.", "CNAME", "www.example.net."),
                rrset("two.a.one.test.", "A", "127.0.0.6", "127.0.0.7", ttl=60),
                rrset("off.one.test.", "A", "127.0.0.8", disabled=True),  # not served: not kept
                rrset("*.one.test.", "A", "127.0.0.9"),
                rrset("one.test.", "MX", "10 mail.one.test."),  # other types: ignored
                rrset("one.test.", "TXT", '"v=spf1 -all"'),
            ],
        )
        server.create_zone("two.test", [rrset("two.test.", "A", "127.0.0.10")])
        server.create_zone("2.0.192.in-addr.arpa", [rrset("10.2.0.192.in-addr.arpa.", "PTR", "two.test.")])
        yield server
    finally:
        server.stop()


@pytest.fixture
def key(pdns: PdnsServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, pdns.api_key)
    return pdns.api_key


def pdns_config(api_url: str, state_dir: Path | None = None, **source: object) -> Config:
    entry = {"type": "POWERDNS", "api_url": api_url, "api_key_env": KEY_ENV, "timeout": 2, "retries": 1, **source}
    data: dict[str, object] = {"zone_data_sources": {"pdns": entry}}
    if state_dir is not None:
        data["state_dir"] = str(state_dir)
    return config_from(data)


def by_zone(snapshots: list[ZoneSnapshot]) -> dict[str, ZoneSnapshot]:
    return {s.zone: s for s in snapshots}


def test_the_zones_made_through_the_api_are_discovered_and_read(pdns: PdnsServer, key: str) -> None:
    config = pdns_config(pdns.api_url)
    plan = sources.plan(config)
    assert plan.zones == [ENTRY, "one.test", "two.test"]  # the reverse zone is excluded by default
    assert plan.discovered == {"pdns": ["one.test", "two.test"]}
    snaps = by_zone(collect(config, "run-1", tasks=plan.collect))
    assert snaps[ENTRY].records == [] and snaps[ENTRY].failure is None
    assert sorted((r.type, r.name, r.target, r.ttl) for r in snaps["one.test"].records) == [
        ("A", "*", "127.0.0.9", 300),
        ("A", "@", "127.0.0.5", 300),
        ("A", "two.a", "127.0.0.6", 60),
        ("A", "two.a", "127.0.0.7", 60),
        ("AAAA", "@", "fd00::5", 300),
        ("CNAME", "ext", "www.example.net.", 300),
        ("CNAME", "www", "@", 300),
    ]
    assert snaps["one.test"].serial is not None and snaps["one.test"].serial > 0
    assert [(r.type, r.name, r.target) for r in snaps["two.test"].records] == [("A", "@", "127.0.0.10")]


def test_a_wrong_api_key_is_one_finding_for_the_source_that_never_shows_a_key(
    pdns: PdnsServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-" + pdns.api_key
    monkeypatch.setenv(KEY_ENV, wrong)
    caplog.set_level("DEBUG")
    config = pdns_config(pdns.api_url)
    plan = sources.plan(config)
    assert plan.zones == [ENTRY] and plan.discovered == {"pdns": None}
    (snap,) = collect(config, "run-1", tasks=plan.collect)
    assert snap.failure is not None
    assert snap.failure.finding.code == findings.Code.ZONE_TRANSFER_REFUSED
    assert snap.failure.finding.message == (
        f"PowerDNS API at {pdns.api_url} refused the key (HTTP 401) for the zone list: check api_key_env {KEY_ENV}"
    )
    assert (snap.failure.ip_address, snap.failure.port, snap.failure.fqdn) == (pdns.address, pdns.api_port, ENTRY)
    assert pdns.api_key not in caplog.text and wrong not in caplog.text
    assert "refused the key" in caplog.text


def test_zones_names_and_globs_select_zones_and_a_named_zone_beats_exclude_zones(pdns: PdnsServer, key: str) -> None:
    config = pdns_config(pdns.api_url, zones=["2.0.192.in-addr.arpa", "O*.TEST", "missing.test"])
    plan = sources.plan(config)
    assert plan.zones == [ENTRY, "missing.test", "2.0.192.in-addr.arpa", "one.test"]
    snaps = by_zone(collect(config, "run-1", tasks=plan.collect))
    failure = snaps["missing.test"].failure
    assert failure is not None and failure.finding.code == findings.Code.ZONE_TRANSFER_FAILED
    assert failure.finding.message == f"PowerDNS API at {pdns.api_url}: server 'localhost' has no zone missing.test"
    assert snaps["2.0.192.in-addr.arpa"].failure is None and snaps["one.test"].records
    assert sources.plan(pdns_config(pdns.api_url, exclude_zones=[])).zones == [
        ENTRY,
        "2.0.192.in-addr.arpa",
        "one.test",
        "two.test",
    ]


def test_an_unchanged_zone_is_not_read_again_with_skip_unchanged_and_a_changed_one_is(
    pdns: PdnsServer, key: str, tmp_path: Path
) -> None:
    config = pdns_config(pdns.api_url, zones=["two.test"])
    path = "/api/v1/servers/localhost/zones/two.test."
    before = pdns.requests(path)
    first = collect(config, "run-1", SerialStore(tmp_path / "serials.json"))
    assert pdns.requests(path) == before + 1
    cached: list[str] = []
    second = collect(config, "run-2", SerialStore(tmp_path / "serials.json"), from_cache=cached)
    assert cached == ["two.test"] and pdns.requests(path) == before + 1  # the zone list's serial said so
    assert by_zone(second)["two.test"].records == by_zone(first)["two.test"].records

    change = {"rrsets": [dict(rrset("new.two.test.", "A", "127.0.0.11"), changetype="REPLACE")]}
    assert pdns.api("PATCH", path, change).status_code == 204  # the API bumps the SOA serial
    third = collect(config, "run-3", SerialStore(tmp_path / "serials.json"))
    assert pdns.requests(path) == before + 2
    assert ("A", "new", "127.0.0.11") in {(r.type, r.name, r.target) for r in by_zone(third)["two.test"].records}


def test_the_key_may_come_from_a_file(pdns: PdnsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    secret = tmp_path / "pdns.key"
    secret.write_text(pdns.api_key + "\n")
    config = config_from(
        {"zone_data_sources": {"pdns": {"type": "POWERDNS", "api_url": pdns.api_url, "api_key_file": str(secret)}}}
    )
    assert sources.plan(config).discovered == {"pdns": ["one.test", "two.test"]}


def test_a_key_that_is_not_set_is_one_finding_naming_the_variable(
    pdns: PdnsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    (snap,) = collect(pdns_config(pdns.api_url), "run-1")
    assert snap.failure is not None and snap.failure.finding.code == findings.Code.ZONE_TRANSFER_FAILED
    assert snap.failure.finding.message == f"PowerDNS API key: environment variable {KEY_ENV} is not set"


def test_a_server_id_the_api_does_not_know_is_one_finding_naming_it(pdns: PdnsServer, key: str) -> None:
    (snap,) = collect(pdns_config(pdns.api_url, server_id="nosuch"), "run-1")
    assert snap.failure is not None and snap.failure.finding.code == findings.Code.ZONE_TRANSFER_FAILED
    assert snap.failure.finding.message.startswith(f"PowerDNS API at {pdns.api_url}: the zone list not found (HTTP 404")
    assert snap.failure.finding.message.endswith("server_id 'nosuch')")


def test_fetch_zones_writes_the_zones_of_the_api(pdns: PdnsServer, key: str, tmp_path: Path) -> None:
    out = tmp_path / "zones.json"
    assert fetch_zones.main(pdns_config(pdns.api_url), str(out)) == 0
    assert out.read_text().count('"one.test"') == 1 and '"two.test"' in out.read_text()
    assert ENTRY not in out.read_text()


# --- an API that misbehaves (loopback servers) -------------------------------------------------------


def test_an_api_nobody_listens_on_is_one_finding_after_its_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "whatever")
    port = closed_port()
    (snap,) = collect(pdns_config(f"http://127.0.0.1:{port}"), "run-1")
    assert snap.failure is not None and snap.failure.finding.code == findings.Code.ZONE_TRANSFER_FAILED
    message = snap.failure.finding.message
    assert message.startswith(f"PowerDNS API at http://127.0.0.1:{port}: the zone list: nothing listens there")
    assert "2 attempts" in message


def test_a_silent_api_is_a_timeout_finding_bounded_by_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "whatever")
    with tcp_server(silent) as (ip, port, seen):
        (snap,) = collect(pdns_config(f"http://{ip}:{port}", timeout=0.3, retries=1), "run-1")
    assert snap.failure is not None and snap.failure.finding.code == findings.Code.ZONE_TRANSFER_TIMEOUT
    assert "did not answer in time (timeout 0.3 s; 2 attempts" in snap.failure.finding.message
    assert len(seen) == 2


@contextlib.contextmanager
def http_server(status: int, headers: dict[str, str]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback HTTP server answering every GET with ``status``; yields its URL and the requests' headers."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_redirect_is_not_followed_so_the_key_never_goes_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "the-key")
    with http_server(200, {}) as (elsewhere, reached), http_server(302, {"location": elsewhere + "/"}) as (url, seen):
        (snap,) = collect(pdns_config(url), "run-1")
    assert len(seen) == 1 and seen[0]["x-api-key"] == "the-key"
    assert reached == []
    assert snap.failure is not None and "answered a redirect (HTTP 302)" in snap.failure.finding.message


def test_a_server_error_is_retried_then_one_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "the-key")
    with http_server(503, {}) as (url, seen):
        (snap,) = collect(pdns_config(url, retries=2), "run-1")
    assert len(seen) == 3
    assert snap.failure is not None and snap.failure.finding.code == findings.Code.ZONE_TRANSFER_FAILED
    assert "the server answered HTTP 503 (3 attempts" in snap.failure.finding.message


# --- the source's config --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ({"api_url": "http://ns1:8081"}, "api_url names the host 'ns1': give lookup_nameservers"),
        ({"api_url": "http://ns_1!:8081"}, "does not name a host"),
        ({"api_url": "http://user:pw@127.0.0.1:8081"}, "is not http(s)://<host>[:port][/path]"),
        ({"api_url": "ftp://127.0.0.1"}, "is not http(s)://"),
        ({"api_url": "http://127.0.0.1:99999"}, "has a port out of range"),
        ({"api_key_file": "/k"}, "give exactly one of api_key_env or api_key_file"),
        ({"api_key_env": None}, "give exactly one of api_key_env or api_key_file"),
        ({"server_id": "../x"}, "is not a PowerDNS server id"),
    ],
)
def test_an_unusable_powerdns_source_is_a_config_error_naming_the_problem(
    source: dict[str, object], problem: str
) -> None:
    entry = {"type": "POWERDNS", "api_url": "http://127.0.0.1:8081", "api_key_env": KEY_ENV, **source}
    with pytest.raises(Exception, match="zone_data_sources") as info:
        config_from({"zone_data_sources": {"pdns": entry}})
    assert problem in str(info.value) and ":pw@" not in str(info.value)


def test_a_powerdns_source_has_the_documented_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    entry = {"type": "POWERDNS", "api_url": "http://[::1]:8081/pdns", "api_key_env": KEY_ENV}
    source = config_from({"zone_data_sources": {"p": entry}}).zone_data_sources["p"]
    assert isinstance(source, PowerDnsSource)
    assert (source.server_id, source.zones, source.exclude_zones) == ("localhost", [], ["*.in-addr.arpa", "*.ip6.arpa"])
    assert (source.timeout, source.retries) == (10.0, 2)
    with pytest.raises(ConfigError, match=f"PowerDNS API key: environment variable {KEY_ENV} is not set"):
        source.api_key()


def test_an_api_url_that_names_its_host_is_resolved_through_the_lookup_nameservers(pdns: PdnsServer, key: str) -> None:
    pdns.create_zone("api.test", [rrset("pdns.api.test.", "A", pdns.address)])  # pdns serves DNS too
    try:
        config = config_from(
            {
                "lookup_nameservers": [f"{pdns.address}:{pdns.dns_port}"],
                "zone_data_sources": {
                    "pdns": {
                        "type": "POWERDNS",
                        "api_url": f"http://pdns.api.test:{pdns.api_port}",
                        "api_key_env": KEY_ENV,
                        "zones": ["two.test"],
                        "timeout": 2,
                        "retries": 1,
                    }
                },
            }
        )
        snaps = by_zone(collect(config, "run-1"))
        assert snaps["two.test"].failure is None
        assert ("A", "@", "127.0.0.10") in [(r.type, r.name, r.target) for r in snaps["two.test"].records]
    finally:
        pdns.delete_zone("api.test")


def test_an_api_host_name_that_does_not_resolve_is_one_finding_for_the_source(pdns: PdnsServer, key: str) -> None:
    config = config_from(
        {
            "lookup_nameservers": [f"{pdns.address}:{pdns.dns_port}"],
            "zone_data_sources": {
                "pdns": {"type": "POWERDNS", "api_url": "http://nowhere.two.test:8081", "api_key_env": KEY_ENV}
            },
        }
    )
    (entry,) = collect(config, "run-1")
    assert entry.failure is not None
    assert "nowhere.two.test has no address" in entry.failure.finding.message
