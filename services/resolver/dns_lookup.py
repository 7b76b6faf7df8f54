"""Out-of-zone lookups through the configured ``lookup_nameservers`` (dnspython, with timeouts).

Never falls back to /etc/resolv.conf unless the config says ``use_system_resolver``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from shared.config import Config


@dataclass(frozen=True)
class LookupAnswer:
    """The addresses of a name, or why there are none."""

    addresses: tuple[str, ...] = ()
    nxdomain: bool = False  # the name does not exist (a dangling CNAME)
    error: str | None = None  # the lookup itself failed (timeout, SERVFAIL, no nameservers)


Lookup = Callable[[str], LookupAnswer]

_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dcc-lookup")


def no_lookup(name: str) -> LookupAnswer:
    return LookupAnswer(error="no lookup_nameservers configured")


def make_lookup(config: Config) -> Lookup:
    """A lookup function for the resolver handler, bound to the config's nameservers."""
    if config.lookup_nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in config.nameservers()]
    elif config.use_system_resolver:
        resolver = dns.resolver.Resolver(configure=True)
    else:
        return no_lookup
    resolver.timeout = config.dns_timeout  # per nameserver try
    # the whole budget lets every configured nameserver have its try: a dead first one must not
    # hide a working second one
    resolver.lifetime = config.dns_timeout * max(1, len(resolver.nameservers))
    return lambda name: _lookup(resolver, name)


def _lookup(resolver: dns.resolver.Resolver, name: str) -> LookupAnswer:
    addresses: list[str] = []
    nxdomain = False
    errors: list[str] = []
    # A and AAAA at once: a lookup costs one budget, not two
    futures = [_POOL.submit(resolver.resolve, name + ".", rdtype, search=False) for rdtype in _TYPES]
    for future in futures:
        try:
            answer = future.result()
            addresses.extend(rr.to_text() for rr in answer)
        except dns.resolver.NXDOMAIN:
            nxdomain = True
        except dns.resolver.NoAnswer:
            pass  # the name exists, without this type
        except dns.resolver.LifetimeTimeout:
            errors.append(f"timed out resolving {name}")
        except dns.resolver.NoNameservers:
            errors.append(f"no nameserver answered for {name}")
        except dns.exception.DNSException as exc:
            errors.append(f"lookup of {name} failed: {exc}")
    if addresses:
        return LookupAnswer(addresses=tuple(dict.fromkeys(addresses)))
    if errors:
        return LookupAnswer(error=errors[0])
    return LookupAnswer(nxdomain=nxdomain)
