//! The crash suite: `apply` is killed or failed at named points
//! (`IMGFORM_FAULT`, see src/fault.rs) and by SIGKILL and SIGTERM at random
//! moments, on a project of null images and small chroot images (a
//! busybox rootfs). After every fault the same checks run:
//!
//! - the state file (and the lock, if one is left) parse and match their
//!   schemas (state/schema/), and the state's serial never goes back;
//! - a lock left behind names its holder (or, unreadable, a digest) and
//!   `force-unlock` with that name removes it;
//! - nothing is mounted below the project or its temporary dir;
//! - temporary dirs left by the killed run are private (0700), and the next
//!   apply sweeps them and the temporary files of its atomic writes
//!   (`.part`): afterwards none is left, and no file below the project or
//!   the temporary dir holds the secret;
//! - `state recover` adopts only artifacts whose bytes hash to what their
//!   build recorded (and pass `qemu-img check`);
//! - the next apply converges and the plan after it is a no-op.
//!
//! The random moments come from a seed printed at the start; set
//! `IMGFORM_FAULT_SEED` to replay a run. Needs root (chroot and mount).

mod util;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest;
use util::Project;

const SECRET: &str = "fault-suite-s3cret-4b1d";

/// Two null images (a chain) and two chroot images: one qcow2 with two
/// shell provisioners, one tar built from nothing but the base. `round`
/// reaches every image's inputs, so each round rebuilds them all.
const IMAGES: &str = r#"
variable "round" {
  type    = string
  default = "0"
}

variable "token" {
  type      = string
  sensitive = true
  default   = "unset"
}

source "null" "first" {
  communicator = "none"
}

source "null" "second" {
  communicator = "none"
}

source "chroot" "disk" {
  base = "rootfs/busybox.tar.gz"
}

source "chroot" "tarball" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}

build {
  name    = "chain"
  sources = ["source.null.first"]

  provisioner "shell-local" {
    environment_vars = ["TOKEN=${var.token}"]
    inline           = ["echo round ${var.round} > /dev/null", "test -n \"$TOKEN\""]
  }
}

build {
  name    = "chain"
  sources = ["source.null.second"]

  provisioner "shell-local" {
    inline = ["echo after ${image.chain.null.first.id} ${var.round} > /dev/null"]
  }
}

build {
  name    = "img"
  sources = ["source.chroot.disk", "source.chroot.tarball"]

  provisioner "shell" {
    environment_vars = ["TOKEN=${var.token}"]
    inline           = ["echo round ${var.round} > /etc/round", "test -n \"$TOKEN\""]
  }

  provisioner "shell" {
    inline = ["sleep 0.3", "echo second > /etc/second"]
  }
}
"#;

