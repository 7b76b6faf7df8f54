"""The versioning rule of shared/messages.py, enforced: bytes that earlier producers put on a queue
still decode to the same message after any change. The files under golden/ were written once by
the code of their day and are never regenerated; a change that breaks one needs a new tag."""

from __future__ import annotations

import typing
from pathlib import Path

import msgspec
import pytest

from shared.messages import DecodeError, Envelope, ScanResult, decode, decode_envelope, encode, message_kind
from tests.wire.messages import EXAMPLES

GOLDEN = Path(__file__).parent / "golden"


def test_every_wire_message_has_a_golden_file() -> None:
    tags = {type(m).__struct_config__.tag for m in EXAMPLES.values()}
    union = {t.__struct_config__.tag for t in typing.get_args(Envelope)}
    assert tags == union == set(EXAMPLES)
    assert all((GOLDEN / f"{tag}.json").is_file() for tag in union)


@pytest.mark.parametrize("tag", sorted(EXAMPLES))
def test_golden_bytes_still_decode_to_the_same_message(tag: str) -> None:
    decoded = decode_envelope((GOLDEN / f"{tag}.json").read_bytes())
    assert message_kind(decoded) == tag
    assert decoded == EXAMPLES[tag]


@pytest.mark.parametrize("tag", sorted(EXAMPLES))
def test_todays_encoding_decodes_to_what_was_encoded(tag: str) -> None:
    assert decode_envelope(encode(EXAMPLES[tag])) == EXAMPLES[tag]


def test_a_result_from_before_segments_were_carried_decodes_with_an_empty_segment() -> None:
    old = decode((GOLDEN / "scan_result.v1.before-segment.json").read_bytes())
    assert isinstance(old, ScanResult) and old.segment == ""
    assert msgspec.structs.replace(old, segment="dmz") == EXAMPLES["scan_result.v1"]


def test_an_unknown_tag_is_a_decode_error_not_a_crash() -> None:
    body = (GOLDEN / "scan_job.v1.json").read_bytes().replace(b"scan_job.v1", b"scan_job.v9")
    with pytest.raises(DecodeError):
        decode(body)
