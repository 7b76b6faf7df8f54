"""A real Knot DNS server on loopback, shared by the collector's tests (one per session)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import BindServer, TsigKey
from tests.collector.knot import DENY, TSIG, KnotServer, KnotZone, start_knot
from tests.collector.zones import bulk_zone, refused_zone, small_zone, tsig_zone

BULK_RECORDS = 10_000
SECRET_ENV = "DCC_TEST_TSIG_SECRET"


@pytest.fixture(scope="session")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    """small.test, also.test (open), bulk.test (10k records), secret.test (TSIG), refused.test (no ACL)."""
    workdir = tmp_path_factory.mktemp("knot")
    server = start_knot(
        workdir,
        [
            KnotZone("small.test", small_zone("small.test")),
            KnotZone("also.test", small_zone("also.test", serial=5)),
            KnotZone("bulk.test", bulk_zone("bulk.test", BULK_RECORDS)),
            KnotZone("secret.test", tsig_zone("secret.test"), acl=TSIG),
            KnotZone("refused.test", refused_zone("refused.test"), acl=DENY),
        ],
    )
    os.environ[SECRET_ENV] = server.tsig_secret
    try:
        yield server
    finally:
        os.environ.pop(SECRET_ENV, None)
        server.stop()


@pytest.fixture
def bind(knot: KnotServer) -> BindServer:
    """The test server without a key, with short bounds so failures are quick."""
    return BindServer(server_ip=knot.address, server_port=knot.port, timeout=2.0, lifetime=30.0, retries=1)


@pytest.fixture
def bind_tsig(knot: KnotServer) -> BindServer:
    return BindServer(
        server_ip=knot.address,
        server_port=knot.port,
        timeout=2.0,
        lifetime=30.0,
        retries=1,
        tsig_key=TsigKey(name=knot.tsig_name, algorithm=knot.tsig_algorithm, secret_env=SECRET_ENV),
    )


@pytest.fixture
def secret_file(knot: KnotServer, tmp_path: Path) -> Path:
    path = tmp_path / "tsig.secret"
    path.write_text(knot.tsig_secret + "\n")
    return path
