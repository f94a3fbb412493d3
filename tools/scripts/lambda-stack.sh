#!/usr/bin/env bash
# Lambda mode: the real function binaries behind `cargo lambda watch`, Redis, and the emulator forwarding every
# event to them through the Lambda Invoke API. The functions post back through their Management API client
# (DirectGateway: SigV4-signed HTTP) to the emulator's /@connections.
#
#   tools/scripts/lambda-stack.sh                 serve the chat on 127.0.0.1:$PORT (3000) until Ctrl-C
#   tools/scripts/lambda-stack.sh -- CMD ARGS...  start the stack on free ports, run CMD, stop everything
#
# In command mode (the tests) it also starts a second set of functions, the fault stack, for the tests that stop,
# pause and restart Redis (tests/e2e/faults.rs): they point at a Redis port and an emulator port that the tests
# themselves serve, one test at a time (WSCHAT_FAULT_REDIS_PORT, WSCHAT_FAULT_EMULATOR_PORT,
# WSCHAT_FAULT_INVOKE_URL), with MAX_ROOM_MEMBERS=3 so the room cap can be met. And a third, the sign-in stack
# (WSCHAT_LAMBDA_OIDC_EMULATOR_URL): functions with AUTH_MODE=oidc trusting its emulator's development provider,
# to which each test adds a key of its own; unknown kids are fetched at once and there is no leeway, so the tests
# need not wait a minute.
#
# AUTH=oidc (make run-lambda AUTH=oidc) serves the chat with sign-in: the functions require tokens of the
# emulator's development provider (--oidc-provider), and the readiness probe signs in through it.
#
# Uses REDIS_URL when it is set; otherwise starts a private redis-server. Installs cargo-lambda (pip, in
# .venv-tools) when it is missing. Everything it starts is stopped when it exits.
#   LAMBDA_RELEASE=1         release builds of the functions and the emulator (make bench)
#   LAMBDA_PROFILE=profiling the functions in that cargo profile instead (`profiling`: release with symbols, for perf)
#   WSCHAT_FUNCTION_ENV=A=1,B=2  more environment for the functions (e.g. RATE_LIMIT_PER_SEC for a benchmark)
#   WSCHAT_NO_FAULT_STACK=1  no fault stack in command mode
#   WSCHAT_NO_OIDC_STACK=1   no sign-in stack in command mode
#   WSCHAT_LAMBDA_CONCURRENCY=N  instances (processes) per function, each one invocation at a time (8)
#   WSCHAT_FANOUT_SHARD_SIZE=N   FANOUT_SHARD_SIZE of the main stack's functions (default theirs, 1000)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

if [ -z "${REDIS_URL:-}" ]; then
  exec tools/scripts/with-redis.sh --as-redis-url -- "$0" "$@"
fi
export WSCHAT_TEST_REDIS_URL="${WSCHAT_TEST_REDIS_URL:-$REDIS_URL}"

command_mode=0
if [ "${1:-}" = "--" ]; then command_mode=1; shift; fi

# cargo-lambda: on PATH, in .venv-tools, or installed there now.
if ! command -v cargo-lambda >/dev/null 2>&1; then
  if [ ! -x .venv-tools/bin/cargo-lambda ]; then
    echo "lambda-stack: installing cargo-lambda into .venv-tools (pip)" >&2
    python3 -m venv .venv-tools
    .venv-tools/bin/pip install --quiet --disable-pip-version-check "cargo-lambda==1.9.2"
  fi
  export PATH="$repo/.venv-tools/bin:$PATH"
fi

# shellcheck source=tools/scripts/common.sh
source "$repo/tools/scripts/common.sh"

