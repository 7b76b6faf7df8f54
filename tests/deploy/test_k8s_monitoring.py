"""Every long-running service is scraped exactly once (Service + ServiceMonitor on the health
port); the PrometheusRule carries deploy/prometheus/alerts.yml unchanged, plus service-health
rules that promtool checks and unit-tests, on the metric names of the health contract."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.kustomize import DEPLOYABLE, ROOT, Doc, by_kind, pod_template, render, selects

PROMTOOL = "/usr/bin/promtool"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
HEALTH_GROUP = "dns-cert-checker-services"
# /metrics of every service's health port (the health contract), and Prometheus' own "up"
CONTRACT_METRICS = {
    "up",
    "dcc_messages_consumed_total",
    "dcc_messages_published_total",
    "dcc_messages_dead_lettered_total",
    "dcc_handler_duration_seconds",
    "dcc_broker_reconnects_total",
    "dcc_messages_in_flight",
    "dcc_ready",
    "dcc_scans_total",
    "dcc_scan_duration_seconds",
    "dcc_endpoints_in_flight",
    "dcc_scanner_busiest_address_connections",
    "dcc_jobs_planned_total",
}


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert os.access(PROMTOOL, os.X_OK), f"{PROMTOOL} not found: apt-get install prometheus (it ships promtool)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def _rule_groups() -> list[Doc]:
    [rule] = by_kind(render("base"), "PrometheusRule")
    return list(rule["spec"]["groups"])


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_every_long_running_service_is_scraped_exactly_once_on_its_health_port(directory: str) -> None:
    docs = render(directory)
    services = by_kind(docs, "Service")
    monitors = by_kind(docs, "ServiceMonitor")
    for deployment in by_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        labels = pod_template(deployment)["metadata"]["labels"]
        [service] = [s for s in services if selects(s["spec"]["selector"], labels)]
        assert service["spec"]["clusterIP"] == "None", f"{name}: a scrape target, not a service anyone calls"
        assert service["spec"]["ports"] == [{"name": "health", "port": 8080, "targetPort": "health", "protocol": "TCP"}]
        scraping = [m for m in monitors if selects(m["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])]
        assert len(scraping) == 1, f"{name}: scraped by {[m['metadata']['name'] for m in scraping]}"
        assert scraping[0]["spec"]["endpoints"] == [{"port": "health", "path": "/metrics", "interval": "30s"}]
        annotations = pod_template(deployment)["metadata"].get("annotations", {})
        assert not any(key.startswith("prometheus.io/") for key in annotations), f"{name}: scraped twice"


def test_the_prometheus_rule_carries_the_alert_rules_of_deploy_unchanged() -> None:
    alerts = yaml.safe_load(ALERTS.read_text())["groups"]
    groups = _rule_groups()
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names))
    assert [g for g in groups if g["name"] in {a["name"] for a in alerts}] == alerts
    assert set(names) == {a["name"] for a in alerts} | {HEALTH_GROUP}


def test_promtool_finds_every_rule_of_the_prometheus_rule_valid(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": _rule_groups()}))
    checked = _promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{sum(len(g['rules']) for g in _rule_groups())} rules found" in checked.stdout


def test_the_service_health_rules_fire_as_their_unit_tests_say(tmp_path: Path) -> None:
    [group] = [g for g in _rule_groups() if g["name"] == HEALTH_GROUP]
    (tmp_path / "service_health_rules.yml").write_text(yaml.safe_dump({"groups": [group]}))
    shutil.copy(Path(__file__).with_name("service_health_rules_test.yml"), tmp_path)
    tested = _promtool("test", "rules", "service_health_rules_test.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = set(re.findall(r"alertname: (\w+)", (tmp_path / "service_health_rules_test.yml").read_text()))
    assert tested_alerts == {rule["alert"] for rule in group["rules"]}, "every health rule has a unit test"


def test_the_service_health_rules_use_only_the_metric_names_of_the_contract() -> None:
    [group] = [g for g in _rule_groups() if g["name"] == HEALTH_GROUP]
    for rule in group["rules"]:
        expr = re.sub(r'"[^"]*"', "", rule["expr"])  # label values are not metric names
        metrics = set(re.findall(r"\b(up|dcc_[a-z_]+)\b", expr))
        assert metrics and metrics <= CONTRACT_METRICS, f"{rule['alert']}: {metrics - CONTRACT_METRICS}"
