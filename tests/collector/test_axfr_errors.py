"""Every exception an AXFR can end in, and the (code, message) the user gets for it.

Pinned as literal text: the wording is part of the product (CSV rows, alerts keyed on messages).
"""

from __future__ import annotations

import errno
import struct

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.xfr
import pytest

from services.collector import axfr
from shared.config import BindServer, TsigKey
from shared.findings import Code
from tests.collector.knot import KnotServer

PLAIN = BindServer("127.0.0.1", 5353)
KEYED = BindServer("fd00::53", 53, tsig_key=TsigKey(name="xfr-key", secret_env="DCC_NEVER_SET"))

P = "127.0.0.1:5353"
K = "[fd00::53]:53"

REFUSED = Code.ZONE_TRANSFER_REFUSED
FAILED = Code.ZONE_TRANSFER_FAILED
BAD_KEY = Code.TSIG_BAD_KEY


def _struct_error() -> struct.error:
    try:
        struct.unpack("!H", b"\x00")
    except struct.error as exc:
        return exc
    raise AssertionError("unreachable")


CASES: list[tuple[str, BindServer, BaseException, Code, str]] = [
    # TSIG, as the server reported it
    (
        "peer-badkey",
        KEYED,
        dns.tsig.PeerBadKey(),
        BAD_KEY,
        f"TSIG key xfr-key rejected by {K}: unknown key, or not allowed for this zone (BADKEY)",
    ),
    (
        "peer-badsig",
        KEYED,
        dns.tsig.PeerBadSignature(),
        BAD_KEY,
        f"TSIG key xfr-key rejected by {K}: wrong secret or algorithm (BADSIG)",
    ),
    ("peer-badtime", KEYED, dns.tsig.PeerBadTime(), BAD_KEY, f"TSIG key xfr-key rejected by {K}: clock skew (BADTIME)"),
    (
        "peer-badsig-no-key",
        PLAIN,
        dns.tsig.PeerBadSignature(),
        BAD_KEY,
        f"TSIG key None rejected by {P}: wrong secret or algorithm (BADSIG)",
    ),
    (
        "peer-badtrunc",
        KEYED,
        dns.tsig.PeerBadTruncation(),
        BAD_KEY,
        f"TSIG key xfr-key: answer from {K} failed verification (PeerBadTruncation)",
    ),
    (
        "peer-other",
        KEYED,
        dns.tsig.PeerError("unknown TSIG error code 99"),
        BAD_KEY,
        f"TSIG key xfr-key: answer from {K} failed verification (PeerError)",
    ),
    # TSIG, as we verified the answer
    (
        "bad-signature",
        KEYED,
        dns.tsig.BadSignature(),
        BAD_KEY,
        f"TSIG key xfr-key: answer from {K} failed verification (BadSignature)",
    ),
    ("bad-key", KEYED, dns.tsig.BadKey(), BAD_KEY, f"TSIG key xfr-key: answer from {K} failed verification (BadKey)"),
    (
        "bad-algorithm",
        KEYED,
        dns.tsig.BadAlgorithm(),
        BAD_KEY,
        f"TSIG key xfr-key: answer from {K} failed verification (BadAlgorithm)",
    ),
    (
        "bad-time",  # not in the TSIG group: a plain DNS exception
        KEYED,
        dns.tsig.BadTime(),
        FAILED,
        f"zone transfer failed from {K}: The current time is not within the TSIG's validity time.",
    ),
    (
        "unknown-tsig-key",
        PLAIN,
        dns.message.UnknownTSIGKey(),
        BAD_KEY,
        f"TSIG: {P} signed with a key we do not have",
    ),
    # rcodes
    (
        "refused",
        PLAIN,
        dns.xfr.TransferError(dns.rcode.REFUSED),
        REFUSED,
        f"zone transfer refused by {P}: REFUSED (no transfer ACL for us)",
    ),
    (
        "refused-keyed",
        KEYED,
        dns.xfr.TransferError(dns.rcode.REFUSED),
        REFUSED,
        f"zone transfer refused by {K}: REFUSED (no transfer ACL for us, or the key is not allowed)",
    ),
    (
        "notauth",
        PLAIN,
        dns.xfr.TransferError(dns.rcode.NOTAUTH),
        REFUSED,
        f"zone transfer refused by {P}: NOTAUTH (transfer not allowed, or not authoritative for the zone)",
    ),
    (
        "notauth-keyed",
        KEYED,
        dns.xfr.TransferError(dns.rcode.NOTAUTH),
        BAD_KEY,
        f"TSIG key xfr-key rejected by {K} (NOTAUTH): wrong name or secret",
    ),
    ("notimp", PLAIN, dns.xfr.TransferError(dns.rcode.NOTIMP), REFUSED, f"zone transfer refused by {P}: NOTIMP"),
    ("notimp-keyed", KEYED, dns.xfr.TransferError(dns.rcode.NOTIMP), REFUSED, f"zone transfer refused by {K}: NOTIMP"),
    (
        "servfail",
        PLAIN,
        dns.xfr.TransferError(dns.rcode.SERVFAIL),
        FAILED,
        f"zone transfer failed: {P} answered SERVFAIL",
    ),
    (
        "nxdomain-keyed",
        KEYED,
        dns.xfr.TransferError(dns.rcode.NXDOMAIN),
        FAILED,
        f"zone transfer failed: {K} answered NXDOMAIN",
    ),
    ("formerr", PLAIN, dns.xfr.TransferError(dns.rcode.FORMERR), FAILED, f"zone transfer failed: {P} answered FORMERR"),
    # malformed answers
    (
        "form-error",
        PLAIN,
        dns.exception.FormError("bad label"),
        FAILED,
        f"zone transfer failed: malformed answer from {P} (bad label)",
    ),
    (
        "short-header",
        PLAIN,
        dns.message.ShortHeader(),
        FAILED,
        f"zone transfer failed: malformed answer from {P} (The DNS packet passed to from_wire() is too short.)",
    ),
    (
        "serial-went-backwards",
        PLAIN,
        dns.xfr.SerialWentBackwards(),
        FAILED,
        f"zone transfer failed: malformed answer from {P} (The current serial number is less than the serial we know.)",
    ),
    (
        "syntax-error",
        PLAIN,
        dns.exception.SyntaxError("unexpected end of input"),
        FAILED,
        f"zone transfer failed: malformed answer from {P} (unexpected end of input)",
    ),
    (
        "label-too-long",  # a dns.exception.SyntaxError
        PLAIN,
        dns.name.LabelTooLong(),
        FAILED,
        f"zone transfer failed: malformed answer from {P} (A DNS label is > 63 octets long.)",
    ),
    (
        "struct-error",
        PLAIN,
        _struct_error(),
        FAILED,
        f"zone transfer failed: malformed answer from {P} (unpack requires a buffer of 2 bytes)",
    ),
    (
        "bad-response",  # a FormError
        PLAIN,
        dns.query.BadResponse(),
        FAILED,
        f"zone transfer failed: malformed answer from {P} "
        "(A DNS query response does not respond to the question asked.)",
    ),
    # the socket
    (
        "os-error",
        PLAIN,
        OSError(errno.EHOSTUNREACH, "No route to host"),
        FAILED,
        f"zone transfer failed: {P}: No route to host",
    ),
    ("os-error-bare", KEYED, OSError(), FAILED, f"zone transfer failed: {K}: OSError"),
    ("timeout-error-bare", PLAIN, TimeoutError(), FAILED, f"zone transfer failed: {P}: TimeoutError"),
    # any other DNS exception, then anything at all
    (
        "dns-timeout",
        PLAIN,
        dns.exception.Timeout(),
        FAILED,
        f"zone transfer failed from {P}: The DNS operation timed out.",
    ),
    (
        "dns-exception",
        KEYED,
        dns.exception.DNSException("odd {braces} kept"),
        FAILED,
        f"zone transfer failed from {K}: odd {{braces}} kept",
    ),
    ("anything-else", PLAIN, ValueError("boom"), FAILED, f"zone transfer failed from {P}: ValueError: boom"),
    ("anything-else-empty", KEYED, RuntimeError(), FAILED, f"zone transfer failed from {K}: RuntimeError: "),
]


