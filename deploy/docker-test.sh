#!/usr/bin/env bash
# `make docker-test`: the deployment run for real with a Docker engine, as a user would run it.
#   1. installs Debian's docker.io and docker-compose (Compose v1) where missing;
#   2. starts dockerd if none answers, and stops it at the end (only the one it started);
#   3. pulls the base images, or uses local stand-ins where they cannot be pulled
#      (deploy/stand-in-base-images.sh, which says which it did);
#   4. docker-compose up --build -d, waits for both healthchecks, runs ./verify.sh;
#   5. docker-compose exec -T gateway pytest tests -v (markers from PYTEST_MARKERS);
#   6. the `replicas` profile: two gateways on one Redis must admit exactly the limit together;
#   7. prints the image sizes and runs docker-compose down (also on failure).
# Environment: PYTEST_MARKERS (pytest -m inside the image; the Makefile sets it), PYTEST_RUNS
# (the suite that many times in a row, default 1; the first run's output is printed whole),
# PYTHON (with httpx and PyYAML; default .venv/bin/python), COMPOSE (default docker-compose).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
PYTEST_MARKERS=${PYTEST_MARKERS:-}
PYTEST_RUNS=${PYTEST_RUNS:-1}
read -r -a COMPOSE <<<"${COMPOSE:-docker-compose}"
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-resilient-gateway}
export CHAOS_TOKEN=${CHAOS_TOKEN:-local-chaos-token}
LOGS=$(mktemp -d /tmp/docker-test.XXXXXX)
START=$SECONDS
dockerd_pid=""
compose_up=""

step() { echo "== docker-test: $* [$((SECONDS - START)) s]"; }
fail() {
    echo "[FAIL] docker-test: $*" >&2
    exit 1
}

cleanup() {
    local status=$?
    if [[ -n $compose_up ]]; then
        step "docker-compose down"
        "${COMPOSE[@]}" --profile replicas down --remove-orphans >"$LOGS/down.log" 2>&1 \
            || cat "$LOGS/down.log"
    fi
    if [[ -n $dockerd_pid ]]; then
        step "stopping the dockerd this run started (pid $dockerd_pid)"
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
    fi
    exit "$status"
}
trap cleanup EXIT

# --- 1. packages ---------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if ((${#missing[@]})); then
    step "installing ${missing[*]} with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$LOGS/apt.log" 2>&1 \
        || { tail -n 30 "$LOGS/apt.log"; fail "apt-get install ${missing[*]} failed"; }
fi
echo "Compose $("${COMPOSE[@]}" version --short) (${COMPOSE[*]}); $(dockerd --version)"

# --- 2. the engine -------------------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
    step "a Docker engine already answers; using it"
else
    step "starting dockerd (log: $LOGS/dockerd.log)"
    nice -n 10 dockerd >"$LOGS/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$dockerd_pid" 2>/dev/null || { tail -n 30 "$LOGS/dockerd.log"; fail "dockerd exited"; }
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || fail "dockerd did not answer within 60 s"
fi

# --- 3. base images ------------------------------------------------------------------------------
step "base images"
bash deploy/stand-in-base-images.sh python:3.11-slim redis:7-alpine

# --- 4. up, healthy, verify.sh -------------------------------------------------------------------
container_of() { "${COMPOSE[@]}" --profile replicas ps -q "$1"; }

wait_healthy() {
    local service=$1 container health
    for _ in $(seq 1 120); do
        container=$(container_of "$service")
        health=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$container" 2>/dev/null || echo missing)
        case $health in
            healthy) echo "  $service: healthy after $((SECONDS - START)) s" && return 0 ;;
            unhealthy | exited | dead)
                "${COMPOSE[@]}" --profile replicas logs --tail 40 "$service"
                fail "$service is $health"
                ;;
        esac
        sleep 1
    done
    "${COMPOSE[@]}" --profile replicas logs --tail 40 "$service"
    fail "$service not healthy within 120 s (last: $health)"
}

step "docker-compose up --build -d (build log: $LOGS/build.log)"
compose_up=yes
nice -n 10 "${COMPOSE[@]}" up --build -d >"$LOGS/build.log" 2>&1 \
    || { tail -n 40 "$LOGS/build.log"; fail "docker-compose up --build -d failed"; }
wait_healthy flaky-backend
wait_healthy gateway

step "./verify.sh against the containers"
./verify.sh

# --- 5. the suite inside the gateway's image -------------------------------------------------------
pytest_args=(pytest tests -v -p no:cacheprovider)
[[ -n $PYTEST_MARKERS ]] && pytest_args+=(-m "$PYTEST_MARKERS")
for run in $(seq 1 "$PYTEST_RUNS"); do
    step "docker-compose exec -T gateway ${pytest_args[*]} (run $run of $PYTEST_RUNS)"
    "${COMPOSE[@]}" exec -T gateway "${pytest_args[@]}" >"$LOGS/pytest-$run.log" 2>&1 \
        || { cat "$LOGS/pytest-$run.log"; fail "the suite failed inside the image (run $run)"; }
    [[ $run == 1 ]] && cat "$LOGS/pytest-1.log"
    echo "  run $run: $(tail -n 1 "$LOGS/pytest-$run.log")"
done

# --- 6. replicas sharing one limit ---------------------------------------------------------------
step "docker-compose --profile replicas up --build -d"
nice -n 10 "${COMPOSE[@]}" --profile replicas up --build -d >"$LOGS/replicas.log" 2>&1 \
    || { tail -n 40 "$LOGS/replicas.log"; fail "the replicas profile did not start"; }
wait_healthy redis
wait_healthy gateway-replica-a
wait_healthy gateway-replica-b
limit=$("$PYTHON" -c 'import sys, yaml; print(yaml.safe_load(open("docker-compose.yml"))["services"]["gateway-replica-a"]["environment"]["RATE_LIMIT_REQUESTS_PER_WINDOW"])')
step "one limit ($limit per window) through both replicas"
"$PYTHON" deploy/shared_limit_check.py --limit "$limit" http://127.0.0.1:8010 http://127.0.0.1:8011

# --- 7. sizes --------------------------------------------------------------------------------------
step "image sizes"
docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' \
    | grep -E 'resilient-gateway/|python:3.11-slim|redis:7-alpine' | sort
step "passed"
