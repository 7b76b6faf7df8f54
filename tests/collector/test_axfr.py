"""AXFR against a real Knot server: records equal the zone file's, TSIG, refusals, time bounds."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import pytest

from services.collector import axfr
from services.collector.zonefile import read_zone_file
from shared import findings
from shared.config import BindServer, TsigKey
from shared.messages import ZoneRecord
from tests.collector import fakes
from tests.collector.conftest import BULK_RECORDS
from tests.collector.knot import KnotServer, KnotZone, start_knot
from tests.collector.zones import LABEL_63, bulk_zone


def key(records: list[ZoneRecord]) -> list[tuple[str, str, str, int | None]]:
    return sorted((r.type, r.name, r.target, r.ttl) for r in records)


def test_small_zone_equals_its_zone_file(knot: KnotServer, bind: BindServer) -> None:
    result = axfr.transfer(bind, "small.test")
    from_file = read_zone_file("small.test", knot.zone_file("small.test"))
    assert key(result.records) == key(from_file.records)
    assert result.serial == from_file.serial == 2024010101
    got = {(r.type, r.name, r.target) for r in result.records}
    # the zones JSON conventions: relative names, "@", targets relative or absolute with a dot
    assert {
        ("A", "@", "127.0.0.10"),
        ("AAAA", "@", "fd00::10"),
        ("CNAME", "www", "@"),
        ("CNAME", "chain1", "chain2"),
        ("CNAME", "chain2", "chain3"),
        ("A", "chain3", "127.0.0.11"),
        ("A", "chain3", "127.0.0.12"),
        ("A", "*", "127.0.0.13"),
        ("AAAA", "*.wild", "fd00::13"),
        ("CNAME", "ext", "www.example.net."),
        ("A", "deep.sub.tree", "127.0.0.14"),
        # odd names survive, escaped as dnspython writes them
        ("A", "esc\\.dot", "127.0.0.16"),
        ("A", "sp\\032ace", "127.0.0.17"),
        ("AAAA", 'quote\\"s', "fd00::17"),
        ("A", "bin\\195\\188r", "127.0.0.18"),
        ("A", "xn--bcher-kva", "127.0.0.19"),
        ("A", LABEL_63, "127.0.0.20"),
        ("CNAME", f"{LABEL_63}.{LABEL_63}", LABEL_63),
    } <= got
    assert {r.type for r in result.records} == {"A", "AAAA", "CNAME"}  # MX, TXT, SRV, CAA, SOA, NS dropped
    assert all(r.ttl == 300 for r in result.records)


def test_ten_thousand_records_transfer_whole(knot: KnotServer, bind: BindServer) -> None:
    started = time.monotonic()
    result = axfr.transfer(bind, "bulk.test")
    elapsed = time.monotonic() - started
    assert len(result.records) == BULK_RECORDS + 1  # + ns1
    assert key(result.records) == key(read_zone_file("bulk.test", knot.zone_file("bulk.test")).records)
    assert result.attempts == 1
    assert elapsed < 10


def test_tsig_with_the_right_key_from_env_and_from_file(
    knot: KnotServer, bind_tsig: BindServer, secret_file: os.PathLike[str]
) -> None:
    from_env = axfr.transfer(bind_tsig, "secret.test")
    assert {(r.name, r.target) for r in from_env.records} >= {("@", "127.0.0.30"), ("vault", "127.0.0.31")}
    assert from_env.serial == 7
    assert bind_tsig.tsig_key is not None
    file_key = TsigKey(name=knot.tsig_name, algorithm=knot.tsig_algorithm, secret_file=str(secret_file))
    from_file = axfr.transfer(BindServer(knot.address, knot.port, tsig_key=file_key), "secret.test")
    assert key(from_file.records) == key(from_env.records)


def _fails(server: BindServer, zone: str) -> axfr.ZoneTransferError:
    with pytest.raises(axfr.ZoneTransferError) as info:
        axfr.transfer(server, zone)
    return info.value


def test_tsig_wrong_secret_fails_clearly_without_leaking_it(knot: KnotServer, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "c2VjcmV0LXRoYXQtaXMtd3JvbmctYnV0LWJhc2U2NA=="
    monkeypatch.setenv("DCC_WRONG_SECRET", wrong)
    server = BindServer(knot.address, knot.port, tsig_key=TsigKey(name=knot.tsig_name, secret_env="DCC_WRONG_SECRET"))
    started = time.monotonic()
    error = _fails(server, "secret.test")
    assert error.code == findings.Code.TSIG_BAD_KEY
    assert knot.tsig_name in error.message and "BADSIG" in error.message
    assert wrong not in error.message and knot.tsig_secret not in error.message
    assert time.monotonic() - started < 1.5  # permanent: not retried


def test_tsig_unknown_key_name(knot: KnotServer) -> None:
    from tests.collector.conftest import SECRET_ENV

    server = BindServer(knot.address, knot.port, tsig_key=TsigKey(name="nobody-knows", secret_env=SECRET_ENV))
    error = _fails(server, "secret.test")
    assert error.code == findings.Code.TSIG_BAD_KEY
    assert "nobody-knows" in error.message


def test_tsig_secret_that_is_not_base64_is_a_bad_key_and_not_echoed(
    knot: KnotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCC_JUNK_SECRET", "not base64 at all!")
    junk = TsigKey(name=knot.tsig_name, secret_env="DCC_JUNK_SECRET")
    error = _fails(BindServer(knot.address, knot.port, tsig_key=junk), "secret.test")
    assert error.code == findings.Code.TSIG_BAD_KEY
    assert "unusable" in error.message and "not base64 at all" not in error.message
    from tests.collector.conftest import SECRET_ENV

    odd = TsigKey(name=knot.tsig_name, algorithm="hmac-nonsense", secret_env=SECRET_ENV)
    error = _fails(BindServer(knot.address, knot.port, tsig_key=odd), "secret.test")
    assert error.code == findings.Code.TSIG_BAD_KEY and "unusable" in error.message
    assert knot.tsig_secret not in error.message


def test_tsig_secret_missing_names_the_variable(knot: KnotServer) -> None:
    server = BindServer(knot.address, knot.port, tsig_key=TsigKey(name="k", secret_env="DCC_UNSET_VARIABLE_XYZ"))
    error = _fails(server, "secret.test")
    assert error.code == findings.Code.TSIG_BAD_KEY
    assert "DCC_UNSET_VARIABLE_XYZ" in error.message


def test_tsig_zone_without_a_key_is_refused(bind: BindServer) -> None:
    assert _fails(bind, "secret.test").code == findings.Code.ZONE_TRANSFER_REFUSED


@pytest.mark.parametrize("zone", ["refused.test", "not-served.test"])
def test_refused_and_unknown_zones(bind: BindServer, zone: str) -> None:
    started = time.monotonic()
    error = _fails(bind, zone)
    assert error.code == findings.Code.ZONE_TRANSFER_REFUSED
    assert f"{bind.server_ip}:{bind.server_port}" in error.message
    assert time.monotonic() - started < 1.5  # permanent: not retried


def test_snapshot_carries_the_failure_located_at_the_server(bind: BindServer) -> None:
    snap = axfr.snapshot(bind, "refused.test", "run-1")
    assert snap.records == [] and snap.run_id == "run-1" and snap.zone == "refused.test"
    assert snap.failure is not None
    assert (snap.failure.ip_address, snap.failure.port, snap.failure.fqdn) == (
        bind.server_ip,
        bind.server_port,
        "refused.test",
    )
    assert snap.failure.finding.code == findings.Code.ZONE_TRANSFER_REFUSED
    assert snap.failure.finding.status == "error"
    assert snap.failure.finding.message.startswith("zone transfer refused")


def test_server_that_never_answers_times_out_within_the_bound() -> None:
    with fakes.tcp_server(fakes.silent) as (ip, port, seen):
        server = BindServer(ip, port, timeout=0.5, lifetime=30.0, retries=1)
        started = time.monotonic()
        error = _fails(server, "small.test")
        elapsed = time.monotonic() - started
    assert error.code == findings.Code.ZONE_TRANSFER_TIMEOUT
    assert "2 attempts" in error.message
    assert len(seen) == 2  # the timeout was retried once
    # two waits of 0.5 s plus one short backoff
    assert 1.0 <= elapsed < 2.5


def test_lifetime_bounds_the_whole_transfer_including_retries() -> None:
    with fakes.tcp_server(fakes.silent) as (ip, port, _):
        server = BindServer(ip, port, timeout=10.0, lifetime=1.0, retries=5)
        started = time.monotonic()
        error = _fails(server, "small.test")
        elapsed = time.monotonic() - started
    assert error.code == findings.Code.ZONE_TRANSFER_TIMEOUT
    assert 0.9 <= elapsed < 1.6


def test_nothing_listening_fails_fast() -> None:
    server = BindServer("127.0.0.1", fakes.closed_port(), timeout=2.0, lifetime=10.0, retries=2)
    started = time.monotonic()
    error = _fails(server, "small.test")
    assert error.code == findings.Code.ZONE_TRANSFER_FAILED
    assert "nothing listens" in error.message
    assert time.monotonic() - started < 2.0


def test_eof_mid_transfer_is_retried(knot: KnotServer) -> None:
    behaviour = fakes.hang_up_then_proxy((knot.address, knot.port))
    with fakes.tcp_server(behaviour) as (ip, port, seen):
        result = axfr.transfer(BindServer(ip, port, timeout=2.0, lifetime=30.0, retries=2), "bulk.test")
    assert len(result.records) == BULK_RECORDS + 1
    assert result.attempts == 2 and len(seen) == 2


def test_eof_every_time_is_a_clear_failure(knot: KnotServer) -> None:
    behaviour = fakes.hang_up_then_proxy((knot.address, knot.port), hang_ups=10)
    with fakes.tcp_server(behaviour) as (ip, port, seen):
        error = _fails(BindServer(ip, port, timeout=2.0, lifetime=30.0, retries=2), "small.test")
    assert error.code == findings.Code.ZONE_TRANSFER_FAILED
    assert "EOF" in error.message and "3 attempts" in error.message
    assert len(seen) == 3


def test_malformed_answer_is_a_failure_without_retry() -> None:
    with fakes.tcp_server(fakes.garbage) as (ip, port, seen):
        error = _fails(BindServer(ip, port, timeout=2.0, lifetime=10.0, retries=3), "small.test")
    assert error.code == findings.Code.ZONE_TRANSFER_FAILED
    assert "malformed" in error.message
    assert len(seen) == 1


def test_server_ip_must_be_an_address() -> None:
    # names would need the system resolver: refused when the config is read
    with pytest.raises(ValueError, match="not an IP address"):
        BindServer("ns1.example.test", 53)


def test_query_serial(knot: KnotServer, bind: BindServer, bind_tsig: BindServer) -> None:
    assert axfr.query_serial(bind, "small.test") == 2024010101
    assert axfr.query_serial(bind_tsig, "secret.test") == 7
    with pytest.raises(axfr.ZoneTransferError):
        axfr.query_serial(bind, "not-served.test")


def test_slow_client_survives_knots_default_tcp_io_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Knot (default tcp-io-timeout 500 ms) hangs up on a client that stops reading for a second.

    A plain synchronous client gets EOF here (30k records overflow the socket buffers); ours
    keeps the socket drained from a thread while the parser is paused.
    """
    server = start_knot(tmp_path, [KnotZone("slow.test", bulk_zone("slow.test", 30_000))], tcp_io_timeout_ms=500)
    keep = axfr._keep
    seen = [0]

    def slow_keep(response: object, records: list[ZoneRecord]) -> None:
        seen[0] += 1
        if seen[0] in (2, 3):
            time.sleep(1.0)  # a stalled parser: GC, a busy process
        keep(response, records)  # type: ignore[arg-type]

    monkeypatch.setattr(axfr, "_keep", slow_keep)
    try:
        result = axfr.transfer(BindServer(server.address, server.port, timeout=3.0, retries=0), "slow.test")
    finally:
        server.stop()
    assert len(result.records) == 30_001 and result.attempts == 1
    assert "finished" in server.log()


def test_cyclic_gc_is_paused_during_a_transfer_only(bind: BindServer, monkeypatch: pytest.MonkeyPatch) -> None:
    states: list[bool] = []
    keep = axfr._keep

    def spy(response: object, records: list[ZoneRecord]) -> None:
        states.append(gc.isenabled())
        keep(response, records)  # type: ignore[arg-type]

    monkeypatch.setattr(axfr, "_keep", spy)
    assert gc.isenabled()
    axfr.transfer(bind, "small.test")
    assert states and not any(states)
    assert gc.isenabled()


def test_zone_name_spelling_does_not_change_the_records(bind: BindServer) -> None:
    plain = axfr.transfer(bind, "small.test")
    odd = axfr.transfer(bind, "Small.TEST.")
    assert odd.records == plain.records and odd.serial == plain.serial
    assert axfr.query_serial(bind, "SMALL.test.") == plain.serial


def test_invalid_zone_name_is_a_failure_naming_it(bind: BindServer) -> None:
    error = _fails(bind, "x" * 64 + ".test")
    assert error.code == findings.Code.ZONE_TRANSFER_FAILED
    assert error.message == f"invalid zone name {'x' * 64 + '.test'!r}: A DNS label is > 63 octets long."