/// A fault to inject: a named point, or a signal after a delay.
#[derive(Debug, Clone)]
enum Fault {
    Point(&'static str),
    Signal {
        signal: &'static str,
        after: Duration,
    },
}

struct Suite {
    project: Project,
    /// TMPDIR of every run: where temporary dirs (and chroot work dirs) go.
    tmp: PathBuf,
    /// The highest serial seen so far.
    serial: u64,
    /// (schema, document, what it was) validated together at the end.
    documents: Vec<(String, Value, String)>,
    problems: Vec<String>,
}

impl Suite {
    fn new() -> Suite {
        let project = Project::new();
        project.with_busybox_rootfs();
        project.file("images.pkr.hcl", IMAGES);
        let tmp = project.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        Suite {
            project,
            tmp,
            serial: 0,
            documents: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn env(&self, round: usize) -> Vec<(String, String)> {
        vec![
            ("TMPDIR".to_owned(), self.tmp.display().to_string()),
            ("IMGFORM_VAR_token".to_owned(), SECRET.to_owned()),
            ("IMGFORM_VAR_round".to_owned(), round.to_string()),
        ]
    }

    fn command(&self, round: usize, args: &[&str]) -> Command {
        let mut cmd = Command::new(util::bin());
        cmd.current_dir(self.project.path())
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("IMGFORM_FAULT")
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("PKR_VAR_") || k.starts_with("IMGFORM_VAR_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env(round));
        cmd
    }

    fn run(&self, round: usize, args: &[&str]) -> util::Run {
        self.command(round, args)
            .output()
            .expect("run imgform")
            .into()
    }

    fn problem(&mut self, what: &str, message: String) {
        self.problems.push(format!("[{what}] {message}"));
    }

    /// Runs `apply` with `fault` injected. Returns how long it ran.
    fn inject(&mut self, round: usize, fault: &Fault) -> Duration {
        let started = Instant::now();
        let mut cmd = self.command(round, &["apply", "--auto-approve"]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        match fault {
            Fault::Point(point) => {
                cmd.env("IMGFORM_FAULT", point);
                let out = cmd.output().expect("run imgform");
                let stderr = String::from_utf8_lossy(&out.stderr);
                if stderr.contains("RUST_BACKTRACE") && !point.starts_with("panic") {
                    self.problem(&format!("{fault:?}"), format!("a panic:\n{stderr}"));
                }
            }
            Fault::Signal { signal, after } => {
                let child = cmd.spawn().expect("start imgform");
                std::thread::sleep(*after);
                let _ = Command::new("kill")
                    .args([&format!("-{signal}"), &child.id().to_string()])
                    .status();
                let out = child.wait_with_output().expect("wait for imgform");
                let stderr = String::from_utf8_lossy(&out.stderr);
                if stderr.contains("panicked") {
                    self.problem(&format!("{fault:?}"), format!("a panic:\n{stderr}"));
                }
                // Whether SIGTERM was handled is not checked here: before
                // apply installs its handler (loading, planning) the default
                // action ends the process, which the checks below cover.
            }
        }
        started.elapsed()
    }

    /// The checks after a fault, then recovery and convergence.
    fn check(&mut self, round: usize, what: &str) {
        self.check_state(round, what);
        self.check_lock(round, what);
        self.check_mounts(what);
        self.check_temp_dirs_private(what);

        // Recovery adopts only whole artifacts.
        let recover = self.run(round, &["state", "recover", "--auto-approve"]);
        if !matches!(recover.code, 0 | 1) || recover.stderr.contains("panicked") {
            self.problem(
                what,
                format!("state recover exited {}:\n{}", recover.code, recover.stderr),
            );
        }
        self.check_recorded_artifacts(what);
        self.check_state(round, what);

        // The next apply converges; the plan after it is a no-op.
        let apply = self.run(round, &["apply", "--auto-approve"]);
        if apply.code != 0 {
            self.problem(
                what,
                format!("the next apply failed ({}):\n{}", apply.code, apply.stderr),
            );
            return;
        }
        let plan = self.run(round, &["plan", "--detailed-exitcode"]);
        if plan.code != 0 {
            self.problem(
                what,
                format!(
                    "the plan after the next apply is not a no-op ({}):\n{}{}",
                    plan.code, plan.stdout, plan.stderr
                ),
            );
        }
        self.check_state(round, what);
        self.check_recorded_artifacts(what);
        self.check_mounts(what);
        self.check_no_secret_left(what);
    }

    /// The state parses, matches its schema and its serial did not go back.
    fn check_state(&mut self, round: usize, what: &str) {
        let path = self.project.path().join("state/local.json");
        let Ok(bytes) = std::fs::read(&path) else {
            if self.serial > 0 {
                self.problem(what, "the state file is gone".to_owned());
            }
            return;
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(doc) => self.documents.push((
                "../state/schema/state.v1.schema.json".to_owned(),
                doc,
                format!("{what}: state/local.json"),
            )),
            Err(e) => self.problem(what, format!("state/local.json does not parse: {e}")),
        }
        let backup = self.project.path().join("state/local.json.bak");
        if let Ok(backup_bytes) = std::fs::read(&backup) {
            if backup_bytes == bytes {
                self.problem(what, "state/local.json.bak equals the state".to_owned());
            }
            if let Err(e) = serde_json::from_slice::<Value>(&backup_bytes) {
                self.problem(what, format!("state/local.json.bak does not parse: {e}"));
            }
        }
        // The serial with the journal applied, as imgform loads it.
        let list = self.run(round, &["show"]);
        let serial = list
            .stdout
            .split("(serial ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.trim().parse::<u64>().ok());
        match serial {
            Some(serial) if serial < self.serial => self.problem(
                what,
                format!("the serial went back from {} to {serial}", self.serial),
            ),
            Some(serial) => self.serial = serial,
            None => self.problem(
                what,
                format!(
                    "show shows no serial ({}):\n{}{}",
                    list.code, list.stdout, list.stderr
                ),
            ),
        }
    }

    /// A lock left behind says who holds it and `force-unlock` removes it.
    fn check_lock(&mut self, round: usize, what: &str) {
        let path = self.project.path().join("state/.lock");
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        let id = match serde_json::from_slice::<Value>(&bytes) {
            Ok(doc) => {
                let id = doc["id"].as_str().unwrap_or_default().to_owned();
                self.documents.push((
                    "../state/schema/lock.v1.schema.json".to_owned(),
                    doc,
                    format!("{what}: state/.lock"),
                ));
                id
            }
            // Unreadable: named by a digest of its bytes.
            Err(_) => format!(
                "unreadable-{}",
                &hex::encode(sha2::Sha256::digest(&bytes))[..12]
            ),
        };
        let blocked = self.run(round, &["apply", "--auto-approve"]);
        if blocked.code != 1 || !blocked.stderr.contains(&format!("force-unlock {id}")) {
            self.problem(
                what,
                format!(
                    "a run blocked by the lock does not name `force-unlock {id}` ({}):\n{}",
                    blocked.code, blocked.stderr
                ),
            );
        }
        let unlock = self.run(round, &["force-unlock", &id]);
        if unlock.code != 0 || path.exists() {
            self.problem(
                what,
                format!(
                    "force-unlock {id} failed ({}):\n{}",
                    unlock.code, unlock.stderr
                ),
            );
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Nothing mounted below the project (which holds TMPDIR).
    fn check_mounts(&mut self, what: &str) {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let ours = self.project.path().to_string_lossy().into_owned();
        let left: Vec<&str> = info.lines().filter(|l| l.contains(&ours)).collect();
        if !left.is_empty() {
            let left = left.join("\n");
            self.problem(what, format!("mounts left behind:\n{left}"));
            // Don't let one leak fail every later round.
            for line in info.lines().filter(|l| l.contains(&ours)) {
                if let Some(mount_point) = line.split_whitespace().nth(4) {
                    let _ = Command::new("umount")
                        .args(["-R", "-l", mount_point])
                        .status();
                }
            }
        }
    }

    /// Temporary dirs a killed run left are private to their user.
    fn check_temp_dirs_private(&mut self, what: &str) {
        for entry in std::fs::read_dir(&self.tmp).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("imgform-") {
                continue;
            }
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            if mode != 0o700 {
                self.problem(what, format!("temporary dir {name} has mode {mode:o}"));
            }
        }
    }

    /// After a successful apply: no temporary dir is left, and no file
    /// below the project (state, logs, outputs, temp) holds the secret.
    fn check_no_secret_left(&mut self, what: &str) {
        let left: Vec<String> = std::fs::read_dir(&self.tmp)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("imgform-"))
            .collect();
        if !left.is_empty() {
            self.problem(what, format!("temporary dirs left: {left:?}"));
        }
        // Half-written copies (artifacts, state, objects, caches) of the
        // killed run are swept by the next one.
        let temps = temp_files_below(self.project.path());
        if !temps.is_empty() {
            self.problem(what, format!("temporary files left: {temps:?}"));
        }
        for entry in walkdir::WalkDir::new(self.project.path())
            .into_iter()
            .flatten()
        {
            if !entry.file_type().is_file()
                || entry.path().starts_with(self.project.path().join("rootfs"))
            {
                continue;
            }
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            if bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()) {
                // A disk image holds what its provisioners wrote, and they
                // did not write the token: anywhere is a leak.
                self.problem(what, format!("{} holds the secret", entry.path().display()));
            }
        }
    }

    /// Every recorded local artifact exists, hashes to its recorded
    /// sha256, and a qcow2 passes `qemu-img check`.
    fn check_recorded_artifacts(&mut self, what: &str) {
        let Ok(text) = std::fs::read_to_string(self.project.path().join("state/local.json")) else {
            return;
        };
        let Ok(state) = serde_json::from_str::<Value>(&text) else {
            return;
        };
        let mut artifacts: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (addr, record) in state["images"].as_object().into_iter().flatten() {
            let artifact = &record["artifact"];
            if let Some(sha) = artifact["attributes"]["sha256"].as_str() {
                artifacts.insert(
                    addr.clone(),
                    (
                        artifact["id"].as_str().unwrap_or_default().to_owned(),
                        sha.to_owned(),
                    ),
                );
            }
        }
        for (addr, (id, sha)) in artifacts {
            let path = self.project.path().join(&id);
            let Ok(bytes) = std::fs::read(&path) else {
                // A deleted artifact is the plan's business (artifact_missing).
                continue;
            };
            let found = hex::encode(sha2::Sha256::digest(&bytes));
            if found != sha.trim_start_matches("sha256:") {
                self.problem(
                    what,
                    format!("{addr}: {id} is recorded with sha256 {sha} but hashes to {found}"),
                );
            }
            if id.ends_with(".qcow2") {
                let ok = Command::new("qemu-img")
                    .args(["check", "-q"])
                    .arg(&path)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    self.problem(what, format!("{addr}: {id} fails qemu-img check"));
                }
            }
        }
    }

    /// Validates every collected document in one Python run.
    fn validate_documents(&mut self) {
        let batch = self.project.path().join("documents.json");
        let pairs: Vec<Value> = self
            .documents
            .iter()
            .map(|(schema, doc, _)| serde_json::json!([schema, doc]))
            .collect();
        std::fs::write(&batch, serde_json::to_vec(&pairs).unwrap()).unwrap();
        let out = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate_json.py"))
            .arg("--batch")
            .arg(&batch)
            .output()
            .expect("run python3 (scripts/install-test-deps.sh installs jsonschema)");
        assert!(
            out.status.success(),
            "validate_json.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        for ((_, _, what), result) in self.documents.clone().iter().zip(results) {
            if let Some(errors) = result.as_str() {
                self.problem(what, format!("does not match its schema:\n{errors}"));
            }
        }
        std::fs::remove_file(&batch).unwrap();
    }
}

/// A small deterministic generator (xorshift64*), so a seed replays a run.
struct Moments(u64);

impl Moments {
    fn next_below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound.max(1)
    }
}

#[test]
fn every_fault_leaves_a_state_that_recovers_and_converges() {
    if !util::is_root() {
        eprintln!("skipped: the fault suite needs root (chroot, mount)");
        return;
    }
    let seed = std::env::var("IMGFORM_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("fault suite seed: {seed} (IMGFORM_FAULT_SEED={seed} replays it)");
    let mut moments = Moments(seed);
    let mut suite = Suite::new();

    // A first whole apply: the baseline, and how long an apply takes.
    let started = Instant::now();
    suite.run(0, &["apply", "--auto-approve"]).success();
    let full = started.elapsed();
    suite.check_state(0, "baseline");

    let mut faults: Vec<Fault> = [
        "kill-after-capture:chain.null.first",
        "kill-after-capture:img.chroot.disk",
        "kill-after-capture:img.chroot.tarball",
        "kill-after-record:chain.null.second",
        "kill-after-record:img.chroot.disk",
        "kill-before-backup",
        "kill-during-provisioning:img.chroot.disk",
        "kill-during-provisioning:img.chroot.tarball",
        "kill-during-artifact-write",
        "panic-in-build:chain.null.first",
    ]
    .into_iter()
    .map(Fault::Point)
    .collect();
    let window = full.as_millis() as u64 + 200;
    for signal in ["KILL", "TERM"] {
        for _ in 0..6 {
            faults.push(Fault::Signal {
                signal,
                after: Duration::from_millis(moments.next_below(window)),
            });
        }
    }
    assert!(faults.len() >= 20, "at least 20 fault points per run");

    for (i, fault) in faults.iter().enumerate() {
        let round = i + 1;
        let what = format!("round {round}: {fault:?}");
        let ran = suite.inject(round, fault);
        eprintln!("{what}: apply ended after {ran:?}");
        suite.check(round, &what);
    }
    suite.validate_documents();
    assert!(
        suite.problems.is_empty(),
        "{} problems (seed {seed}):\n\n{}",
        suite.problems.len(),
        suite.problems.join("\n\n")
    );
}

/// Two null images: what the signal tests lock, plan and record.
const NULL_IMAGES: &str = r#"
source "null" "first" {
  communicator = "none"
}

build {
  sources = ["source.null.first"]
  provisioner "shell-local" {
    inline = ["echo first > /dev/null"]
  }
}
"#;

/// Starts imgform in `project` with `env`, output captured.
fn spawn_in(project: &Project, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = Command::new(util::bin());
    cmd.current_dir(project.path())
        .args(args)
        .env("NO_COLOR", "1")
        .env("TMPDIR", project.path().join("tmp"))
        .env_remove("IMGFORM_FAULT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::fs::create_dir_all(project.path().join("tmp")).unwrap();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start imgform")
}

fn send(child: &std::process::Child, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits (up to 20 s) until `what` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// No temporary dir of an imgform run left in the project's TMPDIR.
fn temp_dirs_left(project: &Project) -> Vec<String> {
    std::fs::read_dir(project.path().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("imgform-"))
        .collect()
}

#[test]
fn a_signal_while_a_command_holds_the_lock_releases_it_and_leaves_the_state() {
    let p = Project::new();
    p.file("images.pkr.hcl", NULL_IMAGES);
    p.run(&["apply", "--auto-approve"]).success();
    let lock = p.path().join("state/.lock");
    let state = std::fs::read(p.path().join("state/local.json")).unwrap();
    // `pause-after-lock` blocks the command's thread right after it took the
    // lock, as a slow refresh or a hung cloud call would; then the signal.
    for (args, signal, code) in [
        (&["plan"][..], "TERM", 143),
        (&["plan", "--out", "plan.bin"][..], "INT", 130),
        (&["apply", "--auto-approve"][..], "TERM", 143),
        (&["state", "rm", "null.first"][..], "TERM", 143),
        (&["state", "recover", "--auto-approve"][..], "INT", 130),
    ] {
        let child = spawn_in(&p, args, &[("IMGFORM_FAULT", "pause-after-lock")]);
        wait_until("the lock is taken", || {
            std::fs::read(&lock).is_ok_and(|b| serde_json::from_slice::<Value>(&b).is_ok())
        });
        let started = Instant::now();
        send(&child, signal);
        let out: util::Run = child.wait_with_output().unwrap().into();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} took {:?} to stop",
            started.elapsed()
        );
        out.code(code);
        out.stderr_has(&format!("Interrupted (SIG{signal})"));
        assert!(!lock.exists(), "{args:?} left its lock:\n{}", out.stderr);
        assert_eq!(
            std::fs::read(p.path().join("state/local.json")).unwrap(),
            state,
            "{args:?} changed the state"
        );
        assert!(!p.path().join("plan.bin").exists());
        assert!(temp_dirs_left(&p).is_empty(), "{:?}", temp_dirs_left(&p));
    }
    p.run(&["plan", "--detailed-exitcode"]).success();
}

#[test]
fn a_signal_in_the_instant_the_lock_is_taken_still_releases_it() {
    let p = Project::new();
    p.file("images.pkr.hcl", NULL_IMAGES);
    let lock = p.path().join("state/.lock");
    // The lock file exists, its release is not registered yet.
    let child = spawn_in(
        &p,
        &["plan"],
        &[("IMGFORM_FAULT", "pause-while-taking-lock")],
    );
    wait_until("the lock file is written", || {
        std::fs::read(&lock).is_ok_and(|b| serde_json::from_slice::<Value>(&b).is_ok())
    });
    send(&child, "TERM");
    let out: util::Run = child.wait_with_output().unwrap().into();
    out.code(143);
    assert!(!lock.exists(), "the lock was left:\n{}", out.stderr);
    assert!(!p.path().join("state").exists(), "{}", out.stderr);
}

#[test]
fn a_signal_while_waiting_for_the_lock_leaves_the_holders_lock_alone() {
    let p = Project::new();
    p.file("images.pkr.hcl", NULL_IMAGES);
    p.run(&["apply", "--auto-approve"]).success();
    let holder = serde_json::json!({
        "id": "0b5e7c1a-0000-4000-8000-00000000beef",
        "operation": "apply",
        "who": "ci@other-runner",
        "created": "2026-01-01T00:00:00Z",
        "version": "0.1.0",
    })
    .to_string();
    p.file("state/.lock", &holder);
    let child = spawn_in(&p, &["plan", "--lock-timeout", "5m"], &[]);
    std::thread::sleep(Duration::from_millis(700));
    let started = Instant::now();
    send(&child, "TERM");
    let out: util::Run = child.wait_with_output().unwrap().into();
    assert!(started.elapsed() < Duration::from_secs(10));
    out.code(143);
    assert_eq!(
        p.read("state/.lock"),
        holder,
        "another run's lock was touched"
    );
}

#[test]
fn a_signal_during_a_data_source_that_never_answers_ends_the_run_cleanly() {
    // Accepts connections and never answers them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            let _ = accepted_tx.send(());
        }
    });
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        &format!(
            r#"
data "http" "version" {{
  url = "http://127.0.0.1:{port}/version"
}}

source "null" "app" {{
  communicator = "none"
}}

build {{
  sources = ["source.null.app"]
  provisioner "shell-local" {{
    inline = ["echo ${{data.http.version.body}} > /dev/null"]
  }}
}}
"#
        ),
    );
    let child = spawn_in(&p, &["apply", "--auto-approve"], &[]);
    accepted
        .recv_timeout(Duration::from_secs(20))
        .expect("the data source connects");
    send(&child, "TERM");
    let out: util::Run = child.wait_with_output().unwrap().into();
    out.code(143);
    out.stderr_has("Interrupted (SIGTERM)");
    assert!(!p.path().join("state").exists(), "{}", out.stderr);
    assert!(temp_dirs_left(&p).is_empty(), "{:?}", temp_dirs_left(&p));
}

