"""Scanner engines side by side: the same N loopback TLS endpoints, every engine in one run.

    .venv/bin/python bench/sidebyside.py [--endpoints 1000] [--engines a,b,c,d,e] [--max-seconds 120] [--rounds 2]
        [--concurrency 100] [--latency-ms MS]

Servers: two separate processes (asyncio TLS servers), each serving half of the endpoints, which
are spread over up to 250 loopback addresses (127.0.40.1-127.0.40.250) and ceil(N/250) ports per
address. The mix: ~35 % valid names under one shared wildcard certificate, ~15 % valid names in
shared multi-name certificates (25 names each), ~40 % valid unique certificates, and 10 % broken:
4 % expired, 3 % self-signed, 3 % hostname mismatch (the wildcard certificate served for a name it
does not cover). Every chain comes from a private CA (lab.certs), given to every engine as its CA.
Each server counts the TCP connections it accepts per endpoint and reports them over a Pipe after
each engine, so TCP connections per endpoint are the servers' counts, not the client's claims.

Engines (each in its own child process, so its CPU (os.wait4) and peak RSS (VmHWM) are its own):
  a  SSLyze CLI, defaults: `python -m sslyze --certinfo --certinfo_ca_file CA --targets_in FILE`
     (+ --json_out, --quiet to read its verdicts); wall and CPU include its start-up
  b  sslyze.Scanner tuned: CERTIFICATE_INFO only, custom_ca_file, concurrent_server_scans_limit
     --concurrency, 1 connection per server
  c  this project, in process: ScannerHandler (services.scanner.runner.make_handler) fed batches
     as shared.runner.serve feeds them, scan_mode fast (c-fast) and full (c-full)
  d  the raw baseline: one verified handshake per endpoint with asyncio + ssl (the CA loaded,
     check_hostname on), --concurrency at once
  e  distributed: 1 (e1) and 2 (e2) `dns-cert-checker scanner` processes (fast) on one segment
     queue of the RabbitMQ at 127.0.0.1:5672, under a throw-away name prefix; the worker publishes
     the jobs and consumes the results (the resolver's and reporter's part); CPU and RSS are the
     scanners'. Skipped when nothing listens there.

Latency profile (--latency-ms MS, needs root and iproute2): the two server processes run in a
network namespace of their own, joined to the host by a veth pair (host 10.231.0.1/24, namespace
10.231.0.2/24); the endpoint addresses are 10.231.1.1-10.231.1.250 on the namespace's end, routed
via it. Both ends delay every packet by MS/2 (tc netem), so each connection from the engines (on the
host, as always) sees MS of round trip. The namespace and the veth are deleted at the end.

--concurrency is the endpoints at once of (b) and (d), and the scan_concurrency of (c) and each
scanner process of (e) (its default, 100, is the configuration's default).

Rounds run every engine in turn, every other round in reverse order (engines interleaved, so drift
hits them alike); the ratios are medians over rounds. --max-seconds bounds each engine run.

For b, c and d the scan figures start once the engine is built (trust stores loaded); the
"process" columns are the whole child process, start-up included, as for a. A verdict is "bad"
when: SSLyze's path validation against the supplied CA fails for the SNI deployment (a, b), the
scan has an error finding (c, e), the handshake fails (d). All engines must flag the same endpoints
(else a MISMATCH line); each is also compared with the truth of how the endpoint was built.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import multiprocessing
import os
import random
import re
import signal
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `lab`, `services`, `shared` import even where the editable install predates them

IP_PREFIX = "127.0.40."
NETNS_HOST, NETNS_PEER = "10.231.0.1", "10.231.0.2"  # the veth pair of --latency-ms, a /24
NETNS_PREFIX = "10.231.1."  # the endpoint addresses of --latency-ms, on the namespace's end
CLONE_NEWNET = 0x40000000
MAX_ADDRESSES = 250
SERVER_PROCESSES = 2
ZONE = "bench.test"
WILDCARD_ZONE = f"wild.{ZONE}"
GROUP_SIZE = 25  # names per shared multi-name certificate
MAX_ENDPOINTS = 5000

# Share of each case in the mix (the rest is "unique": a valid certificate of its own).
MIX = {"wildcard": 0.35, "group": 0.15, "expired": 0.04, "self_signed": 0.03, "mismatch": 0.03}
BROKEN = ("expired", "self_signed", "mismatch")

ENGINE_LABELS = {
    "a": "(a) sslyze CLI, defaults",
    "b": "(b) sslyze.Scanner tuned",
    "c-fast": "(c) ScannerHandler fast",
    "c-full": "(c) ScannerHandler full",
    "d": "(d) asyncio+ssl handshake",
    "e1": "(e) distributed, 1 scanner",
    "e2": "(e) distributed, 2 scanners",
}
AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672  # the broker (e) uses: AMQP_URL's default


# --------------------------------------------------------------------------- endpoints and certificates


@dataclass
class Endpoint:
    index: int
    case: str  # unique, wildcard, group, expired, self_signed, mismatch
    hostname: str
    ip: str
    slot: int  # which of the address's ports
    cert_id: str
    port: int = 0  # known once the server bound it


def _cases(n: int, rng: random.Random) -> list[str]:
    cases: list[str] = []
    for name, share in MIX.items():
        cases += [name] * round(n * share)
    cases += ["unique"] * (n - len(cases))
    rng.shuffle(cases)
    return cases[:n]


def build_population(n: int, certdir: Path, prefix: str = IP_PREFIX) -> tuple[list[Endpoint], Path]:
    """The endpoints (no ports yet) and their certificates in ``certdir``; returns the CA file too."""
    from lab.certs import DAY, Issued, issue, make_authority

    certdir.mkdir(parents=True, exist_ok=True)
    pki = make_authority()
    ca_file = certdir / "ca.pem"
    ca_file.write_bytes(pki.root.pem)
    rng = random.Random(20240)
    cases = _cases(n, rng)
    addresses = min(MAX_ADDRESSES, n)

    def write(cert_id: str, chain: list[Issued]) -> str:
        (certdir / f"{cert_id}.pem").write_bytes(b"".join(c.pem for c in chain))
        (certdir / f"{cert_id}.key").write_bytes(chain[0].key_pem)
        return cert_id

    wildcard = write("wildcard", [pki.leaf(f"*.{WILDCARD_ZONE}"), pki.intermediate])
    endpoints: list[Endpoint] = []
    groups: dict[int, list[Endpoint]] = {}
    for i, case in enumerate(cases):
        ip = f"{prefix}{i % addresses + 1}"
        slot = i // addresses
        if case == "wildcard":
            endpoints.append(Endpoint(i, case, f"w{i}.{WILDCARD_ZONE}", ip, slot, wildcard))
            continue
        if case == "mismatch":  # a shared certificate served for a name it does not cover
            endpoints.append(Endpoint(i, case, f"m{i}.{ZONE}", ip, slot, wildcard))
            continue
        if case == "group":
            group = sum(1 for e in endpoints if e.case == "group") // GROUP_SIZE
            endpoint = Endpoint(i, case, f"s{i}.g{group}.{ZONE}", ip, slot, f"group{group}")
            groups.setdefault(group, []).append(endpoint)
            endpoints.append(endpoint)
            continue
        host = f"h{i}.{ZONE}"
        if case == "expired":
            chain = [pki.leaf(host, start_days=-400, days=365), pki.intermediate]
        elif case == "self_signed":
            chain = [issue(host, san=[host], not_before=pki.now - DAY, not_after=pki.now + 365 * DAY)]
        else:
            chain = [pki.leaf(host), pki.intermediate]
        endpoints.append(Endpoint(i, case, host, ip, slot, write(f"e{i}", chain)))
    for group, members in groups.items():
        names = [e.hostname for e in members]
        start = pki.now - DAY
        leaf = issue(names[0], issuer=pki.intermediate, san=names, not_before=start, not_after=start + 365 * DAY)
        write(f"group{group}", [leaf, pki.intermediate])
    return endpoints, ca_file


# --------------------------------------------------------------------------- servers (separate processes)


def _bind_same_port(ips: list[str]) -> tuple[int, list[socket.socket]]:
    """One listener per address, all on one port (picked by the first bind)."""
    for _attempt in range(50):
        socks: list[socket.socket] = []
        port = 0
        try:
            for ip in ips:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((ip, port))
                sock.listen(1024)
                sock.setblocking(False)
                port = sock.getsockname()[1]
        except OSError as exc:
            for sock in socks:
                sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return port, socks
    raise OSError(errno.EADDRINUSE, "no port free on every address")


def serve(conn: Connection, specs: list[tuple[int, str, int, str]], certdir: str, netns: str = "") -> None:
    """A server process: ``specs`` are (endpoint index, ip, slot, certificate id). Sends ("ready",
    {slot: port}), then answers "counts" with (connections per endpoint, CPU seconds) since the last
    "counts", until "stop". With ``netns``, it first joins that network namespace."""
    if netns:
        _join_netns(netns)
    asyncio.run(_serve(conn, specs, Path(certdir)))


async def _serve(conn: Connection, specs: list[tuple[int, str, int, str]], certdir: Path) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, _context: None)  # scanners hang up mid-handshake: expected
    contexts: dict[str, ssl.SSLContext] = {}
    for cert_id in sorted({s[3] for s in specs}):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certdir / f"{cert_id}.pem", certdir / f"{cert_id}.key")
        context.num_tickets = 0
        contexts[cert_id] = context
    counts: Counter[int] = Counter()
    open_now = [0]

    async def handle(
        index: int, context: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        counts[index] += 1
        open_now[0] += 1
        try:
            await writer.start_tls(context, ssl_handshake_timeout=10)
            while await asyncio.wait_for(reader.read(4096), 10):
                pass
        except Exception:
            pass  # odd ClientHellos, resets, timeouts: a scanner's business
        finally:
            open_now[0] -= 1
            writer.transport.abort()

    by_slot: dict[int, list[tuple[int, str, str]]] = {}
    for index, ip, slot, cert_id in specs:
        by_slot.setdefault(slot, []).append((index, ip, cert_id))
    ports: dict[int, int] = {}
    servers = []
    for slot, members in sorted(by_slot.items()):
        port, socks = _bind_same_port([ip for _, ip, _ in members])
        ports[slot] = port
        for sock, (index, _, cert_id) in zip(socks, members, strict=True):
            callback = partial(handle, index, contexts[cert_id])
            servers.append(await asyncio.start_server(callback, sock=sock, backlog=1024))

    stop = asyncio.Event()
    cpu0 = [time.process_time()]

    async def report() -> None:
        await asyncio.sleep(0.3)  # connections still in the accept queue get counted
        for _ in range(100):  # and the client's last connections have been hung up
            if not open_now[0]:
                break
            await asyncio.sleep(0.1)
        cpu = time.process_time()
        conn.send((dict(counts), cpu - cpu0[0]))
        counts.clear()
        cpu0[0] = cpu

    tasks: set[asyncio.Task[None]] = set()

    def on_command() -> None:
        command = conn.recv()
        if command == "counts":
            task = loop.create_task(report())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            stop.set()

    loop.add_reader(conn.fileno(), on_command)
    conn.send(("ready", ports))
    await stop.wait()
    loop.remove_reader(conn.fileno())
    for server in servers:
        server.close()


def _join_netns(name: str) -> None:
    """setns(2) into /run/netns/``name`` (Python 3.11 has no os.setns): sockets made after are in it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns {name}: {os.strerror(code)}")
    finally:
        os.close(fd)


TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000


def _open_tun(name: str) -> int:
    import fcntl
    import struct

    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def delay_line(host_if: str, peer_if: str, netns: str, delay: float, ready: Connection) -> None:
    """The wire of the tun link (for kernels without netem): every packet the host sends on
    ``host_if`` comes out of ``peer_if`` in ``netns`` ``delay`` seconds later, and back alike."""
    import heapq
    import selectors

    host = _open_tun(host_if)
    _join_netns(netns)
    peer = _open_tun(peer_if)
    other = {host: peer, peer: host}
    pending: list[tuple[float, int, int, bytes]] = []
    seq = 0
    selector = selectors.DefaultSelector()
    for fd in other:
        selector.register(fd, selectors.EVENT_READ)
    ready.send("ready")
    while True:
        timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
        for key, _ in selector.select(timeout):
            fd = int(key.fd)
            with contextlib.suppress(BlockingIOError):
                while True:
                    packet = os.read(fd, 65536)
                    seq += 1
                    heapq.heappush(pending, (time.monotonic() + delay, seq, other[fd], packet))
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, fd, packet = heapq.heappop(pending)
            with contextlib.suppress(OSError):  # a full tun queue drops it, as a wire would
                os.write(fd, packet)


class LatencyNetns:
    """--latency-ms: a network namespace joined to the host by a veth pair, ``addresses`` on its end
    (routed from the host via it), and netem delaying every packet by ``ms``/2 on both ends. Where
    the kernel has no netem (sch_netem), the link is a pair of tun devices instead, one on each
    side, and a process of ours is the wire between them, holding every packet ``ms``/2."""

    def __init__(self, ms: float, addresses: Iterable[str]) -> None:
        tag = f"{os.getpid() % 100000}"
        self.name = f"dcc-sbs-{tag}"
        self.host_if, self.peer_if = f"sbsh{tag}", f"sbsn{tag}"  # at most 15 characters
        self.ms = ms
        self.addresses = sorted(set(addresses))
        self.created = False
        self.link = ""  # veth+netem or tun+delay line, once up
        self.wire: Any = None  # the delay line's process

    @staticmethod
    def _ip(*args: str, stdin: str | None = None) -> None:
        import subprocess

        done = subprocess.run(list(args), input=stdin, text=True, capture_output=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")

    def __enter__(self) -> LatencyNetns:
        try:
            try:
                self._up("veth")
            except RuntimeError as exc:
                if "qdisc kind is unknown" not in str(exc):
                    raise
                self.close()
                self._up("tun")
        except BaseException:
            self.close()
            raise
        return self

    def _up(self, link: str) -> None:
        run, ns = self._ip, self.name
        run("ip", "netns", "add", ns)
        self.created = True
        if link == "veth":
            run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
        else:
            run("ip", "tuntap", "add", "dev", self.host_if, "mode", "tun")
            run("ip", "tuntap", "add", "dev", self.peer_if, "mode", "tun")
        run("ip", "link", "set", self.peer_if, "netns", ns)
        run("ip", "addr", "add", f"{NETNS_HOST}/24", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "addr", "add", f"{NETNS_PEER}/24", "dev", self.peer_if)
        batch = "".join(f"addr add {a}/32 dev {self.peer_if}\n" for a in self.addresses)
        run("ip", "-n", ns, "-batch", "-", stdin=batch)
        run("ip", "-n", ns, "link", "set", self.peer_if, "up")
        net = NETNS_PREFIX + "0/24"
        if link == "veth":
            run("ip", "route", "add", net, "via", NETNS_PEER, "dev", self.host_if)
            netem = ["root", "netem", "delay", f"{self.ms / 2:g}ms", "limit", "100000"]
            run("tc", "qdisc", "add", "dev", self.host_if, *netem)
            run("tc", "-n", ns, "qdisc", "add", "dev", self.peer_if, *netem)
            self.link = f"veth + netem {self.ms / 2:g} ms each way"
            return
        run("ip", "route", "add", net, "dev", self.host_if)  # a tun link has no neighbours: no gateway
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        args = (self.host_if, self.peer_if, ns, self.ms / 2000, child)
        self.wire = context.Process(target=delay_line, args=args, daemon=True)
        self.wire.start()
        if not parent.poll(30):
            raise RuntimeError("the delay line did not start")
        parent.recv()
        self.link = f"tun pair + userspace delay line {self.ms / 2:g} ms each way (no netem in this kernel)"

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Deleting the namespace deletes its end of the link; the host's end goes with it (veth) or
        here (tun), and the route with that."""
        import subprocess

        if self.wire is not None:
            self.wire.kill()  # our own child, by its handle
            self.wire.join(10)
            self.wire = None
        if self.created:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
            self.created = False
        for name in (self.host_if, self.peer_if):
            if Path(f"/sys/class/net/{name}").exists():
                subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


class Servers:
    """The server processes: each serves every endpoint whose address is in its half (in ``netns``
    when given)."""

    def __init__(self, endpoints: list[Endpoint], certdir: Path, netns: str = "") -> None:
        context = multiprocessing.get_context("spawn")
        addresses = sorted({e.ip for e in endpoints}, key=lambda ip: int(ip.rsplit(".", 1)[1]))
        share = -(-len(addresses) // SERVER_PROCESSES)
        self.pipes: list[Connection] = []
        self.procs = []
        owned: list[list[Endpoint]] = []
        for p in range(SERVER_PROCESSES):
            mine = set(addresses[p * share : (p + 1) * share])
            members = [e for e in endpoints if e.ip in mine]
            if not members:
                continue
            parent, child = context.Pipe()
            specs = [(e.index, e.ip, e.slot, e.cert_id) for e in members]
            proc = context.Process(target=serve, args=(child, specs, str(certdir), netns), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
            owned.append(members)
        for pipe, members in zip(self.pipes, owned, strict=True):
            if not pipe.poll(120):
                raise RuntimeError("a server process did not start")
            _, ports = pipe.recv()
            for e in members:
                e.port = ports[e.slot]

    def counts(self) -> tuple[Counter[int], float]:
        """Connections per endpoint index and the servers' CPU seconds since the last call."""
        for pipe in self.pipes:
            pipe.send("counts")
        total: Counter[int] = Counter()
        cpu = 0.0
        for pipe in self.pipes:
            counts, spent = pipe.recv()
            total.update(counts)
            cpu += spent
        return total, cpu

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send("stop")
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()  # our own child, by its handle


# --------------------------------------------------------------------------- engines (run in a worker process)


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM: the peak RSS of ``pid``'s address space since its exec. (``ru_maxrss`` after posix_spawn
    starts at the parent's high-water mark: vfork shares the parent's memory until exec.) 0 when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def stop_children(procs: list[Any]) -> None:
    """SIGTERM our own child processes (by their handles), then wait; kill what does not stop in 30 s."""
    import subprocess

    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _broker_pid() -> int | None:
    """The local RabbitMQ's Erlang VM (beam.smp), to read its CPU; None when not found."""
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() in ("beam.smp", "beam"):
                cmdline = (stat.parent / "cmdline").read_bytes()
                if b"rabbit" in cmdline:
                    return int(stat.parent.name)
        except OSError:
            continue
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process, from /proc (0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Verdicts:
    """What a worker reports: verdict per endpoint index (None: good, else why bad), its scan timing."""

    done: int = 0
    bad: dict[int, str] = field(default_factory=dict)
    warnings: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0
    cpu: float = 0.0
    rss_mb: float = 0.0  # set by engines whose client is not this process (e)
    extra: str = ""
    note: str = ""


def _by_location(spec: dict[str, Any]) -> dict[tuple[str, int], int]:
    return {(ip, port): index for index, ip, port, _ in spec["endpoints"]}


def sslyze_verdict(deployments: list[Any] | None, get: Callable[[Any, str], Any]) -> str | None:
    """SSLyze's verdict for the SNI deployment (the first): None when the supplied CA validates it
    (name included: SSLyze 6 verifies the chain for the server's name), else the validation error.
    ``get`` reads a field, from a result object (b) or its JSON (a)."""
    if not deployments:
        return "no certificate deployment"
    for result in get(deployments[0], "path_validation_results"):
        if get(get(result, "trust_store"), "name") == "Supplied CA file":
            if get(result, "verified_certificate_chain"):
                return None
            return str(get(result, "validation_error") or "not validated")
    return "no result for the supplied CA"


def run_sslyze_scanner(spec: dict[str, Any], deadline: float) -> Verdicts:
    from sslyze import (
        CertificateInfoExtraArgument,
        ScanCommandsExtraArguments,
        Scanner,
        ServerNetworkConfiguration,
        ServerNetworkLocation,
        ServerScanRequest,
    )
    from sslyze.plugins.certificate_info.trust_stores.trust_store_repository import TrustStoresRepository
    from sslyze.plugins.scan_commands import ScanCommand

    TrustStoresRepository.get_default()  # as the other engines: stores loaded before the clock starts
    extra = ScanCommandsExtraArguments(certificate_info=CertificateInfoExtraArgument(Path(spec["ca_file"])))
    requests = [
        ServerScanRequest(
            server_location=ServerNetworkLocation(hostname=host, port=port, ip_address=ip),
            network_configuration=ServerNetworkConfiguration(tls_server_name_indication=host),
            scan_commands={ScanCommand.CERTIFICATE_INFO},
            scan_commands_extra_arguments=extra,
        )
        for _, ip, port, host in spec["endpoints"]
    ]
    where = _by_location(spec)
    verdicts = Verdicts()
    cpu0, wall0 = time.process_time(), time.monotonic()
    scanner = Scanner(per_server_concurrent_connections_limit=1, concurrent_server_scans_limit=spec["concurrency"])
    scanner.queue_scans(requests)
    for result in scanner.get_results():
        index = where[(result.server_location.ip_address or "", result.server_location.port)]
        verdicts.done += 1
        attempt = result.scan_result.certificate_info if result.scan_result else None
        if attempt is None or attempt.result is None:
            verdicts.bad[index] = f"scan failed: {result.connectivity_error_trace or attempt and attempt.error_reason}"
        else:
            bad = sslyze_verdict(attempt.result.certificate_deployments, getattr)
            if bad is not None:
                verdicts.bad[index] = bad
        if time.monotonic() > deadline:
            verdicts.note = "stopped at --max-seconds"
            break
    verdicts.wall, verdicts.cpu = time.monotonic() - wall0, time.process_time() - cpu0
    return verdicts


def run_handler(spec: dict[str, Any], deadline: float, mode: str) -> Verdicts:
    """As bench/scanner_throughput.py: batch_size jobs per handle_batch call, `workers` calls at once."""
    from services.scanner.runner import make_handler, serve_options
    from shared.config import Config
    from shared.messages import ScanJob, ScanResult

    config = Config(custom_ca_file=spec["ca_file"], scan_mode=mode, scan_concurrency=spec["concurrency"])  # type: ignore[arg-type]
    handler = make_handler(config)
    options = serve_options(config)
    jobs = _jobs(spec)
    where = _by_location(spec)
    batches = [jobs[i : i + options.batch_size] for i in range(0, len(jobs), options.batch_size)]
    verdicts = Verdicts()
    lock = threading.Lock()

    def one(batch: list[ScanJob]) -> None:
        if time.monotonic() > deadline:
            verdicts.note = "stopped at --max-seconds"
            return
        for _, outgoing in handler.handle_batch(batch):
            for out in outgoing:
                result = out.message
                assert isinstance(result, ScanResult)
                errors = sorted(f.code for f in result.findings if f.status == "error")
                with lock:
                    verdicts.done += 1
                    verdicts.warnings.update(f.code for f in result.findings if f.status != "error")
                    if errors:
                        verdicts.bad[where[(result.ip_address, result.port)]] = "+".join(errors)

    cpu0, wall0 = time.process_time(), time.monotonic()
    try:
        with ThreadPoolExecutor(options.workers) as pool:
            list(pool.map(one, batches))
    finally:
        verdicts.wall, verdicts.cpu = time.monotonic() - wall0, time.process_time() - cpu0
        handler.close()
    return verdicts


def run_raw(spec: dict[str, Any], deadline: float) -> Verdicts:
    context = ssl.create_default_context(cafile=spec["ca_file"])  # only this CA; check_hostname on
    verdicts = Verdicts()

    async def one(semaphore: asyncio.Semaphore, index: int, ip: str, port: int, host: str) -> None:
        async with semaphore:
            if time.monotonic() > deadline:
                verdicts.note = "stopped at --max-seconds"
                return
            try:
                opening = asyncio.open_connection(ip, port, ssl=context, server_hostname=host)
                _, writer = await asyncio.wait_for(opening, 10)
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 5)
            except ssl.SSLCertVerificationError as exc:
                verdicts.bad[index] = str(exc.verify_message)
            except Exception as exc:
                verdicts.bad[index] = f"error: {type(exc).__name__}: {exc}"
            verdicts.done += 1

    async def all_of_them() -> None:
        semaphore = asyncio.Semaphore(spec["concurrency"])
        await asyncio.gather(*(one(semaphore, *e) for e in spec["endpoints"]))

    cpu0, wall0 = time.process_time(), time.monotonic()
    asyncio.run(all_of_them())
    verdicts.wall, verdicts.cpu = time.monotonic() - wall0, time.process_time() - cpu0
    return verdicts


