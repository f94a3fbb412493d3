#!/usr/bin/env bash
# Runs a command with a private, throw-away redis-server on a free 127.0.0.1 port, exported as
# WSCHAT_TEST_REDIS_URL (and REDIS_URL when --as-redis-url is given). Installs redis-server with apt when it is
# missing. The server is stopped when the command ends, whatever its outcome.
#   tools/scripts/with-redis.sh [--as-redis-url] -- COMMAND [ARGS...]
set -euo pipefail

export_redis_url=0
while [ $# -gt 0 ]; do
  case "$1" in
    --as-redis-url) export_redis_url=1; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--as-redis-url] -- COMMAND..." >&2; exit 2; }

if ! command -v redis-server >/dev/null 2>&1; then
  echo "with-redis: redis-server is missing; installing it with apt-get" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >&2
fi

# shellcheck source=tools/scripts/common.sh
source "$(dirname "$0")/common.sh"

dir=$(mktemp -d "${TMPDIR:-/tmp}/wschat-redis.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

for attempt in 1 2 3 4 5; do
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --daemonize no --loglevel warning >"$dir/redis.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then break 2; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.05
  done
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=
  echo "with-redis: redis-server did not start on port $port (attempt $attempt):" >&2
  cat "$dir/redis.log" >&2
done
[ -n "$pid" ] || { echo "with-redis: could not start redis-server" >&2; exit 1; }

export WSCHAT_TEST_REDIS_URL="redis://127.0.0.1:$port"
if [ "$export_redis_url" = 1 ]; then export REDIS_URL="$WSCHAT_TEST_REDIS_URL"; fi
echo "with-redis: redis-server $(redis-server --version | awk '{print $3}') on $WSCHAT_TEST_REDIS_URL" >&2
"$@"
