# wschat: the two commands that matter are `make run` (the chat at http://127.0.0.1:3000) and `make test`.
PORT ?= 3000
CARGO ?= cargo
# RELEASE=1: optimised builds (the emulator in the `fast` profile, the functions in `release` as deployed), as
# `make bench` measures them; otherwise debug builds, quicker to compile.
RELEASE ?=
EMULATOR_PROFILE := $(if $(RELEASE),--profile fast,)
# AUTH=oidc: sign-in required, through the emulator's development OpenID provider (docs/emulator.md).
AUTH ?= open
AUTH_FLAG := $(if $(filter oidc,$(AUTH)),--oidc-provider,)

.PHONY: help run run-redis run-lambda test fmt lint bench deploy destroy check-infra test-browser

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

run: ## Chat at http://127.0.0.1:$(PORT): emulator + in-process handlers (rooms in memory, or REDIS_URL if set); RELEASE=1 optimises, AUTH=oidc signs in
	$(CARGO) run $(EMULATOR_PROFILE) -p wschat-emulator -- --port $(PORT) $(AUTH_FLAG)

run-redis: ## Same, with rooms in a private redis-server started for the run
	tools/scripts/with-redis.sh --as-redis-url -- $(CARGO) run $(EMULATOR_PROFILE) -p wschat-emulator -- --port $(PORT) $(AUTH_FLAG)

test: ## Every test: fmt, clippy, Rust tests with a private Redis, browser tests, infra checks
	bash tools/scripts/test-all.sh

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-browser: ## Only the browser tests
	$(CARGO) build -p wschat-emulator
	bash tests/browser/run.sh

check-infra: ## Only the offline checks of infra/template.yaml (cfn-lint, checkov, sam validate)
	bash infra/check.sh

deploy: ## Build and deploy to AWS with SAM, then upload the site (see docs/operations.md)
	bash infra/deploy.sh

destroy: ## Delete the deployed stack and empty its buckets
	bash infra/destroy.sh

run-lambda: ## Chat at http://127.0.0.1:$(PORT) backed by the real Lambda binaries (cargo lambda watch), Redis and the AWS SDK; AUTH=oidc signs in
	PORT=$(PORT) AUTH=$(AUTH) LAMBDA_RELEASE=$(if $(RELEASE),1,) tools/scripts/lambda-stack.sh

bench: ## Every benchmark in one run: fan-out to 1,000 members, and the matrix against wschat (in-process, Lambda mode) and the Channels tutorial
	bash tools/scripts/bench.sh
