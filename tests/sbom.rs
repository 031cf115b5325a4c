//! SBOMs of real images: a chroot build on the Debian cloud root filesystem
//! (a real dpkg database: kernel, systemd, sshd...) that installs packages
//! built here with dpkg-deb, then a rebuild that upgrades, adds and removes
//! some. The documents are checked by the formats' reference validators
//! (cyclonedx-python-lib, the SPDX project's spdx-tools); the SBOM read over
//! SSH is in tests/ssh.rs.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use util::Project;

/// Builds `name_version_all.deb` into `dir` with dpkg-deb.
fn deb(dir: &Path, name: &str, version: &str) {
    let root = tempfile::tempdir().unwrap();
    let control = root.path().join("DEBIAN/control");
    std::fs::create_dir_all(control.parent().unwrap()).unwrap();
    std::fs::write(
        &control,
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: imgform tests <tests@example.invalid>\nDescription: a package of the SBOM test\n"
        ),
    )
    .unwrap();
    let doc = root.path().join(format!("usr/share/doc/{name}/note"));
    std::fs::create_dir_all(doc.parent().unwrap()).unwrap();
    std::fs::write(doc, format!("{name} {version}\n")).unwrap();
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(root.path())
        .arg(dir.join(format!("{name}_{version}_all.deb")))
        .output()
        .expect("dpkg-deb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs tests/validate_sbom.py in the validators' virtualenv.
fn validate(format: &str, file: &Path) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/validate_sbom.py");
    let out = Command::new("/var/cache/imgform/sbom-venv/bin/python")
        .arg(script)
        .arg(format)
        .arg(file)
        .output()
        .expect("the SBOM validators (scripts/install-test-deps.sh installs them)");
    assert!(
        out.status.success(),
        "{format} validation of {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn component<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
}

const IMAGES: &str = r#"
source "chroot" "deb" {
  base   = "rootfs/debian-cloud.tar.gz"
  format = "tar"
}

build {
  sources       = ["source.chroot.deb"]
  keep_previous = 0
  provisioner "file" {
    source      = "debs/"
    destination = "/tmp/debs"
  }
  provisioner "shell" {
    inline = ["dpkg -i /tmp/debs/*.deb", "rm -rf /tmp/debs"]
  }
}
"#;

#[test]
fn a_debian_image_records_its_packages_and_a_rebuild_shows_what_changed() {
    if !util::is_root() {
        eprintln!("skipped: the chroot builder needs root");
        return;
    }
    let p = Project::new();
    p.file("images.pkr.hcl", IMAGES);
    std::fs::create_dir_all(p.path().join("rootfs")).unwrap();
    let base = p.path().join("rootfs/debian-cloud.tar.gz");
    if std::fs::hard_link(util::debian::cloud_rootfs(), &base).is_err() {
        std::fs::copy(util::debian::cloud_rootfs(), &base).unwrap();
    }
    let debs = p.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    deb(&debs, "imgform-demo", "1.0");
    deb(&debs, "imgform-old", "1.0");

    let first = p.run(&["apply", "--auto-approve"]);
    first.success();
    first.stderr_has("chroot.deb: package list read:");
    // A first build has nothing to compare with.
    assert!(
        !first.stderr.contains("packages 0 changed"),
        "{}",
        first.stderr
    );

    // The SBOM: the real package list, as CycloneDX 1.5, also beside the image.
    let sbom = p.run(&["sbom", "chroot.deb"]);
    sbom.success();
    let doc: Value = serde_json::from_str(&sbom.stdout).unwrap();
    assert_eq!(doc["specVersion"], "1.5");
    assert_eq!(doc["metadata"]["component"]["name"], "chroot.deb");
    let os = &doc["components"][0];
    assert_eq!(
        (os["type"].as_str(), os["name"].as_str()),
        (Some("operating-system"), Some("debian"))
    );
    let kernel = component(&doc, "linux-image-amd64").expect("the kernel package");
    assert!(
        kernel["purl"]
            .as_str()
            .unwrap()
            .starts_with("pkg:deb/debian/linux-image-amd64@"),
        "{kernel}"
    );
    for name in ["systemd", "openssh-server", "libc6"] {
        assert!(component(&doc, name).is_some(), "{name} missing");
    }
    let demo = component(&doc, "imgform-demo").unwrap();
    assert_eq!(demo["version"], "1.0");
    assert!(
        demo["purl"]
            .as_str()
            .unwrap()
            .starts_with("pkg:deb/debian/imgform-demo@1.0?arch=all&distro=debian-"),
        "{demo}"
    );
    let outputs: Vec<PathBuf> = std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let beside: Vec<&PathBuf> = outputs
        .iter()
        .filter(|f| f.to_string_lossy().ends_with(".tar.cdx.json"))
        .collect();
    assert_eq!(beside.len(), 1, "{outputs:?}");
    assert_eq!(std::fs::read_to_string(beside[0]).unwrap(), sbom.stdout);
    validate("cyclonedx", beside[0]);

    let spdx = p.run(&["sbom", "chroot.deb", "--format", "spdx"]);
    spdx.success();
    let spdx_file = p.path().join("image.spdx.json");
    std::fs::write(&spdx_file, &spdx.stdout).unwrap();
    validate("spdx", &spdx_file);
    let spdx: Value = serde_json::from_str(&spdx.stdout).unwrap();
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    assert_eq!(
        spdx["packages"].as_array().unwrap().len(),
        doc["components"].as_array().unwrap().len(),
        "the image and every package"
    );

    // No earlier build: diff says so.
    let none = p.run(&["diff", "chroot.deb"]);
    none.code(1);
    none.stderr_has("chroot.deb has no previous SBOM recorded");

    // Upgrade one package, add one, drop one: the rebuild shows it.
    for f in std::fs::read_dir(&debs).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    deb(&debs, "imgform-demo", "2.0");
    deb(&debs, "imgform-new", "1.0");
    let second = p.run(&["apply", "--auto-approve", "--markdown"]);
    second.success();
    second
        .stderr_has("chroot.deb: packages 1 changed, 1 added, 1 removed")
        .stderr_has("~ imgform-demo 1.0 → 2.0")
        .stderr_has("+ imgform-new 1.0")
        .stderr_has("- imgform-old 1.0");
    let md = &second.stdout;
    assert!(md.starts_with("<!-- imgform-apply -->\n"), "{md}");
    assert!(md.contains("| `chroot.deb` | ✅ built |"), "{md}");
    assert!(
        md.contains("<details><summary><code>chroot.deb</code> packages: 1 changed, 1 added, 1 removed</summary>"),
        "{md}"
    );
    assert!(md.contains("| `imgform-demo` | `1.0` | `2.0` |"), "{md}");
    assert!(md.contains("| `imgform-new` | — | `1.0` |"), "{md}");
    assert!(md.contains("| `imgform-old` | `1.0` | — |"), "{md}");

    let diff = p.run(&["diff", "chroot.deb"]);
    diff.success();
    assert_eq!(
        diff.stdout,
        "Package changes in chroot.deb since its previous build: 1 changed, 1 added, 1 removed.\n\n  \
         ~ imgform-demo 1.0 → 2.0\n  + imgform-new 1.0\n  - imgform-old 1.0\n"
    );
    let json = p.run(&["diff", "chroot.deb", "--json"]).json();
    assert_eq!(
        json["packages"]["changed"],
        serde_json::json!([{"name": "imgform-demo", "arch": "all", "from": "1.0", "to": "2.0"}])
    );
    let previous: Value =
        serde_json::from_str(&p.run(&["sbom", "chroot.deb", "--previous"]).stdout).unwrap();
    assert!(component(&previous, "imgform-old").is_some());

    // The replaced image went (keep_previous = 0), and its SBOM with it.
    let sidecars = std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".cdx.json")
        })
        .count();
    assert_eq!(sidecars, 1);
}

#[test]
fn an_image_without_a_package_database_has_no_sbom() {
    if !util::is_root() {
        eprintln!("skipped: the chroot builder needs root");
        return;
    }
    let p = Project::new();
    p.with_busybox_rootfs();
    p.file(
        "images.pkr.hcl",
        r#"
source "chroot" "tiny" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
build {
  sources = ["source.chroot.tiny"]
  provisioner "shell" {
    inline = ["echo hi > /etc/hi"]
  }
}
"#,
    );
    p.run(&["apply", "--auto-approve"]).success();
    let run = p.run(&["sbom", "chroot.tiny"]);
    run.code(1);
    run.stderr_has("chroot.tiny has no SBOM recorded")
        .stderr_has("hint: an SBOM is recorded when a build finds a package database");
    let missing = p.run(&["sbom", "chroot.nope"]);
    missing.code(1);
    missing.stderr_has("chroot.nope is not in the state");
}
