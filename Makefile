# Two commands on a fresh machine with Python 3.11 and make: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test demo lint bench bench-topics bench-extract clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The daemon on the embedded default (SQLite file data/monitor.db); Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/monitor db upgrade
	$(BIN)/monitor run

## The whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest

## The offline tour: replay sites, local SMTP and webhook receiver, daemon, a new post, its alert.
demo: $(STAMP)
	$(BIN)/python -m monitor.demo

lint: $(STAMP)
	$(BIN)/ruff check crawler monitor replay tests migrations
	$(BIN)/ruff format --check crawler monitor replay tests migrations

bench-topics: $(STAMP)
	$(BIN)/python -m monitor.bench_topics --check

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
