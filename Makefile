# The two commands: `make demo` and `make test`. Each builds what it needs from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
LINTED := transport functions infra tests app.py benchmarks

.PHONY: demo dev test lint unit e2e bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(INSTALLED)  ## one shot on the embedded local stack: start, exercise every feature, exit
	$(BIN)/dmcp demo

dev: $(INSTALLED)  ## keep the embedded local stack running for clients in other terminals
	$(BIN)/dmcp dev

lint: $(INSTALLED)
	$(BIN)/ruff check $(wildcard $(LINTED))
	$(BIN)/ruff format --check $(wildcard $(LINTED))
	$(BIN)/mypy

test: lint  ## lint, type-check and every test layer
	$(BIN)/pytest

unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

e2e: $(INSTALLED)
	$(BIN)/pytest tests/e2e

bench: $(INSTALLED)  ## round-trip benchmark against the raw-SQS floor, on the embedded stack
	$(BIN)/python benchmarks/roundtrip.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
