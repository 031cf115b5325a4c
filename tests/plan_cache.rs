//! The plan cache on the real binary (`.imgform/cache/plan`,
//! `src/pipeline/memo.rs`): a plan whose inputs are unchanged is answered
//! from it, exactly as a full plan would answer; every kind of input a plan
//! reads, changed, is seen; `--no-cache` bypasses it; a plan that reads
//! something a `stat` cannot vouch for is not cached; a cache younger than
//! its inputs' racy window is not trusted.

mod util;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use util::Project;

const CACHE: &str = ".imgform/cache/plan";

const IMAGES: &str = r#"
variable "tag" {
  type    = string
  default = env("IMG_TAG")
}

source "null" "a" {
  communicator = "none"
}

source "null" "b" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]
  provisioner "shell-local" {
    script           = "scripts/a.sh"
    environment_vars = ["TAG=${var.tag}", "MOTD=${file("motd.txt")}"]
  }
}

build {
  sources = ["source.null.b"]
  provisioner "shell-local" {
    scripts = ["scripts/b.sh"]
  }
}
"#;

/// Which file the cache is, and when it was written: a plan answered from
/// the cache leaves both as they were (a full plan writes a new file).
fn cache_id(p: &Project) -> (u64, SystemTime) {
    let meta = std::fs::metadata(p.path().join(CACHE)).expect("a plan cache");
    (meta.ino(), meta.modified().unwrap())
}

/// The next plan is answered from the cache.
fn assert_cached(p: &Project) {
    let before = cache_id(p);
    p.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(
        cache_id(p),
        before,
        "the plan was not answered from the cache"
    );
}

/// The next plan has changes, `needle` among them: what changed since
/// the cache was written was seen.
fn assert_changed(p: &Project, needle: &str) {
    let plan = p.run(&["plan", "--detailed-exitcode"]);
    plan.code(2);
    assert!(plan.stdout.contains(needle), "{needle}:\n{}", plan.stdout);
}

/// A project of two images, never applied.
fn project() -> Project {
    let p = Project::new();
    p.file("images.pkr.hcl", IMAGES);
    p.file("scripts/a.sh", "echo a\n");
    p.file("scripts/b.sh", "echo b\n");
    p.file("motd.txt", "hello\n");
    p
}

/// An applied project with a trusted plan cache (written past the racy
/// window of everything it read), answering the next plan.
fn cached() -> Project {
    let p = project();
    p.run(&["apply", "--auto-approve"]).success();
    std::thread::sleep(Duration::from_millis(2100));
    p.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_cached(&p);
    p
}

#[test]
fn an_unchanged_plan_is_answered_from_the_cache_as_a_full_plan_would() {
    let p = cached();
    let before = cache_id(&p);
    let cached_json = p.run(&["plan", "--json"]);
    let full_json = p.run(&["plan", "--json", "--no-cache"]);
    assert_eq!(cached_json.stdout, full_json.stdout);
    let cached_text = p.run(&["plan"]);
    let full_text = p.run(&["plan", "--no-cache"]);
    assert_eq!(cached_text.stdout, full_text.stdout);
    assert!(
        cached_text.stdout.contains("2 unchanged"),
        "{}",
        cached_text.stdout
    );
    let cached_md = p.run(&["plan", "--markdown"]);
    let full_md = p.run(&["plan", "--markdown", "--no-cache"]);
    assert_eq!(cached_md.stdout, full_md.stdout);
    assert_eq!(
        cache_id(&p),
        before,
        "--no-cache neither reads nor writes it"
    );
    // The same request from another folder (-C) is the same request.
    let elsewhere = util::imgform_in(
        p.path().parent().unwrap(),
        &[
            "-C",
            p.path().to_str().unwrap(),
            "plan",
            "--detailed-exitcode",
        ],
        &[],
    );
    elsewhere.code(0);
    assert_eq!(cache_id(&p), before);
    // Never part of the state.
    assert!(!p.read("state/local.json").contains(".imgform/cache"));
}

#[test]
fn the_cache_is_what_an_unchanged_plan_shows_and_no_cache_bypasses_it() {
    let p = cached();
    // A (forged) cached plan shows through: the cache is really used.
    let text = p.read(CACHE);
    let forged = text.replacen(r#""action":"no-op""#, r#""action":"rebuild""#, 1);
    assert_ne!(forged, text);
    p.file(CACHE, &forged);
    p.run(&["plan", "--detailed-exitcode"]).code(2);
    p.run(&["plan", "--detailed-exitcode", "--no-cache"])
        .code(0);
}

#[test]
fn an_edit_keeping_size_and_mtime_is_seen() {
    let p = cached();
    let path = p.path().join("scripts/b.sh");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, "echo B\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_changed(&p, "+echo B");
}

#[test]
fn a_file_read_by_a_function_is_an_input() {
    let p = cached();
    p.file("motd.txt", "bye\n");
    assert_changed(&p, "null.a");
}

#[test]
fn a_new_definition_file_is_seen() {
    let p = cached();
    p.file(
        "more.pkr.hcl",
        "source \"null\" \"c\" {\n  communicator = \"none\"\n}\nbuild {\n  sources = [\"source.null.c\"]\n}\n",
    );
    assert_changed(&p, "null.c");
}

#[test]
fn the_environment_and_the_request_are_part_of_the_key() {
    let p = cached();
    p.run_env(&["plan", "--detailed-exitcode"], &[("IMG_TAG", "v2")])
        .code(2);
    p.run(&["plan", "--detailed-exitcode", "--var", "tag=v3"])
        .code(2);
    // Planning only the unchanged image is another request too.
    p.run_env(
        &["plan", "--detailed-exitcode", "--target", "null.b"],
        &[("IMG_TAG", "v2")],
    )
    .code(0);
}

#[test]
fn a_change_to_the_state_is_seen() {
    let p = cached();
    p.run(&["state", "rm", "null.a"]).success();
    assert_changed(&p, "null.a");
}

#[test]
fn a_plan_reading_what_a_stat_cannot_vouch_for_is_not_cached() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
locals {
  scripts = fileset(".", "scripts/*.sh")
}

source "null" "a" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]
  provisioner "shell-local" {
    scripts = sort(local.scripts)
  }
}
"#,
    );
    p.file("scripts/a.sh", "echo a\n");
    p.run(&["apply", "--auto-approve"]).success();
    std::thread::sleep(Duration::from_millis(2100));
    p.run(&["plan", "--detailed-exitcode"]).code(0);
    assert!(!p.path().join(CACHE).exists(), "fileset() matched a folder");
    // A script a pattern picks up is then seen, as it must be.
    p.file("scripts/b.sh", "echo b\n");
    p.run(&["plan", "--detailed-exitcode"]).code(2);
}

