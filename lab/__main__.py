"""``python -m lab``: the TLS lab as a long-running server, e.g. the demo targets of docker-compose.yml.

    python -m lab --listen 0.0.0.0 --port 443 --ca-out /var/lib/dcc/lab-ca.pem --cases valid,expired

A fresh private PKI is made at every start. Every case is served on the one ``--listen`` address
(a container has one address per network; 0.0.0.0 is all of them), its certificate chosen by the
name the client asks for (``<case>.<zone>`` by SNI). The lab's CA (the roots scanners need as
``custom_ca_file``) is written to ``--ca-out`` once the lab serves, replacing the previous lab's,
which is removed first: a file there always belongs to a lab that is running or was. SIGTERM or
SIGINT stops it (exit 0).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from lab.servers import ALL_CASES, start_lab
from shared.files import write_atomically  # a healthcheck or a scanner never reads half a PEM
from shared.signals import stop_on_signals

# The certificate cases (one address cannot also refuse, hang or speak plaintext), and a few of the
# checks the original did not have that need no openssl binary (lab/pki_cases.py).
DEFAULT_CASES = (
    *(c for c in ALL_CASES if c not in ("refused", "hung", "plaintext", "valid6")),
    "lax_ca",
    "no_san",
    "expiring_critical",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="0.0.0.0", help="address to serve every case on (default 0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=443, help="TCP port (default 443; 0 picks a free one)")
    parser.add_argument("--zone", default="lab.test", help="the names are <case>.<zone> (default lab.test)")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma-separated cases (default: %(default)s)")
    parser.add_argument("--ca-out", type=Path, default=None, help="write the lab's CA PEM here once it serves")
    parser.add_argument("--workdir", type=Path, default=None, help="certificates and keys (default: a new temp dir)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.ca_out is not None:
        args.ca_out.unlink(missing_ok=True)  # the last lab's CA: trusting it would hide this lab's certificates
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dcc-lab-"))
    try:
        lab = start_lab(workdir, port=args.port, zone=args.zone, cases=cases, listen=args.listen)
    except ValueError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lab: cannot listen on {args.listen} port {args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    with lab, stop_on_signals(stop):
        if args.ca_out is not None:
            write_atomically(args.ca_out, lab.ca_file.read_bytes())
        for endpoint in lab.endpoints:
            print(f"lab: {endpoint.hostname} ({endpoint.case}) on {args.listen}:{lab.port}", flush=True)
        print(f"lab: CA in {args.ca_out or lab.ca_file}", flush=True)
        while not stop.wait(1.0):  # wakes for the signal handler at least once a second
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
