# The two commands: `make demo` and `make test`. Everything they need is installed from here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

system-deps:
	scripts/install-system-deps.sh

## demo: generate data, train, register, set champion, print the lineage
demo: system-deps $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/demo.sh

## test: lint, type checks and the whole test suite (slow end-to-end tests included)
test: system-deps $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests examples

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache examples/credit/data
