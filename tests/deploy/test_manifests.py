"""Deployment files: every YAML parses, and the invariants that matter in a cluster hold.

Renders the kustomizations with ``kubectl kustomize`` when kubectl is installed (it is in CI);
otherwise checks the same invariants on the source files and the overlays' patches.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from services.reporter.runner import OPTIONS as REPORTER_OPTIONS
from services.resolver.runner import OPTIONS as RESOLVER_OPTIONS
from services.scanner.runner import serve_options as scanner_options
from shared.config import Config
from shared.transport.amqp import Topology
from shared.transport.base import scan_queue

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
GRACE_MARGIN = 15  # seconds after the drain deadline: give the rest back, close connections
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the kustomizations"
    out = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def container_args(deployment: dict[str, Any]) -> list[str]:
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


@pytest.mark.parametrize("path", sorted(K8S.rglob("*.yaml")) + [ROOT / "docker-compose.yml"], ids=str)
def test_every_yaml_parses(path: Path) -> None:
    assert load_all(path)


def test_example_config_is_a_valid_config() -> None:
    import msgspec

    config = msgspec.json.decode((K8S / "config" / "config.json").read_bytes(), type=Config)
    assert set(OVERLAYS) <= set(config.segments), "every overlay's segment must be in the config's segments map"


def test_there_are_segment_overlays() -> None:
    assert {"dmz", "office"} <= set(OVERLAYS)


@pytest.mark.parametrize("segment", OVERLAYS)
def test_overlay_scanner_consumes_its_segment_and_is_scaled_on_its_queue(segment: str) -> None:
    docs = render(K8S / "overlays" / segment)
    [deployment] = by_kind(docs, "Deployment")
    assert deployment["metadata"]["name"] == f"dcc-scanner-{segment}"
    args = container_args(deployment)
    assert args[0] == "scanner" and args[args.index("--segment") + 1] == segment
    [scaled] = by_kind(docs, "ScaledObject")
    # nameSuffix must reach the KEDA reference (kustomize #5306: needs the nameReference config)
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["protocol"] == "http"  # amqp would not count in-flight scans
    assert trigger["metadata"]["queueName"] == Topology().queue(scan_queue(segment))
    [auth] = by_kind(docs, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    [config_map] = by_kind(docs, "ConfigMap")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["configMap"]["name"] == config_map["metadata"]["name"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.get("dns-cert-checker/segment") == segment  # two segments' pods never mix


def test_base_has_every_service_and_secrets_only_by_reference() -> None:
    docs = render(K8S / "base")
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    assert set(deployments) == {"dcc-reporter", "dcc-resolver", "dcc-scanner"}
    assert container_args(deployments["dcc-reporter"])[0] == "reporter"
    assert container_args(deployments["dcc-resolver"])[0] == "resolver"
    [cron] = by_kind(docs, "CronJob")
    job = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"][0] == "collector" and "--once" in job["args"]
    assert not by_kind(docs, "Secret"), "secrets are created out of band, never rendered from git"
    containers = [d["spec"]["template"]["spec"]["containers"][0] for d in deployments.values()] + [job]
    for container in containers:
        [env] = [e for e in container["env"] if e["name"] == "AMQP_URL"]
        assert env["valueFrom"]["secretKeyRef"] == {"name": "dcc-amqp", "key": "AMQP_URL"}
    config = msgspec.json.decode((K8S / "config" / "config.json").read_bytes(), type=Config)
    drains = {
        "dcc-reporter": REPORTER_OPTIONS.drain_timeout,
        "dcc-resolver": RESOLVER_OPTIONS.drain_timeout,
        "dcc-scanner": scanner_options(config).drain_timeout,  # max(30, 2 x scan_timeout + 5)
    }
    for name, deployment in deployments.items():
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= drains[name] + GRACE_MARGIN, f"{name} must outlast its {drains[name]:.0f} s drain and close"


def test_compose_runs_every_service_without_an_inline_password() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    commands = {name: svc.get("command", []) for name, svc in services.items()}
    assert commands["reporter"][0] == "reporter"
    assert commands["resolver"][0] == "resolver"
    segments = sorted(c[c.index("--segment") + 1] for c in commands.values() if c and c[0] == "scanner")
    assert segments == ["dmz", "office"]
    assert "--once" in commands["collector"]
    text = json.dumps(compose)
    assert "guest" not in text
    for svc in services.values():
        url = svc.get("environment", {}).get("AMQP_URL")
        if url:
            assert "${RABBITMQ_PASSWORD" in url


def test_compose_config_is_valid_and_demands_the_password() -> None:
    compose = shutil.which("docker-compose")
    if compose is None:  # the YAML checks above still ran; CI images without it check less
        return
    base = [compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"]
    env = {"PATH": "/usr/bin:/bin", "RABBITMQ_PASSWORD": "not-a-real-one"}
    ok = subprocess.run(base, capture_output=True, text=True, env=env, cwd=ROOT / "k8s")
    assert ok.returncode == 0, ok.stderr
    env.pop("RABBITMQ_PASSWORD")
    missing = subprocess.run(base, capture_output=True, text=True, env=env, cwd=ROOT / "k8s")
    assert missing.returncode != 0 and "RABBITMQ_PASSWORD" in missing.stderr


def test_dockerfile_installs_the_project_and_runs_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "pip install ." in text
    assert "USER 10001" in text
    assert 'ENTRYPOINT ["dns-cert-checker"]' in text


def test_the_reporter_owns_its_alert_state_on_a_volume_alone() -> None:
    config = msgspec.json.decode((K8S / "config" / "config.json").read_bytes(), type=Config)
    assert config.alerts is not None
    docs = load_all(K8S / "base" / "reporter.yaml")
    [deployment] = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
    }
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    state_dir = str(Path(config.alerts.state_file).parent)
    assert state_dir in mounts and mounts[state_dir] in claims, "the state must survive the pod"
    assert claims[mounts[state_dir]] in {d["metadata"]["name"] for d in by_kind(docs, "PersistentVolumeClaim")}
    # every secret the receivers name comes from a Secret reference, never a literal value
    named = {
        getattr(r, field)
        for r in config.alerts.receivers
        for field in ("url_env", "secret_env")
        if getattr(r, field, None)
    }
    env = {e["name"]: e for e in container["env"]}
    assert named and all("secretKeyRef" in env[name]["valueFrom"] for name in named)
    assert "--metrics-port" in container["args"]
