"""The README's configuration tables against the code, so neither can drift from the other.

Every key a config.json may hold is found by walking msgspec's type information of ``Config``
(nested structs, tagged unions, dicts and lists of structs), spelt as the README spells it:
``zone_data_sources.<name>.config.server_port``, ``alerts.receivers[].url_env``. Every
environment variable is found by reading the source of ``shared/`` and ``services/`` for
``os.environ`` / ``os.getenv`` calls with a literal name.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

import msgspec
import msgspec.inspect as mi

from shared.config import Config

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "### config.json"
REQUIRED = "required"

# The compatibility contract (the original's config.json keys): the README marks exactly these.
ORIGINAL_KEYS = {
    "log_level",
    "ssl_ports",
    "min_time_to_expiration",
    "zone_data_sources",
    "zone_data_sources.<name>.type",
    "zone_data_sources.<name>.config",
    "zone_data_sources.<name>.config.server_ip",
    "zone_data_sources.<name>.config.server_port",
    "zone_data_sources.<name>.zones",
    "nameserver_zones",
    "lookup_nameservers",
    "name_filters",
}


@dataclass(frozen=True)
class Row:
    key: str
    original: bool
    cells: tuple[str, ...]


# --- the README side ----------------------------------------------------------------------------


def _section() -> list[str]:
    """The lines of the README's config section: from its heading to the next ``##``/``###`` one."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(SECTION)
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "### "))),
        len(lines),
    )
    return lines[start + 1 : end]


def _cells(line: str) -> tuple[str, ...]:
    inner = line.strip().removeprefix("|").removesuffix("|")
    return tuple(cell.strip() for cell in re.split(r"(?<!\\)\|", inner))


def _tables(first_header: str) -> list[Row]:
    """Rows of every table of the section whose first header cell is ``first_header``."""
    rows: list[Row] = []
    header: tuple[str, ...] | None = None
    for line in _section():
        if not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = cells
        elif header[0] == first_header and not set(line) <= set("|-: "):
            code = re.search(r"`([^`]+)`", cells[0])
            assert code is not None, f"no key in {line!r}"
            rows.append(Row(code.group(1), "*(original)*" in cells[0], cells))
    return rows


def _documented() -> dict[str, Row]:
    rows = _tables("key")
    keys = [row.key for row in rows]
    assert len(keys) == len(set(keys)), f"keys documented twice: {sorted({k for k in keys if keys.count(k) > 1})}"
    return {row.key: row for row in rows}


def _documented_default(row: Row) -> object:
    """The default cell's value: ``REQUIRED``, or its first code span read as JSON."""
    cell = row.cells[2]
    if cell.startswith(REQUIRED):
        return REQUIRED
    code = re.match(r"`([^`]*)`", cell)
    assert code is not None, f"{row.key}: default {cell!r} is neither `JSON` nor required"
    return json.loads(code.group(1))


# --- the code side ------------------------------------------------------------------------------


def _structs(t: mi.Type) -> list[mi.StructType]:
    if isinstance(t, mi.StructType):
        return [t]
    if isinstance(t, mi.UnionType):
        return [s for member in t.types for s in _structs(member)]
    return []


def _walk(t: mi.Type, prefix: str, out: dict[str, list[object]]) -> None:
    """Every key under ``t`` with the default(s) it has: a field of several union members may have several."""
    for struct in _structs(t):
        if struct.tag_field is not None:
            out.setdefault(prefix + struct.tag_field, []).append(REQUIRED)
        for field in struct.fields:
            key = prefix + field.encode_name
            out.setdefault(key, []).append(_default(field))
            _walk_container(field.type, key, out)


def _walk_container(t: mi.Type, key: str, out: dict[str, list[object]]) -> None:
    for member in t.types if isinstance(t, mi.UnionType) else [t]:
        if isinstance(member, mi.ListType):
            _walk(member.item_type, key + "[].", out)
        elif isinstance(member, mi.DictType):
            _walk(member.value_type, key + ".<name>.", out)
        else:
            _walk(member, key + ".", out)


def _default(field: mi.Field) -> object:
    if field.required:
        return REQUIRED
    if field.default_factory is not msgspec.NODEFAULT:
        return msgspec.to_builtins(field.default_factory())
    return msgspec.to_builtins(field.default)


def _code_keys() -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    _walk(mi.type_info(Config), "", out)
    return out


def _is_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and _is_name(node.value, "os")


def _is_name(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _literal_env_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        argument: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
            func = node.func
            environ_get = func.attr == "get" and _is_environ(func.value)
            if environ_get or (func.attr == "getenv" and _is_name(func.value, "os")):
                argument = node.args[0]
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            argument = node.slice
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            names.add(argument.value)
    return names


def _code_env_names() -> set[str]:
    names: set[str] = set()
    for package in ("shared", "services"):
        for path in sorted((ROOT / package).rglob("*.py")):
            names |= _literal_env_names(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return names


def _same(documented: object, actual: object) -> bool:
    """Equal, and of the same kind: ``false`` is not ``0``, but ``3600`` is ``3600.0``."""
    if isinstance(documented, bool) or isinstance(actual, bool):
        return documented is actual
    if isinstance(documented, (int, float)) and isinstance(actual, (int, float)):
        return documented == actual
    return type(documented) is type(actual) and documented == actual


# --- the tests ----------------------------------------------------------------------------------


def test_every_config_key_of_the_code_is_in_the_readme_table() -> None:
    missing = sorted(set(_code_keys()) - set(_documented()))
    assert missing == [], f"keys the code accepts but the README's config tables do not list: {missing}"


def test_every_key_in_the_readme_table_is_one_the_code_accepts() -> None:
    unknown = sorted(set(_documented()) - set(_code_keys()))
    assert unknown == [], f"keys the README documents but config.json would refuse: {unknown}"


def test_each_documented_default_is_the_default_the_code_applies() -> None:
    code = _code_keys()
    wrong = {
        key: (_documented_default(row), code[key])
        for key, row in _documented().items()
        if key in code and not any(_same(_documented_default(row), actual) for actual in code[key])
    }
    assert wrong == {}, f"README default vs the code's (key: (README, code)): {wrong}"


def test_the_original_keys_are_marked_original_and_no_others_are() -> None:
    marked = {key for key, row in _documented().items() if row.original}
    assert marked == ORIGINAL_KEYS


def test_every_row_says_its_type_what_it_does_and_who_reads_it() -> None:
    incomplete = [row.key for row in _documented().values() if len(row.cells) != 5 or not all(row.cells)]
    assert incomplete == []


def test_every_environment_variable_the_code_reads_is_documented_and_no_other() -> None:
    documented = {row.key for row in _tables("variable") if re.fullmatch(r"[A-Z][A-Z0-9_]*", row.key)}
    assert documented == _code_env_names()


def test_the_environment_scan_finds_literal_names_and_ignores_computed_ones() -> None:
    source = "import os\nos.environ.get('A_B')\nos.getenv('C')\nos.environ['D']\nos.environ.get(name)\nx.get('E')\n"
    assert _literal_env_names(ast.parse(source)) == {"A_B", "C", "D"}
