//! Packer `data` blocks on the real binary: each kind looked up against a
//! real peer (moto for EC2 / SSM / Secrets Manager, an HTTP server started
//! here, a real git repository, a generated key), its answer part of the
//! content address of the images whose inputs use it, recorded in the state
//! (`--refresh=false` reuses it, a saved plan carries it), a new answer a
//! typed `data_changed` reason in plan and drift, and secret answers never
//! written anywhere.

mod util;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use util::moto::Moto;
use util::{filters, Project};

fn reasons(plan: &serde_json::Value, address: &str) -> Vec<serde_json::Value> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == address)
        .map(|c| c["reasons"].as_array().unwrap().clone())
        .unwrap_or_default()
}

fn data_changed<'a>(
    reasons: &'a [serde_json::Value],
    address: &str,
) -> Option<&'a serde_json::Value> {
    reasons
        .iter()
        .find(|r| r["kind"] == "data_changed" && r["address"] == address)
}

fn content(plan: &serde_json::Value) -> String {
    plan["changes"][0]["content"]["new"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every file imgform wrote under `p` except the definitions and the key
/// files: none may hold any of `secrets`. Returns how many were read.
#[track_caller]
fn written_files_hold_none_of(p: &Project, secrets: &[&str]) -> usize {
    let mut seen = 0;
    for entry in walkdir::WalkDir::new(p.path()) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(p.path()).unwrap();
        let definition = rel.extension().is_some_and(|e| e == "hcl");
        let key = rel.starts_with(".imgform/data/sshkey") || rel.ends_with("sensitive.key");
        if !entry.file_type().is_file() || definition || key || rel.starts_with("home") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{} holds a secret:\n{text}",
                rel.display()
            );
        }
        seen += 1;
    }
    seen
}

const AMI: &str = r#"
data "amazon-ami" "base" {
  filters = {
    name = "golden-base-*"
  }
  owners      = ["self"]
  most_recent = true
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = ["echo base=${data.amazon-ami.base.id} name=${data.amazon-ami.base.name}"]
  }
}
"#;

#[test]
fn amazon_ami_answer_is_an_input_recorded_reused_and_carried() {
    let moto = Moto::start();
    let env = moto.aws_env();
    let first = moto.register_image("golden-base-1");
    let p = Project::new();
    p.file("images.pkr.hcl", AMI);

    // validate and graph never ask: no endpoint, no credentials needed.
    p.run_isolated(
        &["validate"],
        &[("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:9".into())],
    )
    .success();

    let applied = p.run_isolated(&["apply", "--auto-approve"], &env);
    applied.success();
    applied.stderr_has(&format!("base={first} name=golden-base-1"));
    let state = p.read("state/local.json");
    assert!(state.contains("\"data.amazon-ami.base\""), "{state}");
    let plan = p.run_isolated(&["plan", "--json"], &env);
    plan.success();
    assert_eq!(plan.json()["summary"]["unchanged"], 1, "{}", plan.stdout);

    // A newer AMI upstream: the image is stale, and says why.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = moto.register_image("golden-base-2");
    let plan = p.run_isolated(&["plan", "--json"], &env);
    plan.success();
    let json = plan.json();
    let why = reasons(&json, "null.app");
    let reason = data_changed(&why, "data.amazon-ami.base").unwrap_or_else(|| panic!("{json}"));
    assert_eq!(reason["old"], first.as_str());
    assert_eq!(reason["new"], second.as_str());
    let human = p.run_isolated(&["plan"], &env);
    insta::with_settings!({filters => {
        let mut f = filters();
        f.push((r"ami-[0-9a-f]{8,17}", "ami-[ID]"));
        f
    }}, {
        insta::assert_snapshot!("plan_data_changed", human.stdout);
    });
    let drift = p.run_isolated(&["drift", "--json"], &env);
    assert_eq!(drift.code, 2, "{}", drift.stderr);
    let drift = drift.json();
    let entry = &drift["images"][0];
    assert_eq!(entry["status"], "stale", "{drift}");
    assert!(
        entry["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "data_changed" && r["new"] == second.as_str()),
        "{drift}"
    );

    // --refresh=false: the recorded answer, nothing to do.
    let offline = p.run_isolated(&["plan", "--json", "--refresh=false"], &env);
    offline.success();
    assert_eq!(
        offline.json()["summary"]["unchanged"],
        1,
        "{}",
        offline.stdout
    );

    // A saved plan is applied with the answer it was made with.
    p.run_isolated(&["plan", "--out", "plan.bin"], &env)
        .success();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let third = moto.register_image("golden-base-3");
    let applied = p.run_isolated(&["apply", "plan.bin"], &env);
    applied.success();
    applied.stderr_has(&format!("base={second} name=golden-base-2"));
    assert!(!applied.stderr.contains(&third), "{}", applied.stderr);
}

const SECRETS: &str = r#"
data "amazon-parameterstore" "base" {
  name = "/golden/base-ami"
}

data "amazon-parameterstore" "token" {
  name            = "/golden/token"
  with_decryption = true
}

data "amazon-secretsmanager" "db" {
  name = "golden/db"
  key  = "password"
}

locals {
  dsn = "postgres://app:${data.amazon-secretsmanager.db.value}@db/app"
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = [
      "echo base=${data.amazon-parameterstore.base.value}",
      "echo token=${data.amazon-parameterstore.token.value}",
      "echo token64=${base64encode(data.amazon-parameterstore.token.value)}",
      "echo dsn=${local.dsn}",
      "echo pw=${data.amazon-secretsmanager.db.value}",
    ]
  }
}
"#;