@pytest.mark.parametrize(("server", "exc", "code", "message"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_each_permanent_error_has_its_code_and_message(
    server: BindServer, exc: BaseException, code: Code, message: str
) -> None:
    error = axfr._permanent_error(exc, server)
    assert (error.code, error.message, str(error)) == (code, message, message)


def test_a_zone_transfer_error_passes_through_unchanged() -> None:
    original = axfr.ZoneTransferError(Code.TSIG_BAD_KEY, "TSIG key k: unusable")
    assert axfr._permanent_error(original, KEYED) is original


def test_query_serial_reports_like_a_transfer(knot: KnotServer, bind: BindServer, bind_tsig: BindServer) -> None:
    where = f"{bind.server_ip}:{bind.server_port}"
    with pytest.raises(axfr.ZoneTransferError) as info:
        axfr.query_serial(bind, "not-served.test")
    assert (info.value.code, info.value.message) == (
        REFUSED,
        f"zone transfer refused by {where}: REFUSED (no transfer ACL for us)",
    )
    with pytest.raises(axfr.ZoneTransferError) as info:
        axfr.query_serial(bind_tsig, "small.test")  # the key is only allowed for secret.test
    assert (info.value.code, info.value.message) == (
        BAD_KEY,
        f"TSIG key {knot.tsig_name} rejected by {where}: unknown key, or not allowed for this zone (BADKEY)",
    )
