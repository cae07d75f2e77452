# Every target bootstraps .venv (and the system packages it needs) on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: demo demo-web test test-lowest lint smoke bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# `tether demo` serves with tether.server.TetherServer (tether's WebSocket limit, bounded shutdown).
demo: $(STAMP)
	$(BIN)/tether demo --port $(PORT)

# Node packages used by tests that drive tether with third-party JS clients: one folder
# per client family (tests/node*/), each with its package.json and package-lock.json.
NODE_DIRS := $(patsubst %/package.json,%,$(wildcard tests/node*/package.json))
NODE_STAMPS := $(addsuffix /node_modules/.installed,$(NODE_DIRS))

tests/%/node_modules/.installed: tests/%/package.json
	cd tests/$* && npm install --no-audit --no-fund --loglevel=error
	touch $@

# The demo's React page (web/): `make demo-web` regenerates its typed client from the demo app
# and bundles it with esbuild into src/tether/demo/static/app.js, which is committed (so `make
# demo` needs no Node). The tests check that both are up to date.
WEB_STAMP := web/node_modules/.installed

$(WEB_STAMP): web/package.json
	cd web && npm install --no-audit --no-fund --loglevel=error
	touch $@

demo-web: $(STAMP) $(WEB_STAMP)
	$(BIN)/tether generate --app tether.demo.app:app --out web/src/api
	cd web && node build.mjs

# Debian packages the tests use: Chromium for browser tests (driven by playwright-core);
# Redis and PostgreSQL, which the event tests start on free loopback ports.
SYSTEM_STAMP := $(VENV)/.system-packages

$(SYSTEM_STAMP): Makefile
	test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	test -x /usr/bin/redis-server || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@mkdir -p $(VENV) && touch $(SYSTEM_STAMP)

test: $(STAMP) $(SYSTEM_STAMP) $(NODE_STAMPS) $(WEB_STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term -q

# The same tests against the lowest FastAPI that pyproject.toml allows (CI runs both).
LOWEST_FASTAPI := 0.135.0
LOWEST := .venv-lowest
LOWEST_STAMP := $(LOWEST)/.installed-$(LOWEST_FASTAPI)

$(LOWEST_STAMP): pyproject.toml
	test -d $(LOWEST) || $(PY) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install -q --upgrade pip
	$(LOWEST)/bin/python -m pip install -q -e '.[dev]' 'fastapi==$(LOWEST_FASTAPI)'
	touch $(LOWEST_STAMP)

test-lowest: $(LOWEST_STAMP) $(SYSTEM_STAMP) $(NODE_STAMPS) $(WEB_STAMP)
	$(LOWEST)/bin/python -m pytest -q --no-cov

# lint-imports checks the layers (contracts in pyproject.toml; docs/architecture.md).
lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The README's install in a fresh venv with only '.[server]': serves the quickstart app under
# uvicorn and calls it over HTTP, JSON-RPC, WebSocket and SSE (needs no .venv: it makes its own).
smoke:
	PY=$(PY) .ci/smoke

bench: $(STAMP)
	$(BIN)/python -m pip install -q -r bench/requirements.txt
	$(BIN)/python bench/run.py
	$(BIN)/python bench/ws_bench.py
	$(BIN)/python bench/sse_bench.py
	$(BIN)/python bench/events_bench.py
	$(BIN)/python bench/live_bench.py
	$(BIN)/python bench/live_memory.py --apps live-ws,live-sse,bare-ws,bare-sse --settings default server=tether
	$(BIN)/python bench/client_bench.py

clean:
	rm -rf $(VENV) $(LOWEST) .coverage .pytest_cache .mypy_cache .ruff_cache
