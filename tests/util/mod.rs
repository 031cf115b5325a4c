//! Test helpers: a definition dir in a temp folder and the real binary.
#![allow(dead_code)]

pub mod debian;
pub mod moto;
pub mod openstack;
pub mod sshd;
pub mod tour;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn success(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "expected success\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts that stderr contains `needle`, showing stderr when not.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// stdout as newline-delimited JSON (`apply --json`: events, then the
    /// result document).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("a line is not JSON ({e}): {l}\n{}", self.stdout))
            })
            .collect()
    }

    /// The last line of `apply --json`: the result document.
    pub fn result_json(&self) -> serde_json::Value {
        self.json_lines()
            .pop()
            .unwrap_or_else(|| panic!("no JSON on stdout; stderr:\n{}", self.stderr))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Project {
    /// Puts the busybox root filesystem at `rootfs/busybox.tar.gz` (a
    /// chroot source's `base`).
    pub fn with_busybox_rootfs(&self) -> &Project {
        std::fs::create_dir_all(self.path().join("rootfs")).unwrap();
        std::fs::copy(busybox_rootfs(), self.path().join("rootfs/busybox.tar.gz")).unwrap();
        self
    }

    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str, contents: &str) -> &Project {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).unwrap_or_default()
    }

    pub fn remove(&self, rel: &str) {
        let _ = std::fs::remove_file(self.dir.path().join(rel));
    }

    /// Runs imgform with the project as the working dir.
    pub fn run(&self, args: &[&str]) -> Run {
        imgform_in(self.dir.path(), args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        imgform_in(self.dir.path(), args, env)
    }

    /// An empty HOME inside the project (no ~/.ssh/known_hosts, no
    /// ~/.aws of the machine running the tests).
    pub fn home(&self) -> PathBuf {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        home
    }

    /// Runs imgform with `env` and HOME set to [`Project::home`].
    pub fn run_isolated(&self, args: &[&str], env: &[(String, String)]) -> Run {
        let home = self.home();
        let mut pairs: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pairs.push(("HOME", home.to_str().unwrap()));
        self.run_env(args, &pairs)
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imgform"))
}

pub fn imgform_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(bin());
    cmd.current_dir(cwd)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("PKR_VAR_") || k.starts_with("IMGFORM_VAR_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run imgform").into()
}

/// A busybox rootfs tarball (scripts/make-busybox-rootfs.sh), made once per
/// test process.
pub fn busybox_rootfs() -> &'static Path {
    static ROOTFS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("imgform-test-rootfs-{}", std::process::id()));
        let out = dir.join("busybox.tar.gz");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-busybox-rootfs.sh");
        let status = Command::new(script)
            .arg(&out)
            .status()
            .expect("make rootfs");
        assert!(status.success(), "scripts/make-busybox-rootfs.sh failed");
        out
    })
}

/// Copies a directory tree (for "move the project" tests).
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// insta filters for values that change between runs.
pub fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"sha256:[0-9a-f]{64}", "sha256:[HASH]"),
        (r"sha256:[0-9a-f]{12}", "sha256:[HASH12]"),
        (r"null:[0-9a-f]{12}", "null:[ID]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
        (r"\[\d+\.\ds\]", "[ELAPSED]"),
    ]
}

/// Whether the tests run as root (the chroot builder needs chroot and mount).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The inode of the socket listening on 127.0.0.1:`port` (or any address),
/// from /proc/net/tcp.
fn listener_inode(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let local_port = cols.get(1)?.rsplit(':').next()?;
        let listening = cols.get(3) == Some(&"0A");
        (listening && u16::from_str_radix(local_port, 16).ok() == Some(port))
            .then(|| cols.get(9).map(|s| s.to_string()))
            .flatten()
    })
}

/// Whether process `pid` holds the socket listening on `port` (so a server
/// we started answers, not another one that got the same free port).
pub fn owns_listener(pid: u32, port: u16) -> bool {
    let Some(inode) = listener_inode(port) else {
        return false;
    };
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == wanted)
            })
        })
        .unwrap_or(false)
}

/// Whether someone listens on `port`.
pub fn port_in_use_by_another(port: u16) -> bool {
    listener_inode(port).is_some()
}

/// Runs `git -C dir ARGS` as a fixed author and committer, panicking on a
/// failure; returns its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "A U Thor")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "C O Mitter")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Each planned image's address and new content address, from `plan --json`.
pub fn content_addresses(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .expect("a plan's changes")
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_owned(),
                c["content"]["new"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
