"""Every pod in every deployable kustomization runs hardened (non-root, read-only root, no
capabilities, RuntimeDefault seccomp, no privilege escalation, requests and limits), every
long-running one has its health port and probes, and secrets only ever come by reference."""

from __future__ import annotations

from typing import Any

import pytest

from services.cli import build_parser
from tests.deploy.kustomize import (
    DEPLOYABLE,
    HEALTH_PORT,
    Doc,
    by_kind,
    containers,
    example_config,
    named,
    pod_spec,
    render,
    workloads,
)

# The Secrets k8s/base/kustomization.yaml tells operators to create, and what reads them.
SECRETS = {"dcc-amqp", "dcc-alerts", "dcc-tsig"}


def _pods(directory: str) -> list[tuple[str, Doc]]:
    return [(f"{w['kind']}/{w['metadata']['name']}", w) for w in workloads(render(directory))]


def _effective(container: Doc, pod: Doc, key: str) -> Any:
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    value = container.get("securityContext", {}).get(key)
    return pod.get("securityContext", {}).get(key) if value is None else value


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_every_container_runs_unprivileged_on_a_read_only_root(directory: str) -> None:
    pods = _pods(directory)
    assert pods
    for where, workload in pods:
        pod = pod_spec(workload)
        assert pod["automountServiceAccountToken"] is False, f"{where}: no service uses the Kubernetes API"
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert _effective(container, pod, "runAsNonRoot") is True, where
            assert _effective(container, pod, "runAsUser") not in (None, 0), where
            assert _effective(container, pod, "seccompProfile") == {"type": "RuntimeDefault"}, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert "privileged" not in context or context["privileged"] is False, where


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_every_container_has_requests_and_limits_and_a_writable_tmp(directory: str) -> None:
    for where, workload in _pods(directory):
        pod = pod_spec(workload)
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), f"{where}: {kind}"
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, f"{where}: the root filesystem is read-only"
            assert "emptyDir" in volumes[mounts["/tmp"]] and volumes[mounts["/tmp"]]["emptyDir"]["sizeLimit"]
            writable = {path for path, name in mounts.items() if "configMap" not in volumes[name]}
            read_only = {m["mountPath"] for m in container["volumeMounts"] if m.get("readOnly")}
            assert read_only == {"/etc/dcc"} and "/etc/dcc" not in writable, where


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_every_long_running_container_serves_health_and_is_probed_on_it(directory: str) -> None:
    deployments = by_kind(render(directory), "Deployment")
    assert deployments
    for deployment in deployments:
        where = deployment["metadata"]["name"]
        [container] = containers(deployment)
        args = container["args"]
        assert args[args.index("--health-port") + 1] == str(HEALTH_PORT), where
        assert {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"} in container["ports"], where
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "health"}, f"{where}: {probe}"
        # a liveness failure restarts the pod: it must not fire on a slow answer alone
        assert container["livenessProbe"]["failureThreshold"] >= 3, where


def test_the_collector_stays_a_job_without_probes_that_keeps_its_serials_on_a_volume() -> None:
    docs = render("base")
    [cron] = by_kind(docs, "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid", "one collector at a time owns state_dir"
    [container] = containers(cron)
    assert container["args"][0] == "collector"
    assert {"--once", "--skip-unchanged"} <= set(container["args"])
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(container), "a job that exits has no probes"
    assert "--health-port" not in container["args"] and "ports" not in container
    state_dir = example_config().state_dir
    assert state_dir, "--skip-unchanged needs state_dir in config.json"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(cron)["volumes"]}
    claim = volumes[mounts[state_dir]]["persistentVolumeClaim"]["claimName"]
    assert named(docs, "PersistentVolumeClaim", claim)
    assert pod_spec(cron)["securityContext"]["fsGroup"] == pod_spec(cron)["securityContext"]["runAsUser"]


def test_every_container_command_line_is_one_the_program_accepts() -> None:
    seen = set()
    for directory in DEPLOYABLE:
        for where, workload in _pods(directory):
            for container in containers(workload):
                args = tuple(container["args"])
                if args in seen:
                    continue
                seen.add(args)
                parsed = build_parser().parse_args(list(args))  # exits (SystemExit) on an unknown option
                assert parsed.command == args[0], where
                if workload["kind"] == "Deployment":
                    assert parsed.health_port == HEALTH_PORT, where
    assert {args[0] for args in seen} == {"collector", "reporter", "resolver", "scanner"}


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_no_secret_is_defined_and_every_one_is_referenced_by_name_and_key(directory: str) -> None:
    docs = render(directory)
    assert not by_kind(docs, "Secret"), "Secrets are created out of band, never rendered from git"
    for where, workload in _pods(directory):
        for container in containers(workload):
            assert "envFrom" not in container, f"{where}: every variable is named"
            for env in container.get("env", []):
                assert "value" not in env, f"{where}: {env['name']} is a literal; secrets come by reference"
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["name"] in SECRETS and ref["key"] == env["name"], f"{where}: {env}"
                assert not ref.get("optional"), f"{where}: a missing Secret must stop the pod, not blank the value"
    for auth in by_kind(docs, "TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == "dcc-amqp" and ref["key"] == "RABBITMQ_MANAGEMENT_URL"


def _secret_refs(docs: list[Doc]) -> dict[str, set[tuple[str, str]]]:
    """Component -> the (Secret, key) pairs its containers read."""
    refs: dict[str, set[tuple[str, str]]] = {}
    for workload in workloads(docs):
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        for container in containers(workload):
            for env in container.get("env", []):
                ref = env["valueFrom"]["secretKeyRef"]
                refs.setdefault(component, set()).add((ref["name"], ref["key"]))
    return refs


def test_every_secret_the_config_names_reaches_the_service_that_reads_it() -> None:
    config = example_config()
    refs = _secret_refs(render("overlays/example"))
    for component in ("collector", "reporter", "resolver", "scanner"):
        assert ("dcc-amqp", "AMQP_URL") in refs[component]
    tsig = {
        source.config.tsig_key.secret_env
        for source in config.zone_data_sources.values()
        if hasattr(source, "config") and source.config.tsig_key is not None
    }
    assert tsig and {("dcc-tsig", name) for name in tsig if name} <= refs["collector"]
    assert config.alerts is not None
    receivers = {
        getattr(receiver, field)
        for receiver in config.alerts.receivers
        for field in ("url_env", "secret_env")
        if getattr(receiver, field, None)
    }
    assert receivers and {("dcc-alerts", name) for name in receivers} <= refs["reporter"]
    assert {name for pairs in refs.values() for name, _ in pairs} == SECRETS, "every documented Secret is used"
