# Every target installs what it needs on first use (idempotent): a fresh machine needs only
# Python 3.11 and pip. `make help` lists the targets.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
PYTEST_ARGS ?=
GATEWAY_ARGS ?=
TARGET ?=
TIME_SCALE ?= 1
LOCUST_ARGS ?=
SCENARIO ?= stress
REPORT_LANG ?= en
PROCESSES ?=
WORKERS ?= 2
MASTER ?= 127.0.0.1
MASTER_PORT ?= 5557
HEADLESS ?=
WEB_HOST ?= 127.0.0.1
PAUSE ?= 30
SCENARIO_TIMEOUT ?= 600
BASE ?=
ALL_ARGS ?=
MONITOR_ARGS ?=
BENCH_ARGS ?=
VERBOSE ?=
RECIPIENTS ?=
SYNTHETIC_NUMBERS ?=
LAST ?= 30
DIR ?=
# `make history SCENARIO=... TARGET=...`: filters there, not the defaults the runs use.
HISTORY_SCENARIO := $(if $(filter command line,$(origin SCENARIO)),$(SCENARIO))
HISTORY_TARGET := $(if $(filter command line,$(origin TARGET)),$(TARGET))
SCENARIOS := sessions webhooks messages stress endurance
# The Node.js gateway of the tests (tests/nodegw): its packages, installed again when its lock
# changes. `make test` installs them where npm is there; elsewhere its tests skip, saying why.
NODEGW := tests/nodegw
NODEGW_STAMP := $(NODEGW)/node_modules/.installed
NODEGW_IF_NPM := $(if $(shell command -v npm 2>/dev/null),$(NODEGW_STAMP))
LOCUST = $(BIN)/locust -f locustfile.py --time-scale $(TIME_SCALE) $(if $(TARGET),-H $(TARGET)) \
	$(if $(GATEWAY_ARGS),--gateway-args "$(GATEWAY_ARGS)") --lang $(REPORT_LANG) \
	$(if $(PROCESSES),--processes $(PROCESSES)) $(if $(VERBOSE),--loglevel INFO) $(LOCUST_ARGS)
# Numbers that messages may go to, against any gateway but the embedded one (suite.recipients);
# exported, so that `make all` hands them to each of its runs.
ifneq ($(RECIPIENTS),)
export SUITE_RECIPIENTS := $(RECIPIENTS)
endif
ifneq ($(SYNTHETIC_NUMBERS),)
export SUITE_SYNTHETIC_NUMBERS := 1
endif

.DEFAULT_GOAL := help
.PHONY: help install test test-fast lint fmt gateway bench clean ui monitor profile report \
	master worker all plan-check compare soak nodegw history history-import $(SCENARIOS)

help: ## List the targets
	@grep -E '^[a-z -]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 40

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP) ## Create .venv and install the pinned requirements

$(NODEGW_STAMP): $(NODEGW)/package-lock.json
	@npm ci --prefix $(NODEGW) --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@

nodegw: $(NODEGW_STAMP) ## Install the Node.js gateway's packages for the tests (npm ci, tests/nodegw)

# Two parts: tests that measure nothing time-bound run three at a time (pytest-xdist: they wait
# on bounded runs more than they compute, and three workers on two cores took 249 s where two
# took 338), then the `exclusive` ones (rates, latency, CPU) run alone, so that neither part
# sees the other's load.
PYTEST = $(BIN)/python -m pytest
test: $(STAMP) $(NODEGW_IF_NPM) ## Run the whole test suite
	@status=0; \
	$(PYTEST) -n 3 --dist loadscope -m "not exclusive" $(PYTEST_ARGS) || status=$$?; \
	$(PYTEST) -m exclusive $(PYTEST_ARGS) || status=$$?; \
	exit $$status

test-fast: $(STAMP) $(NODEGW_IF_NPM) ## Run the quick subset (no slow end-to-end runs)
	@status=0; \
	$(PYTEST) -n 3 --dist loadscope -m "not slow and not exclusive" $(PYTEST_ARGS) || status=$$?; \
	$(PYTEST) -m "not slow and exclusive" $(PYTEST_ARGS) || status=$$?; \
	exit $$status

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP) ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

stress: $(STAMP) ## The main job: stress ramp to the breaking point (TARGET= TIME_SCALE= PROCESSES=n)
	$(LOCUST) --headless --only-summary --scenario stress

sessions webhooks messages endurance: $(STAMP) ## Run one plan scenario headless (TARGET=url TIME_SCALE=f)
	$(LOCUST) --headless --only-summary --scenario $@