def _jobs(spec: dict[str, Any]) -> list[Any]:
    from shared.messages import ScanJob, job_id

    return [
        ScanJob(
            job_id=job_id("bench", ip, port, host, host),
            run_id="bench",
            zone=ZONE,
            ip_address=ip,
            port=port,
            fqdn=host,
            sni=host,
        )
        for _, ip, port, host in spec["endpoints"]
    ]


def run_distributed(spec: dict[str, Any], deadline: float, processes: int, workdir: Path) -> Verdicts:
    """``processes`` scanner services (`dns-cert-checker scanner`, as an operator starts them) on one
    segment queue of the real broker, under a throw-away name prefix. This process stands in for the
    resolver and the reporter: it publishes the jobs and consumes the results. The clock starts at
    the first publish, once every scanner logged that it serves; CPU and RSS are the scanners'."""
    import subprocess
    import uuid

    from shared.batches import JOBS_PER_BATCH, pack
    from shared.messages import ScanResult, unpacked
    from shared.transport.amqp import open_transport
    from shared.transport.base import REPORT, Outgoing, scan_queue
    from shared.transport.env import DEFAULT_AMQP_URL

    prefix, segment = f"bench-sbs-{uuid.uuid4().hex[:6]}.", "bench"
    queues = [scan_queue(segment), REPORT]
    url = DEFAULT_AMQP_URL  # the local broker (AMQP_HOST:AMQP_PORT), whatever AMQP_URL says
    transport = open_transport(url, prefix=prefix)
    transport.declare(queues)
    config = workdir / "scanner-config.json"
    settings = {"custom_ca_file": spec["ca_file"], "scan_mode": "fast", "scan_concurrency": spec["concurrency"]}
    config.write_text(json.dumps(settings))
    env = {**os.environ, "AMQP_URL": url, "DCC_QUEUE_PREFIX": prefix, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "services.cli", "scanner", "--config", str(config), "--segment", segment]
    logs = [workdir / f"scanner-{processes}-{i}.log" for i in range(processes)]
    procs: list[subprocess.Popen[bytes]] = []
    verdicts = Verdicts()
    where = _by_location(spec)
    seen: set[str] = set()
    try:
        for log in logs:
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen([*command, "--log-level", "20"], cwd=REPO, env=env, stdout=out, stderr=out)
                )
        ready_by = time.monotonic() + 60
        while not all(f"serving {scan_queue(segment)}" in log.read_text(errors="replace") for log in logs):
            if time.monotonic() > ready_by or any(p.poll() is not None for p in procs):
                raise RuntimeError("scanners did not start: " + logs[0].read_text(errors="replace")[-500:])
            time.sleep(0.05)
        time.sleep(0.5)  # from "serving" to consuming
        jobs = _jobs(spec)
        consumer = transport.consumer(REPORT, prefetch=1000)
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        broker = _broker_pid()
        broker0 = cpu_seconds(broker) if broker else 0.0
        self0, wall0 = time.process_time(), time.monotonic()
        # packed as the resolver packs a zone's jobs (shared.batches)
        transport.publish_many(pack([Outgoing(scan_queue(segment), job) for job in jobs], JOBS_PER_BATCH, 8))
        while len(seen) < len(jobs):
            if time.monotonic() > deadline:
                verdicts.note = "stopped at --max-seconds"
                break
            delivery = consumer.get(0.5)
            if delivery is None:
                if any(p.poll() is not None for p in procs):
                    verdicts.note = "a scanner exited"
                    break
                continue
            consumer.ack(delivery)
            for result in unpacked(delivery.body):
                if not isinstance(result, ScanResult) or result.job_id in seen:
                    continue
                seen.add(result.job_id)
                errors = sorted(f.code for f in result.findings if f.status == "error")
                verdicts.warnings.update(f.code for f in result.findings if f.status != "error")
                if errors:
                    verdicts.bad[where[(result.ip_address, result.port)]] = "+".join(errors)
        verdicts.wall = time.monotonic() - wall0
        broker_ms = 1000 * (cpu_seconds(broker) - broker0) / max(1, len(seen)) if broker else float("nan")
        verdicts.cpu = sum(cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True))
        verdicts.rss_mb = sum(peak_rss_mb(p.pid) for p in procs)
        publisher = 1000 * (time.process_time() - self0) / max(1, len(seen))
        verdicts.extra = (
            f"publisher+consumer (resolver/reporter stand-in) CPU {publisher:.2f} ms/endpoint; "
            f"broker CPU {broker_ms:.2f} ms/endpoint"
        )
        verdicts.done = len(seen)
        consumer.close()
    finally:
        stop_children(procs)
        transport.delete(queues, exchanges=True)
        transport.close()
    return verdicts


