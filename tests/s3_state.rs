#![cfg(feature = "aws")]
//! Shared state on S3, against a real moto server on 127.0.0.1: the state
//! and object layout in the bucket, `--backend-config`, the lock object
//! (two applies at once, `--lock-timeout`, `force-unlock`), and saved plans.
//!
//! Needs `moto_server` (`pip install 'moto[server]'`, done by
//! scripts/install-test-deps.sh). Each test starts its own server on a free
//! port and stops it when done.

mod util;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::moto::{Moto, BUCKET};
use util::Project;

const ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent/imgform-test"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/imgform-test"),
];

/// Two images: `golden.null.slow` sleeps for `SLOW` seconds in a provisioner,
/// `golden.null.fast` does not.
fn images(slow_seconds: u32) -> String {
    format!(
        r#"
variable "greeting" {{
  type    = string
  default = "hello"
}}

source "null" "slow" {{
  communicator = "none"
}}

source "null" "fast" {{
  communicator = "none"
}}

build {{
  name    = "golden"
  sources = ["source.null.slow"]
  provisioner "shell-local" {{
    inline = ["sleep {slow_seconds}", "echo slow >> log.txt"]
  }}
}}

build {{
  name    = "golden"
  sources = ["source.null.fast"]
  provisioner "shell-local" {{
    inline = ["echo \"fast ${{var.greeting}}\" >> log.txt"]
  }}
}}
"#
    )
}

fn backend_block(moto: &Moto, prefix: &str) -> String {
    format!(
        "backend \"s3\" {{\n  bucket     = \"{BUCKET}\"\n  key_prefix = \"{prefix}\"\n  region     = \"us-east-1\"\n  endpoint   = \"{}\"\n}}\n",
        moto.endpoint()
    )
}

fn project_with_block(moto: &Moto, prefix: &str, slow_seconds: u32) -> Project {
    let p = Project::new();
    p.file("images.pkr.hcl", &images(slow_seconds));
    p.file("backend.pkr.hcl", &backend_block(moto, prefix));
    p
}

fn run(p: &Project, args: &[&str]) -> util::Run {
    p.run_env(args, ENV)
}

