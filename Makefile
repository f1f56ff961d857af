# Sluice: the two commands a newcomer types are `make demo` and `make test`.
# Each runs `setup` first when it is needed, so either works on a fresh clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup services test demo lint format typecheck bench clean

setup: $(STAMP) services

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Sluice needs Python 3.11 or newer: install it and run make again (or PYTHON=python3.11 make)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip check
	@touch $(STAMP)

# Prometheus and Alertmanager come from Debian's packages; no systemd: Sluice starts the binaries
# itself with its own configuration.
services:
	@if command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Prometheus and Alertmanager from Debian's packages"; \
		policy=/usr/sbin/policy-rc.d; made_policy=; \
		if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod +x $$policy && made_policy=1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null; \
		status=$$?; [ -n "$$made_policy" ] && rm -f $$policy; [ $$status = 0 ] || exit $$status; \
	else \
		echo "Sluice needs Prometheus and Alertmanager on PATH: run 'sudo apt-get install -y prometheus prometheus-alertmanager' (or put the binaries on PATH) and run make again" >&2; exit 2; \
	fi

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

demo: setup
	$(BIN)/sluice demo

lint: setup
	$(BIN)/ruff check controller tests models benchmarks
	$(BIN)/ruff format --check controller tests models benchmarks
	$(BIN)/mypy --strict controller

format: setup
	$(BIN)/ruff format controller tests models benchmarks
	$(BIN)/ruff check --fix controller tests models benchmarks

typecheck: setup
	$(BIN)/mypy --strict controller

bench: setup
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build *.egg-info