const TOKEN: &str = "tok-71d3e9a2c4";
const PASSWORD: &str = "pw-5b8c1f0e9d";

#[test]
fn parameters_and_secrets_resolve_and_secrets_are_never_written() {
    let moto = Moto::start();
    let env = moto.aws_env();
    moto.put_parameter("/golden/base-ami", "String", "ami-0123456789abcdef0");
    moto.put_parameter("/golden/token", "SecureString", TOKEN);
    moto.put_secret(
        "golden/db",
        &format!(r#"{{"user":"app","password":"{PASSWORD}"}}"#),
    );
    let p = Project::new();
    p.file("images.pkr.hcl", SECRETS);
    let token64 = base64_of(TOKEN);
    let forbidden = [TOKEN, PASSWORD, token64.as_str()];

    let plan = p.run_isolated(&["plan", "--out", "plan.bin"], &env);
    plan.success();
    for s in forbidden {
        assert!(
            !plan.stdout.contains(s) && !plan.stderr.contains(s),
            "{}{}",
            plan.stdout,
            plan.stderr
        );
    }
    let applied = p.run_isolated(&["apply", "plan.bin"], &env);
    applied.success();
    applied
        .stderr_has("base=ami-0123456789abcdef0")
        .stderr_has("token=(sensitive value)")
        .stderr_has("token64=(sensitive value)")
        .stderr_has("dsn=(sensitive value)")
        .stderr_has("pw=(sensitive value)");
    for s in forbidden {
        assert!(!applied.stderr.contains(s), "{}", applied.stderr);
    }

    // A public parameter that changes is shown; a secret one only as a digest.
    moto.put_parameter("/golden/base-ami", "String", "ami-0fedcba9876543210");
    moto.put_parameter("/golden/token", "SecureString", "tok-new-8a7b6c");
    let plan = p.run_isolated(&["plan", "--json"], &env);
    plan.success();
    assert!(!plan.stdout.contains("tok-new-8a7b6c"), "{}", plan.stdout);
    let json = plan.json();
    let why = reasons(&json, "null.app");
    let base =
        data_changed(&why, "data.amazon-parameterstore.base").unwrap_or_else(|| panic!("{json}"));
    assert_eq!(base["old"]["value"], "ami-0123456789abcdef0");
    assert_eq!(base["new"]["value"], "ami-0fedcba9876543210");
    let token =
        data_changed(&why, "data.amazon-parameterstore.token").unwrap_or_else(|| panic!("{json}"));
    assert!(
        token["new"]["value"]
            .as_str()
            .unwrap()
            .starts_with("(sensitive:"),
        "{token}"
    );
    assert_ne!(token["old"]["value"], token["new"]["value"]);
    assert!(
        data_changed(&why, "data.amazon-secretsmanager.db").is_none(),
        "{json}"
    );

    let applied = p.run_isolated(&["apply", "--auto-approve"], &env);
    applied.success();
    let drift = p.run_isolated(&["drift", "--json"], &env);
    assert_eq!(drift.code, 0, "{}{}", drift.stdout, drift.stderr);
    let written = written_files_hold_none_of(&p, &[TOKEN, PASSWORD, &token64, "tok-new-8a7b6c"]);
    assert!(
        written >= 5,
        "state, objects, logs and the plan file: {written}"
    );
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A tiny HTTP/1.1 server: GET /version answers the current body, anything
/// else 404. Answers until the test ends.
fn serve(body: Arc<Mutex<String>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&request).into_owned();
            let (status, text) = if head.starts_with("GET /version ") {
                let accept_ok = head.to_ascii_lowercase().contains("accept: text/plain");
                if accept_ok {
                    ("200 OK", body.lock().unwrap().clone())
                } else {
                    ("406 Not Acceptable", String::new())
                }
            } else {
                ("404 Not Found", "no such thing".to_owned())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nX-Served-By: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    port
}

#[test]
fn http_body_checksum_is_in_the_address() {
    let body = Arc::new(Mutex::new("1.2.3".to_owned()));
    let port = serve(body.clone());
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        &format!(
            r#"
data "http" "version" {{
  url = "http://127.0.0.1:{port}/version"
  request_headers = {{
    Accept = "text/plain"
  }}
}}

source "null" "app" {{
  communicator = "none"
}}

build {{
  sources = ["source.null.app"]
  provisioner "shell-local" {{
    inline = ["echo version=${{trimspace(data.http.version.body)}} status=${{data.http.version.status_code}} by=${{data.http.version.response_headers["x-served-by"]}}"]
  }}
}}
"#
        ),
    );
    let applied = p.run(&["apply", "--auto-approve"]);
    applied.success();
    applied.stderr_has("version=1.2.3 status=200 by=test");
    let plan = p.run(&["plan", "--json"]);
    assert_eq!(plan.json()["summary"]["unchanged"], 1, "{}", plan.stdout);

    *body.lock().unwrap() = "1.2.4".to_owned();
    let plan = p.run(&["plan", "--json"]);
    plan.success();
    let json = plan.json();
    let why = reasons(&json, "null.app");
    let reason = data_changed(&why, "data.http.version").unwrap_or_else(|| panic!("{json}"));
    let sha = |s: &str| {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(s)))
    };
    assert_eq!(reason["old"], sha("1.2.3"));
    assert_eq!(reason["new"], sha("1.2.4"));

    // A failing look-up is a located error, and nothing is written.
    let q = Project::new();
    q.file(
        "images.pkr.hcl",
        &format!(
            "data \"http\" \"gone\" {{\n  url = \"http://127.0.0.1:{port}/gone\"\n}}\n\n{}",
            "source \"null\" \"a\" {\n  communicator = \"none\"\n}\n\nbuild {\n  sources = [\"source.null.a\"]\n  provisioner \"shell-local\" {\n    inline = [\"echo ${data.http.gone.body}\"]\n  }\n}\n"
        ),
    );
    let failed = q.run(&["plan"]);
    failed
        .code(1)
        .stderr_has("images.pkr.hcl:1:1")
        .stderr_has("data.http.gone: cannot look it up")
        .stderr_has("404")
        .stderr_has("hint:");
    assert!(!q.path().join("state").exists());
}

