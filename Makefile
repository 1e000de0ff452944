# inferloop: every target installs what it needs, idempotently, and reuses what is already there.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
DEMO_ARGS ?=
HELM_VERSION ?= v3.22.0
CACHE  := $(or $(INFERLOOP_CACHE_DIR),$(HOME)/.cache/inferloop)
export PATH := $(PATH):/usr/local/go/bin:$(CACHE)/bin

.PHONY: help setup base system-deps runtimes tools test lint unit integration demo up status down clean

help:
	@echo "make demo   - the whole loop on the embedded digits: stream, drift, feedback, retrain, recover (<= 5 min)"
	@echo "make test   - lint, type-check and run every test against the real Kafka and Triton"
	@echo "make setup  - install system packages, the virtualenv, Kafka jars and Triton's backend folder"
	@echo "make up / status / down - keep the local stack running in the background"

setup: base tools

# what running the stack and the demo needs; helm (tools) only the chart's checks do
base: system-deps $(STAMP) runtimes

system-deps:
	@bash infra/local/system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	@touch $(STAMP)

runtimes: $(STAMP)
	$(BIN)/inferloop setup

# helm, for the chart's lint/template checks: an installed one, else built once from the Go module proxy.
tools:
	@command -v helm >/dev/null 2>&1 || { \
	  command -v go >/dev/null 2>&1 || { echo "helm is missing and there is no Go toolchain to build it" >&2; exit 1; }; \
	  echo "building helm $(HELM_VERSION) with Go into $(CACHE)/bin (once)"; \
	  GOBIN="$(CACHE)/bin" go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); }
	@helm version --short

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup lint
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

demo: base
	$(BIN)/inferloop demo $(DEMO_ARGS)

up: base
	$(BIN)/inferloop up

status: $(STAMP)
	$(BIN)/inferloop status

down: $(STAMP)
	$(BIN)/inferloop down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
