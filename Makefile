# The README's two commands: `make run` and `make test`. Everything else is set up on the way.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run demo down test test-fast schema dashboards

$(BIN)/schakel: pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/schakel

# The API linters (Spectral with the NL API Design Rules ruleset, the AsyncAPI CLI), pinned by the lockfile.
LINT_TOOLS := tools/lint/node_modules/.package-lock.json

$(LINT_TOOLS): tools/lint/package.json tools/lint/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the API linters (apt-get install npm)"; exit 1; }
	cd tools/lint && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(LINT_TOOLS)

setup: $(BIN)/schakel $(LINT_TOOLS)
	$(BIN)/python -c "from schakel.kafka_broker import fetch_jars; print('Kafka broker jars in', fetch_jars())"
	$(BIN)/python -c "from schakel.idp import ensure_installed; print('identity provider in', ensure_installed())"

run: setup
	$(BIN)/schakel up
	$(BIN)/schakel demo

demo: setup
	$(BIN)/schakel demo

down:
	$(BIN)/schakel down

test: setup
	scripts/run-tests

test-fast: setup
	$(BIN)/pytest -q tests/unit tests/agent

schema: setup
	$(BIN)/schakel schema

dashboards: setup
	$(BIN)/python infra/grafana/generate.py
