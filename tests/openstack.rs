//! The `openstack` builder against the OpenStack test peers (real Keystone
//! and Glance, the Nova double; tests/peers/README.md), with a real OpenSSH
//! sshd standing in for the server (`ssh_host`/`ssh_port` override, as
//! Packer allows). The sshd accepts exactly the key pairs that exist in the
//! Nova double, as a cloud image's cloud-init installs its key pair.
//!
//! Needs root (sshd, chroot) and the peers (scripts/install-test-deps.sh).

mod util;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::openstack::Peers;
use util::sshd::{Options, Sshd};
use util::Project;

macro_rules! require_root {
    () => {
        if !util::is_root() {
            eprintln!("skipped: the openstack tests need root (sshd, chroot)");
            return;
        }
    };
}

/// The login user on the stand-in server. The Nova double writes its
/// authorized_keys file root-only (0600, in a 0700 temp dir), and sshd
/// reads it as the user logging in, so that user is root.
const LOGIN: &str = "root";

struct Cloud {
    peers: Peers,
    sshd: Sshd,
}

impl Cloud {
    fn start() -> Cloud {
        let peers = Peers::start();
        let sshd = Sshd::start_with(Options {
            moto: None,
            extra_keys_files: vec![peers.authorized_keys()],
        });
        Cloud { peers, sshd }
    }

    /// Runs imgform with the OS_* variables.
    fn run(&self, p: &Project, args: &[&str]) -> util::Run {
        self.run_with(p, args, &self.peers.os_env())
    }

    /// Runs imgform with only `OS_CLIENT_CONFIG_FILE` (clouds.yaml).
    fn run_clouds_yaml(&self, p: &Project, args: &[&str]) -> util::Run {
        let file = self.peers.clouds_yaml();
        self.run_with(
            p,
            args,
            &[(
                "OS_CLIENT_CONFIG_FILE".to_owned(),
                file.display().to_string(),
            )],
        )
    }

    fn run_with(&self, p: &Project, args: &[&str], env: &[(String, String)]) -> util::Run {
        p.run_isolated(args, env)
    }

    /// A snapshot-mode source that reaches the test sshd.
    fn source(&self, name: &str, extra: &str) -> String {
        format!(
            r#"
source "openstack" "{name}" {{
  flavor       = "m1.tiny"
  networks     = ["private"]
  image_name   = "{name}-${{uuidv4()}}"
  image_tags   = ["golden"]
  metadata = {{
    team = "platform"
  }}
  ssh_username = "{LOGIN}"
  ssh_host     = "127.0.0.1"
  ssh_port     = {port}
  ssh_timeout  = "30s"
  {extra}
}}
"#,
            port = self.sshd.port
        )
    }

    /// No server and no key pair is left in the Nova double.
    #[track_caller]
    fn assert_clean(&self) {
        let (servers, keypairs) = self.peers.live_servers_and_keypairs();
        assert!(servers.is_empty(), "servers left: {servers:#?}");
        assert!(keypairs.is_empty(), "key pairs left: {keypairs:#?}");
    }
}

const FILTER: &str = r#"source_image_filter {
    filters {
      name       = "base-os"
      visibility = "public"
      properties = {
        os_distro = "test"
      }
    }
    most_recent = true
  }"#;

