//! The `qemu` builder for real, with qemu-system-x86_64 under TCG:
//!
//! - a tiny guest (one boot sector that ends QEMU through its
//!   `isa-debug-exit` device) for what needs a VM but not an OS: the disk
//!   kept by content address, recovery after a crash, failures and signals
//!   that leave no QEMU process and no scratch files, checksums;
//! - Packer-style templates on a bootable Debian cloud image (a chroot
//!   image, chained with `iso_url = image.<ADDR>.id`): a `cd_content`
//!   cloud-init seed + `ssh_password` + `shutdown_command` provisions a file
//!   that is then read from the output disk's bytes; a `boot_command` typed
//!   into GRUB points cloud-init at `http_content` served by imgform.
//!
//! QEMU runs as the test user; the Debian test needs root (chroot).

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{debian, is_root, Project};

/// A 1 MiB raw disk whose boot sector writes 0 to port 0xf4: with
/// `-device isa-debug-exit,iobase=0xf4` QEMU then exits by itself.
fn exiting_disk(p: &Project, rel: &str) {
    let mut disk = vec![0u8; 1 << 20];
    // mov al, 0; out 0xf4, al; hlt; jmp $-1
    disk[..7].copy_from_slice(&[0xb0, 0x00, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]);
    disk[510] = 0x55;
    disk[511] = 0xaa;
    let path = p.path().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, disk).unwrap();
}

/// A 1 MiB raw disk nothing boots from: SeaBIOS waits forever.
fn dead_disk(p: &Project, rel: &str) {
    let path = p.path().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, vec![0u8; 1 << 20]).unwrap();
}

