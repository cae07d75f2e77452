# Every target bootstraps .venv (and the system packages it needs) on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m uvicorn examples.todo.app:app --host 127.0.0.1 --port $(PORT)

# Node packages used by tests that drive tether with third-party JS clients.
NODE_DIR := tests/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

$(NODE_STAMP): $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term -q

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m pip install -q -r bench/requirements.txt
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .coverage .pytest_cache .mypy_cache .ruff_cache
