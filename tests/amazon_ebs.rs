//! The `amazon-ebs` builder against moto's EC2 API on 127.0.0.1, with a
//! real OpenSSH sshd standing in for the instance (`ssh_host`/`ssh_port`
//! override, as Packer allows). The sshd accepts exactly the key pairs of
//! running instances in moto, as EC2 installs them.

mod util;

use std::time::{Duration, Instant};

use util::moto::Moto;
use util::sshd::{Sshd, USER};
use util::Project;

struct Cloud {
    moto: Moto,
    sshd: Sshd,
}

impl Cloud {
    fn start() -> Cloud {
        let moto = Moto::start();
        let sshd = Sshd::start_for_moto(&moto.endpoint());
        Cloud { moto, sshd }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.moto.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    fn run(&self, p: &Project, args: &[&str]) -> util::Run {
        p.run_isolated(args, &self.env())
    }

    /// The source block of an amazon-ebs image that reaches the test sshd.
    fn source(&self, name: &str, extra: &str) -> String {
        format!(
            r#"
source "amazon-ebs" "{name}" {{
  region        = "us-east-1"
  instance_type = "t3.micro"
  ami_name      = "{name}-${{formatdate("YYYYMMDDhhmmss", timestamp())}}-${{uuidv4()}}"
  ssh_username  = "{USER}"
  ssh_host      = "127.0.0.1"
  ssh_port      = {port}
  ssh_timeout   = "30s"
  tags = {{
    Team = "platform"
    Base = "{{{{ .SourceAMIName }}}} in {{{{ .BuildRegion }}}}"
  }}
  {extra}
}}
"#,
            port = self.sshd.port
        )
    }

    /// The `web` image: its source (with `extra` attributes) and a build
    /// whose body (provisioners, tests) is `body`.
    fn web(&self, extra: &str, body: &str) -> String {
        format!(
            "{}\nbuild {{\n  sources = [\"source.amazon-ebs.web\"]\n  {body}\n}}\n",
            self.source("web", extra)
        )
    }

    /// Nothing temporary is left in moto: no running or stopped instance,
    /// no key pair, no security group but the default ones.
    #[track_caller]
    fn assert_clean(&self) {
        assert_eq!(
            self.moto.instances("running"),
            Vec::<String>::new(),
            "running instances left"
        );
        assert_eq!(
            self.moto.instances("stopped"),
            Vec::<String>::new(),
            "stopped instances left"
        );
        assert_eq!(
            self.moto.key_pairs(),
            Vec::<String>::new(),
            "key pairs left"
        );
        assert_eq!(
            self.moto.security_groups(),
            Vec::<String>::new(),
            "security groups left"
        );
    }
}

/// A moto with one base AMI, an sshd, and a project with the `web` image
/// whose build body is `body`; `None` (the test is skipped) when not root.
fn web_project(body: &str) -> Option<(Cloud, Project)> {
    if !util::is_root() {
        eprintln!("skipped: sshd and a test user need root");
        return None;
    }
    let cloud = Cloud::start();
    cloud.moto.register_image("base-1");
    let p = Project::new();
    p.file("images.pkr.hcl", &cloud.web(FILTER, body));
    Some((cloud, p))
}

const FILTER: &str = r#"source_ami_filter {
    filters = {
      name  = "base-*"
      state = "available"
    }
    owners      = ["self"]
    most_recent = true
  }"#;

