#!/usr/bin/env bash
# Delete a wschat deployment: empty the site bucket (CloudFormation cannot delete a bucket that
# still holds objects or object versions), `sam delete` the stack (which also removes the packaged
# functions from SAM's artifact bucket), then empty and remove the access-log bucket, which the
# stack retains because log delivery can lag behind the deletion of what it logs.
#
# Usage: bash infra/destroy.sh [--yes]
#        bash infra/destroy.sh --logs-bucket NAME   (only remove a leftover log bucket)
# Environment: WSCHAT_CONFIG_ENV (samconfig environment, default "default"), WSCHAT_STACK_NAME
# and WSCHAT_REGION (override samconfig.toml), AWS_PROFILE as usual.
#
# Kept on purpose: API Gateway's account-level CloudWatch role and that setting (other REST and
# WebSocket APIs in the account and Region may rely on it).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="$REPO_ROOT/infra"
CONFIG_ENV="${WSCHAT_CONFIG_ENV:-default}"
SAMCONFIG="$INFRA/samconfig.toml"

die() { echo "destroy.sh: $*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }
cfg() { python3 "$INFRA/samconfig_value.py" "$SAMCONFIG" "$CONFIG_ENV" "$@"; }

command -v aws >/dev/null 2>&1 || die "aws not found: install the AWS CLI v2"
command -v sam >/dev/null 2>&1 || die "sam not found: install the AWS SAM CLI"
command -v python3 >/dev/null 2>&1 || die "python3 not found (used to read samconfig.toml)"

assume_yes=false
only_logs_bucket=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --yes | -y) assume_yes=true ;;
    --logs-bucket) only_logs_bucket="${2:?--logs-bucket needs a bucket name}"; shift ;;
    *) die "unknown argument $1 (usage: destroy.sh [--yes] | --logs-bucket NAME)" ;;
  esac
  shift
done

stack="${WSCHAT_STACK_NAME:-$(cfg stack_name || true)}"
region="${WSCHAT_REGION:-$(cfg region || true)}"
region_args=()
[[ -n $region ]] && region_args=(--region "$region")

# Deletes every object version and delete marker, 500 + 500 at a time (delete-objects takes 1000).
empty_bucket() { # empty_bucket NAME
  local bucket=$1 batch
  if ! aws s3api head-bucket --bucket "$bucket" ${region_args[@]+"${region_args[@]}"} >/dev/null 2>&1; then
    echo "bucket $bucket does not exist (already gone)"
    return 0
  fi
  batch="$(mktemp)"
  while :; do
    # shellcheck disable=SC2016 # backticks are a JMESPath literal, not a command substitution
    aws s3api list-object-versions --bucket "$bucket" ${region_args[@]+"${region_args[@]}"} --max-items 500 --output json \
      --query '{Objects: [Versions[].{Key: Key, VersionId: VersionId}, DeleteMarkers[].{Key: Key, VersionId: VersionId}][], Quiet: `true`}' \
      >"$batch"
    grep -q '"Key"' "$batch" || break
    aws s3api delete-objects --bucket "$bucket" ${region_args[@]+"${region_args[@]}"} --delete "file://$batch" --output text \
      --query 'Errors[].[Key,Code,Message]'
  done
  rm -f "$batch"
  echo "bucket $bucket is empty"
}

remove_logs_bucket() { # remove_logs_bucket NAME
  local bucket=$1 attempt
  for attempt in 1 2 3 4 5; do
    empty_bucket "$bucket"
    if ! aws s3api head-bucket --bucket "$bucket" ${region_args[@]+"${region_args[@]}"} >/dev/null 2>&1 ||
      aws s3api delete-bucket --bucket "$bucket" ${region_args[@]+"${region_args[@]}"} 2>/dev/null; then
      echo "bucket $bucket removed"
      return 0
    fi
    echo "bucket $bucket received late log files; retrying in 30 s ($attempt/5)"
    sleep 30
  done
  echo "destroy.sh: could not remove $bucket yet (log delivery can lag by hours). Later run:" >&2
  echo "  bash infra/destroy.sh --logs-bucket $bucket${region:+   (with WSCHAT_REGION=$region)}" >&2
  return 1
}

if [[ -n $only_logs_bucket ]]; then
  remove_logs_bucket "$only_logs_bucket"
  exit $?
fi

[[ -n $stack ]] || die "no stack_name in [$CONFIG_ENV.deploy.parameters] of $SAMCONFIG; set WSCHAT_STACK_NAME"

if ! aws cloudformation describe-stacks ${region_args[@]+"${region_args[@]}"} --stack-name "$stack" >/dev/null 2>&1; then
  die "stack $stack not found${region:+ in $region} (nothing to delete, or wrong AWS_PROFILE/Region)"
fi

output() {
  aws cloudformation describe-stacks ${region_args[@]+"${region_args[@]}"} --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue | [0]" --output text
}
site_bucket="$(output SiteBucketName)"
logs_bucket="$(output LogsBucketName)"

if ! $assume_yes; then
  [[ -t 0 ]] || die "refusing to delete without a terminal; pass --yes"
  read -r -p "Delete stack $stack${region:+ in $region}, its site, logs and (ElastiCache mode) cache? [y/N] " answer
  [[ $answer == [yY]* ]] || die "cancelled"
fi

if [[ -n $site_bucket && $site_bucket != None ]]; then
  step "empty site bucket $site_bucket"
  empty_bucket "$site_bucket"
fi

step "sam delete $stack"
(cd "$INFRA" && sam delete --stack-name "$stack" ${region_args[@]+"${region_args[@]}"} --no-prompts) || {
  cat >&2 <<EOF
destroy.sh: sam delete failed. In RedisMode=elasticache, Lambda releases the functions' network
interfaces only some time (often 20 minutes or more) after the functions are deleted, and until
then the subnets and security groups cannot be deleted: wait, then run this script again.
EOF
  exit 1
}

if [[ -n $logs_bucket && $logs_bucket != None ]]; then
  step "remove retained logs bucket $logs_bucket"
  remove_logs_bucket "$logs_bucket"
fi

echo
echo "Stack $stack deleted. Kept on purpose: the API Gateway CloudWatch role (account-wide setting)."
