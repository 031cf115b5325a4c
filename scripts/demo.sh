#!/usr/bin/env bash
# The main job on the embedded default (local chroot builder, local state):
# prepares a busybox root filesystem once (cached), then plans and applies
# examples/local, two chained qcow2 images. Needs root (chroot, mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/imgform/target}"
scripts/install-test-deps.sh
rootfs=examples/local/rootfs/busybox.tar.gz
[ -f "$rootfs" ] || scripts/make-busybox-rootfs.sh "$rootfs" >/dev/null
cargo build --release --locked -q
"$CARGO_TARGET_DIR/release/imgform" apply --auto-approve -C examples/local "$@"
echo
"$CARGO_TARGET_DIR/release/imgform" state list -C examples/local
