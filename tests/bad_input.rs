//! The bad-input corpus: every directory under `tests/corpus/bad/` is one
//! broken project, the way a real user gets it wrong. For each, `imgform plan`
//! must fail cleanly: exit code 1, a diagnostic on stderr holding every line of
//! the case's `expected` file (one required substring per line), no panic,
//! nothing on stdout and nothing written into the definition dir.
//!
//! A case dir holds the definition files (copied as they are into a fresh
//! temp dir), `expected`, and optionally `args` (extra CLI arguments, one per
//! line, put before the definition dir). `expected` and `args` are not copied.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Files of a case dir that describe the case rather than belong to it.
const CASE_META: &[&str] = &["expected", "args"];

/// A run that takes longer than this is a hang, reported as a failure.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/bad")
}

fn case_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .expect("tests/corpus/bad exists")
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn case_dir(name: &str) -> PathBuf {
    let dir = corpus_dir().join(name);
    assert!(dir.is_dir(), "no corpus case {name}");
    dir
}

/// Non-empty lines of a file (trailing `\r` dropped); empty if it is absent.
fn lines_of(path: &Path) -> Vec<String> {
    match fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| l.trim_end_matches('\r').to_owned())
            .filter(|l| !l.trim().is_empty())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    }
}

fn copy_tree(from: &Path, to: &Path, top: bool) {
    for entry in fs::read_dir(from).expect("readable case dir") {
        let entry = entry.expect("readable case entry");
        let name = entry.file_name();
        if top && CASE_META.iter().any(|m| name == *m) {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        if entry.file_type().expect("file type").is_dir() {
            fs::create_dir(&dst).expect("create dir in temp");
            copy_tree(&src, &dst, false);
        } else {
            fs::copy(&src, &dst).expect("copy case file");
        }
    }
}

/// Every path under `dir`, relative to it.
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.insert(path.strip_prefix(base).unwrap_or(&path).to_path_buf());
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

struct Run {
    /// None when the process was killed by a signal or timed out.
    code: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

/// Runs the real binary with `args` in `cwd`, with NO_COLOR set and no
/// variables leaking in from the environment.
fn run_imgform(args: &[String], cwd: &Path) -> Run {
    let out_dir = tempfile::tempdir().expect("temp dir for output");
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgform"));
    cmd.args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(fs::File::create(&stderr_path).expect("stderr file"));
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        if key_str.starts_with("PKR_VAR_") || key_str.starts_with("IMGFORM_VAR_") {
            cmd.env_remove(&key);
        }
    }
    let mut child = cmd.spawn().expect("start imgform");
    let deadline = Instant::now() + RUN_TIMEOUT;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("wait for imgform") {
            break (Some(status), false);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.and_then(|s| s.code()),
        timed_out,
        stdout: fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// Copies a case into a fresh temp dir and runs `imgform <command...>
/// <args...> <tmpdir>` on it. Returns the run, the temp dir and the list of
/// paths in it before the run.
fn run_case(case: &Path, command: &[&str]) -> (Run, tempfile::TempDir, BTreeSet<PathBuf>) {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_tree(case, tmp.path(), true);
    let before = listing(tmp.path());
    let mut args: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
    args.extend(lines_of(&case.join("args")));
    args.push(tmp.path().to_string_lossy().into_owned());
    let run = run_imgform(&args, tmp.path());
    (run, tmp, before)
}

/// What is wrong with one case's run; empty when it behaved.
fn check_case(case: &Path) -> Vec<String> {
    let expected = lines_of(&case.join("expected"));
    let mut problems = Vec::new();
    if expected.is_empty() {
        problems.push("the case has no `expected` lines".to_owned());
    }
    let (run, tmp, before) = run_case(case, &["plan", "--no-color"]);
    if run.timed_out {
        problems.push(format!("did not finish within {RUN_TIMEOUT:?}"));
    }
    if run.code != Some(1) {
        problems.push(format!("exit code {:?}, expected Some(1)", run.code));
    }
    if run.stderr.contains("panicked") {
        problems.push("imgform panicked".to_owned());
    }
    if !run.stdout.is_empty() {
        problems.push(format!("stdout is not empty:\n{}", run.stdout));
    }
    for want in &expected {
        if !run.stderr.contains(want.as_str()) {
            problems.push(format!("stderr lacks {want:?}"));
        }
    }
    if tmp.path().join("state").exists() {
        problems.push("a state/ directory was created".to_owned());
    }
    let created: Vec<String> = listing(tmp.path())
        .difference(&before)
        .map(|p| p.display().to_string())
        .collect();
    if !created.is_empty() {
        problems.push(format!(
            "files were written into the definition dir: {}",
            created.join(", ")
        ));
    }
    if !problems.is_empty() {
        // Show paths as the case author wrote them.
        let tmp_prefix = format!("{}/", tmp.path().display());
        problems.push(format!(
            "full stderr:\n{}",
            run.stderr.replace(&tmp_prefix, "")
        ));
    }
    problems
}

#[test]
fn bad_input_corpus_fails_cleanly() {
    let cases = case_dirs();
    assert!(
        cases.len() >= 100,
        "expected at least 100 cases in {}, found {}",
        corpus_dir().display(),
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap_or_default().to_string_lossy();
        let problems = check_case(case);
        if !problems.is_empty() {
            failures.push(format!("--- case {name}:\n{}", problems.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases misbehaved:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// `validate --json` reports the same problems as data: `valid: false` and an
/// error whose location points at the broken line.
#[test]
fn validate_json_locates_errors() {
    // (case, file, line, col, summary substring)
    let checks = [
        (
            "07-unknown-source-attribute",
            "main.pkr.hcl",
            3,
            3,
            "instnce_type",
        ),
        ("29-image-cycle", "main.pkr.hcl", 13, 5, "dependency cycle"),
        (
            "41-max-retries-string",
            "main.pkr.hcl",
            10,
            5,
            "max_retries",
        ),
    ];
    let mut failures = Vec::new();
    for (name, file, line, col, summary) in checks {
        let (run, _tmp, _) = run_case(&case_dir(name), &["validate", "--json"]);
        let mut problems = Vec::new();
        if run.code != Some(1) {
            problems.push(format!("exit code {:?}, expected Some(1)", run.code));
        }
        if run.stderr.contains("panicked") {
            problems.push("imgform panicked".to_owned());
        }
        match serde_json::from_str::<serde_json::Value>(&run.stdout) {
            Err(e) => problems.push(format!("stdout is not JSON ({e}):\n{}", run.stdout)),
            Ok(doc) => {
                if doc["valid"] != serde_json::Value::Bool(false) {
                    problems.push(format!("`valid` is {}, expected false", doc["valid"]));
                }
                let diags = doc["diagnostics"].as_array().cloned().unwrap_or_default();
                let found = diags.iter().any(|d| {
                    let loc = &d["location"];
                    d["severity"] == "error"
                        && d["summary"].as_str().is_some_and(|s| s.contains(summary))
                        && loc["line"].as_u64() == Some(line)
                        && loc["col"].as_u64() == Some(col)
                        && loc["file"].as_str().is_some_and(|f| f.ends_with(file))
                });
                if !found {
                    problems.push(format!(
                        "no error about {summary:?} located at {file}:{line}:{col}; got:\n{}",
                        serde_json::to_string_pretty(&doc["diagnostics"]).unwrap_or_default()
                    ));
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "--- case {name}:\n{}\nstderr:\n{}",
                problems.join("\n"),
                run.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
