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
# A debug build: it shares the test suite's build and compiles much faster
# than an optimised one; the local builder's time is in mke2fs and tar anyway.
cargo build --locked -q
"$CARGO_TARGET_DIR/debug/imgform" apply --auto-approve -C examples/local "$@"
echo
"$CARGO_TARGET_DIR/debug/imgform" state list -C examples/local
