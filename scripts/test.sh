#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need
# (Debian packages), then runs every test against the real binary.
#
#   scripts/test.sh            # everything
#   scripts/test.sh core_loop  # extra args go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/imgform/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

scripts/install-test-deps.sh

cargo test --locked --all-targets -- "$@"
