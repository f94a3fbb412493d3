#!/usr/bin/env bash
# The one test command (`make test`, called by .ci/run): installs what the tests need when it is missing, then runs
# every suite — format, lints, Rust unit/integration/end-to-end tests against a private redis-server, browser
# tests in headless Chromium, and the offline checks of the deploy template. Every suite runs even when an
# earlier one failed; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
passed=0
failed=0
failures=()

suite() {
  local name=$1; shift
  local start=$SECONDS
  echo
  echo "=== $name"
  if "$@"; then
    passed=$((passed + 1))
    echo "=== $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "=== $name: FAILED ($((SECONDS - start)) s)"
  fi
}

ensure_nextest() {
  command -v cargo-nextest >/dev/null 2>&1 && return 0
  echo "cargo-nextest is missing; installing it"
  cargo install cargo-nextest --locked
}

rust_tests() {
  ensure_nextest || return 1
  # One private Redis and one Lambda-mode stack (cargo lambda watch + emulator) serve every test process.
  # Rooms of more than two members are sharded in Lambda mode: the tests run ws-fanout as AWS would.
  WSCHAT_FANOUT_SHARD_SIZE=2 tools/scripts/lambda-stack.sh -- cargo nextest run --workspace --no-fail-fast
}

browser_tests() {
  cargo build -p wschat-emulator && bash tests/browser/run.sh
}

suite "cargo fmt --check" cargo fmt --all --check
suite "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
suite "rust tests (unit, Redis, end-to-end in-process and Lambda mode)" rust_tests
suite "browser tests (headless Chromium)" browser_tests
suite "infra offline checks" bash infra/check.sh

echo
if [ "$failed" -gt 0 ]; then
  printf 'failed suites: %s\n' "${failures[*]}"
fi
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