const GIT: &str = r#"
data "git-commit" "cwd-head" {}

data "git-repository" "cwd" {}

locals {
  short = substr(data.git-commit.cwd-head.hash, 0, 8)
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = [
      "echo 'commit=${local.short} by=${data.git-commit.cwd-head.author} on=${join(",", data.git-commit.cwd-head.branches)}'",
      "echo 'head=${data.git-repository.cwd.head} clean=${data.git-repository.cwd.is_clean}'",
    ]
  }
}
"#;

#[test]
fn git_commit_and_repository_follow_the_checkout() {
    let p = Project::new();
    let dir = p.path();
    util::git(dir, &["init", "-q", "-b", "main"]);
    p.file("images.pkr.hcl", GIT);
    p.file(".gitignore", "state/\n.imgform/\nhome/\n");
    util::git(dir, &["add", "."]);
    util::git(dir, &["commit", "-q", "-m", "first"]);
    let first = util::git(dir, &["rev-parse", "HEAD"]);

    let applied = p.run(&["apply", "--auto-approve"]);
    applied.success();
    applied
        .stderr_has(&format!(
            "commit={} by=A U Thor <author@example.com> on=main",
            &first[..8]
        ))
        .stderr_has("head=main clean=true");
    // imgform's own files are ignored: still clean, nothing to do.
    let plan = p.run(&["plan", "--json"]);
    assert_eq!(plan.json()["summary"]["unchanged"], 1, "{}", plan.stdout);

    // A new commit, and an untracked file: both answers move.
    p.file("notes.txt", "x\n");
    util::git(dir, &["commit", "-q", "--allow-empty", "-m", "second"]);
    let second = util::git(dir, &["rev-parse", "HEAD"]);
    let plan = p.run(&["plan", "--json"]);
    plan.success();
    let json = plan.json();
    let why = reasons(&json, "null.app");
    let commit = data_changed(&why, "data.git-commit.cwd-head").unwrap_or_else(|| panic!("{json}"));
    assert_eq!(commit["old"], first.as_str());
    assert_eq!(commit["new"], second.as_str());
    let repo = data_changed(&why, "data.git-repository.cwd").unwrap_or_else(|| panic!("{json}"));
    assert_eq!(repo["old"]["is_clean"], true);
    assert_eq!(repo["new"]["is_clean"], false);

    // Outside a repository: a located error.
    let q = Project::new();
    q.file("images.pkr.hcl", GIT);
    q.run(&["plan"])
        .code(1)
        .stderr_has("images.pkr.hcl:2:1")
        .stderr_has("not inside a git repository");
}

