# Two commands set up everything on a fresh machine with Python 3.11 and pip:
#   make demo   creates .venv, installs, generates the demo org and refreshes it for today
#   make test   runs the whole suite
# and `make ui` opens the Dagster UI on the demo warehouse.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# everything the demo keeps (org files, warehouse, models, Dagster instance) lives in the checkout
export QUOTA_PLATFORM_HOME ?= $(CURDIR)/.quota_platform
HOME_DIR := $(QUOTA_PLATFORM_HOME)
AS_OF  ?= $(shell date -u +%F)
SEED   ?= 7

export QUOTA_PLATFORM_SOURCE_DIR ?= $(HOME_DIR)/demo_org
export QUOTA_PLATFORM_DUCKDB ?= $(HOME_DIR)/warehouse.duckdb
export DAGSTER_HOME ?= $(HOME_DIR)/dagster_home

.PHONY: install demo test ui bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml:
	@mkdir -p -m 700 $(DAGSTER_HOME)
	@umask 077; printf 'telemetry:\n  enabled: false\nnux:\n  enabled: false\n' > $@

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/quota-platform demo-data --out $(QUOTA_PLATFORM_SOURCE_DIR) --as-of $(AS_OF) --seed $(SEED)
	$(BIN)/quota-platform refresh --as-of $(AS_OF)
	@echo
	@echo "Demo org:   $(QUOTA_PLATFORM_SOURCE_DIR) (Salesforce-shaped files; generating truth in _truth/)"
	@echo "Warehouse:  $(QUOTA_PLATFORM_DUCKDB), schema quota_platform"
	@echo "            e.g. $(BIN)/python -c \"import duckdb; print(duckdb.connect('$(QUOTA_PLATFORM_DUCKDB)', read_only=True).sql(\\\"select level, entity_name, period_type, quota_type, product_family, round(attainment_pct,1) pct, pace_status from quota_platform.attainment where level <> 'rep' order by all\\\"))\""
	@echo "Dagster UI: make ui, then open http://127.0.0.1:3000"

test: $(STAMP)
	$(BIN)/python -m pytest -q

ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: $(STAMP)
	$(BIN)/python bench/refresh_demo.py

clean:
	rm -rf $(CURDIR)/.quota_platform