/// Starts imgform in the background (for the lock races).
fn spawn(p: &Project, args: &[&str]) -> Child {
    let mut cmd = Command::new(util::bin());
    cmd.current_dir(p.path())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in ENV {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start imgform")
}

fn finish(child: Child) -> util::Run {
    child.wait_with_output().expect("wait for imgform").into()
}

/// Waits until the lock object exists and returns it.
fn wait_for_lock(moto: &Moto, key: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        if let Some(bytes) = moto.get(key) {
            return serde_json::from_slice(&bytes).expect("lock object is JSON");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no lock object {key} appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn images_in(state: &serde_json::Value) -> Vec<String> {
    state["images"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn apply_with_an_s3_block_keeps_state_and_objects_in_the_bucket() {
    let moto = Moto::start();
    let p = project_with_block(&moto, "team/images", 0);
    run(&p, &["apply", "--auto-approve"]).success();

    assert!(
        !p.path().join("state").exists(),
        "no local state is written"
    );
    let keys = moto.keys();
    assert!(
        keys.contains(&"team/images/local.json".to_owned()),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.ends_with(".lock")),
        "lock left behind: {keys:?}"
    );
    assert!(
        keys.iter().all(|k| k.starts_with("team/images/")),
        "{keys:?}"
    );

    let state = moto.json("team/images/local.json");
    assert_eq!(state["format_version"], 1);
    assert_eq!(state["target"], "local");
    assert_eq!(images_in(&state), ["golden.null.fast", "golden.null.slow"]);
    let serial = state["serial"].as_u64().unwrap();
    assert!(serial >= 1);
    if serial > 1 {
        let backup = moto.json("team/images/local.json.bak");
        assert_eq!(backup["serial"].as_u64(), Some(serial - 1));
        assert_eq!(backup["lineage"], state["lineage"]);
    }
    // The manifest of every image is in the object store, under its hash.
    for (addr, record) in state["images"].as_object().unwrap() {
        let hex = record["content_address"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let key = format!("team/images/objects/{}/{}", &hex[..2], &hex[2..]);
        let bytes = moto
            .get(&key)
            .unwrap_or_else(|| panic!("{addr}: {key} missing"));
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        assert_eq!(digest, hex, "{addr}: object re-hashes to its name");
    }

    // The next plan reads the same state: nothing to do, nothing written.
    let plan = run(&p, &["plan", "--detailed-exitcode"]);
    plan.success();
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);
    assert_eq!(
        moto.json("team/images/local.json")["serial"].as_u64(),
        Some(serial)
    );

    // Commands that do not evaluate the definitions find the block too.
    let list = run(&p, &["state", "list"]);
    list.success();
    assert!(list.stdout.contains("golden.null.slow"), "{}", list.stdout);
    let show = run(&p, &["show", "--json"]);
    show.success();
    assert_eq!(show.json()["states"][0]["serial"].as_u64(), Some(serial));
    run(&p, &["state", "show", "golden.null.fast"]).success();
    run(&p, &["drift"]).success();
}

#[test]
fn backend_config_flags_configure_s3_without_a_block() {
    let moto = Moto::start();
    let p = Project::new();
    p.file("images.pkr.hcl", &images(0));
    let endpoint = format!("endpoint={}", moto.endpoint());
    let flags = [
        "--backend-config",
        "bucket=imgform-state",
        "--backend-config",
        &endpoint,
        "--backend-config",
        "key_prefix=/from-flags/",
    ];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(flags.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let apply = with(&["apply", "--auto-approve"]);
    run(&p, &apply.iter().map(String::as_str).collect::<Vec<_>>()).success();
    assert!(!p.path().join("state").exists());
    assert_eq!(
        images_in(&moto.json("from-flags/local.json")),
        ["golden.null.fast", "golden.null.slow"]
    );
    let plan = with(&["plan", "--detailed-exitcode"]);
    run(&p, &plan.iter().map(String::as_str).collect::<Vec<_>>()).success();
    let list = with(&["state", "list"]);
    let listed = run(&p, &list.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        listed.stdout.contains("golden.null.fast"),
        "{}",
        listed.stdout
    );

    // Without the flags the (empty) local state is used: everything to build.
    run(&p, &["plan", "--detailed-exitcode"]).code(2);

    // A flag overrides the block's setting.
    p.file("backend.pkr.hcl", &backend_block(&moto, "elsewhere"));
    run(&p, &["plan", "--detailed-exitcode"]).code(2);
    run(
        &p,
        &[
            "plan",
            "--detailed-exitcode",
            "--backend-config",
            "key_prefix=from-flags",
        ],
    )
    .success();

    let bad = run(&p, &["plan", "--backend-config", "bukket=x"]);
    bad.code(1);
    assert!(
        bad.stderr.contains("did you mean `bucket`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn two_applies_at_once_one_fails_at_once_naming_the_holder_and_nothing_is_lost() {
    let moto = Moto::start();
    let p = project_with_block(&moto, "imgform", 3);
    let first = spawn(
        &p,
        &["apply", "--auto-approve", "--target", "golden.null.slow"],
    );
    let lock = wait_for_lock(&moto, "imgform/.lock");
    assert_eq!(lock["operation"], "apply");

    let started = Instant::now();
    let second = run(
        &p,
        &["apply", "--auto-approve", "--target", "golden.null.fast"],
    );
    second.code(1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the second apply must fail at once, took {:?}",
        started.elapsed()
    );
    for part in [
        "state is locked",
        lock["who"].as_str().unwrap(),
        lock["id"].as_str().unwrap(),
        "force-unlock",
    ] {
        assert!(second.stderr.contains(part), "{part}: {}", second.stderr);
    }

    finish(first).success();
    assert!(moto.get("imgform/.lock").is_none(), "the lock is released");
    let after_first = moto.json("imgform/local.json");
    assert_eq!(images_in(&after_first), ["golden.null.slow"]);

    // The second run, again: it builds on the first one's state.
    run(
        &p,
        &["apply", "--auto-approve", "--target", "golden.null.fast"],
    )
    .success();
    let state = moto.json("imgform/local.json");
    assert_eq!(images_in(&state), ["golden.null.fast", "golden.null.slow"]);
    assert_eq!(state["lineage"], after_first["lineage"]);
    let serial = state["serial"].as_u64().unwrap();
    assert!(serial > after_first["serial"].as_u64().unwrap());
    let backup = moto.json("imgform/local.json.bak");
    assert_eq!(backup["serial"].as_u64(), Some(serial - 1));
    assert_eq!(backup["lineage"], state["lineage"]);
    run(&p, &["plan", "--detailed-exitcode"]).success();
}

#[test]
fn lock_timeout_waits_for_the_holder_and_then_succeeds() {
    let moto = Moto::start();
    let p = project_with_block(&moto, "imgform", 3);
    let first = spawn(
        &p,
        &["apply", "--auto-approve", "--target", "golden.null.slow"],
    );
    let lock = wait_for_lock(&moto, "imgform/.lock");

    let started = Instant::now();
    let second = run(
        &p,
        &[
            "apply",
            "--auto-approve",
            "--lock-timeout",
            "20s",
            "--target",
            "golden.null.fast",
        ],
    );
    second.success();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the second apply should have waited for {}",
        lock["id"]
    );
    finish(first).success();

    let state = moto.json("imgform/local.json");
    assert_eq!(images_in(&state), ["golden.null.fast", "golden.null.slow"]);
    assert!(moto.get("imgform/.lock").is_none());
    run(&p, &["plan", "--detailed-exitcode"]).success();
}

#[test]
fn force_unlock_removes_a_stale_lock_object() {
    let moto = Moto::start();
    let p = project_with_block(&moto, "imgform", 0);
    let stale = serde_json::json!({
        "id": "6f1c2d1e-0000-4000-8000-00000000dead",
        "operation": "apply",
        "who": "ci@gone-runner",
        "created": "2026-01-01T00:00:00Z",
        "version": "0.1.0",
    });
    moto.put("imgform/.lock", stale.to_string().as_bytes());

    let locked = run(&p, &["apply", "--auto-approve"]);
    locked.code(1);
    assert!(
        locked.stderr.contains("ci@gone-runner"),
        "{}",
        locked.stderr
    );
    assert!(
        locked
            .stderr
            .contains("imgform force-unlock 6f1c2d1e-0000-4000-8000-00000000dead"),
        "{}",
        locked.stderr
    );

    let wrong = run(&p, &["force-unlock", "not-the-id"]);
    wrong.code(1);
    assert!(wrong.stderr.contains("ci@gone-runner"), "{}", wrong.stderr);
    assert!(moto.get("imgform/.lock").is_some());

    run(
        &p,
        &["force-unlock", "6f1c2d1e-0000-4000-8000-00000000dead"],
    )
    .success();
    assert!(moto.get("imgform/.lock").is_none());
    let again = run(
        &p,
        &["force-unlock", "6f1c2d1e-0000-4000-8000-00000000dead"],
    );
    again.code(1);
    assert!(again.stderr.contains("not locked"), "{}", again.stderr);

    run(&p, &["apply", "--auto-approve"]).success();
}

/// The name `force-unlock` takes for a lock that cannot be read (as the
/// local backend names it): `unreadable-` + 12 hex of its bytes' sha256.
fn unreadable_id(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "unreadable-{}",
        &hex::encode(sha2::Sha256::digest(bytes))[..12]
    )
}

#[test]
fn force_unlock_removes_an_unreadable_lock_object_by_its_digest() {
    let moto = Moto::start();
    let p = project_with_block(&moto, "imgform", 0);
    for bytes in [&b""[..], &b"{\"id\": \"6f1c2d1e-cut-sh"[..]] {
        moto.put("imgform/.lock", bytes);
        let id = unreadable_id(bytes);

        // A run is refused, and told the name to force-unlock it by.
        let locked = run(&p, &["plan"]);
        locked.code(1);
        locked.stderr_has(&format!("imgform force-unlock {id}"));
        assert!(moto.get("imgform/.lock").is_some());

        // Any other name is refused: the lock stays.
        let wrong = run(&p, &["force-unlock", "unreadable-000000000000"]);
        wrong.code(1);
        wrong.stderr_has(&format!("force-unlock {id}"));
        assert!(moto.get("imgform/.lock").is_some());

        run(&p, &["force-unlock", &id]).success();
        assert!(moto.get("imgform/.lock").is_none(), "{bytes:?}");
        run(&p, &["force-unlock", &id])
            .code(1)
            .stderr_has("not locked");
    }
    run(&p, &["apply", "--auto-approve"]).success();
    assert!(moto.get("imgform/.lock").is_none());
}

#[test]
fn sigterm_while_holding_the_s3_lock_releases_it_and_leaves_the_state() {
    let moto = Moto::start();
    let p = project_with_block(&moto, "imgform", 0);
    run(&p, &["apply", "--auto-approve"]).success();
    let state = moto.get("imgform/local.json").expect("a state object");

    // `plan` stops right after taking the lock (a fault point that sleeps,
    // standing for a slow refresh); SIGTERM then ends it.
    let mut cmd = Command::new(util::bin());
    cmd.current_dir(p.path())
        .args(["plan"])
        .env("NO_COLOR", "1")
        .env("IMGFORM_FAULT", "pause-after-lock")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in ENV {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start imgform");
    let lock = wait_for_lock(&moto, "imgform/.lock");
    assert_eq!(lock["operation"], "plan");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = finish(child);
    out.code(143);
    out.stderr_has("Interrupted (SIGTERM)");
    assert!(moto.get("imgform/.lock").is_none(), "{}", out.stderr);
    assert_eq!(moto.get("imgform/local.json"), Some(state));
    run(&p, &["plan", "--detailed-exitcode"]).success();
}

#[test]
fn saved_plans_are_refused_once_the_state_on_s3_moved_on() {
    let moto = Moto::start();
    let p = project_with_block(&moto, "imgform", 0);
    run(&p, &["plan", "--out", "plan.bin"]).success();
    run(&p, &["apply", "plan.bin"]).success();
    let serial = moto.json("imgform/local.json")["serial"].as_u64().unwrap();

    let twice = run(&p, &["apply", "plan.bin"]);
    twice.code(1);
    assert!(
        twice.stderr.contains(&format!(
            "stale plan: state serial {serial}, plan was made at 0"
        )),
        "{}",
        twice.stderr
    );

    run(&p, &["plan", "--out", "later.bin", "--var", "greeting=hi"]).success();
    run(&p, &["apply", "--auto-approve", "--var", "greeting=hey"]).success();
    let moved = moto.json("imgform/local.json")["serial"].as_u64().unwrap();
    assert!(moved > serial);
    let stale = run(&p, &["apply", "later.bin"]);
    stale.code(1);
    assert!(
        stale.stderr.contains(&format!(
            "stale plan: state serial {moved}, plan was made at {serial}"
        )),
        "{}",
        stale.stderr
    );
    assert_eq!(
        moto.json("imgform/local.json")["serial"].as_u64(),
        Some(moved)
    );
}

#[test]
fn backend_block_errors_are_placed() {
    let moto = Moto::start();
    let p = Project::new();
    p.file("images.pkr.hcl", &images(0));
    p.file(
        "backend.pkr.hcl",
        "backend \"s3\" {\n  bucket = var.bucket\n  endpoint = \"x\"\n  regoin = \"us-east-1\"\n}\n",
    );
    let validate = run(&p, &["validate"]);
    validate.code(1);
    for part in [
        "backend.pkr.hcl:2:3",
        "literal string",
        "backend.pkr.hcl:4:3",
        "did you mean `region`",
    ] {
        assert!(
            validate.stderr.contains(part),
            "{part}: {}",
            validate.stderr
        );
    }
    // Commands that only look for the block report the same places.
    let list = run(&p, &["state", "list"]);
    list.code(1);
    assert!(
        list.stderr.contains("backend.pkr.hcl:2:3"),
        "{}",
        list.stderr
    );

    p.file(
        "backend.pkr.hcl",
        "backend \"s3\" {\n  key_prefix = \"x\"\n}\n",
    );
    let no_bucket = run(&p, &["plan"]);
    no_bucket.code(1);
    assert!(
        no_bucket.stderr.contains("needs a bucket"),
        "{}",
        no_bucket.stderr
    );

    // An unreachable bucket is a clear error, not a local fallback.
    p.file(
        "backend.pkr.hcl",
        &backend_block(&moto, "x").replace(BUCKET, "no-such-bucket"),
    );
    let missing = run(&p, &["plan"]);
    missing.code(1);
    assert!(
        missing.stderr.contains("s3://no-such-bucket/"),
        "{}",
        missing.stderr
    );
}

#[test]
fn the_backend_works_inside_and_outside_an_async_runtime() {
    use imgform::state::{LockInfo, S3Backend, S3Settings, StateBackend, StateError};

    let moto = Moto::start();
    for (k, v) in ENV {
        std::env::set_var(k, v);
    }
    let settings = S3Settings {
        bucket: BUCKET.to_owned(),
        key_prefix: "lib".to_owned(),
        region: Some("us-east-1".to_owned()),
        endpoint: Some(moto.endpoint()),
        profile: None,
    };
    let backend = S3Backend::new(settings.clone()).unwrap();
    let mut state = backend.load("aws/us-east-1").unwrap();
    assert!(backend.save(&mut state).unwrap());
    assert!(
        !backend.save(&mut state).unwrap(),
        "unchanged: nothing written"
    );
    assert_eq!(state.serial, 1);
    let hex = backend.put_object(b"manifest\n").unwrap();
    assert_eq!(
        backend.get_object(&hex).unwrap().as_deref(),
        Some(&b"manifest\n"[..])
    );
    assert!(moto.get("lib/aws-us-east-1.json").is_some());

    // From inside runtimes, as imgform's commands call it.
    let in_runtime = |runtime: tokio::runtime::Runtime, image: &str| {
        runtime.block_on(async {
            let backend = S3Backend::new(settings.clone()).unwrap();
            let info = LockInfo::new("apply");
            backend.lock(&info, Duration::ZERO).unwrap();
            let err = backend.lock(&LockInfo::new("plan"), Duration::ZERO).unwrap_err();
            assert!(matches!(&err, StateError::Locked { holder } if holder.id == info.id), "{err:?}");

            // A state loaded before another run saved is refused.
            let mut stale = backend.load("aws/us-east-1").unwrap();
            let mut winner = backend.load("aws/us-east-1").unwrap();
            let record: imgform::state::ImageRecord = serde_json::from_value(serde_json::json!({
                "content_address": format!("sha256:{}", "a".repeat(64)),
                "builder": "null",
                "artifact": {"id": "null:aaaaaaaaaaaa"},
                "built_at": "2026-01-01T00:00:00Z"
            }))
            .unwrap();
            winner.images.insert(format!("{image}.null.winner").parse().unwrap(), record.clone());
            let before = winner.serial;
            assert!(backend.save(&mut winner).unwrap());
            assert_eq!(winner.serial, before + 1);
            stale.images.insert(format!("{image}.null.loser").parse().unwrap(), record);
            let err = backend.save(&mut stale).unwrap_err();
            assert!(
                matches!(err, StateError::SerialConflict { stored, given, .. } if stored == before + 1 && given == before),
                "{err:?}"
            );
            assert_eq!(stale.serial, before);

            backend.unlock(&info.id).unwrap();
            assert!(backend.lock_holder().unwrap().is_none());
            // Dropped inside the runtime: must not panic.
            drop(backend);
        })
    };
    in_runtime(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        "current",
    );
    in_runtime(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap(),
        "multi",
    );
}

/// S3 writes are batched (state/README.md, "Journal"): a run killed after
/// its sixth image keeps on S3 every image finished more than the 2 s
/// write delay before the kill, the state there is whole, and the next run
/// builds only what is missing.
#[test]
fn a_killed_apply_loses_at_most_the_last_write_delay_on_s3() {
    let moto = Moto::start();
    let p = Project::new();
    let mut hcl = backend_block(&moto, "batched");
    for i in 0..6 {
        hcl.push_str(&format!(
            "source \"null\" \"img{i}\" {{\n  communicator = \"none\"\n}}\n\
             build {{\n  sources = [\"source.null.img{i}\"]\n  \
             provisioner \"shell-local\" {{\n    inline = [\"sleep 1\", \"echo img{i} >> ran.log\"]\n  }}\n}}\n"
        ));
    }
    p.file("images.pkr.hcl", &hcl);
    let mut env = ENV.to_vec();
    env.push(("IMGFORM_FAULT", "kill-after-record:null.img5"));
    let killed = p.run_env(&["apply", "--auto-approve", "--parallelism", "1"], &env);
    assert_ne!(killed.code, 0, "the process was killed");
    let state = moto.json("batched/local.json");
    let kept = images_in(&state);
    // img0 and img1 finished at least 4 s (four 1 s builds) before the kill.
    assert!(
        kept.contains(&"null.img0".to_owned()) && kept.contains(&"null.img1".to_owned()),
        "{kept:?}"
    );
    assert!(!kept.contains(&"null.img5".to_owned()), "{kept:?}");

    let lock = moto.json("batched/.lock");
    run(&p, &["force-unlock", lock["id"].as_str().unwrap()]).success();
    run(&p, &["apply", "--auto-approve"]).success();
    let state = moto.json("batched/local.json");
    assert_eq!(images_in(&state).len(), 6);
    let ran = p.read("ran.log");
    for addr in &kept {
        let name = addr.trim_start_matches("null.");
        assert_eq!(
            ran.lines().filter(|l| *l == name).count(),
            1,
            "{addr} was on S3 and must not be built again:\n{ran}"
        );
    }
    run(&p, &["plan", "--detailed-exitcode"]).success();
}
