# The two commands the README opens with: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
DATA   := $(CURDIR)/data/demo
DEMO   := fixtures/school-day
DEMO_USER ?= sokafor

.PHONY: demo test setup test-deps lint bench fixtures clean

$(BIN)/ictwatch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/ictwatch

## Replay the bundled school day through the whole pipeline, list its breaches, write one report.
demo: setup
	rm -rf $(DATA)
	ICTWATCH_STORAGE_URL=chdb://$(DATA)/store $(BIN)/ictwatch replay --config $(DEMO)/ictwatch.yaml \
		$(DEMO)/school-day.pcap $(DEMO)/squid-access.log
	ICTWATCH_STORAGE_URL=chdb://$(DATA)/store $(BIN)/ictwatch breaches --config $(DEMO)/ictwatch.yaml
	ICTWATCH_STORAGE_URL=chdb://$(DATA)/store $(BIN)/ictwatch report --config $(DEMO)/ictwatch.yaml \
		--user $(DEMO_USER) --from 2026-06-16 --to 2026-06-16 --requested-by dpatel \
		--reason "line manager review of a breach alert" -o $(DATA)/report-$(DEMO_USER).html

## Install what the tests need (Debian packages too, when root) and run the whole suite.
test: setup test-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-deps:
	bash scripts/install-test-deps.sh

lint: setup
	$(BIN)/ruff check .

## Decoder speed against tshark on a generated ~300k-packet mix (BENCH_PACKETS to change the size).
bench: setup test-deps
	$(BIN)/python -m tests.bench.bench_decode

## Regenerate the school-day capture from its scapy script (deterministic).
fixtures: setup
	$(BIN)/python fixtures/make_school_day.py

clean:
	rm -rf data $(VENV)
