//! Every JSON document imgform prints validates against its JSON Schema in
//! `schemas/` (draft 2020-12; the state documents use
//! `state/schema/state.v1.schema.json`).
//!
//! The documents come from the real binary on a small null-builder project;
//! validation is Python's `jsonschema` (installed by
//! scripts/install-test-deps.sh) through `tests/validate_json.py`. Broken
//! documents are checked to be rejected, so a schema that accepts anything
//! fails here too.

mod util;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};
use util::Project;

const SCHEMAS: &[&str] = &[
    "plan.v1.schema.json",
    "validate.v1.schema.json",
    "apply.v1.schema.json",
    "state-list.v1.schema.json",
    "state-show.v1.schema.json",
    "show-state.v1.schema.json",
    "drift.v1.schema.json",
];

/// Six images: `base` with `app` built from it, `steady` that never changes,
/// `pinned` to `--replace`, `old` to remove, and `greeter` that reads a
/// variable. `app` keeps one previous artifact.
const IMAGES: &str = r#"
variable "greeting" {
  type    = string
  default = "hello"
}

packer {
  required_plugins {
  }
}

source "null" "base" {
  communicator = "none"
}

source "null" "steady" {
  communicator = "none"
}

source "null" "pinned" {
  communicator = "none"
}

source "null" "old" {
  communicator = "none"
}

source "null" "app" {
  communicator = "none"
}

source "null" "greeter" {
  communicator = "none"
}

build {
  name    = "golden"
  sources = ["source.null.base", "source.null.steady", "source.null.pinned", "source.null.old"]

  provisioner "shell-local" {
    script = "scripts/${source.name}.sh"
  }
}

build {
  name          = "layer"
  keep_previous = 1

  source "null.app" {}

  provisioner "shell-local" {
    script           = "scripts/app.sh"
    environment_vars = ["PARENT=${image.golden.null.base.id}"]
  }
}

build {
  name = "hello"

  source "null.greeter" {}

  provisioner "shell-local" {
    inline           = ["echo \"$GREETING\""]
    environment_vars = ["GREETING=${var.greeting}"]
  }
}
"#;

/// One image at a time: `shell-local` can fail with "Text file busy" when two
/// provisioners start at once (a temp script is exec'd while another thread's
/// fork still holds it open for writing), which is not what these tests check.
const APPLY: [&str; 4] = ["apply", "--auto-approve", "--parallelism", "1"];
const APPLY_JSON: [&str; 5] = ["apply", "--auto-approve", "--parallelism", "1", "--json"];

fn project() -> Project {
    let p = Project::new();
    p.file("images.pkr.hcl", IMAGES);
    for name in ["base", "steady", "pinned", "old", "new", "app"] {
        p.file(
            &format!("scripts/{name}.sh"),
            &format!("#!/bin/sh\necho \"{name} $IMGFORM_IMAGE ${{PARENT:-}}\"\n"),
        );
    }
    p
}

