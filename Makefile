# The entry point for humans and CI alike. `make run` and `make test` work from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
GATEWAY_PORT ?= 8000
BACKEND_PORT ?= 8001

.PHONY: install browser run test unit integration lint mutate mutate-changed deploy-check verify-native format bench bench-more clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Debian's chromium for the dashboard's browser test (Playwright drives it; it never downloads a
# browser of its own). Needs root or sudo; CI runs it from .ci/run.
browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: /usr/bin/chromium"; else \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; fi

run: install
	$(BIN)/python -m gateway.devrun --gateway-port $(GATEWAY_PORT) --backend-port $(BACKEND_PORT)

test: install
	$(BIN)/python -m pytest tests -v --durations=5

unit: install
	$(BIN)/python -m pytest tests/unit -q

integration: install
	$(BIN)/python -m pytest tests/integration -v

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Mutation testing (mutmut, configured in pyproject.toml): every mutant of src/domain and
# src/application against tests/unit, each run only with the tests that reach its function,
# MUTATE_JOBS at a time (niced; about ten minutes on 2 cores). Prints the score and every
# survivor; fails below 90 % or when a survivor is neither killed nor listed in tests/MUTANTS.md.
MUTATE_JOBS ?= 2
mutate mutate-changed: export PATH := $(abspath $(BIN)):$(PATH)
mutate: install
	rm -rf mutants && mkdir mutants
	@echo "mutmut run over src/domain and src/application (log: mutants/mutmut-run.log)"
	@nice -n 15 $(BIN)/mutmut run --max-children $(MUTATE_JOBS) >mutants/mutmut-run.log 2>&1 \
		|| { tail -c 5000 mutants/mutmut-run.log; exit 1; }
	$(BIN)/python tests/mutation_report.py

# The same, on the domain/application files changed since the merge base with main (or HEAD~1).
mutate-changed: install
	MUTATE_JOBS=$(MUTATE_JOBS) $(BIN)/python tests/mutate_changed.py $(MUTATE_BASE)

# The deployment files, checked without a Docker engine: compose against the Compose
# Specification's schema, Dockerfile with hadolint, the shell scripts with shellcheck.
deploy-check: install
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/hadolint --failure-threshold error Dockerfile
	$(BIN)/shellcheck verify.sh .ci/run

# Start the compose services natively (same commands and environment) and run ./verify.sh.
verify-native: install
	$(BIN)/python deploy/run_native.py

# Measurements, not tests (see bench/README.md). The load table (wrk: direct, gateway, baseline; writes bench/results/latest.md), the domain's
# decisions, and the Redis limiter's; under three minutes on 2 cores.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/load.py
	$(BIN)/python bench/domain_decisions.py
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} $(BIN)/python bench/redis_decisions.py

# What chose the upstream client, the in-process cost of the request log, and a py-spy profile.
bench-more: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/upstream_clients.py
	$(BIN)/python bench/hot_path.py
	$(BIN)/python bench/profile.py

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache mutants