if [ "$command_mode" = 1 ]; then port=$(free_port); else port=${PORT:-3000}; fi
invoke_port=$(free_port)
logs="$repo/target/lambda-stack"
mkdir -p "$logs"
watch_pids=()
emulator_pid=
tail_pid=
fault_redis_pid=
oidc_emulator_pid=
cleanup() {
  [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null
  [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null && wait "$emulator_pid" 2>/dev/null
  [ -n "$oidc_emulator_pid" ] && kill "$oidc_emulator_pid" 2>/dev/null && wait "$oidc_emulator_pid" 2>/dev/null
  [ -n "$fault_redis_pid" ] && kill "$fault_redis_pid" 2>/dev/null && wait "$fault_redis_pid" 2>/dev/null
  # cargo lambda watch runs each function as `cargo run` children: stop the whole process group.
  for pid in "${watch_pids[@]}"; do kill -- "-$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  true
}
trap cleanup EXIT INT TERM

profile_flag=; profile_dir=debug; emulator_flag=; emulator_dir=debug
if [ "${LAMBDA_RELEASE:-}" = 1 ]; then
  # The functions as deployed (the release profile); the emulator, which AWS does not run, fast.
  profile_flag=--release; profile_dir=release; emulator_flag="--profile fast"; emulator_dir=fast
fi
if [ -n "${LAMBDA_PROFILE:-}" ]; then
  profile_flag="--profile $LAMBDA_PROFILE"; profile_dir=$LAMBDA_PROFILE; emulator_flag="--profile fast"; emulator_dir=fast
fi
echo "lambda-stack: building the functions ($profile_dir) and the emulator ($emulator_dir)" >&2
cargo build --quiet $profile_flag -p ws-connect -p ws-disconnect -p ws-default -p ws-authorize -p ws-fanout
cargo build --quiet $emulator_flag -p wschat-emulator

# AWS runs concurrent invocations in sandboxes of their own; cargo lambda watch starts up to this many processes
# (instances) per function for them, each taking one invocation at a time, as a sandbox does.
concurrency=${WSCHAT_LAMBDA_CONCURRENCY:-8}

# Served until Ctrl-C, cargo lambda watch rebuilds a function when its code changes; under a test run or a
# benchmark an edit must not restart the functions midway.
reload_flag=
if [ "$command_mode" = 1 ]; then reload_flag=--ignore-changes; fi

# watch_functions NAME INVOKE_PORT REDIS_URL MANAGEMENT_ENDPOINT [EXTRA_ENV]: cargo lambda watch on INVOKE_PORT.
# As deployed, ws-default hands a big room's shards to ws-fanout through the Invoke API: here the emulator's
# (AWS_ENDPOINT_URL_LAMBDA), the one the management endpoint names.
# The functions write their output to a pipe, as on Lambda, and `cat` copies it to the log: cargo lambda watch
# keeps an inotify watch on every folder of the repository (target/ too, even with --ignore-changes), so a
# function writing the log file itself would wake it at every line, at the function's expense (a few % of
# ws-default's CPU in the benchmark).
watch_functions() {
  # Dummy credentials: every call is signed; the emulator only checks that it is signed.
  local extra="${5:-}${WSCHAT_FUNCTION_ENV:+${5:+,}$WSCHAT_FUNCTION_ENV}"
  setsid cargo lambda watch $profile_flag $reload_flag --concurrency "$concurrency" -A 127.0.0.1 -P "$2" \
    --env-var "REDIS_URL=$3,WS_MANAGEMENT_ENDPOINT=$4,FANOUT_FUNCTION=ws-fanout,AWS_ENDPOINT_URL_LAMBDA=${4%/local},AWS_ACCESS_KEY_ID=local,AWS_SECRET_ACCESS_KEY=local,AWS_REGION=us-east-1,RUST_LOG=${RUST_LOG:-info}${extra:+,$extra}" \
    > >(cat >"$logs/$1.log") 2>&1 &
  watch_pids+=($!)
  wait_for_port "$2" 120 || { echo "lambda-stack: cargo lambda watch ($1) did not start; see $logs/$1.log" >&2; tail -20 "$logs/$1.log" >&2; exit 1; }
}

# Warm every function once (watch starts each on its first invoke) with events that change nothing.
warm_up() { # NAME INVOKE_PORT
  local ctx='"requestContext":{"connectionId":"warmup0000000A=","connectedAt":1,"requestTimeEpoch":1,"routeKey":"$connect","eventType":"CONNECT","stage":"local"}'
  local fn_event fn status
  for fn_event in \
    "ws-authorize|{\"type\":\"REQUEST\",$ctx}" \
    "ws-connect|{$ctx}" \
    "ws-disconnect|{$ctx}" \
    "ws-default|{$ctx,\"body\":\"warm-up\"}" \
    "ws-fanout|{\"room\":\"warmup\",\"sender\":\"warmup0000000A=\",\"frame\":\"{}\",\"members\":[],\"nowMs\":1,\"roomSize\":0}"; do
    fn=${fn_event%%|*}
    status=$(curl -s -o "$logs/$1-warm-up.json" -w "%{http_code}" --max-time 300 -H 'content-type: application/json' \
      -d "${fn_event#*|}" "http://127.0.0.1:$2/2015-03-31/functions/$fn/invocations") || status=000
    # With sign-in, the authorizer refuses the warm-up's handshake (no token): that answer is its being ready.
    if [ "$status" != 200 ] && ! { [ "$fn" = ws-authorize ] && grep -q '"Unauthorized"' "$logs/$1-warm-up.json"; }; then
      echo "lambda-stack: warm-up of $fn ($1) answered $status; see $logs/$1.log" >&2; tail -20 "$logs/$1.log" >&2; exit 1
    fi
  done
}

# oidc_env PORT [EXTRA]: the functions' (and the emulator's) variables for sign-in through the development
# provider of the emulator on PORT.
oidc_env() {
  echo "AUTH_MODE=oidc,AUTH_ISSUER=http://127.0.0.1:$1/oidc,AUTH_AUDIENCE=wschat-local${2:+,$2}"
}

# dev_token PORT: signs in as "probe" through the development provider on PORT (code + PKCE) and prints the token.
dev_token() {
  local base="http://127.0.0.1:$1" back verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk location code
  back=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$base/")
  location=$(curl -s -o /dev/null -w "%{redirect_url}" --max-time 5 -X POST "$base/oidc/authorize" \
    -d "response_type=code&client_id=wschat-local&redirect_uri=$back&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&name=probe") || return 1
  code=$(python3 -c 'import sys,urllib.parse as u; print(u.parse_qs(u.urlparse(sys.argv[1]).query)["code"][0])' "$location") || return 1
  curl -s --max-time 5 -X POST "$base/oidc/token" \
    -d "grant_type=authorization_code&code=$code&redirect_uri=$back&client_id=wschat-local&code_verifier=$verifier" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id_token"])'
}

# start_emulator NAME PORT INVOKE_PORT ENV [FLAGS...]: the emulator on PORT in front of the functions on
# INVOKE_PORT, with ENV (A=1,B=2) in its environment, ready when its first handshake (signed in when ENV says
# AUTH_MODE=oidc) goes through the authorizer and $connect at once, answered 101 within 5 s. Sets started_pid.
start_emulator() {
  local name=$1 eport=$2 iport=$3 env=$4 handshake token= protocol=()
  shift 4
  # shellcheck disable=SC2046 # ENV is a comma-separated list of NAME=VALUE without spaces
  env $(echo "$env" | tr ',' ' ') "target/$emulator_dir/wschat-emulator" --port "$eport" \
    --lambda-invoke-url "http://127.0.0.1:$iport" "$@" >"$logs/$name.log" 2>&1 &
  started_pid=$!
  wait_for_port "$eport" 30 || { echo "lambda-stack: the emulator ($name) did not start; see $logs/$name.log" >&2; tail -20 "$logs/$name.log" >&2; exit 1; }
  if [[ "$env" == *AUTH_MODE=oidc* ]]; then
    token=$(dev_token "$eport") || { echo "lambda-stack: could not sign in at the provider of $name; see $logs/$name.log" >&2; exit 1; }
    protocol=(-H "Sec-WebSocket-Protocol: wschat, $token")
  fi
  # curl drops the socket after the upgrade, which runs $disconnect too.
  handshake=$(curl -s -o /dev/null -w "%{http_code}" --max-time 5 --http1.1 "${protocol[@]}" \
    -H "Connection: Upgrade" -H "Upgrade: websocket" -H "Sec-WebSocket-Version: 13" \
    -H "Sec-WebSocket-Key: d3NjaGF0LXJlYWR5LXByb2Jl" "http://127.0.0.1:$eport/local?room=ready_probe") || true
  case "$handshake" in
    101) ;;
    *) echo "lambda-stack: the first handshake of $name answered '$handshake', not 101; see $logs/$name.log" >&2
       tail -20 "$logs/$name.log" >&2; exit 1 ;;
  esac
}

