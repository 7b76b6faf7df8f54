"""AXFR from one authoritative server: bounded in time, retried only when that can help, streamed.

The transfer loop is ours (not ``dns.query.xfr``) for one reason: dnspython bounds the TCP
connect only by the overall lifetime, and we want a connect timeout of its own. Everything
that is protocol stays dnspython's: message parsing, TSIG over multi-message transfers
(``tsig_ctx``) and the AXFR state machine (``dns.xfr.Inbound``: rcode, first/last SOA).

The driver is thin: connect, send the query, then hand each message (parsed, checked as an
answer to the query, TSIG-verified as a continuation) to ``Inbound`` and to ``records``, which
turns it into ``ZoneRecord`` exactly as zone files are turned. A large zone is thus never held
as wire data, ``dns.zone.Zone`` and record list at once.

No TSIG secret ever appears in an exception, a finding or a log line: messages name the key.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar, cast

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.transaction
import dns.tsig
import dns.xfr
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_any, wait_exponential
from tenacity.stop import stop_base

from services.collector.records import soa_serial, zone_origin, zone_records
from shared import findings
from shared.config import BindServer, ConfigError
from shared.messages import LocatedFinding, ZoneRecord, ZoneSnapshot

log = logging.getLogger("dcc.collector.axfr")


class ZoneTransferError(Exception):
    """A zone that could not be transferred; ``code`` is a ``shared.findings`` zone code.

    ``str()`` is the whole user-facing line and never contains a secret.
    """

    def __init__(self, code: findings.Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


T = TypeVar("T")
# Turns one rrset of the answer (owner relative to the zone) into what a transfer keeps.
Convert = Callable[[dns.name.Name, dns.rdataset.Rdataset], list[T]]


@dataclass(frozen=True)
class Transfer(Generic[T]):
    records: list[T]
    serial: int
    attempts: int = 1
    seconds: float = 0.0


class _Transient(Exception):
    """Worth another attempt: timeouts, resets, EOF mid-transfer (Knot's tcp-io-timeout)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # "timeout" | "eof" | "reset" | "refused"
        self.detail = detail


class _OutOfTime(stop_base):
    """No further attempt once the transfer's lifetime is spent."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() >= self.deadline - 0.01


def server_label(server: BindServer) -> str:
    ip = server.server_ip
    return f"[{ip}]:{server.server_port}" if ":" in ip else f"{ip}:{server.server_port}"


def transfer(server: BindServer, zone: str) -> Transfer[ZoneRecord]:
    """AXFR ``zone`` from ``server``: every A/AAAA/CNAME record and the SOA serial.

    ``server.timeout`` bounds the connect and each wait for data; ``server.lifetime`` bounds
    the whole transfer *including retries*; ``server.retries`` extra attempts are made for
    transient failures only. Raises ``ZoneTransferError``.
    """
    return _transfer(server, zone, None)


def transfer_records(server: BindServer, zone: str, convert: Convert[T]) -> Transfer[T]:
    """The same transfer keeping what ``convert`` makes of each rrset (a catalog zone's PTR and TXT)."""
    return _transfer(server, zone, convert)


def _transfer(server: BindServer, zone: str, convert: Convert[Any] | None) -> Transfer[Any]:
    started = time.monotonic()
    deadline = started + max(0.0, server.lifetime)
    origin = _origin(zone)
    where = _address(server)
    signer = _tsig(server)
    attempts = 0

    def one_attempt() -> Transfer[Any]:
        nonlocal attempts
        attempts += 1
        records, serial = _attempt(where, server, origin, signer, deadline, convert)
        return Transfer(records, serial, attempts, time.monotonic() - started)

    try:
        return _retrying(server, zone, deadline)(one_attempt)
    except ZoneTransferError:
        raise
    except _Transient as exc:
        raise _transient_error(exc, server, attempts, time.monotonic() - started) from None
    except Exception as exc:
        raise _permanent_error(exc, server) from None


def _retrying(server: BindServer, zone: str, deadline: float) -> Retrying:
    """Transient failures only, ``server.retries`` more times, never past the lifetime."""
    return Retrying(
        stop=stop_any(stop_after_attempt(max(0, server.retries) + 1), _OutOfTime(deadline)),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        retry=retry_if_exception(lambda exc: isinstance(exc, _Transient)),
        before_sleep=lambda state: log.info(
            "zone %s from %s: attempt %d failed (%s), retrying",
            zone,
            server_label(server),
            state.attempt_number,
            state.outcome.exception() if state.outcome else "?",
        ),
        reraise=True,
    )


def snapshot(server: BindServer, zone: str, run_id: str) -> ZoneSnapshot:
    """One zone as a snapshot; a failure becomes the snapshot's finding instead of an exception."""
    try:
        result = transfer(server, zone)
    except ZoneTransferError as exc:
        return ZoneSnapshot(run_id=run_id, zone=zone, failure=failure_finding(server, zone, exc))
    log.debug(
        "zone %s from %s: %d records, serial %d, %.2f s, %d attempt(s)",
        zone,
        server_label(server),
        len(result.records),
        result.serial,
        result.seconds,
        result.attempts,
    )
    return ZoneSnapshot(run_id=run_id, zone=zone, records=result.records, serial=result.serial)


def failure_finding(server: BindServer, zone: str, exc: ZoneTransferError) -> LocatedFinding:
    return LocatedFinding(
        ip_address=server.server_ip,
        port=server.server_port,
        fqdn=zone,
        finding=findings.error(exc.code, exc.message),
    )


def query_serial(server: BindServer, zone: str) -> int:
    """The zone's current SOA serial (one TCP query, TSIG-signed when a key is set).

    Used to skip unchanged zones; raises ``ZoneTransferError`` like ``transfer``.
    """
    where = _address(server)
    signer = _tsig(server)
    query = _query(_origin(zone), dns.rdatatype.SOA, signer)
    try:
        answer = dns.query.tcp(query, where, timeout=server.timeout, port=server.server_port)
    except dns.exception.Timeout:
        raise _transient_error(
            _Transient("timeout", "did not answer the SOA query in time"), server, 1, server.timeout
        ) from None
    except OSError as exc:
        raise ZoneTransferError(findings.Code.ZONE_TRANSFER_FAILED, f"SOA query failed: {_os_text(exc)}") from None
    except Exception as exc:
        raise _permanent_error(exc, server) from None
    if answer.rcode() != dns.rcode.NOERROR:
        raise _rcode_error(answer.rcode(), server)
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == query.question[0].name:
            return soa_serial(rrset)
    raise ZoneTransferError(findings.Code.ZONE_TRANSFER_FAILED, "server sent no SOA for the zone")


# --- one attempt ----------------------------------------------------------------------------


class _NullTransactionManager(dns.transaction.TransactionManager):
    """Lets ``dns.xfr.Inbound`` check the transfer while we keep the records ourselves."""

    def __init__(self, origin: dns.name.Name) -> None:
        self._info = (origin, True, dns.name.empty)

    def origin_information(self) -> Any:
        return self._info

    def get_class(self) -> dns.rdataclass.RdataClass:
        return dns.rdataclass.IN

    def reader(self) -> Any:
        raise NotImplementedError

    def writer(self, replacement: bool = False) -> Any:
        return _NullTransaction()


class _NullTransaction:
    def _nop(self, *args: object, **kwargs: object) -> None:
        return None

    def __getattr__(self, _: str) -> Any:
        return self._nop


def _attempt(
    where: str,
    server: BindServer,
    origin: dns.name.Name,
    signer: _Signer | None,
    deadline: float,
    convert: Convert[Any] | None = None,
) -> tuple[list[Any], int]:
    """One AXFR on a fresh connection: its records (``convert``-ed, if given) and the zone's serial."""
    query = _query(origin, dns.rdatatype.AXFR, signer)
    family = socket.AF_INET6 if ":" in where else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            _connect(sock, (where, server.server_port), server.timeout, deadline)
            _send(sock, query, server.timeout, deadline)
            return _receive(sock, query, origin, server.timeout, deadline, convert)
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
        raise _Transient("reset", f"reset the connection ({_os_text(exc)})") from None


def _connect(sock: socket.socket, address: tuple[str, int], timeout: float, deadline: float) -> None:
    sock.settimeout(_budget(timeout, deadline, "connect"))
    try:
        sock.connect(address)
    except TimeoutError:
        raise _Transient("timeout", "did not accept the connection in time") from None
    except ConnectionRefusedError:
        raise _Transient("refused", "refused the connection") from None


def _send(sock: socket.socket, query: dns.message.Message, timeout: float, deadline: float) -> None:
    wire = query.to_wire()
    sock.settimeout(_budget(timeout, deadline, "send"))
    sock.sendall(struct.pack("!H", len(wire)) + wire)


def _receive(
    sock: socket.socket,
    query: dns.message.Message,
    origin: dns.name.Name,
    timeout: float,
    deadline: float,
    convert: Convert[Any] | None = None,
) -> tuple[list[Any], int]:
    """Messages until ``dns.xfr.Inbound`` has seen the closing SOA; records kept as they come."""
    inbound = dns.xfr.Inbound(_NullTransactionManager(origin), dns.rdatatype.AXFR)
    records: list[Any] = []
    # Knot's tcp-io-timeout (500 ms by default) hangs up on a client that does not read for a
    # moment: a thread keeps the socket drained while this one parses, and the cyclic GC
    # (a pause that would stop both threads) waits until the transfer is over.
    with _gc_paused(), _Drain(sock, timeout, deadline) as wire:
        for response in _responses(wire, query, origin):
            done = inbound.process_message(response)
            if convert is None:
                _keep(response, records)
            else:
                for rrset in response.answer:
                    records.extend(convert(rrset.name, rrset))
            if done:
                break
    assert inbound.soa_rdataset is not None  # process_message saw the first SOA
    return records, soa_serial(inbound.soa_rdataset)


def _responses(wire: _Drain, query: dns.message.Message, origin: dns.name.Name) -> Iterator[dns.message.Message]:
    """Each message of the answer: parsed, an answer to ``query``, TSIG-verified as a continuation."""
    tsig_ctx = None
    first = True
    while True:
        response = dns.message.from_wire(
            wire.next(),
            keyring=query.keyring,
            request_mac=query.mac,
            xfr=True,
            origin=origin,
            tsig_ctx=tsig_ctx,
            multi=True,
        )
        if not query.is_response(response, xfr_continuation=not first):
            raise dns.query.BadResponse
        yield response
        first = False
        tsig_ctx = response.tsig_ctx


def _keep(response: dns.message.Message, records: list[ZoneRecord]) -> None:
    for rrset in response.answer:
        records.extend(zone_records(rrset.name, rrset))


def _budget(timeout: float, deadline: float, what: str) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Transient("timeout", f"did not finish within the lifetime (before {what})")
    return min(timeout, remaining) if timeout > 0 else remaining


class _Drain:
    """Reads whole DNS messages off the socket in a thread, into a queue the parser empties.

    The queue holds at most the zone's wire form (about a tenth of its parsed size) and only
    when parsing falls behind the network.
    """

    def __init__(self, sock: socket.socket, timeout: float, deadline: float) -> None:
        self._sock = sock
        self._timeout = timeout
        self._deadline = deadline
        self._queue: queue.SimpleQueue[bytes | BaseException] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dcc-axfr-read", daemon=True)

    def __enter__(self) -> _Drain:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a recv that waits for more
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                (length,) = struct.unpack("!H", _read(self._sock, 2, self._timeout, self._deadline))
                self._queue.put(_read(self._sock, length, self._timeout, self._deadline))
        except BaseException as exc:  # handed to the parser, which raises it
            if not self._closing.is_set():
                self._queue.put(exc)

    def next(self) -> bytes:
        # the reader enforces timeout and lifetime; this bound only guards against a lost reader
        wait = max(0.0, self._deadline - time.monotonic()) + 2.0
        try:
            item = self._queue.get(timeout=wait)
        except queue.Empty:
            raise _Transient("timeout", "did not answer in time") from None
        if isinstance(item, BaseException):
            raise item
        return item


def _read(sock: socket.socket, count: int, timeout: float, deadline: float) -> bytes:
    """Exactly ``count`` bytes; each wait bounded by ``timeout``, all of them by ``deadline``."""
    buffer = bytearray(count)
    view = memoryview(buffer)
    got = 0
    while got < count:
        sock.settimeout(_budget(timeout, deadline, "the next answer"))
        try:
            n = sock.recv_into(view[got:])
        except TimeoutError:
            raise _Transient("timeout", "did not answer in time") from None
        if n == 0:
            raise _Transient("eof", "closed the connection mid-transfer (EOF)")
        got += n
    return bytes(buffer)


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = True


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC (process-wide) while any transfer runs; refcounting still frees memory."""
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


# --- inputs -----------------------------------------------------------------------------------


def _origin(zone: str) -> dns.name.Name:
    try:
        return zone_origin(zone)
    except dns.exception.DNSException as exc:
        raise ZoneTransferError(findings.Code.ZONE_TRANSFER_FAILED, f"invalid zone name {zone!r}: {exc}") from None


def _address(server: BindServer) -> str:
    """The server's IP as given: names would need the system resolver, which we never use."""
    try:
        return str(ipaddress.ip_address(server.server_ip.strip("[]")))
    except ValueError:
        raise ZoneTransferError(
            findings.Code.ZONE_TRANSFER_FAILED, f"server_ip {server.server_ip!r} is not an IP address"
        ) from None


@dataclass(frozen=True)
class _Signer:
    """A TSIG key that dnspython accepted: signs queries and verifies their answers."""

    keyring: dict[dns.name.Name, dns.tsig.Key]
    name: dns.name.Name
    algorithm: str


# dnspython leaves get_context unannotated: the one call made is typed here
_hmac_context = cast(Callable[[dns.tsig.Key], object], dns.tsig.get_context)


def _tsig(server: BindServer) -> _Signer | None:
    key = server.tsig_key
    if key is None:
        return None
    try:
        secret = key.secret()
    except ConfigError as exc:
        raise ZoneTransferError(findings.Code.TSIG_BAD_KEY, str(exc)) from None
    try:
        name = dns.name.from_text(key.name)
        algorithm = dns.tsig.default_algorithm.to_text() if not key.algorithm else key.algorithm
        # decodes the secret and looks the algorithm up now, so a bad key fails here, not on the wire
        tsig = dns.tsig.Key(name, secret, algorithm)
        _hmac_context(tsig)
    except Exception:
        # never echo the exception: it may quote the secret
        raise ZoneTransferError(
            findings.Code.TSIG_BAD_KEY,
            f"TSIG key {key.name}: unusable (secret must be base64, algorithm one of hmac-sha256, hmac-sha512, …)",
        ) from None
    return _Signer({name: tsig}, name, algorithm)


def _query(origin: dns.name.Name, rdtype: dns.rdatatype.RdataType, signer: _Signer | None) -> dns.message.Message:
    query = dns.message.make_query(origin, rdtype)
    if signer is not None:
        query.use_tsig(signer.keyring, signer.name, algorithm=signer.algorithm)
    return query


# --- errors -----------------------------------------------------------------------------------


def _transient_error(exc: _Transient, server: BindServer, attempts: int, seconds: float) -> ZoneTransferError:
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}, {seconds:.1f} s"
    where = server_label(server)
    if exc.kind == "timeout":
        return ZoneTransferError(
            findings.Code.ZONE_TRANSFER_TIMEOUT,
            f"zone transfer timed out: {where} {exc.detail} "
            f"(timeout {server.timeout:g} s, lifetime {server.lifetime:g} s; {tries})",
        )
    if exc.kind == "refused":
        return ZoneTransferError(
            findings.Code.ZONE_TRANSFER_FAILED, f"zone transfer failed: nothing listens on {where} ({tries})"
        )
    return ZoneTransferError(
        findings.Code.ZONE_TRANSFER_FAILED, f"zone transfer failed: {where} {exc.detail} ({tries})"
    )


class _Rule(NamedTuple):
    """Exceptions of these types become a ``code`` finding worded by ``message``.

    ``message`` is a ``str.format`` template: ``{where}`` (the server), ``{key}`` (the TSIG
    key's name, ``None`` without one), ``{exc}``, ``{kind}`` (the exception's class name),
    ``{os_error}`` (an ``OSError``'s text).
    """

    types: tuple[type[BaseException], ...]
    code: findings.Code
    message: str


_BAD_KEY = findings.Code.TSIG_BAD_KEY
_REFUSED = findings.Code.ZONE_TRANSFER_REFUSED
_FAILED = findings.Code.ZONE_TRANSFER_FAILED

# the first rule whose types match wins; dns.xfr.TransferError goes by rcode (_RCODE_RULES)
_RULES: tuple[_Rule, ...] = (
    _Rule(
        (dns.tsig.PeerBadKey,),
        _BAD_KEY,
        "TSIG key {key} rejected by {where}: unknown key, or not allowed for this zone (BADKEY)",
    ),
    _Rule(
        (dns.tsig.PeerBadSignature,), _BAD_KEY, "TSIG key {key} rejected by {where}: wrong secret or algorithm (BADSIG)"
    ),
    _Rule((dns.tsig.PeerBadTime,), _BAD_KEY, "TSIG key {key} rejected by {where}: clock skew (BADTIME)"),
    _Rule(
        (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.BadAlgorithm),
        _BAD_KEY,
        "TSIG key {key}: answer from {where} failed verification ({kind})",
    ),
    _Rule((dns.message.UnknownTSIGKey,), _BAD_KEY, "TSIG: {where} signed with a key we do not have"),
    _Rule(
        (dns.exception.FormError, dns.exception.SyntaxError, struct.error),
        _FAILED,
        "zone transfer failed: malformed answer from {where} ({exc})",
    ),
    _Rule((OSError,), _FAILED, "zone transfer failed: {where}: {os_error}"),
    _Rule((dns.exception.DNSException,), _FAILED, "zone transfer failed from {where}: {exc}"),
    _Rule((BaseException,), _FAILED, "zone transfer failed from {where}: {kind}: {exc}"),
)

# (rcode, whether a TSIG key is configured) -> code and template ({where}, {key}, {rcode})
_RCODE_RULES: dict[tuple[dns.rcode.Rcode, bool], tuple[findings.Code, str]] = {
    (dns.rcode.REFUSED, False): (_REFUSED, "zone transfer refused by {where}: REFUSED (no transfer ACL for us)"),
    (dns.rcode.REFUSED, True): (
        _REFUSED,
        "zone transfer refused by {where}: REFUSED (no transfer ACL for us, or the key is not allowed)",
    ),
    (dns.rcode.NOTAUTH, False): (
        _REFUSED,
        "zone transfer refused by {where}: NOTAUTH (transfer not allowed, or not authoritative for the zone)",
    ),
    (dns.rcode.NOTAUTH, True): (_BAD_KEY, "TSIG key {key} rejected by {where} (NOTAUTH): wrong name or secret"),
    (dns.rcode.NOTIMP, False): (_REFUSED, "zone transfer refused by {where}: NOTIMP"),
    (dns.rcode.NOTIMP, True): (_REFUSED, "zone transfer refused by {where}: NOTIMP"),
}
_OTHER_RCODE = (_FAILED, "zone transfer failed: {where} answered {rcode}")


def _permanent_error(exc: BaseException, server: BindServer) -> ZoneTransferError:
    if isinstance(exc, ZoneTransferError):
        return exc
    if isinstance(exc, dns.xfr.TransferError):
        return _rcode_error(exc.rcode, server)
    rule = next(rule for rule in _RULES if isinstance(exc, rule.types))
    message = rule.message.format(
        where=server_label(server),
        key=_key_name(server),
        exc=exc,
        kind=type(exc).__name__,
        os_error=_os_text(exc) if isinstance(exc, OSError) else "",
    )
    return ZoneTransferError(rule.code, message)


def _rcode_error(rcode: dns.rcode.Rcode, server: BindServer) -> ZoneTransferError:
    key = _key_name(server)
    code, template = _RCODE_RULES.get((rcode, bool(key)), _OTHER_RCODE)
    return ZoneTransferError(code, template.format(where=server_label(server), key=key, rcode=dns.rcode.to_text(rcode)))


def _key_name(server: BindServer) -> str | None:
    return server.tsig_key.name if server.tsig_key else None


def _os_text(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
