"""Webhook bodies match docs/webhook-event.schema.json, for every type of event."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from services.reporter.alerts.events import ZONE_REMOVED, Event
from services.reporter.alerts.formats import webhook_body
from services.reporter.alerts.problems import problems_of
from tests.reporter.alerts.runs import expired, report

DOCS = Path(__file__).resolve().parents[3] / "docs"
SCHEMA = json.loads((DOCS / "webhook-event.schema.json").read_text())
TYPES = {"object": dict, "array": list, "string": str, "integer": int, "null": type(None)}


def errors(value: object, schema: dict, where: str = "$") -> list[str]:
    """The subset of JSON Schema the file uses: $ref, type, enum, required, properties,
    additionalProperties, items, oneOf, pattern-free strings and date-time formats."""
    if "$ref" in schema:
        return errors(value, SCHEMA["$defs"][schema["$ref"].rsplit("/", 1)[1]], where)
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not errors(value, s, where)]
        return [] if len(matching) == 1 else [f"{where}: matches {len(matching)} of oneOf"]
    found: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} not in {schema['enum']}")
    kinds = schema.get("type")
    if kinds is not None:
        allowed = tuple(TYPES[k] for k in ([kinds] if isinstance(kinds, str) else kinds))
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            return [f"{where}: {type(value).__name__} is not {kinds}"]
    if schema.get("format") == "date-time":
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if isinstance(value, dict):
        found += [f"{where}: missing {key}" for key in schema.get("required", []) if key not in value]
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            found += [f"{where}: unexpected {key}" for key in value if key not in properties]
        for key, item in value.items():
            if key in properties:
                found += errors(item, properties[key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += errors(item, schema["items"], f"{where}[{i}]")
    return found


def test_every_kind_of_event_matches_the_published_schema():
    (problem,) = problems_of(report("r1", [expired("www.a.test")]).rows, "r1", 1e9).values()
    for event in (Event("opened", problem), Event("changed", problem, problem), Event("resolved", problem)):
        body = json.loads(webhook_body(event, 1e9))
        assert errors(body, SCHEMA) == [], event.kind


def test_a_problem_resolved_because_its_zone_was_removed_matches_the_published_schema():
    (problem,) = problems_of(report("r1", [expired("www.a.test")]).rows, "r1", 1e9).values()
    body = json.loads(webhook_body(Event("resolved", problem, reason=ZONE_REMOVED), 1e9))
    assert "zone removed" in json.dumps(body)
    assert errors(body, SCHEMA) == []


def test_the_schema_checker_rejects_a_body_that_does_not_match():
    (problem,) = problems_of(report("r1", [expired("www.a.test")]).rows, "r1", 1e9).values()
    body = json.loads(webhook_body(Event("opened", problem), 1e9))
    body["type"] = "problem.exploded"
    del body["data"]["severity"]
    body["data"]["port"] = "443"
    kinds = ["problem.opened", "problem.changed", "problem.reminder", "problem.resolved"]
    assert errors(body, SCHEMA) == [
        f"$.type: 'problem.exploded' not in {kinds}",
        "$.data: missing severity",
        "$.data.port: str is not ['integer', 'null']",
    ]


def test_the_example_event_in_the_documentation_matches_the_schema():
    text = (DOCS / "alerting.md").read_text()
    example = text[text.index("### `webhook`") :].split("```json\n", 1)[1].split("```", 1)[0]
    assert errors(json.loads(example), SCHEMA) == []
