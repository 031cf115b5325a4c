#!/usr/bin/env bash
# Times the chroot builder on examples/local (two chained qcow2 images on a
# busybox rootfs): a build from scratch, a no-op apply, and a rebuild of the
# child only. Release build, best of 3. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/imgform/target}"
scripts/install-test-deps.sh
cargo build --release --locked -q
BIN="$CARGO_TARGET_DIR/release/imgform"
work=$(mktemp -d /tmp/imgform-local-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r examples/local "$work/local"
cp -r modules "$work/modules"
scripts/make-busybox-rootfs.sh "$work/local/rootfs/busybox.tar.gz" >/dev/null
sed -i 's|../../modules/|../modules/|' "$work/local/images.pkr.hcl"
best() { # best wall time of 3 runs of "$@", after running $PREP before each
  local b=""
  for _ in 1 2 3; do
    eval "$PREP"
    local s e
    s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
    local t; t=$(awk "BEGIN{print $e-$s}")
    if [ -z "$b" ] || awk "BEGIN{exit !($t < $b)}"; then b=$t; fi
  done
  printf '%.2f' "$b"
}
printf '| case | wall (s) |\n|---|---:|\n'
PREP="rm -rf '$work/local/output' '$work/local/state'"
printf '| build both images from scratch | %s |\n' "$(best "$BIN" apply --auto-approve -C "$work/local")"
PREP=":"
printf '| apply with no change | %s |\n' "$(best "$BIN" apply --auto-approve -C "$work/local")"
PREP="echo \"# \$RANDOM\" >> '$work/local/files/app.conf'"
printf '| rebuild the child only (one file changed) | %s |\n' "$(best "$BIN" apply --auto-approve -C "$work/local")"