fn state(p: &Project, file: &str) -> Value {
    serde_json::from_str(&p.read(&format!("state/{file}"))).unwrap_or_else(|e| {
        let files: Vec<_> = std::fs::read_dir(p.path().join("state"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        panic!("no state/{file} ({e}); state/ has {files:?}")
    })
}

/// The state of images authenticated with OS_* variables (no cloud name).
const ENV_STATE: &str = "openstack-default-RegionOne.json";
/// The state of images of `cloud = "imgform-test"`.
const CLOUD_STATE: &str = "openstack-imgform-test-RegionOne.json";

fn recorded(p: &Project, file: &str, addr: &str) -> Value {
    let record = state(p, file)["images"][addr].clone();
    assert!(record.is_object(), "{addr} not recorded in {file}");
    record
}

fn tags(image: &Value) -> Vec<String> {
    let mut t: Vec<String> = image["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    t.sort();
    t
}

fn rootfs() -> &'static Path {
    util::busybox_rootfs()
}

#[test]
fn upload_mode_puts_a_chroot_qcow2_into_glance() {
    require_root!();
    let peers = Peers::start();
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("rootfs")).unwrap();
    std::fs::create_dir_all(p.path().join("work")).unwrap();
    std::fs::copy(rootfs(), p.path().join("rootfs/busybox.tar.gz")).unwrap();
    p.file(
        "images.pkr.hcl",
        r#"
source "chroot" "base" {
  base     = "rootfs/busybox.tar.gz"
  work_dir = "work"
}

source "openstack" "cloud" {
  cloud            = "imgform-test"
  upload_from      = image.golden.chroot.base.id
  image_name       = "golden-base"
  image_visibility = "private"
  image_tags       = ["golden", "busybox"]
  metadata = {
    os_distro = "busybox"
  }
}

build {
  name    = "golden"
  sources = ["source.chroot.base"]
  provisioner "shell" {
    inline = ["echo uploaded > /etc/marker"]
  }
}

build {
  name    = "golden"
  sources = ["source.openstack.cloud"]
  provisioner "shell-local" {
    inline = ["echo local-ran > shell-local.out"]
  }
}
"#,
    );
    let run = |args: &[&str]| {
        let file = peers.clouds_yaml();
        p.run_env(args, &[("OS_CLIENT_CONFIG_FILE", file.to_str().unwrap())])
    };
    let plan = run(&["plan", "--json"]);
    plan.success();
    let started = Instant::now();
    let out = run(&["apply", "--auto-approve"]);
    out.success();
    eprintln!(
        "chroot build + upload to Glance: {:.2}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(p.read("shell-local.out"), "local-ran\n");

    let local: Value = serde_json::from_str(&p.read("state/local.json")).unwrap();
    let qcow2 = local["images"]["golden.chroot.base"]["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = recorded(&p, CLOUD_STATE, "golden.openstack.cloud");
    let id = record["artifact"]["id"].as_str().unwrap();
    let attributes = &record["artifact"]["attributes"];
    assert_eq!(attributes["mode"], "upload");
    assert_eq!(attributes["cloud"], "imgform-test");
    assert_eq!(attributes["name"], "golden-base");
    assert_eq!(
        attributes["sha256"],
        local["images"]["golden.chroot.base"]["artifact"]["attributes"]["sha256"]
    );
    assert_eq!(
        record["parents"]["golden.chroot.base"]["artifact_id"],
        qcow2.as_str()
    );

    let image = peers.image(id).expect("the image is in Glance");
    assert_eq!(image["status"], "active");
    assert_eq!(image["name"], "golden-base");
    assert_eq!(image["disk_format"], "qcow2");
    assert_eq!(image["visibility"], "private");
    assert_eq!(image["imgform_address"], "golden.openstack.cloud");
    assert_eq!(image["imgform_content"], record["content_address"]);
    assert_eq!(image["os_distro"], "busybox");
    assert_eq!(tags(&image), ["busybox", "golden", "imgform"]);
    // The bytes in Glance are the local qcow2's.
    let local_bytes = std::fs::read(p.path().join(&qcow2)).unwrap();
    assert!(peers.download(id) == local_bytes, "uploaded bytes differ");

    // Nothing changed: a no-op for both.
    run(&["plan", "--detailed-exitcode"]).code(0);

    // Deleted out of band: missing, and rebuilt (uploaded again).
    peers.delete_image(id);
    let plan = run(&["plan", "--json"]);
    let changes = plan.json()["changes"].clone();
    let change = changes
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "golden.openstack.cloud")
        .unwrap()
        .clone();
    assert_eq!(change["action"], "rebuild", "{changes:#}");
    assert_eq!(change["reasons"][0]["kind"], "artifact_missing");
}

/// A 1 MiB raw disk whose boot sector writes 0 to port 0xf4: under
/// `-device isa-debug-exit,iobase=0xf4` QEMU then exits by itself.
fn exiting_disk(p: &Project, rel: &str) -> Vec<u8> {
    let mut disk = vec![0u8; 1 << 20];
    // mov al, 0; out 0xf4, al; hlt; jmp $-1
    disk[..7].copy_from_slice(&[0xb0, 0x00, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]);
    disk[510] = 0x55;
    disk[511] = 0xaa;
    let path = p.path().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, &disk).unwrap();
    disk
}

#[test]
fn upload_mode_puts_a_qemu_image_into_glance_flattened() {
    require_root!();
    let peers = Peers::start();
    let p = Project::new();
    let base = exiting_disk(&p, "guest/exit.raw");
    p.file(
        "images.pkr.hcl",
        r#"
# A qemu image kept as an overlay on its base: Glance gets it whole.
source "qemu" "tiny" {
  iso_url          = "guest/exit.raw"
  disk_image       = true
  use_backing_file = true
  communicator     = "none"
  accelerator      = "tcg"
  qemuargs         = [["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]]
}

source "openstack" "cloud" {
  cloud       = "imgform-test"
  upload_from = image.golden.qemu.tiny.id
  image_name  = "golden-tiny"
}

build {
  name    = "golden"
  sources = ["source.qemu.tiny", "source.openstack.cloud"]
}
"#,
    );
    let file = peers.clouds_yaml();
    let run = |args: &[&str]| p.run_env(args, &[("OS_CLIENT_CONFIG_FILE", file.to_str().unwrap())]);
    run(&["apply", "--auto-approve"])
        .success()
        .stderr_has("golden.openstack.cloud: ")
        .stderr_has("is an overlay on ../guest/exit.raw: flattening it for the upload");

    let local: Value = serde_json::from_str(&p.read("state/local.json")).unwrap();
    let overlay = local["images"]["golden.qemu.tiny"]["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        local["images"]["golden.qemu.tiny"]["artifact"]["attributes"]["backing_file"],
        "../guest/exit.raw"
    );
    let record = recorded(&p, CLOUD_STATE, "golden.openstack.cloud");
    let id = record["artifact"]["id"].as_str().unwrap();
    let image = peers.image(id).expect("the image is in Glance");
    assert_eq!(image["disk_format"], "qcow2");
    // What Glance holds boots alone: the base's bytes are in it.
    let uploaded = p.path().join("uploaded.qcow2");
    std::fs::write(&uploaded, peers.download(id)).unwrap();
    let raw = p.path().join("uploaded.raw");
    let status = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&uploaded)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(&raw).unwrap(), base);
    // The flattened copy was scratch: only the overlay is left.
    let outputs: Vec<String> = std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(outputs, [overlay.trim_start_matches("output/")]);
    run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn snapshot_mode_provisions_over_ssh_and_cleans_up() {
    require_root!();
    let cloud = Cloud::start();
    let base = cloud
        .peers
        .create_image("base-os", &[("os_distro", "test")]);
    let scratch = Sshd::scratch("os-build");
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        &format!(
            "{}\nbuild {{\n  sources = [\"source.openstack.web\"]\n  provisioner \"shell\" {{\n    inline = [\"echo provisioned > {}/marker\"]\n  }}\n}}\n",
            cloud.source("web", FILTER),
            scratch.display()
        ),
    );
    let plan = cloud.run(&p, &["plan", "--json"]);
    plan.success();
    assert_eq!(plan.json()["changes"][0]["action"], "build");

    let started = Instant::now();
    let out = cloud.run(&p, &["apply", "--auto-approve"]);
    out.success();
    eprintln!(
        "one openstack snapshot build: {:.2}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        std::fs::read_to_string(scratch.join("marker")).unwrap(),
        "provisioned\n"
    );
    out.stderr_has("created temporary key pair");
    out.stderr_has("connected over SSH");

    let record = recorded(&p, ENV_STATE, "openstack.web");
    let id = record["artifact"]["id"].as_str().unwrap().to_owned();
    assert_eq!(record["base"]["id"], base.as_str());
    assert_eq!(record["artifact"]["attributes"]["mode"], "snapshot");
    assert_eq!(
        record["artifact"]["attributes"]["source_image"],
        base.as_str()
    );
    let image = cloud.peers.image(&id).expect("the snapshot is in Glance");
    assert_eq!(image["status"], "active");
    assert_eq!(image["imgform_address"], "openstack.web");
    assert_eq!(image["imgform_content"], record["content_address"]);
    assert_eq!(image["team"], "platform");
    assert_eq!(image["base_image_ref"], base.as_str());
    assert_eq!(tags(&image), ["golden", "imgform"]);

    // The server was made with a temporary key pair, and both are gone.
    let state = cloud.peers.nova_state();
    let servers = state["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{state:#}");
    assert_eq!(servers[0]["deleted"], true);
    assert!(servers[0]["key_name"]
        .as_str()
        .unwrap()
        .starts_with("imgform_"));
    assert!(servers[0]["name"].as_str().unwrap().starts_with("imgform-"));
    cloud.assert_clean();

    // Nothing changed: a no-op, with the filter resolved again.
    cloud.run(&p, &["plan", "--detailed-exitcode"]).code(0);

    // Upstream publishes a newer base (Glance times have 1 s resolution).
    std::thread::sleep(Duration::from_millis(1100));
    // Same name, other distro: not selected.
    cloud
        .peers
        .create_image("base-os", &[("os_distro", "other")]);
    let new_base = cloud
        .peers
        .create_image("base-os", &[("os_distro", "test")]);
    let plan = cloud.run(&p, &["plan", "--json", "--detailed-exitcode"]);
    plan.code(2);
    let change = &plan.json()["changes"][0];
    assert_eq!(change["action"], "rebuild");
    assert_eq!(
        change["reasons"][0],
        serde_json::json!({"kind": "base_updated", "old_id": base, "new_id": new_base})
    );
    cloud
        .run(&p, &["plan", "--refresh=false", "--detailed-exitcode"])
        .code(0);

    // Deleted out of band: missing in drift.
    cloud.peers.delete_image(&id);
    let drift = cloud.run(&p, &["drift", "--json"]);
    drift.code(2);
    assert_eq!(drift.json()["images"][0]["status"], "missing");
}

#[test]
fn a_failed_provisioner_leaves_no_server_and_no_keypair() {
    require_root!();
    let cloud = Cloud::start();
    cloud.peers.create_image("base-os", &[]);
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        &format!(
            "{}\nbuild {{\n  sources = [\"source.openstack.web\"]\n  provisioner \"shell\" {{ inline = [\"echo broken >&2\", \"exit 7\"] }}\n}}\n",
            cloud.source("web", "source_image_name = \"base-os\"\n  cloud = \"imgform-test\"")
        ),
    );
    let out = cloud.run_clouds_yaml(&p, &["apply", "--auto-approve"]);
    out.code(1);
    out.stderr_has("exited with status 7");
    out.stderr_has("deleted temporary key pair");
    cloud.assert_clean();
    assert_eq!(
        cloud.peers.nova_state()["servers"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "one server was made (and deleted)"
    );
    // No image was made, nothing recorded.
    assert!(!p
        .read(&format!("state/{CLOUD_STATE}"))
        .contains("openstack.web"));
    let snapshots = cloud.peers.nova_state()["images"].clone();
    assert_eq!(snapshots, serde_json::json!([]), "no snapshot was taken");

    // --on-error=abort keeps the temporaries and says which.
    let out = cloud.run_clouds_yaml(&p, &["apply", "--auto-approve", "--on-error=abort"]);
    out.code(1);
    out.stderr_has("--on-error=abort: kept server ");
    let (servers, keypairs) = cloud.peers.live_servers_and_keypairs();
    assert_eq!((servers.len(), keypairs.len()), (1, 1));
}

#[test]
fn upload_mode_rejects_remote_provisioners() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        r#"
source "chroot" "base" {
  base = "rootfs.tar"
}

source "openstack" "cloud" {
  upload_from = image.chroot.base.id
}

build {
  sources = ["source.chroot.base"]
}

build {
  sources = ["source.openstack.cloud"]
  provisioner "shell" {
    inline = ["true"]
  }
}
"#,
    );
    p.file("rootfs.tar", "");
    let out = p.run(&["validate"]);
    out.code(1);
    out.stderr_has("provisioner \"shell\" needs a running machine");
    assert!(out.stderr.contains("only shell-local runs in upload mode"));

    // Packer attributes imgform does not implement are errors, not ignored.
    p.file(
        "images.pkr.hcl",
        r#"
source "openstack" "web" {
  source_image    = "0b7e6f6a-0000-4000-8000-000000000000"
  flavor          = "m1.small"
  ssh_username    = "ubuntu"
  use_floating_ip = true
}

build {
  sources = ["source.openstack.web"]
}
"#,
    );
    // A warning at validate (Packer templates load and plan), an error
    // before anything is created when building.
    let out = p.run(&["validate"]);
    out.success();
    out.stderr_has("use_floating_ip is not supported by imgform's openstack builder");
    let out = p.run_env(
        &["apply", "--auto-approve"],
        &[("OS_AUTH_URL", "http://127.0.0.1:9/v3")],
    );
    out.code(1);
    out.stderr_has("use_floating_ip is not supported");
}

