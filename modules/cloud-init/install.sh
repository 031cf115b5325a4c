#!/bin/sh
# Installs cloud-init with the image's package manager (unless it is there
# already), enables its services and sets the datasource list. Images
# without a package manager (a bare busybox root) are skipped with a note
# unless CLOUD_INIT_REQUIRED=true.
set -eu
if command -v cloud-init >/dev/null 2>&1; then
  : # already installed (e.g. a cloud root filesystem): only configure it
elif command -v apt-get >/dev/null 2>&1; then
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
# With `None` in the list, cloud-init runs even where no datasource answers
# (a local VM without a seed): network by DHCP, SSH host keys made at first
# boot. Otherwise ds-identify would turn cloud-init off there.
case ", $CLOUD_INIT_DATASOURCES," in
  *", None,"*)
    printf 'policy: search,found=all,maybe=all,notfound=enabled\n' > /etc/cloud/ds-identify.cfg
    ;;
esac
if command -v systemctl >/dev/null 2>&1; then
  for unit in cloud-init-local cloud-init cloud-config cloud-final; do
    systemctl enable "$unit.service" >/dev/null 2>&1 || true
  done
fi
echo "cloud-init: installed and enabled"
