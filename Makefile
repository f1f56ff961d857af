# Sluice: the two commands a newcomer types are `make demo` and `make test`.
# Each runs `setup` first when it is needed, so either works on a fresh clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
LINT_PATHS := $(wildcard controller tests models benchmarks)

.PHONY: setup services test demo demo-ensemble demo-recommender lint format typecheck bench clean upstream-check upstream-refresh

setup: $(STAMP) services

# The controller with its local and dev extras, every package at the version of
# requirements.lock (pyproject.toml pins the direct dependencies; `make lock` resolves the rest).
$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Sluice needs Python 3.11 or newer: install it and run make again (or PYTHON=python3.11 make)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint requirements.lock -e '.[dev,local,graph]'
	$(BIN)/pip check
	@touch $(STAMP)

# Resolve pyproject.toml's pins afresh in a scratch environment and write what they pull in.
.PHONY: lock
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet '.[dev,local,graph]'
	{ echo '# Every package `make setup` installs, at the version it installs (`make lock` writes this'; \
	  echo '# from pyproject.toml; the Dockerfile installs from it too). Do not edit by hand.'; \
	  .lock-venv/bin/pip freeze --all --exclude-editable | grep -v -i -E '^(sluice|pip|setuptools|wheel)( @ |==)'; } > requirements.lock
	rm -rf .lock-venv

# Prometheus and Alertmanager (the local loop and the tests) and PostgreSQL (the registry's
# production backend, tested too) come from Debian's packages, and so does Chromium, which
# opens the status page of `sluice serve` headless in tests/test_status_watch.py. No systemd:
# Sluice starts the binaries itself with its own configuration, and policy-rc.d keeps the
# packages from starting system-wide services while they install.

services:
	@missing=; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "Sluice needs$$missing: run 'sudo apt-get install -y$$missing' (or put the binaries on PATH) and run make again" >&2; exit 2; \
	fi; \
	echo "Installing$$missing from Debian's packages"; \
	policy=/usr/sbin/policy-rc.d; made_policy=; \
	if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod +x $$policy && made_policy=1; fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	status=$$?; if [ -n "$$made_policy" ]; then rm -f $$policy; fi; exit $$status

# Four workers, one test file each at a time: much of the suite waits on real services (syncs,
# scrapes, rollout intervals), so four files in parallel keep 2 cores busy. Measured in clean
# clones on 2 cores: 630 s of pytest with three workers, 580-606 s with four, once model servers
# started warm (before that, when each cost 2.4 s of CPU to start, four were slower than three).
# Files go out in collection order, which tests/conftest.py sets longest first (xdist would
# otherwise order them by test count and start the demo last, alone).
PYTEST_WORKERS ?= 4
# Bytecode is written as Python does by default, even where the environment turns it off
# (PYTHONDONTWRITEBYTECODE=1, as on CI's image): the suite starts hundreds of Python processes
# (CLIs, model servers, runtimes, Locust), and each one compiled the checkout's modules (tests,
# controller, models, loadtests) again; each xdist worker also rewrote every test file's
# asserts anew (collection 9.6 s of CPU a process, 4.5 s with the bytecode kept).
test: setup
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 $(PYTEST_ARGS)

demo: setup
	$(BIN)/sluice demo

# The market-regime InferenceGraph: four models, routing per regime, a member's canary judged on
# its regime's traffic, and a member worse only in its regime rolled back from shadow.
demo-ensemble: setup
	$(BIN)/sluice demo ensemble

# The recommender through the holiday: the champion's CTR drops, a retrained model's 5 % canary
# judged on CTR is promoted, and a faster but worse one is rolled back on CTR alone.
demo-recommender: setup
	$(BIN)/sluice demo recommender

# ruff, mypy --strict, and import-linter's contracts: the layers written in pyproject.toml
# ([tool.importlinter]).
lint: setup lint-workflows
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy --strict controller
	$(BIN)/lint-imports --no-logo --no-cache

# GitHub Actions workflows: actionlint (with shellcheck when it is on PATH), zizmor's security
# audits (offline: no GitHub API calls) and the workflow JSON schema, plus timeout-minutes on
# every job.
.PHONY: lint-workflows validate-manifests
lint-workflows: setup
	$(BIN)/actionlint
	$(BIN)/zizmor --offline .github/workflows
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema custom.github-workflows-require-timeout .github/workflows/*.yml

# Every kustomization (overlays, gitops/, monitoring/, serving-runtime/, controller/) rendered
# with kubectl kustomize and validated, and the alert rules checked and unit-tested by promtool.
# The upstream CRDs they are validated against are checked first.
validate-manifests: setup upstream-check
	$(BIN)/pytest tests/test_gitops.py tests/test_monitoring_manifests.py

# Upstream files vendored in tests/upstream (KServe's and Argo CD's CRDs, Argo CD's
# InferenceService health check), each listed in tests/upstream/SOURCES.md with its repository,
# commit and SHA-256. upstream-check verifies the hashes offline (tests/test_upstream.py does in
# make test too); upstream-refresh downloads every file again from GitHub at its commit and
# writes them only if all match (after changing a commit there: UPSTREAM_ARGS=--rehash).
# Standard library only, so neither needs setup.
UPSTREAM_ARGS ?=
upstream-check:
	$(PYTHON) tests/upstream/sources.py check

upstream-refresh:
	$(PYTHON) tests/upstream/sources.py refresh $(UPSTREAM_ARGS)

format: setup
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

typecheck: setup
	$(BIN)/mypy --strict controller

bench: setup
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@set -e; for script in $(wildcard benchmarks/*.py); do echo "== $$script"; $(BIN)/python $$script; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .import_linter_cache build *.egg-info

# `make help`: every target and what it does.
.PHONY: help
help:
	@echo 'Targets (each runs setup first when it needs it):'
	@echo '  demo                the whole loop on a local stack, narrated (about six minutes)'
	@echo '  demo-ensemble       a regime-aware InferenceGraph of four models, member by member'
	@echo '  demo-recommender    a recommender through the holiday, its canaries judged on CTR'
	@echo '  test                the test suite (PYTEST_ARGS=..., PYTEST_WORKERS=2)'
	@echo '  setup               .venv with Sluice and its local and dev extras (from requirements.lock), and the services below'
	@echo '  services            install Prometheus, Alertmanager, PostgreSQL, Chromium from Debian if missing'
	@echo '  lock                resolve pyproject.toml afresh and rewrite requirements.lock'
	@echo '  lint                ruff, ruff format --check, mypy --strict, import contracts, workflows'
	@echo '  lint-workflows      actionlint, zizmor and the workflow schema on .github/workflows'
	@echo '  format              ruff format and ruff check --fix'
	@echo '  typecheck           mypy --strict controller'
	@echo '  validate-manifests  render every kustomization and validate it; promtool on the rules'
	@echo '  upstream-check      check the vendored upstream files against their SHA-256'
	@echo '  upstream-refresh    download the vendored upstream files again (UPSTREAM_ARGS=--rehash)'
	@echo '  bench               the benchmarks in benchmarks/'
	@echo '  clean               remove .venv and the caches'
	@echo '  help                this list'
