"""One NetworkPolicy per component, derived from config.json: scanners reach the broker and their
segment's networks on ssl_ports only, the resolver its lookup nameservers, the collector its
authoritative servers (TCP), the reporter its receivers; only Prometheus reaches anything, and
only on the health port."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.config import BindSource, ZoneFileSource, parse_host_port
from tests.deploy.kustomize import (
    DEPLOYABLE,
    HEALTH_PORT,
    Doc,
    by_kind,
    containers,
    example_config,
    named,
    pod_template,
    render,
    segment_of,
    selects,
    workloads,
)

# The peers k8s/ uses, exactly: a kustomize label transformer with includeSelectors would add a
# segment label to these and quietly select nothing.
BROKER = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "rabbitmq"}}}
BROKER_PORTS = [{"port": 5672, "protocol": "TCP"}, {"port": 5671, "protocol": "TCP"}]
CLUSTER_DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
DNS_PORTS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}
ALERTMANAGER = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}}}
PRIVATE_V4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


def _policy_of(docs: list[Doc], workload: Doc) -> Doc:
    labels = pod_template(workload)["metadata"]["labels"]
    policies = [p for p in by_kind(docs, "NetworkPolicy") if selects(p["spec"]["podSelector"]["matchLabels"], labels)]
    assert len(policies) == 1, f"{workload['metadata']['name']}: {[p['metadata']['name'] for p in policies]}"
    return policies[0]


def _rules_to(policy: Doc, peer: dict[str, Any]) -> list[Doc]:
    return [rule for rule in policy["spec"]["egress"] if rule["to"] == [peer]]


def _ip_rules(policy: Doc) -> list[Doc]:
    return [rule for rule in policy["spec"]["egress"] if all("ipBlock" in peer for peer in rule["to"])]


def _covers(rule: Doc, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    for peer in rule["to"]:
        block = peer["ipBlock"]
        network = ipaddress.ip_network(block["cidr"])
        cut = [ipaddress.ip_network(c) for c in block.get("except", [])]
        if ip.version == network.version and ip in network and not any(ip in c for c in cut):
            return True
    return False


def _every_rule_is_known(policy: Doc, *extra_peers: dict[str, Any]) -> None:
    """The broker, the cluster DNS, ipBlocks, and the named extra peers: nothing else."""
    assert _rules_to(policy, BROKER) and _rules_to(policy, BROKER)[0]["ports"] == BROKER_PORTS
    assert _rules_to(policy, CLUSTER_DNS) and _rules_to(policy, CLUSTER_DNS)[0]["ports"] == DNS_PORTS
    for rule in policy["spec"]["egress"]:
        assert rule["ports"], f"{policy['metadata']['name']}: every egress rule names its ports"
        if rule in _ip_rules(policy):
            continue
        assert len(rule["to"]) == 1 and rule["to"][0] in (BROKER, CLUSTER_DNS, *extra_peers), rule


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_every_pod_is_isolated_by_exactly_one_policy_that_lets_in_only_prometheus_on_health(directory: str) -> None:
    docs = render(directory)
    for workload in workloads(docs):
        policy = _policy_of(docs, workload)
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        ingress = policy["spec"]["ingress"]
        if workload["kind"] == "CronJob":
            assert ingress == [], "nothing reaches the collector"
            continue
        assert ingress == [{"from": [PROMETHEUS], "ports": [{"port": "health", "protocol": "TCP"}]}]
        [container] = containers(workload)
        assert {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"} in container["ports"]


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_a_scanner_reaches_the_broker_and_its_segments_networks_on_the_ssl_ports_only(directory: str) -> None:
    config = example_config()
    docs = render(directory)
    scanners = [d for d in by_kind(docs, "Deployment") if containers(d)[0]["args"][0] == "scanner"]
    assert scanners
    claimed = [ipaddress.ip_network(cidr) for cidrs in config.segments.values() for cidr in cidrs]
    for scanner in scanners:
        segment = segment_of(scanner)
        policy = _policy_of(docs, scanner)
        _every_rule_is_known(policy)
        [targets] = _ip_rules(policy)
        assert targets["ports"] == [{"port": port, "protocol": "TCP"} for port in config.ssl_ports]
        blocks = [peer["ipBlock"] for peer in targets["to"]]
        if segment in config.segments:
            assert blocks == [{"cidr": cidr} for cidr in config.segments[segment]], segment
        else:  # the default segment: every address that no segment claims
            assert segment == config.default_segment
            assert {b["cidr"] for b in blocks} == {"0.0.0.0/0", "::/0"}
            cut = {ipaddress.ip_network(c) for b in blocks for c in b.get("except", [])}
            assert cut == set(claimed), "the default scanner must not scan another segment's networks"
        # the DNS rule exists for the broker's name only: a scanner never resolves what it scans
        assert all(rule["to"] == [CLUSTER_DNS] for rule in policy["spec"]["egress"] if rule["ports"] == DNS_PORTS)


def test_the_resolver_reaches_the_broker_and_exactly_the_lookup_nameservers() -> None:
    config = example_config()
    assert config.lookup_nameservers
    docs = render("base")
    policy = _policy_of(docs, named(docs, "Deployment", "dcc-resolver"))
    _every_rule_is_known(policy)
    rules = _ip_rules(policy)
    wanted = [parse_host_port(entry, 53) for entry in config.lookup_nameservers]
    for host, port in wanted:
        assert any(
            _covers(rule, host) and rule["ports"] == [{"port": port, "protocol": p} for p in ("UDP", "TCP")]
            for rule in rules
        ), f"{host}:{port} (UDP and TCP)"
    blocks = {peer["ipBlock"]["cidr"] for rule in rules for peer in rule["to"]}
    assert blocks == {str(ipaddress.ip_network(host)) for host, _ in wanted}, "no other address"


def test_the_collector_reaches_the_broker_and_exactly_the_authoritative_servers_over_tcp() -> None:
    config = example_config()
    for name, source in config.zone_data_sources.items():  # a source that needs the network has its rule
        assert isinstance(source, BindSource | ZoneFileSource), f"{name}: give the collector's policy its egress"
    sources = [s for s in config.zone_data_sources.values() if isinstance(s, BindSource)]
    servers = [(s.config.server_ip, s.config.server_port) for s in sources]
    servers += [(ns, 53) for ns in config.nameserver_zones]
    assert servers
    docs = render("base")
    [cron] = by_kind(docs, "CronJob")
    policy = _policy_of(docs, cron)
    _every_rule_is_known(policy)
    rules = _ip_rules(policy)
    for host, port in servers:
        assert any(_covers(rule, host) and rule["ports"] == [{"port": port, "protocol": "TCP"}] for rule in rules)
    blocks = {peer["ipBlock"]["cidr"] for rule in rules for peer in rule["to"]}
    assert blocks == {str(ipaddress.ip_network(host)) for host, _ in servers}, "no other address"


def test_the_reporter_reaches_the_broker_and_every_configured_receiver() -> None:
    config = example_config()
    assert config.alerts is not None and config.alerts.receivers
    docs = render("base")
    policy = _policy_of(docs, named(docs, "Deployment", "dcc-reporter"))
    _every_rule_is_known(policy, ALERTMANAGER)
    for receiver in config.alerts.receivers:
        if receiver.url is None:  # from a Secret: a hosted HTTPS endpoint, public addresses only
            [public] = [rule for rule in _ip_rules(policy) if rule["ports"] == [{"port": 443, "protocol": "TCP"}]]
            assert _covers(public, "203.0.113.7") and _covers(public, "2001:db8::7")
            for private in PRIVATE_V4 + ["fc00::/7"]:
                assert not _covers(public, str(ipaddress.ip_network(private)[1])), f"{private} is not the internet"
            continue
        url = urlsplit(receiver.url)
        port = url.port or (443 if url.scheme == "https" else 80)
        assert url.hostname and "." not in url.hostname, "an in-cluster Service name"
        [rule] = _rules_to(policy, ALERTMANAGER)
        assert rule["ports"] == [{"port": port, "protocol": "TCP"}], receiver.name
