//! The chroot builder against the real tools: chroot, mke2fs, debugfs,
//! qemu-img, on a busybox-static root filesystem. Needs root (chroot and
//! mounts), as the README's test command runs.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use util::Project;

/// Skips (with a message) when not root: chroot and mount need it.
macro_rules! require_root {
    () => {
        if !util::is_root() {
            eprintln!("skipped: the chroot tests need root (chroot, mount)");
            return;
        }
    };
}

fn rootfs() -> &'static Path {
    util::busybox_rootfs()
}

fn project(hcl: &str) -> Project {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("rootfs")).unwrap();
    std::fs::copy(rootfs(), p.path().join("rootfs/busybox.tar.gz")).unwrap();
    p.file("images.pkr.hcl", hcl);
    std::fs::create_dir_all(p.path().join("work")).unwrap();
    p
}

/// The single image file in output/ whose name starts with `prefix`.
fn output(p: &Project, prefix: &str, ext: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| {
            let n = f.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(prefix) && n.ends_with(ext)
        })
        .collect();
    assert_eq!(found.len(), 1, "one {prefix}*{ext} in output/: {found:?}");
    found.remove(0)
}

/// Reads a file from inside a qcow2/raw image with debugfs.
fn cat_in_image(image: &Path, path: &str) -> String {
    let raw = image.with_extension("test.raw");
    let status = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(image)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(&raw)
        .output()
        .unwrap();
    std::fs::remove_file(&raw).ok();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Nothing mounted below the project (tests run in parallel: only look at ours).
fn no_mounts_left(p: &Project) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours = p.path().to_string_lossy().into_owned();
    let leftover: Vec<&str> = info.lines().filter(|l| l.contains(&ours)).collect();
    assert!(leftover.is_empty(), "mounts left behind: {leftover:#?}");
}

const TWO: &str = r#"
source "chroot" "base" {
  base     = "rootfs/busybox.tar.gz"
  label    = "base"
  work_dir = "work"
}

source "chroot" "app" {
  base     = image.golden.chroot.base.id
  work_dir = "work"
}

build {
  name    = "golden"
  sources = ["source.chroot.base"]

  provisioner "shell" {
    inline = ["echo base-was-here > /etc/base-marker", "ls /proc/self > /dev/null && echo proc-mounted > /etc/proc-check"]
  }
}

build {
  name    = "golden"
  sources = ["source.chroot.app"]

  provisioner "file" {
    source      = "files/app.conf"
    destination = "/etc/app/app.conf"
    mode        = "0600"
  }

  provisioner "shell" {
    environment_vars = ["GREETING=hello"]
    inline           = ["echo \"$GREETING from app\" > /etc/app/greeting", "cat /etc/base-marker > /etc/app/from-base"]
  }
}
"#;

#[test]
fn builds_a_real_qcow2_and_chains_images() {
    require_root!();
    let p = project(TWO);
    p.file("files/app.conf", "listen = 8080\n");
    let run = p.run(&["apply", "--auto-approve"]);
    run.success();
    let base = output(&p, "golden-chroot-base-", ".qcow2");
    let app = output(&p, "golden-chroot-app-", ".qcow2");

    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&app)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");

    assert_eq!(cat_in_image(&base, "/etc/base-marker"), "base-was-here\n");
    assert_eq!(
        cat_in_image(&base, "/etc/proc-check"),
        "proc-mounted\n",
        "/proc was mounted during the build"
    );
    assert_eq!(cat_in_image(&app, "/etc/app/app.conf"), "listen = 8080\n");
    assert_eq!(cat_in_image(&app, "/etc/app/greeting"), "hello from app\n");
    // The chained image holds its parent's files.
    assert_eq!(cat_in_image(&app, "/etc/base-marker"), "base-was-here\n");
    assert_eq!(cat_in_image(&app, "/etc/app/from-base"), "base-was-here\n");
    no_mounts_left(&p);

    // The state records the file and its sha256.
    let state: serde_json::Value = serde_json::from_str(&p.read("state/local.json")).unwrap();
    let record = &state["images"]["golden.chroot.app"];
    assert_eq!(record["artifact"]["attributes"]["sha256"], sha256(&app));
    assert_eq!(
        record["parents"]["golden.chroot.base"]["artifact_id"],
        state["images"]["golden.chroot.base"]["artifact"]["id"]
    );

    // A second apply with no change does nothing.
    let again = p.run(&["apply", "--auto-approve"]);
    again.success();
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
}

