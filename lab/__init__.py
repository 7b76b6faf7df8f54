"""The TLS lab: a private PKI and TLS endpoints (good and broken) on loopback, for tests and the demo."""

from lab.servers import ALL_CASES, Lab, LabEndpoint, start_lab

__all__ = ["ALL_CASES", "Lab", "LabEndpoint", "start_lab"]
