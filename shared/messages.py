"""Every message that crosses a queue, and the only place that knows the wire format.

Each message is a tagged ``msgspec.Struct`` whose tag carries a version (``scan_job.v1``).
New fields must get defaults so that older producers stay readable; a change that cannot
be expressed that way gets a new tag (``scan_job.v2``) beside the old one.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal, get_args

import msgspec

Status = Literal["error", "warning"]
RecordType = Literal["A", "AAAA", "CNAME"]
RECORD_TYPES: tuple[RecordType, ...] = get_args(RecordType)  # the only record types the pipeline keeps


class _Msg(msgspec.Struct, tag_field="type", frozen=True, kw_only=True):
    """Base of every wire message (tag in the ``type`` field)."""


class ZoneRecord(msgspec.Struct, frozen=True, array_like=True):
    """One A/AAAA/CNAME record, as the original's zones JSON spells it.

    ``name`` is relative to the zone (``@``, ``www``, ``*``, ``a.b``) or absolute with a
    trailing dot; ``target`` is an address for A/AAAA, a name (same rules) for CNAME.
    Encoded as an array on the wire: a 100k-record zone is mostly these.
    """

    type: RecordType
    name: str
    target: str
    ttl: int | None = None


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One problem. ``code`` is stable for machines, ``message`` is the original's CSV text."""

    code: str
    status: Status
    message: str

    @property
    def severity(self) -> Status:
        return self.status


class LocatedFinding(msgspec.Struct, frozen=True, kw_only=True):
    """A finding not tied to a scan: a CNAME loop, a failed zone transfer, an unrouted address."""

    ip_address: str = ""
    port: int | None = None
    fqdn: str
    finding: Finding