#[test]
fn same_content_address_gives_byte_identical_images() {
    require_root!();
    let p = project(TWO);
    p.file("files/app.conf", "listen = 8080\n");
    p.run(&["apply", "--auto-approve"]).success();
    let first = (
        sha256(&output(&p, "golden-chroot-base-", ".qcow2")),
        sha256(&output(&p, "golden-chroot-app-", ".qcow2")),
    );
    std::fs::remove_dir_all(p.path().join("output")).unwrap();
    std::fs::remove_dir_all(p.path().join("state")).unwrap();
    p.run(&["apply", "--auto-approve"]).success();
    let second = (
        sha256(&output(&p, "golden-chroot-base-", ".qcow2")),
        sha256(&output(&p, "golden-chroot-app-", ".qcow2")),
    );
    assert_eq!(
        first, second,
        "rebuilding from scratch gives the same bytes"
    );
}

#[test]
fn a_failing_provisioner_leaves_no_mounts_and_no_work_dir() {
    require_root!();
    let p = project(
        r#"
source "chroot" "broken" {
  base     = "rootfs/busybox.tar.gz"
  work_dir = "work"
}
build {
  sources = ["source.chroot.broken"]
  provisioner "shell" {
    inline = ["echo about to fail", "exit 7"]
  }
}
"#,
    );
    let run = p.run(&["apply", "--auto-approve"]);
    run.code(1);
    assert!(
        run.stderr.contains("exited with status 7"),
        "{}",
        run.stderr
    );
    no_mounts_left(&p);
    let left: Vec<_> = std::fs::read_dir(p.path().join("work")).unwrap().collect();
    assert!(left.is_empty(), "work dir removed: {left:?}");
    assert!(
        !p.path().join("state/local.json").exists()
            || !p.read("state/local.json").contains("chroot.broken")
    );
}

#[test]
fn interrupting_apply_unmounts_and_records_nothing_half_done() {
    require_root!();
    let p = project(
        r#"
source "chroot" "slow" {
  base     = "rootfs/busybox.tar.gz"
  work_dir = "work"
}
build {
  sources = ["source.chroot.slow"]
  provisioner "shell" {
    inline = ["touch /tmp/started", "sleep 30"]
  }
}
"#,
    );
    let child = Command::new(util::bin())
        .current_dir(p.path())
        .args(["apply", "--auto-approve"])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the provisioner runs inside the chroot.
    let started = std::time::Instant::now();
    loop {
        let running = std::fs::read_dir(p.path().join("work"))
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.path().join("root/tmp/started").exists());
        if running {
            break;
        }
        assert!(started.elapsed().as_secs() < 30, "the build never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Ctrl-C: imgform runs provisioner commands in their own process group
    // and stops them itself, so signalling imgform alone is what a terminal does.
    let pid = child.id();
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 128 + SIGINT, as a shell reports an interrupted command.
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("Interrupted") && stderr.contains("cancelled"),
        "{stderr}"
    );
    assert!(started.elapsed().as_secs() < 25, "apply stopped promptly");
    no_mounts_left(&p);
    assert!(
        !p.path().join("state/local.json").exists()
            || !p.read("state/local.json").contains("chroot.slow")
    );
    let left: Vec<_> = std::fs::read_dir(p.path().join("work")).unwrap().collect();
    assert!(left.is_empty(), "work dir removed: {left:?}");
}

