//! Secrets stay secret: a sensitive variable, a sensitive local, and values
//! derived from them through functions and templates (base64encode, upper,
//! sha256, replace, a local built from a secret) never appear in anything
//! imgform prints or writes — plans (human, JSON, saved), apply output and
//! events, logs, the state and its objects, drift — while a changed secret
//! still rebuilds the image.

mod util;

use base64::Engine as _;
use sha2::Digest as _;
use util::Project;

const TOKEN: &str = "tok-4f9a8b7c6d";
const OTHER: &str = "tok-0e1d2c3b4a";

const IMAGES: &str = r#"
variable "token" {
  type      = string
  default   = "tok-4f9a8b7c6d"
  sensitive = true
}

local "db_url" {
  expression = "postgres://app:${var.token}@db.internal/app"
  sensitive  = true
}

locals {
  encoded = base64encode(var.token)
  greeting = "hello"
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = [
      "echo ${local.greeting}",
      "echo raw=${var.token}",
      "echo b64=${local.encoded}",
      "echo up=${upper(var.token)}",
      "echo sum=${sha256(var.token)}",
      "echo rep=${replace(var.token, "tok-", "TOK_")}",
      "echo url=${local.db_url}",
      "echo url64=${base64encode(local.db_url)}",
    ]
  }
}
"#;

/// Every form of the secret the definitions derive.
fn forbidden(token: &str) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let url = format!("postgres://app:{token}@db.internal/app");
    vec![
        token.to_owned(),
        b64(token),
        token.to_uppercase(),
        hex::encode(sha2::Sha256::digest(token.as_bytes())),
        token.replace("tok-", "TOK_"),
        url.clone(),
        b64(&url),
    ]
}

#[track_caller]
fn clean(what: &str, text: &str) {
    for secret in forbidden(TOKEN).iter().chain(&forbidden(OTHER)) {
        assert!(
            !text.contains(secret.as_str()),
            "{what} holds the secret {secret:?}:\n{text}"
        );
    }
}

/// Every file imgform wrote under the project (state, objects, logs, plan
/// files).
fn every_file_is_clean(p: &Project) {
    let mut seen = 0;
    for entry in walkdir::WalkDir::new(p.path()) {
        let entry = entry.unwrap();
        // The definitions hold the secret's default: they are the input;
        // the key file holds no secret.
        if entry.file_type().is_file()
            && entry.path() != p.path().join("images.pkr.hcl")
            && entry.path() != p.path().join(".imgform/sensitive.key")
        {
            let bytes = std::fs::read(entry.path()).unwrap();
            clean(
                &entry.path().display().to_string(),
                &String::from_utf8_lossy(&bytes),
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 5,
        "state, objects, logs and the plan file were written"
    );
}

#[test]
fn derived_secrets_never_leave_the_process() {
    let p = Project::new();
    p.file("images.pkr.hcl", IMAGES);

    let plan = p.run(&["plan", "--out", "plan.bin"]);
    plan.success();
    clean("plan", &format!("{}{}", plan.stdout, plan.stderr));
    let shown = p.run(&["show", "--json", "plan.bin"]);
    shown.success();
    clean("show --json plan.bin", &shown.stdout);

    let applied = p.run(&["apply", "plan.bin"]);
    applied.success();
    clean(
        "apply plan.bin",
        &format!("{}{}", applied.stdout, applied.stderr),
    );
    // The command ran with the real values: their lines are there, scrubbed.
    applied
        .stderr_has("null.app: hello")
        .stderr_has("null.app: raw=(sensitive value)")
        .stderr_has("null.app: b64=(sensitive value)")
        .stderr_has("null.app: sum=(sensitive value)")
        .stderr_has("null.app: url64=(sensitive value)");

    // A new secret rebuilds the image, and says so without showing either.
    let var = format!("token={OTHER}");
    let changed = p.run(&["plan", "--json", "--var", &var]);
    changed.code(0);
    clean("plan --json with a new secret", &changed.stdout);
    let json = changed.json();
    assert_eq!(json["summary"]["rebuild"], 1, "{json}");
    let human = p.run(&["plan", "--var", &var]);
    clean("plan with a new secret", &human.stdout);
    assert!(human.stdout.contains("(sensitive"), "{}", human.stdout);

    let events = p.run(&["apply", "--auto-approve", "--json", "--var", &var]);
    events.success();
    clean(
        "apply --json",
        &format!("{}{}", events.stdout, events.stderr),
    );

    let drift = p.run(&["drift", "--json"]);
    clean("drift --json", &drift.stdout);
    let state = p.run(&["state", "show", "null.app", "--json"]);
    state.success();
    clean("state show", &state.stdout);
    every_file_is_clean(&p);
}

/// The digest of a secret is keyed, and the key is never with the state:
/// IMGFORM_SENSITIVE_KEY, else a key file made beside the definitions.
#[test]
fn secret_digests_are_keyed_outside_the_state() {
    let address = |p: &Project, env: &[(&str, &str)]| -> String {
        let run = p.run_env(&["plan", "--json"], env);
        run.success();
        run.json()["changes"][0]["content"]["new"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let a = Project::new();
    a.file("images.pkr.hcl", IMAGES);
    let b = Project::new();
    b.file("images.pkr.hcl", IMAGES);
    let ci = [("IMGFORM_SENSITIVE_KEY", "the CI's key")];
    // The same key: the same addresses in two checkouts.
    assert_eq!(address(&a, &ci), address(&b, &ci));
    assert!(!a.path().join(".imgform/sensitive.key").exists());
    // Another key: another address (a guess cannot be checked without it).
    let other = address(&a, &[("IMGFORM_SENSITIVE_KEY", "another key")]);
    assert_ne!(other, address(&a, &ci));
    // No key given: each checkout makes its own, readable by its owner only,
    // and keeps using it.
    let first = address(&a, &[]);
    let key_file = a.path().join(".imgform/sensitive.key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert_eq!(address(&a, &[]), first);
    assert_ne!(address(&b, &[]), first);
    // Applying stores nothing of the key in the state.
    a.run(&["apply", "--auto-approve"]).success();
    let key = std::fs::read_to_string(&key_file).unwrap();
    for entry in walkdir::WalkDir::new(a.path().join("state")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
            assert!(!text.contains(key.trim()), "{}", entry.path().display());
        }
    }
}

/// Inline scripts (which hold the values of secrets) are in a dir only
/// their owner can enter, and dirs left by killed runs are swept.
#[test]
fn temporary_scripts_are_private_and_a_dead_runs_are_swept() {
    let p = Project::new();
    let tmp = p.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let dead = tmp.join(format!("imgform-null-app-999999999-{}", "b".repeat(32)));
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join("inline.sh"), format!("echo {TOKEN}")).unwrap();
    p.file(
        "images.pkr.hcl",
        r#"
source "null" "app" {
  communicator = "none"
}
build {
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = ["stat -c 'modes %a' \"$(dirname \"$0\")\" \"$0\""]
  }
}
"#,
    );
    let run = p.run_env(
        &["apply", "--auto-approve"],
        &[("TMPDIR", tmp.to_str().unwrap())],
    );
    run.success();
    run.stderr_has("Removed 1 temporary dir(s) of imgform runs that are gone.");
    let modes: Vec<&str> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("null.app: modes "))
        .collect();
    assert_eq!(modes, ["700", "700"], "{}", run.stderr);
    assert!(!dead.exists());
    // Nothing of this run is left either.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}
