#!/usr/bin/env bash
# Offline checks of the deployment template, as CI runs them (no AWS account, no network beyond
# PyPI for the first install):
#   cfn-lint            infra/template.yaml      zero errors and zero warnings
#   checkov             CloudFormation checks    zero failed (skips only with a written reason)
#   sam validate        the SAM transform        (aws-sam-translator, run locally)
#   sam validate --lint                          (cfn-lint as SAM CLI runs it)
#   ShellCheck          infra/*.sh               deploy.sh, destroy.sh and this script
#   template tests      infra/test_template.py   routes -> functions -> Cargo binaries, IAM scope
# Tools are pinned (infra/requirements-*.txt) and installed on first use into two venvs under
# $REPO_ROOT/.venv-infra (git-ignored); later runs reuse them without touching the network.
# Exit status: 0 when every check passes, 1 otherwise. Usage: bash infra/check.sh
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="$REPO_ROOT/infra"
TEMPLATE="infra/template.yaml"
VENV_ROOT="${WSCHAT_INFRA_VENV:-$REPO_ROOT/.venv-infra}"
# Tools that insist on a home directory (SAM CLI's metadata, checkov's update cache) get this one,
# so nothing is written to the real $HOME and their caches survive between runs.
TOOL_HOME="$VENV_ROOT/home"
cd "$REPO_ROOT" || exit 1
# Timing uses $EPOCHREALTIME (bash 5), whose decimal point follows the locale: pin it to ".".
export LC_NUMERIC=C
now() { if [[ -n ${EPOCHREALTIME:-} ]]; then echo "$EPOCHREALTIME"; else date +%s; fi; }
sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1; }

started=$(now)
passed=0
failed=0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

report() { # report NAME STATUS(0|non-0) SUMMARY STARTED [LOGFILE]
  local name=$1 status=$2 summary=$3 t0=$4 log=${5:-}
  if [[ $status -eq 0 ]]; then
    passed=$((passed + 1))
    printf '%-20s PASS  %s (%s)\n' "$name" "$summary" "$(elapsed "$t0")"
  else
    failed=$((failed + 1))
    if [[ -n $log && -s $log ]]; then
      printf -- '----- %s output -----\n' "$name"
      cat "$log"
      printf -- '----- end of %s output -----\n' "$name"
    fi
    printf '%-20s FAIL  %s (%s)\n' "$name" "$summary" "$(elapsed "$t0")"
  fi
}