/// Files below `dir` named as the temporary file of an atomic write
/// (`.<name>.imgform-<pid>-<hex>.part`, or an older `.part`/`.tmp`).
fn temp_files_below(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let name = e.file_name().to_string_lossy();
            name.starts_with('.') && (name.ends_with(".part") || name.ends_with(".tmp"))
        })
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn a_kill_during_an_artifact_write_leaves_no_temp_file_after_the_next_apply() {
    if !util::is_root() {
        eprintln!("skipped: needs root (chroot)");
        return;
    }
    let p = Project::new();
    p.with_busybox_rootfs();
    p.file(
        "images.pkr.hcl",
        r#"
source "chroot" "tarball" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}

build {
  sources = ["source.chroot.tarball"]
  provisioner "shell" {
    inline = ["echo hello > /etc/hello"]
  }
}
"#,
    );
    let killed = p.run_env(
        &["apply", "--auto-approve"],
        &[("IMGFORM_FAULT", "kill-during-artifact-write")],
    );
    assert_ne!(killed.code, 0);
    let lock: Value = serde_json::from_str(&p.read("state/.lock")).unwrap();
    p.run(&["force-unlock", lock["id"].as_str().unwrap()])
        .success();
    let left = temp_files_below(&p.path().join("output"));
    assert_eq!(
        left.len(),
        1,
        "the fault leaves one half-written copy: {left:?}"
    );
    // A copy a live run is writing (this test's pid) is never touched.
    let live = p.path().join("output").join(format!(
        ".x.tar.imgform-{}-{}.part",
        std::process::id(),
        "0".repeat(32)
    ));
    std::fs::write(&live, "being written").unwrap();

    p.run(&["apply", "--auto-approve"]).success();
    assert_eq!(temp_files_below(p.path()), vec![live.clone()]);
    p.run(&["plan", "--detailed-exitcode"]).success();
    assert!(live.exists());
}
