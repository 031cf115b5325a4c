#!/usr/bin/env bash
# The main job on the embedded default (local chroot builder, local state):
# makes a Debian cloud root filesystem once (debootstrap from Debian's
# mirror, cached), plans and applies examples/local — a bootable Debian base
# image and an app image on top of it, each booted in QEMU and checked
# before it is recorded — then boots the app image by itself (BIOS, no
# -kernel) and shows what it serves. Needs root (chroot, mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/imgform/target}"
scripts/install-deps.sh
rootfs=examples/local/rootfs/debian-cloud.tar.gz
[ -f "$rootfs" ] || scripts/make-debian-rootfs.sh --cloud "$rootfs"
# imgform on PATH (scripts/install.sh: a debug build in the shared target dir,
# installed as /usr/local/bin/imgform); the local builder's time is in
# mke2fs, tar and QEMU, not in imgform.
scripts/install.sh
imgform=$(PATH="${PREFIX:-/usr/local}/bin:$HOME/.local/bin:$PATH" command -v imgform)
echo "demo: using $imgform ($("$imgform" --version))" >&2
"$imgform" apply --auto-approve -C examples/local "$@"
echo
"$imgform" state list -C examples/local

# Boot the app image as a cloud would (a copy-on-write snapshot: the image
# itself is not written) and ask its web app for its page.
app=$("$imgform" state show --json -C examples/local golden.chroot.app |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["record"]["artifact"]["id"])')
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
ssh_port=$(free_port)
console=$(mktemp)
echo
echo "demo: booting examples/local/$app (serial console in $console)" >&2
qemu-system-x86_64 -m 1024 -smp 2 -display none -nodefaults -snapshot \
  -drive "file=examples/local/$app,if=virtio,format=qcow2" \
  -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:8080,hostfwd=tcp:127.0.0.1:$ssh_port-:22" \
  -device virtio-net-pci,netdev=net0 -serial "file:$console" 2>"$console.qemu" &
qemu=$!
trap 'kill $qemu 2>/dev/null || true; rm -f "$console" "$console.qemu"' EXIT
started=$(date +%s)
until page=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/', timeout=3).read().decode(), end='')" 2>/dev/null); do
  if ! kill -0 $qemu 2>/dev/null || [ $(($(date +%s) - started)) -gt 600 ]; then
    echo "demo: the app image did not serve its page; its console said:" >&2
    tail -20 "$console" "$console.qemu" >&2
    exit 1
  fi
  sleep 2
done
echo "demo: after $(($(date +%s) - started))s the app image serves on port 8080: $page"
banner=$(python3 -c "import socket; s = socket.create_connection(('127.0.0.1', $ssh_port), 5); s.settimeout(10); print(s.recv(64).decode().strip())" 2>/dev/null || true)
echo "demo: its SSH server answers: ${banner:-(no answer yet)}"
grep -a -m1 'login:' "$console" | tr -d '\r' || true
