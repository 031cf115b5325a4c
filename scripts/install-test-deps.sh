#!/usr/bin/env bash
# Installs the real peers the tests talk to. Idempotent and quiet when
# everything is already there.
set -euo pipefail

need_apt=()
command -v mke2fs >/dev/null 2>&1 || need_apt+=(e2fsprogs)
command -v debugfs >/dev/null 2>&1 || need_apt+=(e2fsprogs)
command -v qemu-img >/dev/null 2>&1 || need_apt+=(qemu-utils)
[ -x /bin/busybox ] || need_apt+=(busybox-static)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps: need root to install: ${need_apt[*]}" >&2
    exit 1
  fi
  echo "install-test-deps: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
