//! Real-world Packer inputs on the real binary: Packer's path rules (a
//! template folder or file as the argument, `-C DIR`, relative paths against
//! the current directory, `path.root`), `dynamic` blocks, build names and
//! sources as expressions, Packer's template engine in strings, and legacy
//! (Packer 1.x) JSON templates.

mod util;

use util::Project;

/// A repository with its templates in `packer/` and its scripts at the
/// root, run from the root as its README says (`packer build packer/`).
fn repo_with_packer_folder() -> Project {
    let p = Project::new();
    p.file(
        "packer/build.pkr.hcl",
        r#"
source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]

  provisioner "shell-local" {
    script           = "./scripts/setup.sh"
    environment_vars = ["OUT=${path.root}/out.txt"]
  }

  provisioner "shell-local" {
    inline = ["cat ${path.root}/files/motd >> ${path.root}/out.txt"]
  }
}
"#,
    );
    p.file("packer/files/motd", "welcome\n");
    p.file("packer/version.auto.pkrvars.hcl", "");
    p.file(
        "scripts/setup.sh",
        "#!/bin/sh\necho \"setup ran in $(pwd)\" > \"$OUT\"\n",
    );
    p
}

#[test]
fn a_template_folder_resolves_relative_paths_against_the_current_directory() {
    let p = repo_with_packer_folder();
    let by_folder = p.run(&["plan", "--json", "packer/"]);
    by_folder.success();
    // One file, Packer's other usage: the same image, the same address.
    let by_file = p.run(&["plan", "--json", "packer/build.pkr.hcl"]);
    by_file.success();
    assert_eq!(
        util::content_addresses(&by_folder.json()),
        util::content_addresses(&by_file.json())
    );

    // A saved plan remembers its template folder: `apply p.bin` where
    // `plan` ran uses the folder's state.
    p.run(&["plan", "packer/", "--out", "p.bin"]).success();
    p.run(&["apply", "p.bin"]).success();
    // The script ran from the current directory; path.root is the folder.
    let out = p.read("packer/out.txt");
    assert!(out.starts_with("setup ran in "), "{out}");
    assert!(out.contains("welcome"), "{out}");
    // The state is kept with the templates.
    assert!(p.path().join("packer/state").is_dir());
    assert!(!p.path().join("state").exists());
    p.run(&["plan", "--detailed-exitcode", "packer/"]).code(0);

    // Editing the script at the root rebuilds the image.
    p.file("scripts/setup.sh", "#!/bin/sh\necho changed > \"$OUT\"\n");
    let changed = p.run(&["plan", "packer/"]);
    changed.success();
    assert!(
        changed.stdout.contains("scripts/setup.sh"),
        "{}",
        changed.stdout
    );
}

#[test]
fn chdir_changes_directory_first() {
    let p = repo_with_packer_folder();
    // From inside packer/, ./scripts/setup.sh is packer/scripts/setup.sh:
    // not there, and the error says which path it tried.
    let inside = p.run(&["-C", "packer", "plan"]);
    inside.code(1).stderr_has("scripts/setup.sh");
    // -C then a template path relative to the new directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let root = p.path().to_str().unwrap();
    util::imgform_in(elsewhere.path(), &["-C", root, "plan", "packer"], &[]).success();
}

#[test]
fn moving_the_checkout_keeps_the_addresses_of_a_template_folder() {
    let p = repo_with_packer_folder();
    let before = util::content_addresses(&p.run(&["plan", "--json", "packer/"]).json());
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("deeper/checkout");
    util::copy_tree(p.path(), &moved);
    let after = util::content_addresses(
        &util::imgform_in(&moved, &["plan", "--json", "packer/"], &[]).json(),
    );
    assert_eq!(before, after);
}

#[test]
fn one_template_file_reads_no_auto_var_files() {
    let p = Project::new();
    p.file(
        "images/main.pkr.hcl",
        r#"
variable "flavour" {
  type    = string
  default = "plain"
}
source "null" "a" {
  communicator = "none"
}
build {
  sources = ["source.null.a"]
  provisioner "shell-local" {
    inline = ["echo flavour=${var.flavour}"]
  }
}
"#,
    );
    p.file("images/x.auto.pkrvars.hcl", "flavour = \"auto\"\n");
    let folder = p.run(&["apply", "--auto-approve", "images"]);
    folder.success();
    assert!(folder.stderr.contains("flavour=auto"), "{}", folder.stderr);
    let file = p.run(&["plan", "--json", "images/main.pkr.hcl"]).json();
    assert_eq!(file["summary"]["rebuild"], 1, "{file}");
}

