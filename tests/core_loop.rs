//! The core loop on the real binary: definitions → content addresses →
//! plan against recorded state → apply only what changed.

mod util;

use util::{filters, Project};

const CHAIN: &str = r#"
variable "greeting" {
  type    = string
  default = "hello"
}

variable "api_token" {
  type      = string
  default   = "s3cr3t-t0ken"
  sensitive = true
}

locals {
  log = "side-effects.log"
}

source "null" "base" {
  communicator = "none"
}

source "null" "other" {
  communicator = "none"
}

source "null" "mid" {
  communicator = "none"
}

source "null" "app" {
  communicator = "none"
}

build {
  name    = "golden"
  sources = ["source.null.base", "source.null.other"]

  provisioner "shell-local" {
    script           = "scripts/${source.name}.sh"
    environment_vars = ["LOG=${local.log}", "GREETING=${var.greeting}"]
  }
}

build {
  name = "layer"

  source "null.mid" {}

  provisioner "shell-local" {
    script           = "scripts/mid.sh"
    environment_vars = ["LOG=${local.log}", "PARENT=${image.golden.null.base.id}"]
  }
}

build {
  name = "layer"

  source "null.app" {}

  provisioner "shell-local" {
    scripts          = ["scripts/app.sh"]
    environment_vars = ["LOG=${local.log}", "PARENT=${image.layer.null.mid.id}", "TOKEN=${var.api_token}"]
  }
}
"#;

fn chain() -> Project {
    let p = Project::new();
    p.file("images.pkr.hcl", CHAIN);
    for name in ["base", "other", "mid", "app"] {
        p.file(
            &format!("scripts/{name}.sh"),
            &format!("#!/bin/sh\necho \"{name} $IMGFORM_IMAGE ${{PARENT:-}}\" >> \"$LOG\"\n"),
        );
    }
    p
}

fn log_lines(p: &Project) -> Vec<String> {
    p.read("side-effects.log")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn editing_one_script_rebuilds_exactly_that_image_and_its_dependents() {
    let p = chain();
    p.run(&["apply", "--auto-approve"]).success();
    let first = log_lines(&p);
    assert_eq!(first.len(), 4, "{first:?}");
    // Parents run before children and children see the parent's artifact id.
    let pos = |name: &str| first.iter().position(|l| l.starts_with(name)).unwrap();
    assert!(pos("base") < pos("mid") && pos("mid") < pos("app"));
    assert!(
        first[pos("mid")].contains("null:"),
        "mid saw its parent's artifact id: {}",
        first[pos("mid")]
    );

    // Nothing changed: no-op, nothing runs.
    let again = p.run(&["apply", "--auto-approve"]);
    again.success();
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    assert_eq!(log_lines(&p).len(), 4);

    p.file(
        "scripts/mid.sh",
        "#!/bin/sh\necho \"mid v2 $IMGFORM_IMAGE\" >> \"$LOG\"\n",
    );
    let plan = p.run(&["plan", "--json"]);
    plan.success();
    let json = plan.json();
    let action = |addr: &str| {
        json["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"] == addr)
            .map(|c| c["action"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(action("golden.null.base"), "no-op");
    assert_eq!(action("golden.null.other"), "no-op");
    assert_eq!(action("layer.null.mid"), "rebuild");
    assert_eq!(action("layer.null.app"), "rebuild");

    p.run(&["apply", "--auto-approve"]).success();
    let after = log_lines(&p);
    let new: Vec<&String> = after.iter().skip(4).collect();
    assert_eq!(new.len(), 2, "only mid and app ran again: {new:?}");
    assert!(
        new[0].starts_with("mid v2") && new[1].starts_with("app"),
        "{new:?}"
    );
}

#[test]
fn plan_human_output_snapshot() {
    let p = chain();
    let first = p.run(&["plan"]);
    first.success();
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("plan_all_new", first.stdout);
    });
    p.run(&["apply", "--auto-approve"]).success();
    p.file("scripts/mid.sh", "#!/bin/sh\necho \"mid v2\" >> \"$LOG\"\n");
    let changed = p.run(&["plan"]);
    changed.success();
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("plan_file_changed", changed.stdout);
    });
    let json = p.run(&["plan", "--json"]);
    json.success();
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("plan_file_changed_json", json.stdout);
    });
}

