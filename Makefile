# Two commands do all the set-up on a fresh machine:
#   make cycle   create .venv, install torch 2.13.0 (CPU) then the project, initialise DVC and MLflow, run a cycle
#   make test    the same set-up, then the whole test suite (slow end-to-end tests included); the labelling
#                tests also install Debian's chromium and Label Studio's own virtualenv (cached in ~/.cache/rft)
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
# The versions the test suite last passed with (constraints.txt says how to remake it), where the venv's Python is
# 3.11, as theirs was; elsewhere, or with CONSTRAINTS= on a new venv, pip takes the newest releases.
ifeq ($(origin CONSTRAINTS),undefined)
CONSTRAINTS := $(shell $(PYTHON) -c 'import sys; print("constraints.txt" if sys.version_info[:2] == (3, 11) else "")')
endif

.PHONY: setup init cycle test browser repro mlflow-ui clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: the CPU wheel, so that nothing later pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS)) -e ".[test,labelstudio,scale]"
	touch $@

init: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/rft init

cycle: init
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/rft cycle

repro: init
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

# The browser test drives Debian's Chromium (Playwright downloads no browser); installed here when missing.
browser:
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Two pytest-xdist workers, each module on one of them (tests/conftest.py splits the cores between them): the
# tests spend much of their time importing and waiting on one core, so two keep both cores of a small machine
# busy. TEST_WORKERS=0 runs them in this process, one at a time.
TEST_WORKERS ?= 2
test: setup browser
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q --durations=25 -n $(TEST_WORKERS) --dist loadfile

MLFLOW_PORT ?= 5000
mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns.db --host 127.0.0.1 --port $(MLFLOW_PORT)

# What the pipeline wrote (tasks/dag.py::written): the stages' outputs, reports, the MLflow store, dvc.lock.
# data/incoming (your own files), params.yaml and the DVC cache stay.
clean: setup
	$(BIN)/rft clean
