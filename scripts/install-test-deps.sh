#!/usr/bin/env bash
# Installs the real peers the tests talk to. Idempotent and quiet when
# everything is already there.
set -euo pipefail

need_apt=()
command -v mke2fs >/dev/null 2>&1 || need_apt+=(e2fsprogs)
command -v debugfs >/dev/null 2>&1 || need_apt+=(e2fsprogs)
command -v qemu-img >/dev/null 2>&1 || need_apt+=(qemu-utils)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
command -v xz >/dev/null 2>&1 || need_apt+=(xz-utils)
# A real OpenSSH sshd on a spare port stands in for build instances (the
# tests start it with their own config; no system service is used).
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
# sudo: the SSH tests run a provisioner through Packer's sudo execute_command.
command -v sudo >/dev/null 2>&1 || need_apt+=(sudo)
# Bootable images: partition tables (sfdisk), the EFI system partition
# (mkfs.vfat, mtools), NoCloud seeds and ISOs (xorriso), UEFI firmware (ovmf)
# for the boot check and the qemu builder.
command -v sfdisk >/dev/null 2>&1 || need_apt+=(fdisk)
command -v mkfs.vfat >/dev/null 2>&1 || need_apt+=(dosfstools)
command -v mcopy >/dev/null 2>&1 || need_apt+=(mtools)
command -v xorriso >/dev/null 2>&1 || need_apt+=(xorriso)
[ -f /usr/share/OVMF/OVMF_CODE.fd ] || [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need_apt+=(ovmf)

# QEMU boots images (the boot check, the qemu builder). Debian's
# qemu-system-x86 comes with its own qemu-utils: when a newer (backported)
# qemu-utils is installed, both are installed at Debian's version together.
need_qemu=
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_qemu=1

if [ ${#need_apt[@]} -gt 0 ] || [ -n "$need_qemu" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps: need root to install: ${need_apt[*]}${need_qemu:+ qemu-system-x86}" >&2
    exit 1
  fi
  echo "install-test-deps: installing ${need_apt[*]}${need_qemu:+ qemu-system-x86}" >&2
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

# Python's jsonschema (>= 4.18, with `referencing`) for tests/validate_json.py,
# which tests/json_schemas.rs runs to check every JSON document against
# schemas/. A Debian system Python refuses plain `pip install` (PEP 668): the
# package then goes to /usr/local with --break-system-packages, which leaves
# Debian's own packages alone.
if ! python3 -c 'import jsonschema, referencing' >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "install-test-deps: need root to install: python3-pip" >&2
      exit 1
    fi
    echo "install-test-deps: installing python3-pip" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null
  fi
  echo "install-test-deps: installing jsonschema (pip)" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'jsonschema>=4.18' 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'jsonschema>=4.18'
fi

# moto's S3 server for tests/s3_state.rs (the S3 state backend), started by
# each test on 127.0.0.1. Conditional writes (If-None-Match / If-Match on
# PutObject, If-Match on DeleteObject) need moto >= 5.0.20.
if ! python3 -c 'import moto.server, flask' >/dev/null 2>&1; then
  echo "install-test-deps: installing moto[server] (pip)" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5.0.20' 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'moto[server]>=5.0.20'
fi

# Ansible for the ansible provisioner's tests.
if ! command -v ansible-playbook >/dev/null 2>&1; then
  echo "install-test-deps: installing ansible-core (pip)" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'ansible-core>=2.15' 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'ansible-core>=2.15'
fi

# The OpenStack test peers (real Keystone and Glance in a virtualenv, the Nova
# double) for tests/openstack.rs; cached, a no-op when already installed.
"$(dirname "$0")/openstack-peers.sh" install

# diskimage-builder's own elements (vm, block-device-*, bootloader, ...) for
# the tests that use them as modules: the PyPI package, in a cached
# virtualenv; tests find its elements folder with
#   /var/cache/imgform/dib-venv/bin/python -c 'import diskimage_builder, os; print(os.path.dirname(diskimage_builder.__file__))'
dib_venv=/var/cache/imgform/dib-venv
if ! "$dib_venv/bin/python" -c 'import diskimage_builder' >/dev/null 2>&1; then
  echo "install-test-deps: installing diskimage-builder (pip, in $dib_venv)" >&2
  mkdir -p "$(dirname "$dib_venv")"
  python3 -m venv "$dib_venv" >/dev/null
  "$dib_venv/bin/pip" install --quiet --disable-pip-version-check diskimage-builder
fi
