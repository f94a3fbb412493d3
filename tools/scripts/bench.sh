#!/usr/bin/env bash
# `make bench`: every benchmark in one run, on this machine, loopback only.
#   1. fan-out: one message to 1,000 members with 20 ms per PostToConnection, at several concurrencies; big rooms
#      (1,000, 5,000 and 10,000 members in process, 2,000 in Lambda mode) shared out to ws-fanout; the first
#      message after a cold start against a warm one, over TLS (emulator --tls, posts over HTTPS), a room of 100;
#      then the cost per 1,000 chat messages at room sizes 2, 10, 100 and 1,000 (the emulator's cost meter),
#      and the poster's CPU per PostToConnection: the SDK client, the direct client, three raw-socket floors;
#   2. the matrix (rooms x clients x messages in flight) against
#        - wschat in process (release emulator, rooms in memory: `make run`),
#        - wschat in Lambda mode (release functions behind cargo lambda watch, Redis, the Management API client),
#        - the Django Channels tutorial (daphne + channels_redis on a private redis-server),
#      with CPU per delivered frame of each process, then one table with ratios to the tutorial.
# Installs what it needs (redis-server with apt, cargo-lambda and the tutorial's packages with pip, in git-ignored
# venvs). Results: target/bench/*.jsonl and the tables on stdout.
#   BENCH_SECONDS (3)  how long every client sends, per cell
#   BENCH_CELLS        the matrix (default 1x2:4,1x10:4,1x50:4,10x10:4,1x50:1)
#   3. the attack (`wschat-loadtest attack`), with the default limits, in process (rooms in Redis) and in Lambda
#      mode, with the handshake storm from 1 address and from 100;
#   4. sign-in (`wschat-loadtest authorize`): signed-in handshakes in process and in Lambda mode, the authorizer
#      alone through the Invoke API, and the CPU of one verification.
#   BENCH_ATTACK_SECONDS (60)  how long each attack lasts
#   BENCH_SKIP_FANOUT=1, BENCH_SKIP_BIGROOM=1, BENCH_SKIP_COLDSTART=1, BENCH_SKIP_COST=1, BENCH_SKIP_GATEWAY=1, BENCH_SKIP_INPROCESS=1, BENCH_SKIP_LAMBDA=1,
#   BENCH_SKIP_CHANNELS=1, BENCH_SKIP_ATTACK=1, BENCH_SKIP_AUTH=1  leave a part out
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
seconds=${BENCH_SECONDS:-3}
cells=${BENCH_CELLS:-1x2:4,1x10:4,1x50:4,10x10:4,1x50:1}
out="$repo/target/bench"
rm -rf "$out"; mkdir -p "$out"
# The throughput benchmarks flood on purpose, from one address: they run with the abuse limits lifted (chat rate,
# frame budget, per-address limits; tools/loadtest/src/lifted.rs says the same). `attack` runs with the defaults.
limits="RATE_LIMIT_PER_SEC=1000000,RATE_LIMIT_BURST=1000000,FRAME_RATE_PER_SEC=1000000,FRAME_BURST=1000000,CONNECT_RATE_PER_IP=1000000,MAX_CONNECTIONS_PER_IP=1000000"

# shellcheck source=tools/scripts/common.sh
source "$repo/tools/scripts/common.sh"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

echo "bench: building (release)" >&2
# The tools in the `fast` profile (thin LTO, symbols for perf); the Lambda functions in `release`, as deployed.
cargo build --quiet --profile fast -p wschat-loadtest -p wschat-emulator
load=target/fast/wschat-loadtest

if [ "${BENCH_SKIP_FANOUT:-}" != 1 ]; then
  echo; echo "## Fan-out: one message to 1,000 members, 20 ms per PostToConnection"
  "$load" fanout --members 1000 --latency-ms 20
fi

if [ "${BENCH_SKIP_BIGROOM:-}" != 1 ]; then
  echo; echo "## Big rooms: one message to 1,000, 5,000 and 10,000 members, 20 ms per PostToConnection, shards of 1,000"
  "$load" bigroom --members 1000,5000,10000 --latency-ms 20 --emulator-bin target/fast/wschat-emulator
  echo "Lambda mode (release functions: ws-default and ws-fanout behind cargo lambda watch, rooms in Redis):"
  LAMBDA_RELEASE=1 WSCHAT_NO_FAULT_STACK=1 WSCHAT_NO_OIDC_STACK=1 WSCHAT_FUNCTION_ENV="$limits,MAX_ROOM_MEMBERS=2000" \
    RUST_LOG=warn tools/scripts/lambda-stack.sh -- bash -c '
    "$0" bigroom --members 2000 --latency-ms 20 --emulator-url "$WSCHAT_LAMBDA_EMULATOR_URL"' "$load" \
    || echo "bench: the Lambda-mode big room failed (see above)"
