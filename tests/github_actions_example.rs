//! `examples/github-actions/imgform.yml` is a well-formed workflow whose
//! `imgform` commands use only flags the real binary has, and whose plan and
//! apply steps work when run as GitHub runs them (bash, on a null-builder
//! project).

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;
use util::Project;

const MARKER: &str = "<!-- imgform-plan -->";

fn workflow_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/github-actions/imgform.yml")
}

fn workflow() -> Value {
    let text = std::fs::read_to_string(workflow_path()).expect("read the workflow");
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("imgform.yml is not YAML: {e}"))
}

fn jobs(wf: &Value) -> &serde_yaml::Mapping {
    wf["jobs"].as_mapping().expect("jobs is a mapping")
}

fn steps(job: &Value) -> &Vec<Value> {
    job["steps"].as_sequence().expect("steps is a list")
}

/// The step of `job` named `name`.
fn step<'a>(wf: &'a Value, job: &str, name: &str) -> &'a Value {
    steps(&wf["jobs"][job])
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("job {job} has no step named {name:?}"))
}

/// Every `run:` script of every step, with where it is.
fn run_scripts(wf: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (job_name, job) in jobs(wf) {
        for (i, s) in steps(job).iter().enumerate() {
            if let Some(run) = s["run"].as_str() {
                let name = s["name"].as_str().map_or(format!("#{i}"), str::to_owned);
                out.push((
                    format!("{}/{name}", job_name.as_str().unwrap()),
                    run.to_owned(),
                ));
            }
        }
    }
    out
}

