"""What reaches a log is one line per record, whatever the names in it: control characters that came
from outside (zone names, certificate fields, server messages) are escaped, secrets are masked, and
masking a huge line costs time in proportion to its length."""

from __future__ import annotations

import io
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from shared.logging import SafeFormatter, escape_controls, redact, setup_logging

FORGED = "\n2026-12-01 10:00:00,000 ERROR dcc.reporter: 10.9.9.9:443 - forged - certificate has expired"


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """What ``setup_logging`` writes, with the root logger restored afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    setup_logging(logging.INFO, stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


# -- control characters -----------------------------------------------------------------------


def test_a_newline_in_a_logged_name_cannot_forge_a_second_line(log_output: io.StringIO) -> None:
    logging.getLogger("dcc.reporter").error("%s - %s - %s", "127.0.0.1:443", "www.a.test" + FORGED, "bad")
    lines = log_output.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("www.a.test" + FORGED.replace("\n", "\\n") + " - bad")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\r", "\\r"),
        ("\t", "\\t"),
        ("\x00", "\\x00"),
        ("\x0b", "\\x0b"),  # vertical tab: a line break to str.splitlines
        ("\x0c", "\\x0c"),
        ("\x1b[2J", "\\x1b[2J"),  # ANSI: clear the operator's terminal
        ("\x7f", "\\x7f"),
        ("\x85", "\\x85"),  # C1 "next line"
        ("\x9b", "\\x9b"),  # C1 CSI
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
        ("\u202e", "\\u202e"),  # right-to-left override: makes a line read differently
    ],
)
def test_every_control_character_is_logged_escaped(log_output: io.StringIO, raw: str, shown: str) -> None:
    logging.getLogger("dcc.test").warning("name %s end", f"a{raw}b")
    text = log_output.getvalue()
    assert raw not in text
    assert text.endswith(f"name a{shown}b end\n")
    assert len(text.splitlines()) == 1


def test_ordinary_text_is_logged_as_it_is(log_output: io.StringIO) -> None:
    text = r'bücher.example - CN=Ünïcode "quoted" C:\path\n-not-a-newline ✓'
    logging.getLogger("dcc.test").warning(text)
    assert log_output.getvalue().endswith(f": {text}\n")


def test_escaping_twice_changes_nothing_more() -> None:
    once = escape_controls("a\nb\x1bc\u2028")
    assert once == "a\\nb\\x1bc\\u2028"
    assert escape_controls(once) == once


def _raise_chained(message: str) -> None:
    try:
        raise OSError("connection reset")
    except OSError as exc:
        raise ValueError(message) from exc


def test_a_traceback_stays_multi_line_but_its_exception_message_is_escaped(log_output: io.StringIO) -> None:
    try:
        _raise_chained("hostname mismatch for 'evil" + FORGED + "'")
    except ValueError:
        logging.getLogger("dcc.scanner").exception("scan of %s failed", "evil\nname")
    lines = log_output.getvalue().splitlines()
    assert lines[0].endswith("ERROR dcc.scanner: scan of evil\\nname failed")
    assert lines[1] == "Traceback (most recent call last):"
    assert "The above exception was the direct cause of the following exception:" in lines
    assert "OSError: connection reset" in lines
    assert lines[-1] == "ValueError: hostname mismatch for 'evil\\n2026-12-01 10:00:00,000 ERROR dcc.reporter: " + (
        "10.9.9.9:443 - forged - certificate has expired'"
    )
    assert not any(line.startswith("2026-12-01 10:00:00,000") for line in lines)


def test_an_ordinary_traceback_reads_as_the_standard_one() -> None:
    try:
        try:
            {}["missing"]
        except KeyError:
            _raise_chained("plain message")
    except ValueError:
        exc_info = sys.exc_info()
    assert SafeFormatter().formatException(exc_info) == logging.Formatter().formatException(exc_info)


def test_a_secret_split_by_a_newline_is_still_masked(log_output: io.StringIO) -> None:
    logging.getLogger("dcc.test").warning("broker %s", "amqp://dcc:sec\nret@broker:5672/")
    assert "sec" not in log_output.getvalue() and "ret@" not in log_output.getvalue()
    assert "amqp://dcc:***@broker:5672/" in log_output.getvalue()


# -- redaction: the same masks as before, in linear time -----------------------------------------

# The implementation before it was made linear (``re.sub`` tries the scheme at every position of a
# long run of scheme characters): the reference the linear one must agree with, character for character.
_NEXT_URL = r"(?<![a-z0-9+.-])(?:amqps?|https?)://"
_REFERENCE = re.compile(rf"(?P<head>[a-z][a-z0-9+.-]*://[^\s:@]*:)(?P<rest>(?:(?!{_NEXT_URL})\S)*)", re.IGNORECASE)


def reference_redact(text: str) -> str:
    def mask(match: re.Match[str]) -> str:
        at = match["rest"].rfind("@")
        return match[0] if at < 0 else f"{match['head']}***{match['rest'][at:]}"

    return _REFERENCE.sub(mask, text)


PIECES = [
    "a", "Z", "q", "1", "+", ".", "-", ":", "/", "@", " ", "\t", "\n", "%2F", "'", '"', ",", "(",
    "amqp://", "AMQPS://", "http://", "https://", "x-y.z+1://", "1a://", "://", "amqp", "http",
    "u:", ":p@", "@h", "h:5672/", "\u017f", "\u212a", "\u0130", "\u0131", "é", "\u2028", "\xa0",
]  # fmt: skip


def random_lines(count: int, seed: int = 20261201) -> Iterator[str]:
    rng = random.Random(seed)
    for _ in range(count):
        yield "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 24)))


def test_redaction_masks_exactly_what_it_always_masked() -> None:
    for line in random_lines(30_000):
        assert redact(line) == reference_redact(line), repr(line)


def test_the_scheme_characters_are_the_ones_the_reference_pattern_accepts() -> None:
    """``re.IGNORECASE`` lets a few non-ASCII letters (``ſ``, the Kelvin sign, ...) into ``[a-z]``."""
    for block in range(0, 0x110000, 0x10000):
        line = " ".join(f"{chr(code)}://u:secret@h" for code in range(block, block + 0x10000))
        assert redact(line) == reference_redact(line), f"characters from {block:#x}"


def redact_seconds(line: str, tries: int) -> float:
    """The shortest of ``tries`` wall times of ``redact(line)``."""
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        redact(line)
        best = min(best, time.perf_counter() - start)
    return best


# Lines that make a regex that tries every start position do quadratic work, and ordinary ones.
SHAPES: dict[str, Callable[[int], str]] = {
    "a long run of scheme characters": lambda n: "a1" * (n // 2) + " x://",
    "a scheme then a token without a colon": lambda n: "x://" + "b" * n,
    "many schemes without credentials": lambda n: ("a" * 60 + "://@") * (n // 64),
    "glued URLs with credentials": lambda n: "amqp://u:p@h/" * (n // 13),
    "a log line full of URLs": lambda n: "amqp://dcc:s3cret@broker:5672/ http://a:b@c/ x@y:z " * (n // 50),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_redacting_a_megabyte_line_takes_time_in_proportion_to_its_length(shape: str) -> None:
    """No timed assertion: the time for 1 MiB is compared with the time for 4 KiB of the same shape,
    allowing eight times linear growth (quadratic work is 256 times that at 1 MiB, and fails early)."""
    build = SHAPES[shape]
    base = 4096
    small = build(base)
    per_char = redact_seconds(small, 5) / len(small)
    for size in (base * 4, base * 16, base * 64, base * 256):  # up to 1 MiB
        line = build(size)
        allowed = 8 * per_char * len(line)
        taken = redact_seconds(line, 1)
        if taken > allowed:  # once more before concluding: a scheduler hiccup is not quadratic work
            taken = min(taken, redact_seconds(line, 2))
        assert taken <= allowed, f"{len(line)} characters took {taken / (per_char * len(line)):.0f}x linear time"
