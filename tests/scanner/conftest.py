"""Fixtures of the scanner tests: one running lab (real TLS servers on loopback) for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab import Lab, start_lab
from services.scanner.handler import ScannerHandler
from services.scanner.scan import ScanSettings

NETWORK_TIMEOUT = 1.0  # what a silent endpoint may cost; kept short so the suite stays fast


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with start_lab(tmp_path_factory.mktemp("scanner-lab")) as running:
        yield running


@pytest.fixture(scope="session")
def settings(lab: Lab) -> ScanSettings:
    return ScanSettings(network_timeout=NETWORK_TIMEOUT, scan_timeout=10.0, custom_ca_file=lab.ca_file)


@pytest.fixture(scope="session")
def handler(settings: ScanSettings) -> Iterator[ScannerHandler]:
    scanner = ScannerHandler(settings)
    yield scanner
    scanner.close()
