# Two entry points for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo demo-sso test lint format pytest bench schemas screenshot clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/loop-kpi serve --sandbox --host $(HOST) --port $(PORT)

# The demo with sign-in at a real OpenID Connect provider on loopback (tests/oidc; needs Node.js).
demo-sso: $(STAMP)
	$(BIN)/python -m tests.oidc.demo --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/pyright

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint pytest

bench: $(STAMP)
	$(BIN)/python -m bench.run

# The tools' output schemas, stored so `loop-kpi mcp` starts without deriving them (after changing a result model).
schemas: $(STAMP)
	$(BIN)/python -m server.schemas

# The README's image: the dashboard on sandbox data (needs Debian's chromium), plus its bundle size and warm load time.
screenshot: $(STAMP)
	$(BIN)/python -m tests.browser.screenshot docs/dashboard.png

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
