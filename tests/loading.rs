//! Loading the Packer HCL2 dialect as Packer documents it.

mod util;

use std::path::Path;

use util::Project;

fn fixture(name: &str) -> Project {
    let p = Project::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    util::copy_tree(&src, p.path());
    p
}

#[test]
fn packer_docs_multi_cloud_template_loads_unchanged() {
    let p = fixture("packer-docs");
    let run = p.run(&["validate"]);
    run.success();
    assert!(
        run.stdout.contains("learn-packer.amazon-ebs.ubuntu")
            && run.stdout.contains("learn-packer.openstack.ubuntu"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("required_plugins is ignored"),
        "{}",
        run.stderr
    );
    // Planning resolves source_ami_filter (Canonical's jammy images) against
    // EC2: moto here, with upstream AMIs like Canonical's.
    let moto = util::moto::Moto::start_with_amis(
        &[
            (
                "ami-0a1b2c3d4e5f60001",
                "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240101",
                "099720109477",
            ),
            (
                "ami-0a1b2c3d4e5f60002",
                "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240301",
                "099720109477",
            ),
            (
                "ami-0a1b2c3d4e5f60003",
                "ubuntu/images/hvm-ssd/ubuntu-noble-24.04-amd64-server-20240601",
                "099720109477",
            ),
        ],
        p.path(),
    );
    let env = moto.aws_env();
    let plan = p.run_isolated(&["plan", "--json"], &env);
    plan.success();
    let json = plan.json();
    let targets: Vec<&str> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        vec!["aws/us-west-2", "openstack/default/RegionOne"]
    );
    // The ami_name uses timestamp(): a build setting, so the address is stable.
    let again = p.run_isolated(&["plan", "--json"], &env).json();
    assert_eq!(
        json["changes"][0]["content"]["new"],
        again["changes"][0]["content"]["new"]
    );
    // Editing the role (reached through the playbook) changes both images.
    p.file(
        "roles/common/tasks/main.yml",
        "---\n- name: changed\n  ansible.builtin.debug: msg=hi\n",
    );
    let edited = p.run_isolated(&["plan", "--json"], &env).json();
    assert_ne!(
        json["changes"][0]["content"]["new"],
        edited["changes"][0]["content"]["new"]
    );
    assert_ne!(
        json["changes"][1]["content"]["new"],
        edited["changes"][1]["content"]["new"]
    );
    // The filter resolved to the newest jammy image.
    let shown = p.run_isolated(&["plan"], &env);
    assert!(
        shown.stdout.contains("learn-packer.amazon-ebs.ubuntu"),
        "{}",
        shown.stdout
    );
    let manifest_base = p.run_isolated(&["plan", "--out", "plan.json"], &env);
    manifest_base.success();
    assert!(
        p.read("plan.json").contains("ami-0a1b2c3d4e5f60002"),
        "the plan records the resolved AMI"
    );
    assert!(!p.read("plan.json").contains("hunter2"));
    // The password never reaches a plan.
    assert!(!plan.stdout.contains("hunter2"));
}

#[test]
fn json_variant_loads() {
    let p = Project::new();
    p.file(
        "main.pkr.json",
        r#"{
  "variable": { "name": { "type": "string", "default": "world" } },
  "source": { "null": { "hello": { "communicator": "none" } } },
  "build": {
    "sources": ["source.null.hello"],
    "provisioner": [ { "shell-local": { "inline": ["echo hello ${var.name} > out.txt"] } } ]
  }
}"#,
    );
    p.run(&["apply", "--auto-approve"]).success();
    assert_eq!(p.read("out.txt").trim(), "hello world");
}

#[test]
fn variable_sources_in_precedence_order() {
    let p = Project::new();
    p.file(
        "main.pkr.hcl",
        r#"
variable "v" {
  default = "default"
}
variable "count" {
  type    = number
  default = 1
}
variable "tags" {
  type    = list(string)
  default = []
}
source "null" "x" { communicator = "none" }
build {
  sources = ["source.null.x"]
  provisioner "shell-local" { inline = ["echo ${var.v} ${var.count} ${join(",", var.tags)} >> out.txt"] }
}
"#,
    );
    let value = |p: &Project, args: &[&str], env: &[(&str, &str)]| {
        std::fs::remove_file(p.path().join("out.txt")).ok();
        std::fs::remove_dir_all(p.path().join("state")).ok();
        let mut all = vec!["apply", "--auto-approve"];
        all.extend_from_slice(args);
        p.run_env(&all, env).success();
        p.read("out.txt").trim().to_owned()
    };
    assert_eq!(value(&p, &[], &[]), "default 1");
    assert_eq!(value(&p, &[], &[("PKR_VAR_v", "env")]), "env 1");
    p.file("a.auto.pkrvars.hcl", "v = \"auto\"\ncount = 2\n");
    assert_eq!(value(&p, &[], &[("PKR_VAR_v", "env")]), "auto 2");
    p.file("extra.pkrvars.hcl", "v = \"file\"\ntags = [\"a\", \"b\"]\n");
    assert_eq!(
        value(&p, &["--var-file", "extra.pkrvars.hcl"], &[]),
        "file 2 a,b"
    );
    assert_eq!(
        value(
            &p,
            &[
                "--var-file",
                "extra.pkrvars.hcl",
                "--var",
                "v=cli",
                "--var",
                "count=3",
                "--var",
                "tags=[\"z\"]"
            ],
            &[]
        ),
        "cli 3 z"
    );
}

