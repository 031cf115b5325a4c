//! `imgform drift`: every status produced for real.

mod util;

use std::path::Path;

use util::{filters, Project};

const DEFS: &str = r#"
source "null" "base" {
  communicator = "none"
}
source "null" "app" {
  communicator = "none"
}
source "null" "old" {
  communicator = "none"
}

build {
  name    = "golden"
  sources = ["source.null.base"]
  provisioner "shell-local" {
    script = "scripts/base.sh"
  }
}

build {
  name    = "golden"
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = ["echo app on ${image.golden.null.base.id}"]
  }
}

build {
  name    = "aging"
  max_age = "1s"
  sources = ["source.null.old"]
  provisioner "shell-local" {
    inline = ["echo old"]
  }
}
"#;

fn entry(json: &serde_json::Value, addr: &str) -> serde_json::Value {
    json["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == addr)
        .cloned()
        .unwrap_or_else(|| panic!("{addr} in {json}"))
}

#[test]
fn current_stale_parent_rebuilt_too_old_and_removed() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        &DEFS.replace("max_age = \"1s\"", "max_age = \"30d\""),
    );
    p.file("scripts/base.sh", "#!/bin/sh\necho base\n");
    p.run(&["apply", "--auto-approve"]).success();
    let run = p.run(&["drift"]);
    run.code(0);
    assert!(
        run.stdout
            .contains("Drift: 3 current, 0 stale, 0 missing, 0 untracked."),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("└ built from golden.null.base @ null:"),
        "{}",
        run.stdout
    );

    // Inputs changed since it was built.
    p.file("scripts/base.sh", "#!/bin/sh\necho base v2\n");
    let json = p.run(&["drift", "--json"]).json();
    assert_eq!(json["format_version"], 1);
    let base = entry(&json, "golden.null.base");
    assert_eq!(base["status"], "stale");
    assert_eq!(base["reasons"][0]["kind"], "inputs_changed");
    assert_eq!(base["reasons"][0]["changes"][0]["kind"], "file_changed");
    assert_eq!(base["reasons"][0]["changes"][0]["path"], "scripts/base.sh");

    // Rebuild only the parent: the child was built from an artifact that moved on.
    p.run(&["apply", "--auto-approve", "--target", "golden.null.base"])
        .success();
    let run = p.run(&["drift", "--json"]);
    run.code(2);
    let json = run.json();
    assert_eq!(entry(&json, "golden.null.base")["status"], "current");
    let app = entry(&json, "golden.null.app");
    assert_eq!(app["status"], "stale");
    let reason = &app["reasons"][0];
    assert_eq!(reason["kind"], "parent_rebuilt");
    assert_eq!(reason["address"], "golden.null.base");
    assert_ne!(reason["built_from"], reason["current"]);
    assert_eq!(app["parents"][0]["moved_on"], true);
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("drift_parent_rebuilt", p.run(&["drift"]).stdout);
        insta::assert_snapshot!("drift_parent_rebuilt_markdown", p.run(&["drift", "--markdown"]).stdout);
    });

    // Older than max_age.
    p.file("images.pkr.hcl", DEFS);
    p.run(&["apply", "--auto-approve"]).success();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let json = p.run(&["drift", "--json"]).json();
    let old = entry(&json, "aging.null.old");
    assert_eq!(old["status"], "stale", "{old}");
    assert!(
        old["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "too_old" && r["max_age"] == "1s"),
        "{old}"
    );

    // Recorded but no longer defined.
    p.file(
        "images.pkr.hcl",
        &DEFS[..DEFS.find("build {\n  name    = \"aging\"").unwrap()],
    );
    let json = p.run(&["drift", "--json"]).json();
    let old = entry(&json, "aging.null.old");
    assert_eq!(old["reasons"][0]["kind"], "removed_from_config", "{old}");
}

#[test]
fn missing_and_untracked_local_images() {
    if !util::is_root() {
        eprintln!("skipped: needs root for the chroot builder");
        return;
    }
    let p = Project::new();
    let rootfs = p.path().join("rootfs/busybox.tar.gz");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-busybox-rootfs.sh");
    assert!(std::process::Command::new(script)
        .arg(&rootfs)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success());
    p.file(
        "images.pkr.hcl",
        r#"
source "chroot" "a" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
source "chroot" "b" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
build {
  sources = ["source.chroot.a", "source.chroot.b"]
  provisioner "shell" {
    inline = ["echo ${source.name} > /etc/name"]
  }
}
"#,
    );
    p.run(&["apply", "--auto-approve"]).success();
    p.run(&["drift"]).code(0);
    let state: serde_json::Value = serde_json::from_str(&p.read("state/local.json")).unwrap();
    let a = state["images"]["chroot.a"]["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = state["images"]["chroot.b"]["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Deleted out of band: missing.
    std::fs::remove_file(p.path().join(&a)).unwrap();
    // An artifact of b that no state knows (a copy, or one forgotten with state rm).
    let stray = b.replace(&b[b.len() - 16..b.len() - 4], "0123456789ab");
    std::fs::copy(p.path().join(&b), p.path().join(&stray)).unwrap();
    let run = p.run(&["drift", "--json"]);
    run.code(2);
    let json = run.json();
    assert_eq!(entry(&json, "chroot.a")["status"], "missing");
    let untracked: Vec<&serde_json::Value> = json["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "untracked")
        .collect();
    assert_eq!(untracked.len(), 1, "{json}");
    assert_eq!(untracked[0]["address"], "chroot.b");
    assert_eq!(untracked[0]["artifact_id"], stray.as_str());
    let human = p.run(&["drift"]);
    assert!(
        human
            .stdout
            .contains("Drift: 1 current, 0 stale, 1 missing, 1 untracked."),
        "{}",
        human.stdout
    );
}
