"""Offline schema validation of rendered manifests.

Kubernetes' own kinds: the schemas kubernetes-validate bundles (the newest version it ships, the
strict variant: unknown fields are errors). Custom resources (KEDA, Prometheus Operator):
the schemas written for this project in ``schemas/`` (see its README), which borrow Kubernetes'
definitions (ObjectMeta, LabelSelector, HPA behavior) from the same bundle. A kind with no
schema is a problem, never skipped.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

K8S_VERSION = kubernetes_validate.latest_version()
SCHEMAS = Path(__file__).parent / "schemas"
CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh-v1alpha1-scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh-v1alpha1-triggerauthentication.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com-v1-servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com-v1-prometheusrule.json",
}


@functools.cache
def _kubernetes_definitions() -> Registry:
    bundle = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{K8S_VERSION}-local-strict"
    definitions = json.loads((bundle / "_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()  # its $id: https://kubernetes.io/api/_definitions.json


@functools.cache
def _custom_validator(filename: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / filename).read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, registry=_kubernetes_definitions())


def problems(doc: dict[str, Any]) -> list[str]:
    """What is wrong with ``doc`` by its kind's schema: empty when it validates."""
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    custom = CUSTOM_RESOURCES.get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if custom is not None:
        errors = sorted(_custom_validator(custom).iter_errors(doc), key=lambda e: list(e.absolute_path))
        return [f"{where} at {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{where}: {exc.message}"]
    except kubernetes_validate.ValidationError as exc:
        return [f"{where} at {'/'.join(map(str, exc.absolute_path))}: {exc.message}"]
    return []
