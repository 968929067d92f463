#!/usr/bin/env bash
# The CI gate on instructions per request (docs/performance.md#the-ci-gate): the release binary
# measured by scripts/bench-instructions against the figures committed in
# scripts/bench.d/instructions.json; fails when a route grew by more than the file's tolerance.
#
#   scripts/bench.d/ci-instructions.sh [BINARY]
#
# The budgets are about a release build, and CI makes one already: scripts/compose-smoke's
# image (Dockerfile: rust:1.95 on bookworm, `cargo build --release --locked`, the host's
# toolchain and glibc). Without BINARY the binary is copied out of that image
# (<compose project>_api, /usr/local/bin/customers-api), so the gate costs no second release
# build; with no such image it builds one with cargo (about 15 minutes on 2 cores).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
bin=${1:-}
if [[ -z $bin ]]; then
  # compose-smoke's project name, normalised as it does it (compose 1.x).
  project=$(printf '%s' "${COMPOSE_PROJECT_NAME:-$(basename "$repo")-smoke}" | tr '[:upper:]' '[:lower:]' | tr -cd -- '-_a-z0-9')
  image=${project}_api
  mkdir -p target/ci-instructions
  if docker image inspect "$image" >/dev/null 2>&1; then
    cid=$(docker create "$image")
    trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
    docker cp "$cid:/usr/local/bin/customers-api" target/ci-instructions/customers-api
    docker rm -f "$cid" >/dev/null
    trap - EXIT
    echo "release binary from the image $image ($(docker image inspect -f '{{.Created}}' "$image"))"
  else
    echo "no image $image: building the release binary with cargo"
    SQLX_OFFLINE=true cargo build --release --locked
    cp "${CARGO_TARGET_DIR:-target}/release/customers-api" target/ci-instructions/customers-api
  fi
  bin=target/ci-instructions/customers-api
fi
CHECK=scripts/bench.d/instructions.json exec scripts/bench-instructions ci="$bin"
