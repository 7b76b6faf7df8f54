"""The import rules that keep the structure readable (docs/architecture.md), checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names), at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def importers(top: str, *packages: str) -> list[str]:
    return [
        str(p.relative_to(ROOT))
        for p in sources(*packages)
        if any(m == top or m.startswith(top + ".") for m in imports(p))
    ]


def test_the_common_library_never_imports_the_services() -> None:
    assert importers("services", "shared") == []


def test_the_transport_knows_nothing_of_the_runner() -> None:
    assert importers("shared.runner", "shared/transport") == []


def test_only_the_amqp_transport_imports_pika() -> None:
    assert all(p.startswith("shared/transport/amqp/") for p in importers("pika", "shared", "services"))
    assert importers("pika", "shared", "services") != []


@pytest.mark.parametrize("library", ["sslyze", "nassl"])
def test_only_the_scanner_imports_the_tls_scanning_libraries(library: str) -> None:
    users = importers(library, "shared", "services")
    assert users and all(p.startswith("services/scanner/") for p in users)


def test_only_collector_and_resolver_import_dnspython() -> None:
    users = importers("dns", "shared", "services")
    assert users and all(p.startswith(("services/collector/", "services/resolver/")) for p in users)


def test_stages_never_import_each_other() -> None:
    stages = ["collector", "resolver", "scanner", "reporter"]
    for stage in stages:
        for other in stages:
            if other != stage:
                assert importers(f"services.{other}", f"services/{stage}") == [], (stage, other)
