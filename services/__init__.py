"""The four services (collector, resolver, scanner, reporter) and the CLI."""
