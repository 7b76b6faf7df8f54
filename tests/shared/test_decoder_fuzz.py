"""Property-based fuzzing of the two input decoders (issue 10).

``load_config`` and ``load_zones_json`` on arbitrary bytes and on structurally plausible JSON:
either a valid result or a ``ConfigError`` whose message is one bounded line — never another
exception, and never slow (hypothesis fails an example that exceeds its ``deadline``). The number
of examples is bounded so the file runs in a few seconds; ``DCC_FUZZ_EXAMPLES=20000`` runs longer.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import Config, ConfigError, load_config, load_zones_json
from shared.messages import ZoneRecord

EXAMPLES = int(os.environ.get("DCC_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=2),
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LONGEST_NAME = "a" * 253


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "input"


def _check_error(error: ConfigError) -> None:
    text = str(error)
    assert text and "\n" not in text and "\r" not in text, repr(text)
    assert len(text) <= 2100, len(text)


def _load_config(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        config = load_config(path)
    except ConfigError as error:
        _check_error(error)
        return
    assert isinstance(config, Config)
    assert config.ssl_ports and all(0 < p < 65536 for p in config.ssl_ports)
    for pattern in config.compiled_name_filters():  # an accepted filter is fast on the longest name
        pattern.search(LONGEST_NAME)
        pattern.search("a." * 126 + "b")


def _load_zones(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        zones = load_zones_json(path)
    except ConfigError as error:
        _check_error(error)
        return
    assert isinstance(zones, dict)
    for zone, records in zones.items():
        assert isinstance(zone, str)
        assert all(isinstance(r, ZoneRecord) and r.type in ("A", "AAAA", "CNAME") for r in records)


# --- arbitrary bytes ----------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2048))
def test_config_from_arbitrary_bytes(scratch: Path, data: bytes) -> None:
    _load_config(scratch, data)


@FUZZ
@given(st.binary(max_size=2048))
def test_zones_json_from_arbitrary_bytes(scratch: Path, data: bytes) -> None:
    _load_zones(scratch, data)


# --- plausible JSON -----------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_regex = st.text(alphabet="ab.\\w()+*?|{}0123456789,[]^$-:", max_size=24)
_zone_name = st.text(max_size=30) | st.sampled_from(["example.test", "l" * 64 + ".test", "z." * 130, ""])
_ip = st.sampled_from(["127.0.0.1", "::1", "10.0.0.2:5353", "[::1]:53", "nonsense", "1.2.3.4:0", "1.2.3.4:99999"])
_bind_server = st.fixed_dictionaries(
    {"server_ip": _ip},
    optional={
        "server_port": st.integers(-5, 70000),
        "timeout": st.floats(-1, 1e6, allow_nan=False),
        "lifetime": st.floats(-1, 1e7, allow_nan=False),
        "retries": st.integers(-2, 100),
        "tsig_key": st.fixed_dictionaries({"name": st.text(max_size=10)}, optional={"secret_env": st.text(max_size=8)}),
    },
)
_source = st.fixed_dictionaries(
    {"type": st.just("BIND"), "config": _bind_server}, optional={"zones": st.lists(_zone_name, max_size=3)}
) | st.fixed_dictionaries(
    {"type": st.just("FILE"), "files": st.dictionaries(_zone_name, st.text(max_size=10), max_size=2)}
)
_config_values: dict[str, st.SearchStrategy[Any]] = {
    "log_level": st.integers(-100, 100),
    "ssl_ports": st.lists(st.integers(-10, 70000), max_size=4),
    "min_time_to_expiration": st.integers(-(2**40), 2**62),
    "zone_data_sources": st.dictionaries(st.text(max_size=8), _source, max_size=2),
    "nameserver_zones": st.dictionaries(_ip, st.lists(_zone_name, max_size=3), max_size=2),
    "lookup_nameservers": st.lists(_ip, max_size=3),
    "name_filters": st.lists(_regex, max_size=3),
    "dns_timeout": st.floats(-10, 1e6, allow_nan=False),
    "use_system_resolver": st.booleans(),
    "wildcard_probe_label": st.text(max_size=70),
    "network_timeout": st.floats(-10, 1e6, allow_nan=False),
    "scan_timeout": st.floats(-10, 1e6, allow_nan=False),
    "scan_concurrency": st.integers(-10, 10**9),
    "max_connections_per_ip": st.integers(-10, 10**9),
    "segments": st.dictionaries(st.text(max_size=8), st.lists(st.text(max_size=20), max_size=2), max_size=2),
    "default_segment": st.none() | st.text(max_size=10),
    "run_deadline": st.floats(-10, 1e9, allow_nan=False),
    "state_dir": st.none() | st.text(max_size=10),
}
_config_doc = st.fixed_dictionaries(
    {}, optional={key: value | _json for key, value in _config_values.items()}
) | st.dictionaries(st.text(max_size=12), _json, max_size=4)


@FUZZ
@given(_config_doc)
def test_config_from_plausible_json(scratch: Path, doc: dict[str, Any]) -> None:
    _load_config(scratch, json.dumps(doc).encode())


_record = st.fixed_dictionaries(
    {"type": st.sampled_from(["A", "AAAA", "CNAME", "MX", "TXT", ""]) | st.text(max_size=6)},
    optional={
        "name": st.sampled_from(["@", "*", "www", "a.b", "abs.name.", "l" * 64, "n" * 300]) | st.text(max_size=20),
        "target": st.sampled_from(["192.0.2.1", "::1", "@", "x", "abs.name."]) | st.text(max_size=20),
        "ttl": st.none() | st.integers(-(2**70), 2**70) | st.text(max_size=4),
    },
)
_zones_doc = st.dictionaries(_zone_name, st.lists(_record, max_size=6), max_size=3) | _json


@FUZZ
@given(_zones_doc)
def test_zones_json_from_plausible_json(scratch: Path, doc: Any) -> None:
    _load_zones(scratch, json.dumps(doc).encode())


@settings(max_examples=3 * EXAMPLES, deadline=timedelta(seconds=1), database=None)
@given(st.text(alphabet="ab.\\w()+*?|{}0123456789,[]^$-:#=!<>P", max_size=40) | st.text(max_size=40))
def test_the_filter_analysis_never_raises_and_what_it_accepts_is_fast(pattern: str) -> None:
    from shared.config import regex_problem

    if regex_problem(pattern) is None:
        compiled = re.compile(pattern)
        compiled.search(LONGEST_NAME)
        compiled.search("a." * 126 + "b")
