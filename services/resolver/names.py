"""Zone-relative record names → absolute names, the way the original's zones JSON means them."""

from __future__ import annotations


def absolute(name: str, zone: str) -> str:
    """``@`` → zone; ``abs.name.`` → ``abs.name``; ``www`` → ``www.<zone>``; lower-cased."""
    name = name.strip()
    if name in ("@", ""):
        return zone.lower()
    if name.endswith(".") and not name.endswith("\\."):
        return name[:-1].lower()
    return f"{name}.{zone}".lower()


def is_wildcard(fqdn: str) -> bool:
    return fqdn.startswith("*.")


def wildcard_parent(fqdn: str) -> str:
    return fqdn[2:]


def covering_wildcards(fqdn: str, zone: str) -> list[str]:
    """Wildcard owners that could cover ``fqdn`` inside ``zone``, closest first.

    (RFC 4592's closest-encloser rule is approximated by nearest ancestor: good enough for
    the names a zone transfer shows us, since an existing name blocks synthesis below it only
    when it has its own records, which the caller checks first.)
    """
    labels = fqdn.split(".")
    candidates = []
    for i in range(1, len(labels)):
        parent = ".".join(labels[i:])
        candidates.append("*." + parent)
        if parent == zone:
            break
    return candidates


def in_zone(fqdn: str, zone: str) -> bool:
    return fqdn == zone or fqdn.endswith("." + zone)
