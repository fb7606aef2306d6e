# Peregrine: `make run` sets everything up and serves; `make test` runs the suite.
# `make help` lists every target.

SHELL       := /bin/bash
PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(VENV)/bin/pip
RUN_DIR     ?= $(CURDIR)/.run
export PEREGRINE_RUN_DIR ?= $(RUN_DIR)

.DEFAULT_GOAL := help
.PHONY: help system-deps venv build build-pure run services-up services-down test test-compiled test-pure bench bench-micro faults deploy-test clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

system-deps: ## Install the Debian/Ubuntu packages Peregrine needs (only what is missing).
	@bash scripts/system-deps.sh

$(VENV)/.installed: requirements.txt requirements-dev.txt setup.py pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	@# Editable install: the `peregrine` console script, same CLI as `python -m app`.
	PEREGRINE_NO_EXTENSIONS=1 $(PIP) install --quiet --no-deps --no-build-isolation -e . 2>/dev/null \
	  || $(PIP) install --no-deps --no-build-isolation -e .
	@touch $@

venv: $(VENV)/.installed ## Create the virtualenv with pinned dependencies.

build: venv ## Build the Cython extensions in place (pure Python when PEREGRINE_NO_EXTENSIONS=1).
	@rm -f hotpath/*.so
	$(PY) setup.py --quiet build_ext --inplace
	@$(PY) -c "import hotpath.status as s; print(s.describe())"

services-up: venv ## Start the private Postgres and memcached (idempotent).
	@$(PY) -m app services up >/dev/null

services-down: venv ## Stop the private Postgres and memcached.
	@$(PY) -m app services down

run: system-deps build ## Start Postgres + memcached, migrate, seed a demo catalog and serve on :8000.
	@bash scripts/run.sh

# Only the suite needs these: the browser test of /docs drives Debian's Chromium
# through its chromedriver, and promtool (package prometheus) unit-tests the alert
# rules, so `make run` installs neither.
TEST_SYSTEM_DEPS := chromium=chromium chromedriver=chromium-driver promtool=prometheus
.PHONY: test-system-deps
test-system-deps:
	@bash scripts/system-deps.sh $(TEST_SYSTEM_DEPS)

test: test-system-deps build bench-venv ## Run the whole suite: lint, unit stage, then compiled and pure-Python.
	@bash scripts/test.sh

test-compiled: build ## Run the suite once, with the compiled extensions.
	$(PY) -m pytest $(PYTEST_ARGS)

test-pure: venv ## Run the suite once, with the extensions disabled.
	PEREGRINE_NO_EXTENSIONS=1 $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: lint
lint: venv ## ruff on app/ hotpath/ tests/ bench/ and mypy on app/ hotpath/ (config in pyproject.toml): seconds.
	$(VENV)/bin/ruff check app hotpath tests bench
	$(PY) -m mypy

.PHONY: test-unit
test-unit: venv ## Run only the unit stage (tests/unit): no Postgres or memcached, seconds.
	$(PY) -m pytest tests/unit -m unit -q -p no:hypothesispytest -p no:anyio $(PYTEST_ARGS)

bench-micro: build ## Micro-benchmarks of the hot path (prints µs per call).
	$(PY) bench/micro/bench_jwt.py

faults: build ## Faults under load (memcached killed/paused, Postgres down, slow query, workers): ~4 min.
	$(PY) -m tests.faults
	$(PY) -m tests.faults --memcached-nodes 3 --only memcached

# schemathesis lives in its own venv: it must not change the app's pinned packages.
ABUSE_VENV := tests/abuse/.venv
.PHONY: abuse

$(ABUSE_VENV)/.installed: tests/abuse/requirements.txt
	@test -x $(ABUSE_VENV)/bin/python || $(PYTHON) -m venv $(ABUSE_VENV)
	$(ABUSE_VENV)/bin/pip install --quiet -r tests/abuse/requirements.txt
	@touch $@

abuse: build $(ABUSE_VENV)/.installed ## Under abuse: schemathesis, JWT forgeries, HTTP smuggling/slowloris, business rules: <5 min.
	$(PY) -m tests.abuse $(ABUSE_ARGS)

.PHONY: dr-test
dr-test: ## Restore drill: pgBackRest backup, PITR to a named restore point, verify (~10 s, root).
	@bash scripts/dr-test.sh

# Single-node: each release of DEPLOY_TEST_SUITES on one debootstrap root, converged twice and
# checked; ansible-lint runs with the first only (it does not depend on the release).
# Multi-node: the seven-host inventory (with the read replica) on DEPLOY_TEST_MULTI_SUITE,
# converged twice; empty skips it. The defaults converge Debian 12 and 13 twice each. Both
# single-node releases: make deploy-test DEPLOY_TEST_SUITES="bookworm trixie"
DEPLOY_TEST_SUITES ?= bookworm
DEPLOY_TEST_MULTI_SUITE ?= trixie
deploy-test: ## Converge the playbooks twice: single-node on Debian 12, then the multi-node inventory with a replica on Debian 13.
	@lint=$${PEREGRINE_DEPLOY_TEST_LINT:-1}; for suite in $(DEPLOY_TEST_SUITES); do \
		PEREGRINE_DEPLOY_TEST_SUITE=$$suite PEREGRINE_DEPLOY_TEST_LINT=$$lint \
			bash deploy/ansible/tests/chroot-test.sh || exit 1; \
		lint=0; \
	done
	@[ -n "$(strip $(DEPLOY_TEST_SUITES))" ] || echo "==> single-node deploy test NOT RUN (DEPLOY_TEST_SUITES is empty)"
	@if [ -n "$(strip $(DEPLOY_TEST_MULTI_SUITE))" ]; then \
		PEREGRINE_DEPLOY_TEST_SUITE=$(DEPLOY_TEST_MULTI_SUITE) bash deploy/ansible/tests/multinode-test.sh; \
	else \
		echo "==> multi-node deploy test NOT RUN (DEPLOY_TEST_MULTI_SUITE is empty)"; \
	fi

.PHONY: deploy-test-multi
deploy-test-multi: ## Only the multi-node inventory (7 hosts, one debootstrap root each) on DEPLOY_TEST_MULTI_SUITE (trixie).
	@PEREGRINE_DEPLOY_TEST_SUITE=$(or $(DEPLOY_TEST_MULTI_SUITE),bookworm) bash deploy/ansible/tests/multinode-test.sh

clean: ## Remove build outputs (keeps .venv and .run).
	rm -rf build dist *.egg-info hotpath/*.c hotpath/*.so hotpath/*.html
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

# ---------------------------------------------------------------------------
# Benchmarks of the real app (bench/README.md). Both are bounded in time.
# ---------------------------------------------------------------------------

BENCH_VENV           := bench/.venv
PEREGRINE_BENCH_HOST ?= http://127.0.0.1:8000
BENCH_HTTP_ARGS      ?= --duration 10 --rounds 2
LOCUST_ARGS          ?=
# The suite (bench/locustfiles/<suite>.py: browse, shopper, admin, mixed) and an
# optional load shape (bench/locustfiles/shapes/<shape>.py: step, spike, soak).
SUITE                ?= browse
SHAPE                ?=
WORKERS              ?= 2
BENCH_MASTER_PORT    ?= 5557
comma                := ,
bench_locustfiles     = locustfiles/$(SUITE).py$(if $(SHAPE),$(comma)locustfiles/shapes/$(SHAPE).py)
bench_results         = results/$(SUITE)$(if $(SHAPE),_$(SHAPE))

.PHONY: bench-http bench-profile bench-venv bench-load bench-ui bench-distributed

bench-http: build ## Worker classes side by side on the real app: wrk, pinned cores, ~5 min.
	@bash scripts/system-deps.sh wrk=wrk taskset=util-linux
	$(PY) bench/app_workers.py $(BENCH_HTTP_ARGS)

# Peregrine vs the FastAPI and Granian peers; each peer's venv (bench/peers/*/.venv)
# is created from its pinned requirements on first use.
BENCH_ARGS ?=