const SSHKEY: &str = r#"
data "sshkey" "install" {
  type = "ed25519"
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = [
      "echo pub=${data.sshkey.install.public_key}",
      "echo key64=${base64encode(data.sshkey.install.private_key)}",
      "echo '${data.sshkey.install.private_key}' | head -n 2 | tail -n 1",
      "echo path=${data.sshkey.install.private_key_path}",
    ]
  }
}
"#;

#[test]
fn sshkey_is_kept_so_addresses_are_stable_and_the_private_key_is_secret() {
    let p = Project::new();
    p.file("images.pkr.hcl", SSHKEY);
    let first = p.run(&["plan", "--json"]);
    first.success();
    let key_file = p.path().join(".imgform/data/sshkey/packer");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "{key}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let second = p.run(&["plan", "--json"]);
    assert_eq!(content(&first.json()), content(&second.json()));

    let applied = p.run(&["apply", "--auto-approve"]);
    applied.success();
    applied
        .stderr_has("pub=ssh-ed25519 AAAA")
        .stderr_has("key64=(sensitive value)")
        .stderr_has("null.app: (sensitive value)")
        .stderr_has(&format!("path={}", key_file.display()));
    // The key's body (its base64 lines) is nowhere but in its own file.
    let body: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!body.is_empty());
    assert!(written_files_hold_none_of(&p, &body) >= 3);

    // A deleted key is made again: a new pair, a new address, and why.
    std::fs::remove_file(&key_file).unwrap();
    let plan = p.run(&["plan", "--json"]);
    plan.success();
    let json = plan.json();
    let why = reasons(&json, "null.app");
    let reason = data_changed(&why, "data.sshkey.install").unwrap_or_else(|| panic!("{json}"));
    assert!(
        reason["new"].as_str().unwrap().starts_with("SHA256:"),
        "{reason}"
    );
    assert_ne!(reason["old"], reason["new"]);
}