fi

if [ "${BENCH_SKIP_COLDSTART:-}" != 1 ]; then
  echo; echo "## Cold start: the first message to a room of 100 after a cold start, against a warm one, over TLS, 20 ms per PostToConnection"
  "$load" coldstart --members 100 --latency-ms 20 --starts 5 --emulator-bin target/fast/wschat-emulator
fi

if [ "${BENCH_SKIP_COST:-}" != 1 ]; then
  echo; echo "## What 1,000 chat messages cost on AWS, by room size (the emulator's cost meter, rooms in Redis)"
  tools/scripts/with-redis.sh -- bash -c '"$0" cost --redis-url "$WSCHAT_TEST_REDIS_URL"' "$load"
fi

if [ "${BENCH_SKIP_GATEWAY:-}" != 1 ]; then
  echo; echo "## CPU per PostToConnection of the poster: the SDK client, the direct client, three raw-socket floors"
  port=$(free_port)
  RUST_LOG=warn target/fast/wschat-emulator --port "$port" >"$out/gateway-emulator.log" 2>&1 &
  emulator=$!; pids+=("$emulator")
  wait_for_port "$port" 30
  "$load" gateway --emulator "127.0.0.1:$port"
  kill "$emulator"; wait "$emulator" 2>/dev/null || true
fi