fn state(p: &Project) -> serde_json::Value {
    serde_json::from_str(&p.read("state/aws-us-east-1.json")).unwrap_or_else(|e| {
        let files: Vec<_> = std::fs::read_dir(p.path().join("state"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        panic!("no aws state ({e}); state/ has {files:?}")
    })
}

fn recorded_ami(p: &Project, addr: &str) -> String {
    state(p)["images"][addr]["artifact"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{addr} not recorded"))
        .to_owned()
}

#[test]
fn builds_an_ami_over_real_ssh_tags_it_and_cleans_up() {
    if !util::is_root() {
        eprintln!("skipped: sshd and a test user need root");
        return;
    }
    let cloud = Cloud::start();
    let base = cloud.moto.register_image("base-2026.1");
    let scratch = Sshd::scratch("ebs-build");
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        &cloud.web(
            &format!("{FILTER}\n  ami_regions = [\"us-west-2\"]\n  ami_users = [\"111122223333\"]"),
            &format!("provisioner \"shell\" {{\n      inline = [\"echo provisioned > {}/marker\"]\n    }}", scratch.display()),
        ),
    );
    let plan = cloud.run(&p, &["plan", "--json"]);
    plan.success();
    let change = &plan.json()["changes"][0];
    assert_eq!(change["action"], "build");

    let started = Instant::now();
    let out = cloud.run(&p, &["apply", "--auto-approve"]);
    out.success();
    eprintln!(
        "one amazon-ebs build against moto: {:.2}s",
        started.elapsed().as_secs_f64()
    );

    // The provisioner ran over SSH on the "instance".
    assert_eq!(
        std::fs::read_to_string(scratch.join("marker")).unwrap(),
        "provisioned\n"
    );
    out.stderr_has("created temporary key pair");
    out.stderr_has("connected over SSH");

    // The AMI exists, is tagged, and is what the state records.
    let ami = recorded_ami(&p, "amazon-ebs.web");
    let tags = cloud.moto.tags(&ami);
    assert_eq!(tags["imgform:address"], "amazon-ebs.web");
    assert!(tags["imgform:content"].starts_with("sha256:"));
    assert_eq!(
        tags["imgform:content"],
        state(&p)["images"]["amazon-ebs.web"]["content_address"]
    );
    assert_eq!(tags["Team"], "platform");
    // Packer's build template data in tag values.
    assert_eq!(tags["Base"], "base-2026.1 in us-east-1");
    // Shared with the account in ami_users.
    let permissions = cloud.moto.ec2(&[
        ("Action", "DescribeImageAttribute"),
        ("ImageId", &ami),
        ("Attribute", "launchPermission"),
    ]);
    assert!(permissions.contains("111122223333"), "{permissions}");
    // The copy in us-west-2 is recorded and tagged too.
    let copy = state(&p)["images"]["amazon-ebs.web"]["artifact"]["attributes"]["regions"]
        ["us-west-2"]
        .as_str()
        .expect("a copy in us-west-2")
        .to_owned();
    let west = cloud.moto.ec2_in(
        "us-west-2",
        &[("Action", "DescribeImages"), ("ImageId.1", &copy)],
    );
    assert!(west.contains("<value>amazon-ebs.web</value>"), "{west}");
    // The base the filter resolved to is recorded.
    assert_eq!(
        state(&p)["images"]["amazon-ebs.web"]["base"]["id"],
        base.as_str()
    );
    cloud.assert_clean();

    // Nothing changed: a no-op, with the filter resolved again.
    let plan = cloud.run(&p, &["plan", "--detailed-exitcode"]);
    plan.code(0);
}

#[test]
fn a_newer_base_ami_makes_the_image_stale() {
    if !util::is_root() {
        return;
    }
    let cloud = Cloud::start();
    let old_base = cloud.moto.register_image("base-2026.1");
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        &cloud.web(FILTER, "provisioner \"shell\" { inline = [\"true\"] }"),
    );
    cloud.run(&p, &["apply", "--auto-approve"]).success();
    cloud.run(&p, &["plan", "--detailed-exitcode"]).code(0);

    // Upstream publishes a newer base (creation dates have 1 s resolution).
    std::thread::sleep(Duration::from_millis(1100));
    let new_base = cloud.moto.register_image("base-2026.2");

    let plan = cloud.run(&p, &["plan", "--json", "--detailed-exitcode"]);
    plan.code(2);
    let change = &plan.json()["changes"][0];
    assert_eq!(change["action"], "rebuild");
    assert_eq!(
        change["reasons"][0],
        serde_json::json!({"kind": "base_updated", "old_id": old_base, "new_id": new_base})
    );
    let human = cloud.run(&p, &["plan"]);
    assert!(
        human.stdout.contains(&format!(
            "base image updated upstream: {old_base} → {new_base}"
        )),
        "{}",
        human.stdout
    );

    // --refresh=false reuses the recorded resolution: no change.
    cloud
        .run(&p, &["plan", "--refresh=false", "--detailed-exitcode"])
        .code(0);

    // drift says so too.
    let drift = cloud.run(&p, &["drift", "--json"]);
    drift.code(2);
    let entry = &drift.json()["images"][0];
    assert_eq!(entry["status"], "stale");
    assert_eq!(entry["reasons"][0]["kind"], "base_updated");
    assert_eq!(entry["reasons"][0]["new_id"], new_base.as_str());
}

#[test]
fn a_failed_provisioner_leaves_nothing_behind() {
    let Some((cloud, p)) =
        web_project("provisioner \"shell\" { inline = [\"echo broken >&2\", \"exit 7\"] }")
    else {
        return;
    };
    let out = cloud.run(&p, &["apply", "--auto-approve"]);
    out.code(1);
    out.stderr_has("exited with status 7");
    out.stderr_has("deleted temporary key pair");
    cloud.assert_clean();
    // No AMI was made, nothing recorded.
    assert!(cloud
        .moto
        .images()
        .iter()
        .all(|(_, name)| name.starts_with("base-")));
    assert!(!p
        .read("state/aws-us-east-1.json")
        .contains("amazon-ebs.web"));

    // --on-error=abort keeps the temporaries and says which.
    let out = cloud.run(&p, &["apply", "--auto-approve", "--on-error=abort"]);
    out.code(1);
    out.stderr_has("--on-error=abort: kept instance i-");
    assert_eq!(cloud.moto.instances("running").len(), 1);
    assert_eq!(cloud.moto.key_pairs().len(), 1);
}

#[test]
fn ctrl_c_during_provisioning_cleans_up() {
    let Some((cloud, p)) =
        web_project("provisioner \"shell\" { inline = [\"echo started-sleeping\", \"sleep 60\"] }")
    else {
        return;
    };
    let mut cmd = std::process::Command::new(util::bin());
    cmd.current_dir(p.path())
        .args(["apply", "--auto-approve"])
        .env("NO_COLOR", "1")
        .env("HOME", p.home())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(p.path().join("apply.log")).unwrap());
    for (k, v) in cloud.env() {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while !p.read("apply.log").contains("started-sleeping") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "provisioner did not start:\n{}",
            p.read("apply.log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cloud.moto.instances("running").len(), 1);
    unsafe_kill(child.id(), "INT");
    let status = child.wait().unwrap();
    let log = p.read("apply.log");
    // 128 + SIGINT: the builds were cancelled and cleaned up.
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("terminating instance"), "{log}");
    cloud.assert_clean();
    assert!(!p
        .read("state/aws-us-east-1.json")
        .contains("amazon-ebs.web"));
}

fn unsafe_kill(pid: u32, signal: &str) {
    assert!(std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

#[test]
fn keep_previous_deregisters_older_amis() {
    if !util::is_root() {
        return;
    }
    let cloud = Cloud::start();
    cloud.moto.register_image("base-1");
    let p = Project::new();
    let defs = |n: u32| {
        cloud.web(
            &format!("{FILTER}\n  keep_previous = 1"),
            &format!("provisioner \"shell\" {{ inline = [\"echo version {n}\"] }}"),
        )
    };
    let mut amis = Vec::new();
    for n in 1..=3 {
        p.file("images.pkr.hcl", &defs(n));
        cloud.run(&p, &["apply", "--auto-approve"]).success();
        amis.push(recorded_ami(&p, "amazon-ebs.web"));
    }
    let existing: Vec<String> = cloud.moto.images().into_iter().map(|(id, _)| id).collect();
    assert!(
        !existing.contains(&amis[0]),
        "the oldest AMI is deregistered"
    );
    assert!(existing.contains(&amis[1]), "one previous AMI is kept");
    assert!(existing.contains(&amis[2]));
    assert_eq!(
        state(&p)["images"]["amazon-ebs.web"]["previous"][0]["id"],
        amis[1].as_str()
    );
}

/// Packer's `force_deregister` removes an AMI of the same name before the
/// build; its snapshots go too only with `force_delete_snapshot`. The
/// shell provisioner's `pause_after` waits after its scripts.
#[test]
fn force_deregister_keeps_the_snapshots_unless_force_delete_snapshot() {
    if !util::is_root() {
        return;
    }
    let cloud = Cloud::start();
    cloud.moto.register_image("base-1");
    let p = Project::new();
    let fixed_name = regex::Regex::new(r#"ami_name\s*=\s*".*""#).unwrap();
    let defs = |n: u32, delete_snapshots: bool| {
        let source = cloud.source(
            "web",
            &format!(
                "{FILTER}\n  force_deregister = true\n  force_delete_snapshot = {delete_snapshots}"
            ),
        );
        let source = fixed_name.replace(&source, r#"ami_name = "web-fixed""#);
        format!(
            "{source}\nbuild {{\n  sources = [\"source.amazon-ebs.web\"]\n  provisioner \"shell\" {{\n    inline      = [\"echo version {n}\"]\n    pause_after = \"1s\"\n  }}\n}}\n"
        )
    };
    p.file("images.pkr.hcl", &defs(1, false));
    let first = cloud.run(&p, &["apply", "--auto-approve"]);
    first.success();
    first.stderr_has("shell: pausing 1s after the scripts (pause_after)");
    let ami1 = recorded_ami(&p, "amazon-ebs.web");
    let snapshots1 = cloud.moto.image_snapshots(&ami1);
    assert!(!snapshots1.is_empty(), "moto gave {ami1} no snapshot");

    p.file("images.pkr.hcl", &defs(2, false));
    let second = cloud.run(&p, &["apply", "--auto-approve"]);
    second.success();
    second.stderr_has(&format!(
        "force_deregister: deregistering {ami1} (web-fixed)\n"
    ));
    let ami2 = recorded_ami(&p, "amazon-ebs.web");
    let images: Vec<String> = cloud.moto.images().into_iter().map(|(id, _)| id).collect();
    assert!(
        !images.contains(&ami1) && images.contains(&ami2),
        "{images:?}"
    );
    let snapshots = cloud.moto.snapshots();
    assert!(
        snapshots1.iter().all(|s| snapshots.contains(s)),
        "force_deregister alone keeps {snapshots1:?}; left: {snapshots:?}"
    );

    let snapshots2 = cloud.moto.image_snapshots(&ami2);
    p.file("images.pkr.hcl", &defs(3, true));
    let third = cloud.run(&p, &["apply", "--auto-approve"]);
    third.success();
    third.stderr_has(&format!(
        "force_deregister: deregistering {ami2} (web-fixed) and deleting its snapshots"
    ));
    let snapshots = cloud.moto.snapshots();
    assert!(
        snapshots2.iter().all(|s| !snapshots.contains(s)),
        "force_delete_snapshot deletes {snapshots2:?}; left: {snapshots:?}"
    );
}

#[test]
fn a_chain_of_two_amis_builds_the_child_from_the_parent() {
    if !util::is_root() {
        return;
    }
    let cloud = Cloud::start();
    cloud.moto.register_image("base-1");
    let p = Project::new();
    let defs = |app_line: &str| {
        format!(
            "{}{}\nbuild {{\n  name = \"golden\"\n  sources = [\"source.amazon-ebs.os\"]\n  provisioner \"shell\" {{ inline = [\"echo os\"] }}\n}}\nbuild {{\n  name = \"app\"\n  sources = [\"source.amazon-ebs.app\"]\n  provisioner \"shell\" {{ inline = [\"{app_line}\"] }}\n}}\n",
            cloud.source("os", FILTER),
            cloud.source("app", "source_ami = image.golden.amazon-ebs.os.id"),
        )
    };
    p.file("images.pkr.hcl", &defs("echo app"));
    let out = cloud.run(&p, &["apply", "--auto-approve"]);
    out.success();
    let parent = recorded_ami(&p, "golden.amazon-ebs.os");
    let child = recorded_ami(&p, "app.amazon-ebs.app");
    assert_ne!(parent, child);
    // The child's build instance was launched from the parent's AMI.
    out.stderr_has(&format!("from {parent}; waiting"));
    assert_eq!(
        state(&p)["images"]["app.amazon-ebs.app"]["parents"]["golden.amazon-ebs.os"]["artifact_id"],
        parent.as_str()
    );
    cloud.assert_clean();

    // Only the child changes: the parent is a no-op.
    p.file("images.pkr.hcl", &defs("echo app v2"));
    let plan = cloud.run(&p, &["plan", "--json"]);
    let actions: Vec<(String, String)> = plan.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_owned(),
                c["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("golden.amazon-ebs.os".into(), "no-op".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("app.amazon-ebs.app".into(), "rebuild".into())),
        "{actions:?}"
    );
}

#[test]
fn ansible_over_ssh_and_a_test_phase_on_a_fresh_instance() {
    if !util::is_root() {
        return;
    }
    let cloud = Cloud::start();
    cloud.moto.register_image("base-1");
    let scratch = Sshd::scratch("ebs-ansible");
    let p = Project::new();
    p.file(
        "ansible/site.yml",
        "- hosts: default\n  gather_facts: false\n  roles:\n    - web\n",
    );
    p.file(
        "ansible/roles/web/tasks/main.yml",
        &format!(
            "- name: write the page\n  ansible.builtin.copy:\n    dest: {}/index.html\n    content: \"hello from {{{{ greeting }}}}\\n\"\n",
            scratch.display()
        ),
    );
    p.file("ansible/roles/web/defaults/main.yml", "greeting: ansible\n");
    let defs = |test: &str| {
        cloud.web(FILTER, &format!("provisioner \"ansible\" {{\n      playbook_file = \"ansible/site.yml\"\n    }}\n    test {{\n      provisioner \"shell\" {{ inline = [\"{test}\"] }}\n    }}"))
    };
    p.file(
        "images.pkr.hcl",
        &defs(&format!(
            "grep -q 'hello from ansible' {}/index.html",
            scratch.display()
        )),
    );
    let out = cloud.run(&p, &["apply", "--auto-approve"]);
    out.success();
    assert_eq!(
        std::fs::read_to_string(scratch.join("index.html")).unwrap(),
        "hello from ansible\n"
    );
    // Ansible's output streams into the log with the image address.
    out.stderr_has("amazon-ebs.web: TASK [web : write the page]");
    out.stderr_has("test phase: launching an instance from the new AMI");
    let first = recorded_ami(&p, "amazon-ebs.web");
    cloud.assert_clean();

    // Editing the role rebuilds; a failing test deregisters the new AMI and
    // leaves the state as it was.
    p.file(
        "ansible/roles/web/defaults/main.yml",
        "greeting: a new role\n",
    );
    p.file(
        "images.pkr.hcl",
        &defs(&format!(
            "grep -q 'hello from nobody' {}/index.html",
            scratch.display()
        )),
    );
    let before: Vec<String> = cloud.moto.images().into_iter().map(|(id, _)| id).collect();
    let out = cloud.run(&p, &["apply", "--auto-approve"]);
    out.code(1);
    out.stderr_has("tests failed");
    assert_eq!(recorded_ami(&p, "amazon-ebs.web"), first);
    let after: Vec<String> = cloud.moto.images().into_iter().map(|(id, _)| id).collect();
    assert_eq!(before, after, "the untested AMI is deregistered");
    cloud.assert_clean();
}

#[test]
fn drift_and_recovery_from_tags() {
    if !util::is_root() {
        return;
    }
    let cloud = Cloud::start();
    cloud.moto.register_image("base-1");
    let p = Project::new();
    let defs = |line: &str| {
        cloud.web(
            FILTER,
            &format!("provisioner \"shell\" {{ inline = [\"{line}\"] }}"),
        )
    };
    p.file("images.pkr.hcl", &defs("echo v1"));
    cloud.run(&p, &["apply", "--auto-approve"]).success();
    let v1 = recorded_ami(&p, "amazon-ebs.web");
    let drift = cloud.run(&p, &["drift", "--json"]);
    drift.code(0);
    assert_eq!(drift.json()["images"][0]["status"], "current");

    // imgform dies (SIGKILL) between creating the AMI and recording it.
    p.file("images.pkr.hcl", &defs("echo v2"));
    let mut env = cloud.env();
    env.push(("IMGFORM_FAULT".into(), "kill-after-capture".into()));
    let killed = p.run_isolated(&["apply", "--auto-approve"], &env);
    assert_ne!(killed.code, 0);
    assert_eq!(
        recorded_ami(&p, "amazon-ebs.web"),
        v1,
        "the state never saw v2"
    );
    // The build itself had finished: its temporaries are gone.
    cloud.assert_clean();
    // The killed run left its lock.
    let lock: serde_json::Value = serde_json::from_str(&p.read("state/.lock")).unwrap();
    cloud
        .run(&p, &["force-unlock", lock["id"].as_str().unwrap()])
        .success();

    // drift: the recorded image is stale, the v2 AMI is untracked.
    let drift = cloud.run(&p, &["drift", "--json"]);
    drift.code(2);
    let images = drift.json()["images"].clone();
    let statuses: Vec<(String, String)> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap().to_owned(),
                e["artifact_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&("stale".into(), v1.clone())),
        "{statuses:?}"
    );
    let untracked = statuses
        .iter()
        .find(|(s, _)| s == "untracked")
        .map(|(_, id)| id.clone())
        .unwrap_or_else(|| panic!("no untracked AMI: {statuses:?}"));

    // state recover finds it by its tags and adopts it.
    let listed = cloud.run(&p, &["state", "recover"]);
    listed.success();
    assert!(listed.stdout.contains(&untracked), "{}", listed.stdout);
    cloud
        .run(&p, &["state", "recover", "--auto-approve"])
        .success();
    assert_eq!(recorded_ami(&p, "amazon-ebs.web"), untracked);
    cloud.run(&p, &["plan", "--detailed-exitcode"]).code(0);

    // Deleted out of band: missing in drift, rebuilt by the next plan.
    cloud
        .moto
        .ec2(&[("Action", "DeregisterImage"), ("ImageId", &untracked)]);
    let drift = cloud.run(&p, &["drift", "--json"]);
    drift.code(2);
    assert_eq!(drift.json()["images"][0]["status"], "missing");
    let plan = cloud.run(&p, &["plan", "--json"]);
    let change = &plan.json()["changes"][0];
    assert_eq!(change["action"], "rebuild");
    assert_eq!(change["reasons"][0]["kind"], "artifact_missing");
}

#[test]
fn a_saved_plan_builds_from_the_ami_it_resolved() {
    if !util::is_root() {
        return;
    }
    let cloud = Cloud::start();
    let old_base = cloud.moto.register_image("base-2026.1");
    let p = Project::new();
    // Credentials in the source are secrets: never in a plan, state or log.
    let secret = "imgform-test-secret-key-0123456789";
    p.file(
        "images.pkr.hcl",
        &cloud.web(
            &format!("{FILTER}\n  access_key = \"AKIAIMGFORMTEST\"\n  secret_key = \"{secret}\"\n  associate_public_ip_address = true"),
            "provisioner \"shell\" { inline = [\"true\"] }",
        ),
    );
    cloud.run(&p, &["plan", "--out", "plan.bin"]).success();
    assert!(!p.read("plan.bin").contains(secret));
    // Upstream moves on between review and merge.
    std::thread::sleep(Duration::from_millis(1100));
    let new_base = cloud.moto.register_image("base-2026.2");
    let out = cloud.run(&p, &["apply", "plan.bin"]);
    out.success();
    out.stderr_has(&format!("from {old_base}; waiting"));
    assert_eq!(
        state(&p)["images"]["amazon-ebs.web"]["base"]["id"],
        old_base.as_str()
    );
    assert!(!out.stderr.contains(secret) && !out.stdout.contains(secret));
    for entry in walkdir::WalkDir::new(p.path()) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() && entry.path().extension() != Some("hcl".as_ref()) {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{} holds the secret key",
                entry.path().display()
            );
        }
    }
    // The next plan sees the newer base.
    let plan = cloud.run(&p, &["plan", "--json"]);
    assert_eq!(
        plan.json()["changes"][0]["reasons"][0],
        serde_json::json!({"kind": "base_updated", "old_id": old_base, "new_id": new_base})
    );
}

#[test]
fn settings_imgform_does_not_act_on_are_named_not_silently_ignored() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
source "amazon-ebs" "web" {
  region        = "us-east-1"
  source_ami    = "ami-12345678"
  instance_type = "t3.micro"
  ssh_username  = "admin"
  spot_price    = "auto"
}
build {
  sources = ["source.amazon-ebs.web"]
}
"#,
    );
    let out = p.run(&["validate"]);
    out.success();
    out.stderr_has("amazon-ebs `spot_price` is not acted on by imgform and is ignored");
    out.stderr_has("images.pkr.hcl:7:");

    p.file(
        "images.pkr.hcl",
        &p.read("images.pkr.hcl").replace(
            "spot_price    = \"auto\"",
            "ssh_interface = \"session_manager\"",
        ),
    );
    let out = p.run(&["validate"]);
    out.code(1);
    out.stderr_has("ssh_interface = \"session_manager\" is not supported");
    out.stderr_has("hint:");
}

#[test]
fn subnet_and_security_group_filters_pick_the_build_network() {
    if !util::is_root() {
        return;
    }
    let cloud = Cloud::start();
    cloud.moto.register_image("base-1");
    let m = &cloud.moto;
    let tagged = |kind: &str, key: &str, value: &str| -> Vec<(String, String)> {
        vec![
            ("TagSpecification.1.ResourceType".into(), kind.into()),
            ("TagSpecification.1.Tag.1.Key".into(), key.into()),
            ("TagSpecification.1.Tag.1.Value".into(), value.into()),
        ]
    };
    let call = |params: Vec<(String, String)>| {
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        m.ec2(&pairs)
    };
    let vpc = util::moto::xml_values(
        &call(vec![
            ("Action".into(), "CreateVpc".into()),
            ("CidrBlock".into(), "10.7.0.0/16".into()),
        ]),
        "vpcId",
    )
    .remove(0);
    let subnet = |cidr: &str| {
        let mut p = vec![
            ("Action".into(), "CreateSubnet".into()),
            ("VpcId".into(), vpc.clone()),
            ("CidrBlock".into(), cidr.to_owned()),
        ];
        p.extend(tagged("subnet", "Class", "build"));
        util::moto::xml_values(&call(p), "subnetId").remove(0)
    };
    let small = subnet("10.7.1.0/26");
    let big = subnet("10.7.2.0/24");
    let mut p = vec![
        ("Action".into(), "CreateSecurityGroup".into()),
        ("GroupName".into(), "packer-builders".into()),
        ("GroupDescription".into(), "builders".into()),
        ("VpcId".into(), vpc.clone()),
    ];
    p.extend(tagged("security-group", "Class", "packer"));
    let group = util::moto::xml_values(&call(p), "groupId").remove(0);

    let project = Project::new();
    project.file(
        "images.pkr.hcl",
        &cloud.web(
            &format!(
                "{FILTER}\n  subnet_filter {{\n    filters = {{ \"tag:Class\" = \"build\" }}\n    most_free = true\n  }}\n  security_group_filter {{\n    filters = {{ \"tag:Class\" = \"packer\" }}\n  }}"
            ),
            "provisioner \"shell\" { inline = [\"true\"] }",
        ),
    );
    let out = cloud.run(&project, &["apply", "--auto-approve"]);
    out.success();
    out.stderr_has(&format!("building in subnet {big} of {vpc}"));
    assert!(
        !out.stderr.contains("created temporary security group"),
        "{}",
        out.stderr
    );
    let instances = m.ec2(&[("Action", "DescribeInstances")]);
    assert!(
        instances.contains(&big) && !instances.contains(&small),
        "{instances}"
    );
    assert!(instances.contains(&group), "{instances}");
    // The group was the user's: it is still there.
    assert!(m.security_groups().contains(&"packer-builders".to_owned()));
}

#[test]
fn a_filter_that_matches_nothing_is_a_placed_plan_error() {
    let moto = Moto::start();
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        &format!(
            "source \"amazon-ebs\" \"web\" {{\n  region = \"us-east-1\"\n  ssh_username = \"admin\"\n  {FILTER}\n}}\nbuild {{\n  sources = [\"source.amazon-ebs.web\"]\n}}\n"
        ),
    );
    let endpoint = moto.endpoint();
    let out = p.run_env(
        &["plan"],
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
    out.code(1);
    out.stderr_has("cannot resolve the base image: no AMI matches source_ami_filter");
    // Placed at the filter block, with a hint; nothing written.
    out.stderr_has("images.pkr.hcl:4:3");
    out.stderr_has("hint:");
    assert!(!p.path().join("state").exists());
}
