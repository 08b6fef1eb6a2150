# Two commands: `make test` (set up, then the whole suite) and, once training lands, `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# NOTE: torch first: any other order lets pip pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m ruff check optica tests
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 -q tests

lint: $(STAMP)
	$(PY) -m ruff check optica tests
	$(PY) -m ruff format --check optica tests

format: $(STAMP)
	$(PY) -m ruff check --fix optica tests
	$(PY) -m ruff format optica tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
