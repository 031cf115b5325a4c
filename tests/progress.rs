//! Progress while images build: heartbeats in plain output (CI), the live
//! view on a terminal (a real pseudo-terminal, through util-linux's
//! `script`), and `apply --json`'s event stream with its heartbeats.

mod util;

use std::process::Command;

use util::Project;

/// `slow` sleeps in silence; `quick` is built from it.
fn project() -> Project {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
source "null" "slow" {
  communicator = "none"
}
source "null" "quick" {
  communicator = "none"
}
build {
  sources = ["source.null.slow"]
  provisioner "shell-local" {
    inline = ["sleep 3"]
  }
}
build {
  name    = "after"
  sources = ["source.null.quick"]
  provisioner "shell-local" {
    inline = ["echo built on ${image.null.slow.id}"]
  }
}
"#,
    );
    p
}

#[test]
fn a_quiet_build_gets_heartbeats_in_plain_output() {
    let p = project();
    let run = p.run_env(&["apply", "--auto-approve"], &[("IMGFORM_HEARTBEAT", "1s")]);
    run.success();
    let beats: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("null.slow: still at provisioner 1 \"shell-local\" ("))
        .collect();
    assert!(beats.len() >= 2, "{}", run.stderr);
    assert!(beats.iter().all(|l| l.ends_with("s)")), "{beats:?}");
    // Waiting images and finished ones get none.
    assert!(
        !run.stderr.contains("after.null.quick: still"),
        "{}",
        run.stderr
    );
    // The default is 30 s: a 3 s build has none.
    let quiet = p.run(&["apply", "--auto-approve", "--replace", "null.slow"]);
    quiet.success();
    assert!(!quiet.stderr.contains(": still "), "{}", quiet.stderr);
}

#[test]
fn apply_json_streams_events_with_heartbeats_and_ends_with_the_result() {
    let p = project();
    let run = p.run_env(
        &["apply", "--auto-approve", "--json"],
        &[("IMGFORM_HEARTBEAT", "1s")],
    );
    run.success();
    let mut lines = run.json_lines();
    let result = lines.pop().unwrap();
    assert_eq!(result["format_version"], 1);
    assert_eq!(result["result"]["built"].as_array().unwrap().len(), 2);
    let types: Vec<(&str, &str)> = lines
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap_or(""),
                e["type"].as_str().unwrap(),
            )
        })
        .filter(|(_, t)| *t != "step" && *t != "output")
        .collect();
    let slow: Vec<&str> = types
        .iter()
        .filter(|(a, _)| *a == "null.slow")
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(slow.first(), Some(&"started"), "{slow:?}");
    assert_eq!(slow.last(), Some(&"built"), "{slow:?}");
    assert!(slow.contains(&"heartbeat"), "{slow:?}");
    let quick_started = types
        .iter()
        .position(|t| *t == ("after.null.quick", "started"))
        .unwrap();
    let slow_built = types
        .iter()
        .position(|t| *t == ("null.slow", "built"))
        .unwrap();
    assert!(slow_built < quick_started, "dependency order: {types:?}");
    for e in &lines {
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
    }
    let beat = lines.iter().find(|e| e["type"] == "heartbeat").unwrap();
    assert_eq!(beat["step"], "provisioner 1 \"shell-local\"");
    assert!(beat["step_seconds"].as_u64().is_some(), "{beat}");
}

#[test]
fn a_terminal_gets_a_live_line_per_running_image_and_a_summary() {
    let p = project();
    let bin = util::bin();
    // `script` gives imgform a real pseudo-terminal and records what it drew.
    let typescript = p.path().join("typescript");
    let out = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("{} apply --auto-approve", bin.display()))
        .arg(&typescript)
        .current_dir(p.path())
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "120")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux script");
    let drawn = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    assert!(out.status.success(), "{drawn}");
    // The spinner line of the running image: its address, elapsed time and
    // step; the summary line under it.
    assert!(
        drawn.contains("null.slow [0s] provisioner 1 \"shell-local\""),
        "{drawn}"
    );
    assert!(
        drawn.contains("built 0 · running 1 · waiting 1 · failed 0"),
        "{drawn}"
    );
    // The plain lines still scroll above it, and the result is there.
    assert!(drawn.contains("null.slow: built null:"), "{drawn}");
    assert!(drawn.contains("Apply complete! 2 built"), "{drawn}");
    // NO_COLOR: no colour codes (the live view moves the cursor, but never
    // paints).
    assert!(
        !drawn.contains("\x1b[32m") && !drawn.contains("\x1b[1m"),
        "{drawn:?}"
    );
}
