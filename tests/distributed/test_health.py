"""The services' health servers against the real broker: ready when consuming, unready while the
broker is away and ready again after the reconnect, unready first on SIGTERM, and /metrics with
each service's series after a small distributed run.

Each service runs as its own OS process (``--health-port``); the outage is a TCP proxy between
the service and RabbitMQ that is cut and restored, so the shared broker is never touched.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab import Lab, start_lab
from tests.http_probe import Samples, get, samples
from tests.loopback import free_port
from tests.transport.proxy import FlakyProxy

from .broker import Vhost
from .fleet import Fleet


def total(got: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every series whose labels include ``labels``."""
    return sum(v for (n, ls), v in got.items() if n == name and set(labels.items()) <= set(ls))


def wait_for(predicate: Callable[[], bool], what: str, fleet: Fleet, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; logs:\n{fleet.all_logs()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with start_lab(tmp_path_factory.mktemp("health-lab"), cases=["valid", "expired", "hung"]) as lab:
        yield lab


@pytest.fixture
def vhost() -> Iterator[Vhost]:
    v = Vhost()
    yield v
    v.delete()


def write_inputs(tmp_path: Path, lab: Lab, network_timeout: float = 2) -> tuple[Path, Path]:
    config = tmp_path / "config.json"
    settings = {
        "ssl_ports": [lab.port],
        "custom_ca_file": str(lab.ca_file),
        "network_timeout": network_timeout,
        "scan_timeout": network_timeout + 10,
        "log_level": 20,
    }
    config.write_text(json.dumps(settings))
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps(lab.zones_json()))
    return config, zones


def test_every_service_is_ready_and_its_metrics_count_a_small_run(tmp_path: Path, lab: Lab, vhost: Vhost) -> None:
    config, zones = write_inputs(tmp_path, lab)
    fleet = Fleet(tmp_path, config, vhost.url())
    ports = {name: free_port() for name in ("reporter", "resolver", "scanner", "collector")}
    try:
        fleet.start(
            "reporter", "reporter", "--output-dir", str(fleet.output_dir), "--health-port", str(ports["reporter"])
        )
        fleet.start("resolver", "resolver", "--health-port", str(ports["resolver"]))
        fleet.start("scanner", "scanner", "--segment", "default", "--health-port", str(ports["scanner"]))
        for name in ("reporter", "resolver", "scanner"):
            wait_for(lambda n=name: get(ports[n], "/readyz") == (200, "ready"), f"{name} ready", fleet)  # type: ignore[misc]
            assert get(ports[name], "/healthz") == (200, "ok")
        fleet.start(
            "collector",
            "collector",
            "--from-zones-json",
            str(zones),
            "--every",
            "1h",
            "--health-port",
            str(ports["collector"]),
        )
        wait_for(lambda: any(p.name != "latest.csv" for p in fleet.output_dir.glob("*.csv")), "the report", fleet, 90)
        assert get(ports["collector"], "/readyz") == (200, "ready")

        jobs = len(lab.endpoints)  # one port: one job per lab endpoint
        resolver = samples(ports["resolver"])
        assert total(resolver, "dcc_jobs_planned_total", segment="default") == jobs
        assert total(resolver, "dcc_messages_published_total", queue="scan.default") == jobs

        wait_for(lambda: total(samples(ports["scanner"]), "dcc_scans_total") == jobs, "every scan counted", fleet)
        scanner = samples(ports["scanner"])
        assert total(scanner, "dcc_messages_consumed_total", queue="scan.default") == jobs
        assert total(scanner, "dcc_scans_total", segment="default", outcome="ok") == 1  # valid
        assert total(scanner, "dcc_scans_total", segment="default", outcome="error") == 1  # expired
        assert total(scanner, "dcc_scans_total", segment="default", outcome="unreachable") == 1  # hung
        assert total(scanner, "dcc_scan_duration_seconds_count", segment="default") == jobs
        assert total(scanner, "dcc_endpoints_in_flight") == 0
        assert ("dcc_scanner_busiest_address_connections", ()) in scanner

        reporter = samples(ports["reporter"])
        assert total(reporter, "dcc_messages_consumed_total", queue="report") >= jobs  # + the run's own messages
        assert total(reporter, "dcc_messages_dead_lettered_total") == 0
        assert all(v == 1.0 for (n, _), v in reporter.items() if n == "dcc_ready")
    finally:
        fleet.stop()


def test_readyz_turns_unready_while_the_broker_is_away_and_ready_after_the_reconnect(
    tmp_path: Path, lab: Lab, vhost: Vhost
) -> None:
    config, _ = write_inputs(tmp_path, lab)
    proxy = FlakyProxy(("127.0.0.1", 5672))
    fleet = Fleet(tmp_path, config, vhost.url(f"amqp://guest:guest@{proxy.address}"))
    port = free_port()
    try:
        fleet.start("resolver", "resolver", "--health-port", str(port))
        wait_for(lambda: get(port, "/readyz")[0] == 200, "resolver ready", fleet)
        proxy.cut()
        wait_for(lambda: get(port, "/readyz")[0] == 503, "unready once the broker is gone", fleet, timeout=10)
        assert get(port, "/readyz")[1] in {"not connected to the broker", "not consuming resolve"}
        assert get(port, "/healthz") == (200, "ok"), "an outage is no reason to restart the service"
        proxy.restore()
        wait_for(lambda: get(port, "/readyz")[0] == 200, "ready again after the reconnect", fleet, timeout=30)
        assert samples(port)[("dcc_broker_reconnects_total", ())] >= 1
    finally:
        fleet.stop()
        proxy.close()


def test_sigterm_makes_a_scanner_unready_before_it_drains_its_scans(tmp_path: Path, lab: Lab, vhost: Vhost) -> None:
    config, zones = write_inputs(tmp_path, lab, network_timeout=8)  # the hung endpoint holds a scan 8 s
    fleet = Fleet(tmp_path, config, vhost.url())
    port = free_port()
    try:
        fleet.start("reporter", "reporter", "--output-dir", str(fleet.output_dir))
        fleet.start("resolver", "resolver")
        scanner = fleet.start("scanner", "scanner", "--segment", "default", "--health-port", str(port))
        wait_for(lambda: get(port, "/readyz")[0] == 200, "scanner ready", fleet)
        fleet.submit(zones)
        wait_for(
            lambda: (
                total(samples(port), "dcc_endpoints_in_flight") == 1
                and total(samples(port), "dcc_scans_total") == len(lab.endpoints) - 1
            ),
            "only the hung endpoint's scan in flight",
            fleet,
        )
        scanner.send_signal(signal.SIGTERM)
        wait_for(lambda: get(port, "/readyz") == (503, "stopping"), "unready at once", fleet, timeout=5)
        assert scanner.poll() is None, "the scanner is still draining its scan"
        assert scanner.wait(30) == 0
    finally:
        fleet.stop()


def test_a_scanner_group_answers_for_all_its_processes_on_one_port(tmp_path: Path, lab: Lab, vhost: Vhost) -> None:
    config, _ = write_inputs(tmp_path, lab)
    fleet = Fleet(tmp_path, config, vhost.url())
    port = free_port()
    try:
        fleet.start("scanners", "scanner", "--segment", "default", "--processes", "2", "--health-port", str(port))
        wait_for(lambda: get(port, "/readyz") == (200, "ready"), "both processes ready", fleet)
        assert get(port, "/healthz") == (200, "ok")
        got = samples(port)
        processes = {dict(labels).get("process") for (name, labels) in got if name == "dcc_ready"}
        assert processes == {"0", "1"}, "each child's series, labelled with its process"
        assert get(port + 1, "/readyz") == (200, "ready"), "child 0 answers on the next port"
        fleet.procs["scanners"].send_signal(signal.SIGTERM)
        wait_for(lambda: get(port, "/readyz")[0] != 200, "unready once told to stop", fleet, timeout=10)
        assert fleet.procs["scanners"].wait(60) == 0
    finally:
        fleet.stop()
