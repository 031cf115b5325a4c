#!/bin/sh
# Installs a stand-in "application" of version $APP_VERSION under /opt/app.
set -eu
mkdir -p /opt/app/bin
cat > /opt/app/bin/app <<SCRIPT
#!/bin/sh
[ "\${1:-}" = "--version" ] && echo "app ${APP_VERSION}" && exit 0
echo "app ${APP_VERSION} running"
SCRIPT
chmod 0755 /opt/app/bin/app
