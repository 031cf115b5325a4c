//! What the boot tests share: a Debian cloud root filesystem
//! (scripts/make-debian-rootfs.sh --cloud, cached across runs under
//! /var/cache/imgform, copied once per test process) and diskimage-builder's
//! elements (the PyPI package, installed by scripts/install-test-deps.sh).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The Debian cloud root filesystem tarball: kernel, systemd, sshd,
/// cloud-init, GRUB for BIOS and UEFI.
pub fn cloud_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("imgform-test-debian-{}", std::process::id()));
        let out = dir.join("debian-cloud.tar.gz");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-debian-rootfs.sh");
        let status = Command::new(script)
            .arg("--cloud")
            .arg(&out)
            .status()
            .expect("run scripts/make-debian-rootfs.sh");
        assert!(
            status.success(),
            "scripts/make-debian-rootfs.sh --cloud failed"
        );
        out
    })
}

/// The `elements` folder of the installed diskimage-builder package.
pub fn dib_elements() -> PathBuf {
    let out = Command::new("/var/cache/imgform/dib-venv/bin/python")
        .args([
            "-c",
            "import diskimage_builder, os; print(os.path.dirname(diskimage_builder.__file__))",
        ])
        .output()
        .expect("diskimage-builder's venv (scripts/install-test-deps.sh makes it)");
    assert!(out.status.success(), "diskimage-builder is not installed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("elements")
}

/// A raw copy of a disk image, removed on drop.
struct RawCopy(PathBuf);

impl RawCopy {
    fn of(image: &Path) -> RawCopy {
        let raw = RawCopy(image.with_extension("inspect.raw"));
        let status = Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(image)
            .arg(&raw.0)
            .status()
            .expect("qemu-img");
        assert!(status.success(), "qemu-img convert {}", image.display());
        raw
    }

    /// `sfdisk --json`'s partitions.
    fn table(&self) -> Vec<serde_json::Value> {
        let out = Command::new("sfdisk")
            .arg("--json")
            .arg(&self.0)
            .output()
            .expect("sfdisk");
        let table: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sfdisk --json");
        table["partitiontable"]["partitions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for RawCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The partitions of a disk image, as `sfdisk --json` lists them: (type,
/// start sector, size in sectors, name).
pub fn partitions(image: &Path) -> Vec<(String, u64, u64, String)> {
    RawCopy::of(image)
        .table()
        .iter()
        .map(|p| {
            (
                p["type"].as_str().unwrap_or_default().to_owned(),
                p["start"].as_u64().unwrap_or(0),
                p["size"].as_u64().unwrap_or(0),
                p["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A file in the root filesystem (the last partition) of a disk image, read
/// without booting or mounting it.
pub fn read_root_file(image: &Path, path: &str) -> String {
    let raw = RawCopy::of(image);
    let start = raw
        .table()
        .last()
        .and_then(|p| p["start"].as_u64())
        .expect("a root partition");
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(format!("{}?offset={}", raw.0.display(), start * 512))
        .output()
        .expect("debugfs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