/// SIGKILL gives imgform no chance to unmount: the mounts live in the
/// build's own mount namespace, which the kernel ends with the process.
#[test]
fn sigkill_during_provisioning_leaves_no_mount() {
    require_root!();
    let p = project(
        r#"
source "chroot" "slow" {
  base     = "rootfs/busybox.tar.gz"
  work_dir = "work"
}
build {
  sources = ["source.chroot.slow"]
  provisioner "shell" {
    inline = ["test -e /proc/self/status", "test -e /dev/null", "touch /tmp/started", "sleep 30"]
  }
}
"#,
    );
    let mut child = Command::new(util::bin())
        .current_dir(p.path())
        .args(["apply", "--auto-approve"])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let work = loop {
        let running = std::fs::read_dir(p.path().join("work"))
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.path().join("root/tmp/started").exists());
        if let Some(work) = running {
            break work.path();
        }
        assert!(started.elapsed().as_secs() < 30, "the build never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // Nothing was ever mounted where the host sees it, and nothing is now.
    no_mounts_left(&p);
    // The stale work dir is plain directories: /dev in it is not the host's.
    assert!(
        !work.join("root/dev/null").exists(),
        "host /dev visible in the work dir"
    );
    assert!(
        !work.join("root/proc/self").exists(),
        "a /proc visible in the work dir"
    );
    // The provisioner runs on in its own process group: stop the ones
    // whose root is this work dir (and only those).
    let root = work.join("root");
    for proc_entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = proc_entry.file_name().to_string_lossy().into_owned();
        if pid.parse::<u32>().is_ok()
            && std::fs::read_link(proc_entry.path().join("root")).is_ok_and(|r| r == root)
        {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}

#[test]
fn a_deleted_output_is_missing_in_the_next_plan_and_keep_previous_prunes() {
    require_root!();
    let p = project(
        r#"
variable "v" {
  default = "1"
}
source "chroot" "img" {
  base          = "rootfs/busybox.tar.gz"
  keep_previous = 0
}
build {
  sources = ["source.chroot.img"]
  provisioner "shell" {
    inline = ["echo ${var.v} > /etc/v"]
  }
}
"#,
    );
    p.run(&["apply", "--auto-approve"]).success();
    let first = output(&p, "chroot-img-", ".qcow2");
    std::fs::remove_file(&first).unwrap();
    let json = p.run(&["plan", "--json"]).json();
    let change = &json["changes"][0];
    assert_eq!(change["action"], "rebuild");
    assert_eq!(change["reasons"][0]["kind"], "artifact_missing");
    insta::with_settings!({filters => util::filters()}, {
        insta::assert_snapshot!("plan_artifact_missing", p.run(&["plan"]).stdout);
    });
    p.run(&["apply", "--auto-approve"]).success();
    assert!(
        first.exists(),
        "rebuilt at the same path (same content address)"
    );
    // --refresh=false does not look: no changes.
    std::fs::remove_file(&first).unwrap();
    p.run(&["plan", "--refresh=false", "--detailed-exitcode"])
        .code(0);
    p.run(&["apply", "--auto-approve"]).success();

    // A changed input: a new file; keep_previous = 0 deletes the old one.
    p.run(&["apply", "--auto-approve", "--var", "v=2"])
        .success();
    let now = output(&p, "chroot-img-", ".qcow2");
    assert_ne!(now, first);
    assert!(!first.exists(), "old image deleted with keep_previous = 0");
    assert_eq!(cat_in_image(&now, "/etc/v"), "2\n");
}

#[test]
fn an_image_changed_since_its_build_is_artifact_changed_and_rebuilt() {
    require_root!();
    let p = project(
        r#"
source "chroot" "img" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
build {
  sources = ["source.chroot.img"]
}
"#,
    );
    p.run(&["apply", "--auto-approve"]).success();
    p.run(&["plan", "--detailed-exitcode"]).code(0);
    let image = output(&p, "chroot-img-", ".tar");
    let built = sha256(&image);
    // Edited in place: same name, same size, other bytes.
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&image, &bytes).unwrap();
    let now = sha256(&image);

    let plan = p.run(&["plan", "--json"]);
    let change = &plan.json()["changes"][0];
    assert_eq!(change["action"], "rebuild");
    assert_eq!(change["reasons"][0]["kind"], "artifact_changed");
    assert_eq!(change["reasons"][0]["recorded"], format!("sha256:{built}"));
    assert_eq!(change["reasons"][0]["found"], format!("sha256:{now}"));
    let human = p.run(&["plan", "--no-color"]);
    assert!(
        human.stdout.contains("was changed since it was built"),
        "{}",
        human.stdout
    );
    let drift = p.run(&["drift", "--json"]);
    drift.code(2);
    let entry = &drift.json()["images"][0];
    assert_eq!(entry["status"], "stale");
    assert_eq!(entry["reasons"][0]["kind"], "artifact_changed");

    p.run(&["apply", "--auto-approve"]).success();
    assert_eq!(sha256(&output(&p, "chroot-img-", ".tar")), built);
    p.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn raw_and_tar_formats() {
    require_root!();
    let p = project(
        r#"
source "chroot" "r" {
  base   = "rootfs/busybox.tar.gz"
  format = "raw"
  size   = "64M"
}
source "chroot" "t" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
build {
  sources = ["source.chroot.r", "source.chroot.t"]
  provisioner "shell" {
    inline = ["echo marker > /etc/marker"]
  }
}
"#,
    );
    p.run(&["apply", "--auto-approve"]).success();
    let raw = output(&p, "chroot-r-", ".raw");
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 64 << 20);
    let out = Command::new("debugfs")
        .args(["-R", "cat /etc/marker"])
        .arg(&raw)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "marker\n");
    let tar = output(&p, "chroot-t-", ".tar");
    let out = Command::new("tar")
        .args(["-xOf"])
        .arg(&tar)
        .arg("./etc/marker")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "marker\n");
}

