# Stockstream. `make test` on a fresh machine creates .venv from the requirements first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck bench mutation faults serve clean venv node schemas schemas-check openapi docs \
	console-screenshots

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .  # the stockstream command
	touch $(STAMP)

venv: $(STAMP)

# Node tools for the tests (Cosmos DB test server, AsyncAPI parser), from package-lock.json.
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

node: $(NODE_STAMP)

test: $(STAMP) $(NODE_STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy domain application adapters contracts functions local projections cli reports bench composition stockstream_contract tests
	$(PY) -m contracts.registry check
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(PY) -m mypy domain application adapters contracts functions local projections cli reports bench composition stockstream_contract tests

# Event schema registry (schemas/, asyncapi.yaml), generated from contracts/; see
# docs/downstream.md. `schemas` refuses a backward-incompatible change; `schemas-check` fails
# on one, and on a registry that is not regenerated.
schemas: $(STAMP)
	$(PY) -m contracts.registry generate

schemas-check: $(STAMP)
	$(PY) -m contracts.registry check

# The embedded host: HTTP API (and the pipeline, when installed) on 127.0.0.1:7071.
# PORT, STOCKSTREAM_DATA and STOCKSTREAM_API_KEYS configure it; see docs/http-api.md.
serve: $(STAMP)
	$(PY) -m local

# Screenshots of every console page for docs/console.md (Debian's Chromium, real host).
console-screenshots: $(STAMP)
	$(PY) -m tests.console.screenshots

# Regenerate the reference pages docs/reference/settings.md and errors.md from the code
# (application/settings.py, functions/problems.py); a test fails when they differ.
docs: $(STAMP)
	$(PY) -m functions.reference_docs

# Regenerate openapi.json from the HTTP functions and their models.
openapi: $(STAMP)
	$(PY) -m functions.http_openapi

bench: $(STAMP)
	$(PY) -m bench

# Mutation testing of domain/, application/commands.py and projections/availability.py
# (tests/mutation/run.py; not part of `make test`: it takes a while). One worker by
# default; MUTATION_WORKERS=N for more.
mutation: $(STAMP)
	$(PY) -m tests.mutation.run

# The reliability suite at full strength (make test runs it with fewer kills, races, requests).
faults: $(STAMP) $(NODE_STAMP)
	STOCKSTREAM_FAULT_KILLS=50 STOCKSTREAM_FAULT_RACES=20 STOCKSTREAM_FAULT_REQUESTS=2000 \
	STOCKSTREAM_FAULT_GROUP_KILLS=20 STOCKSTREAM_FAULT_WORKER_KILLS=20 \
	STOCKSTREAM_FAULT_STORM_COMMANDS=2000 $(PY) -m pytest -q tests/faults

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis mutants