const TINY: &str = r#"
source "qemu" "tiny" {
  iso_url          = "guest/exit.raw"
  disk_image       = true
  communicator     = "none"
  accelerator      = "tcg"
  qemuargs         = [["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]]
  shutdown_timeout = "60s"
}

build {
  sources = ["source.qemu.tiny"]
}
"#;

/// The project's own temp dir (TMPDIR for imgform), to see what is left.
fn tmp(p: &Project) -> PathBuf {
    let dir = p.path().join("tmp");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(p: &Project, args: &[&str]) -> util::Run {
    let tmp = tmp(p);
    p.run_env(args, &[("TMPDIR", tmp.to_str().unwrap())])
}

/// Scratch dirs a qemu build left in the project's temp dir.
fn leftovers(p: &Project) -> Vec<String> {
    std::fs::read_dir(tmp(p))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("imgform-qemu-"))
        .collect()
}

/// QEMU processes started for this project (their disks are in its temp dir).
fn qemu_processes(p: &Project) -> Vec<u32> {
    let marker = tmp(p).to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("qemu-system") && c.contains(&marker)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The recorded artifact id of `addr`.
fn recorded_id(p: &Project, addr: &str) -> Option<String> {
    let show = run(p, &["state", "show", "--json", addr]);
    if show.code != 0 {
        return None;
    }
    show.json()["record"]["artifact"]["id"]
        .as_str()
        .map(str::to_owned)
}

fn raw_bytes(image: &Path) -> Vec<u8> {
    let raw = image.with_extension("check.raw");
    let status = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(image)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&raw).unwrap();
    std::fs::remove_file(raw).unwrap();
    bytes
}

#[test]
fn a_guest_that_powers_off_is_kept_by_content_address_and_recovered() {
    let p = Project::new();
    exiting_disk(&p, "guest/exit.raw");
    p.file("images.pkr.hcl", TINY);

    // What is an input shows in the plan: the base's bytes, not the
    // accelerator or the timeout.
    insta::with_settings!({filters => util::filters()}, {
        insta::assert_snapshot!("tiny_plan", run(&p, &["plan"]).stdout);
        insta::assert_snapshot!("tiny_plan_json", run(&p, &["plan", "--json"]).stdout);
    });
    let apply = run(&p, &["apply", "--auto-approve"]);
    apply
        .success()
        .stderr_has("qemu.tiny: booting the disk under tcg")
        .stderr_has("qemu.tiny: waiting for the VM to shut down by itself")
        .stderr_has("qemu.tiny: compacting the disk");
    let id = recorded_id(&p, "qemu.tiny").expect("recorded");
    assert!(
        id.starts_with("output/qemu-tiny-") && id.ends_with(".qcow2"),
        "{id}"
    );
    let disk = p.path().join(&id);
    let bytes = raw_bytes(&disk);
    assert_eq!(&bytes[..7], &[0xb0, 0x00, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]);
    assert_eq!(bytes.len(), 1 << 20, "the disk keeps the base's size");
    assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
    assert!(qemu_processes(&p).is_empty());

    // Inputs unchanged: nothing to do. cpus and memory are not inputs.
    run(&p, &["plan", "--detailed-exitcode"]).code(0);
    p.file(
        "images.pkr.hcl",
        &TINY.replace("communicator", "cpus = 2\n  memory = 256\n  communicator"),
    );
    run(&p, &["plan", "--detailed-exitcode"]).code(0);
    // The base's bytes are: a changed base is a rebuild.
    let mut base = std::fs::read(p.path().join("guest/exit.raw")).unwrap();
    base[100] = 1;
    std::fs::write(p.path().join("guest/exit.raw"), base).unwrap();
    let plan = run(&p, &["plan", "--detailed-exitcode"]);
    plan.code(2);
    let mut filters = util::filters();
    filters.push((r"-[0-9a-f]{12}\.qcow2", "-[HEX12].qcow2"));
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!("tiny_plan_base_changed", plan.stdout);
    });

    // Killed between capture and state write: recover adopts the disk by
    // the content address in its name.
    let killed = p.run_env(
        &["apply", "--auto-approve"],
        &[
            ("IMGFORM_FAULT", "kill-after-capture"),
            ("TMPDIR", tmp(&p).to_str().unwrap()),
        ],
    );
    assert_ne!(killed.code, 0);
    let lock: serde_json::Value = serde_json::from_str(&p.read("state/.lock")).unwrap();
    run(&p, &["force-unlock", lock["id"].as_str().unwrap()]).success();
    // drift sees the new disk beside the recorded one, by its name.
    let drift = run(&p, &["drift", "--json"]);
    assert!(drift.stdout.contains("untracked"), "{}", drift.stdout);
    let dry = run(&p, &["state", "recover"]);
    dry.success();
    assert!(
        dry.stdout.contains("+ qemu.tiny  output/qemu-tiny-"),
        "{}",
        dry.stdout
    );
    // A disk cut short (as a copy killed early leaves it) is refused. (This
    // tiny disk's clusters are few: cut at half, qemu-img check still finds
    // it whole.)
    let new_disk = std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.extension().is_some_and(|e| e == "qcow2") && !f.ends_with(&id))
        .expect("the captured disk");
    let whole = std::fs::read(&new_disk).unwrap();
    std::fs::write(&new_disk, &whole[..whole.len() / 8]).unwrap();
    run(&p, &["state", "recover", "--auto-approve"])
        .code(1)
        .stderr_has("is damaged")
        .stderr_has("it is not adopted");
    assert_eq!(recorded_id(&p, "qemu.tiny").as_deref(), Some(id.as_str()));
    std::fs::write(&new_disk, &whole).unwrap();
    run(&p, &["state", "recover", "--auto-approve"]).success();
    let adopted = recorded_id(&p, "qemu.tiny").expect("adopted");
    assert_ne!(adopted, id);
    assert!(p.path().join(&adopted).is_file());
    run(&p, &["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_qemuargs_drive_replaces_the_disk_with_packers_output_path() {
    let p = Project::new();
    exiting_disk(&p, "guest/exit.raw");
    p.file(
        "images.pkr.hcl",
        &TINY.replace(
            "qemuargs         = [[\"-device\", \"isa-debug-exit,iobase=0xf4,iosize=0x04\"]]",
            r#"vm_name          = "tiny.qcow2"
  qemuargs = [
    ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
    ["-drive", "file={{ .OutputDir }}/{{ .Name }},if=ide,format=qcow2,cache=unsafe"],
  ]"#,
        ),
    );
    // QEMU refuses a path it cannot open, and the same disk twice (its
    // write lock): only the template's drive, with the disk's real path, boots.
    run(&p, &["apply", "--auto-approve"]).success();
    let id = recorded_id(&p, "qemu.tiny").expect("recorded");
    assert!(
        id.starts_with("output/tiny-") && id.ends_with(".qcow2"),
        "{id}"
    );
    assert_eq!(
        &raw_bytes(&p.path().join(&id))[..4],
        &[0xb0, 0x00, 0xe6, 0xf4]
    );
}

/// A FAT disk with nothing to boot: OVMF starts its UEFI shell.
fn fat_disk(p: &Project, rel: &str) {
    let path = p.path().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0u8; 8 << 20]).unwrap();
    let status = Command::new("mkfs.vfat")
        .args(["-n", "EFITEST"])
        .arg(&path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "mkfs.vfat");
}