#[test]
fn variable_change_is_a_typed_reason() {
    let p = chain();
    p.run(&["apply", "--auto-approve"]).success();
    let plan = p.run(&["plan", "--json", "--var", "greeting=bonjour"]);
    plan.success();
    let json = plan.json();
    let changes = json["changes"].as_array().unwrap();
    let base = changes
        .iter()
        .find(|c| c["address"] == "golden.null.base")
        .unwrap();
    assert_eq!(base["action"], "rebuild");
    assert!(
        base["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "variable_changed" && r["name"] == "greeting"),
        "{base}"
    );
    assert!(
        base["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "input_changed"
                && r["path"] == "provisioners[0].config.environment_vars"),
        "{base}"
    );
    // mid depends on base: parent_rebuilt.
    let mid = changes
        .iter()
        .find(|c| c["address"] == "layer.null.mid")
        .unwrap();
    assert!(
        mid["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "parent_rebuilt" && r["address"] == "golden.null.base"),
        "{mid}"
    );
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("plan_variable_changed", p.run(&["plan", "--var", "greeting=bonjour"]).stdout);
    });
    // The same value from the environment gives the same plan.
    let env = p.run_env(&["plan", "--json"], &[("PKR_VAR_greeting", "bonjour")]);
    assert_eq!(env.json()["summary"], json["summary"]);
    // IMGFORM_VAR_ wins over PKR_VAR_, --var over both.
    let both = p.run_env(
        &["plan", "--json"],
        &[
            ("PKR_VAR_greeting", "bonjour"),
            ("IMGFORM_VAR_greeting", "hello"),
        ],
    );
    assert_eq!(both.json()["summary"]["rebuild"], 0);
}

#[test]
fn secrets_never_reach_state_plans_or_logs() {
    let p = chain();
    p.run(&["apply", "--auto-approve"]).success();
    let plan = p.run(&["plan", "--json", "--replace", "layer.null.app"]);
    for entry in walkdir::WalkDir::new(p.path()) {
        let entry = entry.unwrap();
        if entry.file_type().is_file()
            && !entry.path().ends_with("side-effects.log")
            && !entry.path().ends_with("images.pkr.hcl")
        {
            let text = std::fs::read(entry.path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&text).contains("s3cr3t-t0ken"),
                "secret leaked into {}",
                entry.path().display()
            );
        }
    }
    assert!(!plan.stdout.contains("s3cr3t-t0ken"));
    // A change of the secret still changes the address, without showing it.
    let changed = p.run(&["plan", "--var", "api_token=another-secret"]);
    assert!(
        changed.stdout.contains("variable api_token changed"),
        "{}",
        changed.stdout
    );
    assert!(!changed.stdout.contains("another-secret"));
}

