# The two commands of the README are `make run` and `make test`; both set up .venv first.
# `make test-integration` runs the tests against real servers (Postgres, Redis, Celery, Chromium);
# scripts/ci_services.sh installs their Debian packages (.ci/run calls both).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
export AGENT_PIPELINE_HOME ?= $(CURDIR)/.agent_pipeline
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
HOST ?= 127.0.0.1
PORT ?= 3000
MLFLOW_PORT ?= 5000

.PHONY: setup run test test-integration test-drills demo bench lock clean-state help

help:
	@echo "make setup   build .venv from requirements.lock (idempotent)"
	@echo "make run     Dagster UI + daemon on http://$(HOST):$(PORT), MLflow UI on http://$(HOST):$(MLFLOW_PORT)"
	@echo "make test    the test suite (what CI runs first)"
	@echo "make test-integration  tests against real Postgres, Redis, Celery workers and Chromium"
	@echo "make test-drills       the long fault drills (concurrent runs, kills at every step)"
	@echo "make demo    the lifecycle, headless, in a fresh state folder"
	@echo "make bench   the benchmarks (bench/)"

setup: $(STAMP)

# Rebuilt only when the lock file or the project metadata changes.
$(STAMP): requirements.lock requirements-nodeps.txt pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --quiet -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --quiet --no-deps --require-hashes -r requirements-nodeps.txt
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --quiet --no-deps -e .
	# Every Python process of the venv defaults DAGSTER_HOME into AGENT_PIPELINE_HOME (agent_pipeline/_home.py).
	echo "import agent_pipeline._home" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/zz_agent_pipeline_home.pth"
	touch $(STAMP)

# dg dev (Dagster UI + daemon) and the MLflow UI on the same state folder (agent_pipeline/run_local.py).
run: setup
	$(BIN)/python -m agent_pipeline.run_local --host $(HOST) --port $(PORT) --mlflow-port $(MLFLOW_PORT)

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not integration"

# One test at a time: each starts its own servers (bash scripts/ci_services.sh installs them).
test-integration: setup
	$(BIN)/python -m pytest -m "integration and not drill" -v

# The long fault drills (concurrent runs, SIGKILL at every step boundary):
# 10-40 minutes on 2 cores; run before a release, not on every CI run.
test-drills: setup
	$(BIN)/python -m pytest -m drill -v

demo: setup
	$(BIN)/python scripts/demo.py

bench: setup
	$(BIN)/python -m bench

# Re-resolve the lock file (needs the registry); commit the result.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean-state:
	rm -rf $(AGENT_PIPELINE_HOME)