bench: build ## Peregrine vs the FastAPI and Granian peers, one worker on one core: ~5 min.
	@bash scripts/system-deps.sh wrk=wrk taskset=util-linux
	$(PY) -m bench.compare $(BENCH_ARGS)

# PROFILE_ARGS: e.g. --scenario me --profiler py-spy (see bench/profiler.py --help).
PROFILE_ARGS ?=

bench-profile: build $(BENCH_VENV)/.installed ## Where one deployed worker's CPU goes under wrk load: µs/request, py-spy or perf stacks.
	@bash scripts/system-deps.sh wrk=wrk taskset=util-linux
	$(PY) bench/profiler.py $(PROFILE_ARGS)

# locust lives in its own venv: it must not change the app's pinned packages.
$(BENCH_VENV)/.installed: bench/requirements.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -r bench/requirements.txt
	@touch $@

bench-venv: $(BENCH_VENV)/.installed ## Create bench/.venv with locust (the load generator's own venv).

bench-load: $(BENCH_VENV)/.installed ## Locust SUITE (browse) [SHAPE], headless, against PEREGRINE_BENCH_HOST (default: make run): CSV, HTML, JSON verdict.
	@mkdir -p bench/results
	cd bench && .venv/bin/locust -f $(bench_locustfiles) --host $(PEREGRINE_BENCH_HOST) --headless \
		--csv $(bench_results) --html $(bench_results).html $(LOCUST_ARGS)

bench-ui: $(BENCH_VENV)/.installed ## Locust web UI on :8089 for SUITE [SHAPE]; Ctrl-C quits and writes the HTML report.
	@mkdir -p bench/results
	cd bench && .venv/bin/locust -f $(bench_locustfiles) --host $(PEREGRINE_BENCH_HOST) \
		--csv $(bench_results) --html $(bench_results).html $(LOCUST_ARGS)

# Master and WORKERS workers on this machine. The workers are started the way
# the Ansible locust role runs them: `-f -` (the master sends the locustfiles)
# with bench/ on PYTHONPATH for the shared common/ package, and outside bench/
# so that they do not read locust.conf (its csv and html are the master's).
bench-distributed: $(BENCH_VENV)/.installed ## Locust SUITE [SHAPE], headless, master + WORKERS local workers.
	@mkdir -p bench/results
	@cd bench && pids=(); trap 'kill $${pids[@]} 2>/dev/null; wait' EXIT; \
	for _ in $$(seq $(WORKERS)); do \
		env -C / PYTHONPATH=$$PWD $$PWD/.venv/bin/locust -f - --worker \
			--master-port $(BENCH_MASTER_PORT) & pids+=($$!); \
	done; \
	.venv/bin/locust -f $(bench_locustfiles) --host $(PEREGRINE_BENCH_HOST) --headless --master \
		--master-bind-port $(BENCH_MASTER_PORT) --expect-workers $(WORKERS) --expect-workers-max-wait 60 \
		--csv $(bench_results) --html $(bench_results).html $(LOCUST_ARGS)