#[test]
fn a_folder_without_templates_names_what_it_found() {
    let p = Project::new();
    p.file("packer/ubuntu.pkr.hcl", "source \"null\" \"a\" {\n  communicator = \"none\"\n}\nbuild {\n  sources = [\"source.null.a\"]\n}\n");
    p.file("variables.json", "{\"region\": \"x\"}");
    let run = p.run(&["plan"]);
    run.code(1)
        .stderr_has("no image definitions in .: found only variables.json")
        .stderr_has("imgform plan ./packer/");
    // Templates with variables and sources but no build: no image.
    let q = Project::new();
    q.file("vars.pkr.hcl", "variable \"x\" {\n  default = 1\n}\nsource \"null\" \"a\" {\n  communicator = \"none\"\n}\n");
    q.run(&["validate"])
        .code(1)
        .stderr_has("no image is defined: the templates hold 1 variable(s), 0 local(s), 1 source(s) and no build block");
}

const DYNAMIC: &str = r#"
variable "flavours" {
  type    = map(number)
  default = { small = 8, large = 64 }
}

locals {
  steps = ["one", "two"]
}

source "null" "base" {
  communicator = "none"
}

build {
  name = "fleet"

  dynamic "source" {
    for_each = var.flavours
    iterator = flavour
    labels   = ["null.base"]
    content {
      name = "base-${flavour.key}"
    }
  }

  dynamic "provisioner" {
    for_each = local.steps
    labels   = ["shell-local"]
    content {
      inline = ["echo step ${provisioner.key}=${provisioner.value} on ${source.name} >> steps.log"]
    }
  }
}
"#;

#[test]
fn dynamic_sources_and_provisioners_expand() {
    let p = Project::new();
    p.file("images.pkr.hcl", DYNAMIC);
    let valid = p.run(&["validate"]);
    valid.success();
    assert!(
        valid
            .stdout
            .contains("2 image(s) defined: fleet.null.base-large, fleet.null.base-small"),
        "{}",
        valid.stdout
    );
    p.run(&["apply", "--auto-approve"]).success();
    let log = p.read("steps.log");
    for line in [
        "step 0=one on base-small",
        "step 1=two on base-small",
        "step 0=one on base-large",
        "step 1=two on base-large",
    ] {
        assert!(log.contains(line), "{line} in {log}");
    }
    // Another element is another image; the others stay as they are.
    p.file(
        "images.pkr.hcl",
        &DYNAMIC.replace(
            "{ small = 8, large = 64 }",
            "{ small = 8, large = 64, huge = 256 }",
        ),
    );
    let plan = p.run(&["plan", "--json"]).json();
    assert_eq!(plan["summary"]["build"], 1, "{plan}");
    assert_eq!(plan["summary"]["unchanged"], 2, "{plan}");
}

#[test]
fn a_dynamic_block_with_a_bad_for_each_is_located() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        "source \"null\" \"a\" {\n  communicator = \"none\"\n}\nbuild {\n  sources = [\"source.null.a\"]\n  dynamic \"provisioner\" {\n    for_each = var.nope\n    labels   = [\"shell-local\"]\n    content {\n      inline = [\"true\"]\n    }\n  }\n}\n",
    );
    p.run(&["plan"])
        .code(1)
        .stderr_has("images.pkr.hcl:7:5")
        .stderr_has("cannot evaluate `for_each`");
}

#[test]
fn build_names_and_sources_are_expressions_and_may_hold_dots() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
variable "release" {
  type    = string
  default = "noble"
}
locals {
  names = ["a", "b"]
}
source "null" "a" {
  communicator = "none"
}
source "null" "b" {
  communicator = "none"
}
build {
  name        = "cloudimg.${var.release}"
  description = "Ubuntu ${var.release} cloud image"
  sources     = [for n in local.names : "source.null.${n}"]
  provisioner "shell-local" {
    inline = ["echo built ${build.name}/${source.name}"]
  }
}
build {
  name = "cloudimg.deps"
  source "null.a" {
    name = "child"
  }
  provisioner "shell-local" {
    inline = ["echo parent=${image.cloudimg.noble.null.a.id}"]
  }
}
"#,
    );
    let valid = p.run(&["validate"]);
    valid.success();
    assert!(
        valid
            .stdout
            .contains("cloudimg.noble.null.a, cloudimg.noble.null.b, cloudimg.deps.null.child")
            || valid.stdout.contains("cloudimg.deps.null.child"),
        "{}",
        valid.stdout
    );
    let plan = p
        .run(&["plan", "--json", "--target", "cloudimg.deps.null.child"])
        .json();
    let addrs: Vec<String> = util::content_addresses(&plan)
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    // The image and the one it is built from, parents first.
    assert_eq!(
        addrs,
        vec!["cloudimg.noble.null.a", "cloudimg.deps.null.child"],
        "{plan}"
    );
    let apply = p.run(&["apply", "--auto-approve"]);
    apply.success();
    assert!(
        apply.stderr.contains("built cloudimg.noble/b"),
        "{}",
        apply.stderr
    );
    // The name follows the variable: another release is another build (and
    // the reference to the noble image now names nothing).
    p.run(&["validate", "--var", "release=jammy"])
        .code(1)
        .stderr_has("reference to unknown image `cloudimg.noble.null.a`");
}

