#!/usr/bin/env bash
# Makes a tiny root filesystem tarball from Debian's busybox-static: enough
# for a chroot build (a shell, coreutils, tar, sed, adduser...). Installs
# busybox-static if missing. The tarball is reproducible (sorted entries,
# fixed times), so its hash — an input of every image built on it — is
# stable across machines with the same busybox.
#
#   scripts/make-busybox-rootfs.sh examples/local/rootfs/busybox.tar.gz
set -euo pipefail
out=${1:?usage: make-busybox-rootfs.sh OUT.tar.gz}
if [ ! -x /bin/busybox ]; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
  else
    echo "make-busybox-rootfs: install busybox-static first (apt-get install busybox-static)" >&2
    exit 1
  fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home,var/log,run,proc,sys,dev}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list-full); do
  [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
cat > "$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$root/etc/group" <<'G'
root:x:0:
sudo:x:27:
nogroup:x:65534:
G
printf 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' > "$root/etc/shadow"
chmod 0640 "$root/etc/shadow"
cat > "$root/etc/os-release" <<'O'
NAME="imgform busybox"
ID=busybox
PRETTY_NAME="busybox rootfs (made by imgform's scripts/make-busybox-rootfs.sh)"
O
mkdir -p "$(dirname "$out")"
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@1577836800 --format=gnu \
  -C "$root" -czf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
