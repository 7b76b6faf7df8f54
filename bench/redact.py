"""Log redaction (``shared.logging.redact``) and control-character escaping on long lines.

    .venv/bin/python bench/redact.py [--sizes 16384,32768,1048576,10485760]

For each line shape and size: the best of three wall times (seconds) and the time per MiB. The
shapes are the ones that made the old regex quadratic (a long run of scheme characters with
nothing after it, a scheme followed by a long token without a colon) and ordinary log lines
full of URLs with credentials. The suite checks that growth is linear; this gives the figures.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from shared.logging import escape_controls, redact

SHAPES: dict[str, Callable[[int], str]] = {
    "scheme-character run": lambda n: "a1" * (n // 2) + " x://",
    "scheme + colon-free token": lambda n: "x://" + "b" * n,
    "schemes without credentials": lambda n: ("a" * 60 + "://@") * (n // 64),
    "glued URLs with credentials": lambda n: "amqp://u:p@h/" * (n // 13),
    "log line full of URLs": lambda n: "amqp://dcc:s3cret@broker:5672/ http://a:b@c/ x@y:z " * (n // 50),
    "names with newlines": lambda n: "www.a.test\n=x\x1b[2J " * (n // 20),
}


def best_of_three(fn: Callable[[str], str], line: str) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn(line)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16384,32768,1048576,10485760", help="line lengths, comma-separated")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    print(f"{'function':<16} {'shape':<30} {'chars':>10} {'seconds':>9} {'s/MiB':>8}")
    for name, fn in (("redact", redact), ("escape_controls", escape_controls)):
        for shape, build in SHAPES.items():
            for size in sizes:
                line = build(size)
                seconds = best_of_three(fn, line)
                per_mib = seconds / len(line) * 1048576
                print(f"{name:<16} {shape:<30} {len(line):>10} {seconds:>9.4f} {per_mib:>8.3f}")


if __name__ == "__main__":
    main()