#[test]
fn a_cache_younger_than_the_racy_window_is_not_trusted() {
    let p = project();
    p.run(&["apply", "--auto-approve"]).success();
    // Written within the timestamp granularity of the state just saved.
    p.run(&["plan", "--detailed-exitcode"]).code(0);
    let first = cache_id(&p);
    p.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_ne!(cache_id(&p), first, "a racy cache must be planned again");
}

/// A temporary file a killed writer left in a folder of the object store.
fn stale_object_temp_file(p: &Project) -> std::path::PathBuf {
    let objects = p.path().join("state/objects");
    let folder = std::fs::read_dir(&objects)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .expect("an object folder")
        .path();
    // No process has this pid (the kernel's pid_max is at most 2^22).
    let stale = folder.join(format!(".obj.imgform-4194305-{}.part", "0".repeat(32)));
    std::fs::write(&stale, "cut short").unwrap();
    stale
}

#[test]
fn an_apply_with_nothing_to_do_is_answered_from_the_cache_and_one_with_work_is_not() {
    let p = cached();
    let before = cache_id(&p);
    // It only reads: locked as a plan is, without a writer's sweep of the
    // object store; an apply planned in full sweeps.
    let stale = stale_object_temp_file(&p);
    p.run(&["apply", "--auto-approve"]).success();
    assert!(stale.exists(), "an apply answered from the cache swept");
    p.run(&["apply", "--auto-approve", "--no-cache"]).success();
    assert!(!stale.exists(), "a full apply did not sweep");
    for args in [&["--json"][..], &["--markdown"], &[]] {
        let mut cached_args = vec!["apply", "--auto-approve"];
        cached_args.extend(args);
        let cached = p.run(&cached_args);
        cached.success();
        cached_args.push("--no-cache");
        let full = p.run(&cached_args);
        full.success();
        assert_eq!(cached.stdout, full.stdout, "{args:?}");
        assert_eq!(cached.stderr, full.stderr, "{args:?}");
    }
    assert_eq!(cache_id(&p), before);
    p.file("scripts/b.sh", "echo changed\n");
    let apply = p.run(&["apply", "--auto-approve"]);
    apply.success();
    assert!(apply.stdout.contains("null.b"), "{}", apply.stdout);
    p.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// A project whose image uses a module folder through a link (`files` →
/// `files-v1`), cached.
fn cached_with_module() -> Project {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
source "null" "m" {
  communicator = "none"
}

build {
  sources = ["source.null.m"]
  module "files" {
    source = "files"
  }
}
"#,
    );
    for v in ["files-v1", "files-v2"] {
        p.file(
            &format!("{v}/module.hcl"),
            "provisioner \"shell-local\" {\n  inline = [\"true\"]\n}\n",
        );
        p.file(&format!("{v}/sub/one.txt"), "one\n");
    }
    std::os::unix::fs::symlink("files-v1", p.path().join("files")).unwrap();
    p.run(&["apply", "--auto-approve"]).success();
    std::thread::sleep(Duration::from_millis(2100));
    p.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_cached(&p);
    p
}

#[test]
fn a_file_added_deep_in_a_module_folder_is_seen() {
    let p = cached_with_module();
    p.file("files-v1/sub/two.txt", "two\n");
    assert_changed(&p, "sub/two.txt");
}

#[test]
fn a_module_link_pointed_elsewhere_is_seen() {
    let p = cached_with_module();
    // The same files, another folder: its module.hcl changes nothing, but
    // the plan must be made again to know it.
    p.file("files-v2/sub/one.txt", "uno\n");
    std::fs::remove_file(p.path().join("files")).unwrap();
    std::os::unix::fs::symlink("files-v2", p.path().join("files")).unwrap();
    p.run(&["plan", "--detailed-exitcode"]).code(2);
}

#[test]
fn a_project_never_applied_is_cached_too() {
    // Its plan takes the lock in a `state/` folder it then removes: the
    // template folder's names are compared without imgform's own.
    let p = project();
    std::thread::sleep(Duration::from_millis(2100));
    p.run(&["plan", "--detailed-exitcode"]).code(2);
    assert!(!p.path().join("state").exists());
    let before = cache_id(&p);
    let plan = p.run(&["plan", "--detailed-exitcode"]);
    plan.code(2);
    assert!(plan.stdout.contains("2 to build"), "{}", plan.stdout);
    assert_eq!(
        cache_id(&p),
        before,
        "the plan was not answered from the cache"
    );
}

#[test]
fn a_new_auto_var_file_is_seen() {
    let p = cached();
    p.file("tag.auto.pkrvars.hcl", "tag = \"v9\"\n");
    assert_changed(&p, "null.a");
}