#[test]
fn data_sources_locals_and_variables_chain_in_any_order() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
# Written before what it uses: order does not matter.
data "null" "greeting" {
  input = "${local.shout}, ${data.null.name.output}"
}

locals {
  shout = upper(var.word)
}

data "null" "name" {
  input = "world"
}

variable "word" {
  type    = string
  default = "hello"
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = ["echo ${data.null.greeting.output}"]
  }
}
"#,
    );
    p.run(&["validate"]).success();
    let applied = p.run(&["apply", "--auto-approve"]);
    applied.success();
    applied.stderr_has("HELLO, world");
    let plan = p.run(&["plan", "--json", "--var", "word=bye"]);
    plan.success();
    let json = plan.json();
    let why = reasons(&json, "null.app");
    let reason = data_changed(&why, "data.null.greeting").unwrap_or_else(|| panic!("{json}"));
    assert_eq!(reason["old"], "HELLO, world");
    assert_eq!(reason["new"], "BYE, world");
}

#[test]
fn dynamic_blocks_and_build_names_may_use_data_sources() {
    let p = Project::new();
    let template = |steps: &str| {
        format!(
            r#"
data "null" "steps" {{
  input = [{steps}]
}}

data "null" "channel" {{
  input = "nightly"
}}

locals {{
  steps = data.null.steps.output
}}

source "null" "app" {{
  communicator = "none"
}}

build {{
  name    = data.null.channel.output
  sources = ["source.null.app"]
  dynamic "provisioner" {{
    for_each = local.steps
    labels   = ["shell-local"]
    content {{
      inline = ["echo step=${{provisioner.value}}"]
    }}
  }}
}}
"#
        )
    };
    p.file("images.pkr.hcl", &template(r#""one", "two""#));
    // Nothing is looked up by validate: the dynamic block is unknown there,
    // and no error.
    p.run(&["validate", "."]).success();
    let applied = p.run(&["apply", "--auto-approve"]);
    applied.success();
    applied.stderr_has("step=one").stderr_has("step=two");
    let state = p.read("state/local.json");
    assert!(state.contains("nightly.null.app"), "{state}");
    p.run(&["plan", "--detailed-exitcode"]).code(0);

    // Another answer: another set of provisioners, and a rebuild.
    p.file("images.pkr.hcl", &template(r#""one", "three""#));
    let plan = p.run(&["plan", "--json"]);
    plan.success();
    assert_eq!(plan.json()["summary"]["rebuild"], 1, "{}", plan.stdout);
    let applied = p.run(&["apply", "--auto-approve"]);
    applied.success();
    applied.stderr_has("step=three");
    assert!(!applied.stderr.contains("step=two"), "{}", applied.stderr);
}

#[test]
fn data_source_attributes_imgform_does_not_act_on_are_warnings() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
data "amazon-parameterstore" "ami" {
  name                = "/aws/service/ecs/optimized-ami/amazon-linux-2/recommended/image_id"
  region              = "us-east-1"
  max_retries         = 5
  custom_endpoint_ec2 = "https://ec2.example"
  mfa_code            = ""
  assume_role {
    role_arn = "arn:aws:iam::123456789012:role/packer"
  }
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = ["echo ${data.amazon-parameterstore.ami.value}"]
  }
}
"#,
    );
    let run = p.run(&["validate", "."]);
    run.success();
    run.stderr_has(
        "warning: data.amazon-parameterstore.ami: `custom_endpoint_ec2` is not acted on",
    )
    .stderr_has("images.pkr.hcl:6:")
    .stderr_has("AWS_ENDPOINT_URL")
    .stderr_has("`assume_role` is not acted on")
    .stderr_has("images.pkr.hcl:8:");
    // Acted on, or set to nothing: no warning.
    assert!(!run.stderr.contains("`max_retries`"), "{}", run.stderr);
    assert!(!run.stderr.contains("`mfa_code`"), "{}", run.stderr);
}
