"""The resolver service."""
