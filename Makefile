# Set-up commands of the README: `make run` (the demo, end to end) and `make test` (the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install provision run test lint unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests use (Knot, RabbitMQ, Alertmanager, promtool) and a running RabbitMQ;
# does nothing when everything is there. Shared with .ci/run.
provision:
	bash .ci/provision

# The bundled demo: TLS endpoints with good and broken certificates on loopback, a zones
# JSON naming them, the whole pipeline in one process, and the findings on screen.
run: $(STAMP)
	$(BIN)/python -m demo

lint: $(STAMP)
	$(BIN)/ruff check shared services lab demo tests bench
	$(BIN)/ruff format --check shared services lab demo tests bench
	$(BIN)/mypy

test: provision lint
	$(BIN)/pytest

# Every test not marked slow (no broker, no DNS server process, no multi-process runs).
unit: $(STAMP)
	$(BIN)/pytest -m "not slow"

# The secrets docker-compose.yml reads from .env (the broker's password, the TSIG key of the demo's
# zone transfers), made with openssl rand. An existing .env is never touched; .env is owner-only.
.PHONY: compose-env
compose-env:
	@if [ -e .env ]; then echo "compose-env: .env exists, left as it is"; exit 0; fi; \
	umask 077; \
	password=$$(openssl rand -hex 24) && key=$$(openssl rand -base64 32) || exit 1; \
	printf 'RABBITMQ_PASSWORD=%s\nDCC_TSIG_SECRET=%s\n' "$$password" "$$key" > .env.new && ln .env.new .env; \
	status=$$?; rm -f .env.new; \
	if [ $$status -eq 0 ]; then echo "compose-env: wrote .env (RABBITMQ_PASSWORD, DCC_TSIG_SECRET)"; fi; \
	exit $$status

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
