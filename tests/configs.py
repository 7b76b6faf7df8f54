"""The one way tests build a ``Config`` from a dict: through the same decoder as config.json."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from shared.config import Config


def config_from(data: Mapping[str, object]) -> Config:
    return msgspec.json.decode(msgspec.json.encode(data), type=Config)
