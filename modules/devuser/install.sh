#!/bin/sh
# Creates $DEVUSER_NAME. Works with useradd (Debian, Fedora, ...), busybox
# adduser (Alpine), or, with neither, by editing /etc/passwd, /etc/group and
# /etc/shadow directly (minimal busybox roots).
set -eu
name=$DEVUSER_NAME
uid=$DEVUSER_UID
home=/home/$name
if ! grep -q "^$name:" /etc/passwd; then
  if command -v useradd >/dev/null 2>&1; then
    useradd --create-home --uid "$uid" --shell "$DEVUSER_SHELL" --user-group "$name"
  elif adduser --help 2>&1 | grep -q -- '-D'; then
    adduser -D -u "$uid" -s "$DEVUSER_SHELL" -h "$home" "$name"
  else
    grep -q "^$name:" /etc/group || echo "$name:x:$uid:" >> /etc/group
    echo "$name:x:$uid:$uid::$home:$DEVUSER_SHELL" >> /etc/passwd
    [ -f /etc/shadow ] && echo "$name:!:19000:0:99999:7:::" >> /etc/shadow
    mkdir -p "$home"
    chown "$uid:$uid" "$home"
    chmod 0750 "$home"
  fi
fi
if [ -n "${DEVUSER_PASSWORD_HASH:-}" ] && [ -f /etc/shadow ]; then
  # Replace the password field of the user's shadow line.
  awk -F: -v OFS=: -v u="$name" -v h="$DEVUSER_PASSWORD_HASH" '$1 == u { $2 = h } { print }' /etc/shadow > /etc/shadow.new
  cat /etc/shadow.new > /etc/shadow
  rm -f /etc/shadow.new
fi
if [ -n "${DEVUSER_AUTHORIZED_KEYS:-}" ]; then
  mkdir -p "$home/.ssh"
  printf '%s\n' "$DEVUSER_AUTHORIZED_KEYS" > "$home/.ssh/authorized_keys"
  chmod 0700 "$home/.ssh"
  chmod 0600 "$home/.ssh/authorized_keys"
  chown -R "$uid:$uid" "$home/.ssh"
fi
if [ "$DEVUSER_SUDO" = "true" ]; then
  mkdir -p /etc/sudoers.d
  echo "$name ALL=(ALL) NOPASSWD:ALL" > "/etc/sudoers.d/$name"
  chmod 0440 "/etc/sudoers.d/$name"
fi
echo "devuser: $name (uid $uid) ready"