#[test]
fn in_build_source_blocks_rename_and_fill_in_fields_and_only_except_filter() {
    let p = Project::new();
    p.file(
        "main.pkr.hcl",
        r#"
source "null" "tmpl" { communicator = "none" }
build {
  name = "b"
  source "null.tmpl" { name = "first" }
  source "null.tmpl" { name = "second" }
  provisioner "shell-local" {
    only   = ["null.first"]
    inline = ["echo only-first >> ${source.name}.txt"]
  }
  provisioner "shell-local" {
    except = ["null.first"]
    inline = ["echo not-first >> ${source.name}.txt"]
  }
  provisioner "shell-local" {
    inline = ["echo ${build.name}.${source.type}.${source.name} >> ${source.name}.txt"]
  }
}
"#,
    );
    p.run(&["apply", "--auto-approve"]).success();
    assert_eq!(p.read("first.txt"), "only-first\nb.null.first\n");
    assert_eq!(p.read("second.txt"), "not-first\nb.null.second\n");
}

#[test]
fn pause_before_retries_and_timeout() {
    let p = Project::new();
    p.file(
        "main.pkr.hcl",
        r#"
source "null" "x" { communicator = "none" }
build {
  sources = ["source.null.x"]
  provisioner "shell-local" {
    max_retries = 2
    inline      = ["echo try >> tries.txt", "test $(wc -l < tries.txt) -ge 3"]
  }
  provisioner "shell-local" {
    pause_before = "1s"
    timeout      = "1s"
    inline       = ["sleep 5"]
  }
}
"#,
    );
    let run = p.run(&["apply", "--auto-approve"]);
    run.code(1);
    assert_eq!(p.read("tries.txt").lines().count(), 3);
    assert!(run.stderr.contains("timed out after 1s"), "{}", run.stderr);
}

#[test]
fn the_aws_example_validates_and_plans_against_ec2() {
    let p = Project::new();
    util::copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aws"),
        p.path(),
    );
    let validate = p.run(&["validate"]);
    validate.success();
    assert!(
        validate
            .stdout
            .contains("golden.amazon-ebs.debian, app.amazon-ebs.app"),
        "{}",
        validate.stdout
    );
    let moto = util::moto::Moto::start_with_amis(
        &[
            (
                "ami-0d1e2b3a4c5d60001",
                "debian-12-amd64-20250101-1980",
                "136693071363",
            ),
            (
                "ami-0d1e2b3a4c5d60002",
                "debian-12-amd64-20250301-2040",
                "136693071363",
            ),
            (
                "ami-0d1e2b3a4c5d60003",
                "debian-11-amd64-20250301-2040",
                "136693071363",
            ),
        ],
        p.path(),
    );
    let env = moto.aws_env();
    let plan = p.run_isolated(&["plan", "--json"], &env);
    plan.success();
    let json = plan.json();
    let changes: Vec<(&str, &str, &str)> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap(),
                c["action"].as_str().unwrap(),
                c["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("golden.amazon-ebs.debian", "build", "aws/eu-west-1"),
            ("app.amazon-ebs.app", "build", "aws/eu-west-1"),
        ]
    );
    assert_eq!(json["changes"][1]["parents"][0], "golden.amazon-ebs.debian");
}

/// Attributes Packer knows that imgform does not act on load, each with a
/// warning at its own line naming it — in sources and in provisioners — and
/// nothing when they are unset or false.
#[test]
fn packer_attributes_imgform_does_not_act_on_are_warnings_at_their_line() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"source "null" "box" {
  communicator            = "ssh"
  ssh_host                = "127.0.0.1"
  ssh_username            = "root"
  ssh_password            = "x"
  ssh_bastion_interactive = true
  ssh_ip_version          = ""
}

build {
  sources = ["source.null.box"]
  provisioner "shell" {
    inline            = ["reboot"]
    expect_disconnect = true
    pause_after       = "10s"
  }
}
"#,
    );
    let run = p.run(&["validate"]);
    run.success()
        .stderr_has("null.box: null `ssh_bastion_interactive` is not acted on by imgform and is ignored")
        .stderr_has("images.pkr.hcl:6:")
        .stderr_has("null.box: provisioner \"shell\" `expect_disconnect` is not acted on by imgform and is ignored")
        .stderr_has("images.pkr.hcl:14:");
    assert!(!run.stderr.contains("ssh_ip_version"), "{}", run.stderr);
    assert!(!run.stderr.contains("`pause_after`"), "{}", run.stderr);

    // A bad pause_after is an error at its line.
    p.file(
        "images.pkr.hcl",
        &p.read("images.pkr.hcl").replace("\"10s\"", "\"soon\""),
    );
    p.run(&["validate"])
        .code(1)
        .stderr_has("`pause_after` must be a duration")
        .stderr_has("images.pkr.hcl:15:");
}
