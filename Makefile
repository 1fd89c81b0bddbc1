# reglab: `make run` serves the dashboard with one worker; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-fast lint bench bench-mlflow clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "reglab needs Python 3.11 or newer (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/reglab up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Tests run in JOBS processes (pytest-xdist). tests/scheduling.py hands them out a unit at
# a time, the slowest first (a unit: one test, or tests that share a costly server or lab).
JOBS ?= 4
PYTEST := $(BIN)/python -m pytest -n $(JOBS)

test: lint
	$(PYTEST)

# The unit tests only: no server or worker processes, no browser (a few minutes).
test-fast: $(STAMP)
	$(PYTEST) -m "not system"

bench: $(STAMP)
	$(BIN)/python bench/train_overhead.py
	$(BIN)/python bench/live_latency.py
	$(BIN)/python bench/queue_latency.py
	$(BIN)/python bench/sweep_throughput.py
	@if $(BIN)/python -c 'import mlflow' 2>/dev/null; then \
		$(BIN)/python bench/vs_mlflow.py; \
	else \
		echo "bench/vs_mlflow.py skipped: MLflow is not installed; run 'make bench-mlflow'"; \
	fi

# The benchmark against MLflow's tracking server needs the bench extra (MLflow itself).
bench-mlflow: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/vs_mlflow.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