/// The definitions with `golden.null.old` replaced by a new image
/// `golden.null.new`.
fn images_without_old() -> String {
    IMAGES
        .replace(
            r#""source.null.pinned", "source.null.old"]"#,
            r#""source.null.pinned", "source.null.new"]"#,
        )
        .replace(r#"source "null" "old""#, r#"source "null" "new""#)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tests/validate_json.py ARGS`: whether it succeeded, its stdout, and
/// stdout with stderr (for messages).
fn python(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new("python3")
        .arg(repo().join("tests/validate_json.py"))
        .args(args)
        .output()
        .expect("run python3 (scripts/install-test-deps.sh installs what the tests need)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "validate_json.py could not run (exit {:?}); run scripts/install-test-deps.sh:\n{all}",
        out.status.code()
    );
    (out.status.success(), stdout, all)
}

/// Documents to validate, each with what should happen, checked together in
/// one run of `validate_json.py --batch` (Python's start-up dominates).
#[derive(Default)]
struct Checks {
    items: Vec<Check>,
}

struct Check {
    schema: &'static str,
    doc: Value,
    /// None: must be valid; Some(text): must be rejected with `text` in the errors.
    rejected_for: Option<&'static str>,
    at: &'static std::panic::Location<'static>,
}

impl Checks {
    /// `doc` must match `schemas/<schema>`.
    #[track_caller]
    fn valid(&mut self, schema: &'static str, doc: &Value) {
        self.items.push(Check {
            schema,
            doc: doc.clone(),
            rejected_for: None,
            at: std::panic::Location::caller(),
        });
    }

    /// `doc` must be rejected, with `expect` in the errors.
    #[track_caller]
    fn rejected(&mut self, schema: &'static str, doc: &Value, expect: &'static str) {
        self.items.push(Check {
            schema,
            doc: doc.clone(),
            rejected_for: Some(expect),
            at: std::panic::Location::caller(),
        });
    }

    fn run(self) {
        assert!(!self.items.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("batch.json");
        let pairs: Vec<Value> = self
            .items
            .iter()
            .map(|c| json!([c.schema, c.doc]))
            .collect();
        std::fs::write(&file, serde_json::to_string(&pairs).unwrap()).unwrap();
        let (ok, stdout, text) = python(&["--batch".as_ref(), file.as_os_str()]);
        assert!(ok, "{text}");
        let results: Vec<Option<String>> = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("validate_json.py --batch printed no result list ({e}):\n{text}")
        });
        assert_eq!(results.len(), self.items.len(), "{text}");
        let mut failures = Vec::new();
        for (check, errors) in self.items.iter().zip(results) {
            let doc = || serde_json::to_string_pretty(&check.doc).unwrap();
            match (check.rejected_for, errors) {
                (None, None) => {}
                (None, Some(errors)) => failures.push(format!(
                    "{}: the document does not match schemas/{}:\n{errors}\n--- document\n{}",
                    check.at,
                    check.schema,
                    doc()
                )),
                (Some(_), None) => failures.push(format!(
                    "{}: schemas/{} accepted a broken document:\n{}",
                    check.at,
                    check.schema,
                    doc()
                )),
                (Some(expect), Some(errors)) if !errors.contains(expect) => failures.push(format!(
                    "{}: schemas/{} rejected the document, but not for `{expect}`:\n{errors}",
                    check.at, check.schema
                )),
                (Some(_), Some(_)) => {}
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}

fn changes(plan: &Value) -> &Vec<Value> {
    plan["changes"].as_array().expect("changes")
}

fn change<'a>(plan: &'a Value, addr: &str) -> &'a Value {
    changes(plan)
        .iter()
        .find(|c| c["address"] == addr)
        .unwrap_or_else(|| panic!("{addr} not in the plan: {plan}"))
}

fn actions(plan: &Value) -> BTreeSet<String> {
    changes(plan)
        .iter()
        .map(|c| c["action"].as_str().unwrap().to_owned())
        .collect()
}

fn kinds(plan: &Value) -> BTreeSet<String> {
    changes(plan)
        .iter()
        .flat_map(|c| c["reasons"].as_array().unwrap())
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The summary counts what the changes say (the schema cannot).
#[track_caller]
fn assert_summary_matches(plan: &Value) {
    let count = |action: &str| {
        changes(plan)
            .iter()
            .filter(|c| c["action"] == action)
            .count()
    };
    let summary = &plan["summary"];
    assert_eq!(summary["build"], count("build"), "{summary}");
    assert_eq!(summary["rebuild"], count("rebuild"), "{summary}");
    assert_eq!(summary["destroy"], count("destroy"), "{summary}");
    assert_eq!(summary["unchanged"], count("no-op"), "{summary}");
}

#[test]
fn every_schema_is_a_valid_draft_2020_12_schema_and_its_refs_resolve() {
    for name in SCHEMAS {
        let text = std::fs::read_to_string(repo().join("schemas").join(name))
            .unwrap_or_else(|e| panic!("schemas/{name}: {e}"));
        let schema: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("schemas/{name}: {e}"));
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        assert_eq!(
            schema["properties"]["format_version"]["const"], 1,
            "{name}: every document carries format_version 1"
        );
    }
    let (ok, _, text) = python(&["--check-schemas".as_ref()]);
    assert!(ok, "{text}");
}

#[test]
fn plan_documents_match_the_plan_schema() {
    let mut checks = Checks::default();
    let p = project();

    // Nothing built yet: everything is a build.
    let fresh = p.run(&["plan", "--json"]);
    fresh.success();
    let fresh = fresh.json();
    assert_eq!(actions(&fresh), set(&["build"]));
    checks.valid("plan.v1.schema.json", &fresh);
    assert_summary_matches(&fresh);

    // Built: everything is a no-op.
    p.run(&APPLY).success();
    let same = p.run(&["plan", "--json"]);
    same.success();
    let same = same.json();
    assert_eq!(actions(&same), set(&["no-op"]));
    checks.valid("plan.v1.schema.json", &same);

    // One plan with every action but forget and most reasons:
    //   base: its script changed                         -> rebuild, file_changed
    //   app: built from base                             -> rebuild, parent_rebuilt
    //   greeter: --var greeting=bonjour                   -> rebuild, variable_changed + input_changed
    //   pinned: --replace                                 -> rebuild, forced
    //   new: added                                        -> build, not_in_state
    //   old: removed                                      -> destroy, removed_from_config
    //   steady                                            -> no-op
    p.file("images.pkr.hcl", &images_without_old());
    p.file("scripts/base.sh", "#!/bin/sh\necho \"base v2\"\n");
    let mixed = p.run(&[
        "plan",
        "--json",
        "--var",
        "greeting=bonjour",
        "--replace",
        "golden.null.pinned",
        "--out",
        "plan.bin",
    ]);
    mixed.success();
    let mixed = mixed.json();
    checks.valid("plan.v1.schema.json", &mixed);
    assert_summary_matches(&mixed);
    assert_eq!(
        actions(&mixed),
        set(&["build", "rebuild", "no-op", "destroy"]),
        "{mixed}"
    );
    assert_eq!(
        kinds(&mixed),
        set(&[
            "not_in_state",
            "file_changed",
            "variable_changed",
            "input_changed",
            "parent_rebuilt",
            "forced",
            "removed_from_config"
        ]),
        "{mixed}"
    );
    let base = change(&mixed, "golden.null.base");
    assert_eq!(base["reasons"][0]["kind"], "file_changed", "{base}");
    assert!(
        base["diff"]["files"]["scripts/base.sh"].is_string(),
        "{base}"
    );
    assert!(
        change(&mixed, "hello.null.greeter")["diff"]["manifest"].is_string(),
        "{mixed}"
    );
    assert_eq!(
        change(&mixed, "layer.null.app")["parents"],
        json!(["golden.null.base"])
    );
    assert_eq!(change(&mixed, "golden.null.old")["action"], "destroy");
    assert_eq!(change(&mixed, "golden.null.steady")["action"], "no-op");

    // The saved plan shows as the same document.
    let shown = p.run(&["show", "--json", "plan.bin"]);
    shown.success();
    let shown = shown.json();
    checks.valid("plan.v1.schema.json", &shown);
    assert_eq!(shown, mixed);

    // Applying it: built and destroyed images.
    let applied = p.run(&["apply", "--parallelism", "1", "--json", "plan.bin"]);
    applied.success();
    let applied = applied.result_json();
    checks.valid("apply.v1.schema.json", &applied);
    assert_eq!(applied["plan"], mixed);
    assert_eq!(
        applied["result"]["built"].as_array().unwrap().len(),
        5,
        "{applied}"
    );
    assert_eq!(
        applied["result"]["destroyed"],
        json!([{"address": "golden.null.old", "artifact_id": change(&mixed, "golden.null.old")["current_artifact"]}])
    );

    // The previous manifests gone from the object store: content_changed.
    // A record marked tainted: tainted.
    std::fs::remove_dir_all(p.path().join("state/objects")).unwrap();
    p.file("scripts/steady.sh", "#!/bin/sh\necho steady v2\n");
    let mut state: Value = serde_json::from_str(&p.read("state/local.json")).unwrap();
    state["images"]["golden.null.pinned"]["tainted"] = json!(true);
    p.file(
        "state/local.json",
        &serde_json::to_string_pretty(&state).unwrap(),
    );
    let vague = p.run(&["plan", "--json", "--var", "greeting=bonjour"]);
    vague.success();
    let vague = vague.json();
    checks.valid("plan.v1.schema.json", &vague);
    assert_eq!(
        change(&vague, "golden.null.steady")["reasons"],
        json!([{"kind": "content_changed"}])
    );
    assert_eq!(
        change(&vague, "golden.null.pinned")["reasons"],
        json!([{"kind": "tainted"}])
    );
    checks.run();
}

#[test]
fn apply_documents_match_the_apply_schema() {
    let mut checks = Checks::default();
    let p = project();
    // base fails: app (built from it) is skipped; the others are built.
    p.file("scripts/base.sh", "#!/bin/sh\necho boom >&2\nexit 3\n");
    let run = p.run(&APPLY_JSON);
    run.code(1);
    let mut lines = run.json_lines();
    let failed = lines.pop().unwrap();
    checks.valid("apply.v1.schema.json", &failed);
    // Before it, one event per line, in order: every image starts before it
    // ends, and each one ends once.
    assert!(lines.len() >= 10, "{}", run.stdout);
    for event in &lines {
        checks.valid("apply-event.v1.schema.json", event);
    }
    let kinds = |address: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|e| e["address"] == address)
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .filter(|t| t != "output" && t != "step")
            .collect()
    };
    assert_eq!(kinds("golden.null.base"), ["started", "failed"]);
    assert_eq!(kinds("layer.null.app"), ["skipped"]);
    assert_eq!(kinds("golden.null.steady"), ["started", "built"]);
    let result = &failed["result"];
    assert_eq!(result["failed"].as_array().unwrap().len(), 1, "{result}");
    assert_eq!(result["failed"][0]["address"], "golden.null.base");
    assert!(
        result["failed"][0]["message"]
            .as_str()
            .unwrap()
            .contains('3'),
        "{result}"
    );
    assert_eq!(
        result["skipped"],
        json!([{"address": "layer.null.app", "because": "golden.null.base"}])
    );
    assert_eq!(result["built"].as_array().unwrap().len(), 4, "{result}");
    assert_eq!(result["interrupted"], false);

    // Fixed: base and app are built.
    p.file("scripts/base.sh", "#!/bin/sh\necho base\n");
    let run = p.run(&APPLY_JSON);
    run.success();
    let fixed = run.result_json();
    checks.valid("apply.v1.schema.json", &fixed);
    assert_eq!(fixed["result"]["built"].as_array().unwrap().len(), 2);

    // No changes: the plan and empty results.
    let run = p.run(&APPLY_JSON);
    run.success();
    assert_eq!(run.stdout.lines().count(), 1, "no events: {}", run.stdout);
    let nothing = run.result_json();
    checks.valid("apply.v1.schema.json", &nothing);
    assert_eq!(nothing["result"]["built"], json!([]));
    assert_eq!(actions(&nothing["plan"]), set(&["no-op"]));
    checks.run();
}

