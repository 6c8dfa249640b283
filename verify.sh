#!/usr/bin/env bash
# Checks a running gateway + flaky backend end to end, line by line, and exits non-zero at the
# first check that does not hold. Drives the backend through /chaos so nothing depends on luck,
# reads the gateway's limits from its /metrics, and puts the backend's chaos settings back as
# they were when it ends, also on failure. Needs only bash, curl and python3.
#   GATEWAY_URL=http://localhost:8000 BACKEND_URL=http://localhost:8001 ./verify.sh
set -uo pipefail

GATEWAY_URL=${GATEWAY_URL:-http://localhost:8000}
# The backend accepts /chaos changes only with its CHAOS_TOKEN, when it has one (compose sets it).
CHAOS_TOKEN=${CHAOS_TOKEN:-local-chaos-token}
BACKEND_URL=${BACKEND_URL:-http://localhost:8001}
GATEWAY_URL=${GATEWAY_URL%/}
BACKEND_URL=${BACKEND_URL%/}
ROUTE="$GATEWAY_URL/api/v1/data"

work=$(mktemp -d)
saved_chaos=""

ok() { printf '[ ok ] %s\n' "$*"; }
fail() {
  printf '[FAIL] %s\n' "$*"
  exit 1
}
restore() {
  if [[ -n $saved_chaos ]]; then
    if curl -sf -o /dev/null -X PUT -H 'content-type: application/json' \
      -H "Authorization: Bearer $CHAOS_TOKEN" \
      --data-binary "$saved_chaos" "$BACKEND_URL/chaos"; then
      printf '[info] backend chaos settings restored\n'
    else
      printf '[warn] could not restore the backend chaos settings\n'
    fi
  fi
  rm -rf "$work"
}
trap restore EXIT

# json FILE EXPR: evaluate a Python expression over the JSON document `d` in FILE.
json() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# call METHOD URL [BODY]: status code on stdout; body in $work/body, headers in $work/headers.
call() {
  local method=$1 url=$2 body=${3:-}
  local args=(-s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X "$method" --max-time 30 "${@:4}")
  [[ -n $body ]] && args+=(-H 'content-type: application/json' --data-binary "$body")
  curl "${args[@]}" "$url" || echo "000"
}
header() { tr -d '\r' <"$work/headers" | awk -v name="$(tr '[:upper:]' '[:lower:]' <<<"$1")" -F': ' 'tolower($1) == name { print $2 }' | tail -n 1; }
chaos() { [[ $(call PUT "$BACKEND_URL/chaos" "$1" -H "Authorization: Bearer $CHAOS_TOKEN") == 200 ]] || fail "backend refused chaos $1: $(cat "$work/body")"; }
metrics() { [[ $(call GET "$GATEWAY_URL/metrics") == 200 ]] || fail "GET /metrics did not answer 200"; cp "$work/body" "$work/metrics"; }
metric() { json "$work/metrics" "$1"; }
backend_requests() { curl -sf "$BACKEND_URL/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["requests"])'; }

echo "verifying gateway $GATEWAY_URL in front of backend $BACKEND_URL"

# --- health -----------------------------------------------------------------------------------
status=$(call GET "$GATEWAY_URL/health")
[[ $status == 200 && $(json "$work/body" 'd["status"]') == ok ]] || fail "gateway /health: got $status $(cat "$work/body" 2>/dev/null)"
ok "gateway /health answers 200 {\"status\":\"ok\"}"
status=$(call GET "$BACKEND_URL/health")
[[ $status == 200 ]] || fail "backend /health: got $status"
ok "backend /health answers 200"

saved_chaos=$(curl -sf "$BACKEND_URL/chaos") || fail "could not read the backend's /chaos"
chaos '{"failure_rate": 0, "slow_rate": 0, "latency_seconds": 0, "fail_next": 0}'
ok "backend chaos set to healthy (saved settings will be restored)"

# --- the gateway's limits, from /metrics --------------------------------------------------------
metrics
threshold=$(metric 'd["settings"]["failure_threshold"]')
recovery=$(metric 'd["settings"]["recovery_timeout_seconds"]')
max_retries=$(metric 'd["settings"]["max_retries"]')
limit=$(metric 'd["settings"]["rate_limit_requests_per_window"]')
window=$(metric 'd["settings"]["rate_limit_window_seconds"]')
limiting=$(metric 'd["settings"]["rate_limit_enabled"]')
ok "limits read from /metrics: failure_threshold=$threshold recovery_timeout=${recovery}s max_retries=$max_retries rate_limit=$limit/${window}s"
[[ $limiting == True ]] || fail "rate limiting is disabled on this gateway (RATE_LIMIT_ENABLED=false): cannot verify it"

# A previous run may have left the breaker open or the quota spent: wait those out.
state=$(metric 'd["circuit_breaker_state"]')
if [[ $state != CLOSED ]]; then
  printf '[info] breaker is %s from earlier traffic; waiting %ss for recovery\n' "$state" "$recovery"
  sleep "$recovery"
fi

# --- a normal request ---------------------------------------------------------------------------
for _ in 1 2; do
  status=$(call GET "$ROUTE")
  [[ $status == 429 ]] || break
  wait_s=$(header retry-after)
  printf '[info] quota spent by earlier traffic; waiting %ss\n' "$wait_s"
  sleep "$wait_s"
done
[[ $status == 200 ]] || fail "normal request: expected 200, got $status $(cat "$work/body")"
request_id=$(header x-request-id)
[[ -n $request_id ]] || fail "normal request: no X-Request-ID on the answer"
seen_id=$(curl -sf "$BACKEND_URL/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["last_request_id"])')
[[ $seen_id == "$request_id" ]] || fail "normal request: backend saw request id '$seen_id', gateway answered '$request_id'"
ok "normal request: 200 with the backend's JSON, request id $request_id seen by the backend"

# --- a retry recovers a transient failure -------------------------------------------------------
[[ $max_retries -ge 1 ]] || fail "MAX_RETRIES is 0: cannot verify retries"
metrics
retries_before=$(metric 'd["total_retries"]')
chaos '{"fail_next": 1}'
status=$(call GET "$ROUTE")
[[ $status == 200 ]] || fail "retry: expected 200 after one injected 503, got $status $(cat "$work/body")"
metrics
retries_after=$(metric 'd["total_retries"]')
[[ $retries_after -eq $((retries_before + 1)) ]] || fail "retry: total_retries went $retries_before -> $retries_after, expected +1"
ok "retry: one injected 503 was retried into a 200; total_retries $retries_before -> $retries_after"

# --- the breaker opens under failures -----------------------------------------------------------
chaos '{"failure_rate": 1}'
needed=$(((threshold + max_retries) / (max_retries + 1)))
allowed=$((needed + 1))
if ((allowed > 15)); then allowed=15; fi
sent=0
state=CLOSED
while ((sent < allowed)); do
  status=$(call GET "$ROUTE")
  sent=$((sent + 1))
  [[ $status == 503 ]] || fail "breaker: a failing backend should give 503, got $status $(cat "$work/body")"
  metrics
  state=$(metric 'd["circuit_breaker_state"]')
  [[ $state == OPEN ]] && break
done
[[ $state == OPEN ]] || fail "breaker: still $state after $sent failing requests (failure_threshold=$threshold, expected OPEN after $needed)"
opened=$(metric 'd["circuit_breaker_transitions"].get("CLOSED->OPEN", 0)')
ok "breaker: OPEN after $sent failing request(s) of up to $((max_retries + 1)) attempts each (threshold $threshold); CLOSED->OPEN transitions: $opened"

# --- it fails fast while OPEN -------------------------------------------------------------------
rejections_before=$(metric 'd["circuit_breaker_rejections"]')
reached_before=$(backend_requests)
status=$(call GET "$ROUTE")
reached_after=$(backend_requests)
retry_after=$(header retry-after)
kind=$(json "$work/body" 'd.get("type", "")' 2>/dev/null)
[[ $status == 503 ]] || fail "open breaker: expected 503, got $status"
[[ $kind == *circuit-open ]] || fail "open breaker: expected a circuit-open problem, got type '$kind'"
[[ $reached_after == "$reached_before" ]] || fail "open breaker: the backend was called ($reached_before -> $reached_after requests)"
[[ $retry_after =~ ^[0-9]+$ && $retry_after -ge 1 ]] || fail "open breaker: Retry-After missing or invalid: '$retry_after'"
metrics
rejections_after=$(metric 'd["circuit_breaker_rejections"]')
[[ $rejections_after -gt $rejections_before ]] || fail "open breaker: circuit_breaker_rejections did not grow ($rejections_before -> $rejections_after)"
ok "open breaker: 503 circuit-open with Retry-After: $retry_after, backend not called, rejections $rejections_before -> $rejections_after"

# --- it closes again once the backend is healthy ------------------------------------------------
chaos '{"failure_rate": 0}'
printf '[info] waiting %ss (Retry-After) for the recovery timeout\n' "$retry_after"
sleep "$retry_after"
status=$(call GET "$ROUTE")
[[ $status == 200 ]] || fail "recovery: expected 200 after the recovery timeout, got $status $(cat "$work/body")"
remaining=$(header ratelimit-remaining)
metrics
state=$(metric 'd["circuit_breaker_state"]')
[[ $state == CLOSED ]] || fail "recovery: breaker is $state after a successful trial, expected CLOSED"
closed=$(metric 'd["circuit_breaker_transitions"].get("HALF_OPEN->CLOSED", 0)')
ok "recovery: trial call succeeded, breaker CLOSED again; HALF_OPEN->CLOSED transitions: $closed"

# --- the rate limiter answers 429 after the limit -----------------------------------------------
[[ $remaining =~ ^[0-9]+$ ]] || fail "rate limit: no RateLimit-Remaining header on an allowed answer"
blocked_before=$(metric 'd["rate_limit_blocked"]')
# The window slides: requests of earlier traffic may leave it during the burst, so at least
# `remaining` and at most `limit` further requests are allowed before the 429.
allowed_more=0
status=200
while ((allowed_more <= limit)); do
  status=$(call GET "$ROUTE")
  [[ $status == 200 ]] || break
  allowed_more=$((allowed_more + 1))
done
retry_after=$(header retry-after)
[[ $status == 429 ]] || fail "rate limit: expected 429 within $((limit + 1)) requests (limit $limit per ${window}s), last answer $status"
((allowed_more >= remaining && allowed_more <= limit)) || fail "rate limit: $allowed_more allowed before the 429; expected between $remaining (RateLimit-Remaining) and $limit"
[[ $retry_after =~ ^[0-9]+$ && $retry_after -ge 1 ]] || fail "rate limit: Retry-After missing or invalid on 429: '$retry_after'"
metrics
blocked_after=$(metric 'd["rate_limit_blocked"]')
[[ $blocked_after -eq $((blocked_before + 1)) ]] || fail "rate limit: rate_limit_blocked went $blocked_before -> $blocked_after, expected +1"
ok "rate limit: $allowed_more more allowed (RateLimit-Remaining said $remaining), then 429 with Retry-After: $retry_after; rate_limit_blocked $blocked_before -> $blocked_after"

echo "all checks held"
