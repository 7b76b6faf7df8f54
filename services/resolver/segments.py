"""Which network segment's scanners scan an address: the most specific CIDR wins."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SegmentMap:
    def __init__(self, segments: Mapping[str, Sequence[str]], default: str | None) -> None:
        self._networks: list[tuple[_Network, str]] = sorted(
            ((ipaddress.ip_network(cidr, strict=False), name) for name, cidrs in segments.items() for cidr in cidrs),
            key=lambda item: item[0].prefixlen,
            reverse=True,
        )
        self._default = default

    def names(self) -> list[str]:
        """Every segment a job can be routed to."""
        names = dict.fromkeys(name for _, name in self._networks)
        if self._default is not None:
            names[self._default] = None
        return list(names)

    def segment_of(self, address: str) -> str | None:
        """The segment of ``address``; the default when none claims it; None when there is no default."""
        ip = ipaddress.ip_address(address)
        for network, name in self._networks:
            if ip.version == network.version and ip in network:
                return name
        return self._default
