# Set-up commands of the README: `make run` (the demo, end to end) and `make test` (the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The bundled demo: TLS endpoints with good and broken certificates on loopback, a zones
# JSON naming them, the whole pipeline in one process, and the findings on screen.
run: $(STAMP)
	$(BIN)/python -m demo

lint: $(STAMP)
	$(BIN)/ruff check shared services lab demo tests bench
	$(BIN)/mypy

# Needs RabbitMQ on 127.0.0.1:5672 and knotd on PATH (.ci/run provides both).
test: lint
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/test_resolver.py tests/test_reporter.py tests/test_bad_input.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
