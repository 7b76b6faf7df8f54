"""Throughput of the AMQP transport: confirmed publishes, and serve() moving jobs to results.

    .venv/bin/python bench/amqp_throughput.py [N]

Uses a throw-away name prefix on the broker at AMQP_URL and deletes what it declared.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from datetime import UTC, datetime

from shared.messages import Message, ScanJob, job_id, result_for
from shared.runner import Handler, ServeOptions, serve
from shared.transport.amqp import open_transport
from shared.transport.amqp.transport import PUBLISH_WINDOW
from shared.transport.base import Outgoing


class _Echo(Handler):
    def __init__(self, out: str) -> None:
        self.out = out
        self.count = 0

    def handle(self, message: Message) -> list[Outgoing]:
        assert isinstance(message, ScanJob)
        self.count += 1
        result = result_for(message, [], datetime.now(UTC))
        return [Outgoing(self.out, result)]


def main(n: int) -> None:
    transport = open_transport(prefix=f"bench-{uuid.uuid4().hex[:6]}.")
    jobs, results = "jobs", "results"
    transport.declare([jobs, results])
    messages = [
        ScanJob(
            job_id=job_id("bench", "127.0.0.1", 443, f"h{i}.bench.", f"h{i}.bench"),
            run_id="bench",
            zone="bench.",
            ip_address="127.0.0.1",
            port=443,
            fqdn=f"h{i}.bench.",
            sni=f"h{i}.bench",
        )
        for i in range(n)
    ]
    try:
        started = time.perf_counter()
        transport.publish_many([Outgoing(jobs, m) for m in messages])
        publish_s = time.perf_counter() - started
        handler, stop = _Echo(results), threading.Event()
        worker = threading.Thread(target=serve, args=(transport, jobs, handler, stop, ServeOptions(workers=8)))
        started = time.perf_counter()
        worker.start()
        while handler.count < n or transport.depth(jobs) > 0:
            time.sleep(0.05)
        serve_s = time.perf_counter() - started
        stop.set()
        worker.join()
        print(
            f"publish_many, persistent, {PUBLISH_WINDOW} per transaction: "
            f"{n / publish_s:,.0f} msg/s ({n} in {publish_s:.2f}s)"
        )
        print(f"serve (8 workers, consume + publish result + ack): {n / serve_s:,.0f} jobs/s")
    finally:
        transport.delete([jobs, results], exchanges=True)
        transport.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
