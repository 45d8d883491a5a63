# Two commands for a fresh machine: `make run` (set up, then the main job) and `make test` (set up, then the tests).
# Setup installs PyTorch first, as TORCH_SPEC (default: the 2.13.0 CPU build), so that the project's
# `torch>=2.3,<3` requirement is already met and pip does not fetch a multi-GB CUDA build; set TORCH_SPEC=torch
# on a GPU machine.

PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: setup setup-dev run test check lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[sweep]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[dev,sweep]"
	touch $@

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

run: setup
	$(PY) scripts/run.py $(ARGS)

lint: setup-dev
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache  ## the floors: each package imports only from those below it (pyproject.toml)

test: lint  ## everything, as CI runs it: a worker per core (pytest-xdist), each taking the next test as it frees up
	$(PY) -m pytest -q -n auto --dist worksteal $(ARGS)

check: lint  ## the edit loop: the tests not marked slow (under a minute), a worker per core too
	$(PY) -m pytest -q -m "not slow" -n auto --dist worksteal $(ARGS)

clean:
	rm -rf $(VENV) outputs multirun