# --- tools -----------------------------------------------------------------------------------------
find_python() {
  local candidate
  for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

make_venv() { # make_venv DIR
  local python
  python="$(find_python)" || {
    echo "check.sh: Python 3.11 or newer is needed (the template tests use tomllib)" >&2
    return 1
  }
  "$python" -m venv "$1" 2>/dev/null && return 0
  # Debian and Ubuntu ship the venv module separately.
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    local version
    version="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    echo "check.sh: installing python${version}-venv with apt-get" >&2
    apt-get update -qq >&2
    if ! apt-get install -y -qq "python${version}-venv" >&2; then
      apt-get install -y -qq python3-venv >&2
    fi
    rm -rf "$1"
    "$python" -m venv "$1" && return 0
  fi
  echo "check.sh: cannot create a venv with $python (on Debian/Ubuntu: apt-get install python3-venv)" >&2
  return 1
}

ensure_venv() { # ensure_venv NAME REQUIREMENTS EXECUTABLE
  local dir="$VENV_ROOT/$1" requirements="$INFRA/$2" executable=$3 stamp want t0
  t0=$(now)
  stamp="$dir/.requirements.sha256"
  want="$(sha256 "$requirements")"
  if [[ -x $dir/bin/$executable && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "check.sh: installing $2 into $dir (first run, or the pins changed)" >&2
  if [[ ! -x $dir/bin/python ]]; then
    rm -rf "$dir"
    make_venv "$dir" || return 1
  fi
  "$dir/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$requirements" >&2 || {
    echo "check.sh: pip install -r $2 failed" >&2
    return 1
  }
  [[ -x $dir/bin/$executable ]] || { echo "check.sh: $executable missing after install" >&2; return 1; }
  echo "$want" >"$stamp"
  echo "check.sh: $1 tools ready in $(elapsed "$t0")" >&2
}

mkdir -p "$VENV_ROOT" "$TOOL_HOME"
t0=$(now)
# The two venvs are independent: on a first run, install them side by side.
ensure_venv sam requirements-sam.txt shellcheck &
sam_install=$!
ensure_venv checkov requirements-checkov.txt checkov &
checkov_install=$!
install_ok=true
wait "$sam_install" || install_ok=false
wait "$checkov_install" || install_ok=false
if ! $install_ok; then
  report tools 1 "could not install the pinned tools" "$t0"
  echo "infra: $passed passed, $((failed + 6)) failed"
  exit 1
fi
SAM_BIN="$VENV_ROOT/sam/bin"
CHECKOV_BIN="$VENV_ROOT/checkov/bin"

# An offline, credential-free environment for the tools: no profile or config of the user's,
# dummy keys (the documented example key pair) so SDK clients can be built, no telemetry, no
# instance-metadata lookups, and the private home above.
offline_env=(
  env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_REGION
  HOME="$TOOL_HOME"
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
  AWS_DEFAULT_REGION=us-east-1
  AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
  AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
  AWS_EC2_METADATA_DISABLED=true
  SAM_CLI_TELEMETRY=0
  CKV_SKIP_PACKAGE_UPDATE_CHECK=true
)

# --- checkov runs in the background (the slowest check) while the others run -----------------------
checkov_t0=$(now)
mkdir -p "$work/checkov"
"${offline_env[@]}" "$CHECKOV_BIN/checkov" -f "$TEMPLATE" --framework cloudformation --skip-download \
  --compact --quiet -o cli -o json --output-file-path "$work/checkov" >"$work/checkov.log" 2>&1 &
checkov_pid=$!

# --- cfn-lint ---------------------------------------------------------------------------------------
t0=$(now)
"${offline_env[@]}" "$SAM_BIN/cfn-lint" --format parseable -- "$TEMPLATE" >"$work/cfn-lint.log" 2>&1
status=$?
errors=$(grep -cE ':E[0-9]{4}:' "$work/cfn-lint.log")
warnings=$(grep -cE ':W[0-9]{4}:' "$work/cfn-lint.log")
infos=$(grep -cE ':I[0-9]{4}:' "$work/cfn-lint.log")
# Exit code bits: 2 errors, 4 warnings, 8 informational; anything else (e.g. 1) is a crash.
if ((status & ~8)) || ((errors + warnings > 0)); then status=1; else status=0; fi
report cfn-lint "$status" "$errors errors, $warnings warnings, $infos informational" "$t0" "$work/cfn-lint.log"

# --- sam validate (the SAM transform) and sam validate --lint ---------------------------------------
t0=$(now)
"${offline_env[@]}" "$SAM_BIN/sam" validate -t "$TEMPLATE" >"$work/sam.log" 2>&1
status=$?
report "sam validate" "$status" "SAM transform $([[ $status -eq 0 ]] && echo ok || echo failed)" "$t0" "$work/sam.log"

t0=$(now)
"${offline_env[@]}" "$SAM_BIN/sam" validate --lint -t "$TEMPLATE" >"$work/sam-lint.log" 2>&1
status=$?
report "sam validate --lint" "$status" "$([[ $status -eq 0 ]] && echo 'valid SAM template' || echo 'lint findings')" "$t0" "$work/sam-lint.log"

# --- shellcheck of the deploy scripts -----------------------------------------------------------------
t0=$(now)
"$SAM_BIN/shellcheck" -x infra/*.sh >"$work/shellcheck.log" 2>&1
status=$?
report shellcheck "$status" "$(find infra -maxdepth 1 -name '*.sh' | wc -l | tr -d ' ') scripts $([[ $status -eq 0 ]] && echo clean || echo 'have findings')" "$t0" "$work/shellcheck.log"

# --- template tests ---------------------------------------------------------------------------------
t0=$(now)
"${offline_env[@]}" "$SAM_BIN/python" "$INFRA/test_template.py" >"$work/tests.log" 2>&1
status=$?
summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/tests.log" | tail -n 1)"
report "template tests" "$status" "${summary:-no summary}" "$t0" "$work/tests.log"

# --- checkov result -----------------------------------------------------------------------------------
wait "$checkov_pid"
status=$?
summary="$("$SAM_BIN/python" - "$work/checkov/results_json.json" <<'EOF' 2>/dev/null
import json, sys
data = json.load(open(sys.argv[1]))
results = data if isinstance(data, list) else [data]
s = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0}
for r in results:
    for k in s:
        s[k] += r.get("summary", {}).get(k, 0)
print(f"{s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped with a reason, {s['parsing_errors']} parsing errors")
sys.exit(0 if s["failed"] == 0 and s["parsing_errors"] == 0 and s["passed"] > 0 else 1)
EOF
)"
parse_status=$?
checkov_log="$work/checkov.log" # stdout has both the CLI and the JSON report; show the CLI one
[[ -s $work/checkov/results_cli.txt ]] && checkov_log="$work/checkov/results_cli.txt"
if [[ $status -ne 0 || $parse_status -ne 0 ]]; then status=1; fi
report checkov "$status" "${summary:-no result (see output)}" "$checkov_t0" "$checkov_log"

echo "infra checks took $(elapsed "$started")"
echo "infra: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