#[cfg(unix)]
#[test]
fn an_interrupted_apply_matches_the_apply_schema() {
    let mut checks = Checks::default();
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
source "null" "slow" {
  communicator = "none"
}

source "null" "after" {
  communicator = "none"
}

build {
  name = "one"
  source "null.slow" {}
  provisioner "shell-local" {
    inline = ["sleep 0.3", "touch started", "sleep 20"]
  }
}

build {
  name = "two"
  source "null.after" {}
  provisioner "shell-local" {
    inline = ["echo ${image.one.null.slow.id}"]
  }
}
"#,
    );
    let child = Command::new(util::bin())
        .current_dir(p.path())
        .args(["apply", "--auto-approve", "--json"])
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !p.path().join("started").exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the build never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let run: util::Run = child.wait_with_output().unwrap().into();
    run.code(130);
    let mut lines = run.json_lines();
    let doc = lines.pop().unwrap();
    checks.valid("apply.v1.schema.json", &doc);
    assert!(
        lines.iter().any(|e| e["type"] == "interrupted"),
        "{}",
        run.stdout
    );
    assert_eq!(doc["result"]["interrupted"], true, "{doc}");
    assert!(doc["result"]["not_started"].is_array(), "{doc}");
    assert_eq!(
        doc["result"]["failed"],
        json!([{"address": "one.null.slow", "message": "cancelled"}])
    );
    checks.run();
}

