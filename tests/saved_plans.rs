//! Saved plans: `plan --out FILE`, `show FILE`, `apply FILE`, and the
//! Markdown PR comment.

mod util;

use util::{filters, Project};

const DEFS: &str = r#"
variable "greeting" {
  type    = string
  default = "hello"
}

variable "token" {
  type      = string
  default   = "tok-123456"
  sensitive = true
}

source "null" "base" {
  communicator = "none"
}

source "null" "app" {
  communicator = "none"
}

build {
  name    = "golden"
  sources = ["source.null.base"]
  provisioner "shell-local" {
    script           = "scripts/base.sh"
    environment_vars = ["GREETING=${var.greeting}", "TOKEN=${var.token}"]
  }
}

build {
  name    = "golden"
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = ["echo \"app on ${image.golden.null.base.id}\" >> log.txt"]
  }
}
"#;

fn project() -> Project {
    let p = Project::new();
    p.file("images.pkr.hcl", DEFS);
    p.file(
        "scripts/base.sh",
        "#!/bin/sh\necho \"base $GREETING $TOKEN\" >> log.txt\n",
    );
    p
}

#[test]
fn a_saved_plan_is_applied_exactly_once() {
    let p = project();
    let saved = p.run(&["plan", "--out", "plan.bin"]);
    saved.success();
    assert!(
        saved.stderr.contains("imgform apply plan.bin"),
        "{}",
        saved.stderr
    );
    let bytes = p.read("plan.bin");
    assert!(
        !bytes.contains("tok-123456"),
        "the sensitive value is not in the plan file"
    );
    assert!(bytes.contains("\"format_version\": 1"));

    // show renders it, as plan did.
    let show = p.run(&["show", "plan.bin"]);
    show.success();
    assert!(
        show.stdout
            .contains("Plan: 2 to build, 0 to rebuild, 0 to destroy, 0 unchanged."),
        "{}",
        show.stdout
    );
    let json = p.run(&["show", "--json", "plan.bin"]).json();
    assert_eq!(json["summary"]["build"], 2);
    assert_eq!(json["format_version"], 1);

    // apply FILE needs no confirmation and runs what was planned.
    let apply = p.run(&["apply", "plan.bin"]);
    apply.success();
    assert!(p
        .read("log.txt")
        .starts_with("base hello tok-123456\napp on null:"));

    // The same plan again: refused, nothing runs.
    let again = p.run(&["apply", "plan.bin"]);
    again.code(1);
    assert!(
        again
            .stderr
            .contains("stale plan: state serial 2, plan was made at 0"),
        "{}",
        again.stderr
    );
    assert_eq!(p.read("log.txt").lines().count(), 2);
}

#[test]
fn a_plan_whose_state_moved_on_is_refused() {
    let p = project();
    p.run(&["apply", "--auto-approve"]).success();
    p.file(
        "scripts/base.sh",
        "#!/bin/sh\necho \"base v2\" >> log.txt\n",
    );
    p.run(&["plan", "--out", "first.bin"]).success();
    p.run(&["plan", "--out", "second.bin"]).success();
    p.run(&["apply", "first.bin"]).success();
    let stale = p.run(&["apply", "second.bin"]);
    stale.code(1);
    assert!(
        stale
            .stderr
            .contains("stale plan: state serial 4, plan was made at 2"),
        "{}",
        stale.stderr
    );
}

#[test]
fn a_plan_for_another_state_is_refused() {
    let a = project();
    let b = project();
    a.run(&["apply", "--auto-approve"]).success();
    b.run(&["apply", "--auto-approve"]).success();
    a.file("scripts/base.sh", "#!/bin/sh\necho changed >> log.txt\n");
    a.run(&["plan", "--out", "plan.bin"]).success();
    std::fs::copy(a.path().join("plan.bin"), b.path().join("plan.bin")).unwrap();
    let run = b.run(&["apply", "plan.bin"]);
    run.code(1);
    assert!(
        run.stderr
            .contains("the plan is for another state of target local"),
        "{}",
        run.stderr
    );
}

