//! Evaluation of whole images from definitions on disk: how attributes
//! split by role, what reaches the manifest's variables, what is decided at
//! apply time, and the errors evaluation gives. Snapshots in
//! `src/config/snapshots/`.

use std::collections::BTreeMap;

use super::*;
use crate::config::{load, LoadOptions};

/// Loads `files` into a fresh definition dir and evaluates every image
/// (parents' content addresses are fixed placeholders). The specs, or the
/// diagnostics, as JSON with the temp dir shown as `<dir>`.
fn evaluate(files: &[(&str, &str)]) -> Result<Vec<Json>, Json> {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let options = LoadOptions {
        work_dir: Some(root.clone()),
        ..LoadOptions::default()
    };
    let project = load(&root, &options).map_err(|d| shown(&root, &d.0))?;
    let mut out = Vec::new();
    for def in &project.images {
        let tokens: BTreeMap<ImageAddr, String> = def
            .refs
            .keys()
            .map(|p| {
                (
                    p.clone(),
                    format!("imgform-image://{p}@sha256:{}", "0".repeat(64)),
                )
            })
            .collect();
        let spec = project
            .evaluate_image(def, &tokens)
            .map_err(|d| shown(&root, &d))?;
        out.push(shown(&root, &spec));
    }
    Ok(out)
}

/// `value` as JSON, with the definition dir `root` shown as `<dir>`.
fn shown<T: serde::Serialize>(root: &std::path::Path, value: &T) -> Json {
    let text = serde_json::to_string(value)
        .unwrap()
        .replace(&*root.to_string_lossy(), "<dir>");
    serde_json::from_str(&text).unwrap()
}

const SOURCES: &str = r#"
variable "release" {
  type    = string
  default = "2026.11"
}

variable "password" {
  type      = string
  default   = "hunter22"
  sensitive = true
}

locals {
  name = "web-${var.release}"
}

source "amazon-ebs" "web" {
  region        = "eu-west-1"
  source_ami    = "ami-0123456789abcdef0"
  instance_type = "t3.small"
  ami_name      = "${local.name}-${formatdate("YYYYMMDD", timestamp())}"
  ssh_username  = "admin"
  ssh_password  = var.password
  source_ami_filter {
    owners      = ["self"]
    most_recent = true
    filters {
      name = "debian-*"
    }
  }
  launch_block_device_mappings {
    device_name = "/dev/xvda"
  }
}

build {
  sources = ["source.amazon-ebs.web"]

  provisioner "shell" {
    inline           = ["echo ${var.release}"]
    environment_vars = ["RELEASE=${var.release}"]
    max_retries      = 2
    timeout          = "5m"
    only             = ["amazon-ebs.web"]
  }

  provisioner "file" {
    content     = file("motd.txt")
    destination = "/etc/motd"
  }
}
"#;

#[test]
fn attributes_split_by_role_and_blocks_by_repeat() {
    let mut specs = evaluate(&[("images.pkr.hcl", SOURCES), ("motd.txt", "hello\n")]).unwrap();
    // Evaluated with the real clock: the day changes.
    specs[0]["settings"]["ami_name"] = "web-2026.11-<today>".into();
    insta::assert_json_snapshot!(specs);
}

#[test]
fn a_clock_in_a_setting_is_decided_at_apply_time() {
    let specs = evaluate(&[("images.pkr.hcl", SOURCES), ("motd.txt", "hello\n")]).unwrap();
    assert_eq!(
        specs[0]["apply_time_settings"],
        serde_json::json!(["ami_name"])
    );
}

#[test]
fn a_clock_in_an_input_is_an_error_at_its_place() {
    let text = r#"
source "null" "a" {
  communicator = "none"
}
build {
  sources = ["source.null.a"]
  provisioner "shell-local" {
    inline = ["echo ${timestamp()}"]
  }
}
"#;
    let diags = evaluate(&[("images.pkr.hcl", text)]).unwrap_err();
    insta::assert_json_snapshot!(diags);
}

#[test]
fn provisioner_values_are_checked_against_the_kind() {
    let text = r#"
source "null" "a" {
  communicator = "none"
}
build {
  sources = ["source.null.a"]
  provisioner "shell-local" {
    inline = "echo not a list"
    script = "x.sh"
  }
  provisioner "file" {
    source = "x"
  }
}
"#;
    let diags = evaluate(&[("images.pkr.hcl", text)]).unwrap_err();
    insta::assert_json_snapshot!(diags);
}

#[test]
fn image_references_become_tokens_with_the_parent() {
    let text = r#"
source "null" "base" {
  communicator = "none"
}
source "null" "app" {
  communicator = "none"
}
build {
  name    = "g"
  sources = ["source.null.base"]
}
build {
  name    = "g"
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = ["echo ${image.g.null.base.id}"]
  }
}
"#;
    let specs = evaluate(&[("images.pkr.hcl", text)]).unwrap();
    let app = specs.iter().find(|s| s["addr"] == "g.null.app").unwrap();
    assert_eq!(app["parents"], serde_json::json!(["g.null.base"]));
    insta::assert_json_snapshot!(app["provisioners"]);
}