echo; echo "## Matrix, ${seconds} s per cell"
# wschat in process, rooms in memory (make run).
if [ "${BENCH_SKIP_INPROCESS:-}" != 1 ]; then
port=$(free_port)
env ${limits//,/ } RUST_LOG=warn \
  target/fast/wschat-emulator --port "$port" >"$out/inprocess.log" 2>&1 &
emulator=$!; pids+=("$emulator")
wait_for_port "$port" 30
"$load" matrix --name "wschat in-process" --url "ws://127.0.0.1:$port/local?room={room}" --cells "$cells" \
  --seconds "$seconds" --cpu "emulator=$emulator" --json "$out/matrix.jsonl"
kill "$emulator"; wait "$emulator" 2>/dev/null || true
fi

# wschat in Lambda mode: release functions, Redis, the Management API client posting to the release emulator.
if [ "${BENCH_SKIP_LAMBDA:-}" != 1 ]; then
LAMBDA_RELEASE=1 WSCHAT_NO_FAULT_STACK=1 WSCHAT_NO_OIDC_STACK=1 WSCHAT_FUNCTION_ENV="$limits" RUST_LOG=warn \
  tools/scripts/lambda-stack.sh -- bash -c '
    url="${WSCHAT_LAMBDA_EMULATOR_URL/http:/ws:}/local?room={room}"
    "$0" matrix --name "wschat Lambda mode" --url "$url" --cells "$1" --seconds "$2" \
      --cpu ws-default=comm:ws-default --cpu "emulator=$WSCHAT_LAMBDA_EMULATOR_PID" --json "$3"' \
  "$load" "$cells" "$seconds" "$out/matrix.jsonl" || echo "bench: the Lambda-mode run failed (see above)"
fi

# The Django Channels tutorial: daphne + channels_redis on a private redis-server.
if [ "${BENCH_SKIP_CHANNELS:-}" != 1 ]; then
venv="$repo/.venv-bench"
reqs=tools/bench/channels_tutorial/requirements.txt
if [ ! -x "$venv/bin/daphne" ] || ! cmp -s "$reqs" "$venv/requirements.txt"; then
  echo "bench: installing the Channels tutorial's packages into .venv-bench (pip)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
  cp "$reqs" "$venv/requirements.txt"
fi
tools/scripts/with-redis.sh -- bash -c '
  port=$(python3 -c "import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1]); s.close()")
  cd tools/bench/channels_tutorial
  REDIS_URL="$WSCHAT_TEST_REDIS_URL" BENCH_DB="$3/bench.sqlite3" "$4/bin/daphne" -b 127.0.0.1 -p "$port" \
    mysite.asgi:application >"$3/daphne.log" 2>&1 &
  daphne=$!
  trap "kill $daphne 2>/dev/null; wait $daphne 2>/dev/null" EXIT
  for _ in $(seq 1 100); do
    python3 -c "import socket; socket.create_connection((\"127.0.0.1\",$port),1)" 2>/dev/null && break; sleep 0.2
  done
  redis_pid=$(pgrep -f "redis-server 127.0.0.1:${WSCHAT_TEST_REDIS_URL##*:}" | head -1)
  cd "$5"
  "$0" matrix --name "Channels tutorial" --url "ws://127.0.0.1:$port/ws/chat/{room}/" --cells "$1" \
    --origin "http://127.0.0.1:$port" \
    --seconds "$2" --cpu "daphne=$daphne" --cpu "redis=$redis_pid" --json "$3/matrix.jsonl"' \
  "$load" "$cells" "$seconds" "$out" "$venv" "$repo"
fi

if [ -s "$out/matrix.jsonl" ]; then
  echo; echo "## Side by side (ratios: delivered msgs/s against the Channels tutorial)"
  "$load" report --baseline "Channels tutorial" "$out/matrix.jsonl"
fi

if [ "${BENCH_SKIP_ATTACK:-}" != 1 ]; then
  attack_seconds=${BENCH_ATTACK_SECONDS:-60}
  echo; echo "## Under attack, with the default limits: ${attack_seconds} s each, the storm from 1 address and from 100"
  # In process, rooms in Redis (weighed with MEMORY USAGE); X-Forwarded-For trusted: one machine, many addresses.
  tools/scripts/with-redis.sh --as-redis-url -- bash -c '
    source tools/scripts/common.sh
    port=$(free_port)
    RUST_LOG=warn target/fast/wschat-emulator --port "$port" --trust-forwarded-for >"$2/attack-emulator.log" 2>&1 &
    emulator=$!
    trap "kill $emulator 2>/dev/null; wait $emulator 2>/dev/null" EXIT
    wait_for_port "$port" 30
    for addresses in 1 100; do
      "$0" attack --name "wschat in-process" --url "ws://127.0.0.1:$port/local" --seconds "$1" \
        --storm-addresses "$addresses" --redis-url "$REDIS_URL"
    done' "$load" "$attack_seconds" "$out"
  # Lambda mode: the release functions with their default limits; the stack's emulator trusts X-Forwarded-For.
  LAMBDA_RELEASE=1 WSCHAT_NO_FAULT_STACK=1 WSCHAT_NO_OIDC_STACK=1 RUST_LOG=warn tools/scripts/lambda-stack.sh -- bash -c '
    for addresses in 1 100; do
      "$0" attack --name "wschat Lambda mode" --url "${WSCHAT_LAMBDA_EMULATOR_URL/http:/ws:}/local" --seconds "$1" \
        --storm-addresses "$addresses" --redis-url "$REDIS_URL"
    done' "$load" "$attack_seconds" || echo "bench: the Lambda-mode attack failed (see above)"
fi

if [ "${BENCH_SKIP_AUTH:-}" != 1 ]; then
  echo; echo "## Sign-in: what a token costs a handshake (release builds; the functions trust the emulator's provider)"
  # Hundreds of handshakes from one address in a row: the per-address limits are lifted, as for the matrix.
  port=$(free_port)
  env ${limits//,/ } RUST_LOG=warn target/fast/wschat-emulator --port "$port" --oidc-provider >"$out/auth-emulator.log" 2>&1 &
  emulator=$!; pids+=("$emulator")
  wait_for_port "$port" 30
  echo "in process:"
  "$load" authorize --emulator "http://127.0.0.1:$port"
  kill "$emulator"; wait "$emulator" 2>/dev/null || true
  echo "Lambda mode:"
  LAMBDA_RELEASE=1 WSCHAT_NO_FAULT_STACK=1 WSCHAT_FUNCTION_ENV="$limits" RUST_LOG=warn tools/scripts/lambda-stack.sh -- bash -c '
    "$0" authorize --emulator "$WSCHAT_LAMBDA_OIDC_EMULATOR_URL" --invoke-url "$WSCHAT_LAMBDA_OIDC_INVOKE_URL"' \
    "$load" || echo "bench: the Lambda-mode sign-in run failed (see above)"
  ls -l target/release/ws-authorize | awk '{print "ws-authorize: " $5 " bytes"}'
fi