#[test]
fn changed_definitions_or_secrets_since_the_plan_are_refused() {
    let p = project();
    p.run(&["plan", "--out", "plan.bin"]).success();
    // The secret is required again at apply and must be the same.
    let run = p.run(&["apply", "plan.bin", "--var", "token=other-token"]);
    run.code(1);
    assert!(
        run.stderr.contains("changed since the plan was made"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("other-token") && !run.stderr.contains("tok-123456"));
    p.file("scripts/base.sh", "#!/bin/sh\necho edited >> log.txt\n");
    let run = p.run(&["apply", "plan.bin"]);
    run.code(1);
    assert!(
        run.stderr.contains("changed since the plan was made"),
        "{}",
        run.stderr
    );
    assert!(!p.path().join("log.txt").exists(), "nothing ran");
}

#[test]
fn a_plan_without_secrets_applies_without_evaluating_the_definitions() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
source "null" "x" {
  communicator = "none"
}
build {
  sources = ["source.null.x"]
  provisioner "shell-local" {
    inline = ["echo planned >> log.txt"]
  }
}
"#,
    );
    p.run(&["plan", "--out", "plan.bin"]).success();
    // Edits after the plan do not change what the plan does.
    p.file("images.pkr.hcl", "this is not HCL {{{");
    p.run(&["apply", "plan.bin"]).success();
    assert_eq!(p.read("log.txt"), "planned\n");
}

#[test]
fn an_edited_plan_file_is_refused_and_runs_nothing() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
source "null" "x" {
  communicator = "none"
}
build {
  sources = ["source.null.x"]
  provisioner "shell-local" {
    inline = ["echo planned >> log.txt"]
  }
}
"#,
    );
    p.run(&["plan", "--out", "plan.bin"]).success();
    let original = p.read("plan.bin");
    // A command edited where it would run (the recorded definition): the
    // content address the plan names no longer follows from it.
    let edited = original.replacen("echo planned", "echo pwned", 1);
    assert_ne!(edited, original);
    p.file("plan.bin", &edited);
    let run = p.run(&["apply", "plan.bin"]);
    run.code(1);
    run.stderr_has("the plan file was modified")
        .stderr_has("null.x in the plan is sha256:")
        .stderr_has("hint: apply only plan files imgform wrote");
    assert_eq!(p.read("log.txt"), "", "nothing ran");
    assert!(
        !p.path().join("state/local.json").exists(),
        "nothing recorded"
    );

    // The original still applies.
    p.file("plan.bin", &original);
    p.run(&["apply", "plan.bin"]).success();
    assert_eq!(p.read("log.txt"), "planned\n");
}

#[test]
fn a_forged_destroy_deletes_only_what_the_state_records() {
    let p = Project::new();
    let defs = r#"
source "chroot" "gone" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
build {
  sources = ["source.chroot.gone"]
}
"#;
    if !util::is_root() {
        eprintln!("skipped: the chroot builder needs root");
        return;
    }
    p.with_busybox_rootfs();
    p.file("images.pkr.hcl", defs);
    p.run(&["apply", "--auto-approve"]).success();
    let victim = p.path().join("precious.txt");
    std::fs::write(&victim, "keep me").unwrap();
    // The image is removed from the definitions: the plan destroys it...
    p.file("images.pkr.hcl", "");
    p.run(&["plan", "--out", "plan.bin"]).success();
    let recorded = p.read("state/local.json");
    let id = serde_json::from_str::<serde_json::Value>(&recorded).unwrap()["images"]["chroot.gone"]
        ["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // ...and the plan file is edited to name another file to delete.
    let forged = p.read("plan.bin").replace(&id, "precious.txt");
    p.file("plan.bin", &forged);
    p.run(&["apply", "plan.bin"]).success();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!p.path().join(&id).exists(), "the recorded artifact went");
}

#[test]
fn markdown_comment_snapshot() {
    let p = project();
    p.run(&["apply", "--auto-approve"]).success();
    p.file(
        "scripts/base.sh",
        "#!/bin/sh\necho \"base v2 $GREETING\" >> log.txt\n",
    );
    let md = p.run(&["plan", "--markdown"]);
    md.success();
    assert!(!md.stdout.contains('\u{1b}'), "no ANSI codes");
    assert!(md.stdout.starts_with("<!-- imgform-plan -->"));
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("plan_markdown", md.stdout);
    });
    // Stable: the same plan renders the same comment.
    assert_eq!(p.run(&["plan", "--markdown"]).stdout, md.stdout);
    p.run(&["plan", "--out", "plan.bin"]).success();
    assert_eq!(p.run(&["show", "--markdown", "plan.bin"]).stdout, md.stdout);
}