/// UEFI (OVMF) and boot_command: keys typed into the UEFI shell write a file
/// on the disk and power the VM off; the file is then in the output disk.
#[test]
fn keys_typed_into_the_uefi_shell_end_up_on_the_disk() {
    if !Path::new("/usr/share/OVMF").is_dir() {
        eprintln!("skipped: no OVMF");
        return;
    }
    let p = Project::new();
    fat_disk(&p, "guest/fat.raw");
    p.file(
        "images.pkr.hcl",
        r#"
source "qemu" "uefi" {
  iso_url          = "guest/fat.raw"
  disk_image       = true
  format           = "raw"
  efi_boot         = true
  communicator     = "none"
  accelerator      = "tcg"
  boot_wait        = "15s"
  boot_command     = [
    "<enter><wait2>",
    "echo typed by {{ .Name }} >a fs0:\\typed.txt<enter><wait2>",
    "reset -s<enter>",
  ]
  shutdown_timeout = "2m"
  # A -device replaces the network: without a NIC OVMF does not try PXE
  # first, and reaches its shell in seconds.
  qemuargs         = [["-device", "virtio-rng-pci"]]
}

build {
  sources = ["source.qemu.uefi"]
}
"#,
    );
    run(&p, &["apply", "--auto-approve"])
        .success()
        .stderr_has("qemu.uefi: typing the boot command");
    let id = recorded_id(&p, "qemu.uefi").expect("recorded");
    let out = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(p.path().join(&id))
        .arg("::/typed.txt")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "typed by qemu-uefi.raw",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_overlay_chained_on_a_qemu_image_is_missing_without_its_base() {
    let p = Project::new();
    exiting_disk(&p, "guest/exit.raw");
    p.file(
        "images.pkr.hcl",
        &TINY
            .replace(
                "build {",
                r#"source "qemu" "child" {
  iso_url          = image.qemu.tiny.id
  disk_image       = true
  use_backing_file = true
  communicator     = "none"
  accelerator      = "tcg"
  qemuargs         = [["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]]
}

build {"#,
            )
            .replace(
                "sources = [\"source.qemu.tiny\"]",
                "sources = [\"source.qemu.tiny\", \"source.qemu.child\"]",
            ),
    );
    run(&p, &["apply", "--auto-approve"])
        .success()
        .stderr_has("qemu.child: making a qcow2 overlay on output/qemu-tiny-");
    let child = recorded_id(&p, "qemu.child").expect("child recorded");
    let parent = recorded_id(&p, "qemu.tiny").expect("parent recorded");
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(p.path().join(&child))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        info["backing-filename"],
        parent.trim_start_matches("output/"),
        "{info}"
    );
    run(&p, &["drift", "--detailed-exitcode"]).code(0);

    // The base deleted out of band: both are missing, and rebuilt.
    std::fs::remove_file(p.path().join(&parent)).unwrap();
    let drift = run(&p, &["drift", "--json"]);
    let missing: Vec<String> = drift.json()["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "missing")
        .map(|i| i["address"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(missing, ["qemu.child", "qemu.tiny"], "{}", drift.stdout);
    run(&p, &["apply", "--auto-approve"])
        .success()
        .stderr_has("2 built");
}

#[test]
fn a_failed_build_records_nothing_and_leaves_no_vm() {
    let p = Project::new();
    dead_disk(&p, "guest/dead.raw");
    p.file(
        "images.pkr.hcl",
        r#"
source "qemu" "dead" {
  iso_url      = "guest/dead.raw"
  disk_image   = true
  accelerator  = "tcg"
  ssh_username = "debian"
  ssh_password = "not-used"
  ssh_timeout  = "3s"
}

build {
  sources = ["source.qemu.dead"]
}
"#,
    );
    let apply = run(&p, &["apply", "--auto-approve"]);
    apply
        .code(1)
        .stderr_has("the VM did not answer SSH: timed out after 3s waiting for SSH");
    assert!(recorded_id(&p, "qemu.dead").is_none());
    assert!(
        !p.path().join("output").exists()
            || std::fs::read_dir(p.path().join("output"))
                .unwrap()
                .next()
                .is_none()
    );
    assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
    assert!(qemu_processes(&p).is_empty());

    // --on-error=abort keeps the disk and says how to look at it.
    let kept = run(&p, &["apply", "--auto-approve", "--on-error=abort"]);
    kept.code(1)
        .stderr_has("--on-error=abort: kept the VM's disk at ")
        .stderr_has("qemu-system-x86_64 -m 1024 -drive file=");
    assert_eq!(leftovers(&p).len(), 1);
    let dir = tmp(&p).join(&leftovers(&p)[0]);
    assert!(
        dir.join("qemu-dead.qcow2").is_file(),
        "the disk, named vm_name"
    );
    assert!(qemu_processes(&p).is_empty(), "the VM itself is stopped");
    assert!(recorded_id(&p, "qemu.dead").is_none());

    // A VM that never powers off is stopped after shutdown_timeout.
    std::fs::remove_dir_all(&dir).unwrap();
    p.file(
        "images.pkr.hcl",
        r#"
source "qemu" "dead" {
  iso_url          = "guest/dead.raw"
  disk_image       = true
  accelerator      = "tcg"
  communicator     = "none"
  shutdown_timeout = "2s"
}

build {
  sources = ["source.qemu.dead"]
}
"#,
    );
    run(&p, &["apply", "--auto-approve"])
        .code(1)
        .stderr_has("the VM did not shut down within shutdown_timeout (2s)")
        .stderr_has("hint: check shutdown_command");
    assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
    assert!(qemu_processes(&p).is_empty());
}

#[test]
fn sigterm_and_ctrl_c_stop_the_vm_and_clean_up() {
    for signal in [libc_signal::TERM, libc_signal::INT] {
        let p = Project::new();
        dead_disk(&p, "guest/dead.raw");
        p.file(
            "images.pkr.hcl",
            r#"
source "qemu" "dead" {
  iso_url      = "guest/dead.raw"
  disk_image   = true
  accelerator  = "tcg"
  ssh_username = "debian"
  ssh_password = "not-used"
  ssh_timeout  = "10m"
}

build {
  sources = ["source.qemu.dead"]
}
"#,
        );
        let child = Command::new(util::bin())
            .current_dir(p.path())
            .args(["apply", "--auto-approve"])
            .env("NO_COLOR", "1")
            .env("TMPDIR", tmp(&p))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while qemu_processes(&p).is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "QEMU never started"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // 128 + the signal's number, whichever it was.
        let code = if signal == libc_signal::TERM {
            143
        } else {
            130
        };
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(
            stderr.contains("cancelled") || stderr.contains("Interrupted"),
            "{stderr}"
        );
        assert!(qemu_processes(&p).is_empty(), "QEMU is stopped ({signal})");
        assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
        assert!(recorded_id(&p, "qemu.dead").is_none());
    }
}

/// Signal names for `kill`.
mod libc_signal {
    pub const TERM: &str = "TERM";
    pub const INT: &str = "INT";
}

#[test]
fn a_base_that_is_not_what_its_checksum_says_is_a_located_error() {
    let p = Project::new();
    exiting_disk(&p, "guest/exit.raw");
    let wrong = "0".repeat(64);
    p.file(
        "images.pkr.hcl",
        &TINY.replace(
            "  disk_image       = true\n",
            &format!("  disk_image       = true\n  iso_checksum     = \"sha256:{wrong}\"\n"),
        ),
    );
    let apply = run(&p, &["apply", "--auto-approve"]);
    apply
        .code(1)
        .stderr_has("images.pkr.hcl:5:3: guest/exit.raw has sha256:")
        .stderr_has(&format!("but iso_checksum says sha256:{wrong}"))
        .stderr_has("hint: the image is not the one the checksum names");
    assert!(recorded_id(&p, "qemu.tiny").is_none());
    assert!(qemu_processes(&p).is_empty());

    // The right checksum, from a checksums file as Packer reads them.
    let sha = sha256_hex(&p.path().join("guest/exit.raw"));
    p.file("guest/SHA256SUMS", &format!("{sha}  exit.raw\n"));
    p.file(
        "images.pkr.hcl",
        &TINY.replace(
            "  disk_image       = true\n",
            "  disk_image       = true\n  iso_checksum     = \"file:guest/SHA256SUMS\"\n",
        ),
    );
    run(&p, &["apply", "--auto-approve"])
        .success()
        .stderr_has("checking guest/exit.raw against iso_checksum (sha256)");
}

/// An El Torito CD (no emulation) whose boot code is the exiting boot
/// sector: what an installer ISO is to QEMU, minus the installer.
fn exiting_iso(p: &Project, rel: &str) {
    exiting_disk(p, "iso-root/boot.img");
    let bytes = std::fs::read(p.path().join("iso-root/boot.img")).unwrap();
    std::fs::write(p.path().join("iso-root/boot.img"), &bytes[..2048]).unwrap();
    let status = Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-b",
            "boot.img",
            "-no-emul-boot",
        ])
        .args(["-boot-load-size", "4", "-o"])
        .arg(p.path().join(rel))
        .arg(p.path().join("iso-root"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "xorriso");
    std::fs::remove_dir_all(p.path().join("iso-root")).unwrap();
}

#[test]
fn an_installer_iso_boots_with_an_empty_disk_of_disk_size() {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("guest")).unwrap();
    exiting_iso(&p, "guest/installer.iso");
    let sha = sha256_hex(&p.path().join("guest/installer.iso"));
    p.file(
        "images.pkr.hcl",
        &format!(
            r#"
source "qemu" "installed" {{
  iso_url          = "file://guest/installer.iso"
  iso_checksum     = "sha256:{sha}"
  disk_size        = 64
  format           = "raw"
  vm_name          = "installed"
  output_directory = "images"
  communicator     = "none"
  accelerator      = "tcg"
  qemuargs         = [["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]]
}}

build {{
  sources = ["source.qemu.installed"]
}}
"#
        ),
    );
    run(&p, &["apply", "--auto-approve"])
        .success()
        .stderr_has("qemu.installed: booting the installer under tcg");
    let id = recorded_id(&p, "qemu.installed").expect("recorded");
    assert!(
        id.starts_with("images/installed-") && id.ends_with(".raw"),
        "{id}"
    );
    let disk = p.path().join(&id);
    assert_eq!(
        std::fs::metadata(&disk).unwrap().len(),
        64 << 20,
        "disk_size in MiB"
    );
    assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
}

/// Serves `body` at any path on 127.0.0.1 (a mirror for `iso_url`);
/// returns the port and a counter of the requests answered.
fn serve(body: Vec<u8>) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (port, hits)
}

#[test]
fn a_remote_base_is_downloaded_once_and_checked() {
    let p = Project::new();
    exiting_disk(&p, "guest/exit.raw");
    let sha = sha256_hex(&p.path().join("guest/exit.raw"));
    let (port, hits) = serve(std::fs::read(p.path().join("guest/exit.raw")).unwrap());
    p.file(
        "images.pkr.hcl",
        &TINY.replace(
            "  iso_url          = \"guest/exit.raw\"\n",
            &format!(
                "  iso_urls         = [\"http://127.0.0.1:1/gone.raw\", \"http://127.0.0.1:{port}/exit.raw\"]\n  iso_checksum     = \"sha256:{sha}\"\n"
            ),
        ),
    );
    let home = p.home();
    let env = [
        ("TMPDIR", tmp(&p).to_string_lossy().into_owned()),
        ("HOME", home.to_string_lossy().into_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    p.run_env(&["apply", "--auto-approve"], &env)
        .success()
        .stderr_has(&format!(
            "qemu.tiny: downloading http://127.0.0.1:{port}/exit.raw"
        ))
        .stderr_has("qemu.tiny: checking http://127.0.0.1:")
        .stderr_has("against iso_checksum (sha256)");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let cached: Vec<_> = std::fs::read_dir(home.join(".cache/imgform/downloads"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached.len() == 1 && cached[0].ends_with("-exit.raw"),
        "{cached:?}"
    );
    // Rebuilt: the cached download is used (and checked) again.
    let again = p.run_env(&["apply", "--auto-approve", "--replace", "qemu.tiny"], &env);
    again.success();
    assert!(!again.stderr.contains("downloading"), "{}", again.stderr);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A bootable Debian cloud image (chroot, no boot check) and two Packer
/// templates on it, built in one apply: `app` (cloud-init seed on a CD,
/// password login, a file and a shell provisioner, shutdown_command) and
/// `typed` (boot_command typed into GRUB's editor to point cloud-init at
/// http_content, with a held Ctrl for Ctrl-X).
#[test]
fn packer_templates_boot_provision_and_keep_their_disks() {
    if !is_root() {
        eprintln!("skipped: the chroot builder needs root here");
        return;
    }
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("rootfs")).unwrap();
    std::fs::copy(
        debian::cloud_rootfs(),
        p.path().join("rootfs/debian-cloud.tar.gz"),
    )
    .unwrap();
    p.file("files/motd", "built by the qemu builder\n");
    p.file(
        "images.pkr.hcl",
        r##"
locals {
  user_data = <<-EOF
    #cloud-config
    manage_etc_hosts: localhost
    ssh_pwauth: true
    users:
      - name: packer
        sudo: "ALL=(ALL) NOPASSWD:ALL"
        shell: /bin/bash
        lock_passwd: false
        plain_text_passwd: imgform-test
  EOF
}

source "chroot" "base" {
  base            = "rootfs/debian-cloud.tar.gz"
  partition_table = "gpt"
  grub_timeout    = 60
  boot_check      = false
}

# A Packer qemu template, as written for Packer, on the chroot image.
source "qemu" "app" {
  iso_url          = image.golden.chroot.base.id
  disk_image       = true
  format           = "qcow2"
  disk_size        = "4G"
  memory           = 1024
  cd_label         = "cidata"
  cd_content = {
    "meta-data" = "instance-id: app\nlocal-hostname: app\n"
    "user-data" = local.user_data
  }
  boot_wait        = "2s"
  boot_command     = ["<enter>"]
  ssh_username     = "packer"
  ssh_password     = "imgform-test"
  ssh_timeout      = "15m"
  shutdown_command = "sudo shutdown -P now"
  vm_name          = "app.qcow2"
}

# The installer way: keys typed into GRUB's editor (its entry reads
# setparams, a blank line, search, linux) add a NoCloud URL served by
# imgform's HTTP server to the kernel's command line.
source "qemu" "typed" {
  iso_url          = image.golden.chroot.base.id
  disk_image       = true
  use_backing_file = true
  memory           = 1024
  http_content = {
    "/meta-data"   = "instance-id: typed\nlocal-hostname: typed\n"
    "/user-data"   = local.user_data
    "/vendor-data" = ""
  }
  boot_wait        = "8s"
  # GRUB redraws the whole line for each key: slow under TCG.
  boot_key_interval = "300ms"
  boot_command     = [
    "e<wait><down><down><down><end>",
    " 'ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/'",
    "<leftCtrlOn>x<leftCtrlOff>",
  ]
  ssh_username     = "packer"
  ssh_password     = "imgform-test"
  ssh_timeout      = "15m"
  shutdown_command = "sudo shutdown -P now"
}

build {
  name    = "golden"
  sources = ["source.chroot.base"]
}

build {
  name    = "app"
  sources = ["source.qemu.app", "source.qemu.typed"]

  provisioner "file" {
    source      = "files/motd"
    destination = "/tmp/motd"
  }

  provisioner "shell" {
    inline = [
      "sudo mv /tmp/motd /etc/motd",
      "echo \"$(hostname) $(tr ' ' '\\n' < /proc/cmdline | grep '^ds=' || echo seed-cd)\" | sudo tee /etc/imgform-provisioned",
      "sudo sync",
    ]
  }

  test {
    provisioner "shell" {
      inline = ["grep -q 'built by the qemu builder' /etc/motd"]
    }
  }
}
"##,
    );
    let started = Instant::now();
    let apply = run(&p, &["apply", "--auto-approve"]);
    eprintln!("base + two qemu images in {:?}", started.elapsed());
    apply
        .success()
        .stderr_has("app.qemu.app: copying the base disk (qcow2 → qcow2)")
        .stderr_has("app.qemu.typed: making a qcow2 overlay on output/golden-chroot-base-")
        .stderr_has("app.qemu.typed: typing the boot command")
        .stderr_has("app.qemu.app: shutting down: sudo shutdown -P now")
        .stderr_has("app.qemu.typed: test phase: running the tests on the provisioned VM")
        .stderr_has("3 built, 0 failed");

    let app = p
        .path()
        .join(recorded_id(&p, "app.qemu.app").expect("app recorded"));
    assert!(app
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("app-"));
    assert_eq!(
        debian::read_root_file(&app, "/etc/motd"),
        "built by the qemu builder\n"
    );
    assert_eq!(
        debian::read_root_file(&app, "/etc/imgform-provisioned"),
        "app seed-cd\n"
    );
    let typed = p
        .path()
        .join(recorded_id(&p, "app.qemu.typed").expect("typed recorded"));
    let provisioned = debian::read_root_file(&typed, "/etc/imgform-provisioned");
    assert!(
        provisioned.starts_with("typed ds=nocloud-net;s=http://10.0.2.2:"),
        "{provisioned}"
    );
    // The overlay names its base relative to itself.
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&typed)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let backing = info["backing-filename"].as_str().unwrap_or_default();
    assert!(backing.starts_with("golden-chroot-base-"), "{info}");
    assert!(leftovers(&p).is_empty(), "{:?}", leftovers(&p));
    assert!(qemu_processes(&p).is_empty());
    run(&p, &["plan", "--detailed-exitcode"]).code(0);
}
