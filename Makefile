# Artifact registry service. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
BUF    := node_modules/.bin/buf
# make run ADDRESS=... or REGISTRY_ADDRESS=... make run; the same for the database
ADDRESS ?= $(or $(REGISTRY_ADDRESS),127.0.0.1:50051)
DATABASE_URL ?= $(or $(REGISTRY_DATABASE_URL),sqlite:///$(CURDIR)/registry.db)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup run test test-quick test-sqlite test-postgres lint generate protos protos-check bench bench-postgres bench-files fuzz soak clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}' | \
		sed -e 's|$$(ADDRESS)|$(ADDRESS)|' -e 's|$$(DATABASE_URL)|$(DATABASE_URL)|'

setup: $(STAMP) ## Create .venv and install the project with its dev extras
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server,cli,otel,dev]'
	touch $(STAMP)

$(NPM_STAMP): package.json
	@command -v npm >/dev/null || { echo "buf and the Node.js client test need npm (Debian package npm)"; exit 1; }
	npm install --silent --no-audit --no-fund
	touch $(NPM_STAMP)

generate: $(STAMP) $(NPM_STAMP) ## buf generate (buf.gen.yaml): Python and TypeScript into gen/
	rm -rf gen && $(BUF) generate

protos: generate ## Regenerate the checked-in Python stubs (client/registry/v1) from protos/
	cp gen/python/registry/v1/* client/registry/v1/

protos-check: generate ## Fail when the checked-in stubs are stale
	@for f in gen/python/registry/v1/*; do cmp -s $$f client/registry/v1/$$(basename $$f) || \
		{ echo "stale generated code: client/registry/v1/$$(basename $$f) (run make protos)"; exit 1; }; done; \
	echo "generated stubs are up to date"

run: $(STAMP) ## Serve on $(ADDRESS) over $(DATABASE_URL)
	$(BIN)/registry-server serve --address $(ADDRESS) --database-url $(DATABASE_URL)

test: $(STAMP) generate ## Run the suite on SQLite, and on PostgreSQL when REGISTRY_TEST_POSTGRES_URL is set
	@echo "=== test suite on SQLite ==="
	REGISTRY_TEST_DATABASE=sqlite $(BIN)/pytest $(PYTEST_ARGS)
	@if [ -n "$$REGISTRY_TEST_POSTGRES_URL" ]; then \
		echo "=== test suite on PostgreSQL ($$REGISTRY_TEST_POSTGRES_URL) ==="; \
		REGISTRY_TEST_DATABASE=postgres $(BIN)/pytest $(PYTEST_ARGS); \
	else echo "=== PostgreSQL run skipped: set REGISTRY_TEST_POSTGRES_URL ==="; fi

# The edit loop: every unit test, then a smoke slice of the api group (the session server
# starts, authenticates, and serves organizations, users, teams and keys).
QUICK_API := tests/api/test_security.py tests/api/test_organizations.py
test-quick: $(STAMP) ## The edit loop: the unit tests and a smoke slice of the api tests, on SQLite
	REGISTRY_TEST_DATABASE=sqlite REGISTRY_TEST_POSTGRES_URL= $(BIN)/pytest tests/unit $(QUICK_API) $(PYTEST_ARGS)

test-postgres: $(STAMP) generate ## Run the suite on PostgreSQL only
	REGISTRY_TEST_DATABASE=postgres REGISTRY_TEST_POSTGRES_URL=$${REGISTRY_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
		$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP) protos-check ## ruff check + format check, mypy, buf lint, stale-stub check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy server/registry_server client/registry_client
	$(BUF) lint

# h2load drives the read cases (Debian package nghttp2-client; installed when missing
# and this user may install packages)
H2LOAD_CHECK = command -v h2load >/dev/null || apt-get install -y -q nghttp2-client || \
	{ apt-get update -q && apt-get install -y -q nghttp2-client; } || \
	{ echo "the benchmarks need h2load: install the Debian package nghttp2-client"; exit 1; }

bench: $(STAMP) ## Benchmarks (SQLite); bench-postgres for PostgreSQL
	@$(H2LOAD_CHECK)
	$(BIN)/python -m bench.run

bench-postgres: $(STAMP) ## Benchmarks on PostgreSQL
	@$(H2LOAD_CHECK)
	$(BIN)/python -m bench.run --postgres

bench-files: $(STAMP) ## File transfers: file:// and s3:// stores, and MLflow's artifact proxy side by side
	$(BIN)/python -m bench.files --s3 --mlflow

fuzz: $(STAMP) ## Longer fuzzing run (not in CI)
	REGISTRY_FUZZ_EXAMPLES=200 REGISTRY_FUZZ_RANDOM=1 $(BIN)/pytest -q tests -k fuzz

soak: $(STAMP) ## Bounded soak run with mixed traffic and a migration (minutes)
	$(BIN)/python -m bench.soak

clean: ## Remove the virtualenv, tools and caches
	rm -rf $(VENV) .tools node_modules gen .pytest_cache .mypy_cache .ruff_cache .hypothesis