endpoint="http://127.0.0.1:$port/local"
stack_env=
oidc_flag=()
if [ "${AUTH:-open}" = oidc ]; then stack_env=$(oidc_env "$port"); oidc_flag=(--oidc-provider); fi
# WSCHAT_FANOUT_SHARD_SIZE (make test: 2) shards every room bigger than it, so the tests run the sharded path.
shard_env=${WSCHAT_FANOUT_SHARD_SIZE:+FANOUT_SHARD_SIZE=$WSCHAT_FANOUT_SHARD_SIZE}
export WSCHAT_FANOUT_SHARD_SIZE="${WSCHAT_FANOUT_SHARD_SIZE:-}"  # the tests read what the functions were given
watch_functions watch "$invoke_port" "$REDIS_URL" "$endpoint" "$stack_env${shard_env:+${stack_env:+,}$shard_env}"
warm_up watch "$invoke_port"
# Only now the page port: a browser that connects the moment it opens meets warm functions, not a cold compile.
# In command mode every test, and the load tool, is an address of its own (X-Forwarded-For): one address per test
# keeps the per-address handshake limits of one test from meeting another's.
trust=(); [ "$command_mode" = 1 ] && trust=(--trust-forwarded-for)
start_emulator emulator "$port" "$invoke_port" "$stack_env" "${trust[@]}" "${oidc_flag[@]}"
emulator_pid=$started_pid
echo "lambda-stack: ready: chat at http://127.0.0.1:$port/ (functions via cargo lambda watch on :$invoke_port, Redis $REDIS_URL${stack_env:+, sign-in at http://127.0.0.1:$port/oidc})" >&2