#[test]
fn modules_run_in_place_with_their_own_variables_and_rebuild_on_edit() {
    require_root!();
    let p = project(
        r#"
source "chroot" "base" {
  base = "rootfs/busybox.tar.gz"
}
source "chroot" "other" {
  base = "rootfs/busybox.tar.gz"
}
build {
  sources = ["source.chroot.base"]
  provisioner "shell" {
    inline = ["echo first > /etc/order"]
  }
  module "devuser" {
    source          = "modules/devuser"
    username        = "ops"
    authorized_keys = ["ssh-ed25519 AAAATEST ops@test"]
  }
  module "hardening-ssh" {
    source = "modules/hardening-ssh"
  }
  module "greeting" {
    source = "modules/greeting"
    name   = "world"
  }
}
build {
  sources = ["source.chroot.other"]
  provisioner "shell" {
    inline = ["true"]
  }
}
"#,
    );
    let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("modules");
    util::copy_tree(&library, &p.path().join("modules"));
    p.file(
        "modules/greeting/module.hcl",
        r#"
depends_on = ["motd"]
variable "name" {
  type = string
}
provisioner "shell" {
  script           = "greet.sh"
  environment_vars = ["NAME=${var.name}", "MODULE=${path.module}"]
}
"#,
    );
    p.file("modules/greeting/greet.sh", "#!/bin/sh\necho \"hello $NAME from $MODULE\" > /etc/greeting\ncat /etc/order >> /etc/greeting\n");
    p.run(&["apply", "--auto-approve"]).success();
    let image = output(&p, "chroot-base-", ".qcow2");
    let passwd = cat_in_image(&image, "/etc/passwd");
    assert!(
        passwd.contains("ops:x:1000:1000::/home/ops:/bin/sh"),
        "{passwd}"
    );
    assert_eq!(
        cat_in_image(&image, "/home/ops/.ssh/authorized_keys"),
        "ssh-ed25519 AAAATEST ops@test\n"
    );
    assert_eq!(
        cat_in_image(&image, "/etc/sudoers.d/ops"),
        "ops ALL=(ALL) NOPASSWD:ALL\n"
    );
    let sshd = cat_in_image(&image, "/etc/ssh/sshd_config");
    assert!(
        sshd.contains("PermitRootLogin no") && sshd.contains("PasswordAuthentication no"),
        "{sshd}"
    );
    assert_eq!(
        cat_in_image(&image, "/etc/motd"),
        "This machine was built by imgform.\n",
        "motd ran as a dependency with its defaults"
    );
    assert_eq!(
        cat_in_image(&image, "/etc/greeting"),
        "hello world from modules/greeting\nfirst\n"
    );

    // Editing a module's file rebuilds exactly the images that use it.
    p.file(
        "modules/greeting/greet.sh",
        "#!/bin/sh\necho changed > /etc/greeting\n",
    );
    let json = p.run(&["plan", "--json"]).json();
    let action = |a: &str| {
        json["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"] == a)
            .unwrap()["action"]
            .clone()
    };
    assert_eq!(action("chroot.base"), "rebuild");
    assert_eq!(action("chroot.other"), "no-op");
    let base = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "chroot.base")
        .unwrap()
        .clone();
    assert!(
        base["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "file_changed" && r["path"] == "modules/greeting/greet.sh"),
        "{base}"
    );
}

