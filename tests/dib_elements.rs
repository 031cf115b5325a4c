//! diskimage-builder's own elements — the PyPI package, installed by
//! scripts/install-test-deps.sh and used from where pip put it — applied to
//! a Debian root filesystem by the chroot builder with DIB's build
//! environment: `devuser`, `growroot` (with `dib-init-system` and
//! `install-static`), `cloud-init-datasources` and `package-installs`
//! (through `dpkg`, which installs rsync from Debian's mirror). The result
//! is read from the packed image. Root only (chroot, mounts).

mod util;

use std::path::Path;
use std::process::Command;

use util::{debian, is_root, Project};

/// A file of the packed image (a tar), "" when it is not there.
fn read(tar: &Path, path: &str) -> String {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(tar)
        .arg(format!(".{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn listing(tar: &Path) -> String {
    let out = Command::new("tar").arg("-tvf").arg(tar).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn the_tar(p: &Project) -> std::path::PathBuf {
    std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.extension().is_some_and(|e| e == "tar"))
        .expect("a tar in output/")
}

const DEFINITIONS: &str = r#"
variable "user" {
  default = "ops"
}

source "chroot" "dib" {
  base   = "rootfs.tar.gz"
  format = "tar"
}

build {
  sources = ["source.chroot.dib"]

  module "elements" {
    source   = ["elements", "diskimage-builder"]
    elements = ["dpkg", "devuser", "growroot", "cloud-init-datasources", "install-static", "site"]
    distro   = "debian"
    release  = "bookworm"
    environment = {
      DIB_DEV_USER_USERNAME       = var.user
      DIB_DEV_USER_SHELL          = "/bin/bash"
      DIB_DEV_USER_PWDLESS_SUDO   = "yes"
      DIB_DEV_USER_AUTHORIZED_KEYS = "keys/ops.pub"
      DIB_CLOUD_INIT_DATASOURCES  = "ConfigDrive, NoCloud"
    }
  }
}
"#;

#[test]
fn real_elements_apply_on_debian_with_dibs_build_environment() {
    if !is_root() {
        eprintln!("skipped: the chroot builder needs root here");
        return;
    }
    let dib_python = "/var/cache/imgform/dib-venv/bin/python";
    let p = Project::new();
    std::fs::copy(debian::cloud_rootfs(), p.path().join("rootfs.tar.gz")).unwrap();
    p.file("images.pkr.hcl", DEFINITIONS);
    p.file(
        "keys/ops.pub",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDib ops@example\n",
    );
    // An element of our own beside DIB's: it sees DIB's environment, the
    // other elements' files in the hooks dir, and runs in DIB's phase order.
    p.file("elements/site/element-deps", "package-installs\n");
    p.file("elements/site/package-installs.yaml", "tree:\n");
    p.file(
        "elements/site/environment.d/10-site",
        "export SITE_GREETING=${SITE_GREETING:-from-environment-d}\n",
    );
    p.file(
        "elements/site/extra-data.d/10-site",
        "#!/bin/bash\nset -eu\necho \"$IMAGE_ELEMENT\" > \"$TMP_HOOKS_PATH/site-elements\"\necho \"$TMP_MOUNT_PATH\" | grep -q /root$\ntest \"$TARGET_ROOT\" = \"$TMP_MOUNT_PATH\"\nget_image_element_array | grep -q '\\[devuser\\]=/'\necho \"$ELEMENTS_PATH\" > \"$TMP_HOOKS_PATH/site-elements-path\"\n",
    );
    p.file(
        "elements/site/install.d/99-site",
        "#!/bin/bash\nset -eu\n{ echo \"$SITE_GREETING $DISTRO_NAME $DIB_RELEASE $ARCH $DIB_INIT_SYSTEM\"; cat /tmp/in_target.d/site-elements; test -x /usr/local/bin/pkg-map && echo pkg-map-installed; command -v rsync; } > /etc/site-install\n",
    );
    p.file(
        "elements/site/cleanup.d/10-site",
        "#!/bin/bash\nset -eu\ntest ! -d \"$TARGET_ROOT/tmp/in_target.d/cleanup.d/nonexistent\"\necho cleanup-ran > \"$TARGET_ROOT/etc/site-cleanup\"\n",
    );
    for f in [
        "extra-data.d/10-site",
        "install.d/99-site",
        "cleanup.d/10-site",
    ] {
        let path = p.path().join("elements/site").join(f);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let env = [("DIB_PYTHON_EXEC", dib_python)];

    let plan = p.run_env(&["plan", "--json"], &env);
    plan.success();
    let run = p.run_env(&["apply", "--auto-approve"], &env);
    run.success();
    let tar = the_tar(&p);

    // devuser: the user, its shell, passwordless sudo, its authorized key.
    let passwd = read(&tar, "/etc/passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("ops:") && l.ends_with(":/bin/bash")),
        "{passwd}"
    );
    assert_eq!(
        read(&tar, "/etc/sudoers.d/ops"),
        "ops ALL=(ALL) NOPASSWD:ALL\n"
    );
    assert_eq!(
        read(&tar, "/home/ops/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDib ops@example\n"
    );
    // cloud-init-datasources.
    assert_eq!(
        read(
            &tar,
            "/etc/cloud/cloud.cfg.d/91-dib-cloud-init-datasources.cfg"
        ),
        "datasource_list: [  ConfigDrive, NoCloud, None ]\n"
    );
    assert!(read(
        &tar,
        "/etc/cloud/cloud.cfg.d/93-dib-cloud-init-disable-datasource-network-activation.cfg"
    )
    .contains("disable_network_activation: true"));
    // growroot: its static script (install-static, which needed rsync from
    // package-installs) and its systemd unit, enabled.
    assert!(read(&tar, "/usr/local/sbin/growroot").contains("growpart"));
    assert!(read(&tar, "/usr/lib/systemd/system/growroot.service").contains("growroot"));
    let files = listing(&tar);
    assert!(
        files.contains("multi-user.target.wants/growroot.service"),
        "growroot.service is enabled"
    );
    // package-installs, through the pkg-map and dpkg elements.
    assert!(files.contains("./usr/bin/rsync"), "rsync was installed");
    assert!(
        files.contains("./usr/bin/tree"),
        "our element's package too"
    );
    // Our element: DIB's environment in each phase.
    let site = read(&tar, "/etc/site-install");
    assert!(
        site.starts_with("from-environment-d debian bookworm amd64 systemd\n"),
        "{site}"
    );
    assert!(
        site.contains("devuser") && site.contains("growroot"),
        "{site}"
    );
    assert!(site.contains("pkg-map-installed"), "{site}");
    assert_eq!(read(&tar, "/etc/site-cleanup"), "cleanup-ran\n");
    // The hooks dir is gone, the resolver is the image's own again.
    assert!(!files.contains("./tmp/in_target.d"), "hooks dir removed");
    assert!(!files.contains("resolv.conf.ORIG"));
    // Nothing is left mounted below a work dir.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains("imgform-chroot"),
        "a mount outlived the build: {mounts}"
    );
    // Nothing written into the definition dir but state, output and logs.
    assert!(!p.path().join("image.d").exists());
}

#[test]
fn element_sets_are_checked_at_plan_time() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
source "null" "n" {
  communicator = "none"
}
build {
  sources = ["source.null.n"]
  module "set" {
    source   = "elements"
    elements = ["app", "block-device-gpt", "block-device-mbr"]
  }
}
"#,
    );
    p.file("elements/app/element-deps", "base\nblock-device\n");
    p.file("elements/base/install.d/10-base", "#!/bin/sh\n");
    p.file("elements/app/install.d/10-base", "#!/bin/sh\n");
    p.file(
        "elements/block-device-gpt/element-provides",
        "block-device\n",
    );
    p.file(
        "elements/block-device-mbr/element-provides",
        "block-device\n",
    );
    let run = p.run(&["validate", "."]);
    run.code(1);
    run.stderr_has("images.pkr.hcl:9:");
    run.stderr_has("elements block-device-gpt and block-device-mbr both provide `block-device`");

    // Two hooks of one name in one phase: DIB refuses to merge them.
    p.file(
        "images.pkr.hcl",
        &p.read("images.pkr.hcl")
            .replace(", \"block-device-mbr\"", ""),
    );
    let run = p.run(&["validate", "."]);
    run.code(1);
    run.stderr_has("images.pkr.hcl:9:");
    run.stderr_has("elements base and app both have install.d/10-base");

    // A dependency nothing provides, with the closest name as a hint.
    p.remove("elements/app/install.d/10-base");
    p.file("elements/app/element-deps", "bse\nblock-device\n");
    let run = p.run(&["validate", "."]);
    run.code(1);
    run.stderr_has("element app depends on `bse`");
    run.stderr_has("did you mean `base`?");
    assert!(!p.path().join("state").exists());
}

#[test]
fn where_elements_are_kept_outside_the_project_does_not_change_addresses() {
    let root = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let path = root.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    // A checkout with its templates in defs/ and elements beside them in
    // shared/ (outside the definition dir), plus an ELEMENTS_PATH folder.
    write(
        "repo/defs/images.pkr.hcl",
        r#"
source "chroot" "n" {
  base   = "rootfs.tar.gz"
  format = "tar"
}
build {
  sources = ["source.chroot.n"]
  module "set" {
    source   = "../shared"
    elements = ["app", "lib"]
  }
}
"#,
    );
    write("repo/defs/rootfs.tar.gz", "not read by plan, only hashed\n");
    write("repo/shared/app/element-deps", "base\n");
    write("repo/shared/app/install.d/10-app", "#!/bin/sh\necho app\n");
    write(
        "tools/a/elements/base/install.d/05-base",
        "#!/bin/sh\necho base\n",
    );
    write(
        "tools/a/elements/lib/install.d/20-lib",
        "#!/bin/sh\necho lib\n",
    );
    let plan = |repo: &Path, elements: &Path| {
        let run = util::imgform_in(
            &repo.join("defs"),
            &["plan", "--json"],
            &[("ELEMENTS_PATH", elements.to_str().unwrap())],
        );
        run.success();
        run
    };
    let first = plan(
        &root.path().join("repo"),
        &root.path().join("tools/a/elements"),
    );
    let before = util::content_addresses(&first.json());
    assert_eq!(before.len(), 1);

    // The same files elsewhere, at another depth: the same addresses.
    let other = tempfile::tempdir().unwrap();
    util::copy_tree(&root.path().join("repo"), &other.path().join("x/y/repo"));
    util::copy_tree(
        &root.path().join("tools/a/elements"),
        &other.path().join("opt/elements"),
    );
    let moved = plan(
        &other.path().join("x/y/repo"),
        &other.path().join("opt/elements"),
    );
    assert_eq!(util::content_addresses(&moved.json()), before);

    // A changed element changes it.
    std::fs::write(
        other.path().join("opt/elements/lib/install.d/20-lib"),
        "#!/bin/sh\necho lib 2\n",
    )
    .unwrap();
    let changed = plan(
        &other.path().join("x/y/repo"),
        &other.path().join("opt/elements"),
    );
    assert_ne!(util::content_addresses(&changed.json()), before);
}
