#!/usr/bin/env bash
# Build and deploy wschat to AWS in one command, then publish the web client:
#   1. sam build: cargo lambda compiles the four functions for the chosen architecture;
#   2. sam deploy: guided the first time (no stack_name in infra/samconfig.toml yet, it asks and
#      saves the answers), non-interactive afterwards;
#   3. aws s3 sync web/ to the site bucket, with config.js rewritten to point at this stack's
#      WebSocket URL, then a CloudFront invalidation so the new files are served at once;
#   4. print the stack outputs.
# Environment: WSCHAT_CONFIG_ENV (samconfig environment, default "default"), WSCHAT_ARCHITECTURE
# (arm64 or x86_64, used until samconfig.toml records an Architecture), AWS_PROFILE as usual.
# Usage: bash infra/deploy.sh
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="$REPO_ROOT/infra"
CONFIG_ENV="${WSCHAT_CONFIG_ENV:-default}"
SAMCONFIG="$INFRA/samconfig.toml"

die() { echo "deploy.sh: $*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2 (see docs/operations.md, Prerequisites)"; }
cfg() { python3 "$INFRA/samconfig_value.py" "$SAMCONFIG" "$CONFIG_ENV" "$@"; }

need python3 "used to read samconfig.toml"
need sam "install the AWS SAM CLI"
need aws "install the AWS CLI v2"
need cargo "install Rust with rustup"
need cargo-lambda "pip install cargo-lambda (brings Zig), or cargo install cargo-lambda"

SAM_CLI_TELEMETRY="${SAM_CLI_TELEMETRY:-0}"
export SAM_CLI_TELEMETRY

# --- what to build for ---------------------------------------------------------------------------
arch="$(cfg parameter Architecture || true)"
arch="${arch:-${WSCHAT_ARCHITECTURE:-arm64}}"

rust_target() { case $1 in arm64) echo aarch64-unknown-linux-gnu ;; x86_64) echo x86_64-unknown-linux-gnu ;; *) die "Architecture must be arm64 or x86_64, not $1" ;; esac; }

ensure_rust_target() {
  local target
  target="$(rust_target "$1")"
  # cargo-lambda links with Zig, but the standard library for the target comes from rustup.
  if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$target"; then
    step "rustup target add $target"
    rustup target add "$target"
  fi
}

build() { # build ARCH
  ensure_rust_target "$1"
  step "sam build (Architecture=$1)"
  (cd "$INFRA" && sam build --config-env "$CONFIG_ENV" --parameter-overrides "Architecture=$1")
}

# Lambda refuses reserved concurrency that would leave the account fewer than 100 unreserved
# executions, and new accounts can have a quota far below the usual 1,000: warn before the first
# deploy fails on it. (Only before the first deploy: afterwards our own reservations are counted.)
concurrency_preflight() {
  local reserved limit unreserved
  reserved="$(cfg parameter ReservedConcurrency || echo 25)"
  [[ $reserved == -1 ]] && return 0
  read -r limit unreserved < <(aws lambda get-account-settings --output text \
    --query '[AccountLimit.ConcurrentExecutions, AccountLimit.UnreservedConcurrentExecutions]' 2>/dev/null) || return 0
  if [[ $unreserved =~ ^[0-9]+$ ]] && ((unreserved - 4 * reserved < 100)); then
    cat <<EOF
Note: this account's Lambda concurrency quota is $limit ($unreserved unreserved). Reserving
$reserved for each of the 4 functions would leave fewer than the 100 Lambda requires, and the
deploy would fail: answer -1 to the ReservedConcurrency prompt (or ask AWS for a higher quota).
EOF
  fi
}

# --- build and deploy ----------------------------------------------------------------------------
build "$arch"

stack="$(cfg stack_name || true)"
if [[ -z $stack ]]; then
  [[ -t 0 && -t 1 ]] || die "the first deploy is interactive (sam deploy --guided) and needs a terminal;
  or put stack_name, region and parameter_overrides into [$CONFIG_ENV.deploy.parameters] of $SAMCONFIG"
  concurrency_preflight
  step "sam deploy --guided (first deploy: your answers are saved to infra/samconfig.toml)"
  cat <<EOF