#[test]
fn diskimage_builder_elements_are_modules() {
    require_root!();
    let p = project(
        r#"
source "chroot" "dib" {
  base = "rootfs/busybox.tar.gz"
}
build {
  sources = ["source.chroot.dib"]
  module "my-app" {
    source = "elements/my-app"
  }
}
"#,
    );
    // my-app depends on my-base; phases run per phase across elements, by name.
    p.file(
        "elements/my-base/environment.d/10-base-env",
        "export BASE_GREETING=from-base-env\n",
    );
    p.file(
        "elements/my-base/install.d/10-base",
        "#!/bin/sh\nset -e\necho \"10-base $BASE_GREETING\" >> /var/log/dib-order\n",
    );
    p.file(
        "elements/my-base/root.d/05-host",
        "#!/bin/sh\nset -e\necho host-phase > \"$TARGET_ROOT/etc/root-d-ran\"\n",
    );
    p.file("elements/my-app/element-deps", "my-base\n");
    p.file(
        "elements/my-app/pre-install.d/50-pre",
        "#!/bin/sh\necho 50-pre >> /var/log/dib-order\n",
    );
    p.file(
        "elements/my-app/install.d/20-app",
        "#!/bin/sh\necho \"20-app $BASE_GREETING\" >> /var/log/dib-order\n",
    );
    p.file(
        "elements/my-app/install.d/05-first",
        "#!/bin/sh\necho 05-first >> /var/log/dib-order\n",
    );
    p.file(
        "elements/my-app/post-install.d/10-post",
        "#!/bin/sh\necho 10-post >> /var/log/dib-order\n",
    );
    p.file(
        "elements/my-app/finalise.d/99-final",
        "#!/bin/sh\necho 99-final >> /var/log/dib-order\n",
    );
    // As in DIB, only executable hooks run: this one is skipped.
    p.file(
        "elements/my-app/install.d/30-not-executable",
        "#!/bin/sh\necho 30-not-executable >> /var/log/dib-order\n",
    );
    for hook in [
        "elements/my-base/install.d/10-base",
        "elements/my-base/root.d/05-host",
        "elements/my-app/pre-install.d/50-pre",
        "elements/my-app/install.d/20-app",
        "elements/my-app/install.d/05-first",
        "elements/my-app/post-install.d/10-post",
        "elements/my-app/finalise.d/99-final",
    ] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p.path().join(hook), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let run = p.run(&["apply", "--auto-approve"]);
    run.success();
    let image = output(&p, "chroot-dib-", ".qcow2");
    assert_eq!(
        cat_in_image(&image, "/var/log/dib-order"),
        "50-pre\n05-first\n10-base from-base-env\n20-app from-base-env\n10-post\n99-final\n"
    );
    assert_eq!(cat_in_image(&image, "/etc/root-d-ran"), "host-phase\n");
    // Staging files are cleaned up.
    assert_eq!(
        cat_in_image(&image, "/tmp/in_target.d/environment.d/10-base-env"),
        ""
    );
}

#[test]
fn bad_chroot_config_is_a_diagnostic() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
source "chroot" "x" {
  format = "vmdk"
}
build {
  sources = ["source.chroot.x"]
  provisioner "ansible" {
    playbook_file = "site.yml"
  }
}
"#,
    );
    p.file("site.yml", "- hosts: all\n");
    let run = p.run(&["validate"]);
    run.code(1);
    assert!(run.stderr.contains("needs a `base`"), "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown chroot format"),
        "{}",
        run.stderr
    );
}

