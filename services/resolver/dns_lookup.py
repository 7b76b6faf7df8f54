"""Out-of-zone lookups through the configured ``lookup_nameservers`` (dnspython, with timeouts).

Never falls back to /etc/resolv.conf unless the config says ``use_system_resolver``.
"""

from __future__ import annotations

from collections.abc import Callable
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
    resolver.timeout = config.dns_timeout
    resolver.lifetime = config.dns_timeout
    return lambda name: _lookup(resolver, name)


def _lookup(resolver: dns.resolver.Resolver, name: str) -> LookupAnswer:
    addresses: list[str] = []
    nxdomain = False
    errors: list[str] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = resolver.resolve(name + ".", rdtype, search=False)
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
