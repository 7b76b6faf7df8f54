"""Deployment files: every YAML parses, Compose and the Dockerfile hold their invariants, and the
reporter owns its alert state on a volume. The Kubernetes manifests' own checks (schemas,
hardening, network policies, scaling, monitoring) are in test_k8s_*.py; kubectl is required.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.kustomize import K8S, ROOT, by_kind, containers, example_config, pod_spec, render


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.mark.parametrize("path", sorted(K8S.rglob("*.yaml")) + [ROOT / "docker-compose.yml"], ids=str)
def test_every_yaml_parses(path: Path) -> None:
    assert load_all(path)


def test_the_example_config_is_a_valid_config_for_every_segment_directory() -> None:
    config = example_config()  # decoding checks every key and range
    segments = {p.name for p in (K8S / "segments").iterdir() if p.is_dir()}
    assert segments and segments <= set(config.segments), "every segments/<name> must be in config.json's segments"


def test_compose_runs_every_service_without_an_inline_password() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    commands = {name: svc.get("command", []) for name, svc in services.items()}
    assert commands["reporter"][0] == "reporter"
    assert commands["resolver"][0] == "resolver"
    segments = sorted(c[c.index("--segment") + 1] for c in commands.values() if c and c[0] == "scanner")
    assert segments == ["dmz", "office"]
    assert {"--once", "--every"} & set(commands["collector"]), "the collector starts one run, or one per interval"
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


def test_the_reporter_owns_its_alert_state_and_its_reports_on_volumes_alone() -> None:
    config = example_config()
    assert config.alerts is not None
    docs = render("base")
    [deployment] = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "dcc-reporter"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = pod_spec(deployment)
    [container] = containers(deployment)
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
    }
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    args = container["args"]
    for directory in (str(Path(config.alerts.state_file).parent), args[args.index("--output-dir") + 1]):
        assert directory in mounts and mounts[directory] in claims, f"{directory} must survive the pod"
        assert claims[mounts[directory]] in {d["metadata"]["name"] for d in by_kind(docs, "PersistentVolumeClaim")}
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"], "uid 10001 writes the volumes"
    # the alert metrics are served on the health port's /metrics: no second metrics port
    assert "--health-port" in args and "--metrics-port" not in args