#[test]
fn validate_documents_match_the_validate_schema() {
    let mut checks = Checks::default();
    // Valid, with a note (required_plugins is ignored).
    let p = project();
    let run = p.run(&["validate", "--json"]);
    run.success();
    let valid = run.json();
    checks.valid("validate.v1.schema.json", &valid);
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["diagnostics"][0]["severity"], "note", "{valid}");

    // Invalid: an unknown attribute, with a place and a hint.
    p.file(
        "broken.pkr.hcl",
        "source \"null\" \"x\" {\n  communicator = \"none\"\n  bogus = 1\n}\n",
    );
    let run = p.run(&["validate", "--json"]);
    run.code(1);
    let invalid = run.json();
    checks.valid("validate.v1.schema.json", &invalid);
    assert_eq!(invalid["valid"], false);
    let error = invalid["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["severity"] == "error")
        .unwrap();
    assert_eq!(
        error["location"],
        json!({"file": "broken.pkr.hcl", "line": 3, "col": 3})
    );
    assert!(error["hint"].is_string(), "{error}");

    // Invalid: an undefined variable and an undefined local.
    let q = Project::new();
    q.file(
        "images.pkr.hcl",
        r#"
source "null" "a" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]
  provisioner "shell-local" {
    inline = ["echo ${var.nope}"]
  }
  provisioner "shell-local" {
    inline = ["echo ${local.nada}"]
  }
}
"#,
    );
    let run = q.run(&["validate", "--json"]);
    run.code(1);
    let invalid = run.json();
    checks.valid("validate.v1.schema.json", &invalid);
    assert!(invalid["error_count"].as_u64().unwrap() >= 2, "{invalid}");

    // No definition dir: an error without a location.
    let run = q.run(&["validate", "--json", "does-not-exist"]);
    run.code(1);
    let missing = run.json();
    checks.valid("validate.v1.schema.json", &missing);
    assert!(
        missing["diagnostics"][0].get("location").is_none(),
        "{missing}"
    );
    checks.run();
}

