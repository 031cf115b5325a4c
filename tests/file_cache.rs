//! The persistent file-hash cache on the real binary (`.imgform/cache/`,
//! `src/fingerprint/cache.rs`), with single files (scripts) and a tree (a
//! module folder): it never changes what a plan says, `touch`
//! rebuilds nothing, an edit that keeps size and mtime is still caught, a
//! corrupt cache is ignored, and `--no-cache` bypasses it.

mod util;

use std::fs::File;
use std::time::{Duration, SystemTime};

use util::Project;

const CACHE: &str = ".imgform/cache/file-hashes";
/// The plan cache (tests/plan_cache.rs) answers an unchanged plan without
/// asking the file-hash cache: removed where the file-hash cache is tried.
const PLAN_CACHE: &str = ".imgform/cache/plan";
const FILES: [&str; 5] = [
    "scripts/a.sh",
    "scripts/b.sh",
    "files/module.hcl",
    "files/one.txt",
    "files/sub/two.txt",
];

const IMAGES: &str = r#"
source "null" "a" {
  communicator = "none"
}

source "null" "b" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]
  provisioner "shell-local" {
    script = "scripts/a.sh"
  }
  module "files" {
    source = "files"
  }
}

build {
  sources = ["source.null.b"]
  provisioner "shell-local" {
    script = "scripts/b.sh"
  }
}
"#;

/// A project whose inputs are an hour old, applied, with a cache that is
/// past its racy window (so it is trusted).
fn applied() -> Project {
    let p = Project::new();
    p.file("images.pkr.hcl", IMAGES);
    p.file("scripts/a.sh", "echo a\n");
    p.file("scripts/b.sh", "echo b\n");
    p.file(
        "files/module.hcl",
        "provisioner \"shell-local\" {\n  inline = [\"true\"]\n}\n",
    );
    p.file("files/one.txt", "one\n");
    p.file("files/sub/two.txt", "two\n");
    for f in FILES {
        set_mtime(&p, f, SystemTime::now() - Duration::from_secs(3600));
    }
    p.run(&["apply", "--auto-approve"]).success();
    std::thread::sleep(Duration::from_millis(2100));
    p.run(&["plan", "--detailed-exitcode"]).code(0);
    p
}

fn set_mtime(p: &Project, rel: &str, when: SystemTime) {
    File::options()
        .write(true)
        .open(p.path().join(rel))
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[test]
fn a_cache_hit_gives_the_fresh_hash_and_no_cache_bypasses_it() {
    let p = applied();
    let cache = p.read(CACHE);
    let a_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"echo a\n"));
    assert!(cache.lines().any(|l| l.starts_with(&a_sha)), "{cache}");
    assert!(!p.read("state/local.json").contains("file-hashes"));
    let written = std::fs::metadata(p.path().join(CACHE))
        .unwrap()
        .modified()
        .unwrap();
    let cached = p.run(&["plan", "--json"]);
    cached.success();
    let fresh = p.run(&["plan", "--json", "--no-cache"]);
    fresh.success();
    assert_eq!(
        util::content_addresses(&cached.json()),
        util::content_addresses(&fresh.json())
    );
    assert_eq!(p.read(CACHE), cache);
    assert_eq!(
        std::fs::metadata(p.path().join(CACHE))
            .unwrap()
            .modified()
            .unwrap(),
        written,
        "an unchanged plan does not rewrite the cache"
    );

    // The cache is what a plan trusts for an unchanged stat: a (forged)
    // entry shows through, and --no-cache reads the bytes instead.
    let forged = cache.replace(&format!("{a_sha}\t"), &format!("{}\t", "0".repeat(64)));
    assert_ne!(forged, cache);
    p.file(CACHE, &forged);
    p.remove(PLAN_CACHE);
    p.run(&["plan", "--detailed-exitcode"]).code(2);
    p.run(&["plan", "--detailed-exitcode", "--no-cache"])
        .code(0);
}

#[test]
fn touch_alone_rebuilds_nothing() {
    let p = applied();
    for f in FILES {
        set_mtime(&p, f, SystemTime::now());
    }
    p.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn an_edit_keeping_size_and_mtime_is_caught_by_ctime() {
    let p = applied();
    for (rel, before, after) in [
        ("scripts/b.sh", "echo b\n", "echo B\n"),
        ("files/sub/two.txt", "two\n", "TWO\n"),
    ] {
        let path = p.path().join(rel);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        std::fs::write(&path, after).unwrap();
        set_mtime(&p, rel, meta.modified().unwrap());
        let now = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (now.len(), now.modified().unwrap()),
            (meta.len(), meta.modified().unwrap())
        );
    }
    let plan = p.run(&["plan", "--detailed-exitcode", "--no-color"]);
    plan.code(2);
    for needle in ["null.b", "scripts/b.sh", "null.a", "files/sub/two.txt"] {
        assert!(plan.stdout.contains(needle), "{needle}:\n{}", plan.stdout);
    }
    assert!(plan.stdout.contains("+echo B"), "{}", plan.stdout);
}

#[test]
fn a_corrupt_cache_is_ignored_and_rebuilt() {
    let p = applied();
    let good = p.read(CACHE);
    for garbage in [
        "garbage".to_owned(),
        good[..good.len() / 2].to_owned(),
        good.replace("\t-\t", "\t?\t"),
    ] {
        p.file(CACHE, &garbage);
        p.remove(PLAN_CACHE);
        p.run(&["plan", "--detailed-exitcode"]).code(0);
        let rebuilt = p.read(CACHE);
        assert!(rebuilt.starts_with("imgform file hashes 3\n"), "{rebuilt}");
        assert!(rebuilt.ends_with("end 5 1\n"), "{rebuilt}");
    }
}