/// Splits a shell script into simple commands (lists of words): quotes
/// grouped, `\` line continuations joined, split at newlines, `;`, `&&`,
/// `||`, `|`, and cut at the first redirection. Enough for workflow steps.
fn shell_commands(script: &str) -> Vec<Vec<String>> {
    let script = script.replace("\\\n", " ");
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = script.chars().peekable();
    let end_word = |words: &mut Vec<String>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => {
                // A comment: to the end of the line.
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            (None, ' ' | '\t') => end_word(&mut words, &mut word, &mut in_word),
            (None, '\n' | ';' | '&' | '|') => {
                end_word(&mut words, &mut word, &mut in_word);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    if !words.is_empty() {
        commands.push(words);
    }
    // Cut at redirections (`> plan.md`, `2> err`, `>> "$X"`).
    for cmd in &mut commands {
        if let Some(i) = cmd.iter().position(|w| {
            w.trim_start_matches(|c: char| c.is_ascii_digit())
                .starts_with(['>', '<'])
        }) {
            cmd.truncate(i);
        }
    }
    commands
}

/// The `imgform` commands of a script: the words after `imgform`.
fn imgform_commands(script: &str) -> Vec<Vec<String>> {
    shell_commands(script)
        .into_iter()
        .filter_map(|words| {
            let mut words = words
                .into_iter()
                .skip_while(|w| w.contains('=') && !w.starts_with('-') && !w.starts_with('"'));
            match words.next() {
                Some(first) if first == "imgform" => Some(words.collect()),
                _ => None,
            }
        })
        .collect()
}

/// The subcommand (`plan`, `state list`, …) of imgform's arguments, skipping
/// global options.
fn subcommand(args: &[String]) -> Vec<String> {
    let mut i = 0;
    let mut sub = Vec::new();
    while i < args.len() {
        let a = &args[i];
        if a == "-C" || a == "--chdir" {
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            i += 1;
            continue;
        }
        sub.push(a.clone());
        if a != "state" {
            break;
        }
        i += 1;
    }
    sub
}

fn help(sub: &[String]) -> Result<String, String> {
    let mut args: Vec<&str> = sub.iter().map(String::as_str).collect();
    args.push("--help");
    let run = util::imgform_in(Path::new(env!("CARGO_MANIFEST_DIR")), &args, &[]);
    if run.code == 0 {
        Ok(run.stdout)
    } else {
        Err(format!(
            "`imgform {}` fails:\n{}",
            args.join(" "),
            run.stderr
        ))
    }
}

/// Checks that every option of one imgform command is in its subcommand's
/// `--help`: `--flag` (with or without `=value`) and `-X`.
fn check_flags(args: &[String]) -> Result<(), String> {
    let sub = subcommand(args);
    if sub.is_empty() {
        return Err(format!("no subcommand in `imgform {}`", args.join(" ")));
    }
    let help = help(&sub)?;
    for arg in args.iter().filter(|a| a.starts_with('-') && a.len() > 1) {
        let flag = arg.split('=').next().unwrap();
        let listed = regex::Regex::new(&format!(
            r"(?m)(^|[\s,\[]){}([\s,=<\[]|$)",
            regex::escape(flag)
        ))
        .unwrap()
        .is_match(&help);
        if !listed {
            return Err(format!(
                "`{flag}` (in `imgform {}`) is not an option of `imgform {}`:\n{help}",
                args.join(" "),
                sub.join(" ")
            ));
        }
    }
    Ok(())
}

#[test]
fn the_workflow_is_a_plan_on_pull_requests_and_an_apply_on_main() {
    let wf = workflow();
    let on = &wf["on"];
    assert!(
        on.is_mapping(),
        "`on` is the trigger mapping (not a YAML 1.1 boolean): {on:?}"
    );
    assert!(
        on.as_mapping().unwrap().contains_key("pull_request"),
        "{on:?}"
    );
    let branches = on["push"]["branches"].as_sequence().expect("push.branches");
    assert!(
        branches.iter().any(|b| b.as_str() == Some("main")),
        "{branches:?}"
    );

    assert!(!jobs(&wf).is_empty());
    for (name, job) in jobs(&wf) {
        assert!(job["runs-on"].is_string(), "job {name:?} has runs-on");
        assert!(!steps(job).is_empty(), "job {name:?} has steps");
        for s in steps(job) {
            assert!(
                s["uses"].is_string() != s["run"].is_string(),
                "a step has either uses or run: {s:?}"
            );
        }
    }
    assert!(wf["jobs"]["plan"]["if"]
        .as_str()
        .unwrap()
        .contains("pull_request"));
    assert!(wf["jobs"]["apply"]["if"]
        .as_str()
        .unwrap()
        .contains("refs/heads/main"));
    assert!(wf["jobs"]["drift"]["if"]
        .as_str()
        .unwrap()
        .contains("schedule"));
    assert!(on["schedule"][0]["cron"].is_string(), "{on:?}");

    // The PR comment is found by the marker the Markdown starts with.
    let comment = step(&wf, "plan", "Post or update the PR comment");
    assert!(comment["uses"]
        .as_str()
        .unwrap()
        .starts_with("actions/github-script@"));
    let script = comment["with"]["script"].as_str().unwrap();
    assert!(script.contains(MARKER), "{script}");
    assert!(script.contains("updateComment") && script.contains("createComment"));
    let upload = step(&wf, "plan", "Upload the plan");
    assert!(upload["uses"]
        .as_str()
        .unwrap()
        .starts_with("actions/upload-artifact@"));
    assert!(upload["with"]["path"]
        .as_str()
        .unwrap()
        .contains("plan.bin"));

    // The state is restored in both jobs and saved only by apply.
    let all_uses = |job: &str| -> Vec<String> {
        steps(&wf["jobs"][job])
            .iter()
            .filter_map(|s| s["uses"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(all_uses("plan")
        .iter()
        .any(|u| u.starts_with("actions/cache/restore@")));
    assert!(!all_uses("plan")
        .iter()
        .any(|u| u.starts_with("actions/cache/save@")));
    let save = step(&wf, "apply", "Save the state");
    assert!(save["uses"]
        .as_str()
        .unwrap()
        .starts_with("actions/cache/save@"));
    assert_eq!(save["if"].as_str(), Some("always()"));

    // The commands the README promises.
    let plan_cmds = imgform_commands(step(&wf, "plan", "Plan")["run"].as_str().unwrap());
    assert_eq!(plan_cmds.len(), 1, "{plan_cmds:?}");
    for flag in ["--out", "--markdown"] {
        assert!(plan_cmds[0].iter().any(|a| a == flag), "{plan_cmds:?}");
    }
    let apply_cmds = imgform_commands(step(&wf, "apply", "Apply")["run"].as_str().unwrap());
    assert_eq!(subcommand(&apply_cmds[0]), ["apply"]);
    assert!(
        apply_cmds[0].iter().any(|a| a.ends_with("plan.bin")),
        "{apply_cmds:?}"
    );
}

#[test]
fn every_imgform_flag_in_the_workflow_is_in_the_binarys_help() {
    let wf = workflow();
    let mut checked = Vec::new();
    let mut problems = Vec::new();
    for (place, script) in run_scripts(&wf) {
        for args in imgform_commands(&script) {
            if let Err(e) = check_flags(&args) {
                problems.push(format!("{place}: {e}"));
            }
            checked.push(format!("imgform {}", args.join(" ")));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    // plan (PR), plan + show + apply (main), drift --html + --markdown
    // (scheduled).
    assert_eq!(checked.len(), 6, "{checked:#?}");
    assert!(
        checked
            .iter()
            .any(|c| c.starts_with("imgform show --markdown")),
        "{checked:#?}"
    );

    // The check can fail.
    let words = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    assert!(check_flags(&words("plan --explode")).is_err());
    assert!(check_flags(&words("show --parallelism 2")).is_err());
    assert!(check_flags(&words("plan --out")).is_ok());
    assert!(check_flags(&words("-C images apply --auto-approve")).is_ok());
    assert!(check_flags(&words("state list --json")).is_ok());
    assert!(check_flags(&words("state list --auto-approve")).is_err());
    assert!(check_flags(&words("launch --now")).is_err());
    // And the extraction finds commands where the workflow writes them.
    assert_eq!(
        imgform_commands("status=0\nX=1 imgform plan --chdir \"$D\" --out p.bin > p.md 2> e || status=$?\ncargo install imgform"),
        vec![words("plan --chdir $D --out p.bin")]
    );
}

#[test]
fn the_markdown_starts_with_the_marker_the_comment_step_looks_for() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        "source \"null\" \"a\" {\n  communicator = \"none\"\n}\n\nbuild {\n  sources = [\"source.null.a\"]\n}\n",
    );
    let run = p.run(&["plan", "--markdown"]);
    run.success();
    assert_eq!(run.stdout.lines().next(), Some(MARKER), "{}", run.stdout);
}

/// Runs one step's `run:` script as GitHub does (`bash -e -o pipefail`),
/// in `dir`, with imgform on the PATH.
fn run_step(wf: &Value, job: &str, name: &str, dir: &Path, github: &Path) -> util::Run {
    let script = step(wf, job, name)["run"].as_str().unwrap().to_owned();
    assert!(
        !script.contains("${{"),
        "{name}: an expression the test cannot fill in"
    );
    let bin_dir = util::bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args([
        "--noprofile",
        "--norc",
        "-e",
        "-o",
        "pipefail",
        "-c",
        &script,
    ])
    .current_dir(dir)
    .env("PATH", path)
    .env("NO_COLOR", "1")
    .env("GITHUB_OUTPUT", github.join("output"))
    .env("GITHUB_STEP_SUMMARY", github.join("summary"));
    for (k, v) in wf["env"].as_mapping().unwrap() {
        cmd.env(k.as_str().unwrap(), v.as_str().unwrap());
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("PKR_VAR_") || k.starts_with("IMGFORM_VAR_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("run bash").into()
}

#[test]
fn the_plan_and_apply_steps_work_on_a_real_project() {
    let wf = workflow();
    let dir = wf["env"]["IMGFORM_DIR"].as_str().unwrap().to_owned();
    let repo = Project::new();
    let github = tempfile::tempdir().unwrap();
    repo.file(
        &format!("{dir}/images.pkr.hcl"),
        r#"
source "null" "base" {
  communicator = "none"
}

source "null" "app" {
  communicator = "none"
}

build {
  name = "golden"
  source "null.base" {}
  provisioner "shell-local" {
    inline = ["echo base"]
  }
}

build {
  name = "layer"
  source "null.app" {}
  provisioner "shell-local" {
    inline = ["echo app on ${image.golden.null.base.id}"]
  }
}
"#,
    );
    let output = || std::fs::read_to_string(github.path().join("output")).unwrap_or_default();

    // Pull request: plan.md is the comment, plan.bin the artifact.
    run_step(&wf, "plan", "Plan", repo.path(), github.path()).success();
    assert!(output().contains("status=0"), "{}", output());
    let md = repo.read("plan.md");
    assert!(md.starts_with(MARKER), "{md}");
    assert!(md.contains("2 to build"), "{md}");
    assert!(repo.path().join("plan.bin").is_file());
    run_step(
        &wf,
        "plan",
        "Add the plan to the job summary",
        repo.path(),
        github.path(),
    )
    .success();
    assert!(std::fs::read_to_string(github.path().join("summary"))
        .unwrap()
        .starts_with(MARKER));
    repo.remove("plan.bin");

    // Main: plan, summary, apply; the state is where the cache steps look.
    run_step(&wf, "apply", "Plan", repo.path(), github.path()).success();
    run_step(
        &wf,
        "apply",
        "Add the plan to the job summary",
        repo.path(),
        github.path(),
    )
    .success();
    let applied = run_step(&wf, "apply", "Apply", repo.path(), github.path());
    applied.success();
    assert!(applied.stderr.contains("2 built"), "{}", applied.stderr);
    let state_path = step(&wf, "apply", "Save the state")["with"]["path"]
        .as_str()
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .replace("${{ env.IMGFORM_DIR }}", &dir);
    assert!(
        repo.path().join(&state_path).join("local.json").is_file(),
        "{state_path}"
    );
    assert!(!repo.path().join(&state_path).join(".lock").exists());
    let summary = std::fs::read_to_string(github.path().join("summary")).unwrap();
    assert!(
        summary.contains("<!-- imgform-apply -->") && summary.contains("2 built"),
        "{summary}"
    );

    // Scheduled: the drift page and the report in the job summary.
    std::fs::write(github.path().join("summary"), "").unwrap();
    run_step(&wf, "drift", "Drift", repo.path(), github.path()).success();
    let page = repo.read("drift.html");
    assert!(
        page.starts_with("<!DOCTYPE html>") && page.contains("<svg"),
        "{page}"
    );
    assert!(page.contains("Drift: 2 current, 0 stale"), "{page}");
    let summary = std::fs::read_to_string(github.path().join("summary")).unwrap();
    assert!(summary.starts_with("<!-- imgform-drift -->"), "{summary}");
    let upload = step(&wf, "drift", "Upload the drift page");
    assert_eq!(upload["with"]["path"].as_str(), Some("drift.html"));

    // Nothing changed: the next PR's comment says so.
    run_step(&wf, "plan", "Plan", repo.path(), github.path()).success();
    assert!(
        repo.read("plan.md").contains("No changes"),
        "{}",
        repo.read("plan.md")
    );

    // A broken definition: the comment shows the error, and the job fails
    // at its last step.
    repo.file(
        &format!("{dir}/broken.pkr.hcl"),
        "source \"null\" \"x\" {\n  bogus = 1\n}\n",
    );
    std::fs::write(github.path().join("output"), "").unwrap();
    run_step(&wf, "plan", "Plan", repo.path(), github.path()).success();
    assert!(output().contains("status=1"), "{}", output());
    let md = repo.read("plan.md");
    assert!(
        md.starts_with(MARKER) && md.contains("imgform plan failed"),
        "{md}"
    );
    assert!(md.contains("bogus"), "{md}");
    let fail = step(&wf, "plan", "Fail if the plan failed");
    assert_eq!(
        fail["if"].as_str(),
        Some("steps.plan.outputs.status != '0'")
    );
    assert_eq!(fail["run"].as_str().map(str::trim), Some("exit 1"));
}
