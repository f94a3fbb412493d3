#!/usr/bin/env bash
# Browser tests of web/ in headless Chromium, against the local emulator.
#
#   bash tests/browser/run.sh [extra node --test arguments, e.g. --test-name-pattern=lobby]
#
# Installs what is missing (Debian 12, as root or with sudo): the Debian `chromium` package when
# /usr/bin/chromium is absent, and playwright-core (npm ci) when node_modules is absent or older than
# package-lock.json. Needs Node.js >= 20 and the emulator binary (WSCHAT_EMULATOR_BIN, default
# target/debug/wschat-emulator; `cargo build -p wschat-emulator` builds it). Screenshots of every test land
# in test-artifacts/browser/. Exits with node --test's status.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
chromium_bin="${CHROMIUM_BIN:-/usr/bin/chromium}"
emulator_bin="${WSCHAT_EMULATOR_BIN:-$repo/target/debug/wschat-emulator}"

say() { printf '[browser-tests] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

# --- Node.js ------------------------------------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found: install Node.js 20 or newer (Debian 12's own nodejs is 18, too old)."
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node.js $(node --version) is too old: the tests need Node.js 20 or newer."
command -v npm >/dev/null 2>&1 || die "npm not found (it ships with Node.js)."

# --- Chromium -----------------------------------------------------------------------------------------
if [ ! -x "$chromium_bin" ]; then
  [ "$chromium_bin" = /usr/bin/chromium ] || die "CHROMIUM_BIN=$chromium_bin does not exist."
  say "installing Debian's chromium package (apt-get)…"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  [ -x "$chromium_bin" ] || die "apt-get installed chromium but $chromium_bin is still missing."
fi

# --- playwright-core (npm ci when node_modules is missing or does not match package-lock.json) ------------
stamp="$here/node_modules/.wschat-lock.sha256"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ ! -d "$here/node_modules/playwright-core" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing test dependencies (npm ci)…"
  (cd "$here" && npm ci --no-audit --no-fund)
  printf '%s\n' "$want" >"$stamp"
fi

# --- the emulator -------------------------------------------------------------------------------------
[ -x "$emulator_bin" ] || die "emulator binary not found at $emulator_bin. Build it first: cargo build -p wschat-emulator (or set WSCHAT_EMULATOR_BIN)."
export WSCHAT_EMULATOR_BIN="$emulator_bin" CHROMIUM_BIN="$chromium_bin"

# --- run ----------------------------------------------------------------------------------------------
rm -rf "$repo/test-artifacts/browser"
mkdir -p "$repo/test-artifacts/browser"
cd "$here"
status=0
node --test --test-reporter=spec "$@" ./*.test.mjs || status=$?
say "screenshots: $repo/test-artifacts/browser/"
exit "$status"
