//! A real OpenSSH `sshd` on a spare 127.0.0.1 port, standing in for a build
//! instance (the builders' `ssh_host`/`ssh_port` override points at it).
//! It has its own host key, a test user with a password, and accepts:
//! - the test's client key (`client_key`),
//! - with [`Sshd::start_for_moto`], the public key of the key pair of every
//!   *running* instance in a moto EC2 server — as EC2 puts an instance's key
//!   pair into its `authorized_keys` — through an `AuthorizedKeysCommand`
//!   that asks moto (`DescribeInstances`, `DescribeKeyPairs
//!   IncludePublicKey=true`).
//! - keys listed in extra files (e.g. the OpenStack Nova double's keypairs).
//!
//! Needs root (sshd, a test user) and `openssh-server`
//! (scripts/install-test-deps.sh installs it). Killed on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "imgformtest";
pub const PASSWORD: &str = "imgform-test-pw";

pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// `SHA256:...` of the host key.
    pub host_key_fingerprint: String,
    /// A known_hosts file naming this sshd (`[127.0.0.1]:PORT key`).
    pub known_hosts: PathBuf,
    /// A private key sshd accepts for `USER`.
    pub client_key: PathBuf,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test user, with a known password (created once per machine).
fn ensure_user() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(create_user);
}

fn create_user() {
    let exists = Command::new("id")
        .arg(USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        let _ = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", USER])
            .status();
    }
    let mut child = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .expect("chpasswd");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{USER}:{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "chpasswd failed");
    // Passwordless sudo, as on cloud images' default users.
    std::fs::write(
        format!("/etc/sudoers.d/{USER}"),
        format!("{USER} ALL=(ALL) NOPASSWD:ALL\n"),
    )
    .unwrap();
    // The home may predate the user (a scratch dir made first): it must be
    // the user's, or tools like Ansible cannot write their temp files.
    std::fs::create_dir_all(Sshd::home()).unwrap();
    run(Command::new("chown")
        .arg(format!("{USER}:"))
        .arg(Sshd::home()));
}

/// The AuthorizedKeysCommand script. sshd insists that it and every
/// directory above it are root-owned and not group/world-writable, so it
/// cannot live in /tmp.
fn moto_keys_command() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(write_moto_keys_command).clone()
}

fn write_moto_keys_command() -> PathBuf {
    let dir = PathBuf::from("/var/cache/imgform/sshd");
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("authorized-keys-from-moto");
    let script = r#"#!/usr/bin/python3
# sshd AuthorizedKeysCommand for imgform's tests: prints the public key of the
# key pair of every running instance in the moto EC2 server given as argv[1],
# as EC2 installs an instance's key pair. Test double glue, not product code.
import sys, urllib.request, xml.etree.ElementTree as ET

endpoint = sys.argv[1]

def call(params):
    body = "&".join(f"{k}={v}" for k, v in params.items()).encode()
    req = urllib.request.Request(endpoint + "/", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=x",
    })
    with urllib.request.urlopen(req, timeout=10) as r:
        root = ET.fromstring(r.read())
    for el in root.iter():
        el.tag = el.tag.split("}")[-1]
    return root

running = set()
for item in call({"Action": "DescribeInstances", "Version": "2016-11-15"}).iter("item"):
    state = item.find("instanceState/name")
    key = item.find("keyName")
    if state is not None and state.text == "running" and key is not None and key.text:
        running.add(key.text)
for item in call({"Action": "DescribeKeyPairs", "Version": "2016-11-15", "IncludePublicKey": "true"}).iter("item"):
    name, public = item.find("keyName"), item.find("publicKey")
    if name is not None and public is not None and name.text in running and public.text:
        print(public.text.strip())
"#;
    let tmp = dir.join(format!("authorized-keys-from-moto.{}", std::process::id()));
    std::fs::write(&tmp, script).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

pub struct Options<'a> {
    /// A moto endpoint whose running instances' key pairs are accepted.
    pub moto: Option<&'a str>,
    /// More authorized_keys files.
    pub extra_keys_files: Vec<PathBuf>,
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_with(Options {
            moto: None,
            extra_keys_files: Vec::new(),
        })
    }

    pub fn start_for_moto(endpoint: &str) -> Sshd {
        Sshd::start_with(Options {
            moto: Some(endpoint),
            extra_keys_files: Vec::new(),
        })
    }

    pub fn start_with(options: Options<'_>) -> Sshd {
        // A server started at the same moment may take the same free port:
        // then this sshd exits and a new port is tried.
        for _ in 0..5 {
            if let Some(sshd) = Sshd::try_start(&options) {
                return sshd;
            }
        }
        panic!("sshd could not get a port of its own in 5 attempts");
    }

    fn try_start(options: &Options<'_>) -> Option<Sshd> {
        ensure_user();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let host_key = d.join("host_key");
        run(Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "imgform-test-host",
                "-f",
            ])
            .arg(&host_key));
        let client_key = d.join("client_key");
        run(Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "imgform-test-client",
                "-f",
            ])
            .arg(&client_key));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let fingerprint = run(Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(d.join("host_key.pub")));
        let host_key_fingerprint = fingerprint
            .split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_owned();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let public = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let known_hosts = d.join("known_hosts");
        let mut parts = public.split_whitespace();
        std::fs::write(
            &known_hosts,
            format!(
                "[127.0.0.1]:{port} {} {}\n",
                parts.next().unwrap(),
                parts.next().unwrap()
            ),
        )
        .unwrap();
        let mut keys_files = vec![d.join("authorized_keys").display().to_string()];
        keys_files.extend(
            options
                .extra_keys_files
                .iter()
                .map(|p| p.display().to_string()),
        );
        let mut config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\n\
             AuthorizedKeysFile {}\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
             UsePAM no\nPermitRootLogin yes\nStrictModes no\nSubsystem sftp internal-sftp\n\
             LogLevel VERBOSE\nMaxStartups 50\nMaxSessions 50\n",
            host_key.display(),
            keys_files.join(" ")
        );
        if let Some(endpoint) = options.moto {
            config.push_str(&format!(
                "AuthorizedKeysCommand {} {endpoint}\nAuthorizedKeysCommandUser root\n",
                moto_keys_command().display()
            ));
        }
        let config_path = d.join("sshd_config");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd (scripts/install-test-deps.sh installs openssh-server)");
        let mut sshd = Sshd {
            child,
            port,
            dir,
            host_key_fingerprint,
            known_hosts,
            client_key,
        };
        let started = Instant::now();
        while !super::owns_listener(sshd.child.id(), port) {
            if let Some(status) = sshd.child.try_wait().unwrap() {
                if super::port_in_use_by_another(port) {
                    return None;
                }
                panic!("sshd exited ({status}):\n{}", sshd.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not listen:\n{}",
                sshd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(sshd)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The home directory of the test user (where provisioners write).
    pub fn home() -> PathBuf {
        PathBuf::from(format!("/home/{USER}"))
    }

    /// A fresh scratch dir on the "instance", owned by the test user.
    pub fn scratch(name: &str) -> PathBuf {
        ensure_user();
        let dir = Sshd::home().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("chown").args(["-R", USER]).arg(&dir));
        dir
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