#[test]
fn state_documents_match_their_schemas() {
    let mut checks = Checks::default();
    let p = project();

    // Nothing recorded yet.
    let list = p.run(&["state", "list", "--json"]);
    list.success();
    let list = list.json();
    checks.valid("state-list.v1.schema.json", &list);
    assert_eq!(list["images"], json!([]));
    let shown = p.run(&["show", "--json"]);
    shown.success();
    let shown = shown.json();
    checks.valid("show-state.v1.schema.json", &shown);
    assert_eq!(shown["states"], json!([]));

    // Built, then base rebuilt so that app (keep_previous = 1) has a
    // previous artifact.
    p.run(&APPLY).success();
    p.file("scripts/base.sh", "#!/bin/sh\necho base v2\n");
    p.run(&APPLY).success();

    let list = p.run(&["state", "list", "--json"]);
    list.success();
    let list = list.json();
    checks.valid("state-list.v1.schema.json", &list);
    assert_eq!(list["images"].as_array().unwrap().len(), 6, "{list}");

    let show = p.run(&["state", "show", "layer.null.app", "--json"]);
    show.success();
    let show = show.json();
    checks.valid("state-show.v1.schema.json", &show);
    let record = &show["record"];
    assert!(
        record["parents"]["golden.null.base"].is_object(),
        "{record}"
    );
    assert!(
        record["text_inputs"]["scripts/app.sh"].is_string(),
        "{record}"
    );
    assert_eq!(record["previous"].as_array().unwrap().len(), 1, "{record}");

    let shown = p.run(&["show", "--json"]);
    shown.success();
    let shown = shown.json();
    checks.valid("show-state.v1.schema.json", &shown);
    assert_eq!(shown["states"].as_array().unwrap().len(), 1);
    // `show --json` embeds the state file as stored.
    let file: Value = serde_json::from_str(&p.read("state/local.json")).unwrap();
    assert_eq!(shown["states"][0], file);
    checks.run();
}

