"""Test helpers that talk to the local RabbitMQ node through ``rabbitmqctl`` (loopback only)."""

from __future__ import annotations

import subprocess
import uuid


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def close_connections_named(fragment: str, reason: str = "test: forced close") -> int:
    """Force-close only the connections whose client-provided name contains ``fragment``."""
    closed = 0
    for line in rabbitmqctl("list_connections", "pid", "client_properties").splitlines():
        pid, _, props = line.partition("\t")
        if fragment in props and pid.startswith("<"):
            try:
                rabbitmqctl("close_connection", pid, reason)
                closed += 1
            except RuntimeError:
                pass  # gone meanwhile
    return closed


class Vhost:
    """A throw-away virtual host, so a test's queues and connections are its own."""

    def __init__(self) -> None:
        self.name = f"dcc-test-{uuid.uuid4().hex[:8]}"
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    def url(self, base: str = "amqp://guest:guest@127.0.0.1:5672") -> str:
        return f"{base}/{self.name}"

    def close_all_connections(self, reason: str = "test: forced close") -> None:
        rabbitmqctl("close_all_connections", "-p", self.name, reason)

    def queues(self) -> dict[str, tuple[int, int]]:
        """name → (ready, unacked)."""
        out: dict[str, tuple[int, int]] = {}
        listing = rabbitmqctl("list_queues", "-p", self.name, "name", "messages_ready", "messages_unacknowledged")
        for line in listing.splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[1].isdigit():
                out[parts[0]] = (int(parts[1]), int(parts[2]))
        return out

    def delete(self) -> None:
        rabbitmqctl("delete_vhost", self.name)
