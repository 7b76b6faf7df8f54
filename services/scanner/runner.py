"""Wiring of the scanner service: its handler and how the shared runner should feed it."""

from __future__ import annotations

from services.scanner.handler import ScannerHandler
from services.scanner.scan import ScanSettings
from shared.config import Config
from shared.runner import ServeOptions


def make_handler(config: Config) -> ScannerHandler:
    return ScannerHandler(ScanSettings.from_config(config))


def serve_options(config: Config) -> ServeOptions:
    """Batches as large as the engine's concurrency; two of them in flight, so a batch's last slow
    endpoints (a silent host costs a network_timeout) never leave the engine idle."""
    concurrency = max(1, config.scan_concurrency)
    workers = 2
    return ServeOptions(
        workers=workers,
        batch_size=concurrency,
        batch_linger=0.05,
        prefetch=workers * concurrency,
        # In-flight endpoints finish within scan_timeout of starting; a full queued batch needs two rounds
        # (more if many of its names share an address: they take turns). Unfinished work is redelivered.
        drain_timeout=max(30.0, 2 * config.scan_timeout + 5),
    )