def worker(engine: str, spec_path: Path, out_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    deadline = time.monotonic() + spec["max_seconds"]
    if engine == "b":
        verdicts = run_sslyze_scanner(spec, deadline)
    elif engine in ("c-fast", "c-full"):
        verdicts = run_handler(spec, deadline, engine.removeprefix("c-"))
    elif engine == "d":
        verdicts = run_raw(spec, deadline)
    elif engine in ("e1", "e2"):
        verdicts = run_distributed(spec, deadline, int(engine[1]), spec_path.parent)
    else:
        raise SystemExit(f"unknown worker engine {engine!r}")
    out = {
        "done": verdicts.done,
        "bad": verdicts.bad,
        "warnings": dict(verdicts.warnings),
        "wall": verdicts.wall,
        "cpu": verdicts.cpu,
        "rss_mb": verdicts.rss_mb or peak_rss_mb(),
        "extra": verdicts.extra,
        "note": verdicts.note,
    }
    out_path.write_text(json.dumps(out))
    sys.stdout.flush()
    os._exit(0)  # SSLyze's and the engine's pool threads may still be winding down: not our concern here


# --------------------------------------------------------------------------- the parent: running and measuring


@dataclass
class Run:
    engine: str
    n: int
    done: int = 0
    bad: dict[int, str] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    scan_wall: float = 0.0
    scan_cpu: float = 0.0
    proc_wall: float = 0.0
    proc_cpu: float = 0.0
    rss_mb: float = 0.0
    connections: Counter[int] = field(default_factory=Counter)
    server_cpu: float = 0.0
    round: int = 1
    extra: str = ""
    note: str = ""

    @property
    def complete(self) -> bool:
        return self.done == self.n and not self.note

    @property
    def rate(self) -> float:
        return self.done / self.scan_wall if self.scan_wall else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.scan_cpu / max(1, self.done)


def _run_measured(command: list[str], timeout: float) -> tuple[int | None, float, float, float, str]:
    """Run ``command``; (exit code or None when killed at ``timeout``, wall s, CPU s, peak RSS MB, stderr tail)."""
    with tempfile.TemporaryFile() as stderr:
        start = time.monotonic()
        actions = [
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),  # the CLI prints a summary even with --quiet
            (os.POSIX_SPAWN_DUP2, stderr.fileno(), 2),
        ]
        proc = os.posix_spawn(command[0], command, dict(os.environ, PYTHONUNBUFFERED="1"), file_actions=actions)
        killed = False
        peak = 0.0
        while True:
            peak = max(peak, peak_rss_mb(proc))  # monotonic while it lives: the last read is the peak, ±20 ms
            pid, status, usage = os.wait4(proc, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout and not killed:
                os.kill(proc, signal.SIGKILL)  # our own child, by its pid
                killed = True
            time.sleep(0.02)
        wall = time.monotonic() - start
        stderr.seek(0)
        tail = stderr.read()[-1500:].decode(errors="replace")
    code = None if killed else os.waitstatus_to_exitcode(status)
    return code, wall, usage.ru_utime + usage.ru_stime, peak, tail


def run_engine(engine: str, endpoints: list[Endpoint], ca_file: Path, workdir: Path, args: argparse.Namespace) -> Run:
    run = Run(engine, len(endpoints))
    where = {(e.ip, e.port): e.index for e in endpoints}
    grace = 30.0  # start-up, and winding down after --max-seconds
    if engine == "a":
        targets = workdir / "targets.txt"
        targets.write_text("".join(f"{e.hostname}:{e.port}{{{e.ip}}}\n" for e in endpoints))
        out = workdir / "sslyze-cli.json"
        out.unlink(missing_ok=True)
        command = [sys.executable, "-m", "sslyze", "--certinfo", "--certinfo_ca_file", str(ca_file)]
        command += ["--targets_in", str(targets), "--json_out", str(out), "--quiet"]
        code, run.proc_wall, run.proc_cpu, run.rss_mb, tail = _run_measured(command, args.max_seconds)
        run.scan_wall, run.scan_cpu = run.proc_wall, run.proc_cpu
        if code is None:
            run.note = f"killed at --max-seconds {args.max_seconds:g}"
        elif not out.exists():
            run.note = f"exit {code}, no JSON: {tail.strip()[-300:]}"
        else:
            _read_cli_json(json.loads(out.read_text()), where, run)
    else:
        spec = workdir / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "endpoints": [(e.index, e.ip, e.port, e.hostname) for e in endpoints],
                    "ca_file": str(ca_file),
                    "max_seconds": args.max_seconds,
                    "concurrency": args.concurrency,
                }
            )
        )
        out = workdir / f"verdicts-{engine}.json"
        out.unlink(missing_ok=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", engine, str(spec), str(out)]
        code, run.proc_wall, run.proc_cpu, run.rss_mb, tail = _run_measured(command, args.max_seconds + grace)
        if code is None or not out.exists():
            run.note = "killed" if code is None else f"exit {code}: {tail.strip()[-300:]}"
        else:
            got = json.loads(out.read_text())
            run.done, run.note = got["done"], got["note"]
            run.bad = {int(k): v for k, v in got["bad"].items()}
            run.warnings = got["warnings"]
            run.scan_wall, run.scan_cpu = got["wall"], got["cpu"]
            run.rss_mb = got["rss_mb"] if engine.startswith("e") else max(run.rss_mb, got["rss_mb"])
            run.extra = got["extra"]
    return run


def _read_cli_json(report: dict[str, Any], where: dict[tuple[str, int], int], run: Run) -> None:
    def get(node: Any, key: str) -> Any:
        return node.get(key) if isinstance(node, dict) else None

    for result in report.get("server_scan_results", []):
        location = result["server_location"]
        index = where[(location["ip_address"], location["port"])]
        run.done += 1
        attempt = get(result.get("scan_result"), "certificate_info")
        if not attempt or not attempt.get("result"):
            run.bad[index] = f"scan failed: {result.get('connectivity_error_trace') or get(attempt, 'error_reason')}"
            continue
        bad = sslyze_verdict(attempt["result"].get("certificate_deployments"), get)
        if bad is not None:
            run.bad[index] = bad


# --------------------------------------------------------------------------- report


def _truth_breakdown(run: Run, endpoints: list[Endpoint]) -> str:
    flagged_by_case: Counter[str] = Counter(endpoints[i].case for i in run.bad)
    totals: Counter[str] = Counter("valid" if e.case not in BROKEN else e.case for e in endpoints)
    parts = [f"{case} {flagged_by_case[case]}/{totals[case]}" for case in BROKEN]
    valid_flagged = sum(n for case, n in flagged_by_case.items() if case not in BROKEN)
    parts.append(f"valid {valid_flagged}/{totals['valid']}")
    return ", ".join(parts)


def _median(values: Iterable[float]) -> float:
    got = list(values)
    return statistics.median(got) if got else 0.0


def report(runs: list[Run], endpoints: list[Endpoint], args: argparse.Namespace) -> int:
    n = len(endpoints)
    header = (
        "| engine | round | done | endpoints/s | client CPU ms/endpoint | process CPU ms/endpoint | peak RSS MB "
        "| TCP conns/endpoint (min-max) | server CPU ms/endpoint | flagged bad |"
    )
    print()
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for run in runs:
        conns = [run.connections.get(e.index, 0) for e in endpoints]
        total = sum(conns)
        done = f"{run.done}/{n}{' ' + run.note if run.note else ''}"
        print(
            f"| {ENGINE_LABELS[run.engine]} | {run.round} | {done} | {run.rate:.0f} "
            f"| {run.cpu_ms:.2f} | {1000 * run.proc_cpu / max(1, run.done):.2f} | {run.rss_mb:.0f} "
            f"| {total / n:.2f} ({min(conns)}-{max(conns)}) | {1000 * run.server_cpu / max(1, run.done):.2f} "
            f"| {len(run.bad)} |"
        )
    print()
    for run in runs:
        extra = f"; warnings {dict(run.warnings)}" if run.warnings else ""
        extra += f"; {run.extra}" if run.extra else ""
        reasons = Counter(_short(r) for r in run.bad.values())
        print(f"{ENGINE_LABELS[run.engine]} (round {run.round}): flagged {_truth_breakdown(run, endpoints)}{extra}")
        print(f"    reasons: {dict(reasons.most_common(6))}")

    status = 0
    truth = {e.index for e in endpoints if e.case in BROKEN}
    complete = [r for r in runs if r.complete]
    for run in runs:
        if not run.complete:
            print(
                f"INCOMPLETE: {ENGINE_LABELS[run.engine]} finished {run.done}/{n} ({run.note or 'no note'}): "
                "left out of the comparison"
            )
            status = 1
    for run in complete:
        flagged = set(run.bad)
        if flagged != truth:
            missed, extra_flags = sorted(truth - flagged), sorted(flagged - truth)
            print(
                f"MISMATCH vs truth: {ENGINE_LABELS[run.engine]} missed {len(missed)} {missed[:10]}, "
                f"flagged {len(extra_flags)} good ones {extra_flags[:10]}"
            )
            for i in (missed + extra_flags)[:3]:
                e = endpoints[i]
                print(f"    #{i} {e.case} {e.hostname} {e.ip}:{e.port}: {run.bad.get(i, 'not flagged')}")
            status = 1
    if complete:
        reference = complete[0]
        agree = True
        for run in complete[1:]:
            if set(run.bad) != set(reference.bad):
                diff = sorted(set(run.bad) ^ set(reference.bad))
                print(
                    f"MISMATCH: {ENGINE_LABELS[run.engine]} (round {run.round}) and {ENGINE_LABELS[reference.engine]} "
                    f"disagree on {len(diff)} endpoints, e.g. {diff[:10]}"
                )
                agree, status = False, 1
        if agree:
            print(f"all {len(complete)} complete runs flag the same {len(reference.bad)} endpoints")

    by_engine: dict[str, list[Run]] = {}
    for run in runs:
        by_engine.setdefault(run.engine, []).append(run)

    def rate(engine: str) -> float:
        return _median(r.rate for r in by_engine.get(engine, []))

    def cpu(engine: str) -> float:
        return _median(r.cpu_ms for r in by_engine.get(engine, []))

    def name(engine: str) -> str:
        return engine.removeprefix("c-") if engine.startswith("c-") else f"({engine})"

    ratios = []
    for top, bottom in (("c-fast", "b"), ("c-fast", "a"), ("c-fast", "d"), ("c-full", "b"), ("e2", "e1")):
        if rate(top) and rate(bottom) and cpu(bottom):
            ratios.append(
                f"{name(top)}/{name(bottom)}: {rate(top) / rate(bottom):.2f}x endpoints/s, "
                f"{cpu(top) / cpu(bottom):.2f}x client CPU per endpoint"
            )
    if ratios:
        print("ratios (medians over rounds):")
        for line in ratios:
            print(f"  {line}")
    return status


def _short(reason: str) -> str:
    reason = re.sub(r"'[^']*'", "'…'", reason.split(" (", 1)[0])  # the name in a mismatch message
    return reason if len(reason) <= 70 else reason[:67] + "..."


# --------------------------------------------------------------------------- main


def _engines(text: str) -> list[str]:
    engines: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "c":
            engines += ["c-fast", "c-full"]
        elif part in ENGINE_LABELS:
            engines.append(part)
        elif part == "e":
            engines += ["e1", "e2"]
        else:
            raise argparse.ArgumentTypeError(f"unknown engine {part!r}: a, b, c (c-fast, c-full), d, e (e1, e2)")
    return engines


def _broker_listens() -> bool:
    try:
        socket.create_connection((AMQP_HOST, AMQP_PORT), timeout=2).close()
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1], Path(argv[2]), Path(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=1000, help="how many endpoints (at most 5000)")
    parser.add_argument(
        "--engines",
        type=_engines,
        default=_engines("a,b,c,d,e"),
        help="subset of a,b,c,d,e (c: c-fast and c-full; e: e1 and e2, skipped when no broker listens)",
    )
    parser.add_argument("--max-seconds", type=float, default=120.0, help="bound per engine run")
    parser.add_argument("--rounds", type=int, default=2, help="run every engine this often; every other in reverse")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=100,
        help="endpoints at once for (b) and (d); scan_concurrency of (c) and of each (e) scanner",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="round-trip time: servers in a network namespace behind a veth with netem (root, iproute2)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.endpoints <= MAX_ENDPOINTS:
        parser.error(f"--endpoints must be within 1..{MAX_ENDPOINTS}")
    if not 1 <= args.rounds <= 5:
        parser.error("--rounds must be within 1..5")
    if args.latency_ms < 0:
        parser.error("--latency-ms must not be negative")
    if any(e.startswith("e") for e in args.engines) and not _broker_listens():
        print(f"no broker at {AMQP_HOST}:{AMQP_PORT}: engine (e) skipped")
        args.engines = [e for e in args.engines if not e.startswith("e")]
    if not args.engines:
        parser.error("no engine to run")

    with tempfile.TemporaryDirectory(prefix="sidebyside-") as tmp:
        workdir = Path(tmp)
        t0 = time.monotonic()
        prefix = NETNS_PREFIX if args.latency_ms else IP_PREFIX
        endpoints, ca_file = build_population(args.endpoints, workdir / "certs", prefix)
        with contextlib.ExitStack() as stack:
            netns, link = "", ""
            if args.latency_ms:
                latency = stack.enter_context(LatencyNetns(args.latency_ms, (e.ip for e in endpoints)))
                netns, link = latency.name, f"{latency.name}, {latency.link}"
            runs = _run_all(endpoints, ca_file, workdir, args, netns, t0, link)
    return report(runs, endpoints, args)


