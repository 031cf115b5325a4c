#!/bin/sh
# Sets the hardened options in /etc/ssh/sshd_config itself (replacing any
# existing, possibly commented, line) and in a drop-in for sshd versions
# that read /etc/ssh/sshd_config.d. Works whether or not sshd is installed
# yet: the settings are in place when it is.
set -eu
conf=/etc/ssh/sshd_config
mkdir -p /etc/ssh/sshd_config.d
[ -f "$conf" ] || printf '# created by imgform hardening-ssh\nInclude /etc/ssh/sshd_config.d/*.conf\n' > "$conf"
set_option() {
  key=$1 value=$2
  if grep -qiE "^[#[:space:]]*$key[[:space:]]" "$conf"; then
    sed -i -E "s|^[#[:space:]]*$key[[:space:]].*|$key $value|I" "$conf"
  else
    echo "$key $value" >> "$conf"
  fi
}
set_option PermitRootLogin "$PERMIT_ROOT_LOGIN"
set_option PasswordAuthentication "$PASSWORD_AUTHENTICATION"
set_option KbdInteractiveAuthentication no
set_option PermitEmptyPasswords no
set_option X11Forwarding no
set_option MaxAuthTries "$MAX_AUTH_TRIES"
cat > /etc/ssh/sshd_config.d/50-imgform-hardening.conf <<CONF
PermitRootLogin $PERMIT_ROOT_LOGIN
PasswordAuthentication $PASSWORD_AUTHENTICATION
KbdInteractiveAuthentication no
PermitEmptyPasswords no
X11Forwarding no
MaxAuthTries $MAX_AUTH_TRIES
CONF
chmod 0644 "$conf" /etc/ssh/sshd_config.d/50-imgform-hardening.conf
echo "hardening-ssh: PermitRootLogin $PERMIT_ROOT_LOGIN, PasswordAuthentication $PASSWORD_AUTHENTICATION"