all: $(STAMP) ## Every scenario in sequence, PAUSE=30 s apart, SCENARIO_TIMEOUT=600 s each
	$(BIN)/python -m suite.all --time-scale $(TIME_SCALE) --pause $(PAUSE) \
		--timeout $(SCENARIO_TIMEOUT) $(if $(TARGET),--target $(TARGET)) --lang $(REPORT_LANG) \
		$(ALL_ARGS)

# The plan's scenarios whose limits the healthy reference gateway must meet, at full length.
plan-check: $(STAMP) ## sessions, webhooks and messages at full length: fails unless each is Approved (~10 min)
	$(BIN)/python -m suite.all --scenarios sessions,webhooks,messages --time-scale 1 --pause 10 \
		--timeout 600 $(if $(TARGET),--target $(TARGET)) --lang $(REPORT_LANG)

compare: $(STAMP) ## A run against a baseline: BASE=reports/<a> (or BASE=last:7, the history's) RUN=reports/<b>
	@test -n "$(BASE)" -a -n "$(RUN)" || \
		(echo "error: make compare BASE=reports/<baseline>|last:N RUN=reports/<run>" >&2; exit 2)
	$(if $(filter last:%,$(BASE)),$(BIN)/python -m history.baseline "$(RUN)" --last $(patsubst last:%,%,$(BASE)),$(BIN)/python -m analysis.compare "$(BASE)" "$(RUN)")

history: $(STAMP) ## The run history: reports/history.html and a table (SCENARIO= TARGET= LAST=30, HISTORY_DB=url)
	$(BIN)/python -m history $(if $(HISTORY_SCENARIO),--scenario $(HISTORY_SCENARIO)) \
		$(if $(HISTORY_TARGET),--target $(HISTORY_TARGET)) --last $(LAST)

history-import: $(STAMP) ## Record the run folders under DIR (default reports/) into the history
	$(BIN)/python -m history import $(or $(DIR),reports)

ui: $(STAMP) ## Locust web UI on :8089; choose the scenario there (TARGET=url)
	$(LOCUST) --web-host 127.0.0.1 --web-port 8089

master: $(STAMP) ## Locust master for WORKERS=n workers: web UI on WEB_HOST:8089, or HEADLESS=1 SCENARIO=
	$(LOCUST) --master --master-bind-port $(MASTER_PORT) --expect-workers $(WORKERS) \
		$(if $(HEADLESS),--headless --only-summary --scenario $(SCENARIO),--web-host $(WEB_HOST) --web-port 8089)

worker: $(STAMP) ## A Locust worker for the master at MASTER=host (MASTER_PORT=5557)
	$(BIN)/locust -f locustfile.py --worker --master-host $(MASTER) --master-port $(MASTER_PORT)

monitor: $(STAMP) ## Watch a gateway without load, live on :8090/stream (TARGET=url MONITOR_ARGS)
	$(BIN)/python -m monitors --url $(or $(TARGET),http://127.0.0.1:3000) $(MONITOR_ARGS)

profile: $(STAMP) ## A run with a py-spy flame graph of its gateway (SCENARIO=stress TIME_SCALE=f)
	$(LOCUST) --headless --only-summary --scenario $(SCENARIO) --profile-gateway

report: $(STAMP) ## Judge and render a saved run again (RUN=reports/<dir> REPORT_LANG=pt-BR)
	@test -n "$(RUN)" || (echo "error: give the run's folder: make report RUN=reports/<dir>" >&2; exit 2)
	$(BIN)/python -m analysis.report "$(RUN)" --lang $(REPORT_LANG)

gateway: $(STAMP) ## Run the reference gateway on port 3000 (GATEWAY_ARGS="--error-rate 0.1")
	$(BIN)/python -m gateway --port 3000 $(GATEWAY_ARGS)

bench: $(STAMP) $(NODEGW_IF_NPM) ## Benchmarks vs wrk, hey, ab and plain Locust, the Node inspector's cost, in 17 min (docs/benchmarks.md)
	@(command -v wrk && command -v hey && command -v ab && test -x /usr/sbin/nginx) >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq wrk hey apache2-utils nginx-light >/dev/null) || \
		echo "bench: could not install wrk, hey, ab or nginx; their figures will be skipped"
	$(BIN)/python -m bench $(BENCH_ARGS)

soak: $(STAMP) ## Does the suite leak? 30 min compressed endurance, its memory slope (docs/benchmarks.md)
	$(BIN)/python -m bench.soak --minutes 30

clean: ## Remove .venv, caches and reports
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis reports
