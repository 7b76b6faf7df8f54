"""The bundled demo behind ``make run``."""