#[test]
fn no_flavor_or_source_is_a_diagnostic() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        "source \"openstack\" \"web\" {\n  ssh_username = \"ubuntu\"\n}\nbuild {\n  sources = [\"source.openstack.web\"]\n}\n",
    );
    let out = p.run(&["validate"]);
    out.code(1);
    out.stderr_has("openstack.web: openstack needs a source image");
    out.stderr_has("openstack.web: openstack needs a flavor");
}

#[test]
fn ctrl_c_during_provisioning_deletes_the_server_and_keypair() {
    require_root!();
    let cloud = Cloud::start();
    cloud
        .peers
        .create_image("base-os", &[("os_distro", "test")]);
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        &format!(
            "{}\nbuild {{\n  sources = [\"source.openstack.web\"]\n  provisioner \"shell\" {{ inline = [\"echo started-sleeping\", \"sleep 60\"] }}\n}}\n",
            cloud.source("web", FILTER)
        ),
    );
    let mut cmd = Command::new(util::bin());
    cmd.current_dir(p.path())
        .args(["apply", "--auto-approve"])
        .env("NO_COLOR", "1")
        .env("HOME", p.home())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(p.path().join("apply.log")).unwrap());
    for (k, v) in cloud.peers.os_env() {
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
    let (servers, keypairs) = cloud.peers.live_servers_and_keypairs();
    assert_eq!((servers.len(), keypairs.len()), (1, 1));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    let log = p.read("apply.log");
    // 128 + SIGINT: the build was cancelled and cleaned up.
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("deleting server"), "{log}");
    cloud.assert_clean();
    assert!(!p
        .read(&format!("state/{ENV_STATE}"))
        .contains("openstack.web"));
}