#[test]
fn drift_documents_match_the_drift_schema() {
    let mut checks = Checks::default();
    let p = project();
    let empty = p.run(&["drift", "--json"]);
    empty.success();
    checks.valid("drift.v1.schema.json", &empty.json());

    p.run(&APPLY).success();
    let current = p.run(&["drift", "--json"]);
    current.success();
    checks.valid("drift.v1.schema.json", &current.json());

    // inputs_changed (with plan reasons inside) and, after rebuilding only
    // the parent, parent_rebuilt with the ancestry moved on.
    p.file("scripts/base.sh", "#!/bin/sh\necho base v3\n");
    let stale = p.run(&["drift", "--json"]);
    stale.code(2);
    let stale = stale.json();
    checks.valid("drift.v1.schema.json", &stale);
    p.run(&["apply", "--auto-approve", "--target", "golden.null.base"])
        .success();
    let moved = p.run(&["drift", "--json"]);
    moved.code(2);
    let moved = moved.json();
    checks.valid("drift.v1.schema.json", &moved);
    let kinds: BTreeSet<String> = stale["images"]
        .as_array()
        .unwrap()
        .iter()
        .chain(moved["images"].as_array().unwrap())
        .flat_map(|e| e["reasons"].as_array().cloned().unwrap_or_default())
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        kinds.contains("inputs_changed") && kinds.contains("parent_rebuilt"),
        "{kinds:?}"
    );

    // A wrong status is rejected, so the check can fail.
    let mut broken = moved.clone();
    broken["images"][0]["status"] = json!("fine");
    checks.rejected("drift.v1.schema.json", &broken, "fine");
    checks.run();
}

