#!/usr/bin/env bash
# Scale benchmarks of issue 16, side by side (see benches/scale.py and
# benches/README.md): plan N-scaling and memory, first apply N-scaling,
# imgform vs the Terraform twin and vs the sha256sum / stat-walk floors, a
# 200 MiB tree. Medians of alternating runs; ratios are what to compare.
#
#   benches/scale_bench.sh                       # all cases
#   benches/scale_bench.sh plan                  # one case: plan | apply | tree
#   BASE_BIN=/path/to/old/imgform benches/scale_bench.sh plan   # also an older binary
#   ROUNDS=7 benches/scale_bench.sh
#
# The release binary is built without the cloud SDK features (they take most of
# a cold build and play no part in these workloads); FEATURES=default builds all.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/imgform/target}"
if [ "${FEATURES:-}" = default ]; then
  cargo build --release --locked -q
else
  cargo build --release --locked -q --no-default-features
fi
args=(--bin "$CARGO_TARGET_DIR/release/imgform" --rounds "${ROUNDS:-5}")
[ -n "${BASE_BIN:-}" ] && args+=(--base-bin "$BASE_BIN")
exec python3 benches/scale.py "${args[@]}" "$@"
