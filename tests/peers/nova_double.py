#!/usr/bin/env python3
"""A TEST DOUBLE of OpenStack Nova's compute API, for imgform's integration tests.

This is NOT Nova. It runs no virtual machine, has no scheduler, no Neutron and
no hypervisor. It keeps servers and key pairs in memory and answers the small
part of the compute API v2.1 that imgform's `openstack` builder uses, in Nova's
wire format, so that a real client (rust-openstack/osauth, openstacksdk) can
talk to it. It is started by `scripts/openstack-peers.sh start DIR` next to a
REAL Keystone and a REAL Glance.

What is real about it:
  * every request's X-Auth-Token is validated against the real Keystone
    (GET /v3/auth/tokens with X-Subject-Token), with the double's own service
    token (or, without service credentials, the token itself);
  * createImage creates a real image in the real Glance (v2 API, with the
    caller's token): POST /v2/images, then PUT /v2/images/{id}/file with a
    small, valid qcow2 file whose first data cluster holds a deterministic
    payload derived from the server's base image id and the server id (see
    snapshot_payload()), so the image goes `queued` -> `active` like a Nova
    snapshot does;
  * imageRef on server create is checked against Glance (exists and active).

What is fake:
  * a "server" is a record: BUILD for --build-seconds (default 1 s), then
    ACTIVE, with one fixed address (--server-ip, default 127.0.0.1) on network
    `private`; the SSH endpoint of every server is whatever sshd the test runs
    on that address. So that such an sshd accepts exactly the key pairs that
    exist here, --authorized-keys-file PATH is rewritten (one public key a
    line) whenever key pairs change;
  * os-stop/os-start/reboot only change the status (after --action-seconds);
  * delete marks the server deleted after --delete-seconds; it then answers 404.

Routes (all also under a /v2.1/{project_id}/ prefix; the catalog URL is
http://HOST:PORT/v2.1, without project id):
  GET  /  and  /v2.1[/]                      version documents (2.1 .. 2.90)
  GET  /v2.1/flavors[/detail]  /flavors/{id}  [/os-extra_specs]
  GET|POST /v2.1/os-keypairs   GET|DELETE /v2.1/os-keypairs/{name}
  GET|POST /v2.1/servers       GET /v2.1/servers/detail
  GET|DELETE /v2.1/servers/{id}
  POST /v2.1/servers/{id}/action   os-stop, os-start, reboot, createImage
  GET  /v2.1/os-availability-zone   /v2.1/limits
  GET  /v2.1/_double/state     everything, deleted items included (no auth)
  GET  /network[/v2.0/networks[/{id}]]  a read-only Neutron stub with one
       network, `private` (catalog type `network`, URL http://HOST:PORT/network);
       ports, subnets, floatingips, security-groups, routers list empty
Anything else answers a Nova-style JSON fault (404 itemNotFound, or 501
notImplemented for a known resource's unimplemented action).

Python standard library only (plus ssh-keygen for generated key pairs).
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 90)

FLAVORS = [
    # id, name, ram MiB, vcpus, disk GiB
    ("1", "m1.tiny", 512, 1, 1),
    ("2", "m1.small", 2048, 1, 20),
    ("3", "m1.medium", 4096, 2, 40),
    ("4", "m1.large", 8192, 4, 80),
]

KEYPAIR_NAME_RE = re.compile(r"^[a-zA-Z0-9 _.@-]{1,255}$")
SSH_KEY_TYPES = {
    "ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
}
HEX32_RE = re.compile(r"^[0-9a-fA-F]{32}$")
PRIVATE_NETWORK_ID = str(uuid.uuid5(uuid.NAMESPACE_URL,
                                    "imgform-nova-double/network/private"))

FAULT_NAMES = {
    400: "badRequest", 401: "unauthorized", 403: "forbidden",
    404: "itemNotFound", 405: "badMethod", 409: "conflictingRequest",
    413: "overLimit", 415: "badMediaType", 429: "overLimit",
    501: "notImplemented", 503: "serviceUnavailable",
}


def log(msg):
    sys.stderr.write("%s nova-double: %s\n" % (
        datetime.datetime.now().isoformat(timespec="milliseconds"), msg))
    sys.stderr.flush()


def isotime(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")


def nova_usage_time(ts):
    # Nova's OS-SRV-USG times have microseconds and no zone.
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%S.%f")


class ApiError(Exception):
    def __init__(self, code, message, headers=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


# --------------------------------------------------------------------------
# qcow2 snapshot payload


def snapshot_payload(base_image_id, server_id):
    """The deterministic content of the first 64 KiB of a snapshot's disk.

    A text header line, then bytes from SHA-256 in counter mode, seeded with
    "{base_image_id}:{server_id}", to fill one 64 KiB cluster.
    """
    seed = ("%s:%s" % (base_image_id or "", server_id)).encode()
    head = b"IMGFORM-NOVA-DOUBLE-SNAPSHOT base_image=%s server=%s\n" % (
        (base_image_id or "").encode(), server_id.encode())
    out = bytearray(head)
    counter = 0
    while len(out) < 65536:
        out += hashlib.sha256(seed + struct.pack(">Q", counter)).digest()
        counter += 1
    return bytes(out[:65536])


def make_qcow2(virtual_size, data):
    """A valid qcow2 (v3, 64 KiB clusters) whose first cluster holds `data`.

    Layout: cluster 0 header, 1 refcount table, 2 refcount block, 3 L1 table,
    4 L2 table, 5 data. `qemu-img check` finds no errors in it.
    """
    cs = 65536
    assert len(data) <= cs
    l2_entries = cs // 8
    l1_size = max(1, -(-virtual_size // (cs * l2_entries)))
    copied = 1 << 63
    header = struct.pack(
        ">4sIQIIQIIQQIIQQQQII",
        b"QFI\xfb", 3,          # magic, version
        0, 0,                   # backing file offset, size
        16,                     # cluster_bits
        virtual_size,
        0,                      # crypt_method
        l1_size, 3 * cs,        # L1 size, offset
        1 * cs, 1,              # refcount table offset, clusters
        0, 0,                   # snapshots
        0, 0, 0,                # incompatible, compatible, autoclear features
        4,                      # refcount_order (16-bit)
        104,                    # header_length
    )
    header += struct.pack(">II", 0, 0)  # end of header extensions
    clusters = [bytearray(cs) for _ in range(6)]
    clusters[0][:len(header)] = header
    clusters[1][0:8] = struct.pack(">Q", 2 * cs)
    for i in range(6):
        clusters[2][2 * i:2 * i + 2] = struct.pack(">H", 1)
    clusters[3][0:8] = struct.pack(">Q", (4 * cs) | copied)
    clusters[4][0:8] = struct.pack(">Q", (5 * cs) | copied)
    clusters[5][:len(data)] = data
    return b"".join(bytes(c) for c in clusters)


# --------------------------------------------------------------------------
# Keystone and Glance clients


def http_json(method, url, body=None, headers=None, timeout=30, raw=None):
    hdrs = dict(headers or {})
    data = None
    if raw is not None:
        data = raw
    elif body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = resp.read()
            return resp.status, dict(resp.headers.items()), \
                (json.loads(payload) if payload.strip() else None)
    except urllib.error.HTTPError as e:
        payload = e.read()
        try:
            parsed = json.loads(payload) if payload.strip() else None
        except ValueError:
            parsed = {"raw": payload.decode("utf-8", "replace")}
        return e.code, dict(e.headers.items()), parsed


class Keystone:
    def __init__(self, url, username, password, project_name,
                 user_domain, project_domain):
        url = url.rstrip("/")
        if url.endswith("/v3"):
            url = url[:-3]
        self.base = url
        self.username = username
        self.password = password
        self.project_name = project_name
        self.user_domain = user_domain
        self.project_domain = project_domain
        self.lock = threading.Lock()
        self.service_token = None
        self.service_expires = 0.0
        self.cache = {}  # token -> (checked_at, token_body)

    def _get_service_token(self, force=False):
        if not self.username:
            return None
        with self.lock:
            if not force and self.service_token and \
                    time.time() < self.service_expires - 300:
                return self.service_token
            body = {"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": self.username,
                    "domain": {"name": self.user_domain},
                    "password": self.password}}},
                "scope": {"project": {
                    "name": self.project_name,
                    "domain": {"name": self.project_domain}}}}}
            status, hdrs, data = http_json(
                "POST", self.base + "/v3/auth/tokens?nocatalog", body)
            if status != 201:
                raise ApiError(503, "nova-double cannot authenticate its "
                               "service user at Keystone: HTTP %s %s"
                               % (status, data))
            token = hdrs.get("X-Subject-Token") or hdrs.get("x-subject-token")
            self.service_token = token
            self.service_expires = parse_time(data["token"]["expires_at"])
            return token

    def validate(self, token):
        """The token body ({"token": {...}}) or raise ApiError(401)."""
        now = time.time()
        hit = self.cache.get(token)
        if hit and now - hit[0] < 30 and \
                parse_time(hit[1]["expires_at"]) > now:
            return hit[1]
        for attempt in range(2):
            service = self._get_service_token(force=attempt > 0) or token
            status, _, data = http_json(
                "GET", self.base + "/v3/auth/tokens",
                headers={"X-Auth-Token": service, "X-Subject-Token": token})
            if status == 200:
                self.cache[token] = (now, data["token"])
                if len(self.cache) > 1000:
                    self.cache.clear()
                return data["token"]
            if status == 401 and self.username and attempt == 0:
                continue  # our own token may have expired: retry once
            break
        raise ApiError(401, "The request you have made requires "
                       "authentication.")

    def catalog_url(self, token, service_type, interface="public"):
        status, _, data = http_json(
            "GET", self.base + "/v3/auth/catalog",
            headers={"X-Auth-Token": token})
        if status != 200:
            return None
        for svc in data.get("catalog", []):
            if svc.get("type") == service_type:
                for ep in svc.get("endpoints", []):
                    if ep.get("interface") == interface:
                        return ep["url"]
        return None


def parse_time(s):
    s = s.replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(s).timestamp()


# --------------------------------------------------------------------------
# State


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.servers = {}     # id -> dict
        self.keypairs = []    # list of dicts (deleted ones stay, marked)
        self.images = []      # snapshot records
        self.keypair_seq = 0
        self.started = time.time()
        self.write_authorized_keys()

    # --- time-driven transitions
    def tick(self, srv, now=None):
        now = now or time.time()
        pend = srv.get("pending")
        if srv["status"] == "BUILD" and now >= srv["build_done_at"]:
            srv["status"] = "ACTIVE"
            srv["vm_state"] = "active"
            srv["task_state"] = None
            srv["power_state"] = 1
            srv["launched_at"] = srv["build_done_at"]
            srv["updated"] = srv["build_done_at"]
        if pend and now >= pend["at"]:
            srv.update(pend["set"])
            srv["updated"] = pend["at"]
            srv["pending"] = None
        if srv.get("delete_at") and now >= srv["delete_at"] and \
                not srv["deleted"]:
            srv["deleted"] = True
            srv["status"] = "DELETED"
            srv["vm_state"] = "deleted"
            srv["task_state"] = None
            srv["power_state"] = 0
            srv["terminated_at"] = srv["delete_at"]
            srv["updated"] = srv["delete_at"]

    def live_server(self, sid, project_id):
        srv = self.servers.get(sid)
        if srv is not None:
            self.tick(srv)
        if srv is None or srv["deleted"] or srv["project_id"] != project_id:
            raise ApiError(404, "Instance %s could not be found." % sid)
        return srv

    # --- key pairs
    def live_keypairs(self, user_id=None):
        return [k for k in self.keypairs if not k["deleted"] and
                (user_id is None or k["user_id"] == user_id)]

    def write_authorized_keys(self):
        path = self.args.authorized_keys_file
        if not path:
            return
        lines = "".join(k["public_key"].strip() + "\n"
                        for k in self.live_keypairs())
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".authorized_keys.")
        with os.fdopen(fd, "w") as f:
            f.write(lines)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def dump(self):
        with self.lock:
            for srv in self.servers.values():
                self.tick(srv)
            servers = []
            for s in sorted(self.servers.values(), key=lambda s: s["created"]):
                d = {k: v for k, v in s.items() if k != "pending"}
                d["created"] = isotime(s["created"])
                d["updated"] = isotime(s["updated"])
                servers.append(d)
            return {"servers": servers,
                    "keypairs": [dict(k) for k in self.keypairs],
                    "images": [dict(i) for i in self.images]}


# --------------------------------------------------------------------------
# HTTP


def parse_version(s):
    m = re.match(r"^\s*(\d+)\.(\d+)\s*$", s)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nova-double/1"
    sys_version = ""

    # ----- plumbing
    def log_message(self, fmt, *args):
        log("%s %s" % (self.address_string(), fmt % args))

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def json_body(self):
        raw = self.body
        if not raw.strip():
            raise ApiError(400, "The request body is empty or not JSON.")
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "Malformed request body")
        if not isinstance(body, dict):
            raise ApiError(400, "Malformed request body")
        return body

    def send(self, code, body=None, headers=None):
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-openstack-request-id", self.request_id)
        self.send_header("x-compute-request-id", self.request_id)
        if self.microversion is not None:
            v = "%d.%d" % self.microversion
            self.send_header("OpenStack-API-Version", "compute " + v)
            self.send_header("X-OpenStack-Nova-API-Version", v)
            self.send_header("Vary",
                             "OpenStack-API-Version, "
                             "X-OpenStack-Nova-API-Version")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def fault(self, code, message, headers=None):
        if code == 401:
            # keystonemiddleware's shape, as real Nova answers.
            body = {"error": {"code": 401, "title": "Unauthorized",
                              "message": message}}
            hdrs = {"WWW-Authenticate": 'Keystone uri="%s"'
                    % self.server.state.args.keystone_url}
        else:
            name = FAULT_NAMES.get(code, "computeFault")
            body = {name: {"code": code, "message": message}}
            hdrs = {}
        hdrs.update(headers or {})
        self.send(code, body, hdrs)

    def base_url(self):
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        return "http://%s" % host

    # ----- microversions
    def negotiate(self):
        want = None
        new = self.headers.get("OpenStack-API-Version")
        if new:
            for part in new.split(","):
                bits = part.strip().split(None, 1)
                if len(bits) == 2 and bits[0].lower() == "compute":
                    want = bits[1].strip()
        if want is None:
            want = self.headers.get("X-OpenStack-Nova-API-Version")
        if want is None:
            return MIN_VERSION
        if want.strip().lower() == "latest":
            return MAX_VERSION
        v = parse_version(want)
        if v is None:
            self.microversion = None
            raise ApiError(400, "API Version String %s is of invalid format. "
                           "Must be of format MajorNum.MinorNum." % want)
        if not (MIN_VERSION <= v <= MAX_VERSION):
            self.microversion = None
            raise ApiError(406, "Version %d.%d is not supported by the API. "
                           "Minimum is %d.%d and maximum is %d.%d."
                           % (v + MIN_VERSION + MAX_VERSION))
        return v

    def mv(self, major, minor):
        return self.microversion >= (major, minor)

    # ----- pagination (limit/marker, as clients like rust-openstack page
    # until an empty page: ignoring the marker would loop them forever)
    def paginate(self, items, key, collection):
        marker = self.query.get("marker", [None])[-1]
        limit = self.query.get("limit", [None])[-1]
        if marker is not None:
            idx = next((i for i, it in enumerate(items) if key(it) == marker),
                       None)
            if idx is None:
                raise ApiError(400, "marker [%s] not found" % marker)
            items = items[idx + 1:]
        links = None
        if limit is not None:
            try:
                n = int(limit)
                if n < 0:
                    raise ValueError
            except ValueError:
                raise ApiError(400, "Invalid input for query parameters "
                               "limit. Value: %s." % limit)
            n = min(n, 1000)
            items = items[:n]
            if n and len(items) == n:
                q = {k: v[-1] for k, v in self.query.items()}
                q["marker"] = key(items[-1])
                links = [{"rel": "next", "href": "%s/v2.1/%s?%s" % (
                    self.base_url(), collection, urllib.parse.urlencode(q))}]
        return items, links

    # ----- version documents
    def version_doc(self):
        base = self.base_url()
        return {
            "id": "v2.1", "status": "CURRENT",
            "version": "%d.%d" % MAX_VERSION,
            "min_version": "%d.%d" % MIN_VERSION,
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": base + "/v2.1/"},
                      {"rel": "describedby", "type": "text/html",
                       "href": "http://docs.openstack.org/"}],
            "media-types": [{
                "base": "application/json",
                "type": "application/vnd.openstack.compute+json;version=2.1"}],
        }

    # ----- dispatch
    def dispatch(self, method):
        self.request_id = "req-" + str(uuid.uuid4())
        self.microversion = None
        try:
            self.body = self.read_body()
            self.route(method)
        except ApiError as e:
            self.fault(e.code, e.message, e.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # noqa: BLE001
            log("internal error: %r" % e)
            import traceback
            traceback.print_exc()
            try:
                self.fault(500, "Unexpected API Error: %r" % e)
            except Exception:  # noqa: BLE001
                pass

    def route(self, method):
        state = self.server.state
        url = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(url.query)
        path = url.path.rstrip("/")
        segs = [urllib.parse.unquote(s) for s in path.split("/") if s]

        if not segs:
            if method not in ("GET", "HEAD"):
                raise ApiError(405, "Method not allowed")
            return self.send(200, {"versions": [self.version_doc()]})
        if segs[0] == "network":
            return self.route_network(method, segs[1:], url.path)
        if segs[0] != "v2.1":
            raise ApiError(404, "Resource %s could not be found." % url.path)
        segs = segs[1:]
        if segs[:2] == ["_double", "state"] and len(segs) == 2:
            with state.lock:
                return self.send(200, state.dump())

        # optional /v2.1/{project_id}/ prefix
        url_project = None
        if segs and segs[0] not in COLLECTIONS and HEX32_RE.match(segs[0]):
            url_project = segs[0]
            segs = segs[1:]

        if not segs:
            if method not in ("GET", "HEAD"):
                raise ApiError(405, "Method not allowed")
            return self.send(200, {"version": self.version_doc()})

        self.microversion = self.negotiate()
        self.authenticate()
        if url_project and url_project != self.project_id:
            raise ApiError(400, "Malformed request URL: URL's project_id "
                           "'%s' doesn't match Context's project_id '%s'"
                           % (url_project, self.project_id))

        handler = None
        args = []
        head = segs[0]
        rest = segs[1:]
        if head == "flavors":
            handler, args = self.route_flavors(method, rest)
        elif head == "os-keypairs":
            handler, args = self.route_keypairs(method, rest)
        elif head == "servers":
            handler, args = self.route_servers(method, rest)
        elif head == "os-availability-zone" and method == "GET":
            handler = self.h_availability_zones
        elif head == "limits" and method == "GET":
            handler = self.h_limits
        if handler is None:
            if head in COLLECTIONS:
                raise ApiError(501, "The nova test double does not "
                               "implement %s %s" % (method, url.path))
            raise ApiError(404, "The resource could not be found.")
        with state.lock:
            return handler(*args)

    def authenticate(self):
        token = self.headers.get("X-Auth-Token")
        if not token:
            raise ApiError(401, "The request you have made requires "
                           "authentication.")
        self.token = token
        self.auth = self.server.state.keystone.validate(token)
        project = self.auth.get("project")
        if not project:
            raise ApiError(403, "A project-scoped token is required.")
        self.project_id = project["id"]
        self.project_name = project.get("name")
        self.user_id = self.auth["user"]["id"]
        self.user_name = self.auth["user"].get("name")
        self.roles = {r["name"] for r in self.auth.get("roles", [])}

    # ----- a read-only Neutron stub under /network (catalog type `network`),
    # so that clients that resolve networks by name or id (rust-openstack
    # does, for NICs) find the one network, `private`, that servers show.
    def route_network(self, method, segs, path):
        base = self.base_url() + "/network"
        if not segs:
            if method not in ("GET", "HEAD"):
                raise ApiError(405, "Method not allowed")
            return self.send(200, {"versions": [{
                "id": "v2.0", "status": "CURRENT",
                "links": [{"rel": "self", "href": base + "/v2.0/"}]}]})
        if segs[0] != "v2.0":
            raise ApiError(404, "Resource %s could not be found." % path)
        self.authenticate()
        rest = segs[1:]
        if method == "GET" and rest == ["networks"]:
            nets = [n for n in self.networks()
                    if all(str(n.get(k)) == v[-1] for k, v in
                           self.query.items() if k in ("id", "name", "status",
                                                       "shared"))]
            return self.send(200, {"networks": nets})
        if method == "GET" and len(rest) == 2 and rest[0] == "networks":
            for n in self.networks():
                if n["id"] == rest[1]:
                    return self.send(200, {"network": n})
            return self.send(404, {"NeutronError": {
                "type": "NetworkNotFound", "detail": "",
                "message": "Network %s could not be found." % rest[1]}})
        if method == "GET" and len(rest) == 1 and rest[0] in (
                "ports", "subnets", "floatingips", "security-groups",
                "routers"):
            return self.send(200, {rest[0].replace("-", "_"): []})
        return self.send(404 if method == "GET" else 501, {"NeutronError": {
            "type": "HTTPNotFound" if method == "GET" else "NotImplemented",
            "detail": "", "message": "The nova test double's network stub "
            "does not implement %s %s" % (method, path)}})

    def networks(self):
        now = isotime(self.server.state.started)
        return [{"id": PRIVATE_NETWORK_ID, "name": "private",
                 "status": "ACTIVE", "admin_state_up": True, "shared": True,
                 "router:external": False, "mtu": 1500,
                 "project_id": self.project_id, "tenant_id": self.project_id,
                 "subnets": [], "availability_zones": ["nova"],
                 "description": "", "port_security_enabled": True,
                 "created_at": now, "updated_at": now}]

    def route_flavors(self, method, rest):
        if method != "GET":
            return None, []
        if not rest:
            return self.h_flavors, [False]
        if rest == ["detail"]:
            return self.h_flavors, [True]
        if len(rest) == 1:
            return self.h_flavor, [rest[0]]
        if len(rest) == 2 and rest[1] == "os-extra_specs":
            return self.h_flavor_extra_specs, [rest[0]]
        return None, []

    def route_keypairs(self, method, rest):
        if not rest:
            return {"GET": (self.h_keypairs, []),
                    "POST": (self.h_keypair_create, [])}.get(method,
                                                              (None, []))
        if len(rest) == 1:
            return {"GET": (self.h_keypair, [rest[0]]),
                    "DELETE": (self.h_keypair_delete, [rest[0]])}.get(
                        method, (None, []))
        return None, []

    def route_servers(self, method, rest):
        if not rest:
            return {"GET": (self.h_servers, [False]),
                    "POST": (self.h_server_create, [])}.get(method, (None, []))
        if rest == ["detail"] and method == "GET":
            return self.h_servers, [True]
        if len(rest) == 1:
            return {"GET": (self.h_server, [rest[0]]),
                    "DELETE": (self.h_server_delete, [rest[0]])}.get(
                        method, (None, []))
        if len(rest) == 2 and rest[1] == "action" and method == "POST":
            return self.h_server_action, [rest[0]]
        if len(rest) == 2 and rest[1] == "metadata" and method == "GET":
            return self.h_server_metadata, [rest[0]]
        return None, []

    # ----- flavors
    def flavor_links(self, fid):
        base = self.base_url()
        return [{"rel": "self", "href": "%s/v2.1/flavors/%s" % (base, fid)},
                {"rel": "bookmark", "href": "%s/flavors/%s" % (base, fid)}]

    def flavor_view(self, f, detail):
        fid, name, ram, vcpus, disk = f
        d = {"id": fid, "name": name, "links": self.flavor_links(fid)}
        if self.mv(2, 55):
            d["description"] = None
        if not detail:
            return d
        d.update({
            "ram": ram, "vcpus": vcpus, "disk": disk,
            "swap": 0 if self.mv(2, 75) else "",
            "OS-FLV-EXT-DATA:ephemeral": 0,
            "OS-FLV-DISABLED:disabled": False,
            "os-flavor-access:is_public": True,
            "rxtx_factor": 1.0,
        })
        if self.mv(2, 61):
            d["extra_specs"] = {}
        return d

    def find_flavor(self, ref):
        ref = str(ref).rstrip("/").rsplit("/", 1)[-1]
        for f in FLAVORS:
            if f[0] == ref:
                return f
        return None

    def h_flavors(self, detail):
        items, links = self.paginate(
            list(FLAVORS), lambda f: f[0],
            "flavors/detail" if detail else "flavors")
        body = {"flavors": [self.flavor_view(f, detail) for f in items]}
        if links:
            body["flavors_links"] = links
        return self.send(200, body)

    def h_flavor(self, fid):
        f = self.find_flavor(fid)
        if f is None:
            raise ApiError(404, "Flavor %s could not be found." % fid)
        return self.send(200, {"flavor": self.flavor_view(f, True)})

    def h_flavor_extra_specs(self, fid):
        if self.find_flavor(fid) is None:
            raise ApiError(404, "Flavor %s could not be found." % fid)
        return self.send(200, {"extra_specs": {}})

    # ----- key pairs
    def keypair_view(self, k, detail):
        d = {"name": k["name"], "public_key": k["public_key"],
             "fingerprint": k["fingerprint"]}
        if self.mv(2, 2):
            d["type"] = k["type"]
        if detail:
            d.update({"user_id": k["user_id"], "id": k["id"],
                      "deleted": False, "created_at": k["created_at"],
                      "updated_at": None, "deleted_at": None})
        return d

    def find_keypair(self, name):
        for k in self.server.state.live_keypairs(self.user_id):
            if k["name"] == name:
                return k
        return None

    def h_keypairs(self):
        keys = sorted(self.server.state.live_keypairs(self.user_id),
                      key=lambda k: k["name"])
        keys, links = self.paginate(keys, lambda k: k["name"], "os-keypairs")
        body = {"keypairs": [{"keypair": self.keypair_view(k, False)}
                             for k in keys]}
        if links:
            body["keypairs_links"] = links
        return self.send(200, body)

    def h_keypair(self, name):
        k = self.find_keypair(name)
        if k is None:
            raise ApiError(404, "Keypair %s not found for user %s"
                           % (name, self.user_id))
        return self.send(200, {"keypair": self.keypair_view(k, True)})

    def h_keypair_delete(self, name):
        k = self.find_keypair(name)
        if k is None:
            raise ApiError(404, "Keypair %s not found for user %s"
                           % (name, self.user_id))
        k["deleted"] = True
        k["deleted_at"] = isotime(time.time())
        self.server.state.write_authorized_keys()
        log("keypair %r deleted" % name)
        return self.send(202 if not self.mv(2, 2) else 204)

    def h_keypair_create(self):
        body = self.json_body().get("keypair")
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid input for field/attribute keypair.")
        name = body.get("name")
        if not isinstance(name, str) or not KEYPAIR_NAME_RE.match(name) \
                or name.strip() != name:
            raise ApiError(400, "Invalid input for field/attribute name.")
        ktype = body.get("type", "ssh")
        if ktype not in ("ssh", "x509"):
            raise ApiError(400, "Invalid input for field/attribute type.")
        if ktype != "ssh":
            raise ApiError(501, "The nova test double only does ssh keys.")
        if self.find_keypair(name) is not None:
            raise ApiError(409, "Key pair '%s' already exists." % name)
        private_key = None
        public_key = body.get("public_key")
        if public_key is None:
            public_key, private_key = generate_keypair(name)
        elif not isinstance(public_key, str):
            raise ApiError(400, "Invalid input for field/attribute "
                           "public_key.")
        public_key = public_key.strip()
        fingerprint = ssh_fingerprint(public_key)
        state = self.server.state
        state.keypair_seq += 1
        k = {"id": state.keypair_seq, "name": name, "user_id": self.user_id,
             "type": ktype, "public_key": public_key,
             "fingerprint": fingerprint, "created_at": isotime(time.time()),
             "deleted": False, "deleted_at": None,
             "generated": private_key is not None}
        state.keypairs.append(k)
        state.write_authorized_keys()
        log("keypair %r created (%s)" % (
            name, "generated" if private_key else "imported"))
        view = self.keypair_view(k, False)
        view["user_id"] = self.user_id
        if private_key:
            view["private_key"] = private_key
        return self.send(201 if self.mv(2, 2) else 200, {"keypair": view})

    # ----- servers
    def server_links(self, sid):
        base = self.base_url()
        return [{"rel": "self",
                 "href": "%s/v2.1/servers/%s" % (base, sid)},
                {"rel": "bookmark",
                 "href": "%s/servers/%s" % (base, sid)}]

    def server_view(self, s, detail):
        d = {"id": s["id"], "name": s["name"],
             "links": self.server_links(s["id"])}
        if not detail:
            return d
        args = self.server.state.args
        f = self.find_flavor(s["flavor_id"])
        if self.mv(2, 47):
            flavor = {"vcpus": f[3], "ram": f[2], "disk": f[4],
                      "ephemeral": 0, "swap": 0, "original_name": f[1],
                      "extra_specs": {}}
        else:
            flavor = {"id": f[0], "links": self.flavor_links(f[0])}
        base = self.base_url()
        if s["image_id"]:
            image = {"id": s["image_id"], "links": [{
                "rel": "bookmark", "href": "%s/images/%s" % (base,
                                                            s["image_id"])}]}
        else:
            image = ""
        networked = s["status"] != "BUILD"
        addresses = {}
        if networked:
            addresses = {"private": [{
                "version": 4, "addr": args.server_ip,
                "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": s["mac"]}]}
        d.update({
            "status": s["status"],
            "tenant_id": s["project_id"],
            "user_id": s["user_id"],
            "metadata": s["metadata"],
            "hostId": hashlib.sha224(
                (s["project_id"] + "nova-double").encode()).hexdigest(),
            "image": image,
            "flavor": flavor,
            "created": isotime(s["created"]),
            "updated": isotime(s["updated"]),
            "addresses": addresses,
            "accessIPv4": args.server_ip if networked else "",
            "accessIPv6": "",
            "OS-DCF:diskConfig": "MANUAL",
            "progress": 0 if s["status"] == "BUILD" else 100,
            "OS-EXT-AZ:availability_zone": s["availability_zone"],
            "config_drive": "True" if s["config_drive"] else "",
            "key_name": s["key_name"],
            "OS-SRV-USG:launched_at": nova_usage_time(s["launched_at"]),
            "OS-SRV-USG:terminated_at": nova_usage_time(s["terminated_at"]),
            "OS-EXT-STS:task_state": s["task_state"],
            "OS-EXT-STS:vm_state": s["vm_state"],
            "OS-EXT-STS:power_state": s["power_state"],
            "os-extended-volumes:volumes_attached": [],
            "security_groups": [{"name": g} for g in s["security_groups"]],
        })
        if self.mv(2, 9):
            d["locked"] = False
        if self.mv(2, 19):
            d["description"] = s["description"]
        if self.mv(2, 26):
            d["tags"] = []
        if self.mv(2, 63):
            d["trusted_image_certificates"] = None
        if self.mv(2, 73):
            d["locked_reason"] = None
        return d

    def h_servers(self, detail):
        state = self.server.state
        name_re = None
        if "name" in self.query:
            try:
                name_re = re.compile(self.query["name"][-1])
            except re.error:
                name_re = re.compile(re.escape(self.query["name"][-1]))
        status = self.query.get("status", [None])[-1]
        image = self.query.get("image", [None])[-1]
        flavor = self.query.get("flavor", [None])[-1]
        out = []
        for s in sorted(state.servers.values(),
                        key=lambda s: (-s["created"], s["id"])):
            state.tick(s)
            if s["deleted"] or s["project_id"] != self.project_id:
                continue
            if name_re and not name_re.search(s["name"]):
                continue
            if status and s["status"] != status.upper():
                continue
            if image and s["image_id"] != image:
                continue
            if flavor and s["flavor_id"] != flavor:
                continue
            out.append(s)
        out, links = self.paginate(out, lambda s: s["id"],
                                   "servers/detail" if detail else "servers")
        body = {"servers": [self.server_view(s, detail) for s in out]}
        if links:
            body["servers_links"] = links
        return self.send(200, body)

    def h_server(self, sid):
        s = self.server.state.live_server(sid, self.project_id)
        view = self.server_view(s, True)
        if self.mv(2, 71):
            view["server_groups"] = []
        return self.send(200, {"server": view})

    def h_server_metadata(self, sid):
        s = self.server.state.live_server(sid, self.project_id)
        return self.send(200, {"metadata": s["metadata"]})

    def h_server_create(self):
        state = self.server.state
        args = state.args
        body = self.json_body().get("server")
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid input for field/attribute server.")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise ApiError(400, "Invalid input for field/attribute name.")
        flavor = self.find_flavor(body.get("flavorRef", ""))
        if flavor is None:
            raise ApiError(400, "Flavor %s could not be found."
                           % body.get("flavorRef"))
        image_ref = body.get("imageRef")
        if image_ref in (None, ""):
            if not body.get("block_device_mapping_v2"):
                raise ApiError(400, "Missing imageRef attribute")
            raise ApiError(501, "The nova test double does not boot from "
                           "volume (block_device_mapping_v2).")
        image_id = str(image_ref).rstrip("/").rsplit("/", 1)[-1]
        key_name = body.get("key_name")
        if key_name is not None:
            k = self.find_keypair(key_name)
            if k is None:
                raise ApiError(400, "Invalid key_name provided.")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 255
                and len(v) <= 255 for k, v in metadata.items()):
            raise ApiError(400, "Invalid input for field/attribute metadata.")
        user_data = body.get("user_data")
        if user_data is not None:
            try:
                base64.b64decode(user_data, validate=True)
            except Exception:  # noqa: BLE001
                raise ApiError(400, "Invalid input for field/attribute "
                               "user_data. Value: %s. "
                               "'%s' is not a 'base64'" % (user_data,
                                                           user_data))
            if len(user_data) > 65535:
                raise ApiError(400, "user_data is too long.")
        networks = body.get("networks")
        if self.mv(2, 37) and networks is None:
            raise ApiError(400, "Invalid input for field/attribute server. "
                           "'networks' is a required property")
        if networks is not None and not (
                networks in ("auto", "none") or isinstance(networks, list)):
            raise ApiError(400, "Invalid input for field/attribute networks.")
        for nic in networks if isinstance(networks, list) else []:
            if not isinstance(nic, dict):
                raise ApiError(400, "Invalid input for field/attribute "
                               "networks.")
            if "port" in nic:
                raise ApiError(400, "Port %s could not be found." % nic["port"])
            if "uuid" in nic and nic["uuid"] != PRIVATE_NETWORK_ID:
                raise ApiError(400, "Network %s could not be found."
                               % nic["uuid"])
        sgs = body.get("security_groups") or [{"name": "default"}]
        if not isinstance(sgs, list) or not all(
                isinstance(g, dict) and isinstance(g.get("name"), str)
                for g in sgs):
            raise ApiError(400, "Invalid input for field/attribute "
                           "security_groups.")
        cd = body.get("config_drive", False)
        if isinstance(cd, str):
            cd = cd.strip().lower() in ("true", "1", "yes", "t", "y", "on")
        az = body.get("availability_zone") or args.availability_zones[0]
        az = az.split(":", 1)[0]
        if az not in args.availability_zones:
            raise ApiError(400, "The requested availability zone is not "
                           "available")
        description = body.get("description")
        self.check_image(image_id)

        now = time.time()
        sid = str(uuid.uuid4())
        mac = "fa:16:3e:%02x:%02x:%02x" % tuple(uuid.UUID(sid).bytes[:3])
        s = {
            "id": sid, "name": name, "project_id": self.project_id,
            "user_id": self.user_id, "image_id": image_id,
            "flavor_id": flavor[0], "key_name": key_name,
            "key_public_key": (self.find_keypair(key_name) or {}).get(
                "public_key") if key_name else None,
            "networks": networks, "metadata": dict(metadata),
            "user_data": user_data,
            "security_groups": [g["name"] for g in sgs],
            "config_drive": bool(cd), "availability_zone": az,
            "description": description,
            "created": now, "updated": now,
            "build_done_at": now + args.build_seconds,
            "status": "BUILD", "vm_state": "building",
            "task_state": "scheduling", "power_state": 0,
            "launched_at": None, "terminated_at": None,
            "deleted": False, "delete_at": None, "pending": None,
            "mac": mac, "admin_pass": uuid.uuid4().hex[:12],
            "actions": [],
        }
        state.servers[sid] = s
        log("server %s %r created (image %s, flavor %s, key %s)"
            % (sid, name, image_id, flavor[0], key_name))
        body = {"server": {
            "id": sid, "links": self.server_links(sid),
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": [{"name": g} for g in s["security_groups"]],
            "adminPass": s["admin_pass"]}}
        return self.send(202, body, {
            "Location": "%s/v2.1/servers/%s" % (self.base_url(), sid)})

    def check_image(self, image_id):
        glance = self.glance_url()
        if not glance:
            return None
        status, _, data = http_json(
            "GET", "%s/v2/images/%s" % (glance, urllib.parse.quote(image_id)),
            headers={"X-Auth-Token": self.token})
        if status == 404:
            raise ApiError(400, "Image %s could not be found." % image_id)
        if status != 200:
            raise ApiError(400, "Image %s could not be checked in Glance: "
                           "HTTP %s" % (image_id, status))
        if data.get("status") != "active":
            raise ApiError(400, "Image %s is not active." % image_id)
        return data

    def glance_url(self):
        args = self.server.state.args
        if args.glance_url:
            return args.glance_url.rstrip("/")
        url = self.server.state.keystone.catalog_url(self.token, "image")
        return url.rstrip("/") if url else None

    def h_server_delete(self, sid):
        s = self.server.state.live_server(sid, self.project_id)
        if s.get("delete_at"):
            return self.send(204)
        args = self.server.state.args
        s["task_state"] = "deleting"
        s["delete_at"] = time.time() + args.delete_seconds
        s["updated"] = time.time()
        log("server %s deleted" % sid)
        return self.send(204)

    def h_server_action(self, sid):
        state = self.server.state
        args = state.args
        s = state.live_server(sid, self.project_id)
        body = self.json_body()
        if len(body) != 1:
            raise ApiError(400, "There is no such action: %s"
                           % ",".join(body) if body else "empty action")
        action, params = next(iter(body.items()))
        s["actions"].append({"action": action, "at": isotime(time.time())})
        pending = s.get("pending") or s.get("delete_at")

        def conflict(what):
            if s["task_state"]:
                raise ApiError(409, "Cannot '%s' instance %s while it is in "
                               "task_state %s" % (what, sid, s["task_state"]))
            raise ApiError(409, "Cannot '%s' instance %s while it is in "
                           "vm_state %s" % (what, sid, s["vm_state"]))

        if action == "os-stop":
            if s["status"] != "ACTIVE" or pending:
                conflict("stop")
            s["task_state"] = "powering-off"
            s["pending"] = {"at": time.time() + args.action_seconds, "set": {
                "status": "SHUTOFF", "vm_state": "stopped",
                "task_state": None, "power_state": 4}}
            log("server %s stopping" % sid)
            return self.send(202)
        if action == "os-start":
            if s["status"] != "SHUTOFF" or pending:
                conflict("start")
            s["task_state"] = "powering-on"
            s["pending"] = {"at": time.time() + args.action_seconds, "set": {
                "status": "ACTIVE", "vm_state": "active",
                "task_state": None, "power_state": 1}}
            log("server %s starting" % sid)
            return self.send(202)
        if action == "reboot":
            if s["status"] not in ("ACTIVE", "SHUTOFF") or pending:
                conflict("reboot")
            hard = isinstance(params, dict) and \
                str(params.get("type", "")).upper() == "HARD"
            s["status"] = "HARD_REBOOT" if hard else "REBOOT"
            s["task_state"] = "rebooting_hard" if hard else "rebooting"
            s["pending"] = {"at": time.time() + args.action_seconds, "set": {
                "status": "ACTIVE", "vm_state": "active",
                "task_state": None, "power_state": 1}}
            return self.send(202)
        if action == "createImage":
            return self.create_image(s, params)
        raise ApiError(501, "The nova test double does not implement the "
                       "server action %r" % action)

    def create_image(self, s, params):
        state = self.server.state
        args = state.args
        if not isinstance(params, dict) or not isinstance(
                params.get("name"), str) or not params["name"].strip():
            raise ApiError(400, "Invalid input for field/attribute name.")
        metadata = params.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ApiError(400, "Invalid input for field/attribute metadata.")
        if s["status"] not in ("ACTIVE", "SHUTOFF") or s.get("pending") or \
                s.get("delete_at"):
            raise ApiError(409, "Cannot 'createImage' instance %s while it "
                           "is in vm_state %s" % (s["id"], s["vm_state"]))
        if s["task_state"] is not None:
            raise ApiError(409, "Cannot 'createImage' instance %s while it "
                           "is in task_state %s" % (s["id"], s["task_state"]))
        glance = self.glance_url()
        if not glance:
            raise ApiError(503, "No image service in the catalog.")
        flavor = self.find_flavor(s["flavor_id"])
        props = {
            "image_type": "snapshot",
            "instance_uuid": s["id"],
            "base_image_ref": s["image_id"] or "",
            "user_id": self.user_id,
            "owner_project_name": self.project_name or "",
            "owner_user_name": self.user_name or "",
            "boot_roles": ",".join(sorted(self.roles)),
        }
        props.update({str(k): str(v) for k, v in metadata.items()})
        req = {"name": params["name"], "disk_format": "qcow2",
               "container_format": "bare", "min_disk": flavor[4]}
        for k, v in props.items():
            req.setdefault(k, v)
        status, _, data = http_json("POST", glance + "/v2/images", req,
                                    headers={"X-Auth-Token": self.token})
        if status != 201:
            msg = data if isinstance(data, dict) else {}
            raise ApiError(400 if status < 500 else 503,
                           "Glance refused the snapshot image: HTTP %s %s"
                           % (status, json.dumps(msg)[:500]))
        image_id = data["id"]
        rec = {"image_id": image_id, "name": params["name"],
               "server_id": s["id"], "base_image_id": s["image_id"],
               "properties": props, "status": "queued", "error": None,
               "created_at": isotime(time.time())}
        state.images.append(rec)
        s["task_state"] = "image_pending_upload"
        s["updated"] = time.time()
        log("server %s: snapshot image %s (%r) created in glance"
            % (s["id"], image_id, params["name"]))
        token = self.token
        payload = make_qcow2(flavor[4] * 1024 ** 3,
                             snapshot_payload(s["image_id"], s["id"]))
        threading.Thread(target=upload_snapshot, daemon=True, args=(
            state, s, rec, glance, token, payload)).start()
        location = "%s/v2/images/%s" % (glance, image_id)
        return self.send(202, {"image_id": image_id}, {"Location": location})

    # ----- stubs
    def h_availability_zones(self):
        return self.send(200, {"availabilityZoneInfo": [
            {"zoneName": z, "zoneState": {"available": True}, "hosts": None}
            for z in self.server.state.args.availability_zones]})

    def h_limits(self):
        state = self.server.state
        mine = [s for s in state.servers.values()
                if not s["deleted"] and s["project_id"] == self.project_id]
        cores = sum(self.find_flavor(s["flavor_id"])[3] for s in mine)
        ram = sum(self.find_flavor(s["flavor_id"])[2] for s in mine)
        return self.send(200, {"limits": {"rate": [], "absolute": {
            "maxImageMeta": 128, "maxPersonality": 5,
            "maxPersonalitySize": 10240, "maxSecurityGroupRules": 20,
            "maxSecurityGroups": 10, "maxServerMeta": 128,
            "maxTotalCores": 64, "maxTotalFloatingIps": 10,
            "maxTotalInstances": 50, "maxTotalKeypairs": 100,
            "maxTotalRAMSize": 262144, "maxServerGroups": 10,
            "maxServerGroupMembers": 10,
            "totalCoresUsed": cores, "totalInstancesUsed": len(mine),
            "totalRAMUsed": ram, "totalSecurityGroupsUsed": 0,
            "totalFloatingIpsUsed": 0, "totalServerGroupsUsed": 0}}})


COLLECTIONS = {"flavors", "os-keypairs", "servers", "os-availability-zone",
               "limits", "images", "os-hypervisors", "os-services",
               "os-server-groups", "os-quota-sets", "extensions",
               "os-volumes_boot", "os-simple-tenant-usage"}


def upload_snapshot(state, s, rec, glance, token, payload):
    time.sleep(state.args.snapshot_delay)
    with state.lock:
        s["task_state"] = "image_uploading"
        rec["status"] = "saving"
    status, _, data = http_json(
        "PUT", "%s/v2/images/%s/file" % (glance, rec["image_id"]),
        headers={"X-Auth-Token": token,
                 "Content-Type": "application/octet-stream"},
        raw=payload, timeout=120)
    with state.lock:
        if status in (200, 201, 204):
            rec["status"] = "active"
            rec["size"] = len(payload)
            rec["checksum_md5"] = hashlib.md5(payload).hexdigest()
            log("server %s: snapshot %s uploaded (%d bytes)"
                % (s["id"], rec["image_id"], len(payload)))
        else:
            rec["status"] = "failed"
            rec["error"] = "HTTP %s %s" % (status, json.dumps(data)[:500])
            log("server %s: snapshot %s upload FAILED: %s"
                % (s["id"], rec["image_id"], rec["error"]))
            # Nova deletes the image of a failed snapshot.
            http_json("DELETE", "%s/v2/images/%s" % (glance, rec["image_id"]),
                      headers={"X-Auth-Token": token})
        if s["task_state"] in ("image_uploading", "image_pending_upload"):
            s["task_state"] = None
            s["updated"] = time.time()


def generate_keypair(name):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "key")
        try:
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                            "-C", "Generated-by-Nova", "-f", path],
                           check=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (OSError, subprocess.CalledProcessError) as e:
            raise ApiError(501, "The nova test double cannot generate a key "
                           "pair here (ssh-keygen failed: %s); import a "
                           "public_key instead." % e)
        with open(path) as f:
            private = f.read()
        with open(path + ".pub") as f:
            public = f.read().strip()
    return public, private


def ssh_fingerprint(public_key):
    """Nova's fingerprint: MD5 of the key blob, colon-separated hex."""
    parts = public_key.split()
    # allow an options prefix-free "type blob [comment]" only, like Nova
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        raise ApiError(400, "Keypair data is invalid: failed to generate "
                       "fingerprint")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (n,) = struct.unpack(">I", blob[:4])
        if blob[4:4 + n].decode() != parts[0]:
            raise ValueError("type mismatch")
    except Exception:  # noqa: BLE001
        raise ApiError(400, "Keypair data is invalid: failed to generate "
                       "fingerprint")
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0,
                   help="0 (default) picks a free port")
    p.add_argument("--port-file",
                   help="write the bound port here once listening")
    p.add_argument("--keystone-url", required=True,
                   help="http://HOST:PORT or http://HOST:PORT/v3")
    p.add_argument("--username", help="service user validating tokens")
    p.add_argument("--password", default="")
    p.add_argument("--project-name", default="service")
    p.add_argument("--user-domain-name", default="Default")
    p.add_argument("--project-domain-name", default="Default")
    p.add_argument("--glance-url",
                   help="Glance root URL (default: the catalog's image "
                   "endpoint)")
    p.add_argument("--authorized-keys-file",
                   help="rewritten with the public keys of all key pairs")
    p.add_argument("--server-ip", default="127.0.0.1")
    p.add_argument("--availability-zones", default="nova",
                   type=lambda s: [z for z in s.split(",") if z])
    p.add_argument("--build-seconds", type=float, default=1.0)
    p.add_argument("--action-seconds", type=float, default=0.5)
    p.add_argument("--delete-seconds", type=float, default=0.5)
    p.add_argument("--snapshot-delay", type=float, default=0.5,
                   help="seconds between createImage and the upload")
    args = p.parse_args()

    state = State(args)
    state.keystone = Keystone(args.keystone_url, args.username,
                              args.password, args.project_name,
                              args.user_domain_name, args.project_domain_name)
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True
    httpd.state = state
    port = httpd.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    log("listening on http://%s:%d (pid %d)" % (args.host, port, os.getpid()))

    # Explicit handlers: a background job of a non-interactive shell starts
    # with SIGINT ignored, and Python keeps it so.
    def stop(signum, _frame):
        log("signal %d: shutting down" % signum)
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    httpd.serve_forever()
    httpd.server_close()


if __name__ == "__main__":
    main()
