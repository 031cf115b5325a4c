#!/usr/bin/env bash
# Installs the real peers the tests talk to. Idempotent and quiet when
# everything is already there.
set -euo pipefail

# What the main job needs (build tools, QEMU, debootstrap) comes first.
"$(dirname "$0")/install-deps.sh"

need_apt=()
[ -x /bin/busybox ] || need_apt+=(busybox-static)
# A real OpenSSH sshd on a spare port stands in for build instances (the
# tests start it with their own config; no system service is used).
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
# sudo: the SSH tests run a provisioner through Packer's sudo execute_command.
command -v sudo >/dev/null 2>&1 || need_apt+=(sudo)
# Chromium: tests/drift_page.rs renders `drift --html` headless and checks
# the screenshot. dpkg-deb (dpkg) builds the packages of tests/sbom.rs.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v dpkg-deb >/dev/null 2>&1 || need_apt+=(dpkg)
# unzip: tests/post_processors.rs reads the compress post-processor's zip
# with another tool than the one that wrote it.
command -v unzip >/dev/null 2>&1 || need_apt+=(unzip)

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

# The reference validators of the SBOM formats imgform writes, for
# tests/sbom.rs: CycloneDX's own Python library (its JSON schema validator)
# and the SPDX project's tools (parser and validator), from PyPI, in a cached
# virtualenv.
sbom_venv=/var/cache/imgform/sbom-venv
if ! "$sbom_venv/bin/python" -c 'import cyclonedx.validation.json, spdx_tools' >/dev/null 2>&1; then
  echo "install-test-deps: installing cyclonedx-python-lib and spdx-tools (pip, in $sbom_venv)" >&2
  mkdir -p "$(dirname "$sbom_venv")"
  python3 -m venv "$sbom_venv" >/dev/null
  "$sbom_venv/bin/pip" install --quiet --disable-pip-version-check 'cyclonedx-python-lib[json-validation]>=7' 'spdx-tools>=0.8'
fi
