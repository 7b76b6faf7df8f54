"""Scanners per segment, each scaled by its own KEDA ScaledObject on its own queue; disruption
budgets; grace periods longer than each service's drain (the scanner's from scan_timeout)."""

from __future__ import annotations

import pytest

from services.reporter.runner import OPTIONS as REPORTER_OPTIONS
from services.resolver.runner import OPTIONS as RESOLVER_OPTIONS
from services.scanner.runner import serve_options as scanner_options
from shared.transport.amqp import Topology
from shared.transport.base import scan_queue
from tests.deploy.kustomize import (
    DEPLOYABLE,
    SEGMENTS,
    Doc,
    by_kind,
    containers,
    example_config,
    named,
    pod_spec,
    pod_template,
    render,
    segment_of,
    selects,
)

GRACE_MARGIN = 15  # seconds after the drain deadline: give the rest back, close connections
SEGMENT_OVERLAYS = [f"overlays/{segment}" for segment in SEGMENTS]


def _scanners(docs: list[Doc]) -> list[Doc]:
    return [d for d in by_kind(docs, "Deployment") if containers(d)[0]["args"][0] == "scanner"]


def _scaled_object_of(docs: list[Doc], deployment: Doc) -> Doc:
    name = deployment["metadata"]["name"]
    scaled = [s for s in by_kind(docs, "ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == name]
    assert len(scaled) == 1, f"{name}: one ScaledObject, found {len(scaled)}"
    return scaled[0]


def test_every_segment_in_the_config_has_its_scanner_and_the_example_composes_two() -> None:
    config = example_config()
    assert set(SEGMENTS) == set(config.segments), "segments/<name> for each of config.json's segments"
    assert {f"overlays/{s}" for s in SEGMENTS} <= set(DEPLOYABLE)
    segments = sorted(segment_of(d) for d in _scanners(render("overlays/example")))
    assert segments == sorted([config.default_segment or "", *SEGMENTS])
    assert len(SEGMENTS) >= 2


@pytest.mark.parametrize("directory", SEGMENT_OVERLAYS)
def test_a_segment_overlay_is_one_scanner_with_its_config(directory: str) -> None:
    segment = directory.rsplit("/", 1)[1]
    docs = render(directory)
    [deployment] = by_kind(docs, "Deployment")
    assert deployment["metadata"]["name"] == f"dcc-scanner-{segment}"
    assert segment_of(deployment) == segment
    [config_map] = by_kind(docs, "ConfigMap")
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert {d["kind"] for d in docs} == {
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ScaledObject",
        "Service",
        "ServiceMonitor",
        "TriggerAuthentication",
    }


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_each_scanner_is_scaled_on_its_own_segments_queue_counting_unacked_messages(directory: str) -> None:
    docs = render(directory)
    scanners = _scanners(docs)
    assert scanners
    queues = set()
    for deployment in scanners:
        segment = segment_of(deployment)
        scaled = _scaled_object_of(docs, deployment)
        [trigger] = scaled["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        metadata = trigger["metadata"]
        assert metadata["queueName"] == Topology().queue(scan_queue(segment)), deployment["metadata"]["name"]
        assert metadata["protocol"] == "http", "amqp would not count the scans in flight"
        assert metadata["mode"] == "QueueLength" and metadata.get("excludeUnacknowledged", "false") == "false"
        assert "host" not in metadata, "the management URL carries a password: it comes from the Secret"
        auth = named(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        assert [ref["parameter"] for ref in auth["spec"]["secretTargetRef"]] == ["host"]
        assert scaled["spec"]["minReplicaCount"] >= 1 and scaled["spec"]["maxReplicaCount"] > 1
        behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        window = behavior["scaleDown"]["stabilizationWindowSeconds"]
        assert window >= 2 * scaled["spec"]["pollingInterval"] and window >= 300, "no flapping between bursts"
        # the pods of two segments never mix: the selector carries the segment
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector["dns-cert-checker/segment"] == segment
        queues.add(metadata["queueName"])
    assert len(queues) == len(scanners)


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_every_deployment_outlasts_its_drain_and_the_resolver_and_scanners_have_a_budget(directory: str) -> None:
    config = example_config()
    drains = {
        "reporter": REPORTER_OPTIONS.drain_timeout,
        "resolver": RESOLVER_OPTIONS.drain_timeout,
        "scanner": scanner_options(config).drain_timeout,  # max(30, 2 x scan_timeout + 5)
    }
    docs = render(directory)
    budgets = by_kind(docs, "PodDisruptionBudget")
    for deployment in by_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        command = containers(deployment)[0]["args"][0]
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert grace >= drains[command] + GRACE_MARGIN, f"{name} must outlast its {drains[command]:.0f} s drain"
        labels = pod_template(deployment)["metadata"]["labels"]
        mine = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], labels)]
        if command == "reporter":
            assert not mine, "one reporter with Recreate: a budget would only block node drains"
            assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
            continue
        assert len(mine) == 1, name
        assert mine[0]["spec"]["maxUnavailable"] == 1
        assert mine[0]["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", "an unready pod must not block a drain"
