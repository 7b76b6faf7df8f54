"""The example Prometheus rules: valid, unit-tested with promtool, and about metrics we export."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from services.reporter.alerts.metrics import AlertMetrics

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
PROMTOOL = "/usr/bin/promtool"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert os.access(PROMTOOL, os.X_OK), f"{PROMTOOL} not found: apt-get install prometheus (it ships promtool)"
    return subprocess.run([PROMTOOL, *args], cwd=RULES, capture_output=True, text=True, timeout=60)


def test_promtool_finds_the_rules_valid():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout


def test_the_rules_unit_tests_pass():
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_metric_the_rules_use_is_one_the_reporter_exports():
    exported = {m.name for m in AlertMetrics(["ops"]).registry.collect()}
    exported |= {f"{name}_total" for name in exported}  # counters' samples
    rules = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"][0]["rules"]
    used = {name for rule in rules for name in re.findall(r"\bdcc_[a-z_]+", rule["expr"])}
    assert used and used <= exported, used - exported
