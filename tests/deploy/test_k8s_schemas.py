"""Every deployable kustomization renders, and every object in it validates offline: Kubernetes'
kinds against kubernetes-validate's bundled schemas, KEDA's and the Prometheus Operator's against
the schemas in schemas/. The schemas are shown to reject what a cluster would silently ignore."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.kustomize import DEPLOYABLE, Doc, by_kind, render
from tests.deploy.validation import K8S_VERSION, problems


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_every_object_of_a_deployable_kustomization_validates_offline(directory: str) -> None:
    docs = render(directory)
    assert docs
    found = [problem for doc in docs for problem in problems(doc)]
    assert not found, "\n".join(found)


def test_the_kubernetes_schemas_are_the_newest_bundled_and_strict() -> None:
    assert kubernetes_validate.latest_version() == K8S_VERSION
    assert tuple(int(part) for part in K8S_VERSION.split(".")[:2]) >= (1, 32)  # the installed kubectl's
    [deployment] = [d for d in render("base") if d["kind"] == "Deployment" and "reporter" in d["metadata"]["name"]]
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    assert problems(deployment), "a misspelt field must fail, not be dropped"


def test_a_kind_without_a_schema_is_a_problem() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert problems(doc)


def _example(kind: str) -> Doc:
    return copy.deepcopy(by_kind(render("overlays/example"), kind)[0])


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value

    return mutate


SCALE_DOWN = "spec/advanced/horizontalPodAutoscalerConfig/behavior/scaleDown"
MISTAKES = {
    "a ScaledObject with a British stabilisation window": (
        "ScaledObject",
        _set(f"{SCALE_DOWN}/stabilisationWindowSeconds", 600),
    ),
    "a ScaledObject whose window is a string": (
        "ScaledObject",
        _set(f"{SCALE_DOWN}/stabilizationWindowSeconds", "10m"),
    ),
    "a ScaledObject with no target name": ("ScaledObject", _set("spec/scaleTargetRef", {})),
    "a rabbitmq trigger value that is a number": ("ScaledObject", _set("spec/triggers/0/metadata/value", 200)),
    "a rabbitmq trigger with an unknown parameter": ("ScaledObject", _set("spec/triggers/0/metadata/queue", "x")),
    "a rabbitmq trigger counting a message rate over amqp": (
        "ScaledObject",
        _set("spec/triggers/0/metadata", {"protocol": "amqp", "mode": "MessageRate", "value": "5", "queueName": "q"}),
    ),
    "an authenticationRef of an unknown kind": (
        "ScaledObject",
        _set("spec/triggers/0/authenticationRef/kind", "Secret"),
    ),
    "a TriggerAuthentication with a secret reference missing its key": (
        "TriggerAuthentication",
        _set("spec/secretTargetRef/0", {"parameter": "host", "name": "dcc-amqp"}),
    ),
    "a TriggerAuthentication with an unknown field": ("TriggerAuthentication", _set("spec/secretRef", [])),
    "a ServiceMonitor endpoint with a misspelt interval": ("ServiceMonitor", _set("spec/endpoints/0/intervall", "30s")),
    "a ServiceMonitor interval that is not a duration": ("ServiceMonitor", _set("spec/endpoints/0/interval", "30 s")),
    "a ServiceMonitor without a selector": ("ServiceMonitor", lambda doc: doc["spec"].pop("selector")),
    "a PrometheusRule rule both alert and record": (
        "PrometheusRule",
        _set("spec/groups/0/rules/0/record", "dcc:expiring"),
    ),
    "a PrometheusRule with a wordy for": ("PrometheusRule", _set("spec/groups/1/rules/0/for", "10 minutes")),
    "a PrometheusRule rule with no expression": (
        "PrometheusRule",
        lambda doc: doc["spec"]["groups"][0]["rules"][0].pop("expr"),
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_the_custom_resource_schemas_reject_a_mistake(mistake: str) -> None:
    kind, mutate = MISTAKES[mistake]
    doc = _example(kind)
    assert not problems(doc)
    mutate(doc)
    assert problems(doc), f"{mistake} must not validate"
