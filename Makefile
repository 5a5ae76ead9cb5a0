# Two commands do all the set-up: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test lint format install install-dev worker clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools wheel

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Serve API + pages + worker at http://127.0.0.1:8000 on the embedded SQLite file (demo data on first start)
run: install
	$(BIN)/o2o serve

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

clean:
	rm -rf $(VENV) o2o.db o2o.db-wal o2o.db-shm .pytest_cache .ruff_cache
