#!/usr/bin/env bash
# Lambda mode: the real function binaries behind `cargo lambda watch`, Redis, and the emulator forwarding every
# event to them through the Lambda Invoke API. The functions post back through the real AWS SDK adapter to the
# emulator's /@connections.
#
#   tools/scripts/lambda-stack.sh                 serve the chat on 127.0.0.1:$PORT (3000) until Ctrl-C
#   tools/scripts/lambda-stack.sh -- CMD ARGS...  start the stack on free ports, run CMD, stop everything
#
# Uses REDIS_URL when it is set; otherwise starts a private redis-server. Installs cargo-lambda (pip, in
# .venv-tools) when it is missing. Everything it starts is stopped when it exits.
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

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
wait_for_port() { # port seconds
  local deadline=$((SECONDS + $2))
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

if [ "$command_mode" = 1 ]; then port=$(free_port); else port=${PORT:-3000}; fi
invoke_port=$(free_port)
logs="$repo/target/lambda-stack"
mkdir -p "$logs"
watch_pid=
emulator_pid=
tail_pid=
cleanup() {
  [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null
  [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null && wait "$emulator_pid" 2>/dev/null
  # cargo lambda watch runs each function as `cargo run` children: stop the whole process group.
  [ -n "$watch_pid" ] && kill -- "-$watch_pid" 2>/dev/null && wait "$watch_pid" 2>/dev/null
  true
}
trap cleanup EXIT INT TERM

echo "lambda-stack: building the functions and the emulator" >&2
cargo build --quiet -p ws-connect -p ws-disconnect -p ws-default -p ws-authorize -p wschat-emulator

endpoint="http://127.0.0.1:$port/local"
# Dummy credentials: the SDK signs every call; the emulator only checks that it is signed.
setsid cargo lambda watch -A 127.0.0.1 -P "$invoke_port" \
  --env-var "REDIS_URL=$REDIS_URL,WS_MANAGEMENT_ENDPOINT=$endpoint,AWS_ACCESS_KEY_ID=local,AWS_SECRET_ACCESS_KEY=local,AWS_REGION=us-east-1,RUST_LOG=${RUST_LOG:-info}" \
  >"$logs/watch.log" 2>&1 &
watch_pid=$!
wait_for_port "$invoke_port" 120 || { echo "lambda-stack: cargo lambda watch did not start; see $logs/watch.log" >&2; tail -20 "$logs/watch.log" >&2; exit 1; }

target/debug/wschat-emulator --port "$port" --lambda-invoke-url "http://127.0.0.1:$invoke_port" >"$logs/emulator.log" 2>&1 &
emulator_pid=$!
wait_for_port "$port" 30 || { echo "lambda-stack: the emulator did not start; see $logs/emulator.log" >&2; tail -20 "$logs/emulator.log" >&2; exit 1; }

# Warm every function once (watch starts each on its first invoke) with events that change nothing.
warm() { # function event-json
  curl -s -o /dev/null -w "%{http_code}" --max-time 300 -H 'content-type: application/json' \
    -d "$2" "http://127.0.0.1:$invoke_port/2015-03-31/functions/$1/invocations"
}
ctx='"requestContext":{"connectionId":"warmup0000000A=","connectedAt":1,"requestTimeEpoch":1,"routeKey":"$connect","eventType":"CONNECT","stage":"local"}'
for fn_event in \
  "ws-authorize|{\"type\":\"REQUEST\",$ctx}" \
  "ws-connect|{$ctx}" \
  "ws-disconnect|{$ctx}" \
  "ws-default|{$ctx,\"body\":\"warm-up\"}"; do
  fn=${fn_event%%|*}
  status=$(warm "$fn" "${fn_event#*|}") || status=000
  [ "$status" = 200 ] || { echo "lambda-stack: warm-up of $fn answered $status; see $logs/watch.log" >&2; tail -20 "$logs/watch.log" >&2; exit 1; }
done
echo "lambda-stack: chat at http://127.0.0.1:$port/ (functions via cargo lambda watch on :$invoke_port, Redis $REDIS_URL)" >&2

export WSCHAT_LAMBDA_EMULATOR_URL="http://127.0.0.1:$port"
if [ "$command_mode" = 1 ]; then
  "$@"
else
  echo "lambda-stack: logs in $logs/; Ctrl-C stops everything" >&2
  tail -f "$logs/emulator.log" &
  tail_pid=$!
  wait "$emulator_pid"
fi
