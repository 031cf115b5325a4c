//! The real-world corpus: every directory under `tests/corpus/realworld/` is
//! one project in the shape a well-known public repository uses (its
//! `MIRRORS.md` names the repository and path it mirrors; no text of theirs
//! is copied). Each case's `script` says what to run and what must come out,
//! so a case is data, not code:
//!
//! ```text
//! # a comment
//! needs moto                 # moto on 127.0.0.1, its AWS_* env for every command
//! needs http                 # the case's http/ folder served; URL in $HTTP_URL
//! needs root                 # documents that the case builds (chroot)
//! moto ami NAME [OWNER]      # a public EBS/HVM AMI moto knows from the start
//! moto ssm NAME TYPE VALUE   # put an SSM parameter (VALUE: rest of the line)
//! moto secret NAME VALUE     # create a Secrets Manager secret
//! env NAME VALUE             # set for the commands that follow
//! $ plan packer/             # run imgform in a temp copy of the case
//! exit 0                     # its exit code (required after every `$`)
//! stdout TEXT                # stdout contains TEXT (`!stdout`: does not)
//! stderr TEXT                # stderr contains TEXT (`!stderr`: does not)
//! nowhere TEXT               # no file written in the run dir holds TEXT
//! rootfs busybox PATH        # a busybox root filesystem tarball at PATH (chroot cases)
//! file PATH TEXT             # the file PATH (in the run dir) holds TEXT
//! git commit MESSAGE         # the run dir becomes a git repository; everything in it is committed
//! ```
//!
//! `${HTTP_URL}` and `${CASE}` (the temp copy) are substituted in script
//! lines. `MIRRORS.md` and `script` are not copied into the run dir.

mod util;

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::moto::Moto;

const CASE_META: &[&str] = &["MIRRORS.md", "script"];

/// The account moto runs as (`owners = ["self"]` finds its AMIs).
const MOTO_ACCOUNT: &str = "123456789012";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/realworld")
}