#[test]
fn packer_template_engine_is_rendered_in_settings() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
variable "owner" {
  default = "ops"
}
source "null" "web" {
  communicator = "none"
}
build {
  sources = ["source.null.web"]
  provisioner "shell-local" {
    inline = ["echo name={{build_name}} type={{ build_type }} v={{packer_version}} up={{ upper `x` }}"]
  }
}
"#,
    );
    let apply = p.run(&["apply", "--auto-approve"]);
    apply.success();
    assert!(
        apply.stderr.contains(&format!(
            "name=web type=null v={} up=X",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        apply.stderr
    );

    // {{timestamp}} in an input would rebuild every time: refused, as
    // timestamp() is.
    p.file(
        "images.pkr.hcl",
        "source \"null\" \"web\" {\n  communicator = \"none\"\n}\nbuild {\n  sources = [\"source.null.web\"]\n  provisioner \"shell-local\" {\n    inline = [\"echo {{timestamp}}\"]\n  }\n}\n",
    );
    p.run(&["plan"])
        .code(1)
        .stderr_has("images.pkr.hcl:7:5")
        .stderr_has("changes on every run");
    // A function the engine does not know is an error, never literal text.
    p.file(
        "images.pkr.hcl",
        "source \"null\" \"web\" {\n  communicator = \"none\"\n}\nbuild {\n  sources = [\"source.null.web\"]\n  provisioner \"shell-local\" {\n    inline = [\"echo {{ vault `a` `b` }}\"]\n  }\n}\n",
    );
    p.run(&["plan"])
        .code(1)
        .stderr_has("images.pkr.hcl:7:5")
        .stderr_has("`vault` reads HashiCorp Vault, which imgform does not reach")
        .stderr_has(
            "hint: imgform does not reach HashiCorp Vault: read the value before running imgform",
        );
}

#[test]
fn amazon_template_fields_are_checked_when_planned() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
source "amazon-ebs" "web" {
  region        = "us-east-1"
  source_ami    = "ami-12345678"
  instance_type = "t3.micro"
  ssh_username  = "ubuntu"
  ami_name      = "web-{{ .SourceAMIName }}-{{timestamp}}"
  tags = {
    Base    = "{{ .SourceAMITags.Name }}"
    Typo    = "{{ .SourceAMINmae }}"
  }
}
build {
  sources = ["source.amazon-ebs.web"]
}
"#,
    );
    p.run(&["validate"])
        .code(1)
        .stderr_has("`{{ .SourceAMINmae }}` in `tags` is not template data of amazon-ebs");
}

const LEGACY: &str = r#"{
  "_comment": "a Packer 1.x template, as older repositories keep them",
  "variables": {
    "greeting": "hello",
    "who": "{{env `LEGACY_WHO`}}"
  },
  "builders": [
    {"type": "null", "name": "first", "communicator": "none"},
    {"type": "null", "communicator": "none"}
  ],
  "provisioners": [
    {
      "type": "shell-local",
      "inline": ["echo {{user `greeting`}} ${LEGACY_SHELL_VAR:-shell} {{user `who`}} from {{build_name}} >> legacy.log"]
    },
    {
      "type": "shell-local",
      "script": "{{template_dir}}/scripts/only-first.sh",
      "only": ["first"]
    }
  ],
  "post-processors": [{"type": "manifest", "output": "{{user `greeting`}}-manifest.json"}]
}
"#;

#[test]
fn legacy_json_templates_load_and_run() {
    let p = Project::new();
    p.file("packer/packer.json", LEGACY);
    p.file(
        "packer/scripts/only-first.sh",
        "#!/bin/sh\necho only-first >> legacy.log\n",
    );
    let valid = p.run(&["validate", "packer/"]);
    valid.success();
    assert!(
        valid
            .stdout
            .contains("2 image(s) defined: null.first, null.null"),
        "{}",
        valid.stdout
    );
    p.run_env(
        &["apply", "--auto-approve", "packer/packer.json"],
        &[("LEGACY_WHO", "world")],
    )
    .success();
    let log = p.read("legacy.log");
    assert!(log.contains("hello shell world from first"), "{log}");
    assert!(log.contains("hello shell world from null"), "{log}");
    assert_eq!(log.matches("only-first").count(), 1, "{log}");
    // Post-processor settings are rendered too (Packer's manifest file).
    let manifest = p.read("hello-manifest.json");
    assert!(
        manifest.contains("\"builder_type\": \"null\""),
        "{manifest}"
    );
}
