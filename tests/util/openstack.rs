//! The OpenStack test peers (real Keystone and Glance, the Nova double; see
//! tests/peers/README.md), started by `scripts/openstack-peers.sh start`
//! into a temp dir and stopped on drop, with a few direct calls (through
//! `curl`, as a user of the cloud would make them) for tests to set up and
//! check what imgform did.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

pub struct Peers {
    pub dir: tempfile::TempDir,
    /// `DIR/env`: OS_* variables and the peers' URLs.
    pub env: BTreeMap<String, String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/openstack-peers.sh")
}

impl Peers {
    pub fn start() -> Peers {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/openstack-peers.sh");
        assert!(
            out.status.success(),
            "scripts/openstack-peers.sh start failed (scripts/install-test-deps.sh installs the peers):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(dir.path().join("env")).expect("DIR/env");
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_owned(),
                    v.trim().trim_matches('\'').trim_matches('"').to_owned(),
                )
            })
            .collect();
        Peers { dir, env }
    }

    pub fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} not in DIR/env"))
    }

    /// The OS_* credentials (what `openstack` CLI users export).
    pub fn os_env(&self) -> Vec<(String, String)> {
        [
            "OS_AUTH_URL",
            "OS_USERNAME",
            "OS_PASSWORD",
            "OS_PROJECT_NAME",
            "OS_USER_DOMAIN_NAME",
            "OS_PROJECT_DOMAIN_NAME",
            "OS_REGION_NAME",
            "OS_IDENTITY_API_VERSION",
            "OS_INTERFACE",
        ]
        .iter()
        .map(|k| (k.to_string(), self.var(k).to_owned()))
        .collect()
    }

    pub fn clouds_yaml(&self) -> PathBuf {
        self.dir.path().join("clouds.yaml")
    }

    /// An authorized_keys file holding exactly the existing key pairs.
    pub fn authorized_keys(&self) -> PathBuf {
        PathBuf::from(self.var("OS_NOVA_AUTHORIZED_KEYS"))
    }

    /// A project-scoped admin token.
    pub fn token(&self) -> String {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.var("OS_USERNAME"),
                "domain": {"name": "Default"},
                "password": self.var("OS_PASSWORD"),
            }}},
            "scope": {"project": {"name": self.var("OS_PROJECT_NAME"), "domain": {"name": "Default"}}},
        }});
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-D", "-", "-X", "POST"])
            .args(["-H", "Content-Type: application/json", "--data"])
            .arg(body.to_string())
            .arg(format!("{}/auth/tokens", self.var("OS_AUTH_URL")))
            .output()
            .expect("curl");
        let headers = String::from_utf8_lossy(&out.stdout).into_owned();
        headers
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-subject-token")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no token from Keystone:\n{headers}"))
    }

    /// `curl` against Glance (`path` under `/v2`): the body, and the status.
    pub fn glance(&self, method: &str, path: &str, args: &[&str]) -> (Vec<u8>, u16) {
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "-X", method])
            .args(["-H", &format!("X-Auth-Token: {}", self.token())])
            .args(args)
            .arg(format!("{}/v2/{path}", self.var("OS_GLANCE_URL")))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "curl {method} {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut body = out.stdout;
        let at = body.iter().rposition(|b| *b == b'\n').unwrap();
        let status = String::from_utf8_lossy(&body[at + 1..]).parse().unwrap();
        body.truncate(at);
        (body, status)
    }

    /// An image's record, `None` if Glance does not have it.
    pub fn image(&self, id: &str) -> Option<Value> {
        let (body, status) = self.glance("GET", &format!("images/{id}"), &[]);
        (status == 200).then(|| serde_json::from_slice(&body).unwrap())
    }

    pub fn download(&self, id: &str) -> Vec<u8> {
        let (body, status) = self.glance("GET", &format!("images/{id}/file"), &[]);
        assert_eq!(status, 200, "download {id}");
        body
    }

    pub fn delete_image(&self, id: &str) {
        let (_, status) = self.glance("DELETE", &format!("images/{id}"), &[]);
        assert_eq!(status, 204, "delete image {id}");
    }

    /// A public, active qcow2 image named `name`, with `properties`; its id.
    pub fn create_image(&self, name: &str, properties: &[(&str, &str)]) -> String {
        let mut body = json!({
            "name": name,
            "disk_format": "qcow2",
            "container_format": "bare",
            "visibility": "public",
        });
        for (k, v) in properties {
            body[*k] = json!(v);
        }
        let (created, status) = self.glance(
            "POST",
            "images",
            &[
                "-H",
                "Content-Type: application/json",
                "--data",
                &body.to_string(),
            ],
        );
        assert_eq!(
            status,
            201,
            "create image: {}",
            String::from_utf8_lossy(&created)
        );
        let id = serde_json::from_slice::<Value>(&created).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let disk = self.dir.path().join(format!("{id}.qcow2"));
        let ok = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&disk)
            .arg("1M")
            .status()
            .expect("qemu-img")
            .success();
        assert!(ok, "qemu-img create");
        let (out, status) = self.glance(
            "PUT",
            &format!("images/{id}/file"),
            &[
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &format!("@{}", disk.display()),
            ],
        );
        assert_eq!(status, 204, "upload: {}", String::from_utf8_lossy(&out));
        id
    }

    /// What the Nova double holds: servers and key pairs (deleted ones
    /// marked `deleted: true`).
    pub fn nova_state(&self) -> Value {
        let out = Command::new("curl")
            .args(["-sS", self.var("OS_NOVA_STATE_URL")])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "Nova state is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Servers and key pairs that still exist.
    pub fn live_servers_and_keypairs(&self) -> (Vec<Value>, Vec<Value>) {
        let state = self.nova_state();
        let live = |key: &str| -> Vec<Value> {
            let items: Vec<Value> = match &state[key] {
                Value::Array(items) => items.clone(),
                Value::Object(map) => map.values().cloned().collect(),
                _ => Vec::new(),
            };
            items
                .into_iter()
                .filter(|i| i["deleted"] != json!(true))
                .collect()
        };
        (live("servers"), live("keypairs"))
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