def _run_all(
    endpoints: list[Endpoint],
    ca_file: Path,
    workdir: Path,
    args: argparse.Namespace,
    netns: str,
    t0: float,
    link: str = "",
) -> list[Run]:
    servers = Servers(endpoints, workdir / "certs", netns)
    try:
        distinct = len({e.cert_id for e in endpoints})
        addresses = len({e.ip for e in endpoints})
        ports = len({(e.ip, e.port) for e in endpoints}) // max(1, addresses)
        print(
            f"{len(endpoints)} endpoints on {addresses} addresses x {ports} ports, {distinct} distinct "
            f"certificates, {len(servers.procs)} server processes, ready in {time.monotonic() - t0:.1f}s; "
            f"{os.cpu_count()} CPUs; {date.today().isoformat()}"
            + (f"; {args.latency_ms:g} ms round trip (netns {link})" if netns else "")
        )
        servers.counts()  # reset
        runs: list[Run] = []
        for round_ in range(args.rounds):
            order = args.engines if round_ % 2 == 0 else list(reversed(args.engines))
            for engine in order:
                run = run_engine(engine, endpoints, ca_file, workdir, args)
                run.connections, run.server_cpu = servers.counts()
                run.round = round_ + 1
                runs.append(run)
                print(
                    f"  round {round_ + 1} {ENGINE_LABELS[engine]}: {run.done}/{run.n} in {run.scan_wall:.2f}s "
                    f"({run.rate:.0f}/s), client CPU {run.cpu_ms:.2f} ms/endpoint, RSS {run.rss_mb:.0f} MB, "
                    f"{sum(run.connections.values()) / len(endpoints):.2f} TCP conns/endpoint, "
                    f"{len(run.bad)} flagged{' — ' + run.note if run.note else ''}",
                    flush=True,
                )
    finally:
        servers.stop()
    return runs


if __name__ == "__main__":
    sys.exit(main())
