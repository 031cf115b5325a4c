#!/usr/bin/env bash
# OpenStack test peers on 127.0.0.1 for imgform's `openstack` builder tests:
# a REAL Keystone and a REAL Glance (from PyPI, served by gunicorn) and a Nova
# (compute API) test double (tests/peers/nova_double.py). See
# tests/peers/README.md.
#
#   scripts/openstack-peers.sh install      # venv + DB templates, cached
#   scripts/openstack-peers.sh start DIR    # all three up; writes DIR/env,
#                                           # DIR/clouds.yaml, DIR/*.log
#   scripts/openstack-peers.sh stop DIR
#
# Environment: IMGFORM_OS_VENV (default /var/cache/imgform/openstack-venv),
# IMGFORM_OS_PYTHON (default /usr/bin/python3, else python3),
# IMGFORM_OS_TIMEOUT (seconds each service may take to come up, default 60).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IMGFORM_OS_VENV:-/var/cache/imgform/openstack-venv}"
if [ -z "${IMGFORM_OS_PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ]; then IMGFORM_OS_PYTHON=/usr/bin/python3; else IMGFORM_OS_PYTHON=python3; fi
fi
PY="$IMGFORM_OS_PYTHON"
TIMEOUT="${IMGFORM_OS_TIMEOUT:-60}"
TEMPLATE="$VENV/imgform-template"
VENV_STAMP="$VENV/.imgform-venv-stamp"
TEMPLATE_STAMP="$VENV/.imgform-template-stamp"
# Bump to force a new template (the stamps already cover the package list,
# the Python, the wrappers and the functions that build the template).
TEMPLATE_REV=1

ADMIN_USER=admin ADMIN_PASSWORD=secret ADMIN_PROJECT=admin REGION=RegionOne
DEMO_USER=demo DEMO_PASSWORD=demopass DEMO_PROJECT=demo
GLANCE_SVC_USER=glance GLANCE_SVC_PASSWORD=glance-secret
NOVA_SVC_USER=nova NOVA_SVC_PASSWORD=nova-secret SERVICE_PROJECT=service

say() { echo "openstack-peers: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Exact versions: Keystone 30.0.0 and Glance 33.0.0 (OpenStack 2026.2) with the
# rest resolved under OpenStack's upper-constraints (requirements master,
# 2026-08), then frozen. Installed with --no-deps, so this list is the venv.
lock_list() {
  cat <<'EOF'
alembic==1.19.1
amqp==5.3.1
aniso8601==10.0.1
attrs==26.1.0
automaton==3.4.0
autopage==0.6.0
bcrypt==5.0.0
blinker==1.9.0
cachetools==7.1.7
castellan==5.8.0
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.0
click==8.4.2
cliff==4.15.0
cmd2==4.2.0
cotyledon==2.2.0
cryptography==43.0.3
cursive==0.3.0
debtcollector==3.1.0
decorator==5.3.1
defusedxml==0.7.1
dnspython==2.8.0
dogpile.cache==1.5.0
elementpath==4.8.0
eventlet==0.41.2
fasteners==0.20
Flask==3.1.3
Flask-RESTful==0.3.10
futurist==3.5.0
glance==33.0.0
glance_store==5.6.0
greenlet==3.5.5
gunicorn==26.0.0
httplib2==0.32.0
idna==3.18
importlib_metadata==9.0.0
iso8601==2.1.0
itsdangerous==2.2.0
Jinja2==3.1.6
jmespath==1.1.0
jsonpatch==1.33
jsonpointer==3.1.1
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
keystone==30.0.0
keystoneauth1==5.15.0
keystonemiddleware==13.0.0
kombu==5.6.2
Mako==1.4.1
markdown-it-py==4.2.0
MarkupSafe==3.0.3
mdurl==0.1.2
msgpack==1.2.1
netaddr==1.3.0
networkx==3.6.1
oauthlib==3.3.1
openstacksdk==4.18.0
os-service-types==1.9.0
oslo.cache==4.3.0
oslo.concurrency==7.6.1
oslo.config==10.7.0
oslo.context==6.5.0
oslo.db==18.1.0
oslo.i18n==6.9.0
oslo.limit==2.12.0
oslo.log==8.3.0
oslo.messaging==18.2.0
oslo.metrics==0.16.0
oslo.middleware==8.2.0
oslo.policy==6.0.0
oslo.reports==3.9.0
oslo.serialization==5.11.0
oslo.service==4.8.0
oslo.upgradecheck==2.8.0
oslo.utils==10.1.1
osprofiler==4.4.0
packaging==26.3
Paste==3.10.1
PasteDeploy==3.1.0
pbr==7.0.3
platformdirs==4.11.3
prettytable==3.18.0
prometheus_client==0.26.0
prompt_toolkit==3.0.53
psutil==7.2.2
pycadf==4.1.0
pycparser==3.0
pydot==4.0.1
Pygments==2.20.0
PyJWT==2.13.0
pyOpenSSL==24.2.1
pyparsing==3.3.2
pyperclip==1.11.0
pysaml2==7.5.4
python-barbicanclient==7.5.0
python-dateutil==2.9.0.post0
python-keystoneclient==5.8.0
pytz==2026.3.post1
PyYAML==6.0.3
referencing==0.37.0
repoze-lru==0.8
requests==2.34.2
retrying==1.4.2
rfc3986==2.0.0
rich==15.0.0
rich-argparse==1.8.0
Routes==2.5.1
rpds-py==2026.6.3
setproctitle==1.3.7
simplegeneric==0.8.1
six==1.17.0
SQLAlchemy==2.0.52
statsd==4.0.1
stevedore==5.9.1
taskflow==6.3.0
tenacity==9.1.4
testresources==2.1.2
testscenarios==0.6.2
typing_extensions==4.16.0
tzdata==2026.3
urllib3==2.7.0
vine==5.1.0
wcwidth==0.8.2
WebOb==1.8.11
Werkzeug==3.1.8
wrapt==2.3.0
WSME==0.13.0
xmlschema==2.5.1
yappi==1.7.6
zipp==4.1.0
EOF
}
BASE_PKGS=(pip==26.3 setuptools==80.10.2 wheel==0.48.0)

# Small modules written into the venv's site-packages.
# oslo.config parses sys.argv when a service configures itself; under gunicorn
# that is gunicorn's command line, so the WSGI entry points reset it first.
wrapper_keystone() {
  cat <<'EOF'
"""imgform test peers: Keystone's WSGI app with gunicorn's argv hidden."""
import sys
sys.argv = sys.argv[:1]
from keystone.wsgi.api import application  # noqa: E402,F401
EOF
}
wrapper_glance() {
  cat <<'EOF'
"""imgform test peers: Glance's WSGI app with gunicorn's argv hidden.

Glance 33 has no standalone glance-api server any more (the console script
only prints an error); glance.wsgi.api:application is the supported entry.
"""
import sys
sys.argv = sys.argv[:1]
from glance.wsgi.api import application  # noqa: E402,F401
EOF
}
# Binds 127.0.0.1:0, writes the port, optionally waits for a file (the config
# that needs the port), then execs the server with {fd} replaced by the
# listening socket's fd: no window in which another process can take the port.
wrapper_bindexec() {
  cat <<'EOF'
"""imgform test peers: bind a free loopback port, then exec a server on it.

usage: python -m imgform_bindexec PORT_FILE WAIT_FILE|- -- CMD ARGS... ({fd})
"""
import os
import signal
import socket
import sys
import time


def main():
    # started in the background by a shell, which ignores SIGINT for us
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    port_file, wait_for, sep, *cmd = sys.argv[1:]
    assert sep == "--" and cmd, __doc__
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    os.set_inheritable(s.fileno(), True)
    with open(port_file + ".tmp", "w") as f:
        f.write("%d\n" % s.getsockname()[1])
    os.replace(port_file + ".tmp", port_file)
    if wait_for != "-":
        deadline = time.time() + 60
        while not os.path.exists(wait_for):
            if time.time() > deadline:
                sys.exit("imgform_bindexec: %s never appeared" % wait_for)
            time.sleep(0.02)
    cmd = [c.replace("{fd}", str(s.fileno())) for c in cmd]
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
EOF
}

venv_stamp() {
  {
    lock_list
    printf '%s\n' "${BASE_PKGS[@]}"
    echo "python=$PY $("$PY" -c 'import sys; print(sys.version)' 2>&1)"
  } | sha256sum | cut -d' ' -f1
}

template_stamp() {
  {
    echo "$1 rev=$TEMPLATE_REV"
    wrapper_keystone
    wrapper_glance
    wrapper_bindexec
    declare -f build_template keystone_conf provision gunicorn_cmd
  } | sha256sum | cut -d' ' -f1
}

stamp_is() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

ensure_venv_support() {
  if "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    return 0
  fi
  if dpkg -s python3-venv >/dev/null 2>&1; then
    die "$PY cannot create virtualenvs (no ensurepip) although python3-venv is installed; set IMGFORM_OS_PYTHON"
  fi
  [ "$(id -u)" = 0 ] || die "need root to apt-get install python3-venv"
  say "installing python3-venv (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
}

# The template's catalog holds these placeholders; `start` rewrites them.
PH_KEYSTONE=http://imgform-keystone.invalid
PH_GLANCE=http://imgform-glance.invalid
PH_NOVA=http://imgform-nova.invalid

# keystone_conf KEYSTONE_DIR
keystone_conf() {
  cat <<EOF
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///$1/keystone.db
[token]
provider = fernet
expiration = 14400
[fernet_tokens]
key_repository = $1/fernet-keys
[fernet_receipts]
key_repository = $1/fernet-keys
[credential]
key_repository = $1/credential-keys
[identity]
# bcrypt's minimum: password checks in ms, not 0.3 s
password_hash_rounds = 4
[cache]
# In-process cache (one gunicorn worker, so it stays coherent): without it
# every authenticated request costs hundreds of SQLite queries (~0.5 s).
enabled = true
backend = oslo_cache.dict
expiration_time = 600
EOF
}

# gunicorn 26 opens a control socket at ~/.gunicorn/gunicorn.ctl by default,
# one path for every instance: disabled. One worker (SQLite, in-process
# caches), threads for concurrent clients.
gunicorn_cmd() {
  GUNICORN=("$VENV/bin/gunicorn" --no-control-socket --bind "fd://{fd}"
    --workers 1 --worker-class gthread --threads 8 --timeout 300
    --graceful-timeout 1 --keep-alive 5 --access-logfile - --log-level info)
}

STARTED_PIDS=()
PIDFILE=""
DIR=""

# launch NAME LOG CMD...: in the background, in its own session (so that stop
# can signal the whole process group); sets LAST_PID.
launch() {
  local name="$1" log="$2"
  shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  LAST_PID=$!
  STARTED_PIDS+=("$LAST_PID")
  if [ -n "$PIDFILE" ]; then echo "$name $LAST_PID" >>"$PIDFILE"; fi
}

proc_is_ours() {
  # alive, and its command line is one of ours (guards against pid reuse)
  local pid="$1"
  [ -r "/proc/$pid/cmdline" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qE 'gunicorn|imgform_bindexec|nova_double\.py'
}

# kill_pids PID...: SIGINT to each process group (gunicorn: quick shutdown;
# TERM would wait up to --graceful-timeout for keep-alive connections), then
# SIGKILL for any still there after 15 s. (--graceful-timeout 1: a worker
# still finalizing after 1 s is killed by its master.)
kill_pids() {
  local pid left deadline
  for pid in "$@"; do
    proc_is_ours "$pid" || continue
    kill -INT -- "-$pid" 2>/dev/null || kill -INT "$pid" 2>/dev/null || true
  done
  deadline=$(($(date +%s) + 15))
  while :; do
    left=0
    for pid in "$@"; do
      if proc_is_ours "$pid"; then left=1; fi
    done
    [ "$left" = 0 ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
      for pid in "$@"; do
        proc_is_ours "$pid" || continue
        say "pid $pid did not stop on SIGINT; sending SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      done
      sleep 0.2
      break
    fi
    sleep 0.05
  done
  # reap the ones that are our children
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# start_fail NAME MESSAGE LOG: say why, show the log's tail, stop everything
# this run started, exit 1.
start_fail() {
  local name="$1" msg="$2" log="$3"
  # Stop what this run started first, and let no closed stderr (SIGPIPE,
  # EPIPE) cut this short.
  trap '' PIPE
  set +e
  if [ ${#STARTED_PIDS[@]} -gt 0 ]; then kill_pids "${STARTED_PIDS[@]}"; fi
  if [ -n "$PIDFILE" ]; then rm -f "$PIDFILE"; fi
  say "ERROR: $name: $msg"
  if [ -f "$log" ]; then
    say "---- last 40 lines of $log ----"
    tail -n 40 "$log" >&2
    say "----"
  fi
  exit 1
}

# wait_port_file NAME FILE PID LOG: sets PORT
wait_port_file() {
  local name="$1" file="$2" pid="$3" log="$4" deadline
  deadline=$(($(date +%s) + TIMEOUT))
  while [ ! -s "$file" ]; do
    kill -0 "$pid" 2>/dev/null || start_fail "$name" "exited before binding a port" "$log"
    [ "$(date +%s)" -lt "$deadline" ] || start_fail "$name" "no port after ${TIMEOUT}s" "$log"
    sleep 0.02
  done
  PORT="$(cat "$file")"
}

# wait_http NAME PID LOG URL EXPECTED_CODES [TOKEN]
wait_http() {
  local name="$1" pid="$2" log="$3" url="$4" codes="$5" token="${6:-}" code deadline left
  local hdr=()
  if [ -n "$token" ]; then hdr=(-H "X-Auth-Token: $token"); fi
  deadline=$(($(date +%s) + TIMEOUT))
  while :; do
    # the socket is listening before the app has loaded: a request waits in
    # its backlog, so bound each one by the time left
    left=$((deadline - $(date +%s)))
    [ "$left" -ge 1 ] || left=1
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time "$left" "${hdr[@]}" "$url" || true)"
    case " $codes " in *" $code "*) return 0 ;; esac
    kill -0 "$pid" 2>/dev/null ||
      start_fail "$name" "process $pid exited (last answer from $url: HTTP $code)" "$log"
    [ "$(date +%s)" -lt "$deadline" ] ||
      start_fail "$name" "no HTTP $codes from $url within ${TIMEOUT}s (last: HTTP $code)" "$log"
    sleep 0.1
  done
}

# admin_token KEYSTONE_URL: a project-scoped token for admin, or empty
admin_token() {
  local body
  body='{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"'$ADMIN_USER'","domain":{"name":"Default"},"password":"'$ADMIN_PASSWORD'"}}},"scope":{"project":{"name":"'$ADMIN_PROJECT'","domain":{"name":"Default"}}}}}'
  curl -s --max-time 30 -D - -o /dev/null -H 'Content-Type: application/json' \
    -d "$body" "$1/v3/auth/tokens" | grep -i '^x-subject-token:' | cut -d' ' -f2 | tr -d '\r' || true
}

# provision API_URL IDENTITY_URL IMAGE_URL COMPUTE_URL NETWORK_URL: services, endpoints
# (public/internal/admin, RegionOne), projects, users and roles, through
# Keystone's API.
provision() {
  "$VENV/bin/python" - "$@" "$ADMIN_USER" "$ADMIN_PASSWORD" "$ADMIN_PROJECT" \
    "$REGION" "$SERVICE_PROJECT" "$GLANCE_SVC_USER" "$GLANCE_SVC_PASSWORD" \
    "$NOVA_SVC_USER" "$NOVA_SVC_PASSWORD" "$DEMO_USER" "$DEMO_PASSWORD" \
    "$DEMO_PROJECT" <<'PY'
import json, sys, urllib.error, urllib.request

(api, identity_url, image_url, compute_url, network_url, admin_user, admin_pw,
 admin_project, region, service_project, glance_user, glance_pw, nova_user,
 nova_pw, demo_user, demo_pw, demo_project) = sys.argv[1:]
K = api + "/v3"


def call(method, path, body=None, token=None):
    hdrs = {"Content-Type": "application/json"}
    if token:
        hdrs["X-Auth-Token"] = token
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(K + path, data=data, method=method,
                                 headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return r.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        sys.exit("keystone %s %s -> HTTP %s: %s" % (method, path, e.code,
                                                     e.read()[:500]))


h, _ = call("POST", "/auth/tokens", {"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": admin_user, "domain": {"name": "Default"},
        "password": admin_pw}}},
    "scope": {"project": {"name": admin_project,
                          "domain": {"name": "Default"}}}}})
T = h["X-Subject-Token"]
roles = {r["name"]: r["id"] for r in call("GET", "/roles", token=T)[1]["roles"]}


def ensure(kind, plural, query, body):
    found = call("GET", "/%s?%s" % (plural, query), token=T)[1][plural]
    if found:
        return found[0]["id"]
    return call("POST", "/" + plural, {kind: body}, token=T)[1][kind]["id"]


def service(stype, name, url):
    sid = ensure("service", "services", "type=" + stype,
                 {"type": stype, "name": name, "enabled": True})
    for iface in ("public", "internal", "admin"):
        eps = call("GET", "/endpoints?service_id=%s&interface=%s"
                   % (sid, iface), token=T)[1]["endpoints"]
        if eps:
            call("PATCH", "/endpoints/" + eps[0]["id"], {"endpoint": {
                "url": url, "region_id": region}}, token=T)
        else:
            call("POST", "/endpoints", {"endpoint": {
                "service_id": sid, "interface": iface, "url": url,
                "region_id": region, "enabled": True}}, token=T)


def project(name):
    return ensure("project", "projects", "name=" + name,
                  {"name": name, "domain_id": "default", "enabled": True})


def user(name, pw, pid, role):
    uid = ensure("user", "users", "name=" + name,
                 {"name": name, "password": pw, "domain_id": "default",
                  "default_project_id": pid, "enabled": True})
    call("PUT", "/projects/%s/users/%s/roles/%s" % (pid, uid, roles[role]),
         token=T)


service("identity", "keystone", identity_url)
service("image", "glance", image_url)
service("compute", "nova", compute_url)
service("network", "neutron", network_url)
svc = project(service_project)
user(glance_user, glance_pw, svc, "service")
user(nova_user, nova_pw, svc, "service")
demo = project(demo_project)
user(demo_user, demo_pw, demo, "member")
PY
}

# The Keystone and Glance databases, made once by the real tools and copied
# by every start: keystone-manage db_sync, fernet_setup, credential_setup,
# bootstrap (admin/secret, project admin, region RegionOne), then the catalog
# (identity, image, compute, and network for the Nova double's Neutron stub;
# placeholder URLs), projects service and demo, and
# users glance, nova (role service) and demo (role member) through the API of
# a Keystone run for the purpose; glance-manage db_sync.
build_template() {
  local t="$1"
  rm -rf "$t"
  mkdir -p "$t/keystone" "$t/glance"
  keystone_conf "$t/keystone" >"$t/keystone/keystone.conf"
  cat >"$t/glance/glance-manage.conf" <<EOF
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///$t/glance/glance.db
EOF
  local km=("$VENV/bin/keystone-manage" --config-file "$t/keystone/keystone.conf")
  local u g
  u="$(id -un)" g="$(id -gn)"
  (
    "${km[@]}" db_sync &&
      "${km[@]}" fernet_setup --keystone-user "$u" --keystone-group "$g" &&
      "${km[@]}" credential_setup --keystone-user "$u" --keystone-group "$g" &&
      "${km[@]}" bootstrap --bootstrap-username "$ADMIN_USER" \
        --bootstrap-password "$ADMIN_PASSWORD" \
        --bootstrap-project-name "$ADMIN_PROJECT" --bootstrap-role-name admin \
        --bootstrap-service-name keystone --bootstrap-region-id "$REGION"
  ) >"$t/keystone/setup.log" 2>&1 &
  local kmpid=$!
  if ! "$VENV/bin/glance-manage" --config-file "$t/glance/glance-manage.conf" db_sync \
    >"$t/glance/setup.log" 2>&1; then
    tail -n 30 "$t/glance/setup.log" >&2
    wait "$kmpid" || true
    die "glance-manage db_sync failed"
  fi
  if ! wait "$kmpid"; then
    tail -n 30 "$t/keystone/setup.log" >&2
    die "keystone-manage (db_sync/fernet_setup/credential_setup/bootstrap) failed"
  fi

  gunicorn_cmd
  STARTED_PIDS=()
  launch keystone "$t/keystone/provision.log" \
    env OS_KEYSTONE_CONFIG_DIR="$t/keystone" "$VENV/bin/python" -m imgform_bindexec \
    "$t/keystone.port" - -- "${GUNICORN[@]}" --chdir "$t/keystone" \
    imgform_keystone_wsgi:application
  local kpid="$LAST_PID"
  wait_port_file keystone "$t/keystone.port" "$kpid" "$t/keystone/provision.log"
  local kurl="http://127.0.0.1:$PORT"
  wait_http keystone "$kpid" "$t/keystone/provision.log" "$kurl/v3" 200
  provision "$kurl" "$PH_KEYSTONE/v3" "$PH_GLANCE" "$PH_NOVA/v2.1" "$PH_NOVA/network" \
    2>>"$t/keystone/provision.log" ||
    start_fail keystone "registering the catalog and users failed" "$t/keystone/provision.log"
  kill_pids "${STARTED_PIDS[@]}"
  STARTED_PIDS=()
  rm -f "$t/keystone.port"
}

do_install() {
  local vs ts
  vs="$(venv_stamp)"
  ts="$(template_stamp "$vs")"
  if stamp_is "$VENV_STAMP" "$vs" && stamp_is "$TEMPLATE_STAMP" "$ts" && [ -d "$TEMPLATE" ]; then
    return 0
  fi
  mkdir -p "$(dirname "$VENV")"
  exec 9>"$VENV.lock"
  flock 9
  local t0
  t0="$(now)"
  if ! stamp_is "$VENV_STAMP" "$vs"; then
    ensure_venv_support
    say "creating $VENV (Keystone, Glance, gunicorn from PyPI; takes a minute or two)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    local pipq=(-q --disable-pip-version-check --no-input)
    "$VENV/bin/python" -m pip install "${pipq[@]}" "${BASE_PKGS[@]}" >&2
    lock_list >"$VENV/imgform-requirements.txt"
    "$VENV/bin/python" -m pip install "${pipq[@]}" --no-deps \
      -r "$VENV/imgform-requirements.txt" >&2
    local out
    out="$("$VENV/bin/python" -m pip check 2>&1)" || { echo "$out" >&2; die "pip check failed"; }
    [ -f "$VENV/etc/glance/glance-api-paste.ini" ] ||
      die "glance-api-paste.ini missing from the glance wheel"
    echo "$vs" >"$VENV_STAMP"
  fi
  if ! stamp_is "$TEMPLATE_STAMP" "$ts" || [ ! -d "$TEMPLATE" ]; then
    local sp
    sp="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    wrapper_keystone >"$sp/imgform_keystone_wsgi.py"
    wrapper_glance >"$sp/imgform_glance_wsgi.py"
    wrapper_bindexec >"$sp/imgform_bindexec.py"
    say "building the Keystone/Glance database templates"
    build_template "$TEMPLATE.tmp"
    rm -rf "$TEMPLATE"
    mv "$TEMPLATE.tmp" "$TEMPLATE"
    echo "$ts" >"$TEMPLATE_STAMP"
  fi
  exec 9>&-
  say "installed in $(elapsed "$t0") s"
}

do_start() {
  [ -n "${1:-}" ] || die "usage: $0 start DIR"
  local t0
  t0="$(now)"
  if ! command -v curl >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "need curl"
    say "installing curl (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl >/dev/null
  fi
  do_install
  mkdir -p "$1"
  DIR="$(cd "$1" && pwd)"
  PIDFILE="$DIR/pids"
  if [ -f "$PIDFILE" ]; then
    local name pid
    while read -r name pid; do
      if proc_is_ours "$pid"; then
        die "$DIR already has running peers ($name, pid $pid): stop them first"
      fi
    done <"$PIDFILE"
    rm -f "$PIDFILE"
  fi
  rm -rf "$DIR/keystone" "$DIR/glance"
  rm -f "$DIR"/*.port "$DIR/env" "$DIR/clouds.yaml" "$DIR"/*.log "$DIR/authorized_keys"
  mkdir -p "$DIR/keystone" "$DIR/glance"/{images,staging,tasks,cache,locks}
  cp -a "$TEMPLATE/keystone/keystone.db" "$TEMPLATE/keystone/fernet-keys" \
    "$TEMPLATE/keystone/credential-keys" "$DIR/keystone/"
  cp -a "$TEMPLATE/glance/glance.db" "$DIR/glance/"
  keystone_conf "$DIR/keystone" >"$DIR/keystone/keystone.conf"
  gunicorn_cmd

  # Each server gets its listening socket from imgform_bindexec, which binds
  # a free port, reports it, and waits for a file before exec'ing gunicorn:
  # the ports are known (and can't be taken) before any configuration that
  # names them is written.
  launch keystone "$DIR/keystone.log" \
    env OS_KEYSTONE_CONFIG_DIR="$DIR/keystone" "$VENV/bin/python" -m imgform_bindexec \
    "$DIR/keystone.port" "$DIR/keystone/go" -- "${GUNICORN[@]}" --chdir "$DIR/keystone" \
    imgform_keystone_wsgi:application
  local kpid="$LAST_PID"
  launch glance "$DIR/glance.log" \
    env OS_GLANCE_CONFIG_DIR="$DIR/glance" "$VENV/bin/python" -m imgform_bindexec \
    "$DIR/glance.port" "$DIR/glance/glance-api.conf" -- "${GUNICORN[@]}" --chdir "$DIR/glance" \
    imgform_glance_wsgi:application
  local gpid="$LAST_PID"
  wait_port_file keystone "$DIR/keystone.port" "$kpid" "$DIR/keystone.log"
  local kport="$PORT" kurl="http://127.0.0.1:$PORT"
  wait_port_file glance "$DIR/glance.port" "$gpid" "$DIR/glance.log"
  local gport="$PORT" gurl="http://127.0.0.1:$PORT"

  launch nova "$DIR/nova.log" \
    "$VENV/bin/python" -u "$ROOT/tests/peers/nova_double.py" \
    --port 0 --port-file "$DIR/nova.port" --keystone-url "$kurl/v3" \
    --username "$NOVA_SVC_USER" --password "$NOVA_SVC_PASSWORD" \
    --project-name "$SERVICE_PROJECT" --glance-url "$gurl" \
    --authorized-keys-file "$DIR/authorized_keys"
  local npid="$LAST_PID"
  wait_port_file nova "$DIR/nova.port" "$npid" "$DIR/nova.log"
  local nport="$PORT" nurl="http://127.0.0.1:$PORT/v2.1"

  # The catalog: the template's endpoints, pointed at this run's ports.
  "$VENV/bin/python" - "$DIR/keystone/keystone.db" "$PH_KEYSTONE" "$kurl" \
    "$PH_GLANCE" "$gurl" "$PH_NOVA" "http://127.0.0.1:$nport" <<'PY' ||
import sqlite3, sys
db, *pairs = sys.argv[1:]
con = sqlite3.connect(db)
n = 0
for old, new in zip(pairs[::2], pairs[1::2]):
    n += con.execute("UPDATE endpoint SET url = ? || substr(url, ?) "
                     "WHERE substr(url, 1, ?) = ?",
                     (new, len(old) + 1, len(old), old)).rowcount
con.commit()
if n != 12:
    sys.exit("expected 12 catalog endpoints to point at the ports, found %d" % n)
PY
    start_fail keystone "rewriting the catalog in $DIR/keystone/keystone.db failed" "$DIR/keystone.log"
  touch "$DIR/keystone/go"

  cat >"$DIR/glance/glance-api.conf.tmp" <<EOF
[DEFAULT]
use_stderr = true
public_endpoint = $gurl
worker_self_reference_url = $gurl
enabled_backends = fs:file
image_cache_dir = $DIR/glance/cache
[database]
connection = sqlite:///$DIR/glance/glance.db
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $DIR/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $DIR/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $DIR/glance/tasks
[oslo_concurrency]
lock_path = $DIR/glance/locks
[paste_deploy]
flavor = keystone
config_file = $VENV/etc/glance/glance-api-paste.ini
[keystone_authtoken]
www_authenticate_uri = $kurl/v3
auth_url = $kurl
auth_type = password
username = $GLANCE_SVC_USER
password = $GLANCE_SVC_PASSWORD
project_name = $SERVICE_PROJECT
user_domain_name = Default
project_domain_name = Default
EOF
  mv "$DIR/glance/glance-api.conf.tmp" "$DIR/glance/glance-api.conf"

  wait_http keystone "$kpid" "$DIR/keystone.log" "$kurl/v3" 200
  local token
  token="$(admin_token "$kurl")"
  [ -n "$token" ] || start_fail keystone "no token for $ADMIN_USER" "$DIR/keystone.log"
  # Up means usable: Glance and Nova each validate a token at Keystone.
  wait_http glance "$gpid" "$DIR/glance.log" "$gurl/v2/images" 200 "$token"
  wait_http nova "$npid" "$DIR/nova.log" "$nurl/flavors" 200 "$token"

  {
    printf '%s=%q\n' \
      OS_AUTH_URL "$kurl/v3" \
      OS_USERNAME "$ADMIN_USER" \
      OS_PASSWORD "$ADMIN_PASSWORD" \
      OS_PROJECT_NAME "$ADMIN_PROJECT" \
      OS_USER_DOMAIN_NAME Default \
      OS_PROJECT_DOMAIN_NAME Default \
      OS_REGION_NAME "$REGION" \
      OS_IDENTITY_API_VERSION 3 \
      OS_INTERFACE public \
      OS_GLANCE_URL "$gurl" \
      OS_NOVA_URL "$nurl" \
      OS_NOVA_STATE_URL "$nurl/_double/state" \
      OS_NETWORK_URL "http://127.0.0.1:$nport/network" \
      OS_NOVA_AUTHORIZED_KEYS "$DIR/authorized_keys" \
      OS_KEYSTONE_PORT "$kport" \
      OS_GLANCE_PORT "$gport" \
      OS_NOVA_PORT "$nport" \
      OS_KEYSTONE_PID "$kpid" \
      OS_GLANCE_PID "$gpid" \
      OS_NOVA_PID "$npid" \
      OS_DEMO_USERNAME "$DEMO_USER" \
      OS_DEMO_PASSWORD "$DEMO_PASSWORD" \
      OS_DEMO_PROJECT_NAME "$DEMO_PROJECT"
  } >"$DIR/env.tmp"
  mv "$DIR/env.tmp" "$DIR/env"
  cat >"$DIR/clouds.yaml" <<EOF
clouds:
  imgform-test:
    auth:
      auth_url: $kurl/v3
      username: $ADMIN_USER
      password: $ADMIN_PASSWORD
      project_name: $ADMIN_PROJECT
      user_domain_name: Default
      project_domain_name: Default
    region_name: $REGION
    interface: public
    identity_api_version: 3
EOF
  say "up in $(elapsed "$t0") s: keystone $kurl/v3 (pid $kpid), glance $gurl (pid $gpid), nova double $nurl (pid $npid); env in $DIR/env"
}

do_stop() {
  [ -n "${1:-}" ] || die "usage: $0 stop DIR"
  [ -d "$1" ] || die "no such directory: $1"
  DIR="$(cd "$1" && pwd)"
  if [ ! -f "$DIR/pids" ]; then
    say "nothing recorded in $DIR/pids: nothing to stop"
    return 0
  fi
  local t0 pids=() name pid
  t0="$(now)"
  while read -r name pid; do pids+=("$pid"); done <"$DIR/pids"
  if [ ${#pids[@]} -gt 0 ]; then kill_pids "${pids[@]}"; fi
  rm -f "$DIR/pids"
  say "stopped in $(elapsed "$t0") s"
}

case "${1:-}" in
  install) do_install ;;
  start)
    shift
    do_start "$@"
    ;;
  stop)
    shift
    do_stop "$@"
    ;;
  *)
    echo "usage: $0 install | start DIR | stop DIR" >&2
    exit 2
    ;;
esac