#[test]
fn broken_documents_are_rejected() {
    let mut checks = Checks::default();
    let p = project();
    p.run(&APPLY).success();
    p.file("scripts/base.sh", "#!/bin/sh\necho base v2\n");
    let plan = p.run(&["plan", "--json"]).json();
    checks.valid("plan.v1.schema.json", &plan);
    let idx = |addr: &str| {
        changes(&plan)
            .iter()
            .position(|c| c["address"] == addr)
            .unwrap()
    };
    let (base, steady) = (idx("golden.null.base"), idx("golden.null.steady"));
    assert_eq!(plan["changes"][base]["reasons"][0]["kind"], "file_changed");

    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut doc = plan.clone();
        edit(&mut doc);
        doc
    };
    let plan_schema = "plan.v1.schema.json";
    checks.rejected(
        plan_schema,
        &broken(&|d| d["changes"][base]["action"] = json!("explode")),
        "'explode' is not one of",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| d["changes"][base]["reasons"][0]["kind"] = json!("cosmic_rays")),
        "'cosmic_rays' is not one of",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| {
            d["changes"][base]["reasons"][0]
                .as_object_mut()
                .unwrap()
                .remove("path");
        }),
        "'path' is a required property",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| d["changes"][base]["reasons"] = json!([{"kind": "variable_changed"}])),
        "'name' is a required property",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| d["changes"][base]["reasons"] = json!([{"kind": "forced", "why": "because"}])),
        "additionalProperties",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| d["changes"][base]["reasons"] = json!([])),
        "reasons/minItems",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| d["changes"][steady]["reasons"] = json!([{"kind": "forced"}])),
        "reasons/maxItems",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| d["changes"][base]["content"]["new"] = json!("sha256:abc")),
        "sha256:abc",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| d["changes"][base]["address"] = json!("not-an-address")),
        "not-an-address",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| {
            d["changes"][base]["action"] = json!("build");
            d["changes"][base]["reasons"] = json!([{"kind": "not_in_state"}]);
        }),
        "is not of type 'null'",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| {
            d["summary"].as_object_mut().unwrap().remove("unchanged");
        }),
        "'unchanged' is a required property",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| d["format_version"] = json!(2)),
        "1 was expected",
    );
    // The reasons no null-builder run produces, with their payloads as
    // src/plan/model.rs has them: accepted whole, rejected without a field.
    checks.valid(
        plan_schema,
        &broken(&|d| {
            d["changes"][base]["reasons"] = json!([
                {"kind": "base_updated", "old_id": "ami-0123", "new_id": "ami-0456"},
                {"kind": "artifact_missing", "id": "ami-0123"},
                {"kind": "input_changed", "path": "inputs.size"},
                {"kind": "file_changed", "path": "files/new.conf", "new": format!("sha256:{}+x", "a".repeat(64))},
            ])
        }),
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| {
            d["changes"][base]["reasons"] = json!([{"kind": "base_updated", "old_id": "ami-0123"}])
        }),
        "'new_id' is a required property",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| d["changes"][base]["reasons"] = json!([{"kind": "artifact_missing"}])),
        "'id' is a required property",
    );
    checks.rejected(
        plan_schema,
        &broken(&|d| {
            d["changes"][base]["reasons"] = json!([{"kind": "file_changed", "path": "/etc/passwd"}])
        }),
        "/etc/passwd",
    );

    let apply = json!({
        "format_version": 1,
        "plan": plan,
        "result": {"built": [], "failed": [], "skipped": [], "destroyed": [], "not_started": []},
    });
    checks.rejected(
        "apply.v1.schema.json",
        &apply,
        "'interrupted' is a required property",
    );
    let mut apply = apply;
    apply["result"]["interrupted"] = json!(false);
    apply["plan"]["changes"][base]["action"] = json!("explode");
    checks.rejected("apply.v1.schema.json", &apply, "'explode' is not one of");

    checks.rejected(
        "validate.v1.schema.json",
        &json!({"format_version": 1, "valid": false, "error_count": 0, "diagnostics": []}),
        "error_count/minimum",
    );
    checks.rejected(
        "validate.v1.schema.json",
        &json!({"format_version": 1, "valid": true, "error_count": 0,
                "diagnostics": [{"severity": "fatal", "summary": "x"}]}),
        "'fatal' is not one of",
    );

    let list = p.run(&["state", "list", "--json"]).json();
    let mut bad_list = list.clone();
    bad_list["images"][0]["content_address"] = json!("md5:0");
    checks.rejected("state-list.v1.schema.json", &bad_list, "md5:0");

    let show = p
        .run(&["state", "show", "golden.null.base", "--json"])
        .json();
    let mut bad_show = show.clone();
    bad_show["record"]["colour"] = json!("blue");
    checks.rejected(
        "state-show.v1.schema.json",
        &bad_show,
        "'colour' was unexpected",
    );

    let shown = p.run(&["show", "--json"]).json();
    let mut bad_shown = shown.clone();
    bad_shown["states"][0]["lineage"] = json!("not-a-uuid");
    checks.rejected("show-state.v1.schema.json", &bad_shown, "not-a-uuid");
    checks.run();
}
