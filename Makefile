# Two commands: `make test` (set up, then the whole suite) and `make demo` (set up, then the demo job).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint format clean slurm demo

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# NOTE: torch first: any other order lets pip pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev,energon]"
	touch $(STAMP)

install: $(STAMP)

# Debian's Slurm for the real-cluster tests (tests/integration/slurm start their own daemons).
# Where it cannot be installed (no apt-get, not root, no network) this only says so: those
# tests then skip and give the reason.
slurm:
	@if command -v slurmctld >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "make: no slurmctld and no apt-get: the Slurm tests will be skipped"; \
	else \
		if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo=sudo; \
		else sudo=none; fi; \
		if [ "$$sudo" = none ]; then \
			echo "make: installing slurm-wlm needs root: the Slurm tests will be skipped"; \
		elif $$sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
			$$sudo apt-get install -y -qq slurm-wlm >/dev/null; then \
			echo "make: installed slurm-wlm"; \
		else echo "make: could not install slurm-wlm: the Slurm tests will be skipped"; fi; \
	fi

test: $(STAMP) slurm
	HF_HUB_OFFLINE=1 $(PY) -m ruff check optica tests
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 -q tests

# Fine-tunes the tiny LLaVA on synthetic shapes on this CPU (a few minutes) and shows it answering.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m optica demo

lint: $(STAMP)
	$(PY) -m ruff check optica tests
	$(PY) -m ruff format --check optica tests

format: $(STAMP)
	$(PY) -m ruff check --fix optica tests
	$(PY) -m ruff format optica tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