fn case_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(corpus_dir()) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn copy_case(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("readable case entry");
        let rel = entry.path().strip_prefix(from).unwrap();
        if rel.components().count() == 1 && CASE_META.iter().any(|m| rel == Path::new(m)) {
            continue;
        }
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else if entry.file_type().is_symlink() {
            let target = fs::read_link(entry.path()).unwrap();
            std::os::unix::fs::symlink(target, &dest).unwrap();
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Splits a command line on whitespace; `"double quotes"` group words.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// A static HTTP server (Python's) over a folder, killed on drop.
struct HttpServer {
    child: Child,
    url: String,
}

impl HttpServer {
    fn start(dir: &Path) -> HttpServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "http.server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rootfs busybox PATH`: a busybox root filesystem tarball
/// (scripts/make-busybox-rootfs.sh) at PATH in the run dir, for cases that
/// build with the chroot builder.
fn make_rootfs(dir: &Path, rest: &str, at: &str) {
    let Some(("busybox", path)) = rest.split_once(' ') else {
        panic!("{at}: rootfs busybox PATH");
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-busybox-rootfs.sh");
    let status = Command::new(script)
        .arg(dir.join(path.trim()))
        .stdout(Stdio::null())
        .status()
        .expect("scripts/make-busybox-rootfs.sh");
    assert!(status.success(), "{at}: make-busybox-rootfs.sh failed");
}

/// `git commit MESSAGE`: the run dir becomes a git repository (on branch
/// `main`, the first time) and everything in it is committed, by a fixed
/// author, for cases whose templates read git data sources.
fn git_directive(dir: &Path, rest: &str, at: &str) {
    let Some(("commit", message)) = rest.split_once(' ') else {
        panic!("{at}: git commit MESSAGE");
    };
    let git = |args: &[&str]| util::git(dir, args);
    if !dir.join(".git").exists() {
        git(&["init", "-q", "-b", "main"]);
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "--allow-empty", "-m", message.trim()]);
}

/// Runs one case; returns the failures (empty when it passed).
fn run_case(case: &Path) -> Vec<String> {
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let mirrors = fs::read_to_string(case.join("MIRRORS.md")).unwrap_or_default();
    let mut failures = Vec::new();
    if !mirrors.starts_with("Mirrors: ") {
        failures.push(format!(
            "{name}: MIRRORS.md must start with `Mirrors: <repo> <path>`"
        ));
    }
    let script = fs::read_to_string(case.join("script"))
        .unwrap_or_else(|e| panic!("{name}: cannot read its script: {e}"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(&name);
    copy_case(case, &dir);
    let home = tmp.path().join("home");
    fs::create_dir_all(&home).unwrap();

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("HOME".into(), home.display().to_string());
    let mut moto: Option<Moto> = None;
    let mut http: Option<HttpServer> = None;
    let mut last: Option<(String, util::Run)> = None;
    let mut checked_exit = true;

    for (n, raw) in script.lines().enumerate() {
        let at = format!("{name}/script:{}", n + 1);
        let mut line = raw.trim().to_owned();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(h) = &http {
            line = line.replace("${HTTP_URL}", &h.url);
        }
        line = line.replace("${CASE}", &dir.display().to_string());
        let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let rest = rest.trim();
        match word {
            "needs" => match rest {
                "moto" => {
                    // The AMIs the script names exist from the start, in
                    // order (moto cannot register EBS-backed HVM ones).
                    let amis: Vec<(String, String, String)> = script
                        .lines()
                        .filter_map(|l| l.trim().strip_prefix("moto ami "))
                        .enumerate()
                        .map(|(i, rest)| {
                            let mut w = rest.split_whitespace();
                            let name = w.next().unwrap_or_default().to_owned();
                            let owner = w.next().unwrap_or(MOTO_ACCOUNT).to_owned();
                            (format!("ami-{:017x}", i + 1), name, owner)
                        })
                        .collect();
                    let amis: Vec<(&str, &str, &str)> = amis
                        .iter()
                        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
                        .collect();
                    let m = Moto::start_with_amis(&amis, tmp.path());
                    for (k, v) in m.aws_env() {
                        env.insert(k, v);
                    }
                    env.insert("AWS_REGION".into(), "us-east-1".into());
                    env.insert("AWS_DEFAULT_REGION".into(), "us-east-1".into());
                    moto = Some(m);
                }
                "http" => {
                    let h = HttpServer::start(&dir.join("http"));
                    env.insert("HTTP_URL".into(), h.url.clone());
                    http = Some(h);
                }
                "root" => assert!(util::is_root(), "{at}: this case needs root"),
                other => panic!("{at}: unknown need `{other}`"),
            },
            "moto" => {
                let m = moto
                    .as_ref()
                    .unwrap_or_else(|| panic!("{at}: `moto` before `needs moto`"));
                let (what, args) = rest.split_once(' ').unwrap_or((rest, ""));
                match what {
                    // Loaded when moto started.
                    "ami" => {}
                    "ssm" => {
                        let mut it = args.trim().splitn(3, ' ');
                        let (p, kind, value) = (it.next(), it.next(), it.next());
                        let (Some(p), Some(kind), Some(value)) = (p, kind, value) else {
                            panic!("{at}: moto ssm NAME TYPE VALUE");
                        };
                        m.put_parameter(p, kind, value);
                    }
                    "secret" => {
                        let (s, value) = args
                            .trim()
                            .split_once(' ')
                            .unwrap_or_else(|| panic!("{at}: moto secret NAME VALUE"));
                        m.create_secret(s, value);
                    }
                    other => panic!("{at}: unknown moto action `{other}`"),
                }
            }
            "env" => {
                let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
                env.insert(k.to_owned(), v.to_owned());
            }
            "$" => {
                if !checked_exit {
                    failures.push(format!("{at}: the previous command has no `exit` line"));
                }
                let args = words(rest);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let pairs: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                last = Some((rest.to_owned(), util::imgform_in(&dir, &args, &pairs)));
                checked_exit = false;
            }
            "exit" | "stdout" | "stderr" | "!stdout" | "!stderr" => {
                let (cmd, run) = last
                    .as_ref()
                    .unwrap_or_else(|| panic!("{at}: `{word}` before any `$` command"));
                let show = || {
                    format!(
                        "{at}: `imgform {cmd}`\n--- stdout\n{}\n--- stderr\n{}",
                        run.stdout, run.stderr
                    )
                };
                let ok = match word {
                    "exit" => {
                        checked_exit = true;
                        rest.parse::<i32>()
                            .unwrap_or_else(|_| panic!("{at}: exit takes a number"))
                            == run.code
                    }
                    "stdout" => run.stdout.contains(rest),
                    "stderr" => run.stderr.contains(rest),
                    "!stdout" => !run.stdout.contains(rest),
                    _ => !run.stderr.contains(rest),
                };
                if !ok {
                    let what = match word {
                        "exit" => format!("exit {rest} (got {})", run.code),
                        w => format!("{w} {rest:?}"),
                    };
                    failures.push(format!("expected {what}\n{}", show()));
                    if word == "exit" {
                        // The checks after a wrong exit would only repeat it.
                        break;
                    }
                }
            }
            "file" => {
                let (path, text) = rest.split_once(' ').unwrap_or((rest, ""));
                match fs::read_to_string(dir.join(path)) {
                    Ok(body) if body.contains(text) => {}
                    Ok(body) => failures.push(format!("{at}: {path} lacks {text:?}:\n{body}")),
                    Err(e) => failures.push(format!("{at}: cannot read {path}: {e}")),
                }
            }
            "nowhere" => {
                for entry in walkdir::WalkDir::new(&dir) {
                    let entry = entry.expect("readable run dir");
                    if !entry.file_type().is_file() {
                        continue;
                    }
                    let rel = entry.path().strip_prefix(&dir).unwrap();
                    let original = case.join(rel);
                    if original.is_file() {
                        // The case's own files (a secret's definition).
                        continue;
                    }
                    let bytes = fs::read(entry.path()).unwrap_or_default();
                    if String::from_utf8_lossy(&bytes).contains(rest) {
                        failures.push(format!("{at}: {} holds {rest:?}", rel.display()));
                    }
                }
            }
            "rootfs" => make_rootfs(&dir, rest, &at),
            "git" => git_directive(&dir, rest, &at),
            other => panic!("{at}: unknown directive `{other}`"),
        }
    }
    if !checked_exit {
        failures.push(format!("{name}: the last command has no `exit` line"));
    }
    if last.is_none() {
        failures.push(format!("{name}: the script runs no command"));
    }
    failures
}

#[test]
fn every_real_world_case_loads_and_runs_as_its_script_says() {
    let cases = case_dirs();
    let mut failures = Vec::new();
    for case in &cases {
        let started = Instant::now();
        let mut f = run_case(case);
        eprintln!(
            "{} {:?}: {}",
            case.file_name().unwrap().to_string_lossy(),
            started.elapsed(),
            if f.is_empty() { "ok" } else { "FAILED" }
        );
        failures.append(&mut f);
    }
    assert!(
        failures.is_empty(),
        "{} of {} real-world cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_corpus_is_large_enough_and_names_what_it_mirrors() {
    let cases = case_dirs();
    for case in &cases {
        let mirrors = fs::read_to_string(case.join("MIRRORS.md")).unwrap_or_default();
        let first = mirrors.lines().next().unwrap_or_default();
        let named: Vec<&str> = first
            .trim_start_matches("Mirrors: ")
            .split_whitespace()
            .collect();
        assert!(
            first.starts_with("Mirrors: ") && named.len() >= 2 && named[0].contains('/'),
            "{}: MIRRORS.md must start with `Mirrors: <owner/repo> <path>`",
            case.display()
        );
    }
    assert!(
        cases.len() >= 30,
        "the real-world corpus holds {} cases; the issue asks for at least 30",
        cases.len()
    );
}

#[test]
fn script_words_group_double_quotes() {
    assert_eq!(
        words(r#"plan -var "name=a b" packer/"#),
        ["plan", "-var", "name=a b", "packer/"]
    );
    assert_eq!(words(r#"x """#), ["x", ""]);
}