#[test]
fn keep_previous_drift_and_recovery_from_properties() {
    require_root!();
    let cloud = Cloud::start();
    cloud
        .peers
        .create_image("base-os", &[("os_distro", "test")]);
    let p = Project::new();
    let defs = |n: u32| {
        format!(
            "{}\nbuild {{\n  sources = [\"source.openstack.web\"]\n  provisioner \"shell\" {{ inline = [\"echo version {n}\"] }}\n}}\n",
            cloud.source("web", &format!("{FILTER}\n  keep_previous = 1"))
        )
    };
    let mut ids = Vec::new();
    for n in 1..=3 {
        p.file("images.pkr.hcl", &defs(n));
        cloud.run(&p, &["apply", "--auto-approve"]).success();
        ids.push(
            recorded(&p, ENV_STATE, "openstack.web")["artifact"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert!(
        cloud.peers.image(&ids[0]).is_none(),
        "the oldest is deleted"
    );
    assert!(cloud.peers.image(&ids[1]).is_some(), "one previous is kept");
    assert!(cloud.peers.image(&ids[2]).is_some());
    assert_eq!(
        state(&p, ENV_STATE)["images"]["openstack.web"]["previous"][0]["id"],
        ids[1].as_str()
    );
    let drift = cloud.run(&p, &["drift", "--json"]);
    drift.code(0);

    // imgform dies (SIGKILL) between creating the image and recording it.
    p.file("images.pkr.hcl", &defs(4));
    let mut env = cloud.peers.os_env();
    env.push(("IMGFORM_FAULT".into(), "kill-after-capture".into()));
    let killed = cloud.run_with(&p, &["apply", "--auto-approve"], &env);
    assert_ne!(killed.code, 0);
    assert_eq!(
        recorded(&p, ENV_STATE, "openstack.web")["artifact"]["id"],
        ids[2].as_str()
    );
    cloud.assert_clean();
    let lock: Value = serde_json::from_str(&p.read("state/.lock")).unwrap();
    cloud
        .run(&p, &["force-unlock", lock["id"].as_str().unwrap()])
        .success();

    // drift: the recorded image is stale, the new one untracked.
    let drift = cloud.run(&p, &["drift", "--json"]);
    drift.code(2);
    let images = drift.json()["images"].clone();
    let untracked = images
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "untracked")
        .and_then(|e| e["artifact_id"].as_str())
        .unwrap_or_else(|| panic!("no untracked image: {images:#}"))
        .to_owned();

    // state recover finds it by its properties and adopts it.
    cloud
        .run(&p, &["state", "recover", "--auto-approve"])
        .success();
    assert_eq!(
        recorded(&p, ENV_STATE, "openstack.web")["artifact"]["id"],
        untracked.as_str()
    );
    cloud.run(&p, &["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_test_phase_runs_on_a_server_from_the_new_image() {
    require_root!();
    let cloud = Cloud::start();
    let base = cloud.peers.create_image("base-os", &[]);
    let scratch = Sshd::scratch("os-test-phase");
    let p = Project::new();
    let defs = |test: &str| {
        format!(
            "{}\nbuild {{\n  sources = [\"source.openstack.web\"]\n  provisioner \"shell\" {{ inline = [\"echo built > {dir}/built\"] }}\n  test {{\n    provisioner \"shell\" {{ inline = [\"{test}\"] }}\n  }}\n}}\n",
            cloud.source("web", &format!("source_image = \"{base}\"")),
            dir = scratch.display()
        )
    };
    p.file(
        "images.pkr.hcl",
        &defs(&format!("grep -q built {}/built", scratch.display())),
    );
    let out = cloud.run(&p, &["apply", "--auto-approve"]);
    out.success();
    out.stderr_has("test phase: creating a server from the new image");
    let first = recorded(&p, ENV_STATE, "openstack.web")["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The test server booted the new image.
    let state = cloud.peers.nova_state();
    let booted: Vec<&str> = state["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["image_id"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(booted, [base.as_str(), first.as_str()], "{state:#}");
    cloud.assert_clean();

    // A failing test deletes the new image and keeps the state as it was.
    p.file("images.pkr.hcl", &defs("exit 3"));
    let out = cloud.run(&p, &["apply", "--auto-approve"]);
    out.code(1);
    out.stderr_has("tests failed");
    assert_eq!(
        recorded(&p, ENV_STATE, "openstack.web")["artifact"]["id"],
        first.as_str()
    );
    let state = cloud.peers.nova_state();
    let snapshots = state["images"].as_array().unwrap();
    assert_eq!(snapshots.len(), 2, "{state:#}");
    let second = snapshots[1]["image_id"].as_str().unwrap();
    assert!(
        cloud.peers.image(second).is_none(),
        "the untested image is deleted"
    );
    cloud.assert_clean();
}

#[test]
fn credentials_from_the_source_attributes() {
    require_root!();
    let peers = Peers::start();
    let base = peers.create_image("base-os", &[]);
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        &format!(
            r#"
variable "password" {{
  type      = string
  sensitive = true
}}

source "openstack" "web" {{
  identity_endpoint = "{auth}"
  username          = "demo"
  password          = var.password
  tenant_name       = "demo"
  domain_name       = "Default"
  region            = "RegionOne"
  source_image      = "{base}"
  flavor            = "m1.tiny"
  communicator      = "none"
}}

build {{
  sources = ["source.openstack.web"]
}}
"#,
            auth = peers.var("OS_AUTH_URL"),
        ),
    );
    let out = p.run_env(
        &["apply", "--auto-approve"],
        &[("PKR_VAR_password", peers.var("OS_DEMO_PASSWORD"))],
    );
    out.success();
    assert!(!out.stderr.contains("demopass"), "{}", out.stderr);
    let id = recorded(&p, ENV_STATE, "openstack.web")["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = p.read(&format!("state/{ENV_STATE}"));
    assert!(!text.contains("demopass"), "no secret in state");
    let image = peers.image(&id).expect("the image is in Glance");
    assert_eq!(image["owner_project_name"], "demo");
    let (servers, keypairs) = peers.live_servers_and_keypairs();
    assert!(servers.is_empty() && keypairs.is_empty());

    // Refresh uses the same credentials (the state holds no secret).
    let env = [("PKR_VAR_password", peers.var("OS_DEMO_PASSWORD"))];
    p.run_env(&["plan", "--detailed-exitcode"], &env).code(0);
    peers.delete_image(&id);
    let plan = p.run_env(&["plan", "--json"], &env);
    plan.success();
    assert_eq!(
        plan.json()["changes"][0]["reasons"][0]["kind"],
        "artifact_missing"
    );
}

#[test]
fn an_openstack_and_an_amazon_ebs_image_in_one_apply() {
    require_root!();
    let peers = Peers::start();
    let moto = util::moto::Moto::start();
    // One sshd for both "machines": EC2 key pairs through moto, Nova key
    // pairs through the double's authorized_keys file.
    let sshd = Sshd::start_with(Options {
        moto: Some(&moto.endpoint()),
        extra_keys_files: vec![peers.authorized_keys()],
    });
    let ami = moto.register_image("base-2026.1");
    let glance_base = peers.create_image("base-os", &[]);
    let scratch = Sshd::scratch("os-and-ebs");
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        &format!(
            r#"
source "openstack" "web" {{
  source_image = "{glance_base}"
  flavor       = "m1.tiny"
  ssh_username = "{LOGIN}"
  ssh_host     = "127.0.0.1"
  ssh_port     = {port}
  ssh_timeout  = "30s"
}}

source "amazon-ebs" "web" {{
  region        = "us-east-1"
  instance_type = "t3.micro"
  source_ami    = "{ami}"
  ami_name      = "web-${{uuidv4()}}"
  ssh_username  = "{user}"
  ssh_host      = "127.0.0.1"
  ssh_port      = {port}
  ssh_timeout   = "30s"
}}

build {{
  sources = ["source.openstack.web", "source.amazon-ebs.web"]
  provisioner "shell" {{
    inline = ["echo ${{source.type}} > {dir}/${{source.type}}"]
  }}
}}
"#,
            port = sshd.port,
            user = util::sshd::USER,
            dir = scratch.display(),
        ),
    );
    let mut env = peers.os_env();
    env.extend([
        ("AWS_ENDPOINT_URL".to_owned(), moto.endpoint()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "testing".to_owned()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
    ]);
    let started = Instant::now();
    let out = p.run_isolated(&["apply", "--auto-approve"], &env);
    out.success();
    eprintln!(
        "openstack + amazon-ebs in one apply: {:.2}s",
        started.elapsed().as_secs_f64()
    );
    for kind in ["openstack", "amazon-ebs"] {
        assert_eq!(
            std::fs::read_to_string(scratch.join(kind)).unwrap_or_default(),
            format!("{kind}\n"),
            "{}",
            out.stderr
        );
    }
    let glance_id = recorded(&p, ENV_STATE, "openstack.web")["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(peers.image(&glance_id).unwrap()["status"], "active");
    let aws: Value = serde_json::from_str(&p.read("state/aws-us-east-1.json")).unwrap();
    let new_ami = aws["images"]["amazon-ebs.web"]["artifact"]["id"]
        .as_str()
        .unwrap();
    assert!(new_ami.starts_with("ami-"));
    assert_eq!(moto.tags(new_ami)["imgform:address"], "amazon-ebs.web");
    let (servers, keypairs) = peers.live_servers_and_keypairs();
    assert!(servers.is_empty() && keypairs.is_empty());
}

#[test]
fn a_chroot_image_uploaded_then_customized_by_a_snapshot() {
    require_root!();
    let cloud = Cloud::start();
    let scratch = Sshd::scratch("os-chain");
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("rootfs")).unwrap();
    std::fs::create_dir_all(p.path().join("work")).unwrap();
    std::fs::copy(rootfs(), p.path().join("rootfs/busybox.tar.gz")).unwrap();
    p.file(
        "images.pkr.hcl",
        &format!(
            r#"
source "chroot" "base" {{
  base     = "rootfs/busybox.tar.gz"
  work_dir = "work"
}}

source "openstack" "base" {{
  upload_from = image.golden.chroot.base.id
}}

{app}

build {{
  name    = "golden"
  sources = ["source.chroot.base", "source.openstack.base"]
}}

build {{
  name    = "app"
  sources = ["source.openstack.app"]
  provisioner "shell" {{
    inline = ["echo app > {dir}/app"]
  }}
}}
"#,
            app = cloud.source(
                "app",
                "source_image = image.golden.openstack.base.id\n  image_visibility = \"community\""
            ),
            dir = scratch.display(),
        ),
    );
    let out = cloud.run(&p, &["apply", "--auto-approve"]);
    out.success();
    let uploaded = recorded(&p, ENV_STATE, "golden.openstack.base")["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let app = recorded(&p, ENV_STATE, "app.openstack.app");
    assert_eq!(
        app["artifact"]["attributes"]["source_image"],
        uploaded.as_str()
    );
    assert_eq!(
        app["parents"]["golden.openstack.base"]["artifact_id"],
        uploaded.as_str()
    );
    let image = cloud
        .peers
        .image(app["artifact"]["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(image["base_image_ref"], uploaded.as_str());
    assert_eq!(image["visibility"], "community");
    assert_eq!(
        std::fs::read_to_string(scratch.join("app")).unwrap(),
        "app\n"
    );
    cloud.assert_clean();
    cloud.run(&p, &["plan", "--detailed-exitcode"]).code(0);
}