export WSCHAT_LAMBDA_EMULATOR_URL="http://127.0.0.1:$port" WSCHAT_LAMBDA_EMULATOR_PID="$emulator_pid"
if [ "$command_mode" = 1 ] && [ "${WSCHAT_NO_OIDC_STACK:-}" != 1 ]; then
  oidc_port=$(free_port)
  oidc_invoke_port=$(free_port)
  oidc_stack_env=$(oidc_env "$oidc_port" "AUTH_JWKS_REFETCH_SECS=0,AUTH_LEEWAY_SECS=0")
  watch_functions oidc-watch "$oidc_invoke_port" "$REDIS_URL" "http://127.0.0.1:$oidc_port/local" "$oidc_stack_env"
  warm_up oidc-watch "$oidc_invoke_port"
  start_emulator oidc-emulator "$oidc_port" "$oidc_invoke_port" "$oidc_stack_env" --trust-forwarded-for --oidc-provider
  oidc_emulator_pid=$started_pid
  export WSCHAT_LAMBDA_OIDC_EMULATOR_URL="http://127.0.0.1:$oidc_port"
  export WSCHAT_LAMBDA_OIDC_INVOKE_URL="http://127.0.0.1:$oidc_invoke_port"
fi
if [ "$command_mode" = 1 ] && [ "${WSCHAT_NO_FAULT_STACK:-}" != 1 ]; then
  # The fault stack: functions whose Redis and emulator ports the fault tests serve themselves. Warmed up against
  # a Redis started here for the purpose and stopped before the tests run.
  fault_redis_port=$(free_port)
  fault_emulator_port=$(free_port)
  fault_invoke_port=$(free_port)
  watch_functions fault-watch "$fault_invoke_port" "redis://127.0.0.1:$fault_redis_port" \
    "http://127.0.0.1:$fault_emulator_port/local" "MAX_ROOM_MEMBERS=3"
  redis-server --port "$fault_redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$logs" \
    --dbfilename fault-warmup.rdb --daemonize no --loglevel warning >"$logs/fault-redis.log" 2>&1 &
  fault_redis_pid=$!
  wait_for_port "$fault_redis_port" 10 || { echo "lambda-stack: the fault stack's redis-server did not start" >&2; exit 1; }
  warm_up fault-watch "$fault_invoke_port"
  kill "$fault_redis_pid"; wait "$fault_redis_pid" 2>/dev/null || true; fault_redis_pid=
  export WSCHAT_FAULT_REDIS_PORT="$fault_redis_port" WSCHAT_FAULT_EMULATOR_PORT="$fault_emulator_port"
  export WSCHAT_FAULT_INVOKE_URL="http://127.0.0.1:$fault_invoke_port"
  # Their own output (their metrics lines among it): what they would log on AWS, read by tests/e2e/operating.rs.
  export WSCHAT_FAULT_FUNCTION_LOG="$logs/fault-watch.log"
fi
if [ "$command_mode" = 1 ]; then
  "$@"
else
  echo "lambda-stack: logs in $logs/; Ctrl-C stops everything" >&2
  tail -f "$logs/emulator.log" &
  tail_pid=$!
  wait "$emulator_pid"
fi