#[test]
fn moving_the_definition_dir_keeps_every_content_address() {
    let p = chain();
    let before = p.run(&["plan", "--json"]).json();
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("some/deeper/place");
    util::copy_tree(p.path(), &moved);
    let after = util::imgform_in(&moved, &["plan", "--json"], &[]).json();
    let addresses = |v: &serde_json::Value| {
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["address"].clone(), c["content"]["new"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(addresses(&before), addresses(&after));

    // And with its state: still no changes after the move.
    p.run(&["apply", "--auto-approve"]).success();
    let moved2 = elsewhere.path().join("again");
    util::copy_tree(p.path(), &moved2);
    let plan = util::imgform_in(&moved2, &["plan", "--detailed-exitcode"], &[]);
    plan.code(0);
}

#[test]
fn detailed_exitcode_target_and_replace() {
    let p = chain();
    p.run(&["plan", "--detailed-exitcode"]).code(2);
    p.run(&["apply", "--auto-approve"]).success();
    p.run(&["plan", "--detailed-exitcode"]).code(0);

    // --replace forces one image (and its dependents).
    let json = p
        .run(&["plan", "--json", "--replace", "layer.null.mid"])
        .json();
    assert_eq!(json["summary"]["rebuild"], 2, "{json}");
    let mid = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "layer.null.mid")
        .unwrap()
        .clone();
    assert_eq!(mid["reasons"][0]["kind"], "forced");

    // --target: that image and the images it is built from, nothing else.
    p.file(
        "scripts/base.sh",
        "#!/bin/sh\necho \"base v2 $IMGFORM_IMAGE\" >> \"$LOG\"\n",
    );
    p.file(
        "scripts/other.sh",
        "#!/bin/sh\necho \"other v2 $IMGFORM_IMAGE\" >> \"$LOG\"\n",
    );
    let json = p
        .run(&["plan", "--json", "--target", "layer.null.mid"])
        .json();
    let addrs: Vec<&str> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, vec!["golden.null.base", "layer.null.mid"]);
    p.run(&["plan", "--target", "nope.null.x"]).code(1);
}

