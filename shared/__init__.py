"""Common library of dns-cert-checker: messages, transport, config, logging."""
