# Two commands do all the set-up: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Every package at the version the project is tested with (see README: "Pinned versions").
CONSTRAINTS := constraints.txt
PIP_INSTALL = $(BIN)/pip install -c $(CONSTRAINTS)

.PHONY: run test lint format install install-dev worker clean constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -c $(CONSTRAINTS) --upgrade pip setuptools wheel

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP_INSTALL) -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Serve API + pages + worker at http://127.0.0.1:8000 on the embedded SQLite file (demo data on first start);
## the embedded demo turns the sandbox cashier on (O2O_SANDBOX_PAYMENTS=false to keep it off)
run: install
	O2O_SANDBOX_PAYMENTS=$${O2O_SANDBOX_PAYMENTS:-true} $(BIN)/o2o serve

worker: install
	$(BIN)/o2o worker

## The whole suite: ruff (format + lint), then pytest on SQLite, and on PostgreSQL when O2O_TEST_POSTGRES_URL is set
test: install-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Re-pin constraints.txt to the newest releases pyproject.toml allows (then `make test`, commit)
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install --upgrade pip setuptools wheel
	.venv-constraints/bin/pip install -e '.[dev]'
	{ echo "# The versions the project is tested with: every package, direct and transitive."; \
	  echo "# Used by every 'make' install (pip install -c constraints.txt). Regenerate with"; \
	  echo "# 'make constraints', run 'make test', commit both. Edit by hand only to hold one back."; \
	  .venv-constraints/bin/pip freeze --all --exclude-editable; } > $(CONSTRAINTS)
	rm -rf .venv-constraints

clean:
	rm -rf $(VENV) .venv-constraints o2o.db o2o.db-wal o2o.db-shm .pytest_cache .ruff_cache
