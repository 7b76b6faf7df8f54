"""The limits on input that ``shared.config`` enforces (issue 10, defects 6 and 7), unit by unit."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from pathlib import Path

import pytest

from shared import config as cfg
from shared.config import ConfigError, load_config, load_zones_json
from shared.messages import ZoneRecord


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


# --- file caps ----------------------------------------------------------------------------------


def test_a_config_over_the_cap_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    monkeypatch.setattr(cfg, "MAX_CONFIG_BYTES", 100)
    path = _write(tmp_path / "c.json", json.dumps({"name_filters": ["x" * 200]}))
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path)
    _write(path, "{}")
    load_config(path)


def test_a_zones_json_over_the_cap_is_refused(tmp_path):
    path = _write(tmp_path / "z.json", json.dumps({"a.test": [{"type": "A", "name": "w", "target": "192.0.2.1"}] * 50}))
    with pytest.raises(ConfigError, match="larger than"):
        load_zones_json(path, limit=1000)
    assert len(load_zones_json(path, limit=10_000)["a.test"]) == 50


def test_an_endless_stream_is_cut_at_the_cap(tmp_path):
    fifo = tmp_path / "endless"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as out, contextlib.suppress(BrokenPipeError):
            out.write(b"{" + b" " * 10_000_000)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    with pytest.raises(ConfigError, match="larger than"):
        load_zones_json(fifo, limit=100_000)
    writer.join(timeout=10)


@pytest.mark.timeout(60)  # it reads one chunk, not the 1 GiB cap (and never forever)
def test_dev_zero_as_zones_json_fails_fast():
    with pytest.raises(ConfigError) as info:
        load_zones_json("/dev/zero")
    assert str(info.value).startswith("/dev/zero: ")


# --- the zones JSON decodes straight into the wire records ------------------------------------


def test_zones_json_records_are_wire_records_with_unknown_types_dropped(tmp_path):
    path = _write(
        tmp_path / "z.json",
        json.dumps(
            {
                "a.test": [
                    {"type": "A", "name": "w", "ttl": 300, "target": "192.0.2.1"},
                    {"type": "MX", "name": "@", "ttl": 300, "target": "10 mail"},
                    {"type": "CNAME", "name": "c", "target": "w"},
                ]
            }
        ),
    )
    loaded = load_zones_json(path)
    assert loaded == {"a.test": [ZoneRecord("A", "w", "192.0.2.1", 300), ZoneRecord("CNAME", "c", "w", None)]}


def test_errors_keep_naming_the_place_in_the_whole_file(tmp_path):
    path = _write(
        tmp_path / "z.json",
        '{"a.test": [], "b.test": [{"type": "A", "name": "w", "target": "192.0.2.1"}, {"type": "A", "name": 1}]}',
    )
    with pytest.raises(ConfigError) as info:
        load_zones_json(path)
    assert str(info.value) == f"{path}: Expected `str`, got `int` - at `$[...][1].name`"


def test_an_over_long_name_reaches_the_pipeline_bounded_and_still_invalid(tmp_path):
    path = _write(
        tmp_path / "z.json", json.dumps({"a.test": [{"type": "A", "name": "n" * 2**20, "target": "x" * 2**20}]})
    )
    [record] = load_zones_json(path)["a.test"]
    assert len(record.name) <= cfg.MAX_NAME_SPELLING + 1 and len(record.target) <= cfg.MAX_NAME_SPELLING + 1
    assert cfg.name_length_problem(record.name, "a.test") is not None


# --- DNS name lengths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "origin", "problem"),
    [
        ("www", "example.test", None),
        ("@", "example.test", None),
        ("", "example.test", None),
        ("abs.name.", "example.test", None),
        ("l" * 63, "", None),
        ("l" * 64, "", "label"),
        ("a." * 126 + "b", "", None),  # 253
        ("a." * 126 + "bc", "", "longer"),  # 254
        ("a." * 126 + "b.", "", None),  # 253 and the root's dot
        ("x" * 10**6, "", "longer"),
        ("\\000" * 63, "", None),
        ("\\000" * 64, "", "label"),
        ("w", "z" * 64 + ".test", "label"),
        ("w", "z." * 127, "longer"),  # the origin alone is 253
    ],
)
def test_name_length_problem(name, origin, problem):
    found = cfg.name_length_problem(name, origin)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_shorten_quotes_ordinary_names_whole():
    assert cfg.shorten("www.example.test") == "www.example.test"
    long = cfg.shorten("a" * 10**6)
    assert long.startswith("aaaa") and long.endswith("...") and len(long) < 80


# --- name_filters -------------------------------------------------------------------------------


ORDINARY_FILTERS = [
    r"^internal\.",
    r"\.local$",
    r"test",
    r"^_",
    r"\*",
    r"^autodiscover\.",
    r".*\.dev\..*",
    r"^(www|api|mail)\.",
    r"^(dev|test|staging)-[a-z0-9]+\.",
    r"^(\d{1,3}\.){3}\d{1,3}$",
    r"^[a-z]+[0-9]+\.corp$",
    r"(?i)^VPN\d*\.",
    r"^.*-dev-?.*$",
    r"^(?:foo|bar)?baz\.",
    r"^x{2,5}\.",
    r"[(+*]",
    r"\(a+\)+",
]

CATASTROPHIC_FILTERS = [
    r"(a+)+$",
    r"(a*)*b",
    r"(a+)*",
    r"^(\w+\.?)+corp$",
    r"(a|aa)+$",
    r"(a|a)*b",
    r"(?:x+y?)+z",
    r"\w+\w+\w+\d$",
    r".*.*.*.*x",
    r".*\..*\..*\.corp$",
    r"(\w{1,8}){8}x",
    r"[a-z]+[a-z]+[a-z]+[a-z]+1",
    "a?" * 30 + "a" * 30,
    r"(.{0,100}){2,}",
]


@pytest.mark.parametrize("pattern", ORDINARY_FILTERS)
def test_ordinary_name_filters_are_accepted(tmp_path, pattern):
    config = load_config(_write(tmp_path / "c.json", json.dumps({"name_filters": [pattern]})))
    assert config.compiled_name_filters()[0].pattern == pattern


@pytest.mark.parametrize("pattern", CATASTROPHIC_FILTERS)
def test_catastrophic_name_filters_are_refused_naming_the_pattern(tmp_path, pattern):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path / "c.json", json.dumps({"name_filters": [pattern]})))
    assert "name_filters" in str(info.value) and repr(pattern)[:40] in str(info.value)


@pytest.mark.timeout(60)  # the refused patterns take minutes to hours on these names
@pytest.mark.parametrize("pattern", ORDINARY_FILTERS)
def test_accepted_filters_end_on_the_worst_names(pattern):
    """What the rule promises, checked on the worst inputs we can think of."""
    compiled = re.compile(pattern)
    for text in ("a" * 253, "1." * 126, "a-" * 126, "." * 253, "x" * 253):
        compiled.search(text)


# --- ConfigError is one line --------------------------------------------------------------------


def test_config_error_is_always_one_bounded_line():
    error = ConfigError("bad\nforged: " + "x" * 10**6 + "\r\x1b[2J")
    text = str(error)
    assert "\n" not in text and "\r" not in text and "\x1b" not in text
    assert len(text) < 2000
    assert text.startswith("bad\\nforged: ")