class ChainCertificate(msgspec.Struct, frozen=True, kw_only=True):
    """One certificate of the chain as the server sent it."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    sha256: str


class CertificateFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What was learnt about the leaf, even when it is invalid (for JSONL and webhooks)."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    sha256: str
    san: list[str] = []
    chain_length: int = 1
    # Added later (defaults keep older producers' results readable):
    serial: str = ""  # hexadecimal
    key_type: str = ""  # RSA, EC, DSA, Ed25519, Ed448
    key_bits: int = 0
    signature_algorithm: str = ""  # e.g. sha256WithRSAEncryption
    chain: list[ChainCertificate] = []  # as sent, leaf first


class RunStarted(_Msg, tag="run_started.v1", frozen=True, omit_defaults=True):
    """Collector → reporter: a run exists and these zones belong to it.

    ``new_zones`` / ``removed_zones`` (zone discovery, added later): zones discovered since the
    last run, and zones the last run discovered that no source has any more (each said once;
    the reporter resolves a removed zone's open problems). Empty ones are left off the wire, so a
    run without discovery is encoded as before.
    """

    run_id: str
    started_at: datetime
    zones: list[str]
    source: str = ""
    new_zones: list[str] = []
    removed_zones: list[str] = []


class ZoneSnapshot(_Msg, tag="zone_snapshot.v1", frozen=True):
    """Collector → resolver: one whole zone (the resolver needs all of it for CNAME chains).

    ``failure`` is set instead of records when the zone could not be collected; the
    resolver passes it on so the run still completes and reports it.
    """

    run_id: str
    zone: str
    records: list[ZoneRecord] = []
    serial: int | None = None
    failure: LocatedFinding | None = None


class ScanJob(_Msg, tag="scan_job.v1", frozen=True):
    """Resolver → scanner: connect to ``ip_address:port`` with SNI ``sni``; report as ``fqdn``."""

    job_id: str
    run_id: str
    zone: str
    ip_address: str
    port: int
    fqdn: str
    sni: str
    segment: str = "default"


class PlannedJob(msgspec.Struct, frozen=True, array_like=True):
    """Enough of a job for the reporter to say what is missing when a run stalls."""

    job_id: str
    ip_address: str
    port: int
    fqdn: str


class ZonePlan(_Msg, tag="zone_plan.v1", frozen=True):
    """Resolver → reporter: which jobs a zone produced, and its zone-level findings.

    The reporter knows a run is complete when every zone of its ``RunStarted`` has a plan
    and every planned job has a result.
    """

    run_id: str
    zone: str
    jobs: list[PlannedJob]
    findings: list[LocatedFinding] = []
    serial: int | None = None
    records: int = 0


class ScanResult(_Msg, tag="scan_result.v1", frozen=True):
    """Scanner → reporter: the findings of one job (empty list = healthy)."""

    job_id: str
    run_id: str
    zone: str
    ip_address: str
    port: int
    fqdn: str
    findings: list[Finding]
    scanned_at: datetime
    duration_s: float = 0.0
    certificate: CertificateFacts | None = None
    segment: str = ""  # the network segment that scanned it (metrics, alert labels)


def result_for(
    job: ScanJob,
    findings: list[Finding],
    scanned_at: datetime,
    duration_s: float = 0.0,
    certificate: CertificateFacts | None = None,
) -> ScanResult:
    """The result of a job, carrying the job's identity and location."""
    return ScanResult(
        job_id=job.job_id,
        run_id=job.run_id,
        zone=job.zone,
        ip_address=job.ip_address,
        port=job.port,
        fqdn=job.fqdn,
        findings=findings,
        scanned_at=scanned_at,
        duration_s=duration_s,
        certificate=certificate,
        segment=job.segment,
    )


Message = RunStarted | ZoneSnapshot | ScanJob | ZonePlan | ScanResult

MAX_BATCH = 1000  # messages in one batch: a bigger one is refused whole (dead-lettered)


class Batch(_Msg, tag="batch.v1", frozen=True):
    """Many messages for one queue in one body, so the broker's cost is paid once per batch.

    Each message inside keeps its identity (a job id) and is settled on its own by the runner: the
    batch is acked once every one of them is handled or dead-lettered, and comes back whole when
    any was given back (each is idempotent, so a redone one never yields a second row). Handlers
    never see a batch. A batch of batches does not exist.
    """

    messages: Annotated[list[Message], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


Envelope = Message | Batch  # what a queue body decodes to

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)


class DecodeError(ValueError):
    """A payload that is not a message we know (dead-letter it, do not crash)."""


def encode(message: Envelope) -> bytes:
    return _encoder.encode(message)


def decode_envelope(payload: bytes) -> Envelope:
    """A queue body: one message or a batch of them."""
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"invalid message: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"undecodable message: {exc}") from None


def decode(payload: bytes) -> Message:
    """One message (a journal entry, a test's body); a batch here is a ``DecodeError``."""
    decoded = decode_envelope(payload)
    if isinstance(decoded, Batch):
        raise DecodeError("invalid message: a batch where one message was expected")
    return decoded


def unpacked(payload: bytes) -> list[Message]:
    """The messages of a queue body, batched or not (tools and tests that read queues)."""
    decoded = decode_envelope(payload)
    return list(decoded.messages) if isinstance(decoded, Batch) else [decoded]


def normalise_zone(zone: str) -> str:
    """``Example.COM.`` → ``example.com``: the one spelling of a zone name in every message."""
    return zone.strip().rstrip(".").lower()


def message_kind(message: Envelope) -> str:
    """The wire tag of a message, e.g. ``scan_job.v1`` (for logs and headers)."""
    tag = type(message).__struct_config__.tag
    assert isinstance(tag, str)  # every message class above declares a string tag
    return tag


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20261129T034000Z-1a2b3c4d``."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def valid_run_id(run_id: str) -> bool:
    """Run ids name report files: letters, digits, ``.``, ``_``, ``-``; no path, no leading dot."""
    return bool(_RUN_ID.match(run_id))


def job_id(run_id: str, ip_address: str, port: int, fqdn: str, sni: str, protocol: str = "tls") -> str:
    """Deterministic, so a redelivered or re-resolved job never yields a second row."""
    key = "\0".join((run_id, ip_address, str(port), fqdn.lower(), sni.lower(), protocol))
    return hashlib.sha256(key.encode()).hexdigest()[:24]