#[test]
fn bases_as_compressed_tarballs_or_directories_and_directory_uploads() {
    require_root!();
    let p = project(
        r#"
source "chroot" "zst" {
  base   = "rootfs/busybox.tar.zst"
  format = "tar"
}
source "chroot" "xz" {
  base   = "rootfs/busybox.tar.xz"
  format = "tar"
}
source "chroot" "dir" {
  base   = "rootfs/tree"
  format = "tar"
}
build {
  sources = ["source.chroot.zst", "source.chroot.xz", "source.chroot.dir"]
  provisioner "file" {
    source      = "files/conf.d"
    destination = "/etc/app"
  }
  provisioner "file" {
    source      = "files/www/"
    destination = "/srv/www"
  }
}
"#,
    );
    let rootfs = p.path().join("rootfs");
    let tree = rootfs.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    assert!(Command::new("tar")
        .arg("-xzf")
        .arg(rootfs.join("busybox.tar.gz"))
        .arg("-C")
        .arg(&tree)
        .status()
        .unwrap()
        .success());
    assert!(Command::new("tar")
        .args(["--zstd", "-cf"])
        .arg(rootfs.join("busybox.tar.zst"))
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .unwrap()
        .success());
    assert!(Command::new("tar")
        .args(["-cJf"])
        .arg(rootfs.join("busybox.tar.xz"))
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .unwrap()
        .success());
    p.file("files/conf.d/a.conf", "a = 1\n");
    p.file("files/conf.d/sub/b.conf", "b = 2\n");
    p.file("files/www/index.html", "<h1>hi</h1>\n");
    p.run(&["apply", "--auto-approve"]).success();
    for name in ["zst", "xz", "dir"] {
        let tar = output(&p, &format!("chroot-{name}-"), ".tar");
        let read = |path: &str| {
            let out = Command::new("tar")
                .args(["-xOf"])
                .arg(&tar)
                .arg(path)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        // Packer's rule: a source dir without a trailing slash goes inside
        // the destination, with one its contents do.
        assert_eq!(read("./etc/app/conf.d/a.conf"), "a = 1\n", "{name}");
        assert_eq!(read("./etc/app/conf.d/sub/b.conf"), "b = 2\n", "{name}");
        assert_eq!(read("./srv/www/index.html"), "<h1>hi</h1>\n", "{name}");
        assert!(!read("./bin/busybox").is_empty(), "{name}: base unpacked");
    }
    // The directory base is hashed as a tree: editing a file in it is a change.
    p.file("rootfs/tree/etc/extra", "x\n");
    let json = p.run(&["plan", "--json"]).json();
    let dir = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "chroot.dir")
        .unwrap()
        .clone();
    assert_eq!(dir["action"], "rebuild", "{dir}");
    assert!(
        dir["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "file_changed" && r["path"] == "rootfs/tree/etc/extra"),
        "{dir}"
    );
}

#[test]
fn state_recover_adopts_an_artifact_captured_before_a_crash() {
    require_root!();
    let p = project(
        r#"
source "chroot" "img" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
build {
  sources = ["source.chroot.img"]
  provisioner "shell" {
    inline = ["echo recovered > /etc/marker"]
  }
}
"#,
    );
    // SIGKILL between capturing the image and writing the state.
    let run = p.run_env(
        &["apply", "--auto-approve"],
        &[("IMGFORM_FAULT", "kill-after-capture")],
    );
    assert_ne!(run.code, 0, "the process was killed");
    let tar = output(&p, "chroot-img-", ".tar");
    assert!(
        !p.read("state/local.json").contains("chroot.img"),
        "the state does not know the image"
    );
    // A killed run leaves its lock: the next run names it, force-unlock removes it.
    let blocked = p.run(&["plan"]);
    blocked.code(1);
    let lock: serde_json::Value = serde_json::from_str(&p.read("state/.lock")).unwrap();
    let id = lock["id"].as_str().unwrap();
    assert!(blocked.stderr.contains(id), "{}", blocked.stderr);
    p.run(&["force-unlock", id]).success();
    assert_eq!(p.run(&["plan", "--json"]).json()["summary"]["build"], 1);

    let dry = p.run(&["state", "recover"]);
    dry.success();
    let rel = tar
        .strip_prefix(p.path())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        dry.stdout.contains(&format!("+ chroot.img  {rel}")),
        "{}",
        dry.stdout
    );
    assert!(
        !p.read("state/local.json").contains("chroot.img"),
        "nothing adopted without --auto-approve"
    );
    p.run(&["state", "recover", "--auto-approve"]).success();
    p.run(&["plan", "--detailed-exitcode"]).code(0);
    let state: serde_json::Value = serde_json::from_str(&p.read("state/local.json")).unwrap();
    assert_eq!(
        state["images"]["chroot.img"]["artifact"]["attributes"]["sha256"],
        sha256(&tar)
    );

    // state import: forget it, then adopt it by id; a foreign file is refused.
    p.run(&["state", "rm", "chroot.img"]).success();
    let wrong = p.run(&["state", "import", "chroot.img", "output/not-ours.tar"]);
    wrong.code(1);
    assert!(
        wrong.stderr.contains("is not an artifact of chroot.img"),
        "{}",
        wrong.stderr
    );
    p.run(&["state", "import", "chroot.img", &rel]).success();
    p.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// Runs imgform as `nobody` (uid 65534) in the project, whose files it owns.
fn run_unprivileged(p: &Project, args: &[&str]) -> util::Run {
    let status = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(p.path())
        .status()
        .unwrap();
    assert!(status.success());
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(util::bin())
        .args(args)
        .current_dir(p.path())
        .env("HOME", p.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
        .into()
}

#[test]
fn builds_without_root_in_a_user_namespace() {
    require_root!(); // to become `nobody` and to prepare the files
    let userns = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["unshare", "--map-root-user", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !userns {
        eprintln!("skipped: unprivileged user namespaces are disabled here");
        return;
    }
    let p = project(
        r#"
source "chroot" "img" {
  base     = "rootfs/busybox.tar.gz"
  work_dir = "work"
}
build {
  sources = ["source.chroot.img"]
  provisioner "shell" {
    inline = ["mkdir -p /etc/app", "id -u > /etc/app/uid", "echo built-unprivileged > /etc/app/marker"]
  }
}
"#,
    );
    let out = run_unprivileged(&p, &["apply", "--auto-approve"]);
    out.success();
    let image = output(&p, "chroot-img-", ".qcow2");
    assert_eq!(
        cat_in_image(&image, "/etc/app/marker"),
        "built-unprivileged\n"
    );
    // Root inside the namespace, not on the host.
    assert_eq!(cat_in_image(&image, "/etc/app/uid"), "0\n");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&image).unwrap());
    assert_eq!(owner, 65534, "the image belongs to the user who built it");
    no_mounts_left(&p);
    // The same definitions give the same address as a root build would plan.
    run_unprivileged(&p, &["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_state_naming_a_file_outside_the_output_folder_is_refused_not_followed() {
    require_root!();
    let p = project(
        r#"
source "chroot" "gone" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
build {
  sources = ["source.chroot.gone"]
}
"#,
    );
    p.run(&["apply", "--auto-approve"]).success();
    // Someone who can write the state points the record elsewhere.
    let outside = p.path().join("elsewhere/victim-0123456789ab.tar");
    std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
    std::fs::write(&outside, "keep me").unwrap();
    let state = p.read("state/local.json");
    let id = serde_json::from_str::<serde_json::Value>(&state).unwrap()["images"]["chroot.gone"]
        ["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let absolute = outside.display().to_string();
    for forged in [
        "output/../elsewhere/victim-0123456789ab.tar",
        absolute.as_str(),
    ] {
        p.file("state/local.json", &state.replace(&id, forged));
        // Removing the image from the definitions would delete the artifact.
        p.file("images.pkr.hcl", "");
        let run = p.run(&["apply", "--auto-approve"]);
        run.code(1);
        run.stderr_has(&format!("the state names `{forged}` as a local artifact"));
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
    }
}

#[test]
fn state_recover_refuses_an_image_cut_short() {
    require_root!();
    let p = project(
        r#"
source "chroot" "img" {
  base = "rootfs/busybox.tar.gz"
}
build {
  sources = ["source.chroot.img"]
}
"#,
    );
    let run = p.run_env(
        &["apply", "--auto-approve"],
        &[("IMGFORM_FAULT", "kill-after-capture")],
    );
    assert_ne!(run.code, 0, "the process was killed");
    let lock: serde_json::Value = serde_json::from_str(&p.read("state/.lock")).unwrap();
    p.run(&["force-unlock", lock["id"].as_str().unwrap()])
        .success();
    // The disk loses its second half (as a copy killed midway would leave it).
    let disk = output(&p, "chroot-img-", ".qcow2");
    let len = std::fs::metadata(&disk).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);

    let recover = p.run(&["state", "recover", "--auto-approve"]);
    recover.code(1);
    recover
        .stderr_has("is damaged")
        .stderr_has("it is not adopted")
        .stderr_has("hint: delete it and run `imgform apply`");
    assert!(!p.read("state/local.json").contains("chroot.img"));
    // The next apply builds it again, whole.
    p.run(&["apply", "--auto-approve"]).success();
    p.run(&["plan", "--detailed-exitcode"]).code(0);
    let check = std::process::Command::new("qemu-img")
        .args(["check", "-q"])
        .arg(output(&p, "chroot-img-", ".qcow2"))
        .status()
        .unwrap();
    assert!(check.success());
}

/// A `file` provisioner's `source` that is itself a symlink leading out of
/// the definition dir is hashed as a link (where it points, never the bytes
/// it points at) and copied into the image as a link.
#[test]
fn a_source_that_links_out_of_the_definition_dir_is_hashed_and_copied_as_a_link() {
    require_root!();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("host-secret");
    std::fs::write(&secret, "outside-bytes-7f3a91\n").unwrap();
    let p = project(
        r#"
source "chroot" "linked" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
build {
  sources = ["source.chroot.linked"]
  provisioner "file" {
    source      = "files/host-secret"
    destination = "/etc/app/host-secret"
  }
  provisioner "file" {
    sources     = ["files/inside"]
    destination = "/etc/app/"
  }
}
"#,
    );
    std::fs::create_dir_all(p.path().join("files")).unwrap();
    std::os::unix::fs::symlink(&secret, p.path().join("files/host-secret")).unwrap();
    p.file("files/real", "inside-bytes\n");
    // A link inside the definition dir is read through, as before.
    std::os::unix::fs::symlink("real", p.path().join("files/inside")).unwrap();

    let plan = p.run(&["plan", "--json", "--out", "plan.bin"]);
    plan.success();
    let address = plan.json()["changes"][0]["content"]["new"].clone();
    assert!(address.is_string(), "{}", plan.stdout);
    assert!(!plan.stdout.contains("outside-bytes"), "{}", plan.stdout);
    p.run(&["apply", "plan.bin"]).success();
    let grep = |what: &str| {
        walkdir::WalkDir::new(p.path())
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file() && !e.path().starts_with(p.path().join("rootfs")))
            .filter(|e| {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                bytes.windows(what.len()).any(|w| w == what.as_bytes())
            })
            .map(|e| e.path().display().to_string())
            .collect::<Vec<_>>()
    };
    // Neither the plan file, the state, its objects nor the image hold it.
    assert_eq!(grep("outside-bytes-7f3a91"), Vec::<String>::new());

    let tar = output(&p, "chroot-linked-", ".tar");
    let listing = Command::new("tar").arg("-tvf").arg(&tar).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let line = listing
        .lines()
        .find(|l| l.contains("etc/app/host-secret"))
        .unwrap_or_else(|| panic!("no etc/app/host-secret in the image:\n{listing}"));
    assert!(
        line.starts_with('l') && line.ends_with(&format!("-> {}", secret.display())),
        "copied as a link: {line}"
    );
    let inside = Command::new("tar")
        .args(["-xOf"])
        .arg(&tar)
        .arg("./etc/app/inside")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&inside.stdout), "inside-bytes\n");

    // The bytes it points at are not an input: changing them changes nothing.
    std::fs::write(&secret, "other-outside-bytes\n").unwrap();
    let again = p.run(&["plan", "--json"]);
    assert_eq!(again.json()["changes"][0]["content"]["new"], address);
    p.run(&["plan", "--detailed-exitcode"]).success();
    // Where it points is.
    std::fs::remove_file(p.path().join("files/host-secret")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", p.path().join("files/host-secret")).unwrap();
    let moved = p.run(&["plan", "--json"]);
    assert_eq!(
        moved.json()["changes"][0]["action"],
        "rebuild",
        "{}",
        moved.stdout
    );
}