#[test]
fn a_failed_image_skips_its_dependents_and_the_rest_go_on() {
    let p = chain();
    p.file("scripts/mid.sh", "#!/bin/sh\necho boom >&2\nexit 3\n");
    let run = p.run(&["apply", "--auto-approve"]);
    run.code(1);
    assert!(
        run.stderr.contains("layer.null.mid: FAILED"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("boom"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("layer.null.app: skipped because layer.null.mid failed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("2 built, 1 failed, 1 skipped"),
        "{}",
        run.stderr
    );
    // What was built is recorded; the rest is still to build.
    let json = p.run(&["plan", "--json"]).json();
    assert_eq!(json["summary"]["unchanged"], 2);
    assert_eq!(json["summary"]["build"], 2);
    // The log of the failed image is kept.
    assert!(p.read(".imgform/logs/layer-null-mid.log").contains("boom"));
}

#[test]
fn a_panicking_build_fails_its_own_image_and_skips_its_dependents() {
    let p = chain();
    let run = p.run_env(
        &["apply", "--auto-approve", "--json"],
        &[("IMGFORM_FAULT", "panic-in-build:layer.null.mid")],
    );
    run.code(1);
    run.stderr_has("layer.null.mid: FAILED")
        .stderr_has("the build panicked: injected fault panic-in-build")
        .stderr_has("layer.null.app: skipped because layer.null.mid failed")
        .stderr_has("2 built, 1 failed, 1 skipped");
    let result = &run.result_json()["result"];
    assert_eq!(result["failed"][0]["address"], "layer.null.mid");
    assert_eq!(result["skipped"][0]["address"], "layer.null.app");
    assert_eq!(result["skipped"][0]["because"], "layer.null.mid");
    // The rest was built and recorded; the next apply builds the two left.
    let json = p.run(&["plan", "--json"]).json();
    assert_eq!(json["summary"]["unchanged"], 2);
    assert_eq!(json["summary"]["build"], 2);
}

#[test]
fn a_tainted_image_is_rebuilt_with_its_dependents_until_untainted_or_rebuilt() {
    let p = chain();
    p.run(&["apply", "--auto-approve"]).success();
    let taint = p.run(&["taint", "layer.null.mid"]);
    assert!(taint.success().stdout.contains("marked for rebuild"));
    let plan = p.run(&["plan", "--json"]).json();
    let reasons = |addr: &str| {
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"] == addr)
            .map(|c| (c["action"].clone(), c["reasons"].clone()))
            .unwrap()
    };
    assert_eq!(
        reasons("layer.null.mid"),
        (
            serde_json::json!("rebuild"),
            serde_json::json!([{"kind": "tainted"}])
        )
    );
    assert_eq!(
        reasons("layer.null.app"),
        (
            serde_json::json!("rebuild"),
            serde_json::json!([{"kind": "parent_rebuilt", "address": "layer.null.mid"}])
        )
    );
    assert_eq!(reasons("golden.null.base").0, "no-op");
    assert!(p
        .run(&["plan"])
        .success()
        .stdout
        .contains("marked as tainted"));

    // untaint takes the mark back.
    p.run(&["untaint", "layer.null.mid"]).success();
    p.run(&["plan", "--detailed-exitcode"]).code(0);

    // A rebuild clears it.
    p.run(&["taint", "layer.null.mid"]).success();
    p.run(&["apply", "--auto-approve"])
        .success()
        .stderr_has("2 built");
    p.run(&["plan", "--detailed-exitcode"]).code(0);

    // An image that is not recorded cannot be tainted.
    p.run(&["taint", "layer.null.nope"])
        .code(1)
        .stderr_has("layer.null.nope is not in the state")
        .stderr_has("hint: `imgform state list`");
}

#[test]
fn removed_images_are_destroyed_and_state_commands_work() {
    let p = chain();
    p.run(&["apply", "--auto-approve"]).success();
    let list = p.run(&["state", "list"]);
    list.success();
    assert!(
        list.stdout.contains("golden.null.base") && list.stdout.contains("local"),
        "{}",
        list.stdout
    );
    let show = p.run(&["state", "show", "layer.null.mid"]);
    show.success();
    assert!(
        show.stdout.contains("parent:   golden.null.base"),
        "{}",
        show.stdout
    );

    // Drop `other` from the definitions: destroy with removed_from_config.
    p.file(
        "images.pkr.hcl",
        &CHAIN.replace(
            r#"sources = ["source.null.base", "source.null.other"]"#,
            r#"sources = ["source.null.base"]"#,
        ),
    );
    let json = p.run(&["plan", "--json"]).json();
    let other = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "golden.null.other")
        .unwrap()
        .clone();
    assert_eq!(other["action"], "destroy");
    assert_eq!(other["reasons"][0]["kind"], "removed_from_config");
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("plan_destroy", p.run(&["plan"]).stdout);
    });
    p.run(&["apply", "--auto-approve"]).success();
    assert!(!p
        .run(&["state", "list"])
        .stdout
        .contains("golden.null.other"));

    p.run(&["state", "rm", "layer.null.app"]).success();
    let json = p.run(&["plan", "--json"]).json();
    let app = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "layer.null.app")
        .unwrap()
        .clone();
    assert_eq!(app["action"], "build");
    assert_eq!(app["reasons"][0]["kind"], "not_in_state");
    p.run(&["state", "rm", "layer.null.app"]).code(1);
}

#[test]
fn state_is_versioned_with_lineage_serial_and_backup() {
    let p = chain();
    p.run(&["apply", "--auto-approve"]).success();
    let state: serde_json::Value = serde_json::from_str(&p.read("state/local.json")).unwrap();
    assert_eq!(state["format_version"], 1);
    assert_eq!(state["serial"], 4, "one write per image: {state}");
    assert!(p.path().join("state/local.json.bak").exists());
    let lineage = state["lineage"].clone();
    // A no-op apply writes nothing.
    p.run(&["apply", "--auto-approve"]).success();
    let again: serde_json::Value = serde_json::from_str(&p.read("state/local.json")).unwrap();
    assert_eq!(again["serial"], 4);
    assert_eq!(again["lineage"], lineage);
    // Every recorded manifest is in the object store and hashes to its address.
    for (_, record) in state["images"].as_object().unwrap() {
        let ca = record["content_address"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let bytes = std::fs::read(p.path().join(format!(
            "state/objects/{}/{}",
            &ca[..2],
            &ca[2..]
        )))
        .unwrap();
        use sha2::Digest;
        assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), ca);
    }
}

