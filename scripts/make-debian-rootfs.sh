#!/usr/bin/env bash
# Makes a Debian bookworm root filesystem from Debian's packages
# (debootstrap), as a tarball, cached under /var/cache/imgform:
#
#   scripts/make-debian-rootfs.sh OUT.tar.gz          # minimal, with Python
#                                                     # (what Ansible needs):
#                                                     # about a minute, 100 MB
#   scripts/make-debian-rootfs.sh --cloud OUT.tar.gz  # a cloud image's root:
#                                                     # kernel, systemd, sshd,
#                                                     # cloud-init, the guest
#                                                     # agent, GRUB's BIOS and
#                                                     # EFI modules: 3-5 minutes,
#                                                     # ~300 MB to download
#
# Needs Debian's package mirror (the one apt uses here). The cloud root is
# left without anything that must differ per machine: no SSH host keys (cloud-init
# makes them at first boot), an empty machine-id, no apt lists or caches.
set -euo pipefail
profile=minimal
if [ "${1:-}" = "--cloud" ]; then
  profile=cloud
  shift
fi
out=${1:?usage: make-debian-rootfs.sh [--cloud] OUT.tar.gz}
case $profile in
  minimal) include=python3 ;;
  # python3-cffi-backend: debootstrap does not resolve the virtual package
  # python3-cryptography needs (through cloud-init).
  cloud) include=systemd-sysv,dbus,linux-image-amd64,initramfs-tools,openssh-server,cloud-init,python3-cffi-backend,qemu-guest-agent,ifupdown,isc-dhcp-client,netbase,grub-pc-bin,grub-efi-amd64-bin,sudo,ca-certificates ;;
esac
cache=/var/cache/imgform/debian-bookworm-$profile.tar.gz
[ "$profile" = minimal ] && cache=/var/cache/imgform/debian-bookworm-python3.tar.gz
# One maker at a time (two test processes may ask at once): the others wait
# on the lock, then find the finished tarball.
mkdir -p "$(dirname "$cache")"
exec 9>"$cache.lock"
flock 9
if [ ! -f "$cache" ]; then
  command -v debootstrap >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  work=$(mktemp -d)
  # debootstrap mounts /proc and /sys in the target; never delete through them.
  cleanup() {
    for m in $(awk -v w="$work" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do
      umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$work" "$cache.$$.tmp"
  }
  trap cleanup EXIT
  echo "make-debian-rootfs: debootstrap bookworm ($profile) from ${mirror:-http://deb.debian.org/debian}" >&2
  debootstrap --variant=minbase --include="$include" bookworm "$work/root" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    exit 1
  }
  root=$work/root
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
  if [ "$profile" = cloud ]; then
    rm -f "$root"/etc/ssh/ssh_host_*
    : >"$root/etc/machine-id"
    echo localhost >"$root/etc/hostname"
    printf 'auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n' >"$root/etc/network/interfaces"
    rm -rf "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/debootstrap
  fi
  tar --sort=name --numeric-owner --mtime=@1577836800 -C "$root" -czf "$cache.$$.tmp" .
  gzip -t "$cache.$$.tmp"
  mv "$cache.$$.tmp" "$cache"
fi
exec 9>&-
mkdir -p "$(dirname "$out")"
cp "$cache" "$out"
