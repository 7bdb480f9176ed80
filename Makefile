# The two commands: `make demo` and `make test`. Each builds what it needs from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
NODE_INSTALLED := node_modules/.installed
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export CDK_DISABLE_VERSION_CHECK := 1
LINTED := transport localstack functions infra tests app.py benchmarks

.PHONY: demo dev test lint unit e2e infra test-localstack synth bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(NODE_INSTALLED): package.json package-lock.json  # the pinned CDK CLI (cdk, cdklocal)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(INSTALLED)  ## one shot on the embedded local stack: start, exercise every feature, exit
	$(BIN)/dmcp demo

dev: $(INSTALLED)  ## keep the embedded local stack running for clients in other terminals
	$(BIN)/dmcp dev

lint: $(INSTALLED)
	$(BIN)/ruff check $(wildcard $(LINTED))
	$(BIN)/ruff format --check $(wildcard $(LINTED))
	$(BIN)/mypy

test: lint $(NODE_INSTALLED)  ## lint, type-check and every test layer
	$(BIN)/pytest

unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

e2e: $(INSTALLED)
	$(BIN)/pytest tests/e2e

infra: $(INSTALLED) $(NODE_INSTALLED)
	$(BIN)/pytest tests/infra

test-localstack: $(INSTALLED) $(NODE_INSTALLED)  ## the LocalStack layer alone: host-mode LocalStack, cdklocal deploy, end to end
	$(BIN)/pytest -m localstack tests/localstack

synth: $(INSTALLED) $(NODE_INSTALLED)  ## cdk synth with the pinned CLI, from the project venv
	PATH="$(CURDIR)/$(BIN):$$PATH" npx --no-install cdk synth

bench: $(INSTALLED)  ## the performance table and goals against a bare SNS→SQS→SQS floor and the asyncmcp peer (benchmarks/performance.py), `dmcp stdio`'s added latency, one elicitation round trip, one call's timeline
	$(BIN)/python benchmarks/performance.py
	$(BIN)/python benchmarks/stdio_relay.py
	$(BIN)/python benchmarks/elicitation.py
	$(BIN)/python benchmarks/call_timeline.py

clean:
	rm -rf $(VENV) node_modules cdk.out .build .mypy_cache .pytest_cache .ruff_cache
