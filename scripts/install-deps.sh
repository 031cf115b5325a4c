#!/usr/bin/env bash
# Installs what the main job (scripts/demo.sh: the chroot builder making
# bootable images, and their boot check) needs, from Debian's packages.
# Idempotent and quiet when everything is already there. The test suite
# needs more: scripts/install-test-deps.sh installs it (and runs this).
set -euo pipefail

need_apt=()
command -v mke2fs >/dev/null 2>&1 || need_apt+=(e2fsprogs)
command -v debugfs >/dev/null 2>&1 || need_apt+=(e2fsprogs)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
command -v xz >/dev/null 2>&1 || need_apt+=(xz-utils)
# The Debian root filesystem of the example (scripts/make-debian-rootfs.sh).
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
# Bootable disks: partition tables (sfdisk), the EFI system partition
# (mkfs.vfat, mtools); the boot check's NoCloud seed (xorriso) and UEFI
# firmware (ovmf).
command -v sfdisk >/dev/null 2>&1 || need_apt+=(fdisk)
command -v mkfs.vfat >/dev/null 2>&1 || need_apt+=(dosfstools)
command -v mcopy >/dev/null 2>&1 || need_apt+=(mtools)
command -v xorriso >/dev/null 2>&1 || need_apt+=(xorriso)
[ -f /usr/share/OVMF/OVMF_CODE.fd ] || [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need_apt+=(ovmf)
# QEMU boots the images. Debian's qemu-system-x86 comes with its own
# qemu-utils (qemu-img): when a newer (backported) qemu-utils is installed,
# both are installed at Debian's version together.
need_qemu=
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_qemu=1
command -v qemu-img >/dev/null 2>&1 || need_qemu=1

if [ ${#need_apt[@]} -gt 0 ] || [ -n "$need_qemu" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install: ${need_apt[*]}${need_qemu:+ qemu-system-x86 qemu-utils}" >&2
    exit 1
  fi
  echo "install-deps: installing ${need_apt[*]}${need_qemu:+ qemu-system-x86 qemu-utils}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  fi
  if [ -n "$need_qemu" ]; then
    qemu_version=$(apt-cache policy qemu-system-x86 | sed -n 's/ *Candidate: //p')
    apt-get install -y -qq --no-install-recommends --allow-downgrades \
      qemu-system-x86 "qemu-utils=$qemu_version" >/dev/null
  fi
fi
