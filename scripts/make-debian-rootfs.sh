#!/usr/bin/env bash
# Makes a minimal Debian root filesystem with Python (what Ansible modules
# need inside a target), as a tarball, cached: debootstrap --variant=minbase
# --include=python3. About a minute and 100 MB the first time.
#
#   scripts/make-debian-rootfs.sh OUT.tar.gz
set -euo pipefail
out=${1:?usage: make-debian-rootfs.sh OUT.tar.gz}
cache=/var/cache/imgform/debian-bookworm-python3.tar.gz
if [ ! -f "$cache" ]; then
  command -v debootstrap >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  debootstrap --variant=minbase --include=python3 bookworm "$work/root" "${mirror:-http://deb.debian.org/debian}" >/dev/null
  rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
  mkdir -p "$(dirname "$cache")"
  tar --sort=name --numeric-owner --mtime=@1577836800 -C "$work/root" -czf "$cache.tmp" .
  mv "$cache.tmp" "$cache"
fi
mkdir -p "$(dirname "$out")"
cp "$cache" "$out"