Hints: RedisMode=external needs RedisUrl (a rediss:// URL; typed hidden) or RedisUrlSecretArn.
       When a hidden RedisUrl prompt does not apply (elasticache, or an existing secret), type: none
       RedisMode=elasticache creates a VPC with a NAT gateway: a fixed hourly cost (docs/operations.md).
EOF
  (cd "$INFRA" && sam deploy --guided --config-env "$CONFIG_ENV" --parameter-overrides "Architecture=$arch")
  stack="$(cfg stack_name)" || die "sam deploy --guided saved no stack_name to $SAMCONFIG"
  chosen="$(cfg parameter Architecture || echo "$arch")"
  if [[ $chosen != "$arch" ]]; then
    # The functions were built for the default; rebuild for the answer and deploy again.
    echo "Architecture changed to $chosen during the guided deploy: rebuilding."
    arch=$chosen
    build "$arch"
    (cd "$INFRA" && sam deploy --config-env "$CONFIG_ENV" --no-confirm-changeset --no-fail-on-empty-changeset)
  fi
else
  step "sam deploy (stack $stack)"
  (cd "$INFRA" && sam deploy --config-env "$CONFIG_ENV" --no-confirm-changeset --no-fail-on-empty-changeset)
fi

region="$(cfg region || true)"
region_args=()
[[ -n $region ]] && region_args=(--region "$region")

output() {
  aws cloudformation describe-stacks ${region_args[@]+"${region_args[@]}"} --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue | [0]" --output text
}

websocket_url="$(output WebSocketUrl)"
max_message_bytes="$(output MaxMessageBytes)"
[[ $max_message_bytes =~ ^[0-9]+$ ]] || max_message_bytes=null
bucket="$(output SiteBucketName)"
distribution="$(output DistributionId)"
[[ $websocket_url == wss://* && -n $bucket && $bucket != None ]] || die "stack $stack has no WebSocketUrl/SiteBucketName outputs"

# --- publish the web client ----------------------------------------------------------------------
step "upload web/ to s3://$bucket"
if [[ -d $REPO_ROOT/web ]]; then
  # no-cache: browsers revalidate (cheap ETag checks) instead of keeping an old config.js or page.
  # config.js is excluded here (and so never deleted by --delete) and written below instead.
  aws s3 sync "$REPO_ROOT/web/" "s3://$bucket/" ${region_args[@]+"${region_args[@]}"} --delete --only-show-errors \
    --exclude "config.js" --exclude ".*" --exclude "*/.*" --cache-control "no-cache"
else
  echo "deploy.sh: no web/ directory; uploading config.js only" >&2
fi
config_js="$(mktemp)"
trap 'rm -f "$config_js"' EXIT
# With sign-in (AuthMode oidc or cognito), where the pages sign in: the issuer and the client.
auth_issuer="$(output AuthIssuer)"
auth_client_id="$(output AuthClientId)"
auth=null
if [[ $auth_issuer == https://* && -n $auth_client_id && $auth_client_id != None ]]; then
  auth="{ issuer: \"$auth_issuer\", clientId: \"$auth_client_id\" }"
fi
cat >"$config_js" <<EOF
// Written by infra/deploy.sh for stack $stack: the WebSocket API this site talks to, and where it signs in.
window.WSCHAT_CONFIG = { websocketUrl: "$websocket_url", maxMessageBytes: $max_message_bytes, auth: $auth };
EOF
aws s3 cp "$config_js" "s3://$bucket/config.js" ${region_args[@]+"${region_args[@]}"} --only-show-errors \
  --content-type "text/javascript; charset=utf-8" --cache-control "no-cache"

step "invalidate CloudFront distribution $distribution"
aws cloudfront create-invalidation --distribution-id "$distribution" --paths "/*" \
  --query "Invalidation.[Id,Status]" --output text

# --- done -----------------------------------------------------------------------------------------
step "stack $stack outputs"
aws cloudformation describe-stacks ${region_args[@]+"${region_args[@]}"} --stack-name "$stack" \
  --query "Stacks[0].Outputs[].[OutputKey,OutputValue]" --output table
cat <<EOF

Open the site:   $(output SiteUrl)
Connect a CLI:   wscat -c "$websocket_url?room=lobby"   (then send {"message":"hi"})
End-to-end test: WSCHAT_E2E_URL=$websocket_url cargo nextest run -p wschat-tests --run-ignored only
EOF
