# Two commands on a fresh machine with Python 3.11 and make: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: install run test demo lint bench bench-topics bench-extract clean chromium

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# Earlier versions used opencc-python-reimplemented, which installs into the same folder.
	if $(BIN)/python -m pip show -q opencc-python-reimplemented 2>/dev/null; then \
		$(BIN)/python -m pip uninstall --quiet -y opencc-python-reimplemented opencc; fi
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The daemon on the embedded default (SQLite file data/monitor.db); Ctrl-C stops it.
run: $(STAMP) chromium
	$(BIN)/monitor db upgrade
	$(BIN)/monitor run

## The whole test suite (the browser tests need Chromium, so it is installed first).
test: $(STAMP) chromium
	$(BIN)/python -m pytest

## Debian's Chromium (/usr/bin/chromium) for pages that need a browser; scrapy-playwright uses it,
## Playwright's own browser download is never used. Installs with apt-get when missing (as root).
chromium:
	@if [ -x $(CHROMIUM) ]; then \
		echo "chromium: $$($(CHROMIUM) --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
		&& $(CHROMIUM) --version 2>/dev/null; \
	else \
		echo "Chromium is missing ($(CHROMIUM)): browser sources and their tests will" \
			"fail. Run 'make chromium' as root, or: sudo apt-get install chromium" >&2; \
	fi

## The offline tour: replay sites, local SMTP and webhook receiver, daemon, a new post, its alert.
demo: $(STAMP)
	$(BIN)/python -m monitor.demo

lint: $(STAMP)
	$(BIN)/ruff check crawler monitor replay tests migrations bench
	$(BIN)/ruff format --check crawler monitor replay tests migrations bench

## Performance: throughput, idle cycles, history growth, extraction, latency, memory (~10 min).
## Prints the table and writes bench-results/latest.json; `python -m bench --quick` is a smoke run.
bench: $(STAMP)
	$(BIN)/python -m bench --out bench-results/latest.json

bench-topics: $(STAMP)
	$(BIN)/python -m monitor.bench_topics --check

## Body P/R/F1, date accuracy and ms/page on tests/corpus: ours, readability-lxml, trafilatura, GNE.
bench-extract: $(STAMP)
	$(BIN)/python -m monitor.bench_extract --check --json bench-results/extract.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
