//! The local state journal on the real binary: an apply killed after some
//! images were recorded loses none of them, leaves nothing corrupt, and the
//! next run folds the journal into the state file (`state/README.md`,
//! "Journal").

mod util;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::Project;

/// `n` independent `null` images; each appends its name to `ran.log` when
/// built, after sleeping `sleep` seconds.
fn images(n: usize, sleep: &str) -> String {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "source \"null\" \"img{i:02}\" {{\n  communicator = \"none\"\n}}\n\
             build {{\n  sources = [\"source.null.img{i:02}\"]\n  \
             provisioner \"shell-local\" {{\n    inline = [\"sleep {sleep}\", \"echo img{i:02} >> ran.log\"]\n  }}\n}}\n"
        ));
    }
    text
}

/// How many times each image ran.
fn runs(p: &Project) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in p.read("ran.log").lines() {
        *out.entry(line.to_owned()).or_default() += 1;
    }
    out
}

fn state(p: &Project) -> serde_json::Value {
    serde_json::from_str(&p.read("state/local.json")).expect("state/local.json is valid JSON")
}

fn recorded(state: &serde_json::Value) -> Vec<String> {
    state["images"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Addresses in the journal, in order.
fn journal_addresses(p: &Project) -> Vec<String> {
    p.read("state/local.journal")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|e| e["address"].as_str().unwrap().to_owned())
        .collect()
}

/// Removes the lock a killed run left behind.
fn unlock(p: &Project) {
    let lock: serde_json::Value = serde_json::from_str(&p.read("state/.lock")).unwrap();
    p.run(&["force-unlock", lock["id"].as_str().unwrap()])
        .success();
}

/// Plans as JSON: address → action.
fn actions(p: &Project) -> BTreeMap<String, String> {
    let plan = p.run(&["plan", "--json"]);
    plan.success();
    plan.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_owned(),
                c["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_run_killed_after_a_record_loses_nothing_and_the_next_run_compacts() {
    let p = Project::new();
    p.file("images.pkr.hcl", &images(6, "0"));
    let killed = p.run_env(
        &["apply", "--auto-approve", "--parallelism", "1"],
        &[("IMGFORM_FAULT", "kill-after-record:null.img03")],
    );
    assert_ne!(killed.code, 0, "the process was killed");
    // The first image was written whole (it created the state file); the
    // ones after it went to the journal, the killed one included.
    let file = state(&p);
    assert_eq!(recorded(&file), ["null.img00"]);
    assert_eq!(
        journal_addresses(&p),
        ["null.img01", "null.img02", "null.img03"]
    );
    unlock(&p);

    // A plan reads file + journal: the four recorded images are done.
    let planned = actions(&p);
    for i in 0..6 {
        let expected = if i <= 3 { "no-op" } else { "build" };
        assert_eq!(planned[&format!("null.img{i:02}")], expected, "{planned:?}");
    }
    assert!(
        p.path().join("state/local.journal").exists(),
        "plan writes nothing"
    );

    // The next apply builds only the rest and compacts the journal.
    p.run(&["apply", "--auto-approve"]).success();
    assert!(!p.path().join("state/local.journal").exists());
    let after = state(&p);
    assert_eq!(recorded(&after).len(), 6);
    assert_eq!(after["lineage"], file["lineage"]);
    // One serial per recorded image: 0 → 1 (file), +3 (journal), +2.
    assert_eq!(after["serial"], 6);
    assert!(runs(&p).values().all(|&n| n == 1), "{:?}", runs(&p));
    p.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_torn_last_journal_line_is_ignored_and_a_damaged_one_is_reported() {
    let p = Project::new();
    p.file("images.pkr.hcl", &images(3, "0"));
    p.run_env(
        &["apply", "--auto-approve", "--parallelism", "1"],
        &[("IMGFORM_FAULT", "kill-after-record:null.img02")],
    );
    unlock(&p);
    let journal = p.read("state/local.journal");
    let lines: Vec<&str> = journal.lines().collect();
    assert_eq!(lines.len(), 2, "{journal}");

    // A crash in the middle of the last append: half a line, no newline.
    let torn = format!("{}\n{}", lines[0], &lines[1][..lines[1].len() / 2]);
    p.file("state/local.journal", &torn);
    let planned = actions(&p);
    assert_eq!(planned["null.img01"], "no-op");
    assert_eq!(planned["null.img02"], "build");

    // Damage before the last line is not guessed at: a located error.
    let damaged = format!("{}\n{}\n", &lines[0][..10], lines[1]);
    p.file("state/local.journal", &damaged);
    let bad = p.run(&["plan"]);
    bad.code(1);
    bad.stderr_has("local.journal").stderr_has("line 1");
    let apply = p.run(&["apply", "--auto-approve"]);
    apply.code(1);
    assert_eq!(p.read("state/local.journal"), damaged, "nothing written");

    // Restored, the next apply compacts it and builds the last image.
    p.file("state/local.journal", &journal);
    p.run(&["apply", "--auto-approve"]).success();
    assert_eq!(recorded(&state(&p)).len(), 3);
    assert!(!p.path().join("state/local.journal").exists());
}

#[test]
fn sigkill_in_the_middle_of_an_apply_keeps_every_recorded_image() {
    let p = Project::new();
    p.file("images.pkr.hcl", &images(40, "0.05"));
    let mut child = Command::new(util::bin())
        .current_dir(p.path())
        .args(["apply", "--auto-approve", "--parallelism", "4"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start imgform");
    let started = Instant::now();
    while journal_addresses(&p).len() < 8 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the journal did not grow"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    child.wait().unwrap();
    let before_kill: Vec<String> = recorded(&state(&p))
        .into_iter()
        .chain(journal_addresses(&p))
        .collect();
    assert!(before_kill.len() >= 9, "{before_kill:?}");
    unlock(&p);

    let planned = actions(&p);
    for addr in &before_kill {
        assert_eq!(
            planned[addr], "no-op",
            "{addr} was recorded before the kill"
        );
    }
    let ran_before = runs(&p);
    p.run(&["apply", "--auto-approve"]).success();
    assert_eq!(recorded(&state(&p)).len(), 40);
    assert!(!p.path().join("state/local.journal").exists());
    let ran_after = runs(&p);
    // Recorded images are never built again.
    for addr in &before_kill {
        let name = addr.trim_start_matches("null.");
        assert_eq!(ran_after[name], ran_before[name], "{addr} ran again");
    }
    p.run(&["plan", "--detailed-exitcode"]).code(0);
}
