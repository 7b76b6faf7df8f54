"""Stage throughput of the resolver and the reporter services over RabbitMQ, with a stub scanner.

    .venv/bin/python bench/pipeline_stages.py --jobs 100000 [--rounds 2] [--zones 1] [--overlap]

The real ``dns-cert-checker resolver`` and ``reporter`` run as subprocesses against the broker at
AMQP_URL (default 127.0.0.1:5672, guest), in a throw-away virtual host deleted at the end. This
process publishes a run the way the collector does (``start_run``: RunStarted, then one snapshot
per zone of in-zone A records, so no DNS lookups), and plays the scanner: it consumes the scan
queue and answers every job with a valid ``ScanResult`` (1 in ``--findings-every`` with a
finding, every one with certificate facts), 50 to a message as the real scanner sends them.

Measured per round (monotonic clock of this process):
- resolver: jobs/s from the RunStarted publish to the stub holding the last job;
- reporter: results/s from the first result published to ``<run-id>.csv`` written;
- the stub's own publishing rate, so it is seen not to be the limit;
- CPU seconds of the resolver, the reporter, beam.smp, this process, and of the whole machine
  (others' work included: the broker and the CPUs are shared).

By default the stages run one after the other (the stub answers once it holds every job), so
each stage's figure is its own; ``--overlap`` answers jobs as they come, like a real fleet. The
stub publishes up to 1,000 results (20 messages) per broker transaction, as fast as it can; the
real scanner confirms each message of 50 on its own.

Bounded: at most 200,000 jobs, every wait has a timeout (``--stage-timeout``, default 60 s + 2 ms
per job), and only the processes started here are stopped, by PID. A stage that times out says
what is missing: the jobs the stub never got (by name), what it published, every queue of the
vhost with its dead letters' reasons, the reporter's journal, and the services' last log lines.
``--profile`` runs both services under cProfile (every thread) and prints where their time went.
Figures and method: docs/benchmarks-pipeline.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ipaddress
import os
import pstats
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The repository root, so `services` imports even where the editable install predates a module.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.collector.runs import PlannedRun, start_run  # noqa: E402
from shared import findings  # noqa: E402
from shared.batches import JOBS_PER_BATCH  # noqa: E402
from shared.messages import (  # noqa: E402
    Batch,
    CertificateFacts,
    ChainCertificate,
    Finding,
    ScanJob,
    ScanResult,
    ZoneRecord,
    ZoneSnapshot,
    job_id,
    new_run_id,
    result_for,
    unpacked,
)
from shared.transport import REPORT, RESOLVE, Outgoing, Transport, scan_queue  # noqa: E402
from shared.transport.amqp import open_transport  # noqa: E402

BROKER = "amqp://guest:guest@127.0.0.1:5672"
SCAN_QUEUE = scan_queue("default")  # no segments configured: every job goes to the default segment
PORT = 443
ADDRESSES = ipaddress.ip_network("198.18.0.0/15")  # benchmarking range (RFC 2544); never contacted
MAX_JOBS = 200_000
PUBLISH_CHUNK = 20  # result batches per publish_many call: 1,000 results per broker transaction
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the broker: a virtual host of our own ---------------------------------------------------
def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


class Vhost:
    """A throw-away virtual host: nothing here can meet a test's queues, and deleting it removes all."""

    def __init__(self) -> None:
        self.name = f"dcc-bench-{uuid.uuid4().hex[:8]}"
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        self.url = f"{BROKER}/{self.name}"

    def queues(self) -> list[tuple[str, int, int, int]]:
        """(name, ready, unacked, consumers) of every queue."""
        listing = rabbitmqctl(
            "list_queues", "-p", self.name, "name", "messages_ready", "messages_unacknowledged", "consumers"
        )
        rows = []
        for line in listing.splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[1].isdigit():
                rows.append((parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
        return rows

    def delete(self) -> None:
        rabbitmqctl("delete_vhost", self.name)


# -- CPU and memory from /proc (psutil is not a dependency) ----------------------------------
def cpu_seconds(pid: int | str) -> float:
    """User + system CPU of a process and all its threads so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU so far of each thread of a process (the main thread's id is the process id)."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            threads[int(task.name)] = cpu_seconds(f"{pid}/task/{task.name}")
    return threads


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used (all CPUs), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def memory_mb(pid: int | str, key: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def beam_pid() -> int | None:
    """The RabbitMQ node's Erlang VM (read only: we never signal it)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if (proc / "comm").read_text().strip() == "beam.smp":
                    return int(proc.name)
    return None


# -- the services under test -----------------------------------------------------------------
# Runs a service with every thread profiled (cProfile sees only the thread that enabled it; the
# handlers run on worker threads) and merges the profiles into one file when the process exits.
_PROFILED = """
import atexit, cProfile, pstats, sys, threading
out, profiles, lock = sys.argv.pop(1), [], threading.Lock()
original = threading.Thread.run
def run(self):
    profile = cProfile.Profile()
    profile.enable()
    try:
        original(self)
    finally:
        profile.disable()
        with lock:
            profiles.append(profile)
threading.Thread.run = run
main = cProfile.Profile()
def dump():
    main.disable()
    with lock:
        pstats.Stats(main, *profiles).dump_stats(out)
atexit.register(dump)
main.enable()
from services.cli import main as cli
sys.exit(cli(sys.argv[1:]))
"""


_FINDING_LINE = re.compile(r" (WARNING|ERROR) dcc\.reporter: \S+ - \S+ - ")


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    profile: Path | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The last lines of its log, less the reporter's one line per finding (thousands here)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join([line for line in text.splitlines() if not _FINDING_LINE.search(line)][-lines:])

    def stop(self, timeout: float = 45) -> int:
        """SIGTERM (the service drains), then SIGKILL after ``timeout``: only this child, by PID."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)


def start_service(name: str, args: list[str], workdir: Path, env: dict[str, str], profile: bool) -> Service:
    log = workdir / f"{name}.log"
    command = [sys.executable, "-m", "services.cli"]
    profile_path = None
    if profile:
        profile_path = workdir / f"{name}.prof"
        command = [sys.executable, "-c", _PROFILED, str(profile_path)]
    with log.open("ab") as out:
        proc = subprocess.Popen([*command, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Service(name, proc, log, profile_path)


def wait_for_consumers(vhost: Vhost, services: list[Service], names: list[str], timeout: float) -> None:
    """Until every queue in ``names`` has a consumer; fails when a service died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for service in services:
            if not service.alive():
                raise SystemExit(f"{service.name} exited with {service.proc.returncode}:\n{service.tail(40)}")
        consumers = {name: count for name, _, _, count in vhost.queues()}
        if all(consumers.get(name, 0) > 0 for name in names):
            return
        time.sleep(0.5)
    raise SystemExit(f"services not consuming {names} after {timeout:.0f}s:\n" + "\n".join(s.tail() for s in services))


# -- the run: zones of in-zone A records -------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    run_id: str
    snapshots: list[ZoneSnapshot]
    expected: dict[str, str]  # job id → fqdn: what the resolver must plan, and the stub must answer

    @property
    def jobs(self) -> int:
        return len(self.expected)


def make_workload(jobs: int, zones: int) -> Workload:
    """``jobs`` A records spread over ``zones`` zones, one job each (one port, distinct names)."""
    run_id = new_run_id()
    first = int(ADDRESSES.network_address)
    records: list[list[ZoneRecord]] = [[] for _ in range(zones)]
    expected: dict[str, str] = {}
    for n in range(jobs):
        zone_index = n % zones
        zone = f"z{zone_index}.bench.test"
        address = str(ipaddress.IPv4Address(first + n % ADDRESSES.num_addresses))
        name = f"h{n}"
        records[zone_index].append(ZoneRecord("A", name, address, 300))
        fqdn = f"{name}.{zone}"  # how the resolver spells it (absolute, lower case), SNI the same
        expected[job_id(run_id, address, PORT, fqdn, fqdn)] = fqdn
    snapshots = [
        ZoneSnapshot(run_id=run_id, zone=f"z{i}.bench.test", records=zone_records, serial=1)
        for i, zone_records in enumerate(records)
        if zone_records
    ]
    return Workload(run_id, snapshots, expected)


# -- the stub scanner --------------------------------------------------------------------------
def _certificate() -> CertificateFacts:
    """What a real result carries for a healthy endpoint: leaf facts and a two-certificate chain."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = now + timedelta(days=90)
    leaf = ChainCertificate(
        subject="CN=www.bench.test", issuer="CN=Bench CA", not_before=now, not_after=later, sha256="ab" * 32
    )
    ca = ChainCertificate(
        subject="CN=Bench CA",
        issuer="CN=Bench CA",
        not_before=now,
        not_after=now + timedelta(days=3650),
        sha256="cd" * 32,
    )
    return CertificateFacts(
        subject=leaf.subject,
        issuer=leaf.issuer,
        not_before=now,
        not_after=later,
        sha256=leaf.sha256,
        san=["www.bench.test"],
        chain_length=2,
        serial="0123456789abcdef",
        key_type="EC",
        key_bits=256,
        signature_algorithm="ecdsa-with-SHA256",
        chain=[leaf, ca],
    )


_FINDINGS = [
    findings.error(findings.Code.HOSTNAME_MISMATCH),
    findings.expiring("CN=www.bench.test", datetime(2026, 1, 20, tzinfo=UTC)),
]


@dataclass
class StubScanner:
    """Consumes the scan queue on one thread and answers on another, 50 results to a message.

    It answers only once ``release`` is set (at once with ``--overlap``), so the resolver's stage
    can be timed alone. Job ids are checked against the workload: a redelivered job is answered
    once, an unexpected one is counted and not answered.
    """

    transport: Transport
    workload: Workload
    findings_every: int
    certificate: CertificateFacts | None
    release: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    received: set[str] = field(default_factory=set)
    unexpected: int = 0
    duplicates: int = 0
    messages_in: int = 0
    published: int = 0
    first_job: float | None = None
    last_job: float | None = None
    first_publish: float | None = None
    last_publish: float | None = None
    error: BaseException | None = None
    _inbox: queue.Queue[list[ScanJob]] = field(default_factory=queue.Queue)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._guard, args=(self._consume,), name="stub-consume", daemon=True),
            threading.Thread(target=self._guard, args=(self._answer,), name="stub-answer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        self.stop.set()
        self.release.set()
        for thread in self._threads:
            thread.join(timeout)

    def _guard(self, body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as exc:  # told by the waiting loop, which fails the round
            self.error = exc
            self.stop.set()

    def _consume(self) -> None:
        consumer = self.transport.consumer(SCAN_QUEUE, 64)
        try:
            while not self.stop.is_set() and len(self.received) < self.workload.jobs:
                delivery = consumer.get(timeout=0.2)
                if delivery is None:
                    continue
                fresh: list[ScanJob] = []
                for message in unpacked(delivery.body):
                    if not isinstance(message, ScanJob) or message.job_id not in self.workload.expected:
                        self.unexpected += 1
                    elif message.job_id in self.received:
                        self.duplicates += 1
                    else:
                        self.received.add(message.job_id)
                        fresh.append(message)
                self.messages_in += 1
                now = time.monotonic()
                self.first_job = self.first_job or now
                self.last_job = now
                if fresh:
                    self._inbox.put(fresh)
                consumer.ack(delivery)  # held here: the bench process is the scanner's memory
        finally:
            consumer.close()

    def _answer(self) -> None:
        self.release.wait()
        scanned_at = datetime.now(UTC)
        answered = 0
        while not self.stop.is_set() and answered < self.workload.jobs:
            try:
                jobs = self._inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            while len(jobs) < PUBLISH_CHUNK * JOBS_PER_BATCH:  # what is waiting goes in the same publish
                try:
                    jobs.extend(self._inbox.get_nowait())
                except queue.Empty:
                    break
            self.first_publish = self.first_publish or time.monotonic()
            results = [self._result(job, answered + i, scanned_at) for i, job in enumerate(jobs)]
            batches = [
                Outgoing(REPORT, Batch(messages=list(results[i : i + JOBS_PER_BATCH])))
                for i in range(0, len(results), JOBS_PER_BATCH)
            ]
            self.transport.publish_many(batches)
            answered += len(results)
            self.published = answered
            self.last_publish = time.monotonic()

    def _result(self, job: ScanJob, n: int, scanned_at: datetime) -> ScanResult:
        found: list[Finding] = []
        if self.findings_every and n % self.findings_every == 0:
            found = [_FINDINGS[(n // self.findings_every) % len(_FINDINGS)]]
        return result_for(job, found, scanned_at, duration_s=0.01, certificate=self.certificate)


# -- one round -------------------------------------------------------------------------------
@dataclass
class Cpu:
    """CPU seconds of the processes that matter, at one moment."""

    at: float
    by_name: dict[str, float]
    machine: float
    threads: dict[int, dict[int, float]]  # service pid → thread id → CPU

    @classmethod
    def now(cls, pids: dict[str, int | str]) -> Cpu:
        by_name, threads = {}, {}
        for name, pid in pids.items():
            with contextlib.suppress(OSError):
                by_name[name] = cpu_seconds(pid)
                if isinstance(pid, int) and name != "beam.smp":
                    threads[pid] = thread_cpu_seconds(pid)
        return cls(time.monotonic(), by_name, machine_busy_seconds(), threads)

    def threads_since(self, earlier: Cpu, pid: int) -> str:
        """Where a service's CPU went by thread, busiest first: which of its loops is the limit."""
        before = earlier.threads.get(pid, {})
        spent = {tid: cpu - before.get(tid, 0.0) for tid, cpu in self.threads.get(pid, {}).items()}
        busiest = sorted(((cpu, tid) for tid, cpu in spent.items() if cpu >= 0.01), reverse=True)[:4]
        return ", ".join(f"{'main' if tid == pid else f'thread {tid}'} {cpu:.2f}" for cpu, tid in busiest) or "-"

    def since(self, earlier: Cpu) -> dict[str, float]:
        spent = {name: value - earlier.by_name.get(name, 0.0) for name, value in self.by_name.items()}
        # the rest of the machine (other workers' tests); /proc/stat and per-process ticks round
        # differently, so a quiet machine shows a few hundredths either side of zero: shown as 0
        spent["other"] = max(0.0, (self.machine - earlier.machine) - sum(spent.values()))
        spent["wall"] = self.at - earlier.at
        return spent


@dataclass
class Round:
    jobs: int
    resolver_s: float
    reporter_s: float
    stub_s: float
    resolver_cpu: dict[str, float]
    reporter_cpu: dict[str, float]
    resolver_threads: str
    reporter_threads: str
    plan_logged_s: float | None
    rows: int
    load: tuple[float, float, float]


class Stalled(Exception):
    """A stage ran out of time: the message says what was missing."""


def wait_until(
    what: str, done: Callable[[], bool], timeout: float, progress: Callable[[], str], check: Callable[[], None]
) -> None:
    """Poll ``done()`` every 20 ms, print ``progress()`` every 2 s, run ``check()`` (raises) each time."""
    deadline = time.monotonic() + timeout
    next_print = time.monotonic() + 2
    while not done():
        check()
        now = time.monotonic()
        if now >= deadline:
            raise Stalled(f"{what}: not done after {timeout:.0f}s")
        if now >= next_print:
            print(f"    … {progress()}", flush=True)
            next_print = now + 2
        time.sleep(0.02)


def plan_logged_after(log: Path, since: datetime) -> float | None:
    """Seconds from ``since`` to the resolver's last ``zone …: N records, N jobs`` line of this round
    (its handler done with the zone; what follows is packing and publishing)."""
    last = None
    for line in log.read_text(errors="replace").splitlines():
        if " dcc.resolver: zone " in line and " jobs, " in line:
            with contextlib.suppress(ValueError):
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                if stamp >= since:
                    last = stamp
    return (last - since).total_seconds() if last is not None else None


def run_round(
    transport: Transport,
    workload: Workload,
    services: dict[str, Service],
    output_dir: Path,
    args: argparse.Namespace,
) -> Round:
    pids: dict[str, int | str] = {name: s.proc.pid for name, s in services.items()}
    beam = beam_pid()
    if beam is not None:
        pids["beam.smp"] = beam
    pids["bench (stub)"] = "self"
    stub = StubScanner(transport, workload, args.findings_every, None if args.bare_results else _certificate())
    if args.overlap:
        stub.release.set()
    csv_path = output_dir / f"{workload.run_id}.csv"

    def check() -> None:
        for service in services.values():
            if not service.alive():
                raise Stalled(f"{service.name} exited with {service.proc.returncode}")
        if stub.error is not None:
            raise Stalled(f"the stub scanner failed: {stub.error!r}")

    def progress() -> str:
        return (
            f"stub holds {len(stub.received):,}/{workload.jobs:,} jobs ({stub.messages_in:,} messages), "
            f"answered {stub.published:,}; report written: {csv_path.exists()}"
        )

    stub.start()
    load = os.getloadavg()
    try:
        cpu0 = Cpu.now(pids)
        wall0 = datetime.now()
        started = time.monotonic()
        start_run(transport, PlannedRun.of_snapshots(workload.run_id, workload.snapshots, source="bench"))
        try:
            wait_until(
                "resolver stage", lambda: len(stub.received) >= workload.jobs, args.stage_timeout, progress, check
            )
        except Stalled as exc:
            raise Stalled(f"{exc}\n{explain_resolver_stall(stub, workload)}") from None
        cpu1 = Cpu.now(pids)
        assert stub.last_job is not None
        resolver_s = stub.last_job - started
        stub.release.set()
        try:
            wait_until("reporter stage", csv_path.exists, args.stage_timeout, progress, check)
        except Stalled as exc:
            raise Stalled(f"{exc}\n{explain_reporter_stall(stub, workload, output_dir)}") from None
        done = time.monotonic()
        cpu2 = Cpu.now(pids)
    finally:
        stub.join(10)
    assert stub.first_publish is not None and stub.last_publish is not None
    rows = check_report(csv_path, workload.jobs, args.findings_every)
    return Round(
        jobs=workload.jobs,
        resolver_s=resolver_s,
        reporter_s=done - stub.first_publish,
        stub_s=stub.last_publish - stub.first_publish,
        resolver_cpu=cpu1.since(cpu0),
        reporter_cpu=cpu2.since(cpu1),
        resolver_threads=cpu1.threads_since(cpu0, services["resolver"].proc.pid),
        reporter_threads=cpu2.threads_since(cpu1, services["reporter"].proc.pid),
        plan_logged_s=plan_logged_after(services["resolver"].log, wall0),
        rows=rows,
        load=load,
    )


def check_report(path: Path, jobs: int, findings_every: int) -> int:
    """The report is whole: one row per finding the stub gave, none missing or incomplete."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    incomplete = [row for row in rows if "run deadline" in row[-1]]
    expected = len(range(0, jobs, findings_every)) if findings_every else 0
    if incomplete or len(rows) != expected:
        raise Stalled(f"{path.name}: {len(rows)} rows ({len(incomplete)} incomplete), expected {expected}")
    return len(rows)


def explain_resolver_stall(stub: StubScanner, workload: Workload) -> str:
    missing = [fqdn for jid, fqdn in workload.expected.items() if jid not in stub.received]
    lines = [
        f"  the stub holds {len(stub.received):,} of {workload.jobs:,} jobs "
        f"({stub.messages_in:,} messages, {stub.unexpected} unexpected, {stub.duplicates} duplicates)",
        f"  missing (first 5 of {len(missing):,}): {', '.join(missing[:5])}",
    ]
    if stub.unexpected:
        lines.append("  unexpected job ids: the resolver's job ids or names differ from what this bench computes")
    return "\n".join(lines)


def explain_reporter_stall(stub: StubScanner, workload: Workload, output_dir: Path) -> str:
    journals = sorted((output_dir / ".journal").glob("*.journal"))
    sizes = ", ".join(f"{p.name} {p.stat().st_size:,} B" for p in journals) or "none"
    return "\n".join(
        [
            f"  results published by the stub: {stub.published:,} of {workload.jobs:,}",
            f"  reporter journals (unfinished runs): {sizes}",
            "  the run completes when its RunStarted, a plan for each of its zones and a result for every"
            " planned job id are in: see the queues and the reporter's log below",
        ]
    )


def describe_broker(vhost: Vhost, transport: Transport) -> str:
    lines = ["  queues (ready, unacked, consumers):"]
    with contextlib.suppress(Exception):
        for name, ready, unacked, consumers in vhost.queues():
            lines.append(f"    {name}: {ready}, {unacked}, {consumers}")
    for logical in (RESOLVE, REPORT, SCAN_QUEUE):
        with contextlib.suppress(Exception):
            for dead in transport.dead_letters(logical, limit=3):
                lines.append(f"  dead letter on {logical}: {dead.reason[:300]}")
    return "\n".join(lines)


# -- reporting -------------------------------------------------------------------------------
def print_round(n: int, result: Round) -> None:
    def cpu(spent: dict[str, float]) -> str:
        return ", ".join(f"{name} {value:.2f}" for name, value in spent.items() if name != "wall")

    print(f"  round {n}: {result.jobs:,} jobs (load average before: {', '.join(f'{v:.2f}' for v in result.load)})")
    plan = f"; handler done with the zones at +{result.plan_logged_s:.2f}s" if result.plan_logged_s is not None else ""
    print(f"    resolver: {result.jobs / result.resolver_s:,.0f} jobs/s ({result.resolver_s:.2f}s{plan})")
    print(f"      CPU s: {cpu(result.resolver_cpu)} over {result.resolver_cpu['wall']:.2f}s")
    print(f"      resolver threads, CPU s: {result.resolver_threads}")
    print(
        f"    reporter: {result.jobs / result.reporter_s:,.0f} results/s ({result.reporter_s:.2f}s, "
        f"{result.rows:,} rows); stub published {result.jobs / max(result.stub_s, 1e-9):,.0f} results/s "
        f"({result.stub_s:.2f}s)"
    )
    print(f"      CPU s: {cpu(result.reporter_cpu)} over {result.reporter_cpu['wall']:.2f}s")
    print(f"      reporter threads, CPU s: {result.reporter_threads}")


def print_profile(service: Service, lines: int) -> None:
    if service.profile is None or not service.profile.exists():
        print(f"  no profile of {service.name}")
        return
    print(f"\n  profile of {service.name} (all threads, by own time):")
    stats = pstats.Stats(str(service.profile))
    stats.sort_stats("tottime").print_stats(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000, help=f"A records = jobs per run (1..{MAX_JOBS:,})")
    parser.add_argument("--zones", type=int, default=1, help="zones the records are spread over")
    parser.add_argument("--rounds", type=int, default=1, help="runs through the same services, one after another")
    parser.add_argument("--findings-every", type=int, default=20, help="1 result in N has a finding (0: none)")
    parser.add_argument("--bare-results", action="store_true", help="results without certificate facts")
    parser.add_argument("--overlap", action="store_true", help="answer jobs as they arrive (stages overlap)")
    parser.add_argument("--stage-timeout", type=float, default=None, help="seconds per stage (default 60 + jobs/500)")
    parser.add_argument("--profile", action="store_true", help="run the services under cProfile (slower!)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, reports)")
    args = parser.parse_args(argv)
    if not 1 <= args.jobs <= MAX_JOBS:
        parser.error(f"--jobs must be within 1..{MAX_JOBS}")
    if not 1 <= args.zones <= min(args.jobs, 1000) or not 1 <= args.rounds <= 10:
        parser.error("--zones must be within 1..min(jobs, 1000), --rounds within 1..10")
    args.stage_timeout = args.stage_timeout or 60 + args.jobs / 500

    workdir = Path(tempfile.mkdtemp(prefix="dcc-bench-stages-"))
    config = workdir / "config.json"
    config.write_text('{"ssl_ports": [443]}\n')  # no lookup_nameservers: no DNS at all
    output_dir = workdir / "reports"
    vhost = Vhost()
    env = {**os.environ, "AMQP_URL": vhost.url, "PYTHONUNBUFFERED": "1"}
    env.pop("DCC_QUEUE_PREFIX", None)
    transport = open_transport(vhost.url, name="dcc-bench", prefix="")
    services: dict[str, Service] = {}
    status = 0
    print(f"{os.cpu_count()} CPUs, vhost {vhost.name}, work directory {workdir}", flush=True)
    try:
        transport.declare([RESOLVE, REPORT, SCAN_QUEUE])
        common = ["--config", str(config), "--log-level", "20"]
        services["reporter"] = start_service(
            "reporter", ["reporter", *common, "--output-dir", str(output_dir)], workdir, env, args.profile
        )
        services["resolver"] = start_service("resolver", ["resolver", *common], workdir, env, args.profile)
        wait_for_consumers(vhost, list(services.values()), ["dcc.resolve", "dcc.report"], timeout=60)
        for n in range(1, args.rounds + 1):
            workload = make_workload(args.jobs, args.zones)
            print(f"round {n}: run {workload.run_id}, {len(workload.snapshots)} zone(s)", flush=True)
            try:
                print_round(n, run_round(transport, workload, services, output_dir, args))
            except Stalled as exc:
                print(f"FAILED: {exc}\n{describe_broker(vhost, transport)}", file=sys.stderr)
                for service in services.values():
                    print(f"  --- {service.name} log (last lines)\n{service.tail(25)}", file=sys.stderr)
                status = 1
                break
            for name, service in services.items():
                rss, peak = memory_mb(service.proc.pid, "VmRSS"), memory_mb(service.proc.pid, "VmHWM")
                print(f"    {name} RSS {rss:.0f} MB (peak {peak:.0f} MB)")
    finally:
        codes = {name: service.stop() for name, service in services.items()}
        print(f"services stopped: {codes}")
        transport.close()
        with contextlib.suppress(Exception):
            vhost.delete()
        if args.profile:
            for service in services.values():
                print_profile(service, 25)
        if args.keep or status:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
