#!/bin/sh
# Installs cloud-init with the image's package manager, enables its services
# and sets the datasource list. Images without a package manager (a bare
# busybox root) are skipped with a note unless CLOUD_INIT_REQUIRED=true.
set -eu
if command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cloud-init
elif command -v dnf >/dev/null 2>&1; then
  dnf install -y -q cloud-init
elif command -v yum >/dev/null 2>&1; then
  yum install -y -q cloud-init
elif command -v zypper >/dev/null 2>&1; then
  zypper --non-interactive install cloud-init
elif command -v apk >/dev/null 2>&1; then
  apk add --no-cache cloud-init
  command -v setup-cloud-init >/dev/null 2>&1 && setup-cloud-init
else
  if [ "$CLOUD_INIT_REQUIRED" = "true" ]; then
    echo "cloud-init: no package manager in this image (apt-get, dnf, yum, zypper, apk)" >&2
    exit 1
  fi
  echo "cloud-init: no package manager in this image; skipped"
  exit 0
fi
mkdir -p /etc/cloud/cloud.cfg.d
printf 'datasource_list: [ %s ]\n' "$CLOUD_INIT_DATASOURCES" > /etc/cloud/cloud.cfg.d/90-imgform-datasources.cfg
if command -v systemctl >/dev/null 2>&1; then
  for unit in cloud-init-local cloud-init cloud-config cloud-final; do
    systemctl enable "$unit.service" >/dev/null 2>&1 || true
  done
fi
echo "cloud-init: installed and enabled"
