"""The k8s/ kustomizations rendered by the real ``kubectl kustomize`` (no cluster involved).

kubectl is required: without it the tests fail, they never skip. Each directory is rendered once
per test session; every caller gets freshly parsed documents, so no test sees another's edits.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import yaml

from shared.config import Config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
# what someone applies: the central site and every overlay (segments/ are their building blocks)
DEPLOYABLE = ["base"] + sorted(f"overlays/{p.name}" for p in (K8S / "overlays").iterdir() if p.is_dir())
SEGMENTS = sorted(p.name for p in (K8S / "segments").iterdir() if p.is_dir())
HEALTH_PORT = 8080

Doc = dict[str, Any]


@functools.cache
def _rendered(directory: str) -> str:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed to render k8s/"
    out = subprocess.run([kubectl, "kustomize", str(K8S / directory)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize k8s/{directory}: {out.stderr}"
    return out.stdout


def render(directory: str) -> list[Doc]:
    """The documents of ``k8s/<directory>`` as kustomize builds them."""
    return [doc for doc in yaml.safe_load_all(_rendered(directory)) if doc]


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    [doc] = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return doc


def workloads(docs: list[Doc]) -> list[Doc]:
    """Every object that runs pods: the Deployments and the CronJob."""
    return by_kind(docs, "Deployment") + by_kind(docs, "CronJob")


def pod_template(workload: Doc) -> Doc:
    if workload["kind"] == "CronJob":
        return dict(workload["spec"]["jobTemplate"]["spec"]["template"])
    return dict(workload["spec"]["template"])


def pod_spec(workload: Doc) -> Doc:
    return dict(pod_template(workload)["spec"])


def containers(workload: Doc) -> list[Doc]:
    return list(pod_spec(workload)["containers"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector picks an object with these labels."""
    return all(labels.get(key) == value for key, value in selector.items())


def segment_of(deployment: Doc) -> str:
    args = containers(deployment)[0]["args"]
    return str(args[args.index("--segment") + 1])


def example_config() -> Config:
    return msgspec.json.decode((K8S / "config" / "config.json").read_bytes(), type=Config)
