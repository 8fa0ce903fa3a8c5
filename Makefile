# Two commands set everything up from a clean clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

export DAGSTER_HOME        ?= $(CURDIR)/.dagster_home
export ML_LAKEHOUSE_ROOT   ?= $(CURDIR)/.lakehouse
ML_LANDING_URI            ?= $(CURDIR)/.landing
# Which use case `make demo` / `make quickstart` run (one folder per use case in ml_assets/defs/).
USE_CASE                  ?= flight_delay
export ML_USE_CASE        ?= $(USE_CASE)
export WHYLOGS_NO_ANALYTICS := True
# One ASSET_MATERIALIZATION_PLANNED event per asset for a range run instead of one per partition
# (a year's ingest: 43 s -> 1 s before the first step). Trade-off: partitions of a failed range run
# show as missing, not failed (the run, its error and the partition it names stay in history).
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= true
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install home demo quickstart test test-fast ui lint validate bench clean ui-readonly test-deploy deploy-prereqs

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# The project-local Dagster instance: SQLite storage, configured by ./dagster.yaml.
home:
	mkdir -p -m 700 $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# The use case's whole range replayed through the sensors (+ reproduction and a summary) into the project instance.
demo: install home
	ML_LANDING_URI=$(ML_LANDING_URI) $(BIN)/mlp --use-case $(USE_CASE) --log-level CRITICAL demo

# The batch path without sensors: ingest through the first evaluation window, train, decide, score it.
quickstart: install home
	$(BIN)/mlp --use-case $(USE_CASE) quickstart

# Everything the tests drive for real (PostgreSQL, Chromium, nginx) is started or installed first.
test: install deploy-prereqs
	$(BIN)/ruff check .
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not integration"

# Webserver + daemon on the same instance, so sensors and schedules run.
ui: install home
	ML_LANDING_URI=$(ML_LANDING_URI) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Load every use case (schema + cross-references) exactly as the webserver would, and list what it defines
# (every SQL expression bound in DuckDB afresh: the load-time memo is off).
validate: install home
	ML_SQL_CHECK_MEMO=off $(BIN)/dg check defs
	$(BIN)/dg list defs

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(DAGSTER_HOME) $(ML_LAKEHOUSE_ROOT) $(ML_LANDING_URI)

# ---- deployment (deploy/README.md) -----------------------------------------------------------------------------
# The auditor UI: a read-only webserver on the project instance. Every mutation (launch, terminate, wipe,
# reload) is refused; history is readable. Open-source Dagster has no login: never expose it without the
# auth proxy (deploy/proxy/nginx-auditor.conf).
UI_READONLY_PORT ?= 3001
ui-readonly: install home
	$(BIN)/dagster-webserver --read-only -w workspace.yaml -h 127.0.0.1 -p $(UI_READONLY_PORT)

# What the deploy tests drive for real: a PostgreSQL server, Chromium + ChromeDriver, nginx.
deploy-prereqs:
	bash deploy/scripts/ensure-postgres.sh
	bash deploy/scripts/ensure-test-tools.sh

test-deploy: install deploy-prereqs
	$(BIN)/pytest tests/deploy -q