#[test]
fn the_lock_stops_a_second_run_and_force_unlock_removes_it() {
    let p = chain();
    p.file("state/.lock", r#"{"id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","operation":"apply","who":"alice@ci-7","created":"2026-11-26T01:00:00Z","version":"0.1.0"}"#);
    let blocked = p.run(&["plan"]);
    blocked.code(1);
    assert!(
        blocked.stderr.contains("alice@ci-7")
            && blocked
                .stderr
                .contains("1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
        "{}",
        blocked.stderr
    );
    assert!(
        blocked.stderr.contains("force-unlock"),
        "{}",
        blocked.stderr
    );
    p.run(&["force-unlock", "wrong-id"]).code(1);
    p.run(&["force-unlock", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"])
        .success();
    p.run(&["plan"]).success();
    assert!(!p.path().join("state/.lock").exists());
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let p = chain();
    let run = p.run(&["apply"]);
    run.code(1);
    assert!(run.stderr.contains("--auto-approve"), "{}", run.stderr);
    assert!(!p.path().join("state/local.json").exists());
}

#[test]
fn graph_is_dot() {
    let p = chain();
    let run = p.run(&["graph"]);
    run.success();
    assert!(run.stdout.starts_with("digraph imgform {"));
    assert!(
        run.stdout
            .contains("\"golden.null.base\" -> \"layer.null.mid\";"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("\"layer.null.mid\" -> \"layer.null.app\";"),
        "{}",
        run.stdout
    );
}

#[test]
fn chdir_and_positional_dir() {
    let p = chain();
    let cwd = tempfile::tempdir().unwrap();
    let dir = p.path().to_str().unwrap();
    // -C changes directory first: the templates' relative paths are found.
    util::imgform_in(cwd.path(), &["-C", dir, "plan"], &[]).success();
    util::imgform_in(cwd.path(), &["validate", "--chdir", dir], &[]).success();
    // A template folder given from elsewhere: its relative paths resolve
    // against the current directory, as in Packer, and are not there.
    util::imgform_in(cwd.path(), &["plan", dir], &[])
        .code(1)
        .stderr_has("scripts/base.sh");
}

/// `shell-local` runs a script where it is, by absolute path, as Packer
/// does (`$0` finds its siblings), with the provisioner's variables set;
/// a script that is not executable still runs (from a private copy); a
/// missing interpreter is the shell's own error.
#[test]
fn shell_local_runs_scripts_where_they_are() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new();
    p.file(
        "build.pkr.hcl",
        r#"
source "null" "a" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]

  provisioner "shell-local" {
    scripts          = ["scripts/in-place.sh", "scripts/not-executable.sh"]
    environment_vars = ["QUOTED=it's here"]
  }
}
"#,
    )
    .file(
        "scripts/in-place.sh",
        "#!/bin/sh\necho \"in-place $0 $QUOTED $PACKER_BUILDER_TYPE\" >> \"$(dirname \"$0\")/../ran.log\"\n",
    )
    .file(
        "scripts/not-executable.sh",
        "#!/bin/sh\necho \"copy $(basename \"$0\") $QUOTED\" >> ran.log\n",
    );
    let script = p.path().join("scripts/in-place.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.run(&["apply", "--auto-approve"]).success();
    let ran = p.read("ran.log");
    let lines: Vec<&str> = ran.lines().collect();
    assert_eq!(
        lines,
        [
            format!("in-place {} it's here null", script.display()).as_str(),
            "copy 1-not-executable.sh it's here",
        ],
        "{ran}"
    );

    // An interpreter that does not exist: the shell says so.
    p.file(
        "scripts/in-place.sh",
        "#!/nonexistent/interpreter\necho never\n",
    );
    let run = p.run(&["apply", "--auto-approve"]);
    run.code(1);
    assert!(
        run.stderr.contains("exited with status 127"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("not found"), "{}", run.stderr);
}
